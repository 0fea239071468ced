"""The real daemon over real ptys against the byte-level simulated cabinet.

`locker-sim boards` builds the cabinet (`simulator.console.Cabinet`): Kerong
CU48 boards and a serial scanner on ptys, and the daemon configuration that
points at them. The daemon runs unchanged: as a `lockerd` process where the
scanner is its only input, and in-process (the same `build()` and loop) where
a test needs to play the platform too.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.bus import forget_bus
from locker.clock import SystemClock, rfc3339
from locker.codes import CodeBook, load_or_create_key
from locker.commands import CommandProcessor
from locker.config import load_config
from locker.daemon import Locker, LoopThread, build
from locker.model import Method
from locker.storage import Store, StoredEvent
from simulator.console import Cabinet

BIN = Path(sys.executable).parent


def wait_for(check: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.02)


class Running:
    """The daemon's build() and loop in a thread, as lockerd runs them."""

    def __init__(self, cabinet: Cabinet) -> None:
        # Short timings keep the test quick; the logic is the same.
        text = cabinet.config_path.read_text()
        if "[doors]" not in text:
            cabinet.config_path.write_text(
                text + "\n[doors]\nopen_confirm_s = 0.5\nopen_alarm_s = 2\npoll_ms = 50\n"
            )
        config = load_config(cabinet.config_path)
        self.config = config
        self.locker: Locker = build(config, SystemClock())
        self.commands = CommandProcessor(self.locker.service)
        self.thread = LoopThread(self.locker, inputs=False)

    def call(self, fn: Callable[[], object]) -> object:
        """Run `fn` on the loop thread and return its result (as other threads must)."""
        return self.thread.call(fn)

    def command(self, name: str, **fields: object) -> dict[str, object]:
        payload = {
            "command_id": f"{name}-{time.time_ns()}",
            "sent_at": rfc3339(time.time()),
            **fields,
        }
        reply = self.call(lambda: self.commands.handle(name, json.dumps(payload)))
        assert isinstance(reply, dict)
        return reply

    def events(self, type_: str) -> list[StoredEvent]:
        evs = self.call(lambda: self.locker.store.events(limit=10_000))
        assert isinstance(evs, list)
        return [e for e in evs if e.type == type_]

    def stop(self) -> None:
        self.thread.stop()
        for b in self.config.boards:
            forget_bus(b.options["port"])


@pytest.fixture
def cabinet(tmp_path: Path) -> Iterator[Cabinet]:
    cab = Cabinet(tmp_path / "cabinet", cu48=2, scanner=True, door_close_s=0.0)
    yield cab
    cab.close()


@pytest.fixture
def running(cabinet: Cabinet) -> Iterator[Running]:
    run = Running(cabinet)
    yield run
    run.stop()


def test_jam_forced_left_open_over_the_wire(cabinet: Cabinet, running: Running) -> None:
    reply = running.command("reserve", order_id="SO-J", items=[{"sku": "1", "qty": 1, "size": "S"}])
    assert reply["ok"], reply
    number = reply["result"]["compartments"][0]["number"]  # type: ignore[index]
    cabinet.run(f"jam {number}")
    code = reply["result"]["deposit_code"]  # type: ignore[index]
    running.call(lambda: running.locker.service.enter_code(code, Method.KEYPAD))
    wait_for(lambda: running.events("door_alarm"), what="jammed alarm")
    [alarm] = running.events("door_alarm")
    assert alarm.fields == {"compartment": number, "kind": "jammed", "order_id": "SO-J"}
    # the lock pulses went over the wire: 1 + unlock_retries (2) frames
    unlocks = [f for f in cabinet.buses[0].device.received if len(f) == 6 and f[3] == 0x51]
    assert len(unlocks) == 3
    cabinet.run("force 60")
    wait_for(lambda: len(running.events("door_alarm")) == 2, what="forced alarm")
    assert running.events("door_alarm")[1].fields == {"compartment": 60, "kind": "forced"}
    wait_for(lambda: len(running.events("door_alarm")) == 3, timeout=5, what="left open")
    assert running.events("door_alarm")[2].fields == {"compartment": 60, "kind": "left_open"}


