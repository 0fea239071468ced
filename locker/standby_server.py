"""The standby controller's side of `locker/standby.py`'s protocol: `StandbyServer`
receives the serving controller's copies (whole or as patches), checks each before it
stores it, and says how fresh the copy is in `received.json` (`Received`).

What a copy must pass, and why the standby may refuse it, is in `locker/standby.py`'s
description of the protocol, which both sides share.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import logging
import os
import secrets
import socket
import sqlite3
import ssl
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from locker.dbfile import FileFacts, check_file, read_facts
from locker.replica import (
    REPLICA_NAME,
    PatchError,
    apply_patch,
    decode_patch,
    file_sha256,
    patched,
    recover_replica,
)
from locker.standby import (
    CHUNK,
    HANDSHAKE_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    INTEGRITY_EVERY,
    IO_TIMEOUT_S,
    MAC_BYTES,
    MAX_CONNECTIONS,
    MAX_LOCKER_ID,
    MAX_SNAPSHOT,
    NONCE_BYTES,
    PATCH_VERSION,
    RECEIVED_NAME,
    SQLITE_MAGIC,
    VERSION,
    Channel,
    Closed,
    StandbyError,
    client_mac,
    fsync_path,
    header_hex,
    header_int,
    server_mac,
)

# The log keeps the protocol's name: one logger for both sides of it.
log = logging.getLogger("locker.standby")


def _shutdown(sock: ssl.SSLSocket) -> None:
    # The plain socket's shutdown: it wakes a thread blocked reading this connection,
    # where SSLSocket.shutdown would also pull the TLS state from under that thread.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _unpack(rfile: IO[bytes], length: int, raw_length: int, out: IO[bytes]) -> bytes:
    """Read `length` zlib bytes into `out`; decompressed, they must be `raw_length` long."""
    unpacker = zlib.decompressobj()
    digest = hashlib.sha256()
    written = 0
    remaining = length
    while remaining:
        data = rfile.read(min(CHUNK, remaining))
        if not data:
            raise StandbyError("connection closed mid-snapshot")
        remaining -= len(data)
        while not unpacker.eof:
            # Bounded output per call: a small frame must not inflate beyond what it announced.
            chunk = unpacker.decompress(data, CHUNK)
            data = unpacker.unconsumed_tail
            written += len(chunk)
            if written > raw_length:
                raise StandbyError(f"snapshot inflates beyond its raw_length of {raw_length}")
            digest.update(chunk)
            out.write(chunk)
            if not chunk and not data:  # output still held inside zlib comes on the next call
                break
        if unpacker.eof and (data or remaining or unpacker.unused_data):
            raise StandbyError("bytes after the end of the zlib stream")
    if not unpacker.eof or written != raw_length:
        raise StandbyError("snapshot is not one whole zlib stream of raw_length bytes")
    return digest.digest()


def _check_database(path: Path) -> FileFacts:
    with path.open("rb") as f:
        head = f.read(100)
    if not head.startswith(SQLITE_MAGIC):
        raise StandbyError("snapshot is not an SQLite database")
    if head[18:20] != b"\x01\x01":
        # A WAL-mode file would need its -wal beside it: a copy must be self-contained.
        raise StandbyError("snapshot is not a self-contained (rollback journal) database")
    try:
        check = check_file(path)
    except sqlite3.Error as exc:
        raise StandbyError(f"snapshot is not a readable SQLite database: {exc}") from None
    if check.integrity != "ok":
        raise StandbyError(f"snapshot fails integrity_check: {check.integrity[:100]}")
    return check


@dataclass(frozen=True)
class Received:
    """The newest copy a standby stored: what `received.json` says about `locker.db`."""

    at: float  # wall-clock seconds when it was stored
    sender: str  # the primary's address (no port: it changes with every connection)
    locker_id: str
    seq: int  # the highest event seq in the copy
    epoch: int
    raw_length: int  # bytes of the database file
    newest_change: float | None  # epoch seconds of its newest audit entry, stage or command


def write_received(replica_dir: Path, received: Received) -> None:
    """Replace `received.json` atomically: a reader sees the previous one or this one."""
    path = replica_dir / RECEIVED_NAME
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(received), out, indent=1, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def read_received(replica_dir: Path) -> Received | None:
    """What `received.json` in `replica_dir` says, or None when there is none (or it is
    not one: the copy's own facts are then to be read from the copy)."""
    try:
        data = json.loads((replica_dir / RECEIVED_NAME).read_text())
        return Received(**data)
    except (OSError, ValueError, TypeError):
        return None


class StandbyServer:
    """The spare controller's side: receives snapshots from one primary at a time."""

    def __init__(
        self,
        bind_host: str,
        port: int,
        locker_id: str,
        secret: bytes,
        cert_file: Path,
        key_file: Path,
        replica_dir: Path,
        on_received: Callable[[Received], None] | None = None,
        accepts_patches: bool = True,
    ) -> None:
        """`on_received` is called from a connection's thread after each stored copy
        (after the primary was told), with what the copy holds. `accepts_patches`
        False: whole copies only (what a standby of the first release does)."""
        if not secret:
            raise ValueError("the standby's shared secret is empty")
        self.locker_id = locker_id
        self.on_received = on_received
        self._secret = secret
        self.replica_dir = replica_dir
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context.load_cert_chain(cert_file, key_file)
        replica_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in replica_dir.glob(".incoming-*"):  # left by a crash mid-receipt
            stale.unlink(missing_ok=True)
        self.accepts_patches = accepts_patches
        recover_replica(replica_dir / REPLICA_NAME)  # a patch a crash interrupted
        # The digest of the copy held is the base a patch must name (None: whole copy).
        self._epoch, self._digest = _held(replica_dir / REPLICA_NAME)
        self._unchecked = 0  # patches applied since the last full integrity check
        self._listener = socket.create_server((bind_host, port))
        self._listener.settimeout(0.2)  # how soon the accepting thread notices close()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[ssl.SSLSocket] = set()
        self._threads: list[threading.Thread] = []
        self._session: ssl.SSLSocket | None = None
        self._accepting = threading.Thread(target=self._accept, name="standby", daemon=True)
        self.last_received_at: float | None = None  # wall-clock time of the newest copy

    @property
    def alive(self) -> bool:
        """Started and still accepting connections (what the watchdog's ping vouches for)."""
        return self._accepting.is_alive() and not self._stop.is_set()

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def start(self) -> None:
        self._accepting.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._accepting.is_alive():
            self._accepting.join(timeout)
        self._listener.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            _shutdown(conn)
        for thread in threads:
            thread.join(timeout)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                log.warning("standby: cannot accept: %s", exc)
                self._stop.wait(0.5)
                continue
            peer = f"{address[0]}:{address[1]}"
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                crowded = len(self._threads) >= MAX_CONNECTIONS
            if crowded:
                log.warning("standby: refused %s: %d connections already", peer, MAX_CONNECTIONS)
                raw.close()
                continue
            try:
                raw.settimeout(HANDSHAKE_TIMEOUT_S)
                conn = self._context.wrap_socket(
                    raw, server_side=True, do_handshake_on_connect=False
                )
            except OSError as exc:
                log.warning("standby: dropped %s: %s", peer, exc)
                raw.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn, peer), daemon=True)
            with self._lock:
                self._conns.add(conn)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: ssl.SSLSocket, peer: str) -> None:
        channel = Channel(conn)
        try:
            conn.do_handshake()
            self._authenticate(channel, peer)
            kinds = ("snapshot", "patch") if self.accepts_patches else ("snapshot",)
            while not self._stop.is_set():
                conn.settimeout(IDLE_TIMEOUT_S)
                header = channel.expect(*kinds)
                conn.settimeout(IO_TIMEOUT_S)
                sender = peer.rpartition(":")[0]
                if header["type"] == "patch":
                    received = self._receive_patch(channel, header, sender)
                else:
                    received = self._receive(channel, header, sender)
                digest = header_hex(header, "sha256", MAC_BYTES).hex()  # checked by _receive
                channel.send({"type": "stored", "sha256": digest})
                self._check_when_due()
                if self.on_received is not None:
                    self.on_received(received)
        except Closed:
            log.debug("standby: %s hung up", peer)
        except StandbyError as exc:
            log.warning("standby: refused %s: %s", peer, exc)
            try:
                conn.settimeout(1.0)
                channel.send({"type": "error", "error": str(exc)})
            except (OSError, ValueError):
                pass  # it may be gone already; the refusal is in the log either way
        except Exception as exc:  # garbage or a lost peer must never take the standby down
            log.warning("standby: dropped %s: %s", peer, str(exc) or type(exc).__name__)
        finally:
            with self._lock:
                self._conns.discard(conn)
                if self._session is conn:
                    self._session = None
            channel.close()

    def _authenticate(self, channel: Channel, peer: str) -> None:
        nonce = secrets.token_bytes(NONCE_BYTES)
        hello = {"type": "hello", "version": VERSION, "nonce": nonce.hex()}
        if self.accepts_patches:
            hello["patch"] = PATCH_VERSION
        channel.send(hello)
        auth = channel.expect("auth")
        locker_id = auth.get("locker_id")
        if not isinstance(locker_id, str) or not 0 < len(locker_id) <= MAX_LOCKER_ID:
            raise StandbyError("locker_id is not a locker's id")
        theirs = header_hex(auth, "client_nonce", NONCE_BYTES)
        mac = header_hex(auth, "mac", MAC_BYTES)
        if locker_id != self.locker_id:
            raise StandbyError(f"locker_id {locker_id!r} is not {self.locker_id!r}, this standby's")
        if not hmac.compare_digest(mac, client_mac(self._secret, nonce, locker_id, theirs)):
            raise StandbyError("authentication failed: wrong secret")
        proof = server_mac(self._secret, theirs, nonce, locker_id)
        channel.send({"type": "auth_ok", "mac": proof.hex()})
        with self._lock:
            previous, self._session = self._session, channel.sock
        if previous is not None:
            # Most likely the same primary's half-open connection, from before it reconnected.
            log.info("standby: %s replaces the previous primary connection", peer)
            _shutdown(previous)
        log.info("standby: primary %s of locker %s authenticated", peer, locker_id)

    def _receive(self, channel: Channel, header: dict[str, Any], sender: str) -> Received:
        length = header_int(header, "length", MAX_SNAPSHOT)
        raw_length = header_int(header, "raw_length", MAX_SNAPSHOT)
        expected = header_hex(header, "sha256", MAC_BYTES)
        fd, name = tempfile.mkstemp(prefix=".incoming-", dir=self.replica_dir)  # mode 0600
        incoming = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest = _unpack(channel.rfile, length, raw_length, out)
            if not hmac.compare_digest(digest, expected):
                raise StandbyError("snapshot does not match its sha256")
            facts = _check_database(incoming)
            if facts.locker_id is not None and facts.locker_id != self.locker_id:
                raise StandbyError(f"snapshot holds locker {facts.locker_id!r}'s data")
            fsync_path(incoming)
            with self._lock:  # one primary at a time: a replaced connection installs nothing
                if self._session is not channel.sock:
                    raise StandbyError("a newer connection of the primary replaced this one")
                if facts.epoch < self._epoch:
                    raise StandbyError(
                        f"snapshot of epoch {facts.epoch} is older than the copy held (epoch"
                        f" {self._epoch}): its sender was replaced by a promoted controller"
                    )
                os.replace(incoming, self.replica_dir / REPLICA_NAME)
                fsync_path(self.replica_dir)
                self._epoch, self._digest, self._unchecked = facts.epoch, expected, 0
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
        self.last_received_at = time.time()
        return Received(
            self.last_received_at,
            sender,
            self.locker_id,
            facts.last_seq,
            facts.epoch,
            raw_length,
            facts.newest_change,
        )

    def _receive_patch(self, channel: Channel, header: dict[str, Any], sender: str) -> Received:
        if header.get("version") != PATCH_VERSION:
            raise StandbyError(f"patch version {str(header.get('version'))[:20]} is not spoken")
        length = header_int(header, "length", MAX_SNAPSHOT)
        raw_length = header_int(header, "raw_length", MAX_SNAPSHOT)
        expected = header_hex(header, "sha256", MAC_BYTES)
        buffer = io.BytesIO()
        _unpack(channel.rfile, length, raw_length, buffer)
        data = buffer.getvalue()
        try:
            patch = decode_patch(data)
        except PatchError as exc:
            raise StandbyError(f"patch refused: {exc}") from None
        if not hmac.compare_digest(patch.sha256, expected):
            raise StandbyError("patch does not match its sha256")
        copy = self.replica_dir / REPLICA_NAME
        with self._lock:
            base = self._digest
        if base is None or not hmac.compare_digest(patch.base_sha256, base):
            raise StandbyError("the copy held is not this patch's base: send a whole copy")
        result = patched(copy, patch)
        if not hmac.compare_digest(hashlib.sha256(result).digest(), patch.sha256):
            raise StandbyError("the patched copy does not match its sha256")
        locker_id, epoch, newest, last_seq = _image_facts(result)
        del result
        if locker_id is not None and locker_id != self.locker_id:
            raise StandbyError(f"snapshot holds locker {locker_id!r}'s data")
        with self._lock:  # one primary at a time: a replaced connection installs nothing
            if self._session is not channel.sock:
                raise StandbyError("a newer connection of the primary replaced this one")
            if epoch < self._epoch:
                raise StandbyError(
                    f"snapshot of epoch {epoch} is older than the copy held (epoch"
                    f" {self._epoch}): its sender was replaced by a promoted controller"
                )
            if self._digest != base:
                raise StandbyError("the copy held changed meanwhile: send a whole copy")
            self._digest = None  # unknown until the patch is applied whole
            # Proven in memory above: the file need not be hashed again once written.
            apply_patch(copy, data, check=False)
            self._epoch, self._digest = epoch, patch.sha256
            self._unchecked += 1
        self.last_received_at = time.time()
        return Received(
            self.last_received_at, sender, self.locker_id, last_seq, epoch, patch.length, newest
        )

    def _check_when_due(self) -> None:
        """Every `INTEGRITY_EVERY`th patch, check the copy whole (after the primary was
        answered, so it costs no lag): SHA-256 proves the copy is the primary's snapshot,
        this catches damage that snapshot had, or the standby's medium gave."""
        with self._lock:
            if self._unchecked < INTEGRITY_EVERY:
                return
            self._unchecked = 0
            digest = self._digest
        copy = self.replica_dir / REPLICA_NAME
        try:
            verdict = check_file(copy).integrity
        except (OSError, sqlite3.Error) as exc:
            verdict = str(exc)
        if verdict != "ok":
            log.error("standby: %s fails its check (%s): asking for a whole copy", copy, verdict)
            with self._lock:
                if self._digest == digest:
                    self._digest = None


def _held(copy: Path) -> tuple[int, bytes | None]:
    """The epoch (0: none it can read) and SHA-256 of the copy a standby already holds
    (None unless it is whole: a patch needs a good base)."""
    try:
        facts = check_file(copy)
    except (OSError, sqlite3.Error):
        return 0, None
    if not facts.ok:
        return 0, None
    return facts.epoch, file_sha256(copy)


def _image_facts(image: bytearray) -> tuple[str | None, int, float | None, int]:
    """(locker id, epoch, newest change, last seq) read from a database held in memory:
    a patched copy is checked before any of it is written."""
    if not image.startswith(SQLITE_MAGIC):
        raise StandbyError("the patched copy is not an SQLite database")
    if image[18:20] != b"\x01\x01":
        raise StandbyError("the patched copy is not a self-contained database")
    db = sqlite3.connect(":memory:")
    try:
        db.deserialize(image)
        return read_facts(db)
    except sqlite3.Error as exc:
        raise StandbyError(f"the patched copy is not a readable database: {exc}") from None
    finally:
        db.close()
