"""A dead controller costs no order: the primary dies, the standby takes over.

Real parts throughout: two `lockerd` processes (primary and standby, each with its own
data directory), the standby's receiver `locker-standby` over TLS, the cabinet's boards
and scanner simulated byte for byte on ptys, a real Mosquitto, the platform simulator.
The primary is SIGKILLed in the middle of traffic and its data directory deleted; the
standby is promoted; every loaded order's pickup code then opens its compartment on the
standby, the platform has every event once by `event_id` with contiguous `seq`, no door
opened twice for one input, and the old primary, started again on its old data, refuses
to serve.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_for
from paho.mqtt.enums import CallbackAPIVersion

from locker.dbfile import check_file
from simulator.broker import Broker, free_port
from simulator.console import Cabinet
from simulator.platform import PlatformSim

BIN = Path(sys.executable).parent
LOCKER = "store-001-a"
ITEMS = [{"sku": "1", "qty": 1, "size": "S"}]
FENCED = 3  # lockerd's exit status when a newer controller serves this locker

# Short door timings keep the test quick; the logic is the same.
DOORS = "\n[doors]\npoll_ms = 50\nopen_confirm_s = 0.5\nopen_alarm_s = 30\n"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store's CA and the standby controller's certificate, and the shared secret."""
    folder = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", *EC, "-days", "2", "-subj", "/CN=ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)  # fmt: skip
    openssl("req", *EC, "-subj", "/CN=standby", "-keyout", "standby.key",
            "-out", "standby.csr", cwd=folder)  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "standby.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf",
            "-out", "standby.crt", cwd=folder)  # fmt: skip
    secret = folder / "standby.secret"
    secret.write_bytes(b"the store's standby secret, 32 bytes or more of it\n")
    secret.chmod(0o600)
    return folder


class Process:
    """One program of the locker as a process, its output kept in a file."""

    def __init__(self, name: str, args: list[str], folder: Path) -> None:
        self.name = name
        self.log = folder / f"{name}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class Platform:
    """Every event the platform receives, and the retained status, as a raw subscriber
    sees them (the platform simulator answers the commands)."""

    def __init__(self, port: int) -> None:
        self.events: list[dict[str, Any]] = []
        self.status: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="platform-watch", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"lockers/{LOCKER}/event/#", qos=1)
        self.client.subscribe(f"lockers/{LOCKER}/status", qos=1)
        self.client.loop_start()

    def _message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = json.loads(msg.payload)
        with self._lock:
            if msg.topic.endswith("/status"):
                self.status = payload
            else:
                self.events.append(payload)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["type"] == kind]

    def check_stream(self) -> int:
        """One event_id per seq, contiguous from 1; the highest seq."""
        with self._lock:
            by_seq: dict[int, set[str]] = {}
            for ev in self.events:
                by_seq.setdefault(ev["seq"], set()).add(ev["event_id"])
        assert by_seq, "no event reached the platform"
        assert sorted(by_seq) == list(range(1, max(by_seq) + 1)), "a gap in seq"
        reused = {seq: ids for seq, ids in by_seq.items() if len(ids) > 1}
        assert not reused, f"a seq published under two event ids: {reused}"
        return max(by_seq)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Site:
    """The cabinet, the broker, the platform, and the two controllers' configurations."""

    def __init__(self, folder: Path, certs: Path, replica: str) -> None:
        self.folder = folder
        (folder / "broker").mkdir()
        self.broker = Broker(folder / "broker")
        self.cabinet = Cabinet(
            folder / "cabinet", cu48=1, scanner=True, door_close_s=0.3, mqtt_port=self.broker.port
        )
        self.platform = Platform(self.broker.port)
        self.sim = PlatformSim(port=self.broker.port, out=lambda line: None)
        self.standby_port = free_port()
        base = self.cabinet.config_path.read_text() + DOORS
        self.primary_dir = folder / "primary"
        self.standby_dir = folder / "standby"
        self.usb = folder / "usb"
        for d in (self.primary_dir, self.standby_dir):
            d.mkdir()
        if replica == "standby":
            replica_toml = (
                f'\n[replica]\nstandby = "127.0.0.1:{self.standby_port}"\n'
                f'ca_file = "{certs / "ca.crt"}"\nsecret_file = "{certs / "standby.secret"}"\n'
            )
        else:
            replica_toml = f'\n[replica]\ndirectory = "{self.usb}"\n'
        self.primary_config = self._config(base, self.primary_dir, replica_toml)
        standby_toml = (
            f'\n[standby]\nlisten = "127.0.0.1:{self.standby_port}"\n'
            f'cert_file = "{certs / "standby.crt"}"\nkey_file = "{certs / "standby.key"}"\n'
            f'secret_file = "{certs / "standby.secret"}"\n'
            f'replica_dir = "{self.standby_dir / "replica"}"\n'
        )
        # The same configuration on the spare controller, but for its own folders; with a
        # USB stick, the stick moves over with the bus.
        spare_replica = replica_toml if replica == "directory" else ""
        self.standby_config = self._config(base, self.standby_dir, standby_toml + spare_replica)

    def _config(self, base: str, home: Path, extra: str) -> Path:
        text = base.replace(str(self.cabinet.folder / "data"), str(home / "data"))
        text = text.replace(str(self.cabinet.folder / "api.sock"), str(home / "api.sock"))
        # The code key is provisioned on both controllers (docs/operations.md).
        text += f'\n[security]\nkey_file = "{home / "locker.key"}"\n' + extra
        path = home / "locker.toml"
        path.write_text(text)
        return path

    def lockerd(self, config: Path, name: str) -> Process:
        return Process(name, [str(BIN / "lockerd"), "--config", str(config)], self.folder)

    def lockerctl(self, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "lockerctl"), "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def unlocks(self) -> dict[int, int]:
        """Unlock pulses the cabinet's boards took, by compartment."""
        counts: dict[int, int] = {}
        for number, comp in self.cabinet.compartments.items():
            n = sum(1 for _, ch in comp.sim.unlocks if ch == comp.channel)
            if n:
                counts[number] = n
        return counts

    def close(self) -> None:
        self.sim.close()
        self.platform.close()
        self.cabinet.close()
        self.broker.stop()


