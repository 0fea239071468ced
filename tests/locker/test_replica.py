"""The continuous replica: real SQLite files, real directories, a medium that goes away."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from pathlib import Path

from conftest import wait_for

from locker.replica import REPLICA_NAME, ReplicaWriter


def database(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY)")
    return db


def rows(path: Path) -> list[int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [r[0] for r in db.execute("SELECT n FROM t ORDER BY n")]
    finally:
        db.close()


def test_each_commit_reaches_the_replica_as_a_whole_private_database(tmp_path: Path) -> None:
    db = database(tmp_path / "locker.db")
    replica = ReplicaWriter(tmp_path / "locker.db", tmp_path / "usb", min_interval_s=0.01)
    replica.start()
    try:
        copy = tmp_path / "usb" / REPLICA_NAME
        for n in range(3):
            db.execute("INSERT INTO t VALUES (?)", (n,))
            replica.committed()
            expected = list(range(n + 1))

            def arrived(expected: list[int] = expected) -> bool:
                return copy.exists() and rows(copy) == expected

            wait_for(arrived, f"row {n}")
        wait_for(lambda: replica.status().lag_s == 0, "caught up")
        status = replica.status()
        assert status.ok and status.detail == "" and status.copied_at is not None
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        assert not (tmp_path / "usb" / (REPLICA_NAME + "-wal")).exists()
    finally:
        replica.close()
        db.close()


def test_writes_during_copies_are_never_half_copied_and_the_last_one_arrives(
    tmp_path: Path,
) -> None:
    db = database(tmp_path / "locker.db")
    replica = ReplicaWriter(tmp_path / "locker.db", tmp_path / "usb", min_interval_s=0.0)
    replica.start()
    done = threading.Event()

    def writer() -> None:
        for n in range(2000):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?)", (n,))
            db.execute("INSERT INTO t VALUES (?)", (100_000 + n,))  # a pair per commit
            db.execute("COMMIT")
            replica.committed()
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    copy = tmp_path / "usb" / REPLICA_NAME
    seen = 0
    while not done.is_set() or seen < 2000:
        if copy.exists():
            found = rows(copy)
            # Every copy is a committed state: both rows of each pair, or neither.
            assert len(found) % 2 == 0 and found[: len(found) // 2] == list(range(len(found) // 2))
            seen = len(found) // 2
        time.sleep(0.005)
    thread.join()
    replica.close()
    db.close()
    assert rows(copy)[:2000] == list(range(2000))


def test_a_missing_medium_is_reported_and_caught_up_when_it_returns(tmp_path: Path) -> None:
    db = database(tmp_path / "locker.db")
    blocker = tmp_path / "mnt"
    blocker.write_text("not a directory: the stick is not mounted")
    replica = ReplicaWriter(tmp_path / "locker.db", blocker / "usb", min_interval_s=0.01)
    replica.start()
    try:
        db.execute("INSERT INTO t VALUES (1)")
        replica.committed()
        wait_for(lambda: not replica.status().ok, "the failure reported")
        failing = replica.status()
        assert "Not a directory" in failing.detail and failing.copied_at is None
        wait_for(lambda: replica.status().lag_s > 0, "the lag grows")
        blocker.unlink()
        blocker.mkdir()
        wait_for(lambda: replica.status().ok, "copying again", timeout=60)
        wait_for(lambda: replica.status().lag_s == 0, "caught up")
        assert rows(blocker / "usb" / REPLICA_NAME) == [1]
    finally:
        replica.close()
        db.close()


def test_a_clean_stop_leaves_the_replica_current(tmp_path: Path) -> None:
    db = database(tmp_path / "locker.db")
    replica = ReplicaWriter(tmp_path / "locker.db", tmp_path / "usb", min_interval_s=3600)
    replica.start()
    wait_for((tmp_path / "usb" / REPLICA_NAME).exists, "the first copy")
    db.execute("INSERT INTO t VALUES (7)")
    replica.committed()  # the next copy would be an hour away ...
    replica.close()  # ... but stopping copies what is committed first
    db.close()
    assert rows(tmp_path / "usb" / REPLICA_NAME) == [7]
