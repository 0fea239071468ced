"""A standby controller on the store's LAN holding a copy of the database.

A dead controller must cost no order: the spare controller runs `StandbyServer`, and
the locker's replica writer sends it a consistent snapshot (`StandbyTarget`) after its
commits, so the standby's copy is about a second behind at most: the first one whole,
then only the pages that changed since the copy the standby last acknowledged.

Protocol, over TLS 1.2 or later (the standby's certificate verified against the store's
CA, its host name checked). Every frame is one JSON header line (UTF-8, at most 4 KiB,
ending in a newline); a "snapshot" or "patch" header is followed by exactly `length`
raw bytes.

    standby -> primary  {"type": "hello", "version": 1, "nonce": N, "patch": 1}
    primary -> standby  {"type": "auth", "locker_id": L, "client_nonce": C, "mac": M}
    standby -> primary  {"type": "auth_ok", "mac": S}
  then, any number of times on the same connection:
    primary -> standby  {"type": "snapshot", "length": n, "raw_length": r, "sha256": D}
                        and n bytes: the database file, compressed with zlib
    standby -> primary  {"type": "stored", "sha256": D}
  or, once the standby acknowledged a copy on this connection and its hello offered
  "patch" (a version this primary speaks):
    primary -> standby  {"type": "patch", "version": 1, "length": n, "raw_length": r,
                         "sha256": D}
                        and n bytes: an encoded `locker.replica.Patch`, zlib-compressed
    standby -> primary  {"type": "stored", "sha256": D}
  On a refusal the standby answers {"type": "error", "error": "why"} and hangs up.

"version" is the handshake's and the snapshot frame's, unchanged since version 1, so a
primary and a standby of different releases still agree on whole copies; "patch" is the
patch frame's own version. A standby without it in its hello only ever gets whole
copies; one that gets a patch frame anyway refuses it ("expected a 'snapshot' frame")
and hangs up, and the primary sends the whole copy on a new connection.

N and C are 32 random bytes (hex), fresh on each connection; L is the locker's id (UTF-8):

    M = HMAC-SHA256(secret, "locker-standby client\\0" || N || L || C)
    S = HMAC-SHA256(secret, "locker-standby server\\0" || C || N || L)

The standby's nonce makes a recorded M worthless on another connection, the primary's
makes a recorded S worthless; the labels keep either answer from serving as the other,
and fixed-length nonces keep the concatenations unambiguous. A device with a valid
certificate but without the secret can neither feed the standby nor receive snapshots
(they hold sealed codes): the primary sends nothing before S checks out. A newer
authenticated connection replaces an older one (one primary at a time). D is the SHA-256
of the uncompressed file, r its length; n and r are at most 512 MiB.

The standby decompresses into a private temporary file beside its copy, checks length,
digest and that it is a whole SQLite database (integrity_check, user_version) of this
locker (its recorded id, if any, is the authenticated one) and of no older epoch than
the copy it holds, fsyncs it, renames it over `locker.db` and fsyncs the directory;
only then does it answer "stored", so a primary that has read "stored" may die at once
without losing the copy. A copy of an older epoch comes from a controller that was
replaced by a promotion and still believes it serves: it is refused, never installed.

A patch holds the changed pages, the file's new length, the SHA-256 of the file it
applies to (the base) and of the file it makes (D). The standby refuses one whose base
is not the copy it holds, builds the result in memory, and refuses it unless its
SHA-256 is D and its own meta table names this locker and no older epoch: nothing is
written before the result is proven, so a refusal needs no rollback and the previous
copy stays as it was (the cost: the copy read into memory once per patch, cheaper than
writing it anywhere). Only then is it applied through the redo log
(`locker.replica.apply_patch`) and acknowledged. D proves the copy equals a consistent
snapshot of the primary, so the full integrity_check runs on whole copies and on every
`INTEGRITY_EVERY`th patch (after its acknowledgement); a failure there makes the next
patch refused, so a whole copy (which must pass the check) replaces it. A refused patch
is followed at once by a whole copy on a new connection, as is any reconnection.

After each stored copy the standby writes `received.json` beside it (`Received`: when,
from where, seq, epoch), so an operator, and `lockerctl promote`, can tell how fresh the
copy is without opening it.
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

from locker.config import Config
from locker.config_reader import Reader
from locker.config_standby import host_port
from locker.dbfile import FileFacts, check_file, read_facts
from locker.errors import LockerError
from locker.replica import (
    REPLICA_NAME,
    Image,
    PatchError,
    PutInfo,
    Scratch,
    apply_patch,
    changed_pages,
    decode_patch,
    encode_patch,
    file_sha256,
    patched,
    recover_replica,
    take_snapshot,
)

log = logging.getLogger(__name__)

VERSION = 1  # the handshake and the snapshot frame
PATCH_VERSION = 1  # the patch frame (offered in the hello, stated in each patch header)
INTEGRITY_EVERY = 50  # patches between two full integrity checks of the standby's copy
MAX_HEADER = 4096
MAX_SNAPSHOT = 512 * 1024 * 1024
MAX_LOCKER_ID = 128
NONCE_BYTES = 32
MAC_BYTES = 32  # SHA-256, for the MACs and the snapshot's digest
CHUNK = 64 * 1024
MAX_CONNECTIONS = 4  # a primary and a few strays; more is a flood, refused at once
HANDSHAKE_TIMEOUT_S = 10.0  # TLS and authentication: a silent stranger is dropped soon
IO_TIMEOUT_S = 30.0  # any one read or write inside a frame
IDLE_TIMEOUT_S = 600.0  # between snapshots of an authenticated primary (it reconnects)
VERIFY_BYTES_PER_S = 5e6  # a Pi's pace checking and fsyncing a copy, for the ack's timeout
CLIENT_LABEL = b"locker-standby client\0"
SERVER_LABEL = b"locker-standby server\0"
SQLITE_MAGIC = b"SQLite format 3\0"
RECEIVED_NAME = "received.json"


class StandbyError(OSError):
    """The peer broke the protocol: an OSError, so the replica writer retries later."""


class Refused(StandbyError):
    """The peer said no (a wrong secret, a bad snapshot): retrying at once is no use."""


class Closed(StandbyError):
    """The peer hung up between frames."""


def client_mac(secret: bytes, nonce: bytes, locker_id: str, client_nonce: bytes) -> bytes:
    message = CLIENT_LABEL + nonce + locker_id.encode() + client_nonce
    return hmac.new(secret, message, hashlib.sha256).digest()


def server_mac(secret: bytes, client_nonce: bytes, nonce: bytes, locker_id: str) -> bytes:
    message = SERVER_LABEL + client_nonce + nonce + locker_id.encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _int(header: dict[str, Any], name: str, cap: int) -> int:
    value = header.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StandbyError(f"{name} is not a byte count")
    if value > cap:
        raise StandbyError(f"{name} of {value} bytes is over the cap of {cap}")
    return value


def _hex(header: dict[str, Any], name: str, size: int) -> bytes:
    value = header.get(name)
    with contextlib.suppress(ValueError):
        data = bytes.fromhex(value) if isinstance(value, str) else b""
        if len(data) == size:  # fromhex skips spaces: the length is checked on the bytes
            return data
    raise StandbyError(f"{name} is not {size} bytes in hex")


class _Channel:
    """Header lines and payloads over one TLS connection, every read bounded."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def send(self, header: dict[str, Any], payload: IO[bytes] | None = None) -> None:
        self.sock.sendall(json.dumps(header).encode() + b"\n")
        while payload is not None and (chunk := payload.read(CHUNK)):
            self.sock.sendall(chunk)

    def expect(self, *kinds: str) -> dict[str, Any]:
        line = self.rfile.readline(MAX_HEADER + 1)
        if not line:
            raise Closed("connection closed")
        if not line.endswith(b"\n"):
            if len(line) > MAX_HEADER:
                raise StandbyError(f"header line over {MAX_HEADER} bytes")
            raise StandbyError("connection closed mid-header")
        try:
            header = json.loads(line)
        except ValueError:
            raise StandbyError("header is not JSON") from None
        if not isinstance(header, dict):
            raise StandbyError("header is not a JSON object")
        if header.get("type") == "error":
            raise Refused(f"refused: {str(header.get('error'))[:200]}")
        if header.get("type") not in kinds:
            wanted = " or ".join(repr(k) for k in kinds)
            raise StandbyError(f"expected a {wanted} frame, got {str(header.get('type'))[:40]!r}")
        return header

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


