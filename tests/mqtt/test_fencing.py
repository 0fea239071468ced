"""Fencing (contract v1.1): a controller whose locker a newer epoch serves publishes nothing,
acknowledges no command, leaves the broker at once and never serves again; the same, a
lower or no epoch lets it serve. Real Mosquitto; the other controller shares the client id."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from standby_link import BASE, Controller, LinkRig, Observer, retained_status, send_command

from locker.codes import CodeBook, load_or_create_key
from locker.storage import Store
from simulator.broker import Broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    yield b
    b.stop()


def test_a_newer_epoch_on_the_broker_fences_the_link_before_it_says_anything(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    newer = Controller(broker.port)  # epoch 2 served this locker and left its session
    status = newer.announce(2)
    newer.close()
    send_command(broker.port, "sync", "held-1")  # queued in the session for locker-mq-1
    observer = Observer(broker.port)
    rig = LinkRig(tmp_path / "old", broker.port, epoch=1)
    # An event that would go out at once if the old controller served.
    rig.locker.service.device_failed("scanner", "unplugged")
    assert rig.locker.store.outbox_depth() == 1
    try:
        with caplog.at_level(logging.ERROR, logger="mqtt.link"):
            rig.start()
            wait_for(lambda: rig.fenced == [2], "on_fenced(2)")
        wait_for(lambda: not rig.link.client.is_connected(), "the fenced link left the broker")
        assert "controller epoch 2 took over this locker (we are epoch 1)" in caplog.text
        assert rig.call(rig.locker.store.fenced_by) == 2
        assert rig.call(rig.locker.store.outbox_depth) == 1  # never published, never acked
        assert rig.call(lambda: rig.locker.store.stored_reply("held-1")) is None  # never run
        assert not rig.link.connected
    finally:
        rig.stop()  # a clean stop of a fenced link says no goodbye
    back = Controller(broker.port)  # the real controller comes back to its session
    try:
        command = back.commands.get(timeout=10)  # never acknowledged: delivered again
        assert command.topic == f"{BASE}/cmd/sync" and b"held-1" in command.payload
        back.announce(2)  # a marker: everything sent before it has reached the observer
        wait_for(lambda: len(observer.seen("/status")) == 2, "the marker status")
        # Only the newer controller's retained status and its marker: no birth, no state,
        # no event, no reply, no heartbeat, no goodbye and no Last Will of the old one.
        assert observer.topics() == [f"{BASE}/status"] * 2
        assert observer.seen("/status")[0] == status
    finally:
        back.close()
        observer.close()
    assert retained_status(broker.port)["epoch"] == 2
    store = Store(
        rig.locker.store.path, CodeBook.from_key(load_or_create_key(rig.locker.config.key_path))
    )
    try:
        assert store.fenced_by() == 2  # it stays fenced: the daemon refuses to serve again
    finally:
        store.close()


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(1, 1), (2, 1), (1, None)],
    ids=["same-epoch", "lower-epoch", "no-epoch"],
)
def test_a_status_of_the_same_a_lower_or_no_epoch_does_not_fence(
    tmp_path: Path, broker: Broker, ours: int, theirs: int | None
) -> None:
    other = Controller(broker.port)
    other.announce(theirs)
    other.close()
    send_command(broker.port, "sync", "held-2")  # waits for the check, then runs
    observer = Observer(broker.port)
    rig = LinkRig(tmp_path / "l", broker.port, epoch=ours)
    try:
        rig.start()
        observer.wait("/reply", lambda p: p["command_id"] == "held-2")
        assert rig.fenced == [] and rig.link.connected
        assert rig.call(rig.locker.store.fenced_by) is None
        # The held command was answered only after the birth (one client: order kept).
        topics = observer.topics()
        birth = topics.index(f"{BASE}/status", 1)
        assert observer.seen("/status")[1]["epoch"] == ours
        assert birth < topics.index(f"{BASE}/reply")
    finally:
        rig.stop()
        observer.close()


def test_a_newer_epoch_that_appears_while_serving_fences_the_link(
    tmp_path: Path, broker: Broker
) -> None:
    observer = Observer(broker.port)
    rig = LinkRig(tmp_path / "l", broker.port, epoch=1)
    try:
        rig.start()
        observer.wait("/status", lambda p: p.get("online") and p["epoch"] == 1)
        assert rig.fenced == []
        # A standby took over during a network split: its status reaches the old one.
        other = Observer(broker.port)  # any client that may write the status will do
        other.client.publish(
            f"{BASE}/status", b'{"online": true, "version": "t", "epoch": 2}', qos=1, retain=True
        ).wait_for_publish(5)
        other.close()
        wait_for(lambda: rig.fenced == [2], "on_fenced(2) while serving")
        wait_for(lambda: not rig.link.client.is_connected(), "the fenced link left the broker")
        assert rig.call(rig.locker.store.fenced_by) == 2
        rig.locker.service.device_failed("scanner", "unplugged")  # must stay in the outbox
        send_command(broker.port, "sync", "after-fence")
    finally:
        rig.stop()
    assert retained_status(broker.port) == {"online": True, "version": "t", "epoch": 2}
    back = Controller(broker.port)
    try:
        assert b"after-fence" in back.commands.get(timeout=10).payload
    finally:
        back.close()
    assert not observer.seen("/event/fault")
    assert all(p.get("epoch") == 1 for p in observer.seen("/heartbeat"))
    observer.close()
