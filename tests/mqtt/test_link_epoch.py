"""Contract v1.1 on the wire: the epoch in status (birth and Last Will), heartbeat and every
event; the machine's health in the heartbeat; events held until the replica has them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from standby_link import LinkRig, Observer, send_reserve

from mqtt.schemas import problems
from simulator.broker import Broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    yield b
    b.stop()


def test_the_epoch_is_in_the_birth_the_heartbeat_every_event_and_the_last_will(
    tmp_path: Path, broker: Broker
) -> None:
    observer = Observer(broker.port)
    health = {"replica_lag_s": 0.0, "disk_free_mb": 900, "cpu_temp_c": 48.5, "undervoltage": False}
    rig = LinkRig(tmp_path / "l", broker.port, epoch=3, health_fields=lambda: health)
    try:
        rig.start()
        birth = observer.wait("/status", lambda p: p.get("online") is True)
        assert birth["epoch"] == 3 and problems("status", birth) == []
        rig.call(lambda: rig.locker.service.device_failed("scanner", "unplugged"))
        event = observer.wait("/event/fault")
        assert event["epoch"] == 3 and problems("event-fault", event) == []
        beat = observer.wait("/heartbeat")
        assert beat["epoch"] == 3 and problems("heartbeat", beat) == []
        assert {k: beat[k] for k in health} == health
        # The broker loses the connection without a DISCONNECT: it sends the Last Will.
        sock = rig.link.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        will = observer.wait("/status", lambda p: p.get("online") is False)
        assert will == {"online": False, "epoch": 3} and problems("status", will) == []
        # paho reconnects: the locker checks the status again and is born again.
        wait_for(lambda: len(observer.seen("/status", lambda p: p.get("online"))) == 2, "rebirth")
        assert rig.fenced == []
    finally:
        rig.stop()
    goodbye = observer.seen("/status")[-1]
    assert goodbye == {"online": False, "epoch": 3}  # the clean stop's
    observer.close()


def test_the_heartbeat_omits_what_the_health_callable_omits(tmp_path: Path, broker: Broker) -> None:
    observer = Observer(broker.port)
    fields: dict[str, Any] = {"disk_free_mb": 12}
    rig = LinkRig(tmp_path / "l", broker.port, health_fields=lambda: fields)
    try:
        rig.start()
        beat = observer.wait("/heartbeat")
        assert beat["disk_free_mb"] == 12 and beat["epoch"] == 1
        assert not {"replica_lag_s", "cpu_temp_c", "undervoltage"} & beat.keys()
        assert problems("heartbeat", beat) == []
        fields.update(undervoltage=True, outbox=-1)  # a v1 field is never replaced
        beat = observer.wait("/heartbeat", lambda p: "undervoltage" in p)
        assert beat["undervoltage"] is True and beat["outbox"] >= 0
    finally:
        rig.stop()
        observer.close()


def test_events_wait_for_the_publish_limit_and_go_when_it_rises(
    tmp_path: Path, broker: Broker
) -> None:
    limit: list[int | None] = [3]
    observer = Observer(broker.port)
    rig = LinkRig(tmp_path / "l", broker.port, publish_limit=lambda: limit[0])
    svc = rig.locker.service
    for _ in range(3):  # six events, seq 1..6, before the link starts
        svc.device_failed("scanner", "unplugged")
        svc.device_ok("scanner")
    assert [e.seq for e in rig.locker.store.events()] == [1, 2, 3, 4, 5, 6]

    def seqs() -> list[int]:
        return [p["seq"] for p in observer.seen("", lambda p: isinstance(p, dict) and "seq" in p)]

    def heartbeats() -> int:
        return len(observer.seen("/heartbeat"))

    try:
        rig.start()
        wait_for(lambda: seqs() == [1, 2, 3], "events 1-3")
        # Every heartbeat follows a turn that would have published a released event.
        beats = heartbeats()
        wait_for(lambda: heartbeats() >= beats + 2, "two more heartbeats")
        assert seqs() == [1, 2, 3]
        wait_for(lambda: rig.call(rig.locker.store.outbox_depth) == 3, "1-3 acknowledged")
        limit[0] = 5  # the replica caught up; no new commit
        wait_for(lambda: seqs() == [1, 2, 3, 4, 5], "events 4 and 5")
        beats = heartbeats()
        wait_for(lambda: heartbeats() >= beats + 2, "two more heartbeats")
        assert seqs() == [1, 2, 3, 4, 5]
        limit[0] = None  # the replica failed for longer than events_wait_s: no limit
        wait_for(lambda: seqs() == [1, 2, 3, 4, 5, 6], "event 6")
        assert all(p["epoch"] == 1 for p in observer.seen("/event/", lambda p: True))
        wait_for(lambda: rig.call(rig.locker.store.outbox_depth) == 0, "every event acknowledged")
    finally:
        rig.stop()
        observer.close()


def test_a_reply_waits_until_the_replica_holds_its_commit(tmp_path: Path, broker: Broker) -> None:
    """A reservation answered to the platform is on the replica first: a standby promoted
    from it knows the compartment and the deposit code the platform was given."""
    holds: list[int | None] = [0]
    observer = Observer(broker.port)
    rig = LinkRig(tmp_path / "l", broker.port, reply_limit=lambda: holds[0])
    try:
        rig.start()
        wait_for(lambda: bool(observer.seen("/status")), "the link serving")
        send_reserve(broker.port, "r-1")
        wait_for(
            lambda: rig.call(lambda: rig.locker.store.commits) > 0, "the reservation committed"
        )
        needed = rig.call(lambda: rig.locker.store.commits)
        beats = len(observer.seen("/heartbeat"))
        wait_for(lambda: len(observer.seen("/heartbeat")) >= beats + 2, "two more heartbeats")
        assert observer.seen("/reply") == []  # the replica does not hold it yet
        holds[0] = needed - 1
        beats = len(observer.seen("/heartbeat"))
        wait_for(lambda: len(observer.seen("/heartbeat")) >= beats + 2, "two more heartbeats")
        assert observer.seen("/reply") == []
        holds[0] = needed  # the copy holding the reservation landed
        reply = observer.wait("/reply")
        assert reply["command_id"] == "r-1" and reply["ok"], reply
    finally:
        rig.stop()
        observer.close()
