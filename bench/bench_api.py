"""Figures for the screen's side of lockerd: the local API on its Unix socket (printed only).

- a deposit code typed on the kiosk: request -> reply (intent committed, unlock sent), p50/p99;
- the same code -> the stream line that shows the door open (what the screen waits for
  before it can say "thank you" later), p50/p99;
- one `diagnostics` request (the maintenance screen asks once a second), p50/p99.

Run: .venv/bin/python bench/bench_api.py
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from figures import pct  # noqa: E402  (bench/, beside this script)

from drivers.sim import SimBoard  # noqa: E402
from kiosk_ui.client import ApiClient  # noqa: E402
from locker.clock import SystemClock, rfc3339  # noqa: E402
from locker.commands import CommandProcessor  # noqa: E402
from locker.config import parse_config  # noqa: E402
from locker.daemon import LoopThread, build  # noqa: E402
from locker.pin import write_pin  # noqa: E402

N = 200


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-api-"))
    config = parse_config(
        {
            "locker": {"id": "bench", "data_dir": str(tmp)},
            "mqtt": {"enabled": False},
            "api": {"socket": str(tmp / "api.sock")},
            "boards": [{"name": "b0", "driver": "sim", "channels": 256}],
            "compartments": [{"numbers": "1-256", "channels": "1-256", "board": "b0", "size": "S"}],
        },
        tmp / "locker.toml",
    )
    board = SimBoard("b0", channels=256, door_close_s=0)  # doors stay open: one code each
    locker = build(config, SystemClock(), {"b0": board})
    running = LoopThread(locker)
    write_pin(config.pin_path, "13572468")
    try:
        processor = CommandProcessor(locker.service)
        codes: list[str] = []

        def reserve_all() -> None:
            for i in range(N):
                payload = {
                    "command_id": f"c{i}",
                    "sent_at": rfc3339(time.time()),
                    "order_id": f"SO-{i}",
                    "items": [{"sku": "1", "qty": 1, "size": "S"}],
                }
                reply = processor.handle("reserve", json.dumps(payload))
                assert reply is not None
                codes.append(reply["result"]["deposit_code"])

        running.call(reserve_all, timeout=60)

        stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stream.connect(str(config.api.socket))
        stream.sendall(b'{"id": 0, "op": "subscribe"}\n')
        lines = stream.makefile("rb")
        lines.readline()
        client = ApiClient(str(config.api.socket))
        reply_ms, open_ms = [], []
        for code in codes:
            t0 = time.perf_counter()
            result = client.request("code", text=code, method="keypad")
            reply_ms.append((time.perf_counter() - t0) * 1000)
            (number,) = result["compartments"]
            while True:  # the screen's view: the door of this compartment seen open
                msg = json.loads(lines.readline())
                if msg.get("stream") != "state":
                    continue  # an entry or a phase done: not the doors
                doors = {c["number"]: c["door"] for c in msg["state"]["compartments"]}
                if doors.get(number) == "open":
                    open_ms.append((time.perf_counter() - t0) * 1000)
                    break
        token = client.request("login", pin="13572468")["token"]
        diag_ms = []
        for _ in range(N):
            t0 = time.perf_counter()
            client.request("diagnostics", token=token)
            diag_ms.append((time.perf_counter() - t0) * 1000)
        stream.close()
        client.close()
    finally:
        running.stop()

    for name, values in (
        ("deposit code -> reply (door unlocked)", reply_ms),
        ("deposit code -> stream shows the door open", open_ms),
        ("diagnostics request (256 compartments)", diag_ms),
    ):
        print(
            f"{name:<46} p50 {pct(values, 0.5):6.2f} ms  p99 {pct(values, 0.99):6.2f} ms"
            f"  (n={len(values)})"
        )


if __name__ == "__main__":
    main()
