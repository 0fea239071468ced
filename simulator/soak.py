"""The fault campaign: lockerd as a process under random traffic and random faults.

`python -m simulator.soak --kills 200` (`make soak`); `tests/test_soak.py` runs a short
one. Real parts: the `lockerd` process, a private Mosquitto, two Kerong CU48 boards and a
serial scanner simulated byte for byte on ptys (`simulator.console.Cabinet`). The CU48 is
the campaign's board because its wire is the simplest to reason about: an unlock is one
frame with no reply, so every unlock the boards acted on is in `SimBoard.unlocks`.

Traffic, drawn from a seeded generator (the seed is printed first; `--seed` replays a run
as far as timing allows): reservations (some with a pickup window of seconds, and every
reservation lapsing after 72 s unloaded, through short `[rules]` deadlines: lockerd reads
the system clock and has no way to move it), deposits and pickups scanned at the serial
scanner, remote opens, cancels, new pickup codes, and expired or cancelled orders taken
out. Faults at random moments: SIGKILL, the broker stopped, 5 % of board replies dropped
and 5 % corrupted (all the time), a board unplugged in the middle of a pickup, the scanner
unplugged, and the data medium filled (a tmpfs, so only as root).

After each fault the campaign checks what the issue promises and stops at the first
broken promise (`Violation`), naming it:

- no event lost: the platform's copy, deduplicated by `event_id`, has every `seq` from 1
  to the database's last one, one `event_id` per `seq`;
- no door opened twice for one input: the unlocks the boards acted on, per compartment,
  are at most the inputs (a code scanned, a remote open) that named it;
- no unlock without an input: after each restart, with no input given, no unlock reaches
  a board;
- every order in a state the platform can explain: the state in lockerd's history equals
  the one the platform derives from the events and replies it received;
- `PRAGMA integrity_check` ok; lockerd never exits by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from locker.clock import rfc3339
from locker.dbfile import check_file
from simulator.broker import Broker
from simulator.console import Cabinet

BIN = Path(sys.executable).parent
PREFIX = "lockers"
# Short timings keep the campaign quick; the logic is the same. A person closes a door
# DOOR_CLOSE_S after it opened, longer than lockerd needs to see it open.
DOOR_CLOSE_S = 1.5
OPEN_CONFIRM_S = 0.8
SETTINGS = f"""
[doors]
poll_ms = 50
open_confirm_s = {OPEN_CONFIRM_S}
open_alarm_s = 120

[rules]
reserve_hours = 0.02

[security]
remote_open_per_hour = 3600
free_attempts = 1000
"""
SHORT_PICKUP_HOURS = 0.01  # 36 s: some orders expire while the campaign runs
# The order states by how far along they are: the platform's view only moves forward.
RANK = {
    "reserved": 0,
    "loaded": 1,
    "lapsed": 2,
    "expired": 2,
    "cancelled": 2,
    "collected": 3,
    "retrieved": 3,
}
# The stages of lockerd's order history that name a state (the rest: opened, extended...).
STATE_OF_STAGE = {**{state: state for state in RANK}, "deposited": "loaded"}
STATE_OF_EVENT = {
    "deposited": "loaded",
    "picked_up": "collected",
    "reservation_lapsed": "lapsed",
    "expired": "expired",
    "retrieved": "retrieved",
}


class Violation(AssertionError):
    """A promise the locker broke under the campaign (the message names it)."""


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise Violation(f"never: {what}")
        time.sleep(0.02)


def api(sock_path: Path, op: str, timeout: float = 5, **fields: Any) -> Any:
    """One request to lockerd's local API; its result, or OSError/RuntimeError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(json.dumps({"id": 1, "op": op, **fields}).encode() + b"\n")
        with sock.makefile("rb") as f:
            line = f.readline()
    if not line:
        raise OSError("lockerd closed the connection")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise RuntimeError(str(reply.get("error")))
    return reply["result"]


@dataclass
class Order:
    """One order as the platform knows it."""

    order_id: str
    state: str = "reserved"
    compartments: list[int] = field(default_factory=list)
    deposit_code: str = ""
    pickup_code: str = ""


