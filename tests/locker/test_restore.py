"""`lockerctl restore`: a backup put back in service with lockerd stopped, only this
locker's, never one older than the database it replaces unless forced, the replaced
database kept aside with its WAL; the restored database serves. Real files and processes."""

from __future__ import annotations

from pathlib import Path

from test_backup import (
    LOCKER_ID,
    PIN,
    Lockerd,
    ctl,
    damage,
    orders_in,
    served,
    set_pin,
    write_config,
)

from locker.dbfile import check_file
from locker.replica import snapshot


def backup_of(config: Path, target: Path) -> Path:
    """A consistent copy of the (stopped) locker's database, as a backup is written."""
    snapshot(config.parent / "data" / "locker.db", target)
    return target


def test_restore_refuses_while_lockerd_runs_and_touches_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cabinet")
    served(config, "SO-1")
    backup = backup_of(config, tmp_path / "backup.db")
    database = tmp_path / "cabinet" / "data" / "locker.db"
    daemon = Lockerd(config)
    try:
        daemon.wait_ready()
        inode = database.stat().st_ino
        out = ctl(config, "restore", str(backup))
        assert out.returncode == 1 and out.stdout == ""
        assert out.stderr == (
            f"lockerctl: lockerd is running on {tmp_path / 'cabinet' / 'data'}"
            f" (pid {daemon.proc.pid}): stop it first (systemctl stop lockerd);"
            " a database in use is never replaced\n"
        )
        assert database.stat().st_ino == inode
        assert ctl(config, "history", "SO-1").returncode == 0  # it serves on, untouched
        daemon.stop()
    finally:
        daemon.kill()
    assert not list(database.parent.glob("locker.db.replaced-*"))


def test_restore_refuses_another_locker_s_backup_and_a_damaged_one(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cabinet")
    served(config)
    other = write_config(tmp_path / "other", locker_id="other-1")
    served(other, "SO-9")
    foreign = backup_of(other, tmp_path / "foreign.db")
    out = ctl(config, "restore", str(foreign))
    assert out.returncode == 1
    assert out.stderr == (
        f"lockerctl: {foreign} holds the data of locker other-1, not of {LOCKER_ID}"
        " ([locker] id); not installed\n"
    )
    torn = tmp_path / "torn.db"
    served(config, *(f"SO-{n}" for n in range(1, 31)))
    damage(backup_of(config, tmp_path / "whole.db"), torn)
    bad = ctl(config, "restore", str(torn), "--force")
    assert bad.returncode == 1 and "not installed" in bad.stderr
    assert "damaged" in bad.stderr or "not a usable database" in bad.stderr
    assert orders_in(tmp_path / "cabinet" / "data" / "locker.db") == {
        f"SO-{n}" for n in range(1, 31)
    }


def test_an_older_backup_is_refused_unless_forced_and_the_restored_database_serves(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "cabinet")
    served(config, "SO-1")
    backup = backup_of(config, tmp_path / "backup.db")
    served(config, "SO-2")  # the locker went on after the backup
    data = tmp_path / "cabinet" / "data"
    refused = ctl(config, "restore", str(backup))
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"lockerctl: {backup} is older than {data / 'locker.db'}:")
    assert "add --force" in refused.stderr
    assert orders_in(data / "locker.db") == {"SO-1", "SO-2"}

    out = ctl(config, "restore", str(backup), "--force")
    assert out.returncode == 0, out.stderr
    [kept] = data.glob("locker.db.replaced-*")
    lines = out.stdout.splitlines()
    assert lines[0] == f"restored {backup} as {data / 'locker.db'}"
    assert lines[1].startswith(f"locker {LOCKER_ID}, epoch 1, last event seq ")
    assert lines[2:] == [
        f"the database it replaced is kept as {kept}",
        "next: start lockerd: systemctl start lockerd",
    ]
    assert orders_in(kept) == {"SO-1", "SO-2"}  # nothing is lost, only set aside
    assert orders_in(data / "locker.db") == {"SO-1"}

    daemon = Lockerd(config)
    try:
        daemon.wait_ready()
        assert ctl(config, "history", "SO-1").returncode == 0
        assert ctl(config, "history", "SO-2").returncode == 1
        daemon.stop()
    finally:
        daemon.kill()


def test_a_crashed_database_s_wal_goes_aside_with_it_never_into_the_restored_one(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "cabinet")
    served(config, "SO-1")
    backup = backup_of(config, tmp_path / "backup.db")
    set_pin(config)
    data = tmp_path / "cabinet" / "data"
    daemon = Lockerd(config)
    try:
        daemon.wait_ready()
        off = ctl(config, "service", "3", "off", "--pin-stdin", stdin=PIN + "\n")
        assert off.returncode == 0, off.stderr
    finally:
        daemon.kill()  # SIGKILL: the last commits live only in the WAL
    assert (data / "locker.db-wal").stat().st_size > 0  # the premise
    out = ctl(config, "restore", str(backup), "--force")
    assert out.returncode == 0, out.stderr
    [kept] = data.glob("locker.db.replaced-*[0-9]Z")
    assert not (data / "locker.db-wal").exists() and not (data / "locker.db-shm").exists()
    assert kept.with_name(kept.name + "-wal").exists()
    assert check_file(data / "locker.db").ok
    # The kept database with its WAL still holds what was committed before the crash.
    assert check_file(kept).newest_change > check_file(backup).newest_change  # type: ignore[operator]
    daemon = Lockerd(config)
    try:
        daemon.wait_ready()
        assert ctl(config, "history", "SO-1").returncode == 0
        daemon.stop()
    finally:
        daemon.kill()


def test_restore_refuses_without_the_code_key(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cabinet")
    served(config, "SO-1")
    backup = backup_of(config, tmp_path / "backup.db")
    key = tmp_path / "cabinet" / "data" / "locker.key"
    key.unlink()
    out = ctl(config, "restore", str(backup), "--force")
    assert out.returncode == 1
    assert out.stderr.startswith(f"lockerctl: no code key at {key}: copy locker.key from")
    assert not list(key.parent.glob("locker.db.replaced-*"))
