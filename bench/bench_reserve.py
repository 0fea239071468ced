"""Reservations through the running `lockerd` process and a real Mosquitto (printed only).

The cabinet is 1,024 simulated compartments (four in-process `sim` boards of 256), so
every reservation of the sustained run can succeed: the figure counts successful,
durable reservations only (each committed with `synchronous=FULL` before its reply
leaves), and says how many were refused, if any.

- reserve round trip, one command at a time: published -> reply received, p50/p99;
- sustained: N reserve commands published at once (QoS 1), the clock stops at the last
  reply; successful reservations per second.

TCP_NODELAY is on everywhere (the broker, lockerd's client and the platform's client),
as shipped.

Run: .venv/bin/python bench/bench_reserve.py
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from figures import pct  # noqa: E402  (bench/, beside this script)
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from locker.clock import rfc3339  # noqa: E402
from simulator.broker import Broker  # noqa: E402

LOCKER = "bench-reserve"
BIN = Path(sys.executable).parent
BOARDS, PER_BOARD = 4, 256
SUSTAINED = 1000
ITEM = [{"sku": "1", "qty": 1, "size": "S"}]


def config(tmp: Path, port: int) -> Path:
    lines = [
        f'[locker]\nid = "{LOCKER}"\ndata_dir = "{tmp / "data"}"',
        f"[mqtt]\nport = {port}",
        f'[api]\nsocket = "{tmp / "api.sock"}"',
    ]
    for b in range(BOARDS):
        lines.append(f'[[boards]]\nname = "s{b}"\ndriver = "sim"\nchannels = {PER_BOARD}')
        first = 1 + b * PER_BOARD
        lines.append(
            f'[[compartments]]\nnumbers = "{first}-{first + PER_BOARD - 1}"\n'
            f'channels = "1-{PER_BOARD}"\nboard = "s{b}"\nsize = "S"'
        )
    path = tmp / "locker.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Platform:
    """A bare MQTT 5 client: publishes commands, collects every reply."""

    def __init__(self, port: int) -> None:
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.c.on_socket_open = lambda c, u, s: s.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        self.c.on_message = lambda c, u, m: self.replies.put(json.loads(m.payload))
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(f"lockers/{LOCKER}/reply", qos=1)
        self.c.loop_start()
        time.sleep(0.3)

    def reserve(self, cid: str, order_id: str) -> None:
        payload = {"command_id": cid, "sent_at": rfc3339(time.time()), "order_id": order_id}
        self.c.publish(
            f"lockers/{LOCKER}/cmd/reserve", json.dumps({**payload, "items": ITEM}), qos=1
        )

    def cancel(self, cid: str, order_id: str) -> None:
        payload = {"command_id": cid, "sent_at": rfc3339(time.time()), "order_id": order_id}
        self.c.publish(f"lockers/{LOCKER}/cmd/cancel", json.dumps(payload), qos=1)

    def wait(self, ids: set[str], timeout: float = 60) -> list[dict[str, Any]]:
        got = []
        while ids:
            reply = self.replies.get(timeout=timeout)
            if reply["command_id"] in ids:
                ids.discard(reply["command_id"])
                got.append(reply)
        return got

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-reserve-"))
    (tmp / "broker").mkdir()
    broker = Broker(tmp / "broker")
    proc = subprocess.Popen(
        [BIN / "lockerd", "--config", str(config(tmp, broker.port)), "--log-level", "WARNING"]
    )
    platform = Platform(broker.port)
    try:
        deadline = time.monotonic() + 30
        while True:  # lockerd answers once it is up and linked
            platform.reserve("warm-up", "W0")
            try:
                platform.wait({"warm-up"}, timeout=1)
                break
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise
        rtt = []
        for i in range(200):
            t0 = time.perf_counter()
            platform.reserve(f"r{i}", f"R{i}")
            [reply] = platform.wait({f"r{i}"})
            rtt.append((time.perf_counter() - t0) * 1000)
            assert reply["ok"], reply
            platform.cancel(f"c{i}", f"R{i}")  # the sustained run needs every compartment
            platform.wait({f"c{i}"})
        ids = {f"s{i}" for i in range(SUSTAINED)}
        t0 = time.perf_counter()
        for i in range(SUSTAINED):
            platform.reserve(f"s{i}", f"S{i}")
        replies = platform.wait(set(ids))
        elapsed = time.perf_counter() - t0
    finally:
        platform.close()
        proc.terminate()
        proc.wait(30)
        broker.stop()
    ok = sum(1 for r in replies if r["ok"])
    print(f"lockerd process, {BOARDS * PER_BOARD} compartments, real Mosquitto, durable store")
    print(
        f"reserve round trip, one at a time (published -> reply)     p50 {pct(rtt, 0.5):6.2f} ms"
        f"  p99 {pct(rtt, 0.99):6.2f} ms  (n={len(rtt)})"
    )
    print(
        f"sustained: {SUSTAINED} reserves published at once -> last reply"
        f"   {ok / elapsed:6.0f} successful reservations/s"
        f"  ({ok} ok, {len(replies) - ok} refused, {elapsed:.2f} s)"
    )


if __name__ == "__main__":
    main()
