"""A continuous copy of the database on a second medium, made off the loop.

The SD card is the part of a Raspberry Pi most likely to die, and with it every
loaded order's codes and every event the platform has not yet received. After
each commit the loop only marks the replica stale (`committed()`, no I/O); a
thread of its own then takes a consistent snapshot with SQLite's online backup
(its own read connection, so the loop's writes go on meanwhile), writes it to a
temporary file on the target, flushes it and renames it over the previous copy:
the target always holds one complete, consistent database, never a half-written
one. A slow or absent medium only makes the replica lag; it never delays a door.

Copies start at most once every `min_interval_s`, so a burst of commits costs one
copy, and a commit is on the replica within about a second: the wait is counted from
the previous copy's start, so a slow copy (a big database) is not followed by the
whole interval too.

Incremental copies. A whole copy of a 30 MB database after every burst of commits
costs seconds and wears a USB stick for nothing: most commits change a few pages.
So the snapshot is made into a scratch file (on a tmpfs: `scratch_dir()`), the
checksum of each of its pages compared with those of the copy the target last took,
and only the changed pages travel, as a `Patch`: the pages, the new file length and
the SHA-256 of the whole snapshot. The first copy, a target whose state is unknown
(a failure, a file changed behind the writer's back), a page size that changed or
a patch bigger than half the file go whole, as before.

A patch is applied through a redo log (`apply_patch`): written whole to
`locker.db.patch` and fsynced, then its pages written into `locker.db`, the file
cut to its length and fsynced, its whole SHA-256 checked against the primary's,
and only then the log deleted. A crash anywhere leaves either no log (the old or
the new copy, whole) or a complete log that `recover_replica` applies again
(applying is idempotent); a log torn while being written carries no valid trailer
and is dropped, the copy untouched. Anything that reads a replica calls
`recover_replica` first.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
import sqlite3
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from locker.dbfile import read_facts, self_contained

log = logging.getLogger(__name__)

REPLICA_NAME = "locker.db"
PATCH_SUFFIX = ".patch"  # the redo log beside the copy: `locker.db.patch`
MAX_RETRY_S = 30.0
PATCH_MAGIC = b"LKPATCH1"
# page size, new length, base length, new SHA-256, base SHA-256, page count
PATCH_HEAD = struct.Struct(">IQQ32s32sI")
PAGE_NO = struct.Struct(">I")
DIGEST_BYTES = 32
# A patch changing more than this share of the pages goes as a whole copy instead:
# renaming one new file is cheaper than rewriting most of the old one in place.
WHOLE_ABOVE = 0.5


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


def _backup_into(source: Path, path: Path) -> int:
    """SQLite's consistent online copy of `source` into the (private) file `path`, made
    self-contained (no WAL beside it); the highest event seq it holds."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(str(path))
        try:
            src.backup(dst)
            self_contained(dst)
            return read_facts(dst)[3]
        finally:
            dst.close()
    finally:
        src.close()


def snapshot(source: Path, target: Path) -> int:
    """Write a consistent copy of the database `source` to `target`, atomically; the
    highest event seq the copy holds."""
    tmp = target.with_name(target.name + ".tmp")
    # Created private: the copy holds sealed codes and code hashes like the original.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    last_seq = _backup_into(source, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    return last_seq


class PatchError(OSError):
    """A patch that is torn, malformed, or does not produce the file it promises."""


def page_size_of(header: bytes) -> int:
    """The page size an SQLite file's header records (bytes 16-17; 1 means 65536)."""
    if len(header) < 18:
        raise PatchError("not an SQLite database: no header")
    size = int.from_bytes(header[16:18], "big")
    return _checked_page_size(65536 if size == 1 else size)


def _checked_page_size(size: int) -> int:
    if size < 512 or size > 65536 or size & (size - 1):
        raise PatchError(f"page size {size} is not a power of two from 512 to 65536")
    return size


@dataclass(frozen=True)
class Image:
    """A consistent snapshot as pages: what a target holds, or is about to."""

    page_size: int
    hashes: tuple[bytes, ...]  # `page_checksum` of each page, in order
    length: int
    sha256: bytes  # of the whole file


