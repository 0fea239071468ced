"""A continuous copy of the database on a second medium, made off the loop.

The SD card is the part of a Raspberry Pi most likely to die, and with it every
loaded order's codes and every event the platform has not yet received. After
each commit the loop only marks the replica stale (`committed()`, no I/O); a
thread of its own then takes a consistent snapshot with SQLite's online backup
(its own read connection, so the loop's writes go on meanwhile), writes it to a
temporary file on the target, flushes it and renames it over the previous copy:
the target always holds one complete, consistent database, never a half-written
one. A slow or absent medium only makes the replica lag; it never delays a door.

Copies are at most `min_interval_s` apart, so a burst of commits costs one copy,
and a commit is on the replica within about a second.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from locker.dbfile import read_facts, self_contained

log = logging.getLogger(__name__)

REPLICA_NAME = "locker.db"
MAX_RETRY_S = 30.0


@dataclass(frozen=True)
class ReplicaStatus:
    """What the heartbeat and the maintenance screen say about the replica."""

    target: str
    ok: bool  # the last copy attempt succeeded
    lag_s: float  # how old the oldest commit not yet on the replica is (0: up to date)
    copied_at: float | None  # wall-clock time of the newest complete copy
    detail: str  # why the last attempt failed, or ""
    seq: int  # the highest event seq on the replica (events up to it may go out)
    # How many of the store's commits the replica holds (`Store.commits` counts them the
    # same way): a reply written by commit N may go out once this reaches N.
    commits: int = 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot(source: Path, target: Path) -> int:
    """Write a consistent copy of the database `source` to `target`, atomically; the
    highest event seq the copy holds."""
    tmp = target.with_name(target.name + ".tmp")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        # Created private: the copy holds sealed codes and code hashes like the original.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        dst = sqlite3.connect(str(tmp))
        try:
            src.backup(dst)
            self_contained(dst)
            last_seq = read_facts(dst)[3]
        finally:
            dst.close()
    finally:
        src.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    return last_seq


class Target(Protocol):
    """Where copies go: a directory on another medium, or a standby controller."""

    def __str__(self) -> str: ...

    def put(self, source: Path) -> int:
        """Make the target hold a consistent copy of the database `source`, and say the
        highest event seq in it; raise OSError (or sqlite3.Error) when it cannot, leaving
        its previous copy whole."""
        ...


class DirectoryTarget:
    """`directory/locker.db` on a second medium (a USB stick, a second card)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __str__(self) -> str:
        return str(self.directory)

    def put(self, source: Path) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        return snapshot(source, self.directory / REPLICA_NAME)


class ReplicaWriter:
    """Keeps a target's copy of the database `source` recent and consistent."""

    def __init__(
        self,
        source: Path,
        target: Target | Path,
        min_interval_s: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        store_commits: Callable[[], int] = lambda: 0,
    ) -> None:
        """`store_commits`: how many commits the store has made (`Store.commits`), read
        from this writer's thread before each copy."""
        self.source = source
        self.target: Target = DirectoryTarget(target) if isinstance(target, Path) else target
        self.min_interval_s = min_interval_s
        self._monotonic = monotonic
        self._wall = wall
        self._store_commits = store_commits
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stale_since: float | None = None  # the oldest commit not yet copied
        self._commits = 0  # counts commits, to tell whether one came during a copy
        self._ok = True
        self._detail = ""
        self._copied_at: float | None = None
        self._seq = 0
        self._copied_commits = 0
        self._thread = threading.Thread(target=self._run, name="replica", daemon=True)

    def start(self) -> None:
        self.committed()  # the first copy at start: the replica may be older than the data
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop after a last copy of what is committed (a clean stop leaves it current)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def committed(self) -> None:
        """A transaction committed (from the loop: no I/O, never blocks on the medium)."""
        with self._lock:
            self._commits += 1
            if self._stale_since is None:
                self._stale_since = self._monotonic()
        self._wake.set()

    def status(self) -> ReplicaStatus:
        with self._lock:
            stale = self._stale_since
            lag = 0.0 if stale is None else max(0.0, self._monotonic() - stale)
            return ReplicaStatus(
                str(self.target),
                self._ok,
                round(lag, 3),
                self._copied_at,
                self._detail,
                self._seq,
                self._copied_commits,
            )

    def _run(self) -> None:
        retry_s = self.min_interval_s
        while True:
            self._wake.wait()
            stopping = self._stop.is_set()
            with self._lock:
                self._wake.clear()
                stale = self._stale_since is not None
                commits = self._commits
            # Read before the copy starts: those commits are durable, so the copy holds them.
            store_commits = self._store_commits()
            started = self._monotonic()
            if stale:
                try:
                    seq = self.target.put(self.source)
                except (OSError, sqlite3.Error) as exc:
                    self._failed(str(exc))
                    if stopping:
                        return
                    # Keep trying, less often: an unplugged stick comes back.
                    retry_s = min(MAX_RETRY_S, retry_s * 2)
                    self._stop.wait(retry_s)
                    self._wake.set()
                    continue
                self._done(commits, started, seq, store_commits)
                retry_s = self.min_interval_s
            if stopping:
                return
            self._stop.wait(self.min_interval_s)  # a burst of commits costs one copy

    def _failed(self, detail: str) -> None:
        with self._lock:
            if self._ok:
                log.warning("replica %s: cannot copy the database: %s", self.target, detail)
            self._ok, self._detail = False, detail[:200]

    def _done(self, commits: int, started: float, seq: int, store_commits: int) -> None:
        with self._lock:
            self._seq = max(self._seq, seq)
            # Every commit the store had counted before this copy began is in it.
            self._copied_commits = max(self._copied_commits, store_commits)
            if not self._ok:
                log.info("replica %s: copying again, up to date", self.target)
            # A commit that came while copying may not be in this copy: still stale, counted
            # from the copy's start (its wake-up is already set for the next copy).
            self._stale_since = None if self._commits == commits else started
            self._ok, self._detail = True, ""
            self._copied_at = self._wall()
