"""A full disk, tried from outside as an operator would: a real lockerd process whose data
directory is a small tmpfs (mounted here: root, as in CI), a real Mosquitto, the
platform simulator sending `reserve`, the kiosk's local API entering codes.

The medium is filled with a file until the kernel says ENOSPC, then freed again. A
read-only remount cannot be tried this way: the kernel refuses `remount,ro` of a medium
with files open for writing (lockerd's database), see docs/operations.md.
"""

from __future__ import annotations

import errno
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from simulator.broker import Broker
from simulator.platform import PlatformSim

sys.path.insert(0, str(Path(__file__).parent / "locker"))
from test_ctl import ask

BIN = Path(sys.executable).parent
ITEMS = [{"sku": "1", "qty": 1, "fresh": False, "size": "S"}]
CONFIG = """
[locker]
id = "disk-1"
data_dir = "{data}"
[mqtt]
port = {port}
heartbeat_s = 1
[api]
socket = "api.sock"
[[boards]]
name = "b0"
driver = "sim"
door_close_s = 0.2
[[compartments]]
numbers = "1-8"
channels = "1-8"
board = "b0"
size = "S"
"""


@pytest.fixture
def medium(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "medium"
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=True)


def fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 512):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


def next_event(platform: PlatformSim, wanted: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        try:
            ev = platform.events.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"never: {what}") from None
        if wanted(ev):
            return ev


def orders(db: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT order_id, state FROM orders").fetchall())


def test_lockerd_survives_a_full_disk_and_carries_on_by_itself(
    tmp_path: Path, medium: Path
) -> None:
    broker = Broker(tmp_path)
    cabinet = tmp_path / "cabinet"
    cabinet.mkdir()
    config = cabinet / "locker.toml"
    config.write_text(CONFIG.format(data=medium / "data", port=broker.port))
    proc = subprocess.Popen(
        [str(BIN / "lockerd"), "--config", str(config)], stderr=subprocess.DEVNULL
    )
    platform = PlatformSim(port=broker.port, out=lambda line: None)
    socket = cabinet / "api.sock"
    try:

        def connected() -> bool:
            try:
                return bool(ask(socket, op="health")["result"]["mqtt_connected"])
            except OSError:
                return False

        wait_for(connected, "lockerd connected to the broker")
        pickup: dict[str, str] = {}
        for order in ("SO-1", "SO-2"):
            reply = platform.reserve("disk-1", order, ITEMS)
            assert reply["ok"], reply
            code = reply["result"]["deposit_code"]
            assert ask(socket, op="code", text=code, method="keypad")["result"]["outcome"] == (
                "opened"
            )
            pickup[order] = platform.wait_event("deposited", order)["pickup_code"]
        before = orders(medium / "data" / "locker.db")
        assert before == {"SO-1": "loaded", "SO-2": "loaded"}

        fill(medium / "filler")
        answered = {}
        for n in range(3, 8):
            reply = platform.command("disk-1", "reserve", order_id=f"SO-{n}", items=ITEMS)
            answered[f"SO-{n}"] = reply
            if not reply["ok"]:
                break
        refused = [r for r in answered.values() if not r["ok"]]
        assert refused, answered
        assert refused[0]["error"]["code"] == "STORAGE_FULL"
        assert isinstance(refused[0]["command_id"], str)  # its own command, answered
        fault = next_event(
            platform, lambda e: e["type"] == "fault", "the storage fault at the platform"
        )
        assert fault["component"] == "storage" and "full" in fault["detail"]
        assert proc.poll() is None  # lockerd alive
        health = ask(socket, op="health")["result"]
        assert health["storage"] == "full"

        # The doors are still watched: a pickup whose intent commits (on the reserve's
        # space) opens, and its door's closing is reported.
        opened = ask(socket, op="code", text=pickup["SO-1"], method="keypad")["result"]
        assert opened["outcome"] == "opened", opened
        platform.wait_event("picked_up", "SO-1")

        (medium / "filler").unlink()
        next_event(
            platform,
            lambda e: e["type"] == "fault_cleared" and e.get("component") == "storage",
            "fault_cleared of the storage",
        )
        assert platform.reserve("disk-1", "SO-9", ITEMS)["ok"]
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        after = orders(medium / "data" / "locker.db")
        assert after["SO-1"] == "collected" and after["SO-2"] == "loaded"
        for order, reply in answered.items():  # an answered reservation is kept, a refused not
            assert (order in after) == reply["ok"], (order, reply)
        assert after["SO-9"] == "reserved"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        platform.close()
        broker.stop()