def _compress(source: Path, packed: Path) -> tuple[int, str]:
    """Compress `source` into a new private file `packed`: (raw length, raw SHA-256)."""
    digest = hashlib.sha256()
    length = 0
    packer = zlib.compressobj(1)  # the fastest level: a Pi's CPU is the bottleneck, not LAN
    fd = os.open(packed, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with source.open("rb") as src, os.fdopen(fd, "wb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            length += len(chunk)
            out.write(packer.compress(chunk))
        out.write(packer.flush())
    return length, digest.hexdigest()


class StandbyTarget:
    """The replica target: a standby controller reached over TLS with a shared secret.

    Each put makes a local snapshot in `workdir` first: put it on a tmpfs (e.g. under
    /run) where the SD card's wear matters. The pages of the copy the standby last
    acknowledged on the current connection are remembered (their hashes), so the next
    put sends only the pages that changed; any failure forgets them."""

    def __init__(
        self,
        host: str,
        port: int,
        locker_id: str,
        secret: bytes,
        ca_file: Path,
        workdir: Path,
        timeout_s: float = 5.0,
    ) -> None:
        if not secret:
            raise ValueError("the standby's shared secret is empty")
        self.host, self.port, self.locker_id = host, port, locker_id
        self._secret = secret
        self.workdir = workdir
        self.timeout_s = timeout_s
        self._context = ssl.create_default_context(cafile=str(ca_file))
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._channel: _Channel | None = None
        self._patches = False  # the connected standby takes patches
        self._held: Image | None = None  # what it acknowledged on this connection
        self._lock = threading.Lock()
        self.last_put: PutInfo | None = None

    def __str__(self) -> str:
        return f"standby {self.host}:{self.port}"

    def put(self, source: Path) -> int:
        with self._lock:
            scratch = take_snapshot(source, self.workdir)
            try:
                if scratch.image.length > MAX_SNAPSHOT:
                    raise StandbyError(
                        f"the database ({scratch.image.length} bytes) is over the cap"
                    )
                if not self._put_patch(scratch):
                    self._put_whole(scratch)
                self._held = scratch.image
            finally:  # the local copies hold sealed codes too: none is left behind
                scratch.path.unlink(missing_ok=True)
            return scratch.last_seq

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def _put_patch(self, scratch: Scratch) -> bool:
        """Send only the changed pages, if the standby is known to hold the previous
        copy; False when a whole copy must go instead."""
        held = self._held
        if self._channel is None or not self._patches or held is None:
            return False
        pages = changed_pages(scratch.image, held)
        if pages is None:
            return False
        data = encode_patch(scratch.image, scratch.path, pages, held)
        body = zlib.compress(data, 1)
        header = {"type": "patch", "version": PATCH_VERSION, "length": len(body)}
        header |= {"raw_length": len(data), "sha256": scratch.image.sha256.hex()}
        try:
            self._send(lambda: io.BytesIO(body), header, scratch.image.length)
        except OSError as exc:
            # Refused (its copy is not the patch's base, say) or the connection lost:
            # the standby's state is unknown, so the whole copy goes on a new connection.
            log.info("standby %s:%s: a patch failed (%s): sending a whole copy", *self._at(), exc)
            return False
        self.last_put = PutInfo(False, len(pages), len(body))
        return True

    def _put_whole(self, scratch: Scratch) -> None:
        packed = scratch.path.with_name(scratch.path.name + ".z")
        try:
            raw_length, digest = _compress(scratch.path, packed)
            length = packed.stat().st_size
            if length > MAX_SNAPSHOT:
                raise StandbyError(f"the database ({raw_length} bytes) is over the cap")
            header = {"type": "snapshot", "length": length, "raw_length": raw_length}
            header["sha256"] = digest

            def payload() -> IO[bytes]:
                return packed.open("rb")

            reused = self._channel is not None
            try:
                self._send(payload, header, raw_length)
            except Refused:
                raise
            except OSError:
                if not reused:
                    raise
                # The standby may have dropped an idle connection or restarted: once
                # more on a fresh one (storing the same snapshot twice is harmless).
                self._send(payload, header, raw_length)
            self.last_put = PutInfo(True, len(scratch.image.hashes), length)
        finally:
            packed.unlink(missing_ok=True)

    def _at(self) -> tuple[str, int]:
        return self.host, self.port

    def _send(
        self, payload: Callable[[], IO[bytes]], header: dict[str, Any], raw_length: int
    ) -> None:
        try:
            if self._channel is None:
                self._channel = self._connect()
            channel = self._channel
            channel.sock.settimeout(self.timeout_s)
            with payload() as body:
                channel.send(header, body)
            # The standby checks (and, for a whole copy, fsyncs) the file before it answers.
            channel.sock.settimeout(self.timeout_s + raw_length / VERIFY_BYTES_PER_S)
            if channel.expect("stored").get("sha256") != header["sha256"]:
                raise StandbyError("the standby acknowledged another snapshot")
        except Exception:
            self._disconnect()
            raise

    def _connect(self) -> _Channel:
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        try:
            sock = self._context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        channel = _Channel(sock)
        try:
            hello = channel.expect("hello")
            if hello.get("version") != VERSION:
                raise StandbyError(f"the standby speaks version {hello.get('version')!r}")
            self._patches = hello.get("patch") == PATCH_VERSION
            nonce = _hex(hello, "nonce", NONCE_BYTES)
            mine = secrets.token_bytes(NONCE_BYTES)
            mac = client_mac(self._secret, nonce, self.locker_id, mine)
            auth = {"type": "auth", "locker_id": self.locker_id, "client_nonce": mine.hex()}
            channel.send({**auth, "mac": mac.hex()})
            proof = _hex(channel.expect("auth_ok"), "mac", MAC_BYTES)
            expected = server_mac(self._secret, mine, nonce, self.locker_id)
            if not hmac.compare_digest(proof, expected):
                raise StandbyError("the standby did not prove it holds the shared secret")
        except BaseException:
            channel.close()
            raise
        return channel

    def _disconnect(self) -> None:
        self._held = None  # a new connection starts with a whole copy
        if self._channel is not None:
            self._channel.close()
            self._channel = None


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
        channel = _Channel(conn)
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
                digest = _hex(header, "sha256", MAC_BYTES).hex()  # checked by _receive
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

    def _authenticate(self, channel: _Channel, peer: str) -> None:
        nonce = secrets.token_bytes(NONCE_BYTES)
        hello = {"type": "hello", "version": VERSION, "nonce": nonce.hex()}
        if self.accepts_patches:
            hello["patch"] = PATCH_VERSION
        channel.send(hello)
        auth = channel.expect("auth")
        locker_id = auth.get("locker_id")
        if not isinstance(locker_id, str) or not 0 < len(locker_id) <= MAX_LOCKER_ID:
            raise StandbyError("locker_id is not a locker's id")
        theirs = _hex(auth, "client_nonce", NONCE_BYTES)
        mac = _hex(auth, "mac", MAC_BYTES)
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

    def _receive(self, channel: _Channel, header: dict[str, Any], sender: str) -> Received:
        length = _int(header, "length", MAX_SNAPSHOT)
        raw_length = _int(header, "raw_length", MAX_SNAPSHOT)
        expected = _hex(header, "sha256", MAC_BYTES)
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
            _fsync(incoming)
            with self._lock:  # one primary at a time: a replaced connection installs nothing
                if self._session is not channel.sock:
                    raise StandbyError("a newer connection of the primary replaced this one")
                if facts.epoch < self._epoch:
                    raise StandbyError(
                        f"snapshot of epoch {facts.epoch} is older than the copy held (epoch"
                        f" {self._epoch}): its sender was replaced by a promoted controller"
                    )
                os.replace(incoming, self.replica_dir / REPLICA_NAME)
                _fsync(self.replica_dir)
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

    def _receive_patch(self, channel: _Channel, header: dict[str, Any], sender: str) -> Received:
        if header.get("version") != PATCH_VERSION:
            raise StandbyError(f"patch version {str(header.get('version'))[:20]} is not spoken")
        length = _int(header, "length", MAX_SNAPSHOT)
        raw_length = _int(header, "raw_length", MAX_SNAPSHOT)
        expected = _hex(header, "sha256", MAC_BYTES)
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


def read_secret(path: Path, key: str) -> bytes:
    """A shared secret from its file (surrounding whitespace dropped), or a LockerError
    naming the key; the secret itself is never in a message."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise LockerError(f"{key} {path}: cannot read the shared secret: {exc.strerror}") from None
    if not secret:
        raise LockerError(f"{key} {path}: the shared secret is empty")
    return secret


def _work_dir(config: Config) -> Path:
    # systemd's RuntimeDirectory is a tmpfs: a copy every half second would wear the card.
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / "standby"
    return config.locker.data_dir / "standby-work"


def standby_target(config: Config, workdir: Path | None = None) -> StandbyTarget:
    """The replica target of [replica] standby, for lockerd's ReplicaWriter.

    `workdir` holds the local snapshot of each put (by default `$RUNTIME_DIRECTORY/standby`
    under systemd, a tmpfs, else `{data_dir}/standby-work`). A LockerError names the key
    of an unreadable CA or secret file."""
    section = config.replica
    if not section.standby:
        raise LockerError("[replica] standby is not set: there is no standby to copy to")
    host, port = host_port(Reader(config.path, "[replica]", {}), "standby", section.standby)
    secret = read_secret(Path(section.secret_file), "[replica] secret_file")
    try:
        return StandbyTarget(
            host,
            port,
            config.locker.id,
            secret,
            Path(section.ca_file),
            workdir or _work_dir(config),
        )
    except (OSError, ssl.SSLError) as exc:
        raise LockerError(
            f"[replica] ca_file {section.ca_file}: cannot load the store's CA: {exc}"
        ) from None
