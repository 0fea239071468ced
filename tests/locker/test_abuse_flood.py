"""A flood of platform commands at 1,000 a second through a real Mosquitto, at the real
lockerd process on a simulated CU48 board (a pty): every command is answered or refused
(counted by `command_id`), and a door forced during the flood is still reported.

The issue's flood lasts a minute; this one lasts FLOOD_S seconds so that `make test`
stays short (`bench/bench_flood.py` runs the full minute and prints the delays). The
rate is paced, not a burst: a command every millisecond.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_for
from paho.mqtt.enums import CallbackAPIVersion

from locker.clock import rfc3339
from simulator.broker import Broker
from simulator.console import Cabinet

BIN = Path(sys.executable).parent
LOCKER = "abuse-flood"
RATE = 1000  # commands a second
FLOOD_S = 5  # the test's flood; the bench's lasts 60 s
FORCED = 48  # the door forced mid-flood (reservations take the lowest free numbers)


def command(i: int) -> tuple[str, str, dict[str, Any], str]:
    """The i-th command of the flood: (command_id, name, payload, the answer it must get).
    Mostly `extend` of an order the locker never had (refused, with a stored reply), with
    reservations (fewer than the compartments), commands too old to run, fields missing,
    unknown names and `sync` mixed in."""
    command_id = f"f-{i}"
    base: dict[str, Any] = {"command_id": command_id, "sent_at": rfc3339(time.time())}
    extend = {**base, "order_id": f"SO-F{i}", "pickup_until": "2030-01-01T00:00:00Z"}
    kind = i % 100
    if kind == 0 and i % 200 == 0:
        items = [{"sku": "1", "qty": 1, "size": "S"}]
        return command_id, "reserve", {**base, "order_id": f"SO-F{i}", "items": items}, "ok"
    if kind == 1:
        return (
            command_id,
            "extend",
            {**extend, "sent_at": "2020-01-01T00:00:00Z"},
            "COMMAND_EXPIRED",
        )
    if kind == 2:
        return command_id, "cancel", base, "INVALID_PAYLOAD"  # order_id missing
    if kind == 3:
        return command_id, "explode", base, "UNKNOWN_COMMAND"
    if kind == 4:
        return command_id, "sync", base, "ok"
    return command_id, "extend", extend, "UNKNOWN_ORDER"


class Platform:
    """Publishes the flood, paced; gathers every reply by command_id and every event."""

    def __init__(self, port: int) -> None:
        self.replies: dict[str, list[dict[str, Any]]] = {}
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.online = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"platform-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._got
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"lockers/{LOCKER}/reply", qos=1)
        self.client.subscribe(f"lockers/{LOCKER}/event/#", qos=1)
        self.client.subscribe(f"lockers/{LOCKER}/status", qos=1)
        self.client.loop_start()

    def _got(self, client: Any, userdata: Any, m: mqtt.MQTTMessage) -> None:
        payload = json.loads(m.payload)
        if m.topic.endswith("/reply"):
            with self._lock:
                self.replies.setdefault(str(payload["command_id"]), []).append(payload)
        elif m.topic.endswith("/status"):
            if payload.get("online"):
                self.online.set()
        else:
            self.events.put((m.topic.rsplit("/", 1)[1], payload))

    def answered(self) -> int:
        with self._lock:
            return len(self.replies)

    def flood(self, count: int, during: Any) -> dict[str, str]:
        """Publish `count` commands at RATE a second; `during()` is called half way.
        Returns each command's id and the answer it must get."""
        ids, start = {}, time.perf_counter()
        for i in range(count):
            delay = start + i / RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            command_id, name, payload, expected = command(i)
            self.client.publish(f"lockers/{LOCKER}/cmd/{name}", json.dumps(payload), qos=1)
            ids[command_id] = expected
            if i == count // 2:
                during()
        return ids

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Cabinet, Platform]]:
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", extra="max_queued_messages 100000\n")
    cab = Cabinet(tmp_path / "cab", cu48=1, scanner=False, locker_id=LOCKER, mqtt_port=broker.port)
    platform = Platform(broker.port)
    proc = subprocess.Popen(
        [BIN / "lockerd", "--config", str(cab.config_path)], stderr=subprocess.DEVNULL
    )
    try:
        wait_for(platform.online.is_set, "lockerd online at the broker", timeout=30)
        yield cab, platform
        assert proc.poll() is None, "lockerd died under the flood"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        platform.close()
        cab.close()
        broker.stop()


def test_a_thousand_commands_a_second_are_each_answered_or_refused_and_a_forced_door_reported(
    stack: tuple[Cabinet, Platform],
) -> None:
    cab, platform = stack
    ids = platform.flood(RATE * FLOOD_S, lambda: cab.run(f"force {FORCED}"))
    wait_for(lambda: platform.answered() >= len(ids), "every command answered", timeout=120)
    replies = platform.replies
    assert set(replies) == set(ids)  # no reply to a command never sent, none missing
    assert all(len(r) == 1 for r in replies.values())  # each answered once
    answers = {i: "ok" if r[0]["ok"] else r[0]["error"]["code"] for i, r in replies.items()}
    assert answers == ids
    assert Counter(answers.values())["COMMAND_EXPIRED"] == RATE * FLOOD_S // 100
    alarms = []
    while not platform.events.empty():
        name, payload = platform.events.get()
        if name == "door_alarm":
            alarms.append(payload)
    assert [a["compartment"] for a in alarms] == [FORCED]
