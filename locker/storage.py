"""Durable state in one SQLite file.

Every change and the events it causes are committed in one transaction (the
transactional outbox), with `synchronous=FULL` so a commit survives a power
cut. Nested use of `transaction()` becomes a SAVEPOINT, so a use case that
refuses half way leaves no trace while its caller still commits the rest (for
instance the stored reply to a refused command). Work that must happen only
once the change is durable — sending an unlock to a board above all — is
registered with `after_commit` and runs after the outermost COMMIT.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locker.clock import rfc3339
from locker.codes import CodeBook
from locker.dbfile import EPOCH, LOCKER_ID
from locker.errors import LockerError
from locker.events import Committed, Events
from locker.model import ALARM_ACTIONS, CommandError, ErrorCode
from locker.rows import AuditEntry

log = logging.getLogger(__name__)

# Set when a controller of a higher epoch was found serving this locker: this database's
# controller must never serve again (the daemon refuses to, the standby tools show it).
FENCED_BY, FENCED_AT = "fenced_by", "fenced_at"

SCHEMA_VERSION = 5

# Migrations, in order; index i takes the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE orders (
        pk INTEGER PRIMARY KEY,
        order_id TEXT NOT NULL,
        state TEXT NOT NULL,
        accessible INTEGER NOT NULL,
        item_count INTEGER NOT NULL,
        pickup_hours REAL NOT NULL,
        reserved_at REAL NOT NULL,
        reserved_until REAL NOT NULL,
        deposited_at REAL,
        pickup_until REAL,
        reminder_sent INTEGER NOT NULL DEFAULT 0,
        opened_at REAL,
        closed_at REAL,
        method TEXT,
        end_reason TEXT
    );
    CREATE INDEX orders_by_id ON orders(order_id);
    CREATE INDEX orders_by_state ON orders(state);
    CREATE UNIQUE INDEX orders_one_active ON orders(order_id)
        WHERE state IN ('reserved', 'loaded');
    CREATE TABLE compartments (
        number INTEGER PRIMARY KEY,
        size TEXT NOT NULL,
        low INTEGER NOT NULL,
        board TEXT NOT NULL,
        channel INTEGER NOT NULL,
        in_service INTEGER NOT NULL DEFAULT 1,
        jammed INTEGER NOT NULL DEFAULT 0,
        door TEXT NOT NULL DEFAULT 'unknown',
        door_since REAL,
        left_open_alarmed INTEGER NOT NULL DEFAULT 0,
        order_pk INTEGER REFERENCES orders(pk)
    );
    CREATE TABLE order_compartments (
        order_pk INTEGER NOT NULL REFERENCES orders(pk),
        number INTEGER NOT NULL,
        size TEXT NOT NULL,
        opened_at REAL,
        closed_at REAL,
        PRIMARY KEY (order_pk, number)
    );
    CREATE TABLE codes (
        digest TEXT PRIMARY KEY,
        order_pk INTEGER NOT NULL REFERENCES orders(pk),
        kind TEXT NOT NULL CHECK (kind IN ('pickup', 'deposit'))
    );
    CREATE INDEX codes_by_order ON codes(order_pk);
    CREATE TABLE order_stages (
        id INTEGER PRIMARY KEY,
        order_pk INTEGER NOT NULL REFERENCES orders(pk),
        stage TEXT NOT NULL,
        at REAL NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX order_stages_by_order ON order_stages(order_pk);
    CREATE TABLE openings (
        id INTEGER PRIMARY KEY,
        purpose TEXT NOT NULL,
        order_pk INTEGER REFERENCES orders(pk),
        method TEXT NOT NULL,
        actor TEXT NOT NULL,
        command_id TEXT,
        created_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'active',
        ended_at REAL
    );
    CREATE INDEX openings_active ON openings(state) WHERE state = 'active';
    CREATE TABLE opening_doors (
        opening_id INTEGER NOT NULL REFERENCES openings(id),
        number INTEGER NOT NULL REFERENCES compartments(number),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_attempt_at REAL,
        seen_open_at REAL,
        seen_closed_at REAL,
        outcome TEXT,
        PRIMARY KEY (opening_id, number)
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        occurred_at REAL NOT NULL,
        sealed INTEGER NOT NULL,
        fields BLOB NOT NULL
    );
    CREATE TABLE commands (
        command_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        received_at REAL NOT NULL,
        state TEXT NOT NULL,
        sealed INTEGER NOT NULL DEFAULT 0,
        reply BLOB
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        order_id TEXT,
        compartment INTEGER,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_by_action ON audit(action, at);
    CREATE TABLE throttle (
        terminal TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        locked_until REAL NOT NULL,
        last_failure_at REAL NOT NULL
    );
    CREATE TABLE boards (
        name TEXT PRIMARY KEY,
        online INTEGER NOT NULL DEFAULT 1,
        errors INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # 2: stored replies are pruned by age once the platform can no longer re-deliver them.
    """
    CREATE INDEX commands_by_time ON commands(received_at);
    """,
    # 3: a reservation finds the lowest free bays of a size and height without a scan.
    """
    CREATE INDEX compartments_free ON compartments(size, low, number)
        WHERE order_pk IS NULL AND in_service = 1 AND jammed = 0;
    """,
    # 4: the time by which an unlocked door must be seen open (steady time, docs/time.md),
    # so that a restart resolves an unfinished intent on time instead of waiting afresh.
    """
    ALTER TABLE opening_doors ADD COLUMN confirm_by REAL;
    """,
    # 5: deleting an old order checks its openings through an index, not a walk of the
    # table (retention: a step of many orders stays a few milliseconds).
    """
    CREATE INDEX openings_by_order ON openings(order_pk);
    """,
)

# Event fields that hold a code in clear; events carrying them are sealed at rest.
SECRET_FIELDS = frozenset({"pickup_code", "pickup_qr", "deposit_code"})


# The audit trail, mirrored to the journal once it is durable: what happened, never what
# was only asked (and never a code: the audit holds none).
journal = logging.getLogger("locker.audit")
AuditLine = tuple[str, str, str | None, int | None, str]


def _journal(
    actor: str, action: str, order_id: str | None, compartment: int | None, detail: str
) -> None:
    where = "".join(
        (
            f" order {order_id}" if order_id else "",
            f" compartment {compartment}" if compartment is not None else "",
            f": {detail}" if detail else "",
        )
    )
    level = logging.WARNING if action in ALARM_ACTIONS else logging.INFO
    journal.log(level, "%s by %s%s", action, actor, where)


class StorageError(LockerError):
    """The database cannot be opened or is newer than this software."""


# SQLite's primary result codes that mean the medium, not the program: it is full
# (SQLITE_FULL), mounted read-only (SQLITE_READONLY, or SQLITE_IOERR_WRITE when the
# kernel turns a failing card read-only under an open file), or failing (SQLITE_IOERR,
# SQLITE_CANTOPEN for a -wal or -shm file it cannot create). Everything else (a
# constraint, a misuse, SQLITE_CORRUPT, SQLITE_BUSY from another process) is a defect or
# damage and keeps its own exception.
_FULL, _READONLY, _IOERR, _CANTOPEN = 13, 8, 10, 14
STORAGE_CODES = frozenset({_FULL, _READONLY, _IOERR, _CANTOPEN})
# The reserve: a file this large is kept beside the database and given back on the first
# failed commit, so the `fault` event and the work in flight (a door reading, a pickup's
# intent) can still commit on a full medium. WAL frames are 4 KiB pages; a door reading
# or a pickup takes a few dozen KiB, so 2 MiB carries a long outage's essential commits.
RESERVE_BYTES = 2 * 1024 * 1024
RESERVE_SUFFIX = ".reserve"
# Free space a probe must find beside the reserve before the fault clears.
MIN_HEADROOM = 1024 * 1024
PROBE_KEY = "storage_probe"


def is_storage_error(exc: BaseException) -> bool:
    """Whether `exc` says the data medium cannot take a commit (full, read-only, failing)."""
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in STORAGE_CODES


class StorageFull(CommandError):
    """A change could not be committed because of the medium: nothing of it happened.

    A `CommandError` with the contract's `STORAGE_FULL`, so every front end answers it
    like any refusal. `released`: this failure gave the reserve back, so the caller may
    run its work once more (the reserve's space is there for exactly that)."""

    def __init__(self, message: str, released: bool = False) -> None:
        super().__init__(ErrorCode.STORAGE_FULL, message)
        self.released = released


@dataclass(frozen=True)
class StorageFault:
    """Commits failed on the data medium and have not been seen to work since."""

    kind: str  # "full", "read_only" or "io_error"
    detail: str  # SQLite's own words
    since: float  # time.monotonic() of the first failure


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    event_id: str
    type: str
    occurred_at: float
    fields: dict[str, Any]

    def payload(self, locker_id: str) -> dict[str, Any]:
        """The event as the contract publishes it: the envelope, then its own fields."""
        return {
            "event_id": self.event_id,
            "seq": self.seq,
            "type": self.type,
            "locker_id": locker_id,
            "occurred_at": rfc3339(self.occurred_at),
            **self.fields,
        }


class Transaction:
    """A handle on the open transaction: queries, events, audit, after-commit work."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.db = store.db

    def q(self, sql: str, params: tuple[Any, ...] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(sql, params).fetchone()
        return row

    def emit(self, type_: str, fields: Mapping[str, Any], at: float) -> int:
        """Append an event to the outbox in this transaction; returns its `seq`."""
        payload = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
        sealed = bool(SECRET_FIELDS.intersection(fields))
        blob = self._store.codebook.seal(payload) if sealed else payload
        cur = self.db.execute(
            "INSERT INTO outbox (event_id, type, occurred_at, sealed, fields) VALUES (?,?,?,?,?)",
            (str(uuid.uuid4()), type_, at, int(sealed), blob),
        )
        seq = cur.lastrowid
        assert seq is not None
        self._store.pending_events.append(type_)
        return seq

    def audit(
        self,
        at: float,
        actor: str,
        action: str,
        order_id: str | None = None,
        compartment: int | None = None,
        detail: str = "",
    ) -> None:
        self.db.execute(
            "INSERT INTO audit (at, actor, action, order_id, compartment, detail)"
            " VALUES (?,?,?,?,?,?)",
            (at, actor, action, order_id, compartment, detail),
        )
        self._store.pending_audit.append((actor, action, order_id, compartment, detail))

    def store_reply(self, command_id: str, name: str, reply: Mapping[str, Any], at: float) -> None:
        """Keep the reply to a command (sealed when it carries a code) for re-delivery."""
        payload = json.dumps(reply, separators=(",", ":"), sort_keys=True).encode()
        result = reply.get("result")
        sealed = isinstance(result, dict) and bool(SECRET_FIELDS.intersection(result))
        blob = self._store.codebook.seal(payload) if sealed else payload
        self.db.execute(
            "INSERT INTO commands (command_id, name, received_at, state, sealed, reply)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT(command_id) DO UPDATE SET"
            " state=excluded.state, sealed=excluded.sealed, reply=excluded.reply",
            (command_id, name, at, "done", int(sealed), blob),
        )

    def mark_pending(self, command_id: str, name: str, at: float) -> None:
        """Remember a command whose reply comes later (a remote open waits for the door)."""
        self.db.execute(
            "INSERT INTO commands (command_id, name, received_at, state) VALUES (?,?,?,?)",
            (command_id, name, at, "pending"),
        )

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run `fn` once the outermost transaction has committed (never if it rolls back)."""
        self._store.after.append(fn)


class Store:
    """The SQLite database of one locker."""

    def __init__(
        self,
        path: Path,
        codebook: CodeBook,
        hub: Events | None = None,
        locker_id: str | None = None,
    ) -> None:
        """`hub`: the locker's events, told of each commit that changed something;
        `locker_id`: whose database this must be (recorded the first time)."""
        self.path = path
        self.codebook = codebook
        self.hub = hub if hub is not None else Events()
        if not path.exists():
            # Created private before SQLite opens it: it holds sealed codes and hashes
            # (its -wal and -shm files take the same mode).
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open database: {exc}") from exc
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        # Deleted rows (sealed events once published) are overwritten, not left in free pages.
        self.db.execute("PRAGMA secure_delete=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        self._depth = 0
        self.reserve_path = path.with_name(path.name + RESERVE_SUFFIX)
        self.reserve_bytes = 0  # none until keep_reserve() (lockerd's service keeps one)
        # Set by the first commit the medium refused, cleared by a probe that commits
        # with room to spare (probe()); the service reports both as `fault` events.
        self.fault: StorageFault | None = None
        self.commits = 0  # transactions that changed something, as subscribers hear of them
        self.after: list[Callable[[], None]] = []
        self.pending_events: list[str] = []
        self.pending_audit: list[AuditLine] = []
        self._migrate()
        if locker_id is not None:
            self._bind(locker_id)
        # This database's generation: a standby that takes over serves one higher, and
        # every event and status carries it so the platform can tell the two apart.
        self.epoch = int(self._meta(EPOCH) or 1)

    def close(self) -> None:
        self.db.close()

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def mark_fenced(self, by_epoch: int, at: float) -> None:
        """Record that the controller of epoch `by_epoch` took this locker over at `at`."""
        with self.transaction(notify=False) as tx:
            for key, value in ((FENCED_BY, str(by_epoch)), (FENCED_AT, repr(at))):
                tx.q(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (key, value),
                )

    def fenced_by(self) -> int | None:
        """The epoch of the controller that took this locker over, if one did."""
        value = self._meta(FENCED_BY)
        return None if value is None else int(value)

    def _bind(self, locker_id: str) -> None:
        """Record whose data this is, or refuse another locker's (a restored or moved file)."""
        known = self._meta(LOCKER_ID)
        if known is None:
            with self.transaction(notify=False) as tx:
                tx.q("INSERT INTO meta (key, value) VALUES (?, ?)", (LOCKER_ID, locker_id))
        elif known != locker_id:
            raise StorageError(
                f"{self.path} holds the data of locker {known}, not of {locker_id}:"
                " check [locker] id, or restore this locker's own backup"
            )

    def _migrate(self) -> None:
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path}: database schema {version} is newer than this software "
                f"({SCHEMA_VERSION}); install the newer release or restore a backup"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            log.info("migrating database %s to schema %d", self.path, target)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={target}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def read(self) -> AbstractContextManager[Transaction]:
        """A transaction for reading only: commit subscribers are not told of it."""
        return self.transaction(notify=False)

    @contextmanager
    def transaction(self, notify: bool = True) -> Iterator[Transaction]:
        """A transaction, or a savepoint inside the one already open."""
        tx = Transaction(self)
        if self._depth:
            name = f"sp{self._depth}"
            self.db.execute(f"SAVEPOINT {name}")
            self._depth += 1
            # What the savepoint adds to the follow-ups goes with it if it rolls back:
            # a refused step must leave no unlock, event or journal line behind.
            marks = (len(self.after), len(self.pending_events), len(self.pending_audit))
            try:
                yield tx
            except BaseException as exc:
                try:
                    self.db.execute(f"ROLLBACK TO {name}")
                    self.db.execute(f"RELEASE {name}")
                except sqlite3.Error as undo:
                    # The outer transaction is rolled back whole when this reaches it.
                    log.error("rollback to savepoint %s failed: %s", name, undo)
                del self.after[marks[0] :]
                del self.pending_events[marks[1] :]
                del self.pending_audit[marks[2] :]
                if is_storage_error(exc):
                    raise self._storage_failed(exc) from exc
                raise
            finally:
                self._depth -= 1
            try:
                self.db.execute(f"RELEASE {name}")
            except sqlite3.Error as exc:
                if is_storage_error(exc):
                    raise self._storage_failed(exc) from exc
                raise
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        changes = self.db.total_changes
        try:
            yield tx
            # COMMIT belongs inside: when it fails (a full or read-only medium, an I/O
            # error) the change is not durable, so its after-commit work (an unlock
            # above all) must be dropped with it, never left for the next transaction.
            self.db.execute("COMMIT")
        except BaseException as exc:
            self._abort()
            if is_storage_error(exc):
                raise self._storage_failed(exc) from exc
            raise
        finally:
            self._depth = 0
        after, self.after = self.after, []
        events, self.pending_events = self.pending_events, []
        for line in self.pending_audit:
            _journal(*line)
        self.pending_audit.clear()
        # The change is durable now; every follow-up runs even if one of them fails
        # (one board's error must not keep the next compartment's unlock from going out).
        # Subscribers hear of transactions that changed something (not of timers that
        # found nothing due, nor of reads).
        follow_ups = after
        if (notify and self.db.total_changes != changes) or events:
            # Counted before the follow-ups run: a reply sent by one of them knows the
            # commit that wrote it (and waits for a replica holding it).
            self.commits += 1
            committed = Committed(tuple(events))
            follow_ups.append(functools.partial(self.hub.committed.publish, committed))
        for fn in follow_ups:
            try:
                fn()
            except Exception:
                log.exception("after-commit work %r failed", fn)

    def _abort(self) -> None:
        """Undo the open transaction and forget what was to follow its commit."""
        self.after.clear()
        self.pending_events.clear()
        self.pending_audit.clear()
        if self.db.in_transaction:
            # A failed COMMIT may leave the transaction open (SQLITE_FULL) or already
            # rolled back (some I/O errors); a ROLLBACK that fails too changes nothing.
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.error("rollback failed: %s", exc)

    # -- a full or read-only medium ---------------------------------------------------

    def _storage_failed(self, exc: BaseException) -> StorageFull:
        """A commit the medium refused: record the fault, give the reserve back."""
        detail = str(exc)[:160]
        if self.fault is None:
            self.fault = StorageFault(self._kind(exc), detail, time.monotonic())
            log.error(
                "%s: cannot commit (%s); new work is refused until commits work again (%s)",
                self.path,
                detail,
                f"free space on {self.path.parent}"
                if self.fault.kind == "full"
                else "the medium is read-only or failing: replace it (docs/operations.md)",
            )
        # Only a full medium has anything to gain from the reserve: on a read-only one
        # the unlink fails on every commit tried (and would log on each).
        released = self._release_reserve() if self.fault.kind == "full" else False
        return StorageFull(
            f"the locker cannot store anything now ({detail}); try again later", released
        )

    def _kind(self, exc: BaseException) -> str:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == _FULL:
            return "full"
        try:
            read_only = bool(os.statvfs(self.path.parent).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        if not read_only:
            # An ext4 that turned itself read-only after an error (a dying card) is still
            # listed rw (emergency_ro): a write tried there says so with EROFS.
            try:
                fd = os.open(self.path.parent / ".locker-write-probe", os.O_WRONLY | os.O_CREAT)
            except OSError as probe:
                read_only = probe.errno == errno.EROFS
            else:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.path.parent / ".locker-write-probe")
        return "read_only" if read_only or code == _READONLY else "io_error"

    def _release_reserve(self) -> bool:
        """Delete the reserve file (its space is free at once); True if there was one."""
        try:
            os.unlink(self.reserve_path)
        except FileNotFoundError:
            return False
        except OSError as exc:  # a read-only medium: nothing to give back
            log.warning("cannot release the reserve %s: %s", self.reserve_path, exc)
            return False
        log.warning("released the %d KiB reserve %s", self.reserve_bytes // 1024, self.reserve_path)
        return True

    def keep_reserve(self, size: int = RESERVE_BYTES) -> bool:
        """Hold a preallocated file of `size` bytes beside the database (created when
        missing); False when the medium has no room for it now."""
        self.reserve_bytes = size
        if size <= 0:
            return False
        try:
            if self.reserve_path.stat().st_size >= size:
                return True
        except FileNotFoundError:
            pass
        except OSError:
            return False
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("cannot create the reserve %s: %s", self.reserve_path, exc)
            return False
        try:
            # Blocks really allocated (not a sparse file): deleting it frees them.
            os.posix_fallocate(fd, 0, size)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.ENOSPC, errno.EROFS, errno.EIO):
                log.warning("cannot allocate the reserve %s: %s", self.reserve_path, exc)
            # A part-made reserve would hold space without being a reserve.
            with contextlib.suppress(OSError):
                os.unlink(self.reserve_path)
            return False
        os.close(fd)
        return True

    def free_bytes(self) -> int | None:
        """Space left for this database on its medium (None if it cannot be read)."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def probe(self) -> bool:
        """After a fault: commit a probe row and hold the reserve again, with as much free
        again beside it. True (the fault cleared) when all of that worked."""
        if self.fault is None:
            return True
        try:
            with self.transaction(notify=False) as tx:
                tx.q(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (PROBE_KEY, repr(time.time())),
                )
        except StorageFull:
            return False
        headroom = max(self.reserve_bytes, MIN_HEADROOM)
        if self.reserve_bytes and not self.keep_reserve(self.reserve_bytes):
            return False
        free = self.free_bytes()
        if free is not None and free < headroom:
            # Commits go on the reserve's own space: the medium is still as good as full.
            return False
        log.warning("%s: commits work again (the storage fault cleared)", self.path)
        self.fault = None
        return True

    # -- reading the outbox (the MQTT pump and tools) --------------------------------

    def events(self, after_seq: int = 0, limit: int = 100) -> list[StoredEvent]:
        rows = self.db.execute(
            "SELECT seq, event_id, type, occurred_at, sealed, fields FROM outbox"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        out = []
        for row in rows:
            raw = bytes(row["fields"])
            if row["sealed"]:
                raw = self.codebook.unseal(raw)
            out.append(
                StoredEvent(
                    row["seq"], row["event_id"], row["type"], row["occurred_at"], json.loads(raw)
                )
            )
        return out

    def delete_events(self, seqs: list[int]) -> None:
        """Forget events the broker acknowledged (PUBACK), in one transaction. Nothing a
        screen or the platform's `state` shows changes: commit subscribers are not told."""
        with self.transaction(notify=False) as tx:
            tx.db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def stored_reply(self, command_id: str) -> tuple[str, dict[str, Any] | None] | None:
        """(state, reply) of a command seen before, or None for a new one."""
        row = self.db.execute(
            "SELECT state, sealed, reply FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
        if row is None:
            return None
        if row["reply"] is None:
            return row["state"], None
        raw = bytes(row["reply"])
        if row["sealed"]:
            raw = self.codebook.unseal(raw)
        reply: dict[str, Any] = json.loads(raw)
        return row["state"], reply

    def prune_replies(self, older_than: float) -> int:
        """Forget stored replies received before `older_than` (epoch seconds)."""
        with self.transaction() as tx:
            cur = tx.q("DELETE FROM commands WHERE received_at < ? AND state='done'", (older_than,))
            return cur.rowcount

    def audit_entries(self, limit: int, actions: tuple[str, ...] | None = None) -> list[AuditEntry]:
        """The newest `limit` audit entries (only `actions`, if given), newest first."""
        params: tuple[str, ...]
        where, params = "", ()
        if actions is not None:
            where, params = f" WHERE action IN ({','.join('?' * len(actions))})", actions
        rows = self.db.execute(
            "SELECT at, actor, action, order_id, compartment, detail FROM audit"
            f"{where} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [AuditEntry(**r) for r in rows]

    def outbox_depth(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def last_seq(self) -> int:
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        return int(row[0]) if row else 0
