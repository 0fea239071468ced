"""Shared fixtures: a whole locker on a simulated board, a fake clock, a real SQLite file."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers.sim import SimBoard
from locker.clock import FakeClock, rfc3339
from locker.codes import CodeBook, load_or_create_key
from locker.commands import CommandProcessor
from locker.config import Config, parse_config
from locker.loop import Loop
from locker.model import Method
from locker.service import CodeResult, Service
from locker.storage import Store, StoredEvent


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Wait until `condition` holds (polled; no timing is asserted), or fail naming it."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)


def locker_config(tmp_path: Path, **sections: Mapping[str, Any]) -> Config:
    """A config like the example's, with sections overridden by the test."""
    data: dict[str, Any] = {
        "locker": {"id": "store-001-a", "data_dir": str(tmp_path / "data")},
        "boards": [{"name": "b0", "driver": "sim", "door_close_s": 0}],
        "compartments": [
            {"numbers": "1-2", "channels": "1-2", "board": "b0", "size": "S", "low": True},
            {"numbers": "3-8", "channels": "3-8", "board": "b0", "size": "S"},
            {"numbers": "9-12", "channels": "9-12", "board": "b0", "size": "M"},
            {"numbers": "13-14", "channels": "13-14", "board": "b0", "size": "L"},
        ],
    }
    for name, value in sections.items():
        if isinstance(value, Mapping) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    return parse_config(data, tmp_path / "locker.toml")


@dataclass
class Locker:
    """A started service with its board, clock and command processor, for tests."""

    config: Config
    clock: FakeClock
    board: SimBoard
    store: Store
    service: Service
    commands: CommandProcessor
    loop: Loop
    replies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _n: int = 0

    def poll(self) -> None:
        """What the daemon's loop does: read the boards, hand changes over, fire timers."""
        self.loop.poll_boards(force=True)
        self.service.tick()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.poll()

    def command(self, name: str, **fields: Any) -> dict[str, Any] | None:
        self._n += 1
        payload = {"command_id": f"c-{self._n}", "sent_at": rfc3339(self.clock.now()), **fields}
        return self.commands.handle(name, json.dumps(payload))

    def reserve(self, order_id: str = "SO-1", **fields: Any) -> dict[str, Any]:
        fields.setdefault("items", [{"sku": "1", "qty": 1, "fresh": False, "size": "S"}])
        reply = self.command("reserve", order_id=order_id, **fields)
        assert reply is not None
        return reply

    def code(self, text: str, method: Method = Method.KEYPAD) -> CodeResult:
        result = self.service.enter_code(text, method)
        self.poll()
        return result

    def open_close(self, *numbers: int) -> None:
        """A person opens the unlocked doors and closes them again."""
        for n in numbers:
            channel = self.config.compartment(n).channel
            assert self.board.is_open(channel), f"compartment {n} was not unlocked"
        self.poll()
        for n in numbers:
            self.board.close_door(self.config.compartment(n).channel)
        self.poll()

    def events(self, type_: str | None = None) -> list[StoredEvent]:
        out = self.store.events(limit=100_000)
        return [e for e in out if type_ is None or e.type == type_]

    def deposit(self, order_id: str = "SO-1", **fields: Any) -> tuple[dict[str, Any], str]:
        """Reserve and load an order; returns the reserve result and the pickup code."""
        reply = self.reserve(order_id, **fields)
        assert reply["ok"], reply
        result = reply["result"]
        opened = self.code(result["deposit_code"])
        assert opened.outcome == "opened", opened
        self.open_close(*opened.compartments)
        deposited = [e for e in self.events("deposited") if e.fields["order_id"] == order_id]
        return result, deposited[-1].fields["pickup_code"]


def start_locker(
    tmp_path: Path, clock: FakeClock | None = None, board: SimBoard | None = None, **sections: Any
) -> Locker:
    config = locker_config(tmp_path, **sections)
    config.locker.data_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or FakeClock()
    store = Store(
        config.locker.data_dir / "locker.db", CodeBook.from_key(load_or_create_key(config.key_path))
    )
    board = board or SimBoard("b0", channels=48, door_close_s=0, monotonic=clock.monotonic)
    service = Service(config, store, {"b0": board}, clock)
    service.start()
    locker = Locker(
        config,
        clock,
        board,
        store,
        service,
        CommandProcessor(service),
        Loop(service, {"b0": board}),
    )
    service.hub.unlock_sent.subscribe(locker.loop.expedite)
    service.hub.command_answered.subscribe(
        lambda answered: locker.replies.append((answered.command_id, answered.reply))
    )
    locker.poll()
    return locker


@pytest.fixture
def locker(tmp_path: Path) -> Iterator[Locker]:
    lk = start_locker(tmp_path)
    yield lk
    lk.store.close()


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running (a poller or client not stopped)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for t in leaked:
        t.join(timeout=2)
    leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"test leaked threads: {leaked}"


class RunningDaemon:
    """lockerd's own build() and loop, run in a thread as `lockerd` runs them (for tests that
    also need to reach inside: the simulated board, the store)."""

    def __init__(
        self, config_path: Path, boards: Mapping[str, Any] | None = None, clock: Any = None
    ) -> None:
        from locker.clock import SystemClock
        from locker.config import load_config
        from locker.daemon import LoopThread, build

        self.locker = build(load_config(config_path), clock or SystemClock(), boards)
        self.thread = LoopThread(self.locker)

    def call(self, fn: Any) -> Any:
        """Run `fn` on the loop thread (where all state lives) and return its result."""
        return self.thread.call(fn)

    def stop(self) -> None:
        self.thread.stop()


def reserve_on_loop(locker: Any, order_id: str) -> str:
    """The platform reserves one small order, on the running daemon's loop as the MQTT
    link would; returns the deposit code."""
    import json
    import time

    from locker.clock import rfc3339
    from locker.commands import CommandProcessor
    from locker.loop import call_on

    payload = {
        "command_id": f"r-{order_id}",
        "sent_at": rfc3339(time.time()),
        "order_id": order_id,
        "items": [{"sku": "1", "qty": 1, "size": "S"}],
    }
    reply = call_on(
        locker.loop.post,
        lambda: CommandProcessor(locker.service).handle("reserve", json.dumps(payload)),
        timeout=10,
    )
    code: str = reply["result"]["deposit_code"]
    return code
