"""Copies of the database a technician can trust: backups, checks, restores, promotions.

A backup is taken online (SQLite's backup API, on a read connection of its own) into a
temporary file, flushed, renamed, then checked whole; each one is logged in
`{data_dir}/backups.log` (one JSON line a copy) so that a start refused for a damaged
database can name the newest good copy. A restore or a promotion installs a copy the
same careful way (copied beside the database, flushed, renamed over it) and only while
no lockerd holds the data directory: it takes the data directory's lock itself for the
whole step, so no lockerd can start half way. The database it replaces is kept aside,
never deleted, and its -wal and -shm go with it: an old WAL beside a new file would be
replayed into it and corrupt it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from locker.clock import rfc3339
from locker.config import Config
from locker.dbfile import FileFacts, check_file, loaded_orders, quick_check, stamp_epoch
from locker.errors import LockerError
from locker.instance import LOCK_NAME, AlreadyRunning, InstanceLock
from locker.replica import REPLICA_NAME, recover_replica, snapshot

log = logging.getLogger(__name__)

DB_NAME = "locker.db"
BACKUPS_LOG = "backups.log"
START_HINT = "start lockerd: systemctl start lockerd"


class NotInstalled(LockerError):
    """A restore or promotion refused; the database in the data directory is untouched."""


@dataclass(frozen=True)
class Verdict:
    """One file looked at: its facts when SQLite could read it, else why not."""

    path: Path
    facts: FileFacts | None
    problem: str  # "" when SQLite read it (facts.integrity still says whether it is whole)

    @property
    def ok(self) -> bool:
        return self.facts is not None and self.facts.ok

    def as_dict(self) -> dict[str, Any]:
        f = self.facts
        return {
            "path": str(self.path),
            "ok": self.ok,
            "integrity": f.integrity if f else self.problem,
            "schema": f.schema if f else None,
            "locker_id": f.locker_id if f else None,
            "epoch": f.epoch if f else None,
            "last_seq": f.last_seq if f else None,
            "newest_change": _when(f.newest_change) if f else None,
            "size": self.path.stat().st_size if self.path.is_file() else None,
        }


def _when(ts: float | None) -> str | None:
    return None if ts is None else rfc3339(ts)


def verify(path: Path) -> Verdict:
    """Check a database file whole (every page) and read its facts; never raises for a
    file that is damaged, missing or no database: the verdict says so."""
    recover_replica(path)  # a patch a stop left beside a replica: completed before judging
    try:
        return Verdict(path, check_file(path), "")
    except FileNotFoundError:
        return Verdict(path, None, "no such file")
    except (sqlite3.Error, OSError) as exc:
        return Verdict(path, None, f"SQLite cannot read it: {exc}")


def describe(v: Verdict) -> str:
    """A verdict as sentences for a technician."""
    f = v.facts
    if f is None:
        return f"{v.path}: NOT a usable database ({v.problem})"
    if not f.ok:
        return f"{v.path}: DAMAGED ({f.integrity}); do not restore it"
    newest = _when(f.newest_change) or "never"
    return (
        f"{v.path}: whole (integrity ok), schema {f.schema}\n"
        f"locker {f.locker_id or 'unknown'}, epoch {f.epoch}, last event seq {f.last_seq},"
        f" newest change {newest}"
    )


def _newer_key(f: FileFacts) -> tuple[int, int, float]:
    return (f.epoch, f.last_seq, f.newest_change or 0.0)


def older_than(copy: FileFacts, current: FileFacts) -> str:
    """Why `copy` would take the locker back in time from `current`, or "" if it does not."""
    if copy.epoch < current.epoch:
        return f"its epoch {copy.epoch} is lower than the database's {current.epoch}"
    if copy.last_seq < current.last_seq:
        return f"it ends at event seq {copy.last_seq}, the database at {current.last_seq}"
    if (copy.newest_change or 0.0) < (current.newest_change or 0.0):
        return (
            f"its newest change ({_when(copy.newest_change) or 'none'}) is older than"
            f" the database's ({_when(current.newest_change)})"
        )
    return ""


# -- backups ---------------------------------------------------------------------------


def backup_target(dest: Path, locker_id: str, now: float) -> Path:
    """The file a backup to `dest` writes: `dest` itself, or in a directory a new file
    named for the locker and the UTC time."""
    if not dest.is_dir():
        return dest
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    target = dest / f"locker-{locker_id}-{stamp}.db"
    n = 2
    while target.exists():  # two backups in one second
        target = dest / f"locker-{locker_id}-{stamp}-{n}.db"
        n += 1
    return target


def check_backup_target(dest: Path, data_dir: Path) -> None:
    """Refuse a destination that would overwrite a file or sit among lockerd's own files
    (lockerd writes it, maybe as root: it must not clobber anything)."""
    if not dest.is_absolute():
        raise LockerError(f"{dest}: give an absolute path")
    if dest.is_dir():
        if dest.resolve() == data_dir.resolve():
            raise LockerError(
                f"{dest} is lockerd's data directory: a backup belongs on another medium"
                " (or at least in a folder of its own)"
            )
        return
    if dest.exists() or dest.is_symlink():
        raise LockerError(f"{dest} exists; give a new file name or a directory")
    if not dest.parent.is_dir():
        raise LockerError(f"{dest.parent}: no such directory")
    if dest.parent.resolve() == data_dir.resolve():
        raise LockerError(
            f"{dest.parent} is lockerd's data directory: a backup belongs on another medium"
            " (or at least in a folder of its own)"
        )


def make_backup(source: Path, dest: Path, data_dir: Path, locker_id: str, now: float) -> Verdict:
    """Copy the live database `source` to `dest` (a file, or a directory for a named
    file), consistently and atomically, check the copy whole and log it. Runs off the
    loop: it reads through a connection of its own, so lockerd's writes go on."""
    target = backup_target(dest, locker_id, now)
    check_backup_target(target, data_dir)
    try:
        snapshot(source, target)
    except (OSError, sqlite3.Error) as exc:
        target.with_name(target.name + ".tmp").unlink(missing_ok=True)
        raise LockerError(f"backup to {target} failed: {exc}") from exc
    verdict = verify(target)
    if not verdict.ok:
        # A copy that does not check is no backup: do not leave it to be trusted later.
        target.unlink(missing_ok=True)
        raise LockerError(f"backup to {target} failed its check: {verdict.problem or 'damaged'}")
    try:
        _log_backup(data_dir, verdict, now)
    except OSError as exc:  # the copy is good all the same; only the start-up hint misses it
        log.warning("backup %s made but not logged in %s: %s", target, BACKUPS_LOG, exc)
    log.info("backup written to %s", target)
    return verdict


