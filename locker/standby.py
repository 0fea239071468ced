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
import ssl
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from locker.config import Config
from locker.config_reader import Reader
from locker.config_standby import host_port
from locker.errors import LockerError
from locker.replica import (
    Image,
    PutInfo,
    Scratch,
    changed_pages,
    encode_patch,
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


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def header_int(header: dict[str, Any], name: str, cap: int) -> int:
    value = header.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StandbyError(f"{name} is not a byte count")
    if value > cap:
        raise StandbyError(f"{name} of {value} bytes is over the cap of {cap}")
    return value


def header_hex(header: dict[str, Any], name: str, size: int) -> bytes:
    value = header.get(name)
    with contextlib.suppress(ValueError):
        data = bytes.fromhex(value) if isinstance(value, str) else b""
        if len(data) == size:  # fromhex skips spaces: the length is checked on the bytes
            return data
    raise StandbyError(f"{name} is not {size} bytes in hex")


class Channel:
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
        self._channel: Channel | None = None
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

    def _connect(self) -> Channel:
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        try:
            sock = self._context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        channel = Channel(sock)
        try:
            hello = channel.expect("hello")
            if hello.get("version") != VERSION:
                raise StandbyError(f"the standby speaks version {hello.get('version')!r}")
            self._patches = hello.get("patch") == PATCH_VERSION
            nonce = header_hex(hello, "nonce", NONCE_BYTES)
            mine = secrets.token_bytes(NONCE_BYTES)
            mac = client_mac(self._secret, nonce, self.locker_id, mine)
            auth = {"type": "auth", "locker_id": self.locker_id, "client_nonce": mine.hex()}
            channel.send({**auth, "mac": mac.hex()})
            proof = header_hex(channel.expect("auth_ok"), "mac", MAC_BYTES)
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
