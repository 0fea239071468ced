"""The platform link against a real Mosquitto: commands, replies, events, status, outages."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.sim import SimBoard
from locker.clock import SystemClock, rfc3339
from locker.config import load_config
from locker.daemon import Locker, LoopThread, build
from locker.model import Method
from simulator.broker import Broker

BIN = Path(sys.executable).parent


class Platform:
    """What the platform does: publish commands, collect replies and events."""

    def __init__(self, port: int, locker_id: str = "mq-1") -> None:
        self.locker_id = locker_id
        self.messages: queue.Queue[tuple[str, dict[str, Any], bool]] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"platform-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._got
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"lockers/{locker_id}/#", qos=1)
        self.client.loop_start()
        time.sleep(0.2)

    def _got(self, client: Any, userdata: Any, m: mqtt.MQTTMessage) -> None:
        if "/cmd/" in m.topic:
            return  # our own commands
        self.messages.put((m.topic, json.loads(m.payload), bool(m.retain)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send(self, name: str, payload: bytes | dict[str, Any], props: Any = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(
            f"lockers/{self.locker_id}/cmd/{name}", data, qos=1, properties=props
        ).wait_for_publish(5)

    def command(self, name: str, **fields: Any) -> dict[str, Any]:
        command_id = str(uuid.uuid4())
        self.send(name, {"command_id": command_id, "sent_at": rfc3339(time.time()), **fields})
        return self.wait("reply", lambda p: p.get("command_id") == command_id)

    def wait(self, suffix: str, match: Any = lambda p: True, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {suffix} message")
            topic, payload, _ = self.messages.get(timeout=left)
            if topic.endswith(suffix) and match(payload):
                return payload


class Rig:
    """The locker's build() and loop in a thread, connected to the broker."""

    def __init__(self, folder: Path, port: int) -> None:
        folder.mkdir(exist_ok=True)
        self.config_path = folder / "locker.toml"
        self.config_path.write_text(
            f'[locker]\nid = "mq-1"\ndata_dir = "{folder / "data"}"\n'
            f"[mqtt]\nport = {port}\nheartbeat_s = 1\n"
            "[doors]\nopen_confirm_s = 0.2\n[security]\nremote_open_per_hour = 3\n"
            '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
            '[[compartments]]\nnumbers = "1-8"\nchannels = "1-8"\nboard = "b0"\nsize = "S"\n'
        )
        self.board = SimBoard("b0", 48, door_close_s=0.05)
        self.locker: Locker = build(
            load_config(self.config_path), SystemClock(), {"b0": self.board}
        )
        self.thread = LoopThread(self.locker)

    def call(self, fn: Any) -> Any:
        return self.thread.call(fn)

    def stop(self) -> None:
        self.thread.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    yield b
    b.stop()


@pytest.fixture
def rig(tmp_path: Path, broker: Broker) -> Iterator[Rig]:
    r = Rig(tmp_path / "locker", broker.port)
    yield r
    r.stop()


@pytest.fixture
def platform(broker: Broker) -> Iterator[Platform]:
    p = Platform(broker.port)
    yield p
    p.close()


def wait_connected(rig: Rig) -> None:
    deadline = time.monotonic() + 10
    while not (rig.locker.link and rig.locker.link.connected):
        assert time.monotonic() < deadline, "locker did not connect"
        time.sleep(0.02)


def test_status_state_and_a_reserve_round_trip(rig: Rig, platform: Platform) -> None:
    wait_connected(rig)
    status = platform.wait("/status", lambda p: p.get("online"))
    assert status["version"] and status["since"].endswith("Z")
    state = platform.wait("/state")
    assert state["free"] == {"S": 8} and len(state["compartments"]) == 8
    reply = platform.command(
        "reserve", order_id="SO-1", items=[{"sku": "1", "qty": 1, "size": "S"}]
    )
    assert reply["ok"] and len(reply["result"]["deposit_code"]) == 10
    state = platform.wait("/state", lambda p: p["free"] == {"S": 7})
    assert "SO-1" not in json.dumps(state)
    hb = platform.wait("/heartbeat")
    assert hb["boards"] == [{"name": "b0", "online": True, "errors": 0}]


