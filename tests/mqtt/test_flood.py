"""Floods and kills through the real broker: the real lockerd process on a simulated
Kerong board (pty), a real Mosquitto, a platform client publishing commands."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from locker.clock import rfc3339
from simulator.broker import Broker
from simulator.console import Cabinet

BIN = Path(sys.executable).parent
LOCKER = "fl-1"


class Platform:
    """Publishes commands and gathers every reply and event, in arrival order."""

    def __init__(self, port: int) -> None:
        self.got: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"platform-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = lambda c, u, m: self.got.put((m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"lockers/{LOCKER}/reply", qos=1)
        self.client.subscribe(f"lockers/{LOCKER}/event/#", qos=1)
        self.client.subscribe(f"lockers/{LOCKER}/status", qos=1)
        self.client.loop_start()

    def send(self, name: str, payload: bytes | dict[str, Any]) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(f"lockers/{LOCKER}/cmd/{name}", data, qos=1)

    def burst(self, count: int, prefix: str) -> list[str]:
        """`count` commands that each commit a stored reply (an unknown order)."""
        ids = [f"{prefix}-{i}" for i in range(count)]
        for command_id in ids:
            self.send(
                "extend",
                {
                    "command_id": command_id,
                    "sent_at": rfc3339(time.time()),
                    "order_id": f"SO-{command_id}",
                    "pickup_until": "2030-01-01T00:00:00Z",
                },
            )
        return ids

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    (tmp_path / "broker").mkdir()
    # As the shipped broker configuration: commands wait for a busy or absent locker.
    b = Broker(tmp_path / "broker", extra="max_queued_messages 10000\n")
    yield b
    b.stop()


@pytest.fixture
def cabinet(tmp_path: Path, broker: Broker) -> Iterator[Cabinet]:
    cab = Cabinet(tmp_path / "cab", cu48=1, scanner=False, locker_id=LOCKER, mqtt_port=broker.port)
    yield cab
    cab.close()


def lockerd(cabinet: Cabinet, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [BIN / "lockerd", "--config", str(cabinet.config_path)],
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def gather(platform: Platform, until: Any, timeout: float = 60) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not until(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"gave up after {len(seen)} messages"
        try:
            seen.append(platform.got.get(timeout=left))
        except queue.Empty:
            continue
    return seen


def online(platform: Platform) -> None:
    """Wait for the locker's session to be up (commands before its first ever connect
    would have nowhere to wait)."""
    gather(platform, lambda s: any(t.endswith("/status") and p.get("online") for t, p in s))


def replied(seen: list[tuple[str, Any]]) -> set[str]:
    return {p["command_id"] for t, p in seen if t.endswith("/reply") and p["command_id"]}


def test_every_command_of_a_burst_is_answered_across_a_sigkill(
    cabinet: Cabinet, broker: Broker
) -> None:
    """A command is acknowledged to the broker only after its reply committed: the ones
    lockerd had received but not handled when it was killed come again."""
    platform = Platform(broker.port)
    proc = lockerd(cabinet)
    try:
        online(platform)
        ids = platform.burst(600, "k")
        seen = gather(platform, lambda s: len(replied(s)) >= 30)
        proc.kill()  # mid-burst: hundreds received or queued, not yet answered
        proc.wait(10)
        proc = lockerd(cabinet)
        seen += gather(platform, lambda s: replied(seen + s) >= set(ids))
    finally:
        stop(proc)
        platform.close()
    assert replied(seen) == set(ids)


def test_a_door_forced_during_a_flood_is_reported_before_the_flood_ends(
    cabinet: Cabinet, broker: Broker, tmp_path: Path
) -> None:
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    pings: list[float] = []

    def listen() -> None:
        sock.settimeout(0.5)
        while True:
            try:
                data = sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            if data == b"WATCHDOG=1":
                pings.append(time.monotonic())

    listener = threading.Thread(target=listen)
    listener.start()
    platform = Platform(broker.port)
    proc = lockerd(cabinet, {"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "1000000"})
    try:
        gather(
            platform,
            lambda s: any(t.endswith("/reply") for t, _ in s) or not platform.burst(1, "w"),
        )
        ids = platform.burst(3000, "f")
        seen = gather(platform, lambda s: len(replied(s)) >= 200)
        flood_started = len(pings)
        cabinet.run("force 5")
        seen += gather(platform, lambda s: replied(seen + s) >= set(ids))
    finally:
        stop(proc)
        platform.close()
        sock.close()
        listener.join(5)
    topics = [t for t, _ in seen]
    alarm = topics.index(f"lockers/{LOCKER}/event/door_alarm")
    assert alarm < len(topics) - 1000  # reported while most of the flood still waited
    during = pings[flood_started:]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert len(during) >= 2
    # systemd kills a daemon that stays silent for WatchdogSec (10 s in the unit); pings
    # are due every 0.5 s here, so 5 s is a wide margin that still catches a stalled loop.
    assert max(gaps) < 5.0, f"watchdog silent for {max(gaps):.1f} s during the flood"


def test_an_oversized_command_is_refused_unread_and_the_locker_carries_on(
    cabinet: Cabinet, broker: Broker
) -> None:
    platform = Platform(broker.port)
    proc = lockerd(cabinet)
    try:
        gather(
            platform,
            lambda s: any(t.endswith("/reply") for t, _ in s) or not platform.burst(1, "w"),
        )
        big = b'{"command_id": "big", "pad": "' + b"x" * 100_000 + b'"}'
        platform.send("sync", big)
        [(_, reply)] = [
            m
            for m in gather(
                platform,
                lambda s: any(p.get("command_id") is None for t, p in s if t.endswith("/reply")),
            )
            if m[0].endswith("/reply") and m[1]["command_id"] is None
        ]
        assert reply["error"]["code"] == "INVALID_PAYLOAD" and "64 KiB" in reply["error"]["message"]
        platform.send("sync", b"[" * 2_000_000)  # past the packet size lockerd accepts
        [after] = platform.burst(1, "after")
        assert after in replied(gather(platform, lambda s: after in replied(s)))
    finally:
        stop(proc)
        platform.close()
