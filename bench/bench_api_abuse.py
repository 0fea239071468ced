"""Figures for the local API under abuse (printed only, nothing asserted):

- a wrong keypad code over the API while 60 subscribers never read their stream and the
  locker produces 1,000 state changes a second: request -> reply, p50/p99/max;
- the loop's own round trip (a job posted from another thread, run, answered) meanwhile,
  which is what the watchdog ping and the door polls wait behind;
- 1,100 connections opened at once: how many were served, how many refused with the
  error line, and a `health` request once they are closed.

Run: .venv/bin/python bench/bench_api_abuse.py
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from figures import pct  # noqa: E402  (bench/, beside this script)

from drivers.sim import SimBoard  # noqa: E402
from kiosk_ui.client import ApiClient  # noqa: E402
from locker.clock import SystemClock  # noqa: E402
from locker.config import parse_config  # noqa: E402
from locker.daemon import LoopThread, build  # noqa: E402
from locker.events import Committed  # noqa: E402

SUBSCRIBERS = 60
CHANGES_PER_S = 1000
N = 300


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
    s.connect(path)
    return s


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-abuse-"))
    config = parse_config(
        {
            "locker": {"id": "bench", "data_dir": str(tmp)},
            "mqtt": {"enabled": False},
            "api": {"socket": str(tmp / "api.sock")},
            "boards": [{"name": "b0", "driver": "sim", "channels": 48}],
            "compartments": [{"numbers": "1-48", "channels": "1-48", "board": "b0", "size": "S"}],
        },
        tmp / "locker.toml",
    )
    locker = build(config, SystemClock(), {"b0": SimBoard("b0", channels=48)})
    running = LoopThread(locker)
    api = locker.api
    assert api is not None
    path = str(config.api.socket)
    stop = threading.Event()
    try:
        silent = []
        for _ in range(SUBSCRIBERS):  # subscribe, then never read a byte
            s = _connect(path)
            s.sendall(b'{"id": 0, "op": "subscribe"}\n')
            silent.append(s)

        def changes() -> None:
            # State changes as commits make them: a snapshot broadcast to every subscriber.
            while not stop.wait(1 / CHANGES_PER_S):
                locker.loop.post(lambda: api.changed(Committed(("bench",))))

        producer = threading.Thread(target=changes)
        producer.start()
        client = ApiClient(path)
        code_ms, loop_ms = [], []
        for _ in range(N):
            t0 = time.perf_counter()
            client.request("code", text="12345678", method="keypad")
            code_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            running.call(lambda: None)
            loop_ms.append((time.perf_counter() - t0) * 1000)
            # Wrong codes wait under the throttle; the figure is the request path itself.
            running.call(lambda: locker.store.db.execute("DELETE FROM throttle"))
        stop.set()
        producer.join()
        still = running.call(lambda: len(api._subscribers))
        client.close()
        for s in silent:
            s.close()

        flood, refused = [], 0
        t0 = time.perf_counter()
        for _ in range(1100):
            try:
                flood.append(_connect(path))
            except OSError:
                break
        flood_s = time.perf_counter() - t0
        for s in flood:
            s.settimeout(0.5)
            try:
                line = s.recv(4096)
            except TimeoutError:
                continue  # served: idle, no line for it
            if line and json.loads(line)["error"].startswith("too many connections"):
                refused += 1
        for s in flood:
            s.close()
        t0 = time.perf_counter()
        health = None
        while health is None and time.perf_counter() - t0 < 10:
            try:
                health = ApiClient(path).request("health")
            except (OSError, ValueError):
                time.sleep(0.01)
        health_ms = (time.perf_counter() - t0) * 1000
    finally:
        stop.set()
        running.stop()

    for name, values in (
        (f"wrong code, {SUBSCRIBERS} silent subscribers", code_ms),
        ("loop round trip meanwhile", loop_ms),
    ):
        print(
            f"{name:<40} p50 {pct(values, 0.5):7.2f} ms  p99 {pct(values, 0.99):7.2f} ms"
            f"  max {max(values):7.2f} ms  (n={len(values)})"
        )
    print(
        f"first code request (while {SUBSCRIBERS} writers fill their sockets):"
        f" {code_ms[0]:.2f} ms; without it, max {max(code_ms[1:]):.2f} ms"
    )
    print(f"silent subscribers still registered at the end: {still} of {SUBSCRIBERS}")
    print(
        f"connection flood: {len(flood)} connected in {flood_s:.2f} s, {refused} refused with"
        f" the error line, {len(flood) - refused} served; health answered"
        f" {health_ms:.1f} ms after they closed: {health is not None}"
    )


if __name__ == "__main__":
    main()