def test_board_unplugged_and_back_and_bad_replies(cabinet: Cabinet, running: Running) -> None:
    t = time.monotonic()
    cabinet.run("unplug cu48-1")
    # one board off the bus: its compartments go to fault, its neighbour's serve on
    wait_for(lambda: len(running.events("fault")) == 1, what="fault")
    assert time.monotonic() - t < 2.0  # "within 2 s"
    [fault] = running.events("fault")
    assert (fault.fields["component"], fault.fields["board"]) == ("board", "cu48-1")
    assert fault.fields["compartments"] == list(range(49, 97))
    snapshot = running.call(running.locker.service.snapshot)
    assert isinstance(snapshot, dict)
    states = {c["number"]: c["state"] for c in snapshot["compartments"]}
    assert {states[n] for n in range(49, 97)} == {"fault"}
    assert "fault" not in {states[n] for n in range(1, 49)}
    cabinet.run("plug cu48-1")
    wait_for(lambda: len(running.events("fault_cleared")) == 1, what="fault cleared")
    # the bus cut: both boards on it go to fault
    cabinet.run("unplug-bus cu48-0")
    wait_for(lambda: len(running.events("fault")) == 3, what="fault of the whole bus")
    faults = running.events("fault")[1:]
    assert {(f.fields["component"], f.fields["board"]) for f in faults} == {
        ("board", "cu48-0"),
        ("board", "cu48-1"),
    }
    cabinet.run("plug-bus cu48-0")
    wait_for(lambda: len(running.events("fault_cleared")) == 3, what="bus back")
    # corrupted and missing replies are retried by the transport: no fault
    cabinet.run("fault cu48-0 bad-checksum 1")
    cabinet.run("fault cu48-0 no-reply 1")
    time.sleep(0.5)
    assert len(running.events("fault")) == 3


def test_restart_with_an_unlock_in_flight_is_not_re_sent(cabinet: Cabinet) -> None:
    run = Running(cabinet)
    try:
        reply = run.command("reserve", order_id="SO-R", items=[{"sku": "1", "qty": 1, "size": "S"}])
        code = reply["result"]["deposit_code"]  # type: ignore[index]
        cabinet.run("unplug cu48-0")  # the unlock frame is lost on the wire
        run.call(lambda: run.locker.service.enter_code(code, Method.KEYPAD))
    finally:
        run.stop()  # the daemon stops with the intent committed, the door never seen open
    cabinet.run("plug cu48-0")
    before = len(cabinet.buses[0].device.received)
    run2 = Running(cabinet)
    try:
        time.sleep(1.5)  # longer than open_confirm_s
        frames = cabinet.buses[0].device.received[before:]
        assert not [f for f in frames if len(f) == 6 and f[3] == 0x51]  # no unlock re-sent
        assert run2.events("deposited") == []
    finally:
        run2.stop()


@pytest.mark.slow
def test_lockerd_process_deposit_and_pickup_by_the_serial_scanner(cabinet: Cabinet) -> None:
    """The real lockerd process; the platform's reservation is made before it starts."""
    cabinet.config_path.write_text(cabinet.config_path.read_text() + "\n[doors]\npoll_ms = 50\n")
    config = load_config(cabinet.config_path)
    seed = build(config, SystemClock())
    reply = CommandProcessor(seed.service).handle(
        "reserve",
        json.dumps(
            {
                "command_id": "c1",
                "sent_at": rfc3339(time.time()),
                "order_id": "SO-E2E",
                "items": [{"sku": "1", "qty": 1, "size": "S"}],
            }
        ),
    )
    seed.close()
    for b in config.boards:
        forget_bus(b.options["port"])
    assert reply is not None and reply["ok"]
    deposit_code = reply["result"]["deposit_code"]
    number = reply["result"]["compartments"][0]["number"]

    proc = subprocess.Popen(
        [BIN / "lockerd", "--config", str(cabinet.config_path)], stderr=subprocess.PIPE, text=True
    )
    store = Store(
        config.locker.data_dir / "locker.db", CodeBook.from_key(load_or_create_key(config.key_path))
    )
    try:

        def events(type_: str) -> list[StoredEvent]:
            return [e for e in store.events(limit=1000) if e.type == type_]

        time.sleep(1.0)
        cabinet.run(f"scan locker:{config.locker.id}:deposit:{deposit_code}")
        wait_for(
            lambda: cabinet.compartments[number].sim.is_open(cabinet.compartments[number].channel),
            what="deposit door open",
        )
        time.sleep(0.3)
        cabinet.run(f"close {number}")
        wait_for(lambda: events("deposited"), what="deposited")
        pickup = events("deposited")[0].fields["pickup_code"]
        cabinet.run(f"scan {pickup}")
        wait_for(
            lambda: cabinet.compartments[number].sim.is_open(cabinet.compartments[number].channel),
            what="pickup door open",
        )
        time.sleep(0.3)
        cabinet.run(f"close {number}")
        wait_for(lambda: events("picked_up"), what="picked_up")
        assert events("picked_up")[0].fields["method"] == "scanner"
    finally:
        store.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
