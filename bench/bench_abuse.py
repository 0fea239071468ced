"""Figures for lockerd under abuse (printed only, nothing asserted; the counts and bounds
are asserted by tests/locker/test_abuse_*.py):

- wrong codes: 10,000 at the keypad over the local API and 10,000 at the serial scanner
  (a pty), each answered (wrong or throttled): codes a second, and unlocks (0);
- lockerd's resident memory (VmRSS, /proc) warm, and its peak with 1,000 connections held
  open, ten 10 MB request lines at once, sixty stream subscribers that never read while
  the doors change; beside each, a kiosk's code request meanwhile (request -> reply).

The real lockerd process with systemd's file limit (1024) on a simulated CU48 board.

Run: .venv/bin/python bench/bench_abuse.py
"""

from __future__ import annotations

import json
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from figures import pct  # noqa: E402  (bench/, beside this script)

from simulator.console import Cabinet  # noqa: E402

BIN = Path(sys.executable).parent
MB = 1024 * 1024


class Client:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")

    def ask(self, **req: Any) -> dict[str, Any]:
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        reply: dict[str, Any] = json.loads(self.file.readline())
        return reply

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Peak:
    def __init__(self, pid: int) -> None:
        self.pid, self.kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.kb = max(self.kb, rss_kb(self.pid))
            self._stop.wait(0.002)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.kb, rss_kb(self.pid))


class Kiosk:
    """Asks a wrong code every 20 ms on its own connection while `abuse` runs."""

    def __init__(self, path: str) -> None:
        self.client = Client(path)
        self.ms: list[float] = []

    def during(self, abuse: Callable[[], None]) -> None:
        done = threading.Event()

        def ask() -> None:
            n = 0
            while not done.is_set():
                t0 = time.perf_counter()
                self.client.ask(id=n, op="code", text="55550000")
                self.ms.append((time.perf_counter() - t0) * 1000)
                n += 1
                done.wait(0.02)

        t = threading.Thread(target=ask)
        t.start()
        try:
            abuse()
        finally:
            done.set()
            t.join()


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def start(folder: Path, scanner: bool) -> tuple[Cabinet, subprocess.Popen[bytes], str]:
    cab = Cabinet(folder, cu48=1, scanner=scanner, locker_id="bench-abuse")
    path = str(cab.folder / "api.sock")
    proc = subprocess.Popen(
        [BIN / "lockerd", "--config", str(cab.config_path), "--log-level", "ERROR"],
        preexec_fn=_limit,  # noqa: PLW1509 - only setrlimit, before exec
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            Client(path).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return cab, proc, path


def stop(cab: Cabinet, proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(20)
    cab.close()


def wrong_codes(tmp: Path) -> None:
    cab, proc, path = start(tmp / "codes", scanner=True)
    try:
        c = Client(path)
        t0 = time.perf_counter()
        outcomes = [
            c.ask(id=i, op="code", text=f"{i:08d}")["result"]["outcome"] for i in range(10_000)
        ]
        keypad_s = time.perf_counter() - t0
        c.close()
        print(
            f"10,000 wrong codes at the keypad (API, one connection): {10_000 / keypad_s:,.0f}/s;"
            f" wrong {outcomes.count('wrong')}, throttled {outcomes.count('throttled')}"
        )
        stream = Client(path)
        stream.ask(id="s", op="subscribe")
        assert cab.scanner is not None
        t0 = time.perf_counter()
        # In batches of 200: the kiosk's stream holds 256 lines before it is dropped.
        entries = 0
        for batch in range(0, 10_000, 200):
            for i in range(batch, batch + 200):
                cab.scanner.scan(f"{i:08d}")
            while entries < batch + 200:
                line = stream.file.readline()
                if not line:
                    raise SystemExit("the stream was closed: the bench fell behind it")
                entries += json.loads(line).get("stream") == "entry"
        scanner_s = time.perf_counter() - t0
        stream.close()
        unlocks = sum(len(s.unlocks) for s in cab.sims.values())
        print(
            f"10,000 wrong codes at the serial scanner (pty, 19200-baud board beside it):"
            f" {10_000 / scanner_s:,.0f}/s answered on the kiosk's stream; unlocks: {unlocks}"
        )
    finally:
        stop(cab, proc)


def memory(tmp: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    cab, proc, path = start(tmp / "mem", scanner=False)
    try:
        kiosk = Kiosk(path)
        for n in range(100):
            kiosk.client.ask(id=n, op="snapshot")
        base = rss_kb(proc.pid)
        print(f"lockerd VmRSS warm (API served, no abuse): {base / 1024:.1f} MB")

        def row(name: str, peak_kb: int, ms: list[float]) -> None:
            print(
                f"  {name:<48} peak {peak_kb / 1024:6.1f} MB (+{(peak_kb - base) / 1024:4.1f});"
                f" kiosk code p50 {pct(ms, 0.5):5.1f} ms, max {max(ms):6.1f} ms (n={len(ms)})"
            )

        held: list[socket.socket] = []

        def connections() -> None:
            for _ in range(1000):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
                s.connect(path)
                held.append(s)
            time.sleep(1)

        for name, abuse in [("1,000 connections held open", connections)]:
            peak, kiosk.ms = Peak(proc.pid), []
            kiosk.during(abuse)
            row(name, peak.stop(), kiosk.ms)
        for s in held:
            s.close()
        time.sleep(1)

        def long_lines() -> None:
            senders = [Client(path) for _ in range(10)]
            chunk = b'{"op": "health", "pad": "' + b"x" * (MB - 26)

            def send(c: Client) -> None:
                for _ in range(10):
                    c.sock.sendall(chunk)
                c.sock.sendall(b'"}\n')
                c.file.readline()

            threads = [threading.Thread(target=send, args=(c,)) for c in senders]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for c in senders:
                c.close()

        peak, kiosk.ms = Peak(proc.pid), []
        kiosk.during(long_lines)
        row("ten 10 MB lines at once", peak.stop(), kiosk.ms)

        stalled = []
        for _ in range(60):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(path)
            s.sendall(b'{"id": "s", "op": "subscribe"}\n')
            stalled.append(s)

        def doors() -> None:
            for i in range(200):
                cab.run(f"{'force' if i % 2 == 0 else 'close'} {i // 2 % 48 + 1}")
                time.sleep(0.05)

        peak, kiosk.ms = Peak(proc.pid), []
        kiosk.during(doors)
        row("60 subscribers never reading, 200 door changes", peak.stop(), kiosk.ms)
        for s in stalled:
            s.close()
        kiosk.client.close()
    finally:
        stop(cab, proc)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-abuse-"))
    wrong_codes(tmp)
    memory(tmp)


if __name__ == "__main__":
    main()
