"""The SQLite store: schema versions, transactions, savepoints, the outbox and its `seq`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from locker.codes import CodeBook
from locker.storage import SCHEMA_VERSION, StorageError, Store

BOOK = CodeBook.from_key(b"t" * 32)


def test_pragmas_and_schema_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db", BOOK)
    assert (tmp_path / "l.db").stat().st_mode & 0o077 == 0  # private to the daemon
    db = store.db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    Store(path, BOOK).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StorageError, match="newer than this software"):
        Store(path, BOOK)


def test_seq_never_repeats_even_after_the_outbox_drains_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    store = Store(path, BOOK)
    seqs = []
    for i in range(3):
        with store.transaction() as tx:
            seqs.append(tx.emit("e", {"i": i}, 0.0))
    store.delete_events([ev.seq for ev in store.events()])
    assert store.outbox_depth() == 0
    store.close()
    store = Store(path, BOOK)
    with store.transaction() as tx:
        seqs.append(tx.emit("e", {"i": 3}, 0.0))
    assert seqs == [1, 2, 3, 4]
    store.close()


def test_rollback_leaves_no_event_and_runs_no_after_commit(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db", BOOK)
    ran: list[str] = []
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.emit("e", {}, 0.0)
        tx.after_commit(lambda: ran.append("unlock"))
        raise RuntimeError("crash between the change and the commit")
    assert store.events() == [] and ran == []
    with store.transaction() as tx:
        tx.emit("e", {}, 0.0)
        tx.after_commit(lambda: ran.append("unlock"))
        assert ran == []  # not before the commit
    assert ran == ["unlock"]
    # a rolled-back transaction does not burn a seq
    assert [e.seq for e in store.events()] == [1]
    store.close()


def test_savepoint_rolls_back_only_the_inner_part(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db", BOOK)
    with store.transaction() as outer:
        outer.emit("kept", {}, 0.0)
        with pytest.raises(ValueError), store.transaction() as inner:
            inner.emit("dropped", {}, 0.0)
            raise ValueError("refused half way")
    assert [e.type for e in store.events()] == ["kept"]
    store.close()


def test_a_rolled_back_savepoint_leaves_no_follow_up_behind(tmp_path: Path) -> None:
    """Several commands share one commit (group commit): one that fails half way must
    not leave its unlock, its event notice or its journal line to the others' commit."""
    store = Store(tmp_path / "l.db", BOOK)
    ran: list[str] = []
    heard: list[list[str]] = []
    store.hub.committed.subscribe(lambda c: heard.append(list(c.event_types)))
    with store.transaction() as outer:
        outer.after_commit(lambda: ran.append("kept"))
        outer.emit("kept", {}, 0.0)
        with pytest.raises(ValueError), store.transaction() as inner:
            inner.after_commit(lambda: ran.append("dropped"))
            inner.emit("dropped", {}, 0.0)
            inner.audit(0.0, "test", "dropped")
            raise ValueError("refused half way")
        assert store.pending_audit == []
    assert ran == ["kept"]
    assert heard == [["kept"]]
    store.close()


def test_events_with_codes_are_sealed_at_rest(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db", BOOK)
    with store.transaction() as tx:
        tx.emit("code_issued", {"order_id": "SO-1", "pickup_code": "73519946"}, 0.0)
        tx.emit("expired", {"order_id": "SO-2"}, 0.0)
    raw = store.db.execute("SELECT sealed, fields FROM outbox ORDER BY seq").fetchall()
    assert raw[0][0] == 1 and b"73519946" not in bytes(raw[0][1])
    assert raw[1][0] == 0
    assert store.events()[0].fields["pickup_code"] == "73519946"
    store.close()


def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    from locker.storage import MIGRATIONS

    path = tmp_path / "l.db"
    con = sqlite3.connect(path)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            con.execute(statement)
    con.execute("PRAGMA user_version=1")
    con.execute("INSERT INTO audit (at, actor, action) VALUES (1, 'system', 'start')")
    con.commit()
    con.close()
    store = Store(path, BOOK)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.db.execute("SELECT action FROM audit").fetchone()[0] == "start"  # data kept
    indexes = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "commands_by_time" in indexes
    store.close()


def test_an_after_commit_failure_does_not_skip_the_others(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db", BOOK)
    ran: list[int] = []

    def broken() -> None:
        raise OSError("serial port gone")

    with store.transaction() as tx:
        tx.after_commit(lambda: ran.append(1))
        tx.after_commit(broken)
        tx.after_commit(lambda: ran.append(3))
    assert ran == [1, 3]
    store.close()


def test_forgetting_acknowledged_events_tells_no_listener(tmp_path: Path) -> None:
    # A drain of the outbox changes nothing a screen or `state` shows: no snapshot per ack.
    store = Store(tmp_path / "l.db", BOOK)
    heard: list[list[str]] = []
    store.hub.committed.subscribe(lambda c: heard.append(list(c.event_types)))
    with store.transaction() as tx:
        tx.emit("deposited", {}, 0.0)
    assert heard == [["deposited"]]
    store.delete_events([ev.seq for ev in store.events()])
    assert heard == [["deposited"]] and store.outbox_depth() == 0
    store.close()


def fail_commits_that_touch(store: Store, table: str) -> None:
    """Make every COMMIT of a transaction that inserts into `table` fail inside SQLite:
    a trigger adds a row whose deferred foreign key is checked only at COMMIT."""
    store.db.execute(
        "CREATE TABLE commit_trap (pk INTEGER REFERENCES orders(pk) DEFERRABLE INITIALLY DEFERRED)"
    )
    store.db.execute(
        f"CREATE TRIGGER trap_{table} AFTER INSERT ON {table}"
        " BEGIN INSERT INTO commit_trap VALUES (-1); END"
    )


def test_a_failed_commit_drops_its_after_commit_work_for_good(tmp_path: Path) -> None:
    store = Store(tmp_path / "l.db", BOOK)
    fail_commits_that_touch(store, "audit")
    ran: list[str] = []
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as tx:
        tx.audit(0.0, "t", "intent")
        tx.emit("e", {}, 0.0)
        tx.after_commit(lambda: ran.append("unlock"))
    assert ran == [] and not store.db.in_transaction
    # The next transaction that does commit must not carry the dead one's work.
    with store.transaction() as tx:
        tx.emit("next", {}, 0.0)
    assert ran == []
    assert [e.type for e in store.events()] == ["next"]
    assert store.db.execute("SELECT COUNT(*) FROM audit").fetchone()[0] == 0
    store.close()
