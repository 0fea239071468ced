"""lockerd's memory under abuse of its local API, measured on the process (VmRSS from
/proc) against its own baseline: 1,000 connections held open, 10 MB request lines, and
subscribers that never read their stream while the doors keep changing. Meanwhile a
kiosk (a request connection and a stream, opened before the abuse as the real one is)
keeps being answered.

The real lockerd process with systemd's file limit, a simulated CU48 board on a pty.
Bounds are a margin over the baseline, never a time.
"""

from __future__ import annotations

import json
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
from conftest import wait_for
from test_api import Client

from locker.api import MAX_LINE, TOO_MANY
from simulator.console import Cabinet

BIN = Path(sys.executable).parent
MARGIN_KB = 30 * 1024  # what the abuse may add to lockerd's resident memory at most
MB = 1024 * 1024


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


class Peak:
    """The highest VmRSS of a process while the block runs (sampled in a thread)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.kb = max(self.kb, rss_kb(self.pid))
            self._stop.wait(0.002)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.kb = max(self.kb, rss_kb(self.pid))


class Stream:
    """The kiosk's stream connection, read in a thread: every line it is sent."""

    def __init__(self, path: str) -> None:
        self.client = Client(path)
        self.client.sock.settimeout(None)
        self.lines: list[dict[str, Any]] = []
        self.client.sock.sendall(b'{"id": "kiosk", "op": "subscribe"}\n')
        self._thread = threading.Thread(target=self._read)
        self._thread.start()

    def _read(self) -> None:
        for raw in self.client.file:
            self.lines.append(json.loads(raw))

    def states(self) -> int:
        return sum(1 for line in self.lines if line.get("stream") == "state")

    def close(self) -> None:
        self.client.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self.client.close()


def _systemd_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@pytest.fixture
def lockerd(tmp_path: Path) -> Iterator[tuple[Cabinet, subprocess.Popen[bytes], str]]:
    cab = Cabinet(tmp_path / "cab", cu48=1, scanner=False, locker_id="abuse-mem")
    path = str(cab.folder / "api.sock")
    with (tmp_path / "lockerd.log").open("w") as log:
        proc = subprocess.Popen(
            [BIN / "lockerd", "--config", str(cab.config_path)],
            stderr=log,
            preexec_fn=_systemd_file_limit,  # noqa: PLW1509 - only setrlimit, before exec
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))  # ours, for the flood
    try:
        wait_for(lambda: _answers(path), "lockerd answering on its socket", timeout=30)
        yield cab, proc, path
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        proc.terminate()
        proc.wait(20)
        cab.close()


def _answers(path: str) -> bool:
    try:
        c = Client(path)
    except OSError:
        return False
    try:
        return bool(c.ask(id="h", op="health")["ok"])
    except (OSError, AssertionError, ValueError):
        return False
    finally:
        c.close()


def _kiosk_code(kiosk: Client, n: int) -> str:
    reply = kiosk.ask(id=n, op="code", text=f"5555{n:04d}")
    assert reply["ok"] and reply["id"] == n, reply
    return str(reply["result"]["outcome"])


def _baseline(pid: int, kiosk: Client) -> int:
    """lockerd's resident memory once warm: requests served, a stream open."""
    for n in range(50):
        kiosk.ask(id=n, op="snapshot")
    kiosk.ask(id="h", op="health")
    return rss_kb(pid)


def test_a_thousand_connections_held_open_keep_memory_bounded_and_the_kiosk_served(
    lockerd: tuple[Cabinet, subprocess.Popen[bytes], str],
) -> None:
    _, proc, path = lockerd
    kiosk, stream = Client(path), Stream(path)
    held: list[socket.socket] = []
    try:
        base = _baseline(proc.pid, kiosk)
        with Peak(proc.pid) as peak:
            for _ in range(1000):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                held.append(s)
                # A blocking connect waits while the backlog is full, as a kiosk's would
                # (a socket timeout would make it fail at once instead), for 5 s at most.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
                s.connect(path)
            # Past the cap a newcomer is told so; the kiosk's own connections go on.
            assert _kiosk_code(kiosk, 1) in ("wrong", "throttled")
            held[-1].settimeout(10)
            with held[-1].makefile("rb") as last:
                assert json.loads(last.readline())["error"] == TOO_MANY
        assert proc.poll() is None
        assert peak.kb < base + MARGIN_KB, f"baseline {base} kB, peak {peak.kb} kB"
        for s in held:
            s.close()
        held.clear()
        wait_for(lambda: _answers(path), "a new connection served once the flood is gone")
        assert stream.lines[0]["id"] == "kiosk"  # the stream was never cut
    finally:
        for s in held:
            s.close()
        kiosk.close()
        stream.close()


