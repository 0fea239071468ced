"""The README's technician walkthrough, command for command, from a fresh working directory
(the commands are read from the README itself, so the two cannot drift apart).

`locker-sim boards --dir var/sim ...` (with its private broker), `lockerd --config
var/sim/locker.toml`, then the platform command that `locker-sim boards` prints: an order
is reserved, its deposit QR scanned (or shown to the camera), the door opens and closes,
and the platform hears that the order was loaded.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

BIN = Path(sys.executable).parent
README = Path(__file__).parents[2] / "README.md"
UNBUFFERED = {**os.environ, "PYTHONUNBUFFERED": "1"}


class Lines:
    """A process's output, line by line, waited for by pattern (a deadline only against a
    hang: what is awaited either comes or the test fails)."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)

    def expect(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"never saw {pattern!r}; saw:\n{''.join(self.seen)}") from None
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found


def readme_commands() -> list[list[str]]:
    """The three terminals' commands as the README's technician section writes them, with
    `.venv/bin/` standing for this interpreter's folder."""
    section = README.read_text().split("## The simulator, for technicians")[1]
    block = section.split("```sh\n")[1].split("```")[0]
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [
        [str(BIN / Path(w).name) if w.startswith(".venv/bin/") else w for w in words]
        for words in commands
    ]


def wait_until_online(port: int, locker_id: str) -> None:
    """The locker's retained status says online: its commands are subscribed."""
    online = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if json.loads(msg.payload).get("online"):
            online.set()

    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", port)
    watcher.subscribe(f"lockers/{locker_id}/status")
    watcher.loop_start()
    try:
        assert online.wait(60), "lockerd never came online on the broker locker-sim boards started"
    finally:
        watcher.disconnect()
        watcher.loop_stop()


def door_seen_open(cwd: Path, number: int) -> bool:
    """What lockerd made of the door (`lockerctl status`, as the README says)."""
    out = subprocess.run(
        [BIN / "lockerctl", "--config", "var/sim/locker.toml", "status"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return re.search(rf"^\s*{number}\s+S\s+\S+\s+open\b", out, re.MULTILINE) is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "hold_up"),
    [([], "scan"), (["--camera"], "show")],
    ids=["scanner", "camera"],
)
def test_the_readme_walkthrough_as_written(tmp_path: Path, extra: list[str], hold_up: str) -> None:
    procs: list[subprocess.Popen[str]] = []

    def start(argv: Sequence[str | Path], **kwargs: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(argv, cwd=tmp_path, text=True, env=UNBUFFERED, **kwargs)
        procs.append(proc)
        return proc

    try:
        boards_cmd, lockerd_cmd, platform_cmd = readme_commands()
        assert boards_cmd[1:] == ["boards", "--dir", "var/sim", "--cu48", "2", "--modbus", "1"]
        boards = start(
            [*boards_cmd, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert boards.stdin is not None and boards.stdout is not None
        console = Lines(boards.stdout)
        console.expect(r"simulated cabinet ready: locker store-001-a")
        lockerd = shlex.split(console.expect(r"run the daemon: +(.*)")[1])
        assert lockerd == lockerd_cmd == [str(BIN / "lockerd"), "--config", "var/sim/locker.toml"]
        platform = shlex.split(console.expect(r"play the platform: +(.*)")[1])
        port = int(platform[platform.index("--port") + 1])
        assert platform == [str(port) if w == "PORT" else w for w in platform_cmd]
        assert platform[-5:] == ["--locker", "store-001-a", "--orders", "3", "--follow"]

        log = (tmp_path / "lockerd.log").open("w")
        start(lockerd, stdout=log, stderr=log)
        wait_until_online(port, "store-001-a")
        shop = start(platform, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert shop.stdout is not None
        heard = Lines(shop.stdout)
        reserved = heard.expect(
            r"(SO-\S+) reserved in locker store-001-a, compartments \[(\d+)\];"
            r" deposit code for the staff (\d+)"
        )
        order, number, code = reserved[1], int(reserved[2]), reserved[3]

        boards.stdin.write(f"{hold_up} locker:store-001-a:deposit:{code}\n")
        boards.stdin.flush()
        console.expect("scanned" if hold_up == "scan" else "shown to the camera: QR of the text")
        deadline = time.monotonic() + 60
        while not door_seen_open(tmp_path, number):
            assert time.monotonic() < deadline, "lockerd never opened the door for the deposit"
        boards.stdin.write(f"close {number}\n")
        boards.stdin.flush()
        heard.expect(rf"platform: {order} loaded in locker store-001-a")

        # The files went where the config says, for lockerd and the simulator alike.
        sim = tmp_path / "var" / "sim"
        assert (sim / "data" / "locker.db").is_file()
        assert (sim / "api.sock").is_socket()
        assert not (sim / "var").exists()

        shop.send_signal(signal.SIGINT)
        assert shop.wait(30) == 0
        boards.stdin.write("quit\n")
        boards.stdin.flush()
        assert boards.wait(30) == 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
