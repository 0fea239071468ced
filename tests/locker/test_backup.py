"""`lockerctl backup` and `lockerctl verify`: an online copy made by the serving lockerd
while orders commit, checked whole; a damaged copy told apart. Real files, the real
local API socket, lockerctl as a process.

The helpers here (a configuration, lockerctl and lockerd as processes, a served
database) are shared with test_restore.py and test_promote.py."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

from conftest import RunningDaemon, reserve_on_loop, wait_for

from drivers.sim import SimBoard
from locker.codes import CodeBook
from locker.dbfile import check_file
from locker.recovery import BACKUPS_LOG, logged_backups
from locker.storage import Store

BIN = Path(sys.executable).parent
PIN = "24681357"
LOCKER_ID = "bk-1"

CONFIG = """
[locker]
id = "{locker_id}"
data_dir = "data"

[mqtt]
enabled = false

[api]
socket = "api.sock"
{extra}
[[boards]]
name = "b0"
driver = "sim"
door_close_s = 0.2

[[compartments]]
numbers = "1-40"
channels = "1-40"
board = "b0"
size = "S"
"""


def write_config(folder: Path, locker_id: str = LOCKER_ID, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "locker.toml"
    config.write_text(CONFIG.format(locker_id=locker_id, extra=extra))
    return config


def ctl(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lockerctl"), "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def set_pin(config: Path) -> None:
    (config.parent / "data").mkdir(mode=0o700, exist_ok=True)
    out = ctl(config, "set-pin", "--pin-stdin", stdin=PIN + "\n")
    assert out.returncode == 0, out.stderr


def running(config: Path) -> RunningDaemon:
    """lockerd's own build() and loop on the real socket, its board reachable."""
    return RunningDaemon(config, {"b0": SimBoard("b0", 48, door_close_s=0.1)})


def served(config: Path, *orders: str) -> None:
    """Let lockerd serve on `config` while the platform reserves `orders`, then stop it."""
    daemon = running(config)
    try:
        for order_id in orders:
            reserve_on_loop(daemon.locker, order_id)
    finally:
        daemon.stop()


def orders_in(path: Path) -> set[str]:
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute("SELECT order_id FROM orders")}
    finally:
        db.close()


