"""Platform-link figures through a real local Mosquitto (printed, never asserted).

The locker runs in this process (the daemon's own `build` and loop thread, its real MQTT
link), against a 48-door Kerong CU48 simulated on a pty; `bench_reserve.py` measures
reservations through the `lockerd` process itself.

- reserve round trip (command published -> reply received) p50/p99, and a burst of
  1,000 reserve commands: answers per second, successes and refusals counted apart
  (48 bays: most are refused, each refusal still a committed, stored reply);
- remote open round trip with a simulated Kerong CU48 board at 9600 baud over a pty
  (command -> door seen open -> reply), p50/p99;
- draining a 10,000-event outbox after reconnect (events per second);
each with TCP_NODELAY on (the shipped setting) and, for the round trips, off on all
three sides at once: the broker (`set_tcp_nodelay`), the locker's client and the platform's.

Run: .venv/bin/python bench/bench_mqtt.py
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from figures import pct  # noqa: E402  (bench/, beside this script)
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from drivers.bus import forget_bus  # noqa: E402
from drivers.sim import SimBoard  # noqa: E402
from locker.clock import SystemClock, rfc3339  # noqa: E402
from locker.config import load_config  # noqa: E402
from locker.daemon import LoopThread, build, subscribe_link  # noqa: E402
from mqtt.link import PlatformLink  # noqa: E402
from simulator.broker import Broker  # noqa: E402
from simulator.kerong import KerongSim  # noqa: E402


def ms(v: float) -> str:
    return f"{v * 1000:.2f} ms"


class Platform:
    def __init__(self, port: int, nodelay: bool) -> None:
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events = 0
        self.events_done = threading.Event()
        self.expect = 0
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        if nodelay:
            self.c.on_socket_open = lambda c, u, s: s.setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
        self.c.on_message = self._got
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("lockers/bench/reply", qos=1)
        self.c.subscribe("lockers/bench/event/#", qos=1)
        self.c.loop_start()
        time.sleep(0.3)

    def _got(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        if m.topic.endswith("/reply"):
            self.replies.put(json.loads(m.payload))
        else:
            self.events += 1
            if self.expect and self.events >= self.expect:
                self.events_done.set()

    def command(self, name: str, **fields: Any) -> dict[str, Any]:
        cid = str(uuid.uuid4())
        self.c.publish(
            f"lockers/bench/cmd/{name}",
            json.dumps({"command_id": cid, "sent_at": rfc3339(time.time()), **fields}),
            qos=1,
        )
        while True:
            reply = self.replies.get(timeout=10)
            if reply["command_id"] == cid:
                return reply

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def run(nodelay: bool, drain: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-mqtt-"))
    broker = Broker(tmp)
    if not nodelay:
        broker.conf.write_text(broker.conf.read_text().replace("set_tcp_nodelay true", ""))
        broker.stop()
        broker.start()
    sim = SimBoard("k0", 48, door_close_s=0.0)
    device = KerongSim("cu48", {0: sim}, baud=9600)
    (tmp / "locker.toml").write_text(
        f'[locker]\nid = "bench"\ndata_dir = "{tmp / "data"}"\n'
        f"[mqtt]\nport = {broker.port}\n"
        f'[[boards]]\nname = "k0"\ndriver = "kerong-cu48"\nport = "{device.path}"\nbaud = 9600\n'
        '[[compartments]]\nnumbers = "1-48"\nchannels = "1-48"\nboard = "k0"\nsize = "S"\n'
        '[api]\nsocket = "api.sock"\n[rules]\nreserve_hours = 1\n'
        "[security]\nremote_open_per_hour = 3600\n"
    )
    config = load_config(tmp / "locker.toml")
    locker = build(config, SystemClock())
    assert locker.link is not None
    hub, old = locker.service.hub, locker.link
    hub.committed.unsubscribe(old.committed)
    hub.command_answered.unsubscribe(old.late_reply)
    hub.loop_turn.unsubscribe(old.on_turn)
    locker.link = PlatformLink(locker.service, config.mqtt, locker.loop.post, tcp_nodelay=nodelay)
    subscribe_link(hub, locker.link)
    running = LoopThread(locker, turn_s=0.002, inputs=False)
    locker.link.start()
    platform = Platform(broker.port, nodelay)
    label = "TCP_NODELAY on " if nodelay else "TCP_NODELAY off: broker, locker, platform"
    try:
        while not locker.link.connected:
            time.sleep(0.01)
        item = [{"sku": "1", "qty": 1, "size": "S"}]
        rtt = []
        for i in range(200):
            t = time.perf_counter()
            reply = platform.command("reserve", order_id=f"R{nodelay}{i}", items=item)
            rtt.append(time.perf_counter() - t)
            if reply["ok"]:
                platform.command("cancel", order_id=f"R{nodelay}{i}", reason="bench")
        print(
            f"[{label}] reserve round trip: p50 {ms(statistics.median(rtt))},"
            f" p99 {ms(pct(rtt, 0.99))}"
        )
        # sustained: many reservations in flight at once, then all their replies
        n = 1000
        t = time.perf_counter()
        ids = set()
        for i in range(n):
            cid = f"s{nodelay}{i}"
            ids.add(cid)
            platform.c.publish(
                "lockers/bench/cmd/reserve",
                json.dumps(
                    {
                        "command_id": cid,
                        "sent_at": rfc3339(time.time()),
                        "order_id": f"S{i}",
                        "items": item,
                    }
                ),
                qos=1,
            )
        ok = 0
        while ids:
            reply = platform.replies.get(timeout=30)
            if reply["command_id"] in ids:
                ids.discard(reply["command_id"])
                ok += bool(reply["ok"])
        elapsed = time.perf_counter() - t
        print(
            f"[{label}] burst of {n} reserve commands, all answered (durable store):"
            f" {n / elapsed:.0f} answers/s; {ok} reserved, {n - ok} refused"
            " NO_COMPARTMENT_AVAILABLE (48 bays; successful reservations/s: bench_reserve.py)"
        )
        opens = []
        for i in range(100):
            ch = 1 + i % 48
            t = time.perf_counter()
            reply = platform.command("open", compartment=ch, reason="bench", operator="b")
            opens.append(time.perf_counter() - t)
            assert reply["ok"], reply
            sim.close_door(ch)
        print(
            f"[{label}] remote open round trip (CU48 sim at 9600 baud, door seen open):"
            f" p50 {ms(statistics.median(opens))}, p99 {ms(pct(opens, 0.99))}"
        )
        if drain:
            broker.stop()
            time.sleep(0.5)
            total = 10_000

            def fill() -> None:
                with locker.store.transaction() as tx:
                    for i in range(total):
                        tx.emit(
                            "expiring_soon",
                            {"order_id": f"D{i}", "pickup_until": rfc3339(time.time())},
                            time.time(),
                        )

            running.call(fill, timeout=60)
            platform.close()
            broker.start()
            platform = Platform(broker.port, nodelay)
            platform.expect = total
            t = time.perf_counter()
            while locker.store.outbox_depth():
                time.sleep(0.01)
            elapsed = time.perf_counter() - t
            platform.events_done.wait(30)
            print(
                f"[{label}] outbox of {total} events drained after reconnect in"
                f" {elapsed:.2f} s: {total / elapsed:.0f} events/s"
                f" ({platform.events} received by the platform)"
            )
    finally:
        platform.close()
        running.stop()
        forget_bus(device.path)
        device.close()
        broker.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # the figures, not the alarms the bench provokes
    run(nodelay=True, drain=True)
    run(nodelay=False, drain=False)
