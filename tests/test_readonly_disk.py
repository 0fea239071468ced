"""An SD card at the end of its life, tried from outside as an operator would: the kernel
turns its ext4 filesystem read-only under a running lockerd (`errors=remount-ro`).

The card is an ext4 image on a loop device (root, as in CI), mounted with
`errors=remount-ro`; the kernel's own `trigger_fs_error` (sysfs) raises the error a dying
card raises, and the filesystem goes read-only at once, journal aborted. lockerd runs as a
process on the byte-level simulated Kerong board (a pty), against a real Mosquitto and the
platform simulator. The kernel refuses `remount,rw` after such an error, so there is no live
recovery: the card is "replaced" (unmounted, checked with e2fsck, mounted again) and lockerd
started afresh on it.
"""

from __future__ import annotations

import json
import queue
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from locker.service import STORAGE_PROBE_S
from simulator.broker import Broker
from simulator.console import Cabinet
from simulator.platform import PlatformSim

sys.path.insert(0, str(Path(__file__).parent / "locker"))
from test_ctl import ask

BIN = Path(sys.executable).parent
ITEMS = [{"sku": "1", "qty": 1, "fresh": False, "size": "S"}]
LOCKER = "card-1"
CU48_UNLOCK = 0x51


@dataclass
class Card:
    image: Path
    device: str
    mount: Path

    @property
    def sysfs(self) -> Path:
        return Path("/sys/fs/ext4") / Path(self.device).name

    def attach(self) -> None:
        run("mount", "-t", "ext4", "-o", "errors=remount-ro", self.device, str(self.mount))

    def fail(self) -> None:
        """The card dies: the kernel's ext4 error path, as on a real I/O error."""
        (self.sysfs / "trigger_fs_error").write_text("1\n")

    def read_only(self) -> bool:
        probe = self.mount / ".probe"
        try:
            probe.write_text("x")
        except OSError:
            return True
        probe.unlink()
        return False


class Failed(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"{super().__str__()}: {str(self.stderr).strip()}"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Failed(done.returncode, argv, done.stdout, done.stderr)
    return done


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Card]:
    image = tmp_path / "card.img"
    mount = tmp_path / "card"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(64 * 1024 * 1024)
    try:
        run("mkfs.ext4", "-q", "-F", str(image))
        device = run("losetup", "-f", "--show", str(image)).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no ext4 image on a loop device here (needs root and loop): {exc}")
    c = Card(image, device, mount)
    try:
        try:
            c.attach()
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot mount an ext4 loop device here: {exc.stderr.strip()}")
        if not (c.sysfs / "trigger_fs_error").exists():
            pytest.skip(f"this kernel has no {c.sysfs / 'trigger_fs_error'}")
        yield c
    finally:
        if subprocess.run(["mountpoint", "-q", str(mount)], check=False).returncode == 0:
            # Lazily if a failed test left lockerd holding its files; the loop device is
            # then detached once the last file closes.
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def orders(db: Path) -> dict[str, str]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT order_id, state FROM orders").fetchall())


def integrity(db: Path) -> list[str]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]


def drain(platform: PlatformSim) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            out.append(platform.events.get_nowait())
        except queue.Empty:
            return out


def next_event(platform: PlatformSim, wanted: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        try:
            ev = platform.events.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"never: {what}") from None
        if wanted(ev):
            return ev


def unlock_frames(cabinet: Cabinet) -> int:
    """Unlock frames that reached the simulated board over the wire."""
    received = cabinet.buses[0].device.received
    return sum(1 for f in list(received) if len(f) == 6 and f[3] == CU48_UNLOCK)


def start(config: Path) -> subprocess.Popen[bytes]:
    """lockerd, its log appended to lockerd.log beside its configuration."""
    with (config.parent / "lockerd.log").open("ab") as log:
        return subprocess.Popen([str(BIN / "lockerd"), "--config", str(config)], stderr=log)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def connected(socket: Path) -> bool:
    try:
        return bool(ask(socket, op="health")["result"]["mqtt_connected"])
    except OSError:
        return False


