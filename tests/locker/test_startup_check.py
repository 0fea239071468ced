"""The start-up check: a damaged database is refused, naming the newest good copy (the
replica directories, the logged backups) and the command that restores it. Real files."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from test_backup import BIN, damage, served, write_config

from locker import daemon
from locker.config import load_config
from locker.errors import LockerError
from locker.recovery import BACKUPS_LOG, check_database_at_start, make_backup, verify
from locker.replica import REPLICA_NAME, snapshot

EXTRA = '[replica]\ndirectory = "stick"\n'


def cabinet(tmp_path: Path) -> Path:
    """A locker that served for a while: an older copy on its stick, a newer logged
    backup, a backup logged and since deleted, and then its database torn."""
    config = write_config(tmp_path / "cabinet")
    data = config.parent / "data"
    served(config, *(f"SO-{n}" for n in range(1, 11)))
    (config.parent / "stick").mkdir(exist_ok=True)
    snapshot(data / "locker.db", config.parent / "stick" / REPLICA_NAME)
    served(config, *(f"SO-{n}" for n in range(11, 31)))
    backups = tmp_path / "backups"
    backups.mkdir()
    make_backup(data / "locker.db", backups / "good.db", data, "bk-1", time.time())
    make_backup(data / "locker.db", backups / "gone.db", data, "bk-1", time.time())
    (backups / "gone.db").unlink()
    # The stick is in the configuration from now on (lockerd would have kept it current).
    return write_config(tmp_path / "cabinet", extra=EXTRA)


def test_a_healthy_database_or_none_at_all_passes(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cabinet")
    check_database_at_start(load_config(config))  # a first start: no file yet
    served(config, "SO-1")
    check_database_at_start(load_config(config))


def test_a_torn_database_is_refused_naming_the_newest_good_copy(tmp_path: Path) -> None:
    config = cabinet(tmp_path)
    database = config.parent / "data" / "locker.db"
    damage(database, database)
    good = tmp_path / "backups" / "good.db"
    newest = verify(good).as_dict()["newest_change"]
    with pytest.raises(LockerError) as refused:
        check_database_at_start(load_config(config))
    message = str(refused.value)
    assert message.startswith(f"{database} is damaged (")
    assert "lockerd will not serve it" in message
    assert message.endswith(
        f"The newest good copy is {good} (newest change {newest}, last event seq"
        f" {verify(good).as_dict()['last_seq']}): restore it with `lockerctl restore {good}`,"
        " then start lockerd: systemctl start lockerd"
    )


def test_with_the_newest_backup_gone_the_stick_s_copy_is_named(tmp_path: Path) -> None:
    config = cabinet(tmp_path)
    database = config.parent / "data" / "locker.db"
    (tmp_path / "backups" / "good.db").unlink()
    database.write_bytes(b"not a database, a card's garbage\n" * 200)
    with pytest.raises(LockerError) as refused:
        check_database_at_start(load_config(config))
    stick = config.parent / "stick" / REPLICA_NAME
    assert "SQLite cannot read it" in str(refused.value)
    assert f"restore it with `lockerctl restore {stick}`" in str(refused.value)


def test_with_no_good_copy_anywhere_it_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path / "cabinet")
    served(config, *(f"SO-{n}" for n in range(1, 31)))
    data = config.parent / "data"
    (data / BACKUPS_LOG).write_text('{"path": "/nowhere/locker.db"}\n')
    damage(data / "locker.db", data / "locker.db")
    with pytest.raises(LockerError) as refused:
        check_database_at_start(load_config(config))
    assert "No good copy was found (looked at " in str(refused.value)
    assert "/nowhere/locker.db" in str(refused.value)


@pytest.mark.skipif(
    "check_database_at_start" not in Path(daemon.__file__).read_text(),
    reason="daemon.build() does not call recovery.check_database_at_start yet",
)
def test_lockerd_refuses_to_start_on_a_torn_database_and_names_the_copy(tmp_path: Path) -> None:
    config = cabinet(tmp_path)
    database = config.parent / "data" / "locker.db"
    damage(database, database)
    torn = database.read_bytes()
    proc = subprocess.run(
        [str(BIN / "lockerd"), "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    good = tmp_path / "backups" / "good.db"
    assert f"{database} is damaged" in proc.stderr
    assert f"`lockerctl restore {good}`" in proc.stderr
    assert database.read_bytes() == torn  # nothing was written into it