def test_ten_megabyte_lines_are_refused_without_being_held_in_memory(
    lockerd: tuple[Cabinet, subprocess.Popen[bytes], str],
) -> None:
    _, proc, path = lockerd
    kiosk = Client(path)
    senders = [Client(path) for _ in range(10)]
    try:
        base = _baseline(proc.pid, kiosk)
        chunk = b'{"op": "health", "pad": "' + b"x" * (MB - 26)
        with Peak(proc.pid) as peak:
            # Ten clients each write a 10 MB line at once (100 MB in flight): half of it,
            # the kiosk asks, then the rest and the line's end.
            def send(c: Client, part: range) -> None:
                for _ in part:
                    c.sock.sendall(chunk)

            for part in (range(5), range(5, 10)):
                threads = [threading.Thread(target=send, args=(c, part)) for c in senders]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                assert _kiosk_code(kiosk, len(part)) in ("wrong", "throttled")
            for c in senders:
                c.sock.sendall(b'"}\n')
            for c in senders:
                assert c.read()["error"] == f"line too long (at most {MAX_LINE} bytes); skipped"
                assert c.ask(id=2, op="health")["id"] == 2  # the connection carries on
        assert proc.poll() is None
        assert peak.kb < base + MARGIN_KB, f"baseline {base} kB, peak {peak.kb} kB"
    finally:
        kiosk.close()
        for c in senders:
            c.close()


def _never_reads(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(path)
    s.sendall(b'{"id": "s", "op": "subscribe"}\n')
    return s


def test_subscribers_that_never_read_are_dropped_memory_bounded_and_the_kiosk_served(
    lockerd: tuple[Cabinet, subprocess.Popen[bytes], str],
) -> None:
    cab, proc, path = lockerd
    kiosk, stream = Client(path), Stream(path)
    # The API's cap is 64 connections: the kiosk holds two, sixty never read.
    stalled = [_never_reads(path) for _ in range(60)]
    try:
        base = _baseline(proc.pid, kiosk)
        with Peak(proc.pid) as peak:
            # Doors forced and closed: a state line for every stream, for longer than the
            # API waits on a client that takes none of its bytes (STALL_S).
            for i in range(120):
                before = stream.states()
                cab.run(f"{'force' if i % 2 == 0 else 'close'} {i // 2 % 48 + 1}")
                wait_for(lambda b=before: stream.states() > b, f"state line {i} at the kiosk")
            assert _kiosk_code(kiosk, 1) in ("wrong", "throttled")
        assert proc.poll() is None
        assert peak.kb < base + MARGIN_KB, f"baseline {base} kB, peak {peak.kb} kB"
        for s in stalled:  # each was closed by lockerd, after whole lines only
            with s.makefile("rb") as f:
                lines = f.readlines()
            assert lines and all(line.endswith(b"\n") for line in lines)
            assert json.loads(lines[0])["id"] == "s"
            assert len(lines) < 120  # dropped, not sent every change
            last = json.loads(lines[-1])
            assert last.get("stream") in ("state", "closed"), last  # stalled, or too slow
        assert not [line for line in stream.lines if line.get("stream") == "closed"]
    finally:
        for s in stalled:
            s.close()
        kiosk.close()
        stream.close()


def test_the_camera_forgets_codes_out_of_sight(monkeypatch: pytest.MonkeyPatch) -> None:
    from drivers import camera

    shown = iter(range(1_000_000))
    monkeypatch.setattr(camera, "decode", lambda frame: [f"locker:x:pickup:{next(shown):08d}"])
    handed: list[str] = []
    scanner = camera.CameraScanner(camera.FolderSource.__new__(camera.FolderSource), handed.append)
    for i in range(10_000):  # a distinct QR every 50 ms for 500 s
        scanner.feed(None, i * 0.05)  # type: ignore[arg-type]  # decode is replaced
    assert len(handed) == 10_000
    # What it must remember: the codes seen within repeat_after_s (3 s), 60 of them here.
    assert len(scanner._last_seen) <= 2 * 3.0 / 0.05
