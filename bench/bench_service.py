"""Figures for the domain core on this machine (printed, never asserted).

- reserve through the command processor with the durable store (synchronous=FULL):
  sustained commands per second, and p50/p99 latency;
- software time from a pickup code accepted to the unlock call reaching the board
  (the intent committed first), p50/p99;
- the cost of one loop turn (poll the simulated board + timers) with 200 live orders.

Run: .venv/bin/python bench/bench_service.py
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from figures import pct  # noqa: E402  (bench/, beside this script)

from drivers.sim import SimBoard  # noqa: E402
from locker.clock import SystemClock, rfc3339  # noqa: E402
from locker.commands import CommandProcessor  # noqa: E402
from locker.config import parse_config  # noqa: E402
from locker.daemon import build  # noqa: E402
from locker.model import Method  # noqa: E402


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-"))
    config = parse_config(
        {
            "locker": {"id": "bench", "data_dir": str(tmp)},
            "boards": [{"name": "b0", "driver": "sim", "channels": 256}],
            "compartments": [{"numbers": "1-256", "channels": "1-256", "board": "b0", "size": "S"}],
        },
        tmp / "locker.toml",
    )

    class RecordingBoard(SimBoard):
        stamp = 0.0
        pulsed = threading.Event()

        def unlock(self, channel: int) -> None:
            self.stamp = time.perf_counter()
            self.pulsed.set()
            super().unlock(channel)

    board = RecordingBoard("b0", channels=256, door_close_s=0)
    locker = build(config, SystemClock(), {"b0": board})
    commands = CommandProcessor(locker.service)
    item = [{"sku": "1", "qty": 1, "fresh": False, "size": "S"}]

    lat, codes = [], []
    start = time.perf_counter()
    n = 200
    for i in range(n):
        payload = json.dumps(
            {
                "command_id": f"r{i}",
                "sent_at": rfc3339(time.time()),
                "order_id": f"B{i}",
                "items": item,
            }
        )
        t = time.perf_counter()
        reply = commands.handle("reserve", payload)
        lat.append(time.perf_counter() - t)
        assert reply is not None and reply["ok"], reply
        codes.append(reply["result"]["deposit_code"])
    elapsed = time.perf_counter() - start
    print(
        f"reserve (command processor + SQLite FULL sync): {n / elapsed:.0f}/s, "
        f"p50 {statistics.median(lat) * 1000:.2f} ms, p99 {pct(lat, 0.99) * 1000:.2f} ms"
    )

    unlock = []
    for code in codes:
        board.pulsed.clear()
        t = time.perf_counter()
        result = locker.service.enter_code(code, Method.KEYPAD)
        assert result.outcome == "opened", result
        assert board.pulsed.wait(5)  # the pulse goes out from the board's I/O worker
        unlock.append(board.stamp - t)
    print(
        f"code accepted -> unlock call on the board's I/O worker (intent committed first),"
        f" {len(unlock)} unlocks: "
        f"p50 {statistics.median(unlock) * 1000:.2f} ms, p99 {pct(unlock, 0.99) * 1000:.2f} ms"
    )

    locker.service.doors_read("b0", board.read_doors())  # doors seen open
    turns = []
    for _ in range(500):
        # What the loop does with one board's reading when it comes back, and its timers.
        t = time.perf_counter()
        locker.service.doors_read("b0", board.read_doors())
        locker.service.tick()
        turns.append(time.perf_counter() - t)
    print(
        f"loop's work per turn (256 sim doors read + timers, 200 live orders): "
        f"p50 {statistics.median(turns) * 1000:.3f} ms, p99 {pct(turns, 0.99) * 1000:.3f} ms"
    )
    locker.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # the figures, not the alarms the bench provokes
    main()
