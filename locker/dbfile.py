"""A locker's database as a file: what a technician checks before trusting a copy.

A replica, a backup or the database of a stopped lockerd is opened read-only and
checked whole (every page), and the facts that decide whether it may be used are
read from it: whose it is, its generation (epoch), how new it is. Writing is
limited to what moving a copy into service needs: stamping a new epoch.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

# The facts the store keeps in its `meta` table, by key.
LOCKER_ID, EPOCH = "locker_id", "epoch"


@dataclass(frozen=True)
class FileFacts:
    """A database file checked whole, and what it holds."""

    integrity: str  # "ok", or SQLite's first complaint
    schema: int
    locker_id: str | None  # whose data it is (None: written before the store recorded it)
    epoch: int  # its generation: grows each time a standby takes over
    newest_change: float | None  # epoch seconds of its newest audit entry, stage or command
    last_seq: int  # the highest event seq it ever gave out

    @property
    def ok(self) -> bool:
        return self.integrity == "ok"


def self_contained(db: sqlite3.Connection) -> None:
    """Make a copy of the database one file of its own: no -wal beside it to lose."""
    db.execute("PRAGMA journal_mode=DELETE")


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
    return str(row[0]) if row else None


def read_facts(db: sqlite3.Connection) -> tuple[str | None, int, float | None, int]:
    """(locker id, epoch, newest change, last seq) of an open database."""
    tables = _tables(db)
    if "meta" not in tables:
        return None, 1, None, 0
    locker_id = _meta(db, LOCKER_ID)
    epoch = int(_meta(db, EPOCH) or 1)
    newest = db.execute(
        "SELECT MAX(t) FROM (SELECT MAX(at) AS t FROM audit UNION ALL"
        " SELECT MAX(at) FROM order_stages UNION ALL SELECT MAX(received_at) FROM commands)"
    ).fetchone()[0]
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
    return locker_id, epoch, newest, int(row[0]) if row else 0


def check_file(path: Path) -> FileFacts:
    """Open a database file read-only, check every page, read its facts; sqlite3.Error
    (or OSError) when it is not a database SQLite can read at all."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    db = _read_only(path)
    try:
        verdict = db.execute("PRAGMA integrity_check").fetchall()
        schema = int(db.execute("PRAGMA user_version").fetchone()[0])
        integrity = str(verdict[0][0]) if verdict else "no verdict"
        facts = read_facts(db) if integrity == "ok" else (None, 1, None, 0)
    finally:
        db.close()
    return FileFacts(integrity, schema, *facts)


def stamp_epoch(path: Path, epoch: int) -> None:
    """Write a new generation into a database file that no lockerd has open (promote)."""
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (EPOCH, str(epoch)),
        )
        db.execute("COMMIT")
    finally:
        db.close()


def quick_check(path: Path) -> str:
    """SQLite's quick check of the database `path` ("ok", or its first complaint): the
    start-up look, which must cost little on a healthy file. Opened as lockerd will open
    it (not read-only), so a WAL left by a crash is read as lockerd would read it, and
    no missing -shm is taken for damage. sqlite3.DatabaseError when it is no database
    SQLite can read at all."""
    db = sqlite3.connect(str(path))
    try:
        verdict = db.execute("PRAGMA quick_check(1)").fetchall()
    finally:
        db.close()
    return str(verdict[0][0]) if verdict else "no verdict"


def loaded_orders(path: Path) -> int | None:
    """How many orders the file holds loaded in a compartment (goods a shopper may still
    fetch), read-only; None when it holds no orders table (an empty database)."""
    db = _read_only(path)
    try:
        if "orders" not in _tables(db):
            return None
        return int(db.execute("SELECT COUNT(*) FROM orders WHERE state='loaded'").fetchone()[0])
    finally:
        db.close()