def page_checksum(page: bytes | memoryview) -> bytes:
    """What tells a changed page from an unchanged one: its CRC-32.

    Not a digest, on purpose: a Pi without SHA instructions hashes about 100 MB/s, so a
    SHA-256 of each page would double the cost of a 30 MB snapshot, where CRC-32 runs
    at memory speed. A collision can only leave a changed page unsent (one in 2^32 per
    changed page); the whole file's SHA-256 then does not match on the receiving side,
    the patch is refused and a whole copy follows. Nothing is trusted to it."""
    return zlib.crc32(page).to_bytes(4, "big")


def image_of(path: Path) -> Image:
    """Checksum a database file page by page, and hash it whole."""
    data = path.read_bytes()  # on a tmpfs, once: one read beats a read per page
    size = page_size_of(data[:100])
    view = memoryview(data)
    hashes = tuple(page_checksum(view[at : at + size]) for at in range(0, len(data), size))
    return Image(size, hashes, size * len(hashes), hashlib.sha256(data).digest())


def changed_pages(new: Image, held: Image | None) -> list[int] | None:
    """The pages of `new` that differ from the copy `held`; None when a whole copy is due
    (nothing held, another page size, or most of the file changed)."""
    if held is None or held.page_size != new.page_size:
        return None
    old = held.hashes
    pages = [n for n, h in enumerate(new.hashes) if n >= len(old) or old[n] != h]
    if len(pages) > WHOLE_ABOVE * max(1, len(new.hashes)):
        return None
    return pages


@dataclass(frozen=True)
class Patch:
    """Changed pages of a database file, what it grows or shrinks to, and its digest."""

    page_size: int
    length: int  # the file's length once patched
    base_length: int  # the length of the copy it applies to
    sha256: bytes  # of the whole file once patched
    base_sha256: bytes  # of the copy it applies to
    pages: tuple[tuple[int, bytes], ...]  # (page number from 0, its bytes)


def encode_patch(new: Image, source: Path, pages: Sequence[int], base: Image) -> bytes:
    """The patch turning the copy `base` into `new`, the pages read from `source` (the
    snapshot `new` was hashed from). It ends with the SHA-256 of all before it, so a
    redo log torn by a crash is told from a complete one."""
    parts = [PATCH_MAGIC]
    parts.append(
        PATCH_HEAD.pack(new.page_size, new.length, base.length, new.sha256, base.sha256, len(pages))
    )
    with source.open("rb") as f:
        for n in pages:
            f.seek(n * new.page_size)
            page = f.read(new.page_size)
            if len(page) != new.page_size:
                raise PatchError(f"{source} changed while being patched")
            parts += [PAGE_NO.pack(n), page]
    body = b"".join(parts)
    return body + hashlib.sha256(body).digest()


def decode_patch(data: bytes) -> Patch:
    """A patch checked whole (its trailer, its sizes); PatchError when it is not one."""
    fixed = len(PATCH_MAGIC) + PATCH_HEAD.size
    if len(data) < fixed + DIGEST_BYTES or not data.startswith(PATCH_MAGIC):
        raise PatchError("not a patch")
    body, trailer = data[:-DIGEST_BYTES], data[-DIGEST_BYTES:]
    if not hmac.compare_digest(hashlib.sha256(body).digest(), trailer):
        raise PatchError("the patch is torn or altered (its checksum does not match)")
    size, length, base_length, digest, base_digest, count = PATCH_HEAD.unpack_from(
        body, len(PATCH_MAGIC)
    )
    _checked_page_size(size)
    if length % size or base_length % size or length == 0:
        raise PatchError("the patch's lengths are not whole pages")
    if len(body) != fixed + count * (PAGE_NO.size + size):
        raise PatchError("the patch's page count does not match its size")
    pages = []
    at = fixed
    for _ in range(count):
        (n,) = PAGE_NO.unpack_from(body, at)
        if n * size >= length:
            raise PatchError(f"page {n} is beyond the patched file's end")
        pages.append((n, body[at + PAGE_NO.size : at + PAGE_NO.size + size]))
        at += PAGE_NO.size + size
    return Patch(size, length, base_length, digest, base_digest, tuple(pages))


