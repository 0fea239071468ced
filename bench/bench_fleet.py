"""A fleet of lockers on one Mosquitto (printed, never asserted).

Each locker is a real service instance: the daemon's own `build()` (SQLite store with
`synchronous=FULL`, a key file, one in-process `sim` board of 48 doors), its loop run by
`Loop.run_forever` as lockerd runs it, its board I/O thread and its own `PlatformLink`
(paho, MQTT 5, client id `locker-{id}`, persistent session). The lockers live in
`--procs` worker processes; the platform is `--consumers` processes sharing the event
stream through `$share/platform/lockers/+/event/#` (state and heartbeats shared the same
way), against one real Mosquitto (`simulator/broker.py`).

Traffic: a busy store, one reservation, one deposit and one pickup per locker per minute,
heartbeats and state, ACCELERATED `--speed` times (default 10: a minute of the store in
6 s, heartbeats every 3 s instead of 30 s, doors closing 0.5 s after they open). So N
lockers here carry the command and event traffic of 10 N lockers at the real rate, with
the threads, timers and 10 board reads a second of N lockers (board polling is not
accelerated). Each cycle goes through the real paths:
  reserve: the platform publishes `cmd/reserve` (QoS 1), the reply carries the deposit
  code -> the staff enter it (`Service.enter_code` posted on that locker's loop, as the
  local API does) -> the door opens and closes -> `deposited` (with the pickup code) to
  the platform consumers -> a consumer hands the code to the shopper (a bench topic) ->
  the shopper enters it on the loop -> the door opens and closes -> `picked_up`.

Measured per step of N: commands/s (reserves answered), events/s (received by the
platform), reply round trip p50/p99 (publish -> reply), event delay p50/p99
(`occurred_at` -> received by a consumer), the deepest loop backlog, CPU (% of one core,
every process of the bench: lockers, broker, consumers; and the machine's) and RSS.
N grows until the machine saturates (reply p99 > 1 s, event delay p99 > 1 s, a cycle
not completed, or the loop backlog growing).

Then the platform side alone: a backlog of real-shaped events queued at the broker for
the offline persistent sessions of 1, 2, 4 consumers in one shared-subscription group,
drained when they reconnect: events/s drained.

Run: .venv/bin/python bench/bench_fleet.py [--speed 10] [--procs 4] [--steps 50,150,225,300,400]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import socket
import subprocess
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
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from drivers.registry import CATALOGUE  # noqa: E402
from locker.clock import parse_rfc3339, rfc3339  # noqa: E402
from locker.config import load_config  # noqa: E402
from locker.daemon import Locker, build  # noqa: E402
from locker.model import EntryOutcome, Method  # noqa: E402
from simulator.broker import Broker  # noqa: E402

ITEM = [{"sku": "1", "qty": 1, "size": "S"}]
CHANNELS = 48
TICK = os.sysconf("SC_CLK_TCK")


def locker_id(i: int) -> str:
    return f"fleet-{i:05d}"


def nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """TCP_NODELAY, as the locker and the shipped broker set it."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def client(cid: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    c.on_socket_open = nodelay
    return c


def connect(c: mqtt.Client, port: int, clean: bool = True, expiry: int = 0) -> None:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry
    c.connect("127.0.0.1", port, clean_start=clean, properties=props)


def say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# -- a worker process: k lockers and the people in front of them --------------------------


def locker_config(tmp: Path, lid: str, port: int, speed: float) -> Path:
    folder = tmp / lid
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "locker.toml"
    path.write_text(
        f'[locker]\nid = "{lid}"\ndata_dir = "{folder / "data"}"\n'
        f"[mqtt]\nport = {port}\nheartbeat_s = {max(1, round(30 / speed))}\n"
        f'[api]\nsocket = "{folder / "api.sock"}"\n'
        f'[[boards]]\nname = "s0"\ndriver = "sim"\nchannels = {CHANNELS}\n'
        f"door_close_s = {5 / speed}\n"
        f'[[compartments]]\nnumbers = "1-{CHANNELS}"\nchannels = "1-{CHANNELS}"\n'
        'board = "s0"\nsize = "S"\n'
    )
    return path


