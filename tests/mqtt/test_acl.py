"""The shipped Mosquitto ACL against a real broker: lockers are walled off from each other."""

from __future__ import annotations

import queue
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulator.broker import Broker

ROOT = Path(__file__).resolve().parent.parent.parent
ACL = ROOT / "config" / "mosquitto" / "locker-acl"
USERS = {"platform": "pw-platform", "store-a": "pw-a", "store-b": "pw-b"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    passwd = tmp_path / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    for i, (user, pw) in enumerate(USERS.items()):
        args = [tool, "-b"] + (["-c"] if i == 0 else []) + [str(passwd), user, pw]
        subprocess.run(args, check=True, capture_output=True)
    b = Broker(tmp_path, extra=f"password_file {passwd}\nacl_file {ACL}\n")
    b.conf.write_text(b.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    b.stop()
    b.start()
    yield b
    b.stop()


class Client:
    def __init__(self, port: int, user: str | None, password: str | None = None) -> None:
        self.got: queue.Queue[str] = queue.Queue()
        self.acks: queue.Queue[int] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        self.connected: queue.Queue[Any] = queue.Queue()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"t-{user}-{time.time_ns()}",
            protocol=mqtt.MQTTv5,
        )
        if user:
            self.c.username_pw_set(user, password or USERS[user])
        self.c.on_message = lambda c, u, m: self.got.put(m.topic)
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.put(rc.value)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put([r.value for r in rcs])
        self.c.on_connect = lambda c, u, f, rc, p: self.connected.put(rc.value)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.rc = self.connected.get(timeout=5)

    def sub(self, topic: str) -> list[Any]:
        self.c.subscribe(topic, qos=1)
        return self.subacks.get(timeout=5)

    def pub(self, topic: str) -> int:
        self.c.publish(topic, b"{}", qos=1)
        return self.acks.get(timeout=5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


NOT_AUTHORIZED = 0x87


def test_lockers_are_walled_off(broker: Broker) -> None:
    platform = Client(broker.port, "platform")
    a, b = Client(broker.port, "store-a"), Client(broker.port, "store-b")
    try:
        assert platform.sub("lockers/+/event/#") == [1]
        assert a.sub("lockers/store-a/cmd/#") == [1]
        assert b.sub("lockers/store-b/cmd/#") == [1]
        # a locker cannot listen to another's commands: mosquitto grants the subscription
        # and filters every message on delivery
        a.sub("lockers/store-b/cmd/#")
        a.sub("lockers/+/cmd/#")
        assert platform.pub("lockers/store-b/cmd/open") == 0
        assert b.got.get(timeout=5) == "lockers/store-b/cmd/open"
        time.sleep(0.3)
        assert a.got.empty()
        # a locker cannot publish as another, nor send commands
        assert a.pub("lockers/store-b/event/picked_up") == NOT_AUTHORIZED
        assert a.pub("lockers/store-a/cmd/open") == NOT_AUTHORIZED
        assert a.pub("lockers/store-a/event/picked_up") == 0
        assert platform.got.get(timeout=5) == "lockers/store-a/event/picked_up"
        time.sleep(0.3)
        assert platform.got.empty()
        # the platform cannot pose as a locker
        assert platform.pub("lockers/store-a/event/picked_up") == NOT_AUTHORIZED
    finally:
        for c in (platform, a, b):
            c.close()


def test_anonymous_and_wrong_passwords_are_refused(broker: Broker) -> None:
    for user, pw in ((None, None), ("store-a", "wrong")):
        c = Client(broker.port, user, pw)
        assert c.rc != 0
        c.close()
