"""The shipped Mosquitto ACL against a real broker: lockers are walled off from each other."""

from __future__ import annotations

import getpass
import json
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

from drivers.sim import SimBoard
from locker.clock import SystemClock, rfc3339
from locker.config import load_config
from locker.daemon import LoopThread, build
from simulator.broker import Broker

ROOT = Path(__file__).resolve().parent.parent.parent
SHIPPED = ROOT / "config" / "mosquitto" / "mosquitto.conf"
ACL = ROOT / "config" / "mosquitto" / "locker-acl"
USERS = {"platform": "pw-platform", "store-001-a": "pw-a", "store-001-b": "pw-b"}
LOCKERS = ("store-001-a", "store-001-b")
ADMIN = ("admin", "pw-admin")


def adapt(shipped: str, folder: Path, port: int) -> str:
    """The shipped configuration with this test's port, folder and files (no TLS here:
    test_tls.py covers it); every other line as shipped."""
    plugins = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
    out = [f"user {getpass.getuser()}", f"persistence_location {folder}/"]
    ours = {
        "plugin": f"plugin {plugins[0]}",
        "plugin_opt_config_file": f"plugin_opt_config_file {folder / 'dynsec.json'}",
        "password_file": f"password_file {folder / 'passwd'}",
        "acl_file": f"acl_file {ACL}",
    }
    for line in shipped.splitlines():
        key = line.split(" ", 1)[0]
        if key not in ("listener", "cafile", "certfile", "keyfile"):
            out.append(ours.get(key, line))
    return "\n".join([*out, f"listener {port} 127.0.0.1", ""])


def provision(broker: Broker, folder: Path) -> None:
    """Every account of USERS, the way the shipped configuration's comments say."""
    if (folder / "dynsec.json").exists():
        ctl = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
        admin = [ctl, "-h", "127.0.0.1", "-p", str(broker.port), "-u", ADMIN[0], "-P", ADMIN[1]]
        for user, pw in USERS.items():
            fixed = ["-c", f"locker-{user}"] if user in LOCKERS else []
            args = [*admin, "dynsec", "createClient", user, *fixed, "-p", pw]
            subprocess.run(args, check=True, capture_output=True)
    else:  # a password file, as the configuration before the plugin had it
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for i, (user, pw) in enumerate(USERS.items()):
            args = [tool, "-b"] + (["-c"] if i == 0 else []) + [str(folder / "passwd"), user, pw]
            subprocess.run(args, check=True, capture_output=True)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto with the shipped configuration and ACL."""
    b = Broker(tmp_path)
    b.stop()
    shipped = SHIPPED.read_text()
    b.conf.write_text(adapt(shipped, tmp_path, b.port))
    if "dynamic_security" in shipped:
        ctl = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
        init = [ctl, "dynsec", "init", str(tmp_path / "dynsec.json"), *ADMIN]
        subprocess.run(init, check=True, capture_output=True)
        # the plugin must grant nothing the ACL file does not: as the shipped file says
        seds = [line for line in shipped.splitlines() if line.startswith("#   sed -i ")]
        assert len(seds) == 1
        sed = seds[0].removeprefix("#   ").replace("$F", str(tmp_path / "dynsec.json"))
        subprocess.run(sed, shell=True, check=True)
    else:
        provision(b, tmp_path)
    b.start()
    if (tmp_path / "dynsec.json").exists():
        provision(b, tmp_path)
    yield b
    b.stop()


class Client:
    def __init__(
        self,
        port: int,
        user: str | None,
        password: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.got: queue.Queue[str] = queue.Queue()
        self.acks: queue.Queue[int] = queue.Queue()
        self.subacks: queue.Queue[list[Any]] = queue.Queue()
        self.connected: queue.Queue[Any] = queue.Queue()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or _client_id(user),
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


def _client_id(user: str | None) -> str:
    # contract v1.1: a locker's client id is locker-{its user name}
    return f"locker-{user}" if user in LOCKERS else f"t-{user}-{time.time_ns()}"


NOT_AUTHORIZED = 0x87


def test_lockers_are_walled_off(broker: Broker) -> None:
    platform = Client(broker.port, "platform")
    a, b = Client(broker.port, "store-001-a"), Client(broker.port, "store-001-b")
    try:
        assert platform.sub("lockers/+/event/#") == [1]
        assert a.sub("lockers/store-001-a/cmd/#") == [1]
        assert b.sub("lockers/store-001-b/cmd/#") == [1]
        # a locker cannot listen to another's commands: mosquitto grants the subscription
        # and filters every message on delivery
        a.sub("lockers/store-001-b/cmd/#")
        a.sub("lockers/+/cmd/#")
        assert platform.pub("lockers/store-001-b/cmd/open") == 0
        assert b.got.get(timeout=5) == "lockers/store-001-b/cmd/open"
        time.sleep(0.3)
        assert a.got.empty()
        # a locker cannot publish as another, nor send commands
        assert a.pub("lockers/store-001-b/event/picked_up") == NOT_AUTHORIZED
        assert a.pub("lockers/store-001-a/cmd/open") == NOT_AUTHORIZED
        assert a.pub("lockers/store-001-a/event/picked_up") == 0
        assert platform.got.get(timeout=5) == "lockers/store-001-a/event/picked_up"
        time.sleep(0.3)
        assert platform.got.empty()
        # the platform cannot pose as a locker
        assert platform.pub("lockers/store-001-a/event/picked_up") == NOT_AUTHORIZED
    finally:
        for c in (platform, a, b):
            c.close()


def test_a_locker_reads_its_own_retained_status_and_no_other(broker: Broker) -> None:
    """Fencing reads the locker's own retained status (a higher epoch: a standby took
    over); another cabinet's credentials read nothing of it."""
    a, b = Client(broker.port, "store-001-a"), Client(broker.port, "store-001-b")
    try:
        for client, locker in ((a, "store-001-a"), (b, "store-001-b")):
            status = json.dumps({"online": True, "epoch": 2})
            client.c.publish(f"lockers/{locker}/status", status, qos=1, retain=True)
            assert client.acks.get(timeout=5) in (0, 0x10)  # 0x10: no subscriber yet
        a.sub("lockers/store-001-a/status")
        assert a.got.get(timeout=5) == "lockers/store-001-a/status"
        a.sub("lockers/store-001-b/status")
        a.sub("lockers/+/status")
        time.sleep(0.3)
        assert a.got.empty() or a.got.get_nowait() == "lockers/store-001-a/status"
        assert a.got.empty()
    finally:
        for c in (a, b):
            c.close()