def worker(args: argparse.Namespace) -> None:
    # Warnings are the lockers' own journal (a door missed under overload says "jammed").
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")

    # Locker i lives in worker i % procs: the consumers hand a pickup code to that worker.
    ids = [locker_id(i) for i in range(args.worker, args.total, args.procs)]
    lockers: dict[str, Locker] = {}
    threads = []
    for lid in ids:
        config = load_config(locker_config(Path(args.dir), lid, args.port, args.speed), CATALOGUE)
        lk = build(config)
        lockers[lid] = lk
        t = threading.Thread(target=lk.loop.run_forever, name=f"loop-{lid}", daemon=True)
        t.start()
        threads.append(t)
        assert lk.link is not None
        lk.link.start()
    lock = threading.Lock()
    pending: dict[str, tuple[str, float]] = {}  # command_id -> (locker, sent)
    rtt: list[float] = []
    counts = {"sent": 0, "ok": 0, "refused": 0, "deposit": 0, "pickup": 0, "entry_refused": 0}
    running = threading.Event()

    def enter(lk: Locker, code: str, staff: bool, kind: str) -> None:
        def job() -> None:
            result = lk.service.enter_code(code, Method.KEYPAD, staff=staff)
            with lock:
                counts[kind if result.outcome is EntryOutcome.OPENED else "entry_refused"] += 1

        lk.loop.post_urgent(job)

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        data = json.loads(m.payload)
        if m.topic.startswith("bench/shopper/"):
            enter(lockers[data["locker"]], data["code"], False, "pickup")
            return
        with lock:
            sent = pending.pop(data["command_id"], None)
        if sent is None:
            return
        with lock:
            rtt.append(now - sent[1])
            counts["ok" if data["ok"] else "refused"] += 1
        if data["ok"]:
            enter(lockers[sent[0]], data["result"]["deposit_code"], True, "deposit")

    cmd = client(f"bench-staff-{args.worker}")
    cmd.on_message = on_message
    connect(cmd, args.port)
    for lid in ids:
        cmd.subscribe(f"lockers/{lid}/reply", qos=1)
    cmd.subscribe(f"bench/shopper/{args.worker}", qos=1)
    cmd.loop_start()
    deadline = time.monotonic() + 120
    while not all(lk.link is not None and lk.link.connected for lk in lockers.values()):
        if time.monotonic() > deadline:
            raise SystemExit("lockers did not connect")
        time.sleep(0.1)
    say({"ready": True, "pid": os.getpid()})
    period = 60 / args.speed
    backlog_max = 0

    def traffic() -> None:
        start = time.monotonic()
        rng = random.Random(args.worker)
        phases = {lid: rng.uniform(0, period) for lid in ids}
        due = sorted((start + phases[lid], lid) for lid in ids)
        n = 0
        while running.is_set():
            at, lid = due.pop(0)
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not running.is_set():
                break
            n += 1
            cid = f"{lid}-{n}"
            with lock:
                pending[cid] = (lid, time.perf_counter())
                counts["sent"] += 1
            payload = {
                "command_id": cid,
                "sent_at": rfc3339(time.time()),
                "order_id": f"O-{cid}-{uuid.uuid4().hex[:6]}",
                "items": ITEM,
            }
            cmd.publish(f"lockers/{lid}/cmd/reserve", json.dumps(payload), qos=1)
            due.append((at + period, lid))
            due.sort()

    line = sys.stdin.readline()  # "go"
    assert line.strip() == "go", line
    running.set()
    driver = threading.Thread(target=traffic, daemon=True)
    driver.start()
    end = time.monotonic() + args.window
    while time.monotonic() < end:
        time.sleep(0.2)
        backlog_max = max(backlog_max, *(lk.loop.backlog for lk in lockers.values()))
    running.clear()
    driver.join()
    time.sleep(2)  # the last cycles' replies and doors
    with lock:
        unanswered = len(pending)
        say(
            {
                "rtt": rtt,
                **counts,
                "unanswered": unanswered,
                "backlog_max": backlog_max,
                "loop_max_backlog": max(lk.loop.max_backlog for lk in lockers.values()),
            }
        )
    sys.stdin.readline()  # "stop"
    cmd.disconnect()
    cmd.loop_stop()
    for lk in lockers.values():
        lk.loop.stop()
    for t in threads:
        t.join(5)
    for lk in lockers.values():
        lk.close()


# -- a platform consumer process -----------------------------------------------------------


