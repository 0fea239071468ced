"""The continuous replica: real SQLite files, real directories, a medium that goes away."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_for

from locker import replica
from locker.recovery import verify
from locker.replica import (
    REPLICA_NAME,
    DirectoryTarget,
    Image,
    PatchError,
    ReplicaWriter,
    apply_patch,
    changed_pages,
    decode_patch,
    encode_patch,
    image_of,
    patch_path,
    recover_replica,
    snapshot,
    take_snapshot,
)


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


# -- incremental copies ----------------------------------------------------------------


def filled(path: Path, rows_: int, auto_vacuum: bool = False) -> sqlite3.Connection:
    """A WAL database like the locker's with `rows_` rows of 500 bytes (about 5 MB for
    10,000), its pages spread over the whole file."""
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    if auto_vacuum:
        db.execute("PRAGMA auto_vacuum=FULL")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)")
    db.executemany("INSERT INTO t VALUES (?, randomblob(500))", [(n,) for n in range(rows_)])
    return db


def expected_copy(source: Path, folder: Path) -> bytes:
    """What a consistent snapshot of `source` holds now, byte for byte (the backup API
    writes the same bytes for the same state)."""
    folder.mkdir(exist_ok=True)
    snapshot(source, folder / "expected.db")
    return (folder / "expected.db").read_bytes()


def test_after_the_first_whole_copy_only_changed_pages_are_written_and_the_copy_is_exact(
    tmp_path: Path,
) -> None:
    source = tmp_path / "locker.db"
    db = filled(source, 10_000)
    target = DirectoryTarget(tmp_path / "usb", workdir=tmp_path / "scratch")
    copy = tmp_path / "usb" / REPLICA_NAME
    try:
        target.put(source)
        first = target.last_put
        assert first is not None and first.whole and first.bytes == copy.stat().st_size
        assert copy.read_bytes() == expected_copy(source, tmp_path / "x")
        for n in range(3):
            db.execute("UPDATE t SET pad=randomblob(500) WHERE n=?", (n * 3000,))
            db.execute("INSERT INTO t VALUES (?, randomblob(500))", (100_000 + n,))
            target.put(source)
            put = target.last_put
            assert put is not None and not put.whole
            # A commit touching two rows changes a handful of pages, not the file.
            assert put.pages <= 12 and put.bytes < copy.stat().st_size // 50
            assert copy.read_bytes() == expected_copy(source, tmp_path / "x")
            assert not patch_path(copy).exists()
        assert list((tmp_path / "scratch").iterdir()) == []  # no snapshot left behind
        assert rows(copy)[:3] == [0, 1, 2]
    finally:
        db.close()


def test_growth_and_retention_deletes_change_the_length_and_the_copy_follows(
    tmp_path: Path,
) -> None:
    source = tmp_path / "locker.db"
    db = filled(source, 4000, auto_vacuum=True)  # deletes give pages back: the file shrinks
    target = DirectoryTarget(tmp_path / "usb", workdir=tmp_path / "scratch")
    copy = tmp_path / "usb" / REPLICA_NAME
    try:
        target.put(source)
        lengths = [copy.stat().st_size]
        db.executemany(
            "INSERT INTO t VALUES (?, randomblob(500))", [(n,) for n in range(4000, 5000)]
        )
        target.put(source)  # grown by about 1,000 rows' pages
        lengths.append(copy.stat().st_size)
        assert target.last_put is not None and not target.last_put.whole
        assert copy.read_bytes() == expected_copy(source, tmp_path / "x")
        db.execute("DELETE FROM t WHERE n >= 4200")  # retention: the newest go here
        target.put(source)
        lengths.append(copy.stat().st_size)
        assert target.last_put is not None and not target.last_put.whole
        assert copy.read_bytes() == expected_copy(source, tmp_path / "x")
        assert lengths[0] < lengths[1] and lengths[2] < lengths[1]
        assert rows(copy) == list(range(4200))
    finally:
        db.close()


def test_a_crash_between_writing_the_patch_and_applying_it_is_recovered(tmp_path: Path) -> None:
    source = tmp_path / "locker.db"
    db = filled(source, 3000)
    DirectoryTarget(tmp_path / "usb", workdir=tmp_path / "scratch").put(source)
    copy = tmp_path / "usb" / REPLICA_NAME
    before = copy.read_bytes()
    db.execute("UPDATE t SET pad=randomblob(500) WHERE n IN (1, 1500, 2999)")
    db.executemany("INSERT INTO t VALUES (?, randomblob(500))", [(n,) for n in range(3000, 3100)])
    db.close()
    scratch = take_snapshot(source, tmp_path / "scratch")
    pages = changed_pages(scratch.image, image_of(copy))
    assert pages is not None and len(pages) > 2
    data = encode_patch(scratch.image, scratch.path, pages, image_of(copy))
    patch = decode_patch(data)
    # The redo log is on the medium; the stop came after the first page was written.
    patch_path(copy).write_bytes(data)
    n, page = patch.pages[0]
    with copy.open("r+b") as f:
        f.seek(n * patch.page_size)
        f.write(page)
    assert copy.read_bytes() != before
    assert "completed" in recover_replica(copy)
    assert copy.read_bytes() == scratch.path.read_bytes()
    assert not patch_path(copy).exists()
    assert recover_replica(copy) == ""  # nothing more to do: idempotent
    assert rows(copy) == list(range(3100))


def test_the_directory_target_recovers_a_leftover_patch_before_it_copies(tmp_path: Path) -> None:
    source = tmp_path / "locker.db"
    db = filled(source, 2000)
    DirectoryTarget(tmp_path / "usb", workdir=tmp_path / "scratch").put(source)
    copy = tmp_path / "usb" / REPLICA_NAME
    db.execute("DELETE FROM t WHERE n < 10")
    scratch = take_snapshot(source, tmp_path / "scratch")
    held = image_of(copy)
    pages = changed_pages(scratch.image, held)
    assert pages is not None
    patch_path(copy).write_bytes(encode_patch(scratch.image, scratch.path, pages, held))
    db.execute("DELETE FROM t WHERE n < 20")
    restarted = DirectoryTarget(tmp_path / "usb", workdir=tmp_path / "scratch")
    restarted.put(source)  # the patch first, then this copy (whole: a new writer knows none)
    db.close()
    assert not patch_path(copy).exists()
    assert restarted.last_put is not None and restarted.last_put.whole
    assert rows(copy) == list(range(20, 2000))


def test_a_torn_or_foreign_patch_is_dropped_and_the_copy_left_as_it_was(tmp_path: Path) -> None:
    source = tmp_path / "locker.db"
    db = filled(source, 2000)
    DirectoryTarget(tmp_path / "usb", workdir=tmp_path / "scratch").put(source)
    copy = tmp_path / "usb" / REPLICA_NAME
    db.execute("DELETE FROM t WHERE n < 10")
    db.close()
    scratch = take_snapshot(source, tmp_path / "scratch")
    held = image_of(copy)
    pages = changed_pages(scratch.image, held)
    assert pages is not None
    data = encode_patch(scratch.image, scratch.path, pages, held)
    before = copy.read_bytes()
    patch_path(copy).write_bytes(data[: len(data) - 100])  # the stop came mid-write
    assert "incomplete" in recover_replica(copy)
    assert copy.read_bytes() == before and not patch_path(copy).exists()
    # A log left beside a copy installed whole since: it does not patch that copy.
    other = tmp_path / "other" / REPLICA_NAME
    other.parent.mkdir()
    filled(other, 500).close()
    snapshot(other, copy)
    replaced = copy.read_bytes()
    patch_path(copy).write_bytes(data)
    assert "not what it patches" in recover_replica(copy)
    assert copy.read_bytes() == replaced and not patch_path(copy).exists()


def test_a_patch_that_does_not_produce_the_primarys_digest_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "locker.db"
    db = filled(source, 2000)
    DirectoryTarget(tmp_path / "usb", workdir=tmp_path / "scratch").put(source)
    copy = tmp_path / "usb" / REPLICA_NAME
    db.execute("DELETE FROM t WHERE n < 10")
    db.close()
    scratch = take_snapshot(source, tmp_path / "scratch")
    held = image_of(copy)
    pages = changed_pages(scratch.image, held)
    assert pages is not None
    wrong = Image(scratch.image.page_size, scratch.image.hashes, scratch.image.length, bytes(32))
    with pytest.raises(PatchError, match="does not match"):
        apply_patch(copy, encode_patch(wrong, scratch.path, pages, held))
    assert not patch_path(copy).exists()  # applying it again could not help
    altered = bytearray(encode_patch(scratch.image, scratch.path, pages, held))
    altered[200] ^= 1
    with pytest.raises(PatchError, match="torn or altered"):
        apply_patch(copy, bytes(altered))


def test_a_replica_changed_behind_the_writers_back_gets_a_whole_copy(tmp_path: Path) -> None:
    source = tmp_path / "locker.db"
    db = filled(source, 1000)
    target = DirectoryTarget(tmp_path / "usb", workdir=tmp_path / "scratch")
    copy = tmp_path / "usb" / REPLICA_NAME
    try:
        target.put(source)
        copy.unlink()  # the stick swapped for an empty one, say
        db.execute("DELETE FROM t WHERE n < 10")
        target.put(source)
        assert target.last_put is not None and target.last_put.whole
        assert copy.read_bytes() == expected_copy(source, tmp_path / "x")
    finally:
        db.close()


def test_verifying_a_replica_first_completes_a_patch_a_stop_left(tmp_path: Path) -> None:
    """What promote, restore and `lockerctl verify` judge is the completed copy."""
    source = tmp_path / "locker.db"
    db = filled(source, 2000)
    DirectoryTarget(tmp_path / "usb", workdir=tmp_path / "scratch").put(source)
    copy = tmp_path / "usb" / REPLICA_NAME
    db.execute("DELETE FROM t WHERE n < 10")
    db.close()
    scratch = take_snapshot(source, tmp_path / "scratch")
    held = image_of(copy)
    pages = changed_pages(scratch.image, held)
    assert pages is not None
    patch_path(copy).write_bytes(encode_patch(scratch.image, scratch.path, pages, held))
    assert verify(copy).ok
    assert copy.read_bytes() == scratch.path.read_bytes() and not patch_path(copy).exists()


def test_a_page_checksum_that_misses_a_change_costs_a_whole_copy_never_a_wrong_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "locker.db"
    db = filled(source, 2000)
    target = DirectoryTarget(tmp_path / "usb", workdir=tmp_path / "scratch")
    copy = tmp_path / "usb" / REPLICA_NAME
    try:
        target.put(source)
        monkeypatch.setattr(replica, "page_checksum", lambda page: b"same")  # every page
        db.execute("UPDATE t SET pad=randomblob(500) WHERE n=1000")
        target.put(source)  # the patch misses the page, the digest check does not
        assert target.last_put is not None and target.last_put.whole
        assert copy.read_bytes() == expected_copy(source, tmp_path / "x")
    finally:
        db.close()