def test_anonymous_and_wrong_passwords_are_refused(broker: Broker) -> None:
    for user, pw in ((None, None), ("store-001-a", "wrong")):
        c = Client(broker.port, user, pw)
        assert c.rc != 0
        c.close()


def test_a_lockers_credentials_never_take_over_another_lockers_session(
    broker: Broker, tmp_path: Path
) -> None:
    """store-001-b's password with store-001-a's client id: refused, and the real lockerd
    of store-001-a stays connected and answers every command (contract v1.1)."""
    secret = tmp_path / "mqtt-password"
    secret.write_text(USERS["store-001-a"] + "\n")
    secret.chmod(0o600)
    (tmp_path / "locker.toml").write_text(
        f'[locker]\nid = "store-001-a"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nusername = "store-001-a"\n'
        f'password_file = "{secret}"\n[api]\nsocket = "{tmp_path / "api.sock"}"\n'
        '[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
    )
    locker = build(load_config(tmp_path / "locker.toml"), SystemClock(), {"b0": SimBoard("b0", 8)})
    running = LoopThread(locker)
    platform = Client(broker.port, "platform")
    replies: queue.Queue[dict[str, Any]] = queue.Queue()
    platform.c.on_message = lambda c, u, m: replies.put(json.loads(m.payload))
    link = locker.link
    assert link is not None
    try:
        platform.sub("lockers/store-001-a/reply")
        deadline = time.monotonic() + 10
        while not link.connected:
            assert time.monotonic() < deadline, "the locker did not connect"
            time.sleep(0.02)
        for i in range(5):
            rogue = Client(broker.port, "store-001-b", client_id="locker-store-001-a")
            # the locker's own user name with another client id is no better
            other = Client(broker.port, "store-001-a", client_id=f"rogue-{i}")
            assert (rogue.rc, other.rc) == (NOT_AUTHORIZED, NOT_AUTHORIZED)
            rogue.close()
            other.close()
            command = {"command_id": f"s-{i}", "sent_at": rfc3339(time.time())}
            platform.c.publish("lockers/store-001-a/cmd/sync", json.dumps(command), qos=1)
            reply = replies.get(timeout=5)
            assert (reply["command_id"], reply["ok"]) == (f"s-{i}", True)
            assert link.connected and link.client.is_connected()
        # the real pairing still works, and its own client id is all it may use
        b = Client(broker.port, "store-001-b")
        assert b.rc == 0
        b.close()
    finally:
        platform.close()
        running.stop()


def test_a_huge_command_never_reaches_a_locker(broker: Broker) -> None:
    platform = Client(broker.port, "platform")
    a = Client(broker.port, "store-001-a")
    try:
        assert a.sub("lockers/store-001-a/cmd/#") == [1]
        platform.c.publish("lockers/store-001-a/cmd/sync", b"{" + b" " * (16 << 20) + b"}", qos=1)
        deadline = time.monotonic() + 10
        while platform.c.is_connected():  # the broker hangs up on the sender
            assert time.monotonic() < deadline, "the broker took a 16 MB command"
            time.sleep(0.05)
        time.sleep(0.3)
        assert a.got.empty() and a.c.is_connected()
    finally:
        platform.close()
        a.close()