def patched(base: Path, patch: Patch) -> bytearray:
    """The bytes the file `base` becomes with `patch` applied, built in memory (to check
    it before writing it), read straight into place: a 50 MB copy is copied once."""
    result = bytearray(patch.length)
    with base.open("rb", buffering=0) as f:
        view = memoryview(result)
        while view and (got := f.readinto(view)):
            view = view[got:]
    for n, page in patch.pages:
        result[n * patch.page_size : (n + 1) * patch.page_size] = page
    return result


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


def patch_path(replica: Path) -> Path:
    return replica.with_name(replica.name + PATCH_SUFFIX)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


# SQLite's own locks on a rollback-journal database (its file format, "File Locking"):
# holding PENDING and the SHARED range for writing is its EXCLUSIVE lock.
PENDING_BYTE = 0x40000000
SHARED_FIRST, SHARED_SIZE = PENDING_BYTE + 2, 510
_FLOCK = "@hhqqi4x"  # struct flock: type, whence, start, len, pid (0 for an OFD lock)


def _exclusive(fd: int) -> None:
    """Hold SQLite's EXCLUSIVE lock on the copy while its pages change in place, so a
    reader (`lockerctl verify`, another thread's check) waits for the whole patch
    instead of reading half of it. An open-file-description lock: it conflicts with
    SQLite's locks in this process too, and goes with the descriptor's close."""
    setlkw = getattr(fcntl, "F_OFD_SETLKW", None)
    if setlkw is None:  # not Linux: no reader to keep out but SQLite's own
        return
    for start, length in ((PENDING_BYTE, 1), (SHARED_FIRST, SHARED_SIZE)):
        fcntl.fcntl(fd, setlkw, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, start, length, 0))


def _redo(replica: Path, patch: Patch) -> None:
    """Write the patch's pages into the copy, cut it to length, flush it (idempotent)."""
    fd = os.open(replica, os.O_RDWR)
    try:
        _exclusive(fd)
        for n, page in patch.pages:
            os.pwrite(fd, page, n * patch.page_size)
        os.ftruncate(fd, patch.length)
        os.fsync(fd)
    finally:
        os.close(fd)


def apply_patch(replica: Path, data: bytes, check: bool = True) -> Patch:
    """Apply the encoded patch `data` to the copy `replica` through its redo log.

    `check`: hash the patched file whole and compare with the primary's digest (a
    receiver that already proved the result in memory may skip it). A mismatch raises
    PatchError with the redo log removed (applying it again cannot help): the copy
    is then not a good one until a whole copy replaces it."""
    patch = decode_patch(data)
    log_file = patch_path(replica)
    _write_private(log_file, data)
    _fsync_dir(replica.parent)  # the log's name is durable before the copy changes
    _redo(replica, patch)
    if check and not hmac.compare_digest(file_sha256(replica), patch.sha256):
        log_file.unlink(missing_ok=True)
        raise PatchError(f"{replica} does not match the primary's snapshot once patched")
    # Not flushed: a log found again after a crash is this same patch, already applied,
    # and applying it again changes nothing.
    log_file.unlink()
    return patch


def recover_replica(replica: Path) -> str:
    """Finish what a crash interrupted on the copy `replica`: a complete redo log beside
    it is applied again (and removed), a torn one removed unapplied. Call it before
    reading a replica. What was done, for the log ("" when there was nothing to do);
    never raises for a bad log or an unreadable file: the copy's own check then says
    whether it is usable."""
    try:
        return _recover(replica)
    except OSError as exc:
        done = f"{patch_path(replica)}: cannot complete the patch left there: {exc}"
        log.warning("%s", done)
        return done


def _recover(replica: Path) -> str:
    log_file = patch_path(replica)
    try:
        data = log_file.read_bytes()
    except FileNotFoundError:
        return ""
    try:
        patch = decode_patch(data)
    except PatchError as exc:
        # Torn while being written: the copy was not touched yet, it is the old one.
        log_file.unlink(missing_ok=True)
        done = f"{log_file}: dropped an incomplete patch ({exc}); the copy is the previous one"
        log.warning("%s", done)
        return done
    if not replica.is_file():
        log_file.unlink(missing_ok=True)
        return f"{log_file}: dropped, no copy to apply it to"
    # Proven in memory before a byte is written: the copy is this patch's base, part or
    # all of it applied; a copy installed whole since (the log left by a failed write)
    # gives another digest and is left alone.
    if hmac.compare_digest(hashlib.sha256(patched(replica, patch)).digest(), patch.sha256):
        _redo(replica, patch)
        done = f"{replica}: completed the patch a stop interrupted"
    else:
        done = f"{log_file}: dropped, the copy beside it is not what it patches"
    log_file.unlink()
    _fsync_dir(replica.parent)
    log.warning("%s", done)
    return done


