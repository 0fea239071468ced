"""A database as a file (a replica, a backup): checked whole, its facts read, its epoch
stamped; and a store that refuses another locker's data. Real SQLite files."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from locker.codes import CodeBook
from locker.dbfile import check_file, stamp_epoch
from locker.replica import ReplicaWriter
from locker.storage import SCHEMA_VERSION, StorageError, Store

BOOK = CodeBook.from_key(b"f" * 32)


def busy_store(path: Path, events: int = 3) -> Store:
    store = Store(path, BOOK, locker_id="store-001-a")
    with store.transaction() as tx:
        for i in range(events):
            tx.emit("expiring_soon", {"order_id": f"O{i}"}, 1000.0 + i)
        tx.audit(1_700_000_000.0, "platform", "reserve", "O1")
    return store


def test_a_healthy_file_tells_whose_it_is_how_new_and_its_last_seq(tmp_path: Path) -> None:
    busy_store(tmp_path / "locker.db").close()
    facts = check_file(tmp_path / "locker.db")
    assert facts.ok and facts.schema == SCHEMA_VERSION
    assert (facts.locker_id, facts.epoch, facts.last_seq) == ("store-001-a", 1, 3)
    assert facts.newest_change == 1_700_000_000.0


def test_a_damaged_file_is_not_ok(tmp_path: Path) -> None:
    busy_store(tmp_path / "locker.db", events=400).close()
    data = bytearray((tmp_path / "locker.db").read_bytes())
    data[4096 * 2 : 4096 * 2 + 512] = b"\xff" * 512  # a page torn by a dying card
    (tmp_path / "broken.db").write_bytes(bytes(data))
    try:
        facts = check_file(tmp_path / "broken.db")
    except sqlite3.Error:
        return  # SQLite cannot read it at all: just as refused
    assert not facts.ok


def test_not_a_database_or_no_file_at_all_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    with pytest.raises(sqlite3.Error):
        check_file(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        check_file(tmp_path / "missing.db")


def test_a_stamped_epoch_is_the_store_s_generation(tmp_path: Path) -> None:
    busy_store(tmp_path / "locker.db").close()
    stamp_epoch(tmp_path / "locker.db", 2)
    assert check_file(tmp_path / "locker.db").epoch == 2
    store = Store(tmp_path / "locker.db", BOOK, locker_id="store-001-a")
    assert store.epoch == 2
    store.close()


def test_a_store_refuses_another_lockers_data(tmp_path: Path) -> None:
    busy_store(tmp_path / "locker.db").close()
    with pytest.raises(StorageError, match="holds the data of locker store-001-a, not of b-2"):
        Store(tmp_path / "locker.db", BOOK, locker_id="b-2")


def test_the_replica_says_which_events_it_holds(tmp_path: Path) -> None:
    store = busy_store(tmp_path / "locker.db", events=5)
    replica = ReplicaWriter(tmp_path / "locker.db", tmp_path / "usb", min_interval_s=0.01)
    replica.start()
    try:
        deadline = time.monotonic() + 20
        while replica.status().seq < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert replica.status().seq == 5
    finally:
        replica.close()
        store.close()
    assert check_file(tmp_path / "usb" / "locker.db").last_seq == 5