def test_reply_on_the_response_topic_with_correlation_data(rig: Rig, platform: Platform) -> None:
    wait_connected(rig)
    platform.client.subscribe("platform/replies/7", qos=1)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "platform/replies/7"
    props.CorrelationData = b"corr-7"
    got: queue.Queue[tuple[bytes, dict[str, Any]]] = queue.Queue()
    platform.client.message_callback_add(
        "platform/replies/7",
        lambda c, u, m: got.put((m.properties.CorrelationData, json.loads(m.payload))),
    )
    platform.send("sync", {"command_id": "s-1", "sent_at": rfc3339(time.time())}, props)
    correlation, reply = got.get(timeout=10)
    assert correlation == b"corr-7" and reply["command_id"] == "s-1" and reply["ok"]


def test_bad_commands_get_error_replies_and_duplicates_act_once(
    rig: Rig,
    platform: Platform,
) -> None:
    wait_connected(rig)
    platform.send("reserve", b"\xff not json")
    reply = platform.wait("reply", lambda p: p["command_id"] is None)
    assert reply["error"]["code"] == "INVALID_PAYLOAD"
    assert platform.command("teleport")["error"]["code"] == "UNKNOWN_COMMAND"
    payload = {
        "command_id": "dup-1",
        "sent_at": rfc3339(time.time()),
        "order_id": "SO-D",
        "items": [{"sku": "1", "qty": 1, "size": "S"}],
    }
    platform.send("reserve", payload)
    first = platform.wait("reply", lambda p: p["command_id"] == "dup-1")
    platform.send("reserve", payload)
    second = platform.wait("reply", lambda p: p["command_id"] == "dup-1")
    assert first == second
    snapshot = rig.call(rig.locker.service.snapshot)
    assert snapshot["free"] == {"S": 7}


def test_events_survive_a_broker_outage_in_seq_order(
    rig: Rig,
    platform: Platform,
    broker: Broker,
) -> None:
    wait_connected(rig)
    broker.stop()
    svc = rig.locker.service
    for i in range(3):  # the locker keeps serving while the broker is down
        order_id = f"SO-O{i}"
        reply = rig.call(
            lambda o=order_id: rig.locker.link.commands.handle(  # type: ignore[union-attr]
                "reserve",
                json.dumps(
                    {
                        "command_id": f"c-{o}",
                        "sent_at": rfc3339(time.time()),
                        "order_id": o,
                        "items": [{"sku": "1", "qty": 1, "size": "S"}],
                    }
                ),
            )
        )
        rig.call(lambda r=reply: svc.enter_code(r["result"]["deposit_code"], Method.KEYPAD))

    def stored_events() -> list[Any]:
        return list(rig.call(lambda: rig.locker.store.events(limit=100)))

    def wait_count(kind: str, n: int) -> None:
        deadline = time.monotonic() + 10
        while [e.type for e in stored_events()].count(kind) < n:
            assert time.monotonic() < deadline, [e.type for e in stored_events()]
            time.sleep(0.05)

    wait_count("deposited", 3)  # each door opens and closes by itself
    for ev in [e for e in stored_events() if e.type == "deposited"][:2]:
        code = ev.fields["pickup_code"]
        rig.call(lambda c=code: svc.enter_code(c, Method.SCANNER))
    wait_count("picked_up", 2)  # pickups go on while the broker is down, too
    stored = stored_events()
    platform.close()
    broker.start()
    p2 = Platform(broker.port)
    try:
        got = [p2.wait("", lambda p: "event_id" in p, timeout=15) for _ in stored]
        assert [e["seq"] for e in got] == [e.seq for e in stored]  # all, in seq order
        assert [e["event_id"] for e in got] == [e.event_id for e in stored]
        assert [e["type"] for e in got].count("picked_up") == 2
        deadline = time.monotonic() + 5
        while rig.call(rig.locker.store.outbox_depth):
            assert time.monotonic() < deadline, "outbox not drained after PUBACKs"
            time.sleep(0.05)
    finally:
        p2.close()