@pytest.fixture
def site_factory(tmp_path: Path, certs: Path) -> Iterator[Any]:
    made: list[Site] = []

    def make(replica: str) -> Site:
        site = Site(tmp_path, certs, replica)
        made.append(site)
        return site

    yield make
    for site in made:
        site.close()


def online(site: Site, epoch: int) -> bool:
    return site.platform.status.get("online") is True and site.platform.status.get("epoch") == epoch


def load_orders(site: Site, count: int, picked: int) -> dict[str, dict[str, Any]]:
    """Reserve `count` orders, deposit each by scanning its code, pick up the first
    `picked`; the loaded ones (order id -> deposited event) are returned."""
    loaded: dict[str, dict[str, Any]] = {}
    for i in range(count):
        order = f"SO-{i}"
        reply = site.sim.reserve(LOCKER, order, ITEMS, timeout=20)
        assert reply["ok"], reply
        site.cabinet.run(f"scan {reply['result']['deposit_code']}")
        loaded[order] = site.sim.wait_event("deposited", order, timeout=30)
    for order in list(loaded)[:picked]:
        site.cabinet.run(f"scan {loaded.pop(order)['pickup_code']}")
        site.sim.wait_event("picked_up", order, timeout=30)
    return loaded


def reserve_until(site: Site, stop: threading.Event, answered: list[str]) -> None:
    """Reservations keep coming while the primary dies (answered or not)."""
    i = 0
    while not stop.is_set():
        i += 1
        try:
            reply = site.sim.command(LOCKER, "reserve", 2, order_id=f"R-{i}", items=ITEMS)
        except Exception:  # the primary is dead: no answer is the point
            continue
        if reply.get("ok"):
            answered.append(f"R-{i}")


def pick_up_on(site: Site, loaded: dict[str, dict[str, Any]]) -> float:
    """Every loaded order's pickup code, scanned; the time of the first pickup served."""
    first = 0.0
    for order, deposited in loaded.items():
        site.cabinet.run(f"scan {deposited['pickup_code']}")
        site.sim.wait_event("picked_up", order, timeout=30)
        first = first or time.monotonic()
    return first


def check_doors(site: Site, expected: dict[int, int]) -> None:
    """No door opened twice for one input: one pulse per scan that named it."""
    assert site.unlocks() == expected


