"""The local API under abuse: floods of connections, subscribers that never read, hostile
lines. Each test reproduces an attack on the real socket (scaled to run in seconds)."""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon
from test_api import Client as _Client

import locker.api as api_module
from drivers.sim import SimBoard
from locker.api import MAX_LINE, STREAM_QUEUE, TOO_MANY, LocalApi
from locker.events import Committed

BIN = Path(sys.executable).parent
CONFIG = (
    '[locker]\nid = "abuse-1"\ndata_dir = "data"\n[mqtt]\nenabled = false\n'
    '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
    '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
)


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A blocking connect waits while the listen backlog is full, as a kiosk's would, for at
    # most 5 s (a socket timeout would make it fail at once instead).
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    return s


class Client(_Client):
    def __init__(self, path: str) -> None:
        self.sock = _connect(path)
        self.sock.settimeout(10)
        self.file = self.sock.makefile("rb")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningDaemon]:
    (tmp_path / "locker.toml").write_text(CONFIG)
    daemon = RunningDaemon(tmp_path / "locker.toml", {"b0": SimBoard("b0", 8, door_close_s=0.1)})
    yield daemon
    daemon.stop()


def _api(running: RunningDaemon) -> LocalApi:
    api = running.locker.api
    assert api is not None
    return api


def _health(path: str) -> dict[str, Any] | None:
    """health's reply on a new connection, or None when the API does not answer."""
    try:
        c = Client(path)
    except OSError:
        return None
    try:
        return c.ask(id="h", op="health")
    except (OSError, AssertionError, ValueError):
        return None
    finally:
        c.close()


def _answered(path: str, attempts: int = 100) -> dict[str, Any] | None:
    """health's reply once connections of a flood have been let go (their threads end)."""
    for _ in range(attempts):
        reply = _health(path)
        if reply is not None and reply["ok"]:
            return reply
        threading.Event().wait(0.05)
    return None


# -- finding 2: a flood of connections ---------------------------------------------------


def _limit_to_1024() -> None:
    # systemd's default for a service (LimitNOFILE=1024 soft).
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def test_1100_connections_at_systemds_file_limit_leave_lockerd_answering(tmp_path: Path) -> None:
    (tmp_path / "locker.toml").write_text(CONFIG)
    path = str(tmp_path / "api.sock")
    journal = tmp_path / "lockerd.log"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    flood: list[socket.socket] = []
    with journal.open("w") as stderr:
        proc = subprocess.Popen(
            [BIN / "lockerd", "--config", str(tmp_path / "locker.toml")],
            stderr=stderr,
            preexec_fn=_limit_to_1024,  # noqa: PLW1509 - only setrlimit, before exec
        )
    try:
        assert _answered(path, attempts=400) is not None, journal.read_text()
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
        for _ in range(1100):
            try:
                flood.append(_connect(path))
            except OSError:  # nobody accepts any more: the backlog stays full
                break
        assert len(flood) == 1100
        assert proc.poll() is None, journal.read_text()
        # Over the cap, a newcomer is told why in one line instead of hanging.
        newcomer = Client(path)
        try:
            assert newcomer.read() == {"id": None, "ok": False, "error": TOO_MANY}
        finally:
            newcomer.close()
        with flood[-1].makefile("rb") as last:
            assert json.loads(last.readline())["error"] == TOO_MANY
        for s in flood:
            s.close()
        flood.clear()
        health = _answered(path)
        assert health is not None and health["result"]["boards"][0]["name"] == "b0"
        assert proc.poll() is None
    finally:
        for s in flood:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        proc.terminate()
        proc.wait(timeout=20)
    log = journal.read_text()
    refusals = [line for line in log.splitlines() if "local API: refused a connection" in line]
    # Told in the journal, but not once per connection.
    assert 1 <= len(refusals) <= 2, log


class _RunsOutOfDescriptors:
    """The listening socket as a process at its file limit sees it: accept() fails."""

    def __init__(self, real: socket.socket, failures: int) -> None:
        self.real = real
        self.failures = failures

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return self.real.accept()

    def close(self) -> None:
        self.real.close()


