"""What lockerd and the kiosk cost on the machine (printed, never asserted).

lockerd runs as a process (`python -m locker.daemon`, what the `lockerd` script runs)
with a cabinet of two Kerong CU48 boards (96 doors) simulated byte for byte on a pty at
19200 baud (`simulator/kerong.py`, in this process), a real Mosquitto and its local API.

- start-up to READY: process started -> `READY=1` on the socket named by NOTIFY_SOCKET
  (what systemd's Type=notify waits for); the first start creates the key and the
  database, the next ones open them;
- idle: RSS (`VmRSS` in /proc/PID/status) and CPU (utime + stime from /proc/PID/stat over
  the window, in % of one core), the boards polled every 100 ms, heartbeats, no traffic;
- under load: `--rate` reservations a second through Mosquitto (default 20), each
  followed by its deposit code through the local API (the staff screen's request) and
  its pickup code through the local API (the shopper's), the doors closing 0.3 s after
  they open: the same RSS and CPU;
- the kiosk: `locker-kiosk` (`python -m kiosk_ui.app`) under Xvfb against that lockerd,
  its RSS after it has drawn its screen for a while (skipped, saying so, without Xvfb).

Run: .venv/bin/python bench/bench_resources.py [--window 30] [--rate 20]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
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

from drivers.sim import SimBoard  # noqa: E402
from locker.clock import rfc3339  # noqa: E402
from simulator.broker import Broker  # noqa: E402
from simulator.kerong import KerongSim  # noqa: E402

LOCKER = "bench-res"
TICK = os.sysconf("SC_CLK_TCK")
ITEM = [{"sku": "1", "qty": 1, "size": "S"}]


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def config(tmp: Path, port: int, device: str) -> Path:
    path = tmp / "locker.toml"
    path.write_text(
        f'[locker]\nid = "{LOCKER}"\ndata_dir = "{tmp / "data"}"\n'
        f"[mqtt]\nport = {port}\n"
        f'[api]\nsocket = "{tmp / "api.sock"}"\n'
        "[rules]\nreserve_hours = 1\n"
        f'[[boards]]\nname = "k0"\ndriver = "kerong-cu48"\nport = "{device}"\n'
        "address = 0\nbaud = 19200\n"
        f'[[boards]]\nname = "k1"\ndriver = "kerong-cu48"\nport = "{device}"\n'
        "address = 1\nbaud = 19200\n"
        '[[compartments]]\nnumbers = "1-48"\nchannels = "1-48"\nboard = "k0"\nsize = "S"\n'
        '[[compartments]]\nnumbers = "49-96"\nchannels = "1-48"\nboard = "k1"\nsize = "S"\n'
    )
    return path


class Lockerd:
    """lockerd as a process, told apart from its READY datagram."""

    def __init__(self, cfg: Path, tmp: Path) -> None:
        self.sock_path = tmp / f"notify-{uuid.uuid4().hex[:6]}"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.sock_path))
        env = {**os.environ, "NOTIFY_SOCKET": str(self.sock_path), "PYTHONPATH": str(ROOT)}
        env.pop("WATCHDOG_USEC", None)
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "locker.daemon", "--config", str(cfg), "--log-level", "ERROR"],
            env=env,
            cwd=ROOT,
        )
        self.notify.settimeout(60)
        while True:
            data = self.notify.recv(256)
            if b"READY=1" in data.split(b"\n"):
                self.ready_s = time.perf_counter() - self.t0
                break

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.notify.close()
        self.sock_path.unlink()


class Traffic:
    """The platform (reserve over MQTT) and the staff and shopper (codes over the local API)."""

    def __init__(self, port: int, api: Path) -> None:
        self.codes: queue.Queue[tuple[str, bool]] = queue.Queue()  # (code, staff)
        self.counts = {"reserved": 0, "refused": 0, "deposited": 0, "picked_up": 0, "entries": 0}
        self.api_ms: list[float] = []
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4()}", protocol=mqtt.MQTTv5
        )
        self.c.on_socket_open = self._nodelay
        self.c.on_message = self._got
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(f"lockers/{LOCKER}/reply", qos=1)
        self.c.subscribe(f"lockers/{LOCKER}/event/#", qos=1)
        self.c.loop_start()
        self.api = socket.socket(socket.AF_UNIX)
        self.api.connect(str(api))
        self.reader = self.api.makefile("rb")
        self.stopping = False
        self.entry = threading.Thread(target=self._enter, daemon=True)
        self.entry.start()

    @staticmethod
    def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _got(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        data = json.loads(m.payload)
        if m.topic.endswith("/reply"):
            if data["ok"]:
                self.counts["reserved"] += 1
                self.codes.put((data["result"]["deposit_code"], True))
            else:
                self.counts["refused"] += 1
        elif m.topic.endswith("/event/deposited"):
            self.counts["deposited"] += 1
            self.codes.put((data["pickup_code"], False))
        elif m.topic.endswith("/event/picked_up"):
            self.counts["picked_up"] += 1

    def _enter(self) -> None:
        n = 0
        while not self.stopping:
            try:
                code, staff = self.codes.get(timeout=0.2)
            except queue.Empty:
                continue
            n += 1
            req = {"id": n, "op": "code", "text": code, "method": "keypad", "staff": staff}
            t = time.perf_counter()
            self.api.sendall(json.dumps(req).encode() + b"\n")
            self.reader.readline()
            self.api_ms.append((time.perf_counter() - t) * 1000)
            self.counts["entries"] += 1

    def reserve(self, order: str) -> None:
        payload = {
            "command_id": str(uuid.uuid4()),
            "sent_at": rfc3339(time.time()),
            "order_id": order,
            "items": ITEM,
        }
        self.c.publish(f"lockers/{LOCKER}/cmd/reserve", json.dumps(payload), qos=1)

    def close(self) -> None:
        self.stopping = True
        self.entry.join(5)
        self.c.disconnect()
        self.c.loop_stop()
        self.api.close()


def measure(pid: int, window: float) -> tuple[float, float]:
    """CPU in % of one core over the window, and RSS in MB at its end."""
    c0, t0 = cpu_s(pid), time.monotonic()
    time.sleep(window)
    return (cpu_s(pid) - c0) / (time.monotonic() - t0) * 100, rss_mb(pid)


def kiosk_rss(cfg: Path, settle: float) -> str:
    exe = shutil.which("Xvfb")
    if exe is None:
        return "kiosk RSS: skipped (no Xvfb on this machine; apt-get install xvfb)"
    # A display no other X server (a test run's Xvfb) holds.
    number = next(n for n in range(80, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    xvfb = subprocess.Popen(
        [exe, f":{number}", "-screen", "0", "800x480x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    env = {**os.environ, "DISPLAY": f":{number}", "PYTHONPATH": str(ROOT)}
    kiosk = subprocess.Popen(
        [sys.executable, "-m", "kiosk_ui.app", "--config", str(cfg), "--size", "800x480"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(settle)
        if kiosk.poll() is not None:
            return f"kiosk RSS: the kiosk exited with status {kiosk.returncode}"
        cpu, rss = measure(kiosk.pid, 10)
        return (
            f"kiosk (locker-kiosk under Xvfb 800x480, Mesa software GL, welcome screen,"
            f" {settle:.0f} s after start): RSS {rss:.0f} MB, CPU {cpu:.1f}% of one core"
        )
    finally:
        kiosk.terminate()
        kiosk.wait(20)
        xvfb.terminate()
        xvfb.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window", type=float, default=30, help="seconds measured, each")
    parser.add_argument("--rate", type=float, default=20, help="reservations a second")
    parser.add_argument("--starts", type=int, default=5, help="start-ups timed")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-res-"))
    (tmp / "broker").mkdir()
    broker = Broker(tmp / "broker")
    boards = {0: SimBoard("k0", 48, door_close_s=0.3), 1: SimBoard("k1", 48, door_close_s=0.3)}
    device = KerongSim("cu48", boards, baud=19200)
    cfg = config(tmp, broker.port, device.path)
    print("lockerd: 2 x Kerong CU48 (96 doors) on a pty at 19200 baud, real Mosquitto")
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[0]}")
    starts = []
    for _ in range(args.starts):
        d = Lockerd(cfg, tmp)
        starts.append(d.ready_s * 1000)
        d.stop()
    print(
        f"start-up to READY=1 (process started -> sd_notify): first start (creates key and"
        f" database) {starts[0]:.0f} ms; next {len(starts) - 1}: p50"
        f" {pct(starts[1:], 0.5):.0f} ms, max {max(starts[1:]):.0f} ms"
    )
    d = Lockerd(cfg, tmp)
    try:
        time.sleep(5)  # linked to the broker, first state and heartbeat out
        cpu, rss = measure(d.pid, args.window)
        print(
            f"lockerd idle ({args.window:.0f} s, 2 boards polled every 100 ms):"
            f" RSS {rss:.1f} MB, CPU {cpu:.1f}% of one core"
        )
        traffic = Traffic(broker.port, tmp / "api.sock")
        stop = threading.Event()

        def reserve() -> None:
            n, t0 = 0, time.monotonic()
            while not stop.is_set():
                traffic.reserve(f"L{n}")
                n += 1
                time.sleep(max(0.0, t0 + n / args.rate - time.monotonic()))

        driver = threading.Thread(target=reserve, daemon=True)
        driver.start()
        time.sleep(3)  # to the steady state: doors opening and closing
        before = dict(traffic.counts)
        cpu, rss = measure(d.pid, args.window)
        after = dict(traffic.counts)
        stop.set()
        driver.join()
        rates = {k: (after[k] - before[k]) / args.window for k in after}
        print(
            f"lockerd under load ({args.window:.0f} s: {rates['reserved']:.1f} reservations/s"
            f" over MQTT, {rates['entries']:.1f} codes/s over the local API,"
            f" {rates['picked_up']:.1f} pickups/s completed, {after['refused']} refused):"
            f" RSS {rss:.1f} MB, CPU {cpu:.1f}% of one core;"
            f" code -> API reply p50 {pct(traffic.api_ms, 0.5):.1f} ms,"
            f" p99 {pct(traffic.api_ms, 0.99):.1f} ms"
        )
        traffic.close()
        print(kiosk_rss(cfg, settle=15))
    finally:
        d.stop()
        device.close()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