@pytest.mark.slow
def test_the_standby_takes_over_and_the_old_primary_is_fenced(
    site_factory: Any, certs: Path
) -> None:
    site = site_factory("standby")
    receiver = Process(
        "locker-standby",
        [str(BIN / "locker-standby"), "--config", str(site.standby_config)],
        site.folder,
    )
    primary = site.lockerd(site.primary_config, "primary")
    standby: Process | None = None
    try:
        wait_for(lambda: online(site, 1), "the primary online, epoch 1", timeout=30)
        # The standby's key is the primary's (provisioned on both at installation).
        wait_for((site.primary_dir / "locker.key").exists, "the code key")
        shutil.copy2(site.primary_dir / "locker.key", site.standby_dir / "locker.key")
        loaded = load_orders(site, count=8, picked=3)
        expected = {}
        for number, n in site.unlocks().items():
            expected[number] = n
        # Reservations in flight while the primary dies.
        stop, answered = threading.Event(), []
        traffic = threading.Thread(target=reserve_until, args=(site, stop, answered))
        traffic.start()
        wait_for(lambda: len(answered) >= 5, "reservations under way")
        kept = site.folder / "old-primary-data"
        primary.kill()
        wait_for(lambda: site.platform.status.get("online") is False, "the primary's Will")
        stop.set()
        traffic.join(30)
        # The primary's SD card died: its data is gone (a copy is kept for the fencing).
        shutil.copytree(site.primary_dir / "data", kept)
        shutil.rmtree(site.primary_dir / "data")
        assert receiver.stop() == 0, receiver.text()

        started = time.monotonic()
        promoted = site.lockerctl(site.standby_config, "promote")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert "epoch 1 -> 2" in promoted.stdout.replace("→", "->"), promoted.stdout
        standby = site.lockerd(site.standby_config, "standby")
        wait_for(lambda: online(site, 2), "the standby online, epoch 2", timeout=30)
        first = pick_up_on(site, loaded)
        took = first - started
        print(f"promote -> first pickup served: {took:.2f} s")

        for _order, deposited in loaded.items():
            for comp in deposited["compartments"]:
                expected[comp["number"]] = expected.get(comp["number"], 0) + 1
        check_doors(site, expected)
        # Every reservation the platform was told of is known to the standby too.
        wait_for(
            lambda: site.platform.of("picked_up") and len(site.platform.of("picked_up")) >= 8,
            "every pickup at the platform",
        )
        top = site.platform.check_stream()
        assert all(ev["epoch"] in (1, 2) for ev in site.platform.events)
        assert top > 0

        # The old primary comes back on its old data: it must not serve.
        shutil.rmtree(site.primary_dir / "data", ignore_errors=True)
        shutil.copytree(kept, site.primary_dir / "data")
        # Its bus went over to the standby: its board's device is gone.
        text = site.primary_config.read_text()
        for board in site.cabinet.buses:
            text = text.replace(str(board.device.path), str(site.folder / "gone-tty"))
        site.primary_config.write_text(text)
        old = site.lockerd(site.primary_config, "old-primary")
        old.proc.wait(60)
        assert old.proc.returncode == FENCED, old.text()
        assert "epoch 2" in old.text() and "took over" in old.text(), old.text()
        assert online(site, 2), site.platform.status  # the standby's status untouched
        again = site.lockerd(site.primary_config, "old-primary-again")
        again.proc.wait(30)
        assert again.proc.returncode == FENCED, again.text()
        # The standby still serves the platform after the old one's visit.
        reply = site.sim.reserve(LOCKER, "SO-after", ITEMS, timeout=20)
        assert reply["ok"], reply

        # The old controller becomes the new standby: its receiver runs (lockerd stays
        # stopped), and the serving controller's [replica] names it.
        started = time.monotonic()
        port = free_port()
        with site.primary_config.open("a") as toml:
            toml.write(
                f'\n[standby]\nlisten = "127.0.0.1:{port}"\n'
                f'cert_file = "{certs / "standby.crt"}"\nkey_file = "{certs / "standby.key"}"\n'
                f'secret_file = "{certs / "standby.secret"}"\n'
                f'replica_dir = "{site.primary_dir / "replica"}"\n'
            )
        receiver = Process(
            "old-primary-standby",
            [str(BIN / "locker-standby"), "--config", str(site.primary_config)],
            site.folder,
        )
        assert standby.stop() == 0, standby.text()
        with site.standby_config.open("a") as toml:
            toml.write(
                f'\n[replica]\nstandby = "127.0.0.1:{port}"\n'
                f'ca_file = "{certs / "ca.crt"}"\nsecret_file = "{certs / "standby.secret"}"\n'
            )
        standby = site.lockerd(site.standby_config, "standby-again")
        copy = site.primary_dir / "replica" / "locker.db"
        wait_for(lambda: copy.exists() and check_file(copy).epoch == 2, "epoch 2 on the old one")
        took = time.monotonic() - started
        print(f"old controller back as the standby, first copy received: {took:.2f} s")
        assert check_file(copy).ok
    finally:
        for proc in (primary, receiver, standby):
            if proc is not None:
                proc.stop()


@pytest.mark.slow
def test_a_fresh_controller_restored_from_the_usb_stick_serves_every_order(
    site_factory: Any,
) -> None:
    site = site_factory("directory")
    primary = site.lockerd(site.primary_config, "primary")
    fresh: Process | None = None
    try:
        wait_for(lambda: online(site, 1), "the primary online", timeout=30)
        wait_for((site.primary_dir / "locker.key").exists, "the code key")
        shutil.copy2(site.primary_dir / "locker.key", site.standby_dir / "locker.key")
        loaded = load_orders(site, count=6, picked=2)
        expected = dict(site.unlocks())
        primary.kill()
        wait_for(lambda: site.platform.status.get("online") is False, "the primary's Will")
        shutil.rmtree(site.primary_dir / "data")

        # A fresh controller (a new SD card): the stick's copy restored as it is.
        started = time.monotonic()
        restored = site.lockerctl(site.standby_config, "restore", str(site.usb / "locker.db"))
        assert restored.returncode == 0, restored.stdout + restored.stderr
        fresh = site.lockerd(site.standby_config, "fresh")
        wait_for(lambda: online(site, 1), "the fresh controller online", timeout=30)
        took = pick_up_on(site, loaded) - started
        print(f"restore -> first pickup served: {took:.2f} s")
        for deposited in loaded.values():
            for comp in deposited["compartments"]:
                expected[comp["number"]] = expected.get(comp["number"], 0) + 1
        check_doors(site, expected)
        site.platform.check_stream()
    finally:
        primary.stop()
        if fresh is not None:
            fresh.stop()