def test_last_will_when_the_daemon_is_killed(tmp_path: Path, broker: Broker) -> None:
    folder = tmp_path / "proc"
    folder.mkdir()
    config = folder / "locker.toml"
    config.write_text(
        f'[locker]\nid = "mq-1"\ndata_dir = "{folder / "data"}"\n[mqtt]\nport = {broker.port}\n'
        '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
    )
    proc = subprocess.Popen([BIN / "lockerd", "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        platform = Platform(broker.port)
        platform.wait("/status", lambda p: p.get("online") is True)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        offline = platform.wait("/status", lambda p: p.get("online") is False, timeout=90)
        assert offline == {"online": False, "epoch": 1}  # the database's epoch
        platform.close()
        late = Platform(broker.port)  # the retained status tells a newcomer too
        topic, payload, retained = late.messages.get(timeout=10)
        while not topic.endswith("/status"):
            topic, payload, retained = late.messages.get(timeout=10)
        assert payload == {"online": False, "epoch": 1} and retained
        late.close()
    finally:
        proc.kill()


def test_remote_open_is_answered_once_the_door_is_seen_open(rig: Rig, platform: Platform) -> None:
    wait_connected(rig)
    reply = platform.command("open", compartment=4, reason="customer at the desk", operator="cs-1")
    assert reply["ok"] and reply["result"] == {"compartment": 4, "door": "opened"}
    stale = {"command_id": "late-1", "sent_at": rfc3339(time.time() - 3600), "compartment": 5}
    platform.send("open", stale)
    assert platform.wait("reply", lambda p: p["command_id"] == "late-1")["error"]["code"] == (
        "COMMAND_EXPIRED"
    )
    assert [ch for _, ch in rig.board.unlocks] == [4]  # the stale open never fired


@pytest.mark.slow
def test_sigkill_between_commit_and_puback(tmp_path: Path, broker: Broker) -> None:
    """An event committed but never acknowledged is published after a restart, unchanged."""
    from drivers.bus import forget_bus
    from locker.codes import CodeBook, load_or_create_key
    from locker.storage import Store
    from simulator.console import Cabinet

    cab = Cabinet(tmp_path / "cab", cu48=1, scanner=False, locker_id="mq-1", mqtt_port=broker.port)
    config = load_config(cab.config_path)
    broker.stop()  # no PUBACK can come
    proc = subprocess.Popen(
        [BIN / "lockerd", "--config", str(cab.config_path)], stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(1.0)
        cab.run("force 3")
        db = config.locker.data_dir / "locker.db"
        deadline = time.monotonic() + 10
        stored: list[Any] = []
        while not stored:
            assert time.monotonic() < deadline, "the forced door was not recorded"
            time.sleep(0.1)
            store = Store(db, CodeBook.from_key(load_or_create_key(config.key_path)))
            stored = [e for e in store.events() if e.type == "door_alarm"]
            store.close()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        broker.start()
        platform = Platform(broker.port)
        proc = subprocess.Popen(
            [BIN / "lockerd", "--config", str(cab.config_path)], stderr=subprocess.DEVNULL
        )
        got = platform.wait("/event/door_alarm", timeout=20)
        assert (got["event_id"], got["seq"]) == (stored[0].event_id, stored[0].seq)
        assert got["compartment"] == 3 and got["kind"] == "forced"
        platform.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        forget_bus(config.boards[0].options["port"])
        cab.close()


def test_a_command_its_schema_refuses_is_answered_naming_the_field(
    rig: Rig, platform: Platform
) -> None:
    wait_connected(rig)
    reply = platform.command(
        "reserve", order_id="SO-S", items=[{"sku": "1", "qty": 0, "size": "S"}]
    )
    assert reply["error"]["code"] == "INVALID_PAYLOAD"
    assert reply["error"]["message"].startswith("items[0].qty")


def test_every_command_and_its_errors_through_the_broker(rig: Rig, platform: Platform) -> None:
    wait_connected(rig)
    item = {"sku": "1", "qty": 1, "size": "S"}

    def code(name: str, **fields: Any) -> str:
        reply = platform.command(name, **fields)
        return "OK" if reply["ok"] else str(reply["error"]["code"])

    assert code("reserve", order_id="F", items=[{**item, "fresh": True}]) == "FRESH_NOT_ALLOWED"
    assert code("reserve", order_id="M", items=[{**item, "qty": 5}]) == "TOO_MANY_ITEMS"
    assert code("reserve", order_id="X", items=[{**item, "size": "XL"}]) == "OVERSIZE"
    assert code("reserve", order_id="P", items=[item], parcels=[{"size": "S"}] * 3) == (
        "TOO_MANY_PARCELS"
    )
    assert code("reserve", order_id="A", items=[item]) == "OK"
    assert code("reserve", order_id="A", items=[item]) == "ORDER_EXISTS"
    for i in range(7):
        assert code("reserve", order_id=f"B{i}", items=[item]) == "OK"
    assert code("reserve", order_id="C", items=[item]) == "NO_COMPARTMENT_AVAILABLE"
    assert code("cancel", order_id="nobody", reason="r") == "UNKNOWN_ORDER"
    assert code("cancel", order_id="B6", reason="r") == "OK"
    later = rfc3339(time.time() + 3600)
    assert code("extend", order_id="A", pickup_until=later) == "ORDER_NOT_LOADED"
    assert code("reissue_code", order_id="A") == "ORDER_NOT_LOADED"
    assert code("set_service", compartment=8, in_service=False, reason="r") == "OK"
    assert code("set_service", compartment=99, in_service=False, reason="r") == (
        "UNKNOWN_COMPARTMENT"
    )
    assert code("open", compartment=99, reason="r", operator="o") == "UNKNOWN_COMPARTMENT"
    assert code("sync") == "OK"


def test_the_door_and_order_errors_through_the_broker(rig: Rig, platform: Platform) -> None:
    wait_connected(rig)
    svc = rig.locker.service
    reply = platform.command(
        "reserve", order_id="SO-C", items=[{"sku": "1", "qty": 1, "size": "S"}]
    )
    number = reply["result"]["compartments"][0]["number"]
    rig.call(lambda: svc.enter_code(reply["result"]["deposit_code"], Method.KEYPAD))
    deposited = platform.wait("/event/deposited")
    rig.call(lambda: svc.enter_code(deposited["pickup_code"], Method.KEYPAD))
    platform.wait("/event/picked_up")
    assert platform.command("cancel", order_id="SO-C", reason="r")["error"]["code"] == (
        "ALREADY_COLLECTED"
    )
    rig.board.jammed.add(number)
    jammed = platform.command("open", compartment=number, reason="r", operator="o")
    assert jammed["error"]["code"] == "DOOR_JAMMED"
    rig.board.offline = True

    # The board's own fault (every compartment on it), not the jammed lock's (one).
    def board_fault(p: dict[str, Any]) -> bool:
        return (p["component"], p["board"], len(p["compartments"])) == ("board", "b0", 8)

    platform.wait("/event/fault", board_fault)
    offline = platform.command("open", compartment=2, reason="r", operator="o")
    assert offline["error"]["code"] == "BOARD_OFFLINE"
    rig.board.offline = False
    platform.wait("/event/fault_cleared", board_fault)
    assert platform.command("open", compartment=3, reason="r", operator="o")["ok"]
    assert platform.command("open", compartment=4, reason="r", operator="o")["ok"]
    limited = platform.command("open", compartment=5, reason="r", operator="o")
    assert limited["error"]["code"] == "RATE_LIMITED"  # 3 an hour in this rig
