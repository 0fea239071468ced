"""The locker over TLS with a password from a file, through the shipped ACL."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from queue import Queue
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


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    certs = tmp_path / "certs"
    certs.mkdir()
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=locker-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        cwd=certs,
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "broker.key",
        "-out",
        "broker.csr",
        cwd=certs,
    )
    (certs / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "broker.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        "-out",
        "broker.crt",
        cwd=certs,
    )
    passwd = tmp_path / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-b", "-c", str(passwd), "platform", "pw-p"], check=True)
    subprocess.run([tool, "-b", str(passwd), "tls-1", "pw-locker"], check=True)
    broker = Broker(
        tmp_path,
        extra=(
            f"password_file {passwd}\nacl_file {ROOT / 'config' / 'mosquitto' / 'locker-acl'}\n"
            f"cafile {certs / 'ca.crt'}\ncertfile {certs / 'broker.crt'}\n"
            f"keyfile {certs / 'broker.key'}\n"
        ),
    )
    broker.conf.write_text(
        broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
    )
    broker.stop()
    broker.start()
    yield broker, certs / "ca.crt"
    broker.stop()


def test_locker_over_tls_with_a_password_file(
    tmp_path: Path, tls_broker: tuple[Broker, Path]
) -> None:
    broker, ca = tls_broker
    secret = tmp_path / "mqtt-password"
    secret.write_text("pw-locker\n")
    secret.chmod(0o600)
    folder = tmp_path / "locker"
    folder.mkdir()
    (folder / "locker.toml").write_text(
        f'[locker]\nid = "tls-1"\ndata_dir = "{folder / "data"}"\n'
        f'[mqtt]\nhost = "localhost"\nport = {broker.port}\nusername = "tls-1"\n'
        f'password_file = "{secret}"\ntls = true\nca_file = "{ca}"\n'
        '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
    )
    locker = build(
        load_config(folder / "locker.toml"),
        SystemClock(),
        {"b0": SimBoard("b0", 8, door_close_s=0)},
    )
    running = LoopThread(locker)
    replies: Queue[dict[str, Any]] = Queue()
    platform = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4()}", protocol=mqtt.MQTTv5
    )
    platform.username_pw_set("platform", "pw-p")
    platform.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    platform.on_message = lambda c, u, m: replies.put(json.loads(m.payload))
    try:
        platform.connect("localhost", broker.port)
        platform.subscribe("lockers/tls-1/reply", qos=1)
        platform.loop_start()
        deadline = time.monotonic() + 15
        while not (locker.link and locker.link.connected):
            assert time.monotonic() < deadline, "the locker did not connect over TLS"
            time.sleep(0.05)
        time.sleep(0.2)
        platform.publish(
            "lockers/tls-1/cmd/sync",
            json.dumps({"command_id": "t-1", "sent_at": rfc3339(time.time())}),
            qos=1,
        )
        reply = replies.get(timeout=10)
        assert reply["command_id"] == "t-1" and reply["ok"]
    finally:
        platform.disconnect()
        platform.loop_stop()
        running.stop()
