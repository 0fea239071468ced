"""The events hub: typed topics, subscribers wired from outside, failures contained."""

from __future__ import annotations

import logging

import pytest
from conftest import Locker

from locker import repo
from locker.events import Events, PhaseDone, UnlockSent
from locker.model import OrderState, Purpose


def test_a_subscriber_that_fails_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Events()
    heard: list[str] = []

    def broken(sent: UnlockSent) -> None:
        raise RuntimeError("a screen that went away")

    hub.unlock_sent.subscribe(broken)
    hub.unlock_sent.subscribe(lambda sent: heard.append(sent.board))
    with caplog.at_level(logging.ERROR, logger="locker.events"):
        hub.unlock_sent.publish(UnlockSent("b0"))
    assert heard == ["b0"]
    assert "unlock_sent subscriber" in caplog.text and "a screen that went away" in caplog.text


def test_an_unsubscribed_handler_hears_nothing_more() -> None:
    hub = Events()
    heard: list[UnlockSent] = []
    hub.unlock_sent.subscribe(heard.append)
    hub.unlock_sent.unsubscribe(heard.append)
    hub.unlock_sent.publish(UnlockSent("b0"))
    assert heard == []


def test_a_pickup_is_published_once_it_is_durable(locker: Locker) -> None:
    """The screen's thanks come from lockerd's word, after the commit: the order is
    collected in the database by the time a subscriber hears of it."""
    result, pickup = locker.deposit()
    number = result["compartments"][0]["number"]
    heard: list[tuple[PhaseDone, OrderState]] = []

    def done(event: PhaseDone) -> None:
        with locker.store.read() as tx:
            order = repo.order_by_id(tx, event.order_id)
        assert order is not None
        heard.append((event, order.state))

    locker.service.hub.phase_done.subscribe(done)
    locker.code(pickup)
    locker.open_close(number)
    assert heard == [(PhaseDone("SO-1", Purpose.PICKUP, (number,)), OrderState.COLLECTED)]