def test_lockerd_on_a_card_turned_read_only_stays_safe_and_loses_nothing(
    tmp_path: Path, card: Card
) -> None:
    broker = Broker(tmp_path)
    cabinet = Cabinet(
        tmp_path / "cabinet",
        cu48=1,
        scanner=False,
        door_close_s=0.2,
        locker_id=LOCKER,
        mqtt_port=broker.port,
    )
    data = card.mount / "data"
    text = cabinet.config_path.read_text()
    text = text.replace(json.dumps(str(cabinet.folder / "data")), json.dumps(str(data)))
    assert str(data) in text, text
    cabinet.config_path.write_text(text + "\n[doors]\npoll_ms = 50\nopen_alarm_s = 2\n")
    socket = cabinet.folder / "api.sock"
    db = data / "locker.db"
    proc = start(cabinet.config_path)
    platform = PlatformSim(port=broker.port, out=lambda line: None)
    try:
        wait_for(lambda: connected(socket), "lockerd connected to the broker")
        pickup: dict[str, str] = {}
        number: dict[str, int] = {}
        for order in ("SO-1", "SO-2"):
            reply = platform.reserve(LOCKER, order, ITEMS)
            assert reply["ok"], reply
            number[order] = reply["result"]["compartments"][0]["number"]
            code = reply["result"]["deposit_code"]
            assert ask(socket, op="code", text=code, method="keypad")["result"]["outcome"] == (
                "opened"
            )
            pickup[order] = platform.wait_event("deposited", order)["pickup_code"]
        assert platform.reserve(LOCKER, "SO-3", ITEMS)["ok"]
        before = orders(db)
        assert before == {"SO-1": "loaded", "SO-2": "loaded", "SO-3": "reserved"}
        door = {o: cabinet.compartments[n] for o, n in number.items()}
        wait_for(lambda: not door["SO-2"].sim.is_open(door["SO-2"].channel), "SO-2's door shut")
        drain(platform)

        card.fail()
        assert card.read_only()
        unlocks = unlock_frames(cabinet)

        # The platform's command is answered, its own, and refused: nothing stored.
        refused = platform.command(LOCKER, "reserve", order_id="SO-4", items=ITEMS)
        assert not refused["ok"], refused
        assert refused["error"]["code"] == "STORAGE_FULL", refused
        assert isinstance(refused["command_id"], str)  # routed back by its own id
        assert proc.poll() is None
        health = ask(socket, op="health")["result"]
        # The kernel lists an ext4 turned read-only after an error as rw (emergency_ro):
        # lockerd tells it by the EROFS a write gets.
        assert health["storage"] == "read_only", health

        # A loaded order's pickup code: refused cleanly, no unlock reaches the board.
        served = ask(socket, op="code", text=pickup["SO-1"], method="keypad")["result"]
        assert served["outcome"] == "refused" and served["reason"] == "storage", served
        assert unlock_frames(cabinet) == unlocks
        assert not door["SO-1"].sim.is_open(door["SO-1"].channel)

        # A door forced open: lockerd keeps polling the board (its status frames go on
        # arriving), but the reading cannot commit, so what it shows is the last committed
        # state, and the forced door waits in memory for a commit that works.
        door["SO-2"].sim.open_door(door["SO-2"].channel)
        polled = len(cabinet.buses[0].device.received)
        wait_for(
            lambda: len(cabinet.buses[0].device.received) > polled + 20, "the board still polled"
        )
        snap = ask(socket, op="snapshot")["result"]
        shown = {c["number"]: c["door"] for c in snap["compartments"]}
        assert shown[number["SO-2"]] == "closed", shown

        # The `fault` (component storage) cannot be committed on a read-only medium, so it
        # never reaches the platform while the card is dead; the platform learns of it from
        # the STORAGE_FULL replies. Past a storage probe or two, still none, still refused.
        time.sleep(2 * STORAGE_PROBE_S + 0.5)
        again = platform.command(LOCKER, "reserve", order_id="SO-4", items=ITEMS)
        assert again["error"]["code"] == "STORAGE_FULL", again
        seen = drain(platform)
        assert not [e for e in seen if e["type"] in ("fault", "door_alarm")], seen
        assert proc.poll() is None
        assert unlock_frames(cabinet) == unlocks

        assert stop(proc) == 0  # a clean exit on SIGTERM, the card still dead
        # One error line says what is wrong and what to do, not one line a loop turn.
        logged = (cabinet.config_path.parent / "lockerd.log").read_text()
        assert logged.count("cannot commit") == 1, logged[-3000:]
        assert "read-only or failing: replace it" in logged
        assert "cannot release the reserve" not in logged

        # The card replaced: unmounted cleanly, checked, mounted again.
        run("umount", str(card.mount))
        fsck = subprocess.run(
            ["e2fsck", "-f", "-y", str(card.image)], capture_output=True, text=True, check=False
        )
        assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr  # 1: errors fixed
        card.attach()
        assert not card.read_only()
        assert integrity(db) == ["ok"]
        assert orders(db) == before  # nothing committed before the failure is lost

        proc = start(cabinet.config_path)
        wait_for(lambda: connected(socket), "lockerd connected again")
        assert ask(socket, op="health")["result"]["storage"] == "ok"
        # The door still open since the card died is seen and reported.
        alarm = next_event(
            platform,
            lambda e: e["type"] == "door_alarm" and e["compartment"] == number["SO-2"],
            "the door left open while the card was dead",
        )
        assert alarm["kind"] in ("forced", "left_open"), alarm
        door["SO-2"].sim.close_door(door["SO-2"].channel)
        # The refused reservation was not stored: sent again, it runs afresh.
        assert platform.reserve(LOCKER, "SO-4", ITEMS)["ok"]
        served = ask(socket, op="code", text=pickup["SO-1"], method="keypad")["result"]
        assert served["outcome"] == "opened", served
        platform.wait_event("picked_up", "SO-1")
        assert unlock_frames(cabinet) == unlocks + 1
        assert stop(proc) == 0
        after = orders(db)
        assert after == {**before, "SO-1": "collected", "SO-4": "reserved"}
        assert integrity(db) == ["ok"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        platform.close()
        broker.stop()
        cabinet.close()
