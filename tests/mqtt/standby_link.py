"""A locker whose platform link the test builds (its epoch, publish limit, health fields and
fencing callback), the platform's view of the locker's topics, and what another controller
of the same locker leaves on the broker."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from conftest import wait_for
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.sim import SimBoard
from locker.clock import SystemClock, rfc3339
from locker.codes import CodeBook, load_or_create_key
from locker.config import load_config
from locker.daemon import LoopThread, build, subscribe_link
from locker.dbfile import stamp_epoch
from locker.storage import Store
from mqtt.link import PlatformLink

LOCKER = "mq-1"
BASE = f"lockers/{LOCKER}"


class Observer:
    """The platform's view: every message on the locker's topics but its commands."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, Any, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"obs-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._got
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(f"{BASE}/#", qos=1)
        assert subscribed.wait(10), "the observer's subscription was not granted"

    def _got(self, client: Any, userdata: Any, m: mqtt.MQTTMessage) -> None:
        if "/cmd/" in m.topic:
            return
        try:
            payload = json.loads(m.payload)
        except ValueError:
            payload = m.payload.decode(errors="replace")
        with self._lock:
            self.messages.append((m.topic, payload, bool(m.retain)))

    def seen(self, suffix: str = "", match: Callable[[Any], bool] = lambda p: True) -> list[Any]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix) and match(p)]

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _, _ in self.messages]

    def wait(self, suffix: str, match: Callable[[Any], bool] = lambda p: True) -> Any:
        wait_for(lambda: bool(self.seen(suffix, match)), f"a message on {suffix}")
        return self.seen(suffix, match)[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Controller:
    """Another controller of the same locker, as the broker knows it: the client id
    `locker-{id}`, a persistent session subscribed to the commands (acknowledged by hand)."""

    def __init__(self, port: int) -> None:
        self.commands: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"locker-{LOCKER}",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self.client.on_message = lambda c, u, m: self.commands.put(m)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        self.client.subscribe(f"{BASE}/cmd/+", qos=1)
        assert subscribed.wait(10), "the controller's subscription was not granted"

    def announce(self, epoch: int | None) -> dict[str, Any]:
        """Publish its retained online status (`None`: a v1.0 status, without epoch)."""
        status: dict[str, Any] = {"online": True, "version": "t", "since": rfc3339(time.time())}
        if epoch is not None:
            status["epoch"] = epoch
        self.client.publish(
            f"{BASE}/status", json.dumps(status), qos=1, retain=True
        ).wait_for_publish(5)
        return status

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained_status(port: int) -> Any:
    """What a newcomer reads as the locker's retained status."""
    got: queue.Queue[Any] = queue.Queue()
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"late-{uuid.uuid4()}", protocol=mqtt.MQTTv5
    )
    c.on_message = lambda cl, u, m: got.put((json.loads(m.payload), m.retain))
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.subscribe(f"{BASE}/status", qos=1)
        payload, retained = got.get(timeout=10)
        assert retained
        return payload
    finally:
        c.disconnect()
        c.loop_stop()


def send_command(port: int, name: str, command_id: str) -> None:
    """The platform sends one command (QoS 1), whoever is there to take it."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"plat-{uuid.uuid4()}", protocol=mqtt.MQTTv5
    )
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        payload = {"command_id": command_id, "sent_at": rfc3339(time.time())}
        c.publish(f"{BASE}/cmd/{name}", json.dumps(payload), qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def send_reserve(port: int, command_id: str) -> None:
    """The platform reserves one small compartment (QoS 1)."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"plat-{uuid.uuid4()}", protocol=mqtt.MQTTv5
    )
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        payload = {
            "command_id": command_id,
            "sent_at": rfc3339(time.time()),
            "order_id": f"SO-{command_id}",
            "items": [{"sku": "1", "qty": 1, "size": "S"}],
        }
        c.publish(f"{BASE}/cmd/reserve", json.dumps(payload), qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


class LinkRig:
    """The locker's build() and loop in a thread, with a platform link made by the test."""

    def __init__(
        self,
        folder: Path,
        port: int,
        epoch: int = 1,
        publish_limit: Callable[[], int | None] | None = None,
        health_fields: Callable[[], Mapping[str, Any]] | None = None,
        reply_limit: Callable[[], int | None] | None = None,
    ) -> None:
        folder.mkdir(exist_ok=True)
        data = folder / "data"
        config_path = folder / "locker.toml"
        config_path.write_text(
            f'[locker]\nid = "{LOCKER}"\ndata_dir = "{data}"\n'
            f"[mqtt]\nenabled = false\nport = {port}\nheartbeat_s = 1\n"
            f'[api]\nsocket = "{folder / "api.sock"}"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
            '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
        )
        config = load_config(config_path)
        if epoch > 1:  # a database promoted as a standby's is
            data.mkdir(mode=0o700, exist_ok=True)
            key = load_or_create_key(config.key_path)
            Store(data / "locker.db", CodeBook.from_key(key), locker_id=LOCKER).close()
            stamp_epoch(data / "locker.db", epoch)
        self.locker = build(config, SystemClock(), {"b0": SimBoard("b0", 8)})
        self.fenced: list[int] = []
        self.link = PlatformLink(
            self.locker.service,
            replace(config.mqtt, enabled=True),
            self.locker.loop.post,
            publish_limit=publish_limit,
            health_fields=health_fields,
            on_fenced=self.fenced.append,
            reply_limit=reply_limit,
        )
        subscribe_link(self.locker.service.hub, self.link)
        self.locker.link = self.link
        self.thread: LoopThread | None = None

    def start(self) -> None:
        self.thread = LoopThread(self.locker)

    def call(self, fn: Callable[[], Any]) -> Any:
        assert self.thread is not None
        return self.thread.call(fn)

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
        else:
            self.locker.close()