def install_whole(snapshot_file: Path, replica: Path) -> None:
    """Copy a finished snapshot to `replica` atomically (temporary file, fsync, rename)."""
    tmp = replica.with_name(replica.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with snapshot_file.open("rb") as src:
            while chunk := src.read(1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, replica)
    # A redo log left by a failed patch no longer applies: `recover_replica` would see so
    # and drop it, but it would also cost a read of the whole copy at the next start.
    patch_path(replica).unlink(missing_ok=True)
    _fsync_dir(replica.parent)


def scratch_dir() -> Path:
    """Where snapshots are made before they are compared and sent: a tmpfs, so a copy
    every half second does not wear the card (lockerd's runtime directory under
    systemd, else /dev/shm, else the system's temporary directory)."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / "replica"
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / f"locker-replica-{os.getuid()}"
    return Path(tempfile.gettempdir()) / f"locker-replica-{os.getuid()}"


@dataclass(frozen=True)
class Scratch:
    """A consistent snapshot in a private scratch file, hashed; delete it after use."""

    path: Path
    image: Image
    last_seq: int


def take_snapshot(source: Path, workdir: Path) -> Scratch:
    """A consistent, self-contained snapshot of `source` in a new file in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix="snapshot-", suffix=".db", dir=workdir)  # mode 0600
    os.close(fd)
    path = Path(name)
    try:
        last_seq = _backup_into(source, path)
        return Scratch(path, image_of(path), last_seq)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class PutInfo:
    """What the last put sent: for the status and to show that patches stay small."""

    whole: bool
    pages: int  # pages sent (all of them for a whole copy)
    bytes: int  # bytes written to the target's medium (the patch, or the whole file)


class Target(Protocol):
    """Where copies go: a directory on another medium, or a standby controller."""

    def __str__(self) -> str: ...

    def put(self, source: Path) -> int:
        """Make the target hold a consistent copy of the database `source`, and say the
        highest event seq in it; raise OSError (or sqlite3.Error) when it cannot, leaving
        its previous copy whole."""
        ...


class DirectoryTarget:
    """`directory/locker.db` on a second medium (a USB stick, a second card), patched in
    place with the pages that changed since the previous copy."""

    def __init__(self, directory: Path, workdir: Path | None = None) -> None:
        self.directory = directory
        self.workdir = workdir or scratch_dir()
        self.last_put: PutInfo | None = None
        # The copy this target wrote last, and the file's identity then: anything else
        # found there (replaced, touched by hand) gets a whole copy.
        self._held: Image | None = None
        self._stat: tuple[int, int, int] | None = None

    def __str__(self) -> str:
        return str(self.directory)

    def put(self, source: Path) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        replica = self.directory / REPLICA_NAME
        recover_replica(replica)
        scratch = take_snapshot(source, self.workdir)
        try:
            held = self._held if self._identity(replica) == self._stat else None
            self._held = None  # unknown until this put succeeds
            pages = changed_pages(scratch.image, held)
            if pages is not None and held is not None:
                data = encode_patch(scratch.image, scratch.path, pages, held)
                try:
                    apply_patch(replica, data)
                    self.last_put = PutInfo(False, len(pages), len(data))
                except PatchError as exc:
                    log.warning("replica %s: %s; copying it whole", self, exc)
                    pages = None
            if pages is None:
                install_whole(scratch.path, replica)
                count = len(scratch.image.hashes)
                self.last_put = PutInfo(True, count, scratch.image.length)
            self._held, self._stat = scratch.image, self._identity(replica)
        finally:
            scratch.path.unlink(missing_ok=True)
        return scratch.last_seq

    @staticmethod
    def _identity(path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns


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
            # A burst of commits costs one copy: the next starts an interval after this one.
            self._stop.wait(max(0.0, self.min_interval_s - (self._monotonic() - started)))

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
