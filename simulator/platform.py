"""`locker-sim platform`: a stand-in for the e-commerce platform, over MQTT.

It reserves compartments for orders, prints their deposit codes (and QR
text), follows the lockers' events, and confirms receipt of an order on its
`picked_up` event and on no other. Events come through the shared
subscription `$share/platform/{prefix}/+/event/#`, so several instances share
many lockers; each instance gets the replies to its own commands on a response
topic of its own under `{prefix}/{id}/reply/`.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from locker.clock import rfc3339
from locker.qr import save_png, terminal

log = logging.getLogger(__name__)

Printer = Callable[[str], None]


class PlatformError(Exception):
    """The platform simulator cannot go on (told to the user in one line)."""


class NoBroker(PlatformError):
    """No MQTT broker answers at the given address."""


class NoReply(PlatformError):
    """A locker did not answer a command in time (not running, or another broker or id)."""


def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PlatformSim:
    """Plays the platform for one or many lockers."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = "lockers",
        username: str = "",
        password: str = "",
        out: Printer = print,
        qr_dir: Path | None = None,
    ) -> None:
        self.prefix = prefix
        self.qr_dir = qr_dir  # where the customer's QR codes go as PNG files
        self.instance = uuid.uuid4().hex[:8]
        self.out = out
        self.confirmed: list[str] = []
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._replies: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"platform-sim-{self.instance}",
            protocol=mqtt.MQTTv5,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_socket_open = _nodelay
        self._ready = threading.Event()
        try:
            self.client.connect(host, port)
        except OSError as exc:
            raise NoBroker(
                f"cannot connect to the MQTT broker at {host}:{port}: {exc.strerror or exc}"
            ) from exc
        self.client.loop_start()
        if not self._ready.wait(10):
            self.close()
            raise NoBroker(f"the MQTT broker at {host}:{port} did not accept the connection")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
        client.subscribe(f"$share/platform/{self.prefix}/+/event/#", qos=1)
        client.subscribe(f"{self.prefix}/+/reply/{self.instance}", qos=1)
        self._ready.set()

    def _on_message(self, client: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            log.warning("not JSON on %s", msg.topic)
            return
        if "/reply/" in msg.topic:
            with self._lock:
                box = self._replies.get(str(payload.get("command_id")))
            if box is not None:
                box.put(payload)
            return
        self._event(payload)

    def _event(self, ev: dict[str, Any]) -> None:
        kind, order = ev.get("type"), ev.get("order_id", "")
        where = f"locker {ev.get('locker_id')}"
        if kind == "deposited":
            self.out(
                f"platform: {order} loaded in {where}, compartments "
                f"{[c['number'] for c in ev['compartments']]}; send the shopper the pickup"
                f" code {ev['pickup_code']} (QR: {ev['pickup_qr']}), until"
                f" {ev['pickup_until']}"
            )
            self._send_qr(order, ev["pickup_qr"])
        elif kind == "code_issued":
            self.out(f"platform: new pickup code for {order} from {where}: {ev['pickup_code']}")
            self._send_qr(order, ev["pickup_qr"])
        elif kind == "picked_up":
            # The one event on which the platform confirms receipt (自动确认收货).
            self.confirmed.append(order)
            self.out(
                f"platform: {order} collected ({ev['method']}) at {ev['closed_at']}"
                " -> receipt of the order CONFIRMED"
            )
        else:
            detail = {
                k: v
                for k, v in ev.items()
                if k not in ("event_id", "seq", "type", "locker_id", "occurred_at")
            }
            self.out(f"platform: {kind} from {where} {json.dumps(detail, ensure_ascii=False)}")
        self.events.put(ev)

    def _send_qr(self, order: str, text: str) -> None:
        """What the shopper's phone would show: the QR as a PNG and in the terminal."""
        if self.qr_dir is None:
            return
        png = save_png(text, self.qr_dir / f"{order}-pickup-qr.png")
        self.out(f"platform: QR for {order} (show it to the camera): {png}\n{terminal(text)}")

    def command(self, locker_id: str, name: str, timeout: float = 10, **fields: Any) -> Any:
        """Send a command and wait for its reply (NoReply after `timeout` seconds)."""
        command_id = str(uuid.uuid4())
        box: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._replies[command_id] = box
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = f"{self.prefix}/{locker_id}/reply/{self.instance}"
        props.CorrelationData = command_id.encode()
        props.MessageExpiryInterval = 300  # a stale command is never delivered late
        payload = {"command_id": command_id, "sent_at": rfc3339(time.time()), **fields}
        self.client.publish(
            f"{self.prefix}/{locker_id}/cmd/{name}", json.dumps(payload), qos=1, properties=props
        )
        try:
            return box.get(timeout=timeout)
        except queue.Empty:
            raise NoReply(
                f"locker {locker_id} did not answer {name} within {timeout:g} s"
            ) from None
        finally:
            with self._lock:
                self._replies.pop(command_id, None)

    def reserve(
        self, locker_id: str, order_id: str, items: list[dict[str, Any]], timeout: float = 10
    ) -> Any:
        reply = self.command(locker_id, "reserve", timeout, order_id=order_id, items=items)
        if reply["ok"]:
            r = reply["result"]
            self.out(
                f"platform: {order_id} reserved in locker {locker_id}, compartments "
                f"{[c['number'] for c in r['compartments']]}; deposit code for the staff"
                f" {r['deposit_code']} (QR: locker:{locker_id}:deposit:{r['deposit_code']})"
            )
        else:
            self.out(
                f"platform: {order_id} refused by locker {locker_id}:"
                f" {reply['error']['code']} ({reply['error']['message']})"
            )
        return reply

    def wait_event(self, kind: str, order_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            ev = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if ev.get("type") == kind and ev.get("order_id") == order_id:
                return ev