class _Journal(logging.Handler):
    """The lines one logger writes, caught on that logger itself (what the kiosk's tests
    do to the root logger in the same process cannot hide them)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> _Journal:
        self._level = self.logger.level
        self.logger.setLevel(logging.WARNING)  # whatever the root logger says
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)


def test_the_api_survives_running_out_of_descriptors_and_says_so(running: RunningDaemon) -> None:
    api = _api(running)
    with _Journal("locker.api") as journal:
        # Caught from here on: the accept thread meets the first EMFILE at once, even
        # before a client comes.
        api._server = _RunsOutOfDescriptors(api._server, failures=5)  # type: ignore[assignment]
        c = Client(api.path)  # waits in the backlog until descriptors are back
        try:
            assert c.ask(id=1, op="health")["ok"]
        finally:
            c.close()
    expected = f"local API: cannot accept a connection: [Errno 24] {os.strerror(24)}"
    assert journal.lines == [expected]


# -- finding 3: subscribers that never read ----------------------------------------------


def _subscriber(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(path)
    s.sendall(b'{"id": "s", "op": "subscribe"}\n')
    return s


def test_sixty_subscribers_that_never_read_are_closed_and_never_written_on_the_loop(
    running: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough that a stalled write is never what ends a subscriber here: the queue is.
    monkeypatch.setattr(api_module, "STALL_S", 60.0)
    writers: set[int] = set()
    send = api_module._Connection.send

    def recorded(conn: Any, data: bytes) -> None:
        writers.add(threading.get_ident())
        send(conn, data)

    monkeypatch.setattr(api_module._Connection, "send", recorded)
    api = _api(running)
    loop = running.call(threading.get_ident)
    subscribers = [_subscriber(api.path) for _ in range(60)]
    kiosk = Client(api.path)
    try:
        for _ in range(200):
            if running.call(lambda: len(api._subscribers)) == 60:
                break
            threading.Event().wait(0.05)
        # A burst of state changes, far more than a socket buffer and a queue hold.
        pad = "x" * 4000

        def burst() -> None:
            for i in range(STREAM_QUEUE * 4):
                api._broadcast(
                    {"stream": "state", "events": ["burst"], "state": {"n": i}, "p": pad}
                )

        running.locker.loop.post(burst)
        # A shopper's code is answered while sixty subscribers read nothing.
        wrong = kiosk.ask(id=1, op="code", text="12345678")["result"]
        assert wrong["outcome"] == "wrong"
        running.call(lambda: None)  # the burst is over
        assert running.call(lambda: len(api._subscribers)) == 0
        for s in subscribers:  # each is told, after what it had been sent, and closed
            lines = s.makefile("rb").readlines()
            assert json.loads(lines[0])["id"] == "s"
            assert json.loads(lines[-1]) == {"stream": "closed", "reason": "too slow"}
        assert writers and loop not in writers
        # A screen that reconnects gets its stream again.
        again = Client(api.path)
        try:
            assert again.ask(id="again", op="subscribe")["ok"]
            running.call(lambda: api.changed(Committed(("test",))))
            assert again.read()["events"] == ["test"]
        finally:
            again.close()
    finally:
        kiosk.close()
        for s in subscribers:
            s.close()


def test_a_broadcast_only_queues_and_a_full_queue_drops_the_subscriber(
    running: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_module, "STALL_S", 60.0)
    api = _api(running)
    blocked, writing = threading.Event(), threading.Event()
    send = api_module._Connection.send

    def stuck(conn: Any, data: bytes) -> None:  # a client whose buffer stays full
        if b'"stream":"state"' in data:
            writing.set()
            blocked.wait(30)
        send(conn, data)

    monkeypatch.setattr(api_module._Connection, "send", stuck)
    c = Client(api.path)
    try:
        assert c.ask(id=1, op="subscribe")["ok"]
        running.call(lambda: api._broadcast({"stream": "state", "n": 0}))
        assert writing.wait(10)  # in the writer's hands, a queue's worth behind it:
        kept = 0
        while running.call(lambda: len(api._subscribers)) == 1:
            kept += 1
            running.call(lambda i=kept: api._broadcast({"stream": "state", "n": i}))
        # Dropped when its queue was full, not before (the daemon's own changes, if any,
        # took some of the room).
        assert STREAM_QUEUE - 5 <= kept <= STREAM_QUEUE + 1
        blocked.set()
        assert c.read()["stream"] == "state"  # the line it was being written, and no other
        assert c.read() == {"stream": "closed", "reason": "too slow"}
        assert c.file.readline() == b""
    finally:
        blocked.set()
        c.close()


# -- finding 9: hostile lines ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"[" * 30000 + b"]" * 30000, "not a JSON request line: nested too deeply"),
        (
            b'{"id": ' + b"[" * 30000 + b"]" * 30000 + b', "op": "health"}',
            "not a JSON request line: nested too deeply",
        ),
        (b'{"id": 1, "op": "\\ud800"}', "not a JSON request line: a string holds a lone"),
        (b'{"id": "\\udfff", "op": "health"}', "not a JSON request line: a string holds a lone"),
        (b'{"id": 1, "op": "code", "text": "1\\ud834"}', "not a JSON request line: a string"),
        (b'{"id": NaN, "op": "health"}', "not a JSON request line"),
        (b'{"id": 1e999, "op": "health"}', "id: expected a string, a number or null"),
        (b'{"id": [1], "op": "health"}', "id: expected a string, a number or null"),
        (b'{"id": 1, "op": "health"' + b" " * MAX_LINE + b"}", "line too long"),
        (b"\xed\xa0\x80", "not a JSON request line"),  # a surrogate encoded in the bytes
    ],
    ids=[
        "deep",
        "deep-id",
        "surrogate-op",
        "surrogate-id",
        "surrogate-text",
        "nan",
        "inf",
        "list-id",
        "long",
        "raw-surrogate",
    ],
)
def test_a_hostile_line_gets_one_error_line_and_the_connection_carries_on(
    running: RunningDaemon, line: bytes, error: str
) -> None:
    c = Client(_api(running).path)
    try:
        reply = c.raw(line + b"\n")
        assert reply["ok"] is False and reply["id"] is None
        assert reply["error"].startswith(error)
        assert c.ask(id=2, op="health")["id"] == 2  # the next line is health's: nothing else
    finally:
        c.close()


def test_a_line_too_long_is_refused_once_and_its_tail_is_not_a_request(
    running: RunningDaemon,
) -> None:
    c = Client(_api(running).path)
    try:
        for _ in range(40):  # 160 KiB without a newline, as a client writing slowly sends it
            c.sock.sendall(b'{"op":"x"}' * 400)
        c.sock.sendall(b'{"id": 9, "op": "health"}\n')  # the end of that one long line
        assert c.read() == {
            "id": None,
            "ok": False,
            "error": f"line too long (at most {MAX_LINE} bytes); skipped",
        }
        assert c.ask(id=2, op="health")["id"] == 2
    finally:
        c.close()


# -- structured refusals, for screens that speak the shopper's language -------------------


def test_refusals_carry_machine_readable_fields(running: RunningDaemon) -> None:
    from locker.pin import write_pin

    write_pin(running.locker.config.pin_path, "24681357")
    c = Client(_api(running).path)
    try:
        wrong = c.ask(id=1, op="login", pin="11111111")
        assert wrong["refusal"] == {
            "outcome": "wrong",
            "attempts_left": wrong["refusal"]["attempts_left"],
            "wait_s": 0.0,
            "reason": None,
        }
        assert isinstance(wrong["refusal"]["attempts_left"], int)
        for i in range(10):
            refused = c.ask(id=2 + i, op="login", pin="11111111")
            if refused["refusal"]["outcome"] == "throttled":
                break
        assert refused["refusal"]["wait_s"] > 0 and refused["refusal"]["attempts_left"] in (
            0,
            None,
        )
        running.call(
            lambda: running.locker.store.db.execute(
                "DELETE FROM throttle WHERE terminal='technician'"
            )
        )
        token = c.ask(id=20, op="login", pin="24681357")["result"]["token"]
        unknown = c.ask(id=21, op="reissue_code", order_id="SO-NONE", token=token)
        assert unknown["code"] == "UNKNOWN_ORDER" and unknown["error"].startswith("UNKNOWN_ORDER")
        assert "refusal" not in unknown and "code" not in wrong
    finally:
        c.close()
