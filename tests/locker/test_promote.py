"""`lockerctl promote` on the spare controller: the newest good copy of this locker's data
(the standby's replica directory, the [replica] directory) put in service one epoch
higher, with lockerd stopped there and the old controller's code key present. Real files
and processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from test_backup import LOCKER_ID, Lockerd, ctl, damage, served, write_config

from locker.dbfile import check_file
from locker.replica import REPLICA_NAME, snapshot

SPARE = '[standby]\nreplica_dir = "incoming"\n\n[replica]\ndirectory = "stick"\n'


def old_controller(tmp_path: Path, *orders: str, locker_id: str = LOCKER_ID) -> Path:
    """A controller that served `orders` and stopped (its config path)."""
    config = write_config(tmp_path / f"old-{locker_id}", locker_id=locker_id)
    served(config, *orders)
    return config


def spare(tmp_path: Path, old: Path, key: bool = True) -> Path:
    """The spare controller's configuration, its data directory holding the old one's key."""
    config = write_config(tmp_path / "spare", extra=SPARE)
    data = config.parent / "data"
    data.mkdir(mode=0o700)
    if key:
        shutil.copy2(old.parent / "data" / "locker.key", data / "locker.key")
    return config


def copy_to(old: Path, folder: Path) -> Path:
    """A replica of the old controller's database arrived in `folder`."""
    folder.mkdir(exist_ok=True)
    snapshot(old.parent / "data" / "locker.db", folder / REPLICA_NAME)
    return folder / REPLICA_NAME


def test_promote_serves_the_replica_one_epoch_higher(tmp_path: Path) -> None:
    old = old_controller(tmp_path, "SO-1", "SO-2")
    config = spare(tmp_path, old)
    replica = copy_to(old, config.parent / "incoming")
    before = check_file(replica)
    out = ctl(config, "promote")
    assert out.returncode == 0, out.stderr
    database = config.parent / "data" / "locker.db"
    newest = json.loads(ctl(config, "verify", str(replica), "--json").stdout)["newest_change"]
    assert out.stdout.splitlines() == [
        f"promoted {replica} as {database}",
        f"locker {LOCKER_ID}, epoch 1 -> 2, last event seq {before.last_seq}, newest change"
        f" {newest}, 0 orders loaded in compartments",
        "next: start lockerd: systemctl start lockerd",
    ]
    assert check_file(database).epoch == 2
    assert check_file(replica).epoch == 1  # the copy it came from is left as it arrived

    daemon = Lockerd(config)
    try:
        daemon.wait_ready()
        status = json.loads(ctl(config, "status", "--json").stdout)
        assert status["health"]["epoch"] == 2
        assert ctl(config, "history", "SO-2").returncode == 0
        refused = ctl(config, "promote", "--force")  # never under a running lockerd
        assert refused.returncode == 1
        assert refused.stderr.startswith(
            f"lockerctl: lockerd is running on {database.parent} (pid {daemon.proc.pid}):"
        )
        daemon.stop()
    finally:
        daemon.kill()


def test_a_damaged_copy_is_passed_over_for_the_other_good_one(tmp_path: Path) -> None:
    old = old_controller(tmp_path, *(f"SO-{n}" for n in range(1, 31)))
    config = spare(tmp_path, old)
    good = copy_to(old, config.parent / "stick")
    torn = config.parent / "incoming" / REPLICA_NAME
    torn.parent.mkdir()
    damage(good, torn)
    out = ctl(config, "promote")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"promoted {good} as ")
    assert out.stderr.startswith(f"passed over: {torn}: ")
    assert check_file(config.parent / "data" / "locker.db").epoch == 2


def test_promote_refuses_with_no_good_copy_of_this_locker(tmp_path: Path) -> None:
    old = old_controller(tmp_path, "SO-1")
    config = spare(tmp_path, old)
    database = config.parent / "data" / "locker.db"
    none = ctl(config, "promote")
    assert none.returncode == 1
    assert none.stderr.startswith(f"lockerctl: no good copy of locker {LOCKER_ID} to promote (")
    assert "none there" in none.stderr

    other = old_controller(tmp_path, "SO-9", locker_id="other-1")
    foreign = copy_to(other, config.parent / "incoming")
    (config.parent / "stick").mkdir()
    damage(copy_to(old, tmp_path / "whole"), config.parent / "stick" / REPLICA_NAME)
    out = ctl(config, "promote", "--force")
    assert out.returncode == 1
    assert f"{foreign}: the data of locker other-1, not of {LOCKER_ID}" in out.stderr
    assert f"{config.parent / 'stick' / REPLICA_NAME}: " in out.stderr
    assert not database.exists()


def test_promote_refuses_without_the_old_controller_s_code_key(tmp_path: Path) -> None:
    old = old_controller(tmp_path, "SO-1")
    config = spare(tmp_path, old, key=False)
    copy_to(old, config.parent / "incoming")
    out = ctl(config, "promote")
    key = config.parent / "data" / "locker.key"
    assert out.returncode == 1
    assert out.stderr.startswith(
        f"lockerctl: no code key at {key}: copy locker.key from the old controller's"
    )
    assert not (config.parent / "data" / "locker.db").exists()


def test_a_second_promotion_over_a_served_database_needs_force_and_goes_higher(
    tmp_path: Path,
) -> None:
    old = old_controller(tmp_path, "SO-1")
    config = spare(tmp_path, old)
    copy_to(old, config.parent / "incoming")
    assert ctl(config, "promote").returncode == 0
    data = config.parent / "data"
    again = ctl(config, "promote")
    assert again.returncode == 1
    assert "its epoch 1 is lower than the database's 2" in again.stderr
    assert "add --force" in again.stderr
    forced = ctl(config, "promote", "--force")
    assert forced.returncode == 0, forced.stderr
    # Higher than anything this controller served, not only than the copy.
    assert check_file(data / "locker.db").epoch == 3
    [kept] = data.glob("locker.db.replaced-*Z")
    assert check_file(kept).epoch == 2
