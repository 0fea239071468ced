"""Openings on their own: built from what they need, they report to their caller."""

from __future__ import annotations

from collections.abc import Callable

from conftest import Locker

from locker import repo
from locker.boards import BoardError
from locker.model import Door, Method, OrderState, Purpose
from locker.openings import CommandReply, Openings, OpenRequest, PhaseComplete


def openings_of(locker: Locker, sent: list[tuple[str, int]]) -> Openings:
    def send(board: str, channel: int, failed: Callable[[BoardError], None]) -> bool:
        sent.append((board, channel))
        return True

    def board_failed(board: str, error: BoardError) -> None:
        raise AssertionError(f"no board fails in this test: {board}: {error}")

    return Openings(
        clock=locker.clock,
        settings=locker.config.doors,
        compartments=locker.service.compartments,
        boards={"b0"},
        online={"b0": True},
        send_unlock=send,
        board_failed=board_failed,
        unlocked=lambda board: None,
    )


def see(locker: Locker, openings: Openings, number: int, door: Door) -> list[object]:
    prev = openings.reading(number, door)
    assert prev is not None
    with locker.store.transaction() as tx:
        return list(openings.observe(tx, number, door, prev))


def test_the_last_door_closed_returns_the_completed_phase_and_moves_no_order(
    locker: Locker,
) -> None:
    result, _ = locker.deposit()
    number = result["compartments"][0]["number"]
    channel = locker.config.compartment(number).channel
    with locker.store.read() as tx:
        order = repo.order_by_id(tx, "SO-1")
    assert order is not None
    sent: list[tuple[str, int]] = []
    openings = openings_of(locker, sent)
    request = OpenRequest(Purpose.PICKUP, (number,), "keypad", "keypad", order.pk)
    with locker.store.transaction() as tx:
        openings.open(tx, request)
        assert sent == []  # nothing on the wire before the intent is durable
    assert sent == [("b0", channel)]
    assert see(locker, openings, number, Door.OPEN) == []
    assert see(locker, openings, number, Door.CLOSED) == [
        PhaseComplete(order.pk, Purpose.PICKUP, "keypad")
    ]
    with locker.store.read() as tx:
        after = repo.order(tx, order.pk)
    assert after is not None and after.state == OrderState.LOADED  # the caller's move


def test_a_remote_opens_door_seen_open_returns_the_commands_reply(locker: Locker) -> None:
    openings = openings_of(locker, [])
    request = OpenRequest(Purpose.REMOTE, (5,), "remote", "platform:ops", command_id="c-9")
    with locker.store.transaction() as tx:
        openings.open(tx, request)
    assert see(locker, openings, 5, Door.OPEN) == [
        CommandReply(
            "c-9", {"command_id": "c-9", "ok": True, "result": {"compartment": 5, "door": "opened"}}
        )
    ]


def test_a_door_unread_after_its_pulse_is_never_pulsed_again(locker: Locker) -> None:
    """The pulse went out, then line noise cost the board's readings, and the door opened
    and closed unseen meanwhile: a retry would open it a second time for one code. It is
    reconciled as a door unlocked before a restart instead (a pickup reported, flagged)."""
    reserved, code = locker.deposit("SO-1")
    channel = locker.config.compartment(reserved["compartments"][0]["number"]).channel
    pulses = len(locker.board.unlocks)
    assert locker.service.enter_code(code, Method.KEYPAD).outcome == "opened"
    assert len(locker.board.unlocks) == pulses + 1 and locker.board.is_open(channel)
    locker.board.offline = True  # the readings fail from here on
    locker.poll()
    locker.board.close_door(channel)  # the shopper took the goods, unseen
    locker.board.offline = False
    for _ in range(4):
        locker.advance(locker.config.doors.open_confirm_s)
    assert len(locker.board.unlocks) == pulses + 1  # never pulsed again
    (picked,) = locker.events("picked_up")
    assert picked.fields["order_id"] == "SO-1" and picked.fields["door_seen"] is False
    actions = [a.action for a in locker.store.audit_entries(50)]
    assert "unlock_not_retried" in actions and "unlock_retry" not in actions