def damage(source: Path, target: Path) -> None:
    """A copy of `source` with one page in the middle overwritten, as a dying card tears it."""
    data = bytearray(source.read_bytes())
    middle = (len(data) // 4096 // 2) * 4096
    data[middle : middle + 4096] = b"\xa5" * 4096
    target.write_bytes(bytes(data))


def big_database(path: Path, locker_id: str = LOCKER_ID, events: int = 400) -> None:
    """A database of many pages (events waiting for the platform), as a store writes it."""
    store = Store(path, CodeBook.from_key(b"k" * 32), locker_id=locker_id)
    try:
        with store.transaction() as tx:
            for i in range(events):
                tx.emit("expiring_soon", {"order_id": f"SO-{i}"}, 1_700_000_000.0 + i)
            tx.audit(1_700_000_000.0, "platform", "reserve", f"SO-{events}")
    finally:
        store.close()


class Lockerd:
    """A real `lockerd` process on `config` (its board simulated), stderr kept in a file."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.socket = config.parent / "api.sock"
        self.log = config.parent / "lockerd.err"
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                [str(BIN / "lockerd"), "--config", str(config)], stderr=err
            )

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, "lockerd exited: " + self.log.read_text()
            return ctl(self.config, "status").returncode == 0

        wait_for(ready, "lockerd answers on its socket", timeout=30)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


# -- backup ----------------------------------------------------------------------------


def test_a_backup_while_lockerd_serves_and_orders_commit_checks_whole_and_holds_them(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "cabinet")
    set_pin(config)
    stick = tmp_path / "stick"
    stick.mkdir()
    daemon = running(config)
    reserved: list[str] = []
    stop = threading.Event()

    def platform() -> None:  # reservations keep committing during the backup
        n = 0
        while not stop.is_set() and n < 40:
            n += 1
            reserve_on_loop(daemon.locker, f"SO-{n}")
            reserved.append(f"SO-{n}")

    traffic = threading.Thread(target=platform)
    try:
        traffic.start()
        wait_for(lambda: len(reserved) >= 5, "some orders reserved")
        before = list(reserved)
        out = ctl(config, "backup", str(stick), "--pin-stdin", stdin=PIN + "\n")
        stop.set()
        traffic.join(timeout=30)
    finally:
        stop.set()
        daemon.stop()
    assert out.returncode == 0, out.stderr
    [copy] = list(stick.iterdir())
    assert re.fullmatch(rf"locker-{LOCKER_ID}-\d{{8}}T\d{{6}}Z\.db", copy.name)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    facts = check_file(copy)
    assert facts.ok and facts.locker_id == LOCKER_ID and facts.epoch == 1
    # Every order committed before the backup was asked for is in the copy.
    assert set(before) <= orders_in(copy)
    lines = out.stdout.splitlines()
    assert lines[0] == f"backup written to {copy} ({copy.stat().st_size} bytes), checked whole:"
    assert lines[1].startswith(f"locker {LOCKER_ID}, epoch 1, last event seq {facts.last_seq},")
    # Logged in the data directory, for the start-up check to name it.
    assert logged_backups(tmp_path / "cabinet" / "data") == [copy]


def test_a_backup_to_a_file_answers_its_facts_and_refusals_say_why(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cabinet")
    set_pin(config)
    target = tmp_path / "one.db"
    daemon = running(config)
    try:
        reserve_on_loop(daemon.locker, "SO-1")
        out = ctl(config, "backup", str(target), "--json", "--pin-stdin", stdin=PIN + "\n")
        again = ctl(config, "backup", str(target), "--pin-stdin", stdin=PIN + "\n")
        wrong = ctl(config, "backup", str(tmp_path), "--pin-stdin", stdin="11111111\n")
        beside = ctl(
            config, "backup", str(tmp_path / "cabinet" / "data"), "--pin-stdin", stdin=PIN + "\n"
        )
        audit = ctl(config, "audit", "--json")
    finally:
        daemon.stop()
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    facts = check_file(target)
    assert result["path"] == str(target) and result["ok"] is True
    assert result["size"] == target.stat().st_size
    assert (result["locker_id"], result["epoch"], result["last_seq"]) == (
        LOCKER_ID,
        1,
        facts.last_seq,
    )
    assert result["newest_change"] is not None
    assert orders_in(target) == {"SO-1"}
    # An existing file is never overwritten (lockerd may run as root).
    assert again.returncode == 1 and f"{target} exists" in again.stderr
    assert wrong.returncode == 1 and wrong.stderr.startswith("lockerctl: wrong PIN")
    assert beside.returncode == 1 and "lockerd's data directory" in beside.stderr
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".db"] == ["one.db"]
    actions = [e["action"] for e in json.loads(audit.stdout)["entries"]]
    assert actions.count("backup") == 3  # asked for with the PIN: logged, whatever came of it


def test_a_backup_needs_a_running_lockerd(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cabinet")
    out = ctl(config, "backup", str(tmp_path), "--pin-stdin", stdin=PIN + "\n")
    assert out.returncode == 2 and "lockerd is not running" in out.stderr


# -- verify ----------------------------------------------------------------------------


def test_verify_tells_a_whole_copy_from_a_damaged_one(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cabinet")
    good = tmp_path / "good.db"
    big_database(good)
    facts = check_file(good)
    out = ctl(config, "verify", str(good))
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        f"{good}: whole (integrity ok), schema {facts.schema}\n"
        f"locker {LOCKER_ID}, epoch 1, last event seq 400, newest change 2023-11-14T22:13:20Z\n"
    )
    as_json = json.loads(ctl(config, "verify", str(good), "--json").stdout)
    assert as_json["ok"] is True and as_json["last_seq"] == 400 and as_json["integrity"] == "ok"

    torn = tmp_path / "torn.db"
    damage(good, torn)
    bad = ctl(config, "verify", str(torn))
    assert (bad.returncode, bad.stderr) == (1, "")
    assert bad.stdout.startswith(f"{torn}: ")
    assert "DAMAGED" in bad.stdout or "NOT a usable database" in bad.stdout
    bad_json = json.loads(ctl(config, "verify", str(torn), "--json").stdout)
    assert bad_json["ok"] is False and bad_json["integrity"] != "ok"

    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 300)
    text = ctl(config, "verify", str(notes))
    assert text.returncode == 1 and "NOT a usable database" in text.stdout
    missing = ctl(config, "verify", str(tmp_path / "missing.db"))
    assert missing.returncode == 1 and "no such file" in missing.stdout


def test_verify_data_dir_checks_the_locker_s_own_database(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cabinet")
    assert ctl(config, "verify", "--data-dir").returncode == 1  # none yet
    served(config, "SO-1")
    out = ctl(config, "verify", "--data-dir")
    assert out.returncode == 0, out.stdout
    assert out.stdout.startswith(f"{tmp_path / 'cabinet' / 'data' / 'locker.db'}: whole")
    neither = ctl(config, "verify")
    assert neither.returncode == 2 and "PATH or --data-dir" in neither.stderr


def test_the_backups_log_survives_a_torn_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / BACKUPS_LOG).write_text(
        json.dumps({"path": "/a/one.db"}) + "\n" + '{"path": "/a/tw' + "\n"
    )
    assert logged_backups(data) == [Path("/a/one.db")]