def _log_backup(data_dir: Path, verdict: Verdict, now: float) -> None:
    entry = {"at": rfc3339(now), **verdict.as_dict()}
    fd = os.open(data_dir / BACKUPS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, json.dumps(entry, separators=(",", ":")).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def logged_backups(data_dir: Path) -> list[Path]:
    """The backups the log names, newest first (whether each still exists is not checked)."""
    try:
        lines = (data_dir / BACKUPS_LOG).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    paths: list[Path] = []
    for line in reversed(lines):
        try:
            path = json.loads(line)["path"]
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a power loss: the others still count
        if isinstance(path, str) and Path(path) not in paths:
            paths.append(Path(path))
    return paths


class BackupJobs:
    """Backups running in threads of their own, so the loop never waits on a slow medium:
    `start()` (on the loop) returns a token at once, `result()` says how it went."""

    def __init__(self) -> None:
        self._jobs: dict[str, Future[Verdict]] = {}
        self._lock = threading.Lock()

    def start(self, token: str, job: Any) -> None:
        """Run `job()` (returning a Verdict) in a thread; refused while another runs."""
        with self._lock:
            if any(not f.done() for f in self._jobs.values()):
                raise LockerError("a backup is being made already; wait for it to finish")
            # Finished ones nobody asked about: forgotten, the log keeps them.
            self._jobs = {t: f for t, f in self._jobs.items() if not f.done()}
            future: Future[Verdict] = Future()
            self._jobs[token] = future

        def run() -> None:
            try:
                future.set_result(job())
            except Exception as exc:  # handed to whoever asks, not lost in the thread
                future.set_exception(exc)

        threading.Thread(target=run, name="backup", daemon=True).start()

    def result(self, token: str) -> Verdict | None:
        """The finished backup's verdict, None while it runs; LockerError when it failed
        or the token is unknown."""
        with self._lock:
            future = self._jobs.get(token)
        if future is None:
            raise LockerError("no such backup (it finished and was reported already?)")
        if not future.done():
            return None
        with self._lock:
            self._jobs.pop(token, None)
        exc = future.exception()
        if exc is not None:
            raise exc if isinstance(exc, LockerError) else LockerError(f"backup failed: {exc}")
        return future.result()


# -- installing a copy -----------------------------------------------------------------


@contextmanager
def data_dir_held(data_dir: Path) -> Iterator[None]:
    """Hold the data directory as lockerd would, for a step that replaces its database:
    refused while a lockerd runs there, and no lockerd can start until it is done."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = not (data_dir / "lockerd.lock").exists()
        held = InstanceLock(data_dir, holder="lockerctl")
    except AlreadyRunning:
        # lockerd, or the standby's receiver still taking copies in: the lock names it.
        pid, _, holder = (data_dir / LOCK_NAME).read_text().strip().partition(" ")
        holder = holder or "lockerd"
        raise NotInstalled(
            f"{holder} is running on {data_dir} (pid {pid or 'unknown'}): stop it first"
            f" (systemctl stop {holder}); a database in use is never replaced"
        ) from None
    except OSError as exc:
        raise NotInstalled(f"data directory {data_dir}: {exc.strerror or exc}") from None
    try:
        if fresh:
            _give_to_owner(held.path, data_dir)
        yield
    finally:
        held.release()


def _give_to_owner(path: Path, data_dir: Path) -> None:
    """Run as root, what we create in the data directory goes to its owner (the user
    lockerd runs as), or lockerd could not open it."""
    if os.geteuid() == 0:
        st = data_dir.stat()
        os.chown(path, st.st_uid, st.st_gid)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _require_key(config: Config) -> None:
    # Codes are kept as keyed hashes: without this controller holding the same key, every
    # code in the copy is dead, and lockerd would make a new key at start without a word.
    if not config.key_path.is_file():
        raise NotInstalled(
            f"no code key at {config.key_path}: copy locker.key from the old controller's"
            f" data directory to {config.key_path} (mode 0600, owned by the user lockerd"
            " runs as) first; without it no code in this database can be checked"
        )


def _check_copy(v: Verdict, locker_id: str) -> FileFacts:
    if v.facts is None:
        raise NotInstalled(f"{v.path}: not a usable database ({v.problem}); not installed")
    if not v.facts.ok:
        raise NotInstalled(f"{v.path}: damaged ({v.facts.integrity}); not installed")
    if v.facts.locker_id != locker_id:
        raise NotInstalled(
            f"{v.path} holds the data of locker {v.facts.locker_id or 'unknown'}, not of"
            f" {locker_id} ([locker] id); not installed"
        )
    return v.facts


def _replaced(current: Verdict, copy: FileFacts, force: bool, what: str) -> None:
    """Refuse to take the locker back in time, unless forced."""
    if current.facts is None or not current.facts.ok or force:
        return
    why = older_than(copy, current.facts)
    if why:
        raise NotInstalled(
            f"{what} is older than {current.path}: {why}. Installing it would lose what"
            " happened since; add --force if that is what you want"
        )


@dataclass(frozen=True)
class Installed:
    """What a restore or promotion put in service, and what it kept aside."""

    source: Path
    database: Path
    facts: FileFacts
    kept: Path | None  # the replaced database, kept aside (None: there was none)
    old_epoch: int
    loaded: int | None

    def as_dict(self) -> dict[str, Any]:
        f = self.facts
        return {
            "source": str(self.source),
            "database": str(self.database),
            "kept": str(self.kept) if self.kept else None,
            "locker_id": f.locker_id,
            "old_epoch": self.old_epoch,
            "epoch": f.epoch,
            "last_seq": f.last_seq,
            "newest_change": _when(f.newest_change),
            "loaded_orders": self.loaded,
        }


def _install(
    source: Path, data_dir: Path, locker_id: str, now: float, epoch: int | None = None
) -> tuple[Path | None, FileFacts]:
    """Copy `source` beside the database, stamp `epoch` on the copy if given, check the
    copy whole, flush it, move the current database (and its -wal, -shm) aside, rename
    the copy into place. Returns where the replaced database was kept, and the facts of
    what was installed."""
    database = data_dir / DB_NAME
    tmp = data_dir / f".{DB_NAME}.installing"
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        with source.open("rb") as src, tmp.open("r+b") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if epoch is not None:
            stamp_epoch(tmp, epoch)
        # What goes in service is what was checked: the source may have changed since.
        facts = _check_copy(verify(tmp), locker_id)
        _fsync(tmp)
        _give_to_owner(tmp, data_dir)
        kept: Path | None = None
        if database.exists():
            stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = data_dir / f"{DB_NAME}.replaced-{stamp}"
            n = 2
            while kept.exists():  # two installs in one second: never overwrite a kept one
                kept = data_dir / f"{DB_NAME}.replaced-{stamp}-{n}"
                n += 1
            os.replace(database, kept)
        # The replaced database's WAL goes with it (it is part of it); one left here would
        # be replayed into the new file at its first open and corrupt it.
        for suffix in ("-wal", "-shm"):
            old = data_dir / (DB_NAME + suffix)
            if old.exists():
                if kept is not None and suffix == "-wal" and old.stat().st_size > 0:
                    os.replace(old, kept.with_name(kept.name + suffix))
                else:
                    old.unlink()
        os.replace(tmp, database)
        _fsync(data_dir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return kept, facts


def restore(config: Config, path: Path, force: bool, now: float) -> Installed:
    """Put the backup `path` in service as this locker's database (lockerd stopped)."""
    data_dir = config.locker.data_dir
    copy = _check_copy(verify(path), config.locker.id)
    _require_key(config)
    with data_dir_held(data_dir):
        current = verify(data_dir / DB_NAME)
        _replaced(current, copy, force, str(path))
        kept, installed = _install(path, data_dir, config.locker.id, now)
    old_epoch = current.facts.epoch if current.facts else copy.epoch
    loaded = loaded_orders(data_dir / DB_NAME)
    return Installed(path, data_dir / DB_NAME, installed, kept, old_epoch, loaded)


def replica_copies(config: Config) -> list[Path]:
    """Where copies of the database arrive: the standby's replica directory, the
    [replica] directory (a second medium)."""
    found = [config.standby_replica_dir / REPLICA_NAME]
    if config.replica.directory:
        found.append(Path(config.replica.directory) / REPLICA_NAME)
    return found


def newest_good(paths: list[Path], locker_id: str) -> tuple[Verdict | None, list[Verdict]]:
    """The newest whole copy of this locker's data among `paths`, and every verdict."""
    unique = list(dict.fromkeys(p.absolute() for p in paths))
    verdicts = [verify(p) for p in unique if p.exists()]
    good = [v for v in verdicts if v.ok and v.facts and v.facts.locker_id == locker_id]
    best = max(good, key=lambda v: _newer_key(v.facts) if v.facts else (0, 0, 0.0), default=None)
    return best, verdicts


def _passed_over(v: Verdict, locker_id: str) -> str:
    if v.ok and v.facts and v.facts.locker_id != locker_id:
        return f"{v.path}: the data of locker {v.facts.locker_id or 'unknown'}, not of {locker_id}"
    return describe(v).replace("\n", ", ")


def promote(config: Config, force: bool, now: float) -> tuple[Installed, list[str]]:
    """On the spare controller: put the newest good replica in service, one epoch higher
    than anything it has served (lockerd stopped here)."""
    data_dir = config.locker.data_dir
    best, verdicts = newest_good(replica_copies(config), config.locker.id)
    if best is None or best.facts is None:
        looked = "; ".join(_passed_over(v, config.locker.id) for v in verdicts) or (
            ", ".join(str(p) for p in replica_copies(config)) + ": none there"
        )
        raise NotInstalled(f"no good copy of locker {config.locker.id} to promote ({looked})")
    copy = best.facts
    _require_key(config)
    with data_dir_held(data_dir):
        current = verify(data_dir / DB_NAME)
        _replaced(current, copy, force, str(best.path))
        served = current.facts.epoch if current.facts and current.facts.ok else 0
        epoch = max(copy.epoch, served) + 1
        kept, installed = _install(best.path, data_dir, config.locker.id, now, epoch=epoch)
    loaded = loaded_orders(data_dir / DB_NAME)
    others = [_passed_over(v, config.locker.id) for v in verdicts if v is not best]
    done = Installed(best.path, data_dir / DB_NAME, installed, kept, copy.epoch, loaded)
    return done, others


# -- the start-up check ----------------------------------------------------------------


def check_database_at_start(config: Config) -> None:
    """Refuse to serve a damaged database (LockerError naming the newest good copy and
    the command that restores it). A quick check: cheap on a healthy file. Call it with
    the data directory held and before the store opens the file."""
    database = config.locker.data_dir / DB_NAME
    if not database.is_file():
        return  # a first start: the store creates it
    try:
        verdict = quick_check(database)
    except sqlite3.OperationalError as exc:
        # Cannot open (permissions, a lock): not damage; the store says what it is.
        log.warning("%s: not checked at start: %s", database, exc)
        return
    except sqlite3.DatabaseError as exc:
        verdict = f"SQLite cannot read it: {exc}"
    if verdict == "ok":
        return
    raise LockerError(
        f"{database} is damaged ({verdict}); lockerd will not serve it. " + advice(config)
    )


def advice(config: Config) -> str:
    """What to do about a damaged database: the newest good copy and how to restore it."""
    paths = [*replica_copies(config), *logged_backups(config.locker.data_dir)]
    best, _ = newest_good(paths, config.locker.id)
    if best is None or best.facts is None:
        return (
            "No good copy was found (looked at "
            + ", ".join(str(p) for p in paths)
            + "): restore a backup from elsewhere with `lockerctl restore PATH`"
        )
    return (
        f"The newest good copy is {best.path} (newest change"
        f" {_when(best.facts.newest_change) or 'none'}, last event seq {best.facts.last_seq}):"
        f" restore it with `lockerctl restore {best.path}`, then {START_HINT}"
    )
