"""Figures with one board unplugged, through the running daemon (printed only).

The real `lockerd` process on a simulated cabinet (a Kerong CU48 board and a Modbus
relay board, each on its own pty), a real Mosquitto. Measured with every board up, then
with the Modbus board unplugged (it answers nothing: every request to it times out and
is retried):

- a deposit code typed on the keypad, through the local API: request -> reply (the intent
  committed and the unlock frame written to the live CU48 board);
- a `sync` command through Mosquitto: publish -> reply at the platform;
- a `health` request through the local API.

Each board's I/O runs in a thread of its own (locker/boardio.py), so the dead board's
timeouts should delay none of the three; when board I/O ran on the daemon's loop, they
stalled all three (max 168 ms for a code, 385 ms for a command).

Run: .venv/bin/python bench/bench_dead_bus.py
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
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

LOCKER = "bench-dead-bus"
N = 20
BIN = Path(sys.executable).parent


class Platform:
    def __init__(self, port: int) -> None:
        self.replies: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"platform-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = lambda c, u, m: self.replies.put(
            (time.perf_counter(), json.loads(m.payload))
        )
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"lockers/{LOCKER}/reply", qos=1)
        self.client.loop_start()

    def command(self, name: str, **fields: Any) -> tuple[float, dict[str, Any]]:
        command_id = str(uuid.uuid4())
        payload = {"command_id": command_id, "sent_at": rfc3339(time.time()), **fields}
        t0 = time.perf_counter()
        self.client.publish(f"lockers/{LOCKER}/cmd/{name}", json.dumps(payload), qos=1)
        while True:
            at, reply = self.replies.get(timeout=30)
            if reply.get("command_id") == command_id:
                return (at - t0) * 1000, reply


def measure(platform: Platform, api: ApiClient, codes: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"code": [], "sync": [], "health": []}
    for code in codes:
        t0 = time.perf_counter()
        result = api.request("code", text=code, method="keypad")
        out["code"].append((time.perf_counter() - t0) * 1000)
        assert result["outcome"] == "opened", result
        out["sync"].append(platform.command("sync")[0])
        t0 = time.perf_counter()
        api.request("health")
        out["health"].append((time.perf_counter() - t0) * 1000)
        time.sleep(0.05)
    return out


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-dead-bus-"))
    (tmp / "broker").mkdir()
    broker = Broker(tmp / "broker")
    cabinet = Cabinet(
        tmp / "cab", cu48=1, modbus=1, scanner=False, locker_id=LOCKER, mqtt_port=broker.port
    )
    boards = tomllib.loads(cabinet.config_path.read_text())["boards"]
    modbus = next(b["name"] for b in boards if b["driver"] == "modbus-relay")
    platform = Platform(broker.port)
    proc = subprocess.Popen(
        [BIN / "lockerd", "--config", str(cabinet.config_path), "--log-level", "ERROR"]
    )
    try:
        time.sleep(1.0)
        codes = []
        for i in range(2 * N):
            _, reply = platform.command(
                "reserve", order_id=f"SO-{i}", items=[{"sku": "1", "qty": 1, "size": "S"}]
            )
            codes.append(reply["result"]["deposit_code"])
        api = ApiClient(str(cabinet.folder / "api.sock"))
        up = measure(platform, api, codes[:N])
        cabinet.run(f"unplug {modbus}")
        time.sleep(1.0)  # the board is declared offline and polled with backoff
        down = measure(platform, api, codes[N:])
        api.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        platform.client.loop_stop()
        cabinet.close()
        broker.stop()
    for key, label in (
        ("code", "deposit code via the API -> reply (unlock on the live board)"),
        ("sync", "sync command through Mosquitto -> reply"),
        ("health", "health request via the API"),
    ):
        print(
            f"{label:<62} all up p50 {pct(up[key], 0.5):6.1f} ms max {max(up[key]):6.1f}"
            f" | {modbus} unplugged p50 {pct(down[key], 0.5):6.1f} ms max {max(down[key]):6.1f}"
        )


if __name__ == "__main__":
    main()