def consumer(args: argparse.Namespace) -> None:

    lock = threading.Lock()
    delays: list[float] = []
    counts = {"events": 0, "other": 0}
    first_last = [0.0, 0.0]
    said: list[bool] = []
    c = client(f"platform-{args.group}-{args.index}")

    def on_message(cl: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        now = time.time()
        if "/event/" not in m.topic:
            with lock:
                counts["other"] += 1
            return
        ev = json.loads(m.payload)
        with lock:
            if not counts["events"]:
                first_last[0] = now
            first_last[1] = now
            counts["events"] += 1
            delays.append(now - parse_rfc3339(ev["occurred_at"]))
        if m.topic.endswith("/event/deposited") and not args.drain:
            lid = m.topic.split("/")[1]
            w = int(lid.rsplit("-", 1)[1]) % args.workers
            payload = {"locker": lid, "code": ev["pickup_code"]}
            cl.publish(f"bench/shopper/{w}", json.dumps(payload), qos=1)

    def on_connect(cl: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
        cl.subscribe(f"$share/{args.group}/lockers/+/event/#", qos=1)
        if not args.drain:
            cl.subscribe(f"$share/{args.group}/lockers/+/state", qos=0)
            cl.subscribe(f"$share/{args.group}/lockers/+/heartbeat", qos=0)
        if not said:
            said.append(True)
            say({"subscribed": True})

    c.on_message = on_message
    c.on_connect = on_connect
    if args.drain:  # the persistent session exists, then goes away while events queue
        connect(c, args.port, clean=True, expiry=600)
        c.loop_start()
        sys.stdin.readline()  # "away"
        t0 = 0.0
        c.disconnect()
        c.loop_stop()
        sys.stdin.readline()  # "back"
        t0 = time.time()
        connect(c, args.port, clean=False, expiry=600)
        c.loop_start()
        # Drained: nothing more for 2 s after the first event (or nothing at all in 60 s).
        while time.time() < t0 + 60:
            time.sleep(0.1)
            with lock:
                if counts["events"] and time.time() - first_last[1] > 2:
                    break
    else:
        connect(c, args.port)
        c.loop_start()
        sys.stdin.readline()  # "stop"
    c.disconnect()
    c.loop_stop()
    with lock:
        say(
            {
                **counts,
                "delays": delays if not args.drain else [],
                "first": first_last[0],
                "last": first_last[1],
                "connected_at": t0 if args.drain else 0.0,
            }
        )


def publisher(args: argparse.Namespace) -> None:
    """Queue a backlog of real-shaped `picked_up` events for the offline consumers."""

    c = client(f"bench-pub-{uuid.uuid4().hex[:8]}")
    connect(c, args.port)
    c.loop_start()
    infos = []
    for i in range(args.count):
        lid = locker_id(i % 1000)
        ev = {
            "event_id": str(uuid.uuid4()),
            "seq": i // 1000 + 1,
            "type": "picked_up",
            "occurred_at": rfc3339(time.time()),
            "order_id": f"D{i}",
            "compartments": [1 + i % 48],
            "method": "keypad",
        }
        infos.append(c.publish(f"lockers/{lid}/event/picked_up", json.dumps(ev), qos=1))
        if len(infos) >= 500:
            for info in infos:
                info.wait_for_publish(30)
            infos.clear()
    for info in infos:
        info.wait_for_publish(30)
    c.disconnect()
    c.loop_stop()
    say({"published": args.count})


# -- the conductor ---------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_busy() -> tuple[float, float]:
    parts = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def spawn(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def read(p: subprocess.Popen[str]) -> dict[str, Any]:
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line:
        raise RuntimeError(f"process {p.args!r} ended: {p.wait()}")
    data: dict[str, Any] = json.loads(line)
    return data


def tell(p: subprocess.Popen[str], word: str) -> None:
    assert p.stdin is not None
    p.stdin.write(word + "\n")
    p.stdin.flush()


def step(n: int, args: argparse.Namespace, broker_pid: int, port: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"locker-fleet-{n}-"))
    procs = min(args.procs, n)
    consumers = [
        spawn(
            "consumer",
            f"--port={port}",
            f"--index={k}",
            "--group=platform",
            f"--workers={procs}",
        )
        for k in range(args.consumers)
    ]
    for p in consumers:
        read(p)
    workers = [
        spawn(
            "worker",
            f"--port={port}",
            f"--worker={w}",
            f"--procs={procs}",
            f"--total={n}",
            f"--dir={tmp}",
            f"--speed={args.speed}",
            f"--window={args.window}",
        )
        for w in range(procs)
    ]
    for p in workers:
        read(p)
    pids = [broker_pid] + [p.pid for p in workers] + [p.pid for p in consumers]
    time.sleep(3)  # idle: every locker polling, heartbeating, nothing else
    c0, m0, t0 = sum(cpu_s(p) for p in pids), machine_busy(), time.monotonic()
    time.sleep(5)
    idle_cpu = (sum(cpu_s(p) for p in pids) - c0) / (time.monotonic() - t0) * 100
    c0, m0, t0 = sum(cpu_s(p) for p in pids), machine_busy(), time.monotonic()
    b0 = cpu_s(broker_pid)
    p0 = sum(cpu_s(p.pid) for p in consumers)
    for p in workers:
        tell(p, "go")
    results = [read(p) for p in workers]
    # Rates over the traffic window; the replies and doors of its last 2 s come after it.
    elapsed = args.window
    took = time.monotonic() - t0
    cpu = (sum(cpu_s(p) for p in pids) - c0) / took * 100
    cpu_broker = (cpu_s(broker_pid) - b0) / took * 100
    cpu_platform = (sum(cpu_s(p.pid) for p in consumers) - p0) / took * 100
    m1 = machine_busy()
    machine = (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100 * (os.cpu_count() or 1)
    rss_workers = sum(rss_mb(p.pid) for p in workers)
    rss_consumers = sum(rss_mb(p.pid) for p in consumers)
    rss_broker = rss_mb(broker_pid)
    for p in consumers:
        tell(p, "stop")
    got = [read(p) for p in consumers]
    for p in workers:
        tell(p, "stop")
    for p in workers + consumers:
        p.wait(60)
    shutil.rmtree(tmp, ignore_errors=True)
    rtt = [v for r in results for v in r["rtt"]]
    delays = [v for g in got for v in g["delays"]]
    total = {k: sum(r[k] for r in results) for k in ("sent", "ok", "refused", "unanswered")}
    total.update({k: sum(r[k] for r in results) for k in ("deposit", "pickup", "entry_refused")})
    return {
        "n": n,
        "procs": procs,
        "cmd_s": (total["ok"] + total["refused"]) / elapsed,
        "ev_s": sum(g["events"] for g in got) / elapsed,
        "other_s": sum(g["other"] for g in got) / elapsed,
        "rtt50": pct(rtt, 0.5) * 1000 if rtt else float("nan"),
        "rtt99": pct(rtt, 0.99) * 1000 if rtt else float("nan"),
        "d50": pct(delays, 0.5) * 1000 if delays else float("nan"),
        "d99": pct(delays, 0.99) * 1000 if delays else float("nan"),
        "idle_cpu": idle_cpu,
        "cpu": cpu,
        "cpu_b": cpu_broker,
        "cpu_p": cpu_platform,
        "machine": machine,
        "rss_w": rss_workers,
        "rss_c": rss_consumers,
        "rss_b": rss_broker,
        "backlog": max(r["backlog_max"] for r in results),
        **total,
    }


def drain(
    k: int, count: int, port: int, broker_pid: int, rep: int
) -> tuple[float, list[int], float]:
    group = f"drain{k}x{rep}"
    cons = [
        spawn("consumer", f"--port={port}", f"--index={i}", f"--group={group}", "--drain")
        for i in range(k)
    ]
    for p in cons:
        read(p)
    for p in cons:
        tell(p, "away")
    time.sleep(0.5)
    pub = spawn("publisher", f"--port={port}", f"--count={count}")
    read(pub)
    pub.wait(30)
    b0, t0 = cpu_s(broker_pid), time.monotonic()
    for p in cons:
        tell(p, "back")
    got = [read(p) for p in cons]
    # Each consumer waits 2 s of silence before it reports: leave those out.
    broker_cpu = (cpu_s(broker_pid) - b0) / max(1e-9, time.monotonic() - t0 - 2) * 100
    for p in cons:
        p.wait(30)
    start = min(g["connected_at"] for g in got)
    last = max(g["last"] for g in got)
    received = sum(g["events"] for g in got)
    return received / max(1e-9, last - start), [g["events"] for g in got], broker_cpu


def main() -> None:
    # No abbreviations: the conductor's --drain-* options must not swallow a role's --drain.
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    sub = parser.add_subparsers(dest="role")
    w = sub.add_parser("worker")
    for name in ("port", "worker", "procs", "total"):
        w.add_argument(f"--{name}", type=int, required=True)
    w.add_argument("--dir", required=True)
    w.add_argument("--speed", type=float, default=10)
    w.add_argument("--window", type=float, default=24)
    c = sub.add_parser("consumer")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--index", type=int, required=True)
    c.add_argument("--group", default="platform")
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--drain", action="store_true")
    p = sub.add_parser("publisher")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    parser.add_argument("--speed", type=float, default=10, help="minutes of the store per minute")
    parser.add_argument("--procs", type=int, default=4, help="worker processes for the lockers")
    parser.add_argument("--consumers", type=int, default=2, help="platform consumers, live run")
    parser.add_argument("--steps", default="50,150,225,300,400", help="fleet sizes N, in order")
    parser.add_argument("--window", type=float, default=20, help="seconds measured per step")
    parser.add_argument("--drain-events", type=int, default=20000)
    parser.add_argument("--drain-runs", type=int, default=3, help="drains per consumer count")
    args = parser.parse_args()
    if args.role == "worker":
        worker(args)
        return
    if args.role == "consumer":
        consumer(args)
        return
    if args.role == "publisher":
        publisher(args)
        return

    folder = Path(tempfile.mkdtemp(prefix="locker-fleet-broker-"))
    # Queues as deep as the drain needs (the shipped configuration says 10,000).
    broker = Broker(folder, extra="max_queued_messages 0\n")
    assert broker.proc is not None
    print(
        f"fleet on one Mosquitto, {os.cpu_count()} cores; lockers in {args.procs} processes,"
        f" {args.consumers} platform consumers (shared subscription); {CHANNELS} sim doors each"
    )
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[0]}")
    print(
        f"rate ACCELERATED x{args.speed:g}: each locker does 1 reserve + deposit + pickup every"
        f" {60 / args.speed:g} s (a busy store's minute), heartbeat every"
        f" {max(1, round(30 / args.speed))} s; board polls at the real 10/s"
    )
    print(
        "     N  cmd/s  ev/s  st+hb/s  reply p50/p99 ms  event delay p50/p99 ms  backlog"
        "  CPU% idle/load (broker, platform; machine)  RSS MB lockers/broker/platform"
        "  pickups opened/reserves sent"
    )
    try:
        for n in [int(v) for v in args.steps.split(",")]:
            r = step(n, args, broker.proc.pid, broker.port)
            print(
                f"{r['n']:6d} {r['cmd_s']:6.1f} {r['ev_s']:5.1f} {r['other_s']:8.1f}"
                f"  {r['rtt50']:7.1f} / {r['rtt99']:7.1f}"
                f"       {r['d50']:7.1f} / {r['d99']:7.1f}      {r['backlog']:5d}"
                f"  {r['idle_cpu']:5.0f} / {r['cpu']:4.0f} ({r['cpu_b']:3.0f}, {r['cpu_p']:3.0f};"
                f" {r['machine']:4.0f})"
                f"               {r['rss_w']:6.0f} / {r['rss_b']:3.0f} / {r['rss_c']:3.0f}"
                f"           {r['pickup']}/{r['sent']}"
                + (f"  unanswered {r['unanswered']}" if r["unanswered"] else "")
                + (f"  refused {r['refused'] + r['entry_refused']}" if r["refused"] else ""),
                flush=True,
            )
            saturated = r["rtt99"] > 1000 or r["d99"] > 1000 or r["unanswered"]
            if saturated:
                print(f"saturated at N={n}", flush=True)
                break
        print(f"platform side: {args.drain_events} events queued for offline consumers, drained:")
        for k in (1, 2, 4):
            runs = [
                drain(k, args.drain_events, broker.port, broker.proc.pid, rep)
                for rep in range(args.drain_runs)
            ]
            rates = sorted(r[0] for r in runs)
            print(
                f"  {k} consumer(s): median {pct(rates, 0.5):7.0f} events/s"
                f" ({', '.join(f'{v:.0f}' for v in rates)} over {len(runs)} runs;"
                f" each consumer got {runs[0][1]}; broker CPU"
                f" {', '.join(f'{r[2]:.0f}' for r in runs)} % of one core)",
                flush=True,
            )
        print(f"load average after: {Path('/proc/loadavg').read_text().split()[0]}")
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
