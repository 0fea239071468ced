"""Figures under a command flood, through the running daemon (printed only).

The real `lockerd` process on a simulated Kerong CU48 board (a pty at 19200 baud), a
real Mosquitto and a platform client publishing `extend` commands (each a committed
transaction with a stored reply) at 1,000 a second for a minute (the seconds as an
argument). Counted: the commands answered, by `command_id`. Measured, quiet and during
the flood:

- a wrong keypad code through the local API: request -> reply (the code was evaluated
  on the loop, its throttle state committed);
- a door forced open on the simulated board -> the `door_alarm` event at the platform
  (the board's poll, the loop, the commit, the outbox, the broker);
- the gaps between watchdog pings (WATCHDOG_USEC = 1 s, so due every 0.5 s);
- beside them the wire floor: one CU48 status exchange on the pty, and the poll period.

Run: .venv/bin/python bench/bench_flood.py [SECONDS]   (60 by default)
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from figures import pct  # noqa: E402  (bench/, beside this script)
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from kiosk_ui.client import ApiClient  # noqa: E402
from locker.clock import rfc3339  # noqa: E402
from simulator.broker import Broker  # noqa: E402
from simulator.console import Cabinet  # noqa: E402

LOCKER = "bench-flood"
RATE = 1000  # commands a second
SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 60
BIN = Path(sys.executable).parent


class Platform:
    def __init__(self, port: int) -> None:
        self.events: queue.Queue[tuple[float, str, dict[str, Any]]] = queue.Queue()
        self.replies = 0
        self.answered: set[str] = set()
        self.refused = 0
        self.sent = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"platform-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._got
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"lockers/{LOCKER}/reply", qos=1)
        self.client.loop_start()
        # Events on a connection of their own: a door_alarm is timed when it reaches the
        # platform, not when this process gets round to it behind a thousand replies.
        self.watcher = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"platform-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.watcher.on_message = self._got
        self.watcher.connect("127.0.0.1", port)
        self.watcher.subscribe(f"lockers/{LOCKER}/event/#", qos=1)
        self.watcher.subscribe(f"lockers/{LOCKER}/status", qos=1)
        self.watcher.loop_start()

    def _got(self, client: Any, userdata: Any, m: mqtt.MQTTMessage) -> None:
        if m.topic.endswith("/reply"):
            self.replies += 1
            reply = json.loads(m.payload)
            if str(reply["command_id"]).startswith("f-"):
                self.answered.add(reply["command_id"])
                self.refused += not reply["ok"]
        elif "/event/" in m.topic or m.topic.endswith("/status"):
            self.events.put((time.perf_counter(), m.topic, json.loads(m.payload)))

    def flood(self) -> None:
        start = time.perf_counter()
        for i in range(SECONDS * RATE):
            delay = start + i / RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            payload = {
                "command_id": f"f-{i}",
                "sent_at": rfc3339(time.time()),
                "order_id": f"SO-F{i}",
                "pickup_until": "2030-01-01T00:00:00Z",
            }
            self.client.publish(f"lockers/{LOCKER}/cmd/extend", json.dumps(payload), qos=1)
            self.sent = i + 1

    def wait(self, topic_end: str, timeout: float = 30) -> tuple[float, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            at, topic, payload = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if topic.endswith(topic_end):
                return at, payload


def watchdog_listener(path: Path, pings: list[float], stop: threading.Event) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)

    def run() -> None:
        while not stop.is_set():
            try:
                if sock.recv(64) == b"WATCHDOG=1":
                    pings.append(time.perf_counter())
            except TimeoutError:
                continue
            except OSError:
                return

    threading.Thread(target=run, daemon=True).start()
    return sock


def measure(
    cabinet: Cabinet, platform: Platform, api: ApiClient, more: Callable[[int], bool]
) -> dict[str, list[float]]:
    code_ms, door_ms = [], []
    for i in itertools.takewhile(more, itertools.count()):
        t0 = time.perf_counter()
        api.request("code", text="00000000", method="keypad")
        code_ms.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)
        number = 1 + i % 40
        t0 = time.perf_counter()
        cabinet.run(f"force {number}")
        at, _ = platform.wait("/event/door_alarm")
        door_ms.append((at - t0) * 1000)
        cabinet.run(f"close {number}")
        time.sleep(0.3)
    return {"code": code_ms, "door": door_ms}


def gaps(pings: list[float]) -> list[float]:
    return [(b - a) * 1000 for a, b in itertools.pairwise(pings)]


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-flood-"))
    (tmp / "broker").mkdir()
    broker = Broker(tmp / "broker", extra="max_queued_messages 100000\n")
    # Wrong codes are throttled per terminal: a generous budget, so each round evaluates one.
    cabinet = Cabinet(tmp / "cab", cu48=1, scanner=False, locker_id=LOCKER, mqtt_port=broker.port)
    platform = Platform(broker.port)
    stop = threading.Event()
    pings: list[float] = []
    notify = watchdog_listener(tmp / "notify.sock", pings, stop)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp / "notify.sock"), "WATCHDOG_USEC": "1000000"}
    proc = subprocess.Popen(
        [BIN / "lockerd", "--config", str(cabinet.config_path), "--log-level", "WARNING"],
        env=env,
    )
    try:
        platform.wait("/status")
        api = ApiClient(str(cabinet.folder / "api.sock"))
        quiet = measure(cabinet, platform, api, lambda i: i < 10)
        quiet_pings = list(pings)
        pings.clear()
        flooder = threading.Thread(target=platform.flood)
        flooder.start()
        time.sleep(1)
        loaded = measure(cabinet, platform, api, lambda i: flooder.is_alive())
        flooder.join()
        flood_pings = list(pings)
        sent = platform.sent
        deadline = time.monotonic() + 120
        while len(platform.answered) < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        api.close()
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        notify.close()
        platform.client.loop_stop()
        platform.watcher.loop_stop()
        cabinet.close()
        broker.stop()

    def row(name: str, values: list[float]) -> None:
        print(
            f"{name:<58} p50 {pct(values, 0.5):8.1f} ms  max {max(values):8.1f} ms"
            f"  (n={len(values)})"
        )

    print(
        f"flood: {RATE} extend commands/s for {SECONDS} s through Mosquitto; "
        f"{platform.replies} replies received"
    )
    print(
        f"flood commands answered: {len(platform.answered)} of {sent} by command_id"
        f" ({platform.refused} refused, as an unknown order must be); "
        f"{sent - len(platform.answered)} unanswered"
    )
    row("quiet: wrong keypad code via the API -> reply", quiet["code"])
    row("flood: wrong keypad code via the API -> reply", loaded["code"])
    row("quiet: door forced -> door_alarm at the platform", quiet["door"])
    row("flood: door forced -> door_alarm at the platform", loaded["door"])
    row("quiet: gap between watchdog pings (due every 500 ms)", gaps(quiet_pings))
    row("flood: gap between watchdog pings (due every 500 ms)", gaps(flood_pings))
    frame = (6 + 5 + 6) * 10 / 19200 * 1000  # CU48 status request + reply bytes on the wire
    print(
        f"wire floor: one CU48 status exchange at 19200 baud ~{frame:.1f} ms;"
        " doors polled every 100 ms"
    )


if __name__ == "__main__":
    main()