@dataclass
class Pending:
    name: str
    payload: dict[str, Any]


class Platform:
    """The platform's side: one MQTT 5 client with a persistent session (so nothing sent
    to it while it reconnects after a broker outage is lost), every event it receives,
    and the orders as it understands them from events and replies."""

    def __init__(self, port: int, locker_id: str) -> None:
        self.locker_id = locker_id
        self.events: dict[str, dict[str, Any]] = {}  # event_id -> event
        self.orders: dict[str, Order] = {}
        self.pending: dict[str, Pending] = {}  # command_id -> a command not answered yet
        self._inbox: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._replies: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="soak-platform", protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
        client.subscribe(f"{PREFIX}/{self.locker_id}/event/#", qos=1)
        client.subscribe(f"{PREFIX}/{self.locker_id}/reply/soak", qos=1)

    def _on_message(self, client: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        payload = json.loads(msg.payload)
        self._inbox.put(("reply" if "/reply/" in msg.topic else "event", payload))

    # -- what arrives ---------------------------------------------------------------

    def drain(self) -> None:
        """Take in what arrived (on the caller's thread: the campaign's state has one owner)."""
        while True:
            try:
                kind, payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "reply":
                self._reply(payload)
            elif payload["event_id"] not in self.events:
                self.events[payload["event_id"]] = payload
                self._event(payload)

    def _move(self, order_id: str, state: str) -> None:
        order = self.orders.get(order_id)
        if order is not None and RANK[state] > RANK[order.state]:
            order.state = state

    def _event(self, ev: dict[str, Any]) -> None:
        order_id = ev.get("order_id", "")
        if ev["type"] in STATE_OF_EVENT:
            self._move(order_id, STATE_OF_EVENT[ev["type"]])
        order = self.orders.get(order_id)
        if order is not None and ev["type"] in ("deposited", "code_issued"):
            order.pickup_code = ev["pickup_code"]

    def _reply(self, reply: dict[str, Any]) -> None:
        command_id = str(reply.get("command_id"))
        with self._lock:
            self._replies[command_id] = reply
        sent = self.pending.pop(command_id, None)
        if sent is None or not reply.get("ok"):
            return
        result = reply["result"]
        if sent.name == "reserve":
            order = self.orders.setdefault(result["order_id"], Order(result["order_id"]))
            order.compartments = [c["number"] for c in result["compartments"]]
            order.deposit_code = result["deposit_code"]
        elif sent.name == "cancel":
            self._move(result["order_id"], result["state"])

    # -- commands -------------------------------------------------------------------

    def send(self, name: str, **fields: Any) -> str:
        """Publish a command (kept pending until answered); its command_id."""
        command_id = str(uuid.uuid4())
        payload = {"command_id": command_id, "sent_at": rfc3339(time.time()), **fields}
        self.pending[command_id] = Pending(name, payload)
        self._publish(name, payload)
        return command_id

    def _publish(self, name: str, payload: dict[str, Any]) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = f"{PREFIX}/{self.locker_id}/reply/soak"
        props.CorrelationData = payload["command_id"].encode()
        topic = f"{PREFIX}/{self.locker_id}/cmd/{name}"
        self.client.publish(topic, json.dumps(payload), qos=1, properties=props)

    def resend(self) -> None:
        """A command not answered (the locker was killed, the broker was away) is sent
        again under its own command_id, as a platform would: lockerd must not act twice."""
        for pending in list(self.pending.values()):
            self._publish(pending.name, pending.payload)

    def answer(self, command_id: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            with self._lock:
                if command_id in self._replies:
                    return self._replies[command_id]
            time.sleep(0.01)
        return None

    # -- what the platform can check -------------------------------------------------

    def check_stream(self, last_seq: int) -> int:
        """No event lost: seq 1..last_seq each under one event_id. The highest seq."""
        by_seq: dict[int, set[str]] = {}
        for ev in self.events.values():
            by_seq.setdefault(ev["seq"], set()).add(ev["event_id"])
        reused = {seq: ids for seq, ids in by_seq.items() if len(ids) > 1}
        if reused:
            raise Violation(f"a seq published under two event ids: {reused}")
        missing = sorted(set(range(1, last_seq + 1)) - set(by_seq))
        if missing:
            raise Violation(f"events lost: seq {missing[:20]} (of 1..{last_seq}) never arrived")
        return max(by_seq, default=0)

    def of(self, kind: str) -> int:
        return sum(1 for ev in self.events.values() if ev["type"] == kind)


class Lockerd:
    """The lockerd process, its output appended to a log file."""

    def __init__(self, config: Path, sock: Path, log: Path) -> None:
        self.config, self.sock, self.log = config, sock, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"---- start {self.started + 1}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [str(BIN / "lockerd"), "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started += 1

    def ready(self) -> bool:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            api(self.sock, "health", timeout=2)
            return True
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Options:
    kills: int = 200
    seed: int = 0
    broker_outage_s: float = 60.0
    board_unplugs: int = 0  # 0: one per 20 kills, at least 2
    scanner_unplugs: int = 0  # likewise
    broker_outages: int = 1
    disk_full: str = "xfail"  # off | xfail (run it, report, do not fail) | on (must survive)
    drop_p: float = 0.05
    corrupt_p: float = 0.05
    folder: Path | None = None
    out: Callable[[str], None] = print


@dataclass
class Report:
    seed: int
    counts: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        c = self.counts
        return [
            f"seed {self.seed}, {self.seconds:.0f} s",
            f"kills {c['kills']} (lockerd started {c['starts']} times)",
            f"faults: broker stopped {c['broker_outages']} x {c['broker_outage_s']:g} s,"
            f" board unplugged mid-pickup {c['board_unplugs']},"
            f" scanner unplugged {c['scanner_unplugs']},"
            f" disk filled {c['disk_full']} (lockerd survived {c['disk_full_survived']}),"
            f" board replies dropped {c['dropped']} and corrupted {c['corrupted']}"
            f" (of {c['replies']})",
            f"orders {c['orders']} (reserve commands answered), events {c['events']},"
            f" deposits {c['deposited']}, pickups {c['picked_up']},"
            f" remote opens {c['opens']}, cancels {c['cancels']}, new codes {c['reissued']},"
            f" lapsed {c['lapsed']}, expired {c['expired']}, retrieved {c['retrieved']}",
            f"inputs {c['inputs']} (scans {c['scans']}), unlocks the boards acted on"
            f" {c['unlocks']} (doors opened {c['openings']}; the rest pulsed a door still"
            f" open), checks passed {c['checks']}",
            *self.notes,
        ]


class Campaign:
    def __init__(self, opts: Options, folder: Path) -> None:
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.report = Report(opts.seed)
        self.folder = folder
        (folder / "broker").mkdir(parents=True, exist_ok=True)
        self.broker = Broker(folder / "broker")
        self.cabinet = Cabinet(
            folder / "cabinet",
            cu48=2,
            scanner=True,
            door_close_s=DOOR_CLOSE_S,
            mqtt_port=self.broker.port,
        )
        self.locker_id = self.cabinet.locker_id
        for bus in self.cabinet.buses:
            bus.device.faults.rng = random.Random(opts.seed + 1)
            bus.device.faults.drop_p = opts.drop_p
            bus.device.faults.corrupt_p = opts.corrupt_p
        self.disk: Path | None = None
        text = self.cabinet.config_path.read_text()
        if opts.disk_full != "off":
            self.disk = self._mount_tmpfs(folder / "disk")
            if self.disk is not None:
                text = text.replace(
                    json.dumps(str(self.cabinet.folder / "data")),
                    json.dumps(str(self.disk / "data")),
                )
        self.cabinet.config_path.write_text(text + SETTINGS)
        data = self.disk / "data" if self.disk is not None else self.cabinet.folder / "data"
        self.db = data / "locker.db"
        self.lockerd = Lockerd(
            self.cabinet.config_path, self.cabinet.folder / "api.sock", folder / "lockerd.log"
        )
        self.platform = Platform(self.broker.port, self.locker_id)
        self.inputs: Counter[int] = Counter()  # compartment -> inputs that named it
        self.last_input: dict[int, int] = {}  # compartment -> the number of its last input
        self.n_inputs = 0
        # order -> (input number, unlocks of its compartments before the pickup scan)
        self.pickup_scans: dict[str, tuple[int, dict[int, int]]] = {}
        # Orders the traffic leaves alone so that their deadline passes: "lapse" (never
        # loaded, reserve_hours) or "expire" (never picked up, a pickup window of 36 s).
        self.left: dict[str, str] = {}
        self.broker_up = True
        self.scanner_plugged = True
        self.n = 0

    # -- set-up and tear-down -----------------------------------------------------------

    def _mount_tmpfs(self, where: Path) -> Path | None:
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            self.report.notes.append(
                "disk full: skipped (a small tmpfs for the data directory needs root:"
                f" {done.stderr.strip() or done.returncode})"
            )
            return None
        return where

    def close(self, keep: bool = False) -> None:
        self.lockerd.stop()
        if keep and self.disk is not None:  # the tmpfs goes with the unmount
            shutil.copytree(self.disk / "data", self.folder / "data", dirs_exist_ok=True)
        self.platform.close()
        self.cabinet.close()
        self.broker.stop()
        if self.disk is not None:
            subprocess.run(["umount", str(self.disk)], capture_output=True, check=False)

    # -- the world ----------------------------------------------------------------------

    def unlocks(self) -> Counter[int]:
        """Unlock pulses the boards acted on, by compartment."""
        out: Counter[int] = Counter()
        for number, comp in self.cabinet.compartments.items():
            n = sum(1 for _, ch in list(comp.sim.unlocks) if ch == comp.channel)
            if n:
                out[number] = n
        return out

    def openings(self) -> Counter[int]:
        """Doors opened by a pulse, by compartment: a pulse while the door still stands open
        from the last one (nobody here closes a door early or forces one) opens nothing.
        lockerd pulses again when it has not seen the door open within open_confirm_s,
        which a board whose replies fail for that long also causes."""
        out: Counter[int] = Counter()
        for number, comp in self.cabinet.compartments.items():
            last = -1e9
            for at, ch in list(comp.sim.unlocks):
                if ch != comp.channel:
                    continue
                if at - last >= DOOR_CLOSE_S:
                    out[number] += 1
                last = at
        return out

    def _input(self, numbers: list[int]) -> int:
        self.n_inputs += 1
        self.report.counts["inputs"] += 1
        for n in numbers:
            self.inputs[n] += 1
            self.last_input[n] = self.n_inputs
        return self.n_inputs

    def scan(self, text: str, numbers: list[int]) -> bool:
        if not self.scanner_plugged:
            return False
        self._input(numbers)
        self.report.counts["scans"] += 1
        self.cabinet.run(f"scan {text}")
        return True

    def orders_in(self, *states: str) -> list[Order]:
        return [o for o in self.platform.orders.values() if o.state in states]

    def act(self) -> None:
        """One step of traffic, drawn at random."""
        self.platform.drain()
        self.n += 1
        draw = self.rng.random()
        p = self.platform
        if draw < 0.22 and self.broker_up:
            parcels = [{"size": "S"}] * self.rng.choice((1, 1, 1, 2))
            fields: dict[str, Any] = {
                "order_id": f"SK-{self.opts.seed}-{self.n}",
                "items": [{"sku": "1", "qty": self.rng.randint(1, 3), "size": "S"}],
                "parcels": parcels,
            }
            fate = self.rng.random()
            if fate < 0.25:
                fields["pickup_hours"] = SHORT_PICKUP_HOURS
            if fate < 0.1:  # left to expire: its pickup code is never scanned
                self.left[fields["order_id"]] = "expire"
            elif fate > 0.9:  # left to lapse: never loaded
                self.left[fields["order_id"]] = "lapse"
            p.answer(p.send("reserve", **fields), timeout=1.0)
        elif draw < 0.45:
            reserved = [o for o in self.orders_in("reserved") if o.order_id not in self.left]
            if reserved:
                order = self.rng.choice(reserved)
                self.scan(
                    f"locker:{self.locker_id}:deposit:{order.deposit_code}", order.compartments
                )
        elif draw < 0.68:
            self.pickup()
        elif draw < 0.76 and self.broker_up:
            number = self.rng.choice(list(self.cabinet.compartments))
            self._input([number])
            reason = {"reason": "soak", "operator": "soak"}
            reply = p.answer(p.send("open", compartment=number, **reason), timeout=1.5)
            if reply is not None and reply.get("ok"):
                self.report.counts["opens"] += 1
        elif draw < 0.82 and self.broker_up:
            live = self.orders_in("reserved", "loaded")
            if live:
                order = self.rng.choice(live)
                cid = p.send("cancel", order_id=order.order_id, reason="soak")
                reply = p.answer(cid, timeout=1.0)
                if reply is not None and reply.get("ok"):
                    self.report.counts["cancels"] += 1
        elif draw < 0.86 and self.broker_up:
            loaded = self.orders_in("loaded")
            if loaded:
                order = self.rng.choice(loaded)
                reply = p.answer(p.send("reissue_code", order_id=order.order_id), timeout=1.0)
                if reply is not None and reply.get("ok"):
                    self.report.counts["reissued"] += 1
                    order.pickup_code = reply["result"]["pickup_code"]
        elif draw < 0.94:
            out = self.orders_in("expired", "cancelled")
            if out:
                order = self.rng.choice(out)
                self.scan(
                    f"locker:{self.locker_id}:deposit:{order.deposit_code}", order.compartments
                )
        time.sleep(self.rng.uniform(0.0, 0.15))

    def pickup(self) -> Order | None:
        loaded = [
            o
            for o in self.orders_in("loaded")
            if o.pickup_code and self.left.get(o.order_id) != "expire"
        ]
        if not loaded:
            return None
        order = self.rng.choice(loaded)
        before = self.unlocks()
        text = order.pickup_code
        if self.rng.random() < 0.5:
            text = f"locker:{self.locker_id}:pickup:{text}"
        if self.scan(text, order.compartments):
            seen = {n: before[n] for n in order.compartments}
            self.pickup_scans[order.order_id] = (self.n_inputs, seen)
            return order
        return None

    # -- faults ---------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL at a random moment of the traffic, then the restart and its checks."""
        self.expect_alive()
        time.sleep(self.rng.uniform(0.0, 0.4))
        self.lockerd.kill()
        self.report.counts["kills"] += 1
        self.restart()

    def restart(self) -> None:
        before = self.unlocks()
        self.lockerd.start()
        self.report.counts["starts"] += 1
        wait_until(self.lockerd.ready, "lockerd ready after a restart", timeout=60)
        # No unlock without an input since the process started: recovery must not pulse a
        # lock again, even once the confirmation time of an intent in flight has passed.
        time.sleep(OPEN_CONFIRM_S + 0.3)
        after = self.unlocks()
        if after != before:
            raise Violation(
                f"unlock without an input after restart {self.lockerd.started}:"
                f" {dict(after - before)} (compartment: pulses)"
            )

    def expect_alive(self) -> None:
        if not self.lockerd.alive():
            raise Violation(f"lockerd exited by itself:\n{self.lockerd.tail()}")

    def broker_outage(self) -> None:
        self.broker.stop()
        self.broker_up = False
        self.report.counts["broker_outages"] += 1
        self.report.counts["broker_outage_s"] = int(self.opts.broker_outage_s)
        end = time.monotonic() + self.opts.broker_outage_s
        while time.monotonic() < end:  # the locker serves the shoppers meanwhile
            self.act()
        self.broker.start()
        self.broker_up = True
        self.platform.resend()

    def board_unplug(self) -> None:
        """A board unplugged in the middle of a pickup: once lockerd saw the door open."""
        order = None
        for _ in range(40):
            order = self.pickup()
            if order is not None:
                break
            self.act()
        if order is None:
            self.report.notes.append("board unplug: no loaded order to pick up; skipped once")
            return
        number = order.compartments[0]
        board = self.cabinet.compartments[number].board

        def seen_open() -> bool:
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                snap = api(self.lockerd.sock, "snapshot")
                doors = {c["number"]: c["door"] for c in snap["compartments"]}
                return doors.get(number) == "open"
            return False

        deadline = time.monotonic() + 3
        while not seen_open() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.cabinet.run(f"unplug {board}")
        self.report.counts["board_unplugs"] += 1
        time.sleep(self.rng.uniform(0.5, 3.0))
        self.cabinet.run(f"plug {board}")

    def scanner_unplug(self) -> None:
        self.cabinet.run("unplug-scanner")
        self.scanner_plugged = False
        self.report.counts["scanner_unplugs"] += 1
        end = time.monotonic() + self.rng.uniform(1.0, 3.0)
        while time.monotonic() < end:
            self.act()
        self.cabinet.run("plug-scanner")
        self.scanner_plugged = True

    def disk_full(self) -> None:
        """The data medium filled, traffic meanwhile, then the space given back."""
        assert self.disk is not None
        ballast = self.disk / "ballast"
        self.report.counts["disk_full"] += 1
        fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for size in (1 << 20, 4096, 1):  # to the last byte the file system has
                with contextlib.suppress(OSError):
                    while os.write(fd, b"\0" * size):
                        pass
        finally:
            os.close(fd)
        end = time.monotonic() + 4
        while time.monotonic() < end:
            self.act()
        ballast.unlink()
        survived = self.lockerd.alive()
        if survived:
            self.report.counts["disk_full_survived"] += 1
        elif self.opts.disk_full == "on":
            raise Violation(f"lockerd died on a full disk:\n{self.lockerd.tail()}")
        else:
            note = "disk full: lockerd died (expected to fail until the full-disk work lands)"
            if note not in self.report.notes:
                self.report.notes.append(note)
            self.restart()

    # -- the checks -------------------------------------------------------------------------

    def check(self) -> None:
        """Every promise, once the platform has caught up (what is in flight is waited for,
        never judged)."""
        self.expect_alive()
        self.platform.resend()
        facts = check_file(self.db)
        if not facts.ok:
            raise Violation(f"PRAGMA integrity_check: {facts.integrity}")

        def caught_up() -> bool:
            self.platform.drain()
            if self.platform.pending:
                self.platform.resend()
                return False
            last = check_file(self.db).last_seq
            seqs = {ev["seq"] for ev in self.platform.events.values()}
            return len(seqs) >= last

        wait_until(caught_up, "the platform has every event and every reply", timeout=60)
        last = check_file(self.db).last_seq
        self.platform.check_stream(last)
        # No door opened twice for one input (and so none without one).
        acted, opened = self.unlocks(), self.openings()
        over = {n: (opened[n], self.inputs[n]) for n in opened if opened[n] > self.inputs[n]}
        if over:
            raise Violation(f"doors opened more often than inputs named them: {over}")
        wait_until(self.states_explained, "every order in a state the platform explains")
        self.unreported_pickups(acted)
        self.report.counts["checks"] += 1

    def states_explained(self) -> bool:
        self.platform.drain()
        wrong = {}
        for order in self.platform.orders.values():
            stages = api(self.lockerd.sock, "history", order_id=order.order_id)
            states = [STATE_OF_STAGE[s["stage"]] for s in stages if s["stage"] in STATE_OF_STAGE]
            here = states[-1] if states else "unknown"
            if here != order.state:
                wrong[order.order_id] = (here, order.state)
        self.wrong = wrong
        return not wrong

    def unreported_pickups(self, acted: Counter[int]) -> None:
        """A pickup scan whose door opened (and closed again: the doors close by themselves)
        must end in `picked_up`: the shopper left with the goods."""
        for order_id, (n_input, before) in list(self.pickup_scans.items()):
            order = self.platform.orders[order_id]
            if order.state != "loaded":
                del self.pickup_scans[order_id]
                continue
            if any(self.last_input.get(n) != n_input for n in before):
                del self.pickup_scans[order_id]  # another input since: not this one's doing
                continue
            opened = any(acted[n] > before[n] for n in before)
            closed = all(
                not self.cabinet.compartments[n].sim.is_open(self.cabinet.compartments[n].channel)
                for n in before
            )
            if opened and closed:
                del self.pickup_scans[order_id]
                self.report.counts["unreported_pickups"] += 1
                self.report.notes.append(
                    f"pickup of {order_id} opened compartments {sorted(before)} and closed"
                    f" again, never reported picked_up (kill {self.report.counts['kills']})"
                )

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> Report:
        started = time.monotonic()
        opts = self.opts
        c = self.report.counts
        unplugs = opts.board_unplugs or max(2, opts.kills // 20)
        scanners = opts.scanner_unplugs or max(2, opts.kills // 20)
        plan = ["kill"] * opts.kills + ["board"] * unplugs + ["scanner"] * scanners
        plan += ["broker"] * opts.broker_outages
        if self.disk is not None:
            plan.append("disk")
        self.rng.shuffle(plan)
        self.lockerd.start()
        c["starts"] += 1
        wait_until(self.lockerd.ready, "lockerd ready", timeout=60)
        for step, fault in enumerate(plan, 1):
            for _ in range(self.rng.randint(2, 10)):
                self.act()
            {
                "kill": self.kill,
                "board": self.board_unplug,
                "scanner": self.scanner_unplug,
                "broker": self.broker_outage,
                "disk": self.disk_full,
            }[fault]()
            try:
                self.check()
            except Violation as exc:
                detail = getattr(self, "wrong", {})
                raise Violation(
                    f"after step {step} ({fault}, seed {opts.seed}): {exc}"
                    + (f"\n  orders (lockerd, platform): {detail}" if detail else "")
                ) from None
            if step % 10 == 0:
                opts.out(f"step {step}/{len(plan)}: {c['kills']} kills, {fault} checked")
        self.report.seconds = time.monotonic() - started
        self._count()
        return self.report

    def _count(self) -> None:
        c, p = self.report.counts, self.platform
        c["orders"] = len(p.orders)
        c["events"] = len(p.events)
        for kind, name in (
            ("deposited", "deposited"),
            ("picked_up", "picked_up"),
            ("reservation_lapsed", "lapsed"),
            ("expired", "expired"),
            ("retrieved", "retrieved"),
        ):
            c[name] = p.of(kind)
        c["unlocks"] = sum(self.unlocks().values())
        c["openings"] = sum(self.openings().values())
        for bus in self.cabinet.buses:
            c["dropped"] += bus.device.faults.dropped
            c["corrupted"] += bus.device.faults.corrupted
            c["replies"] += len(bus.device.received)


@contextlib.contextmanager
def campaign(opts: Options) -> Iterator[Campaign]:
    """A campaign in `opts.folder` (or a temporary one, removed unless it failed)."""
    folder = opts.folder or Path(tempfile.mkdtemp(prefix="locker-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    camp = Campaign(opts, folder)
    ok = False
    try:
        yield camp
        ok = True
    finally:
        camp.close(keep=not ok)
        if ok and opts.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
        elif not ok:
            opts.out(f"campaign folder kept: {folder} (lockerd.log)")


def run(opts: Options) -> Report:
    opts.out(f"fault campaign: seed {opts.seed}, {opts.kills} kills (replay with --seed)")
    with campaign(opts) as camp:
        report = camp.run()
    for line in report.lines():
        opts.out(line)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.soak", description=__doc__)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None, help="default: drawn and printed")
    parser.add_argument("--broker-outage-s", type=float, default=60.0)
    parser.add_argument("--broker-outages", type=int, default=1)
    parser.add_argument(
        "--disk-full",
        choices=("off", "xfail", "on"),
        default="xfail",
        help="the full-disk step: off; xfail (run it, report whether lockerd survived);"
        " on (lockerd must survive it)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="keep the campaign's files here")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    opts = Options(
        kills=args.kills,
        seed=seed,
        broker_outage_s=args.broker_outage_s,
        broker_outages=args.broker_outages,
        disk_full=args.disk_full,
        folder=args.dir,
    )
    try:
        run(opts)
    except Violation as exc:
        sys.stderr.write(f"FAILED: {exc}\n")
        sys.stderr.write(f"replay: python -m simulator.soak --kills {args.kills} --seed {seed}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
