"""Pickup and deposit codes: generation, keyed hashing, QR text, and the per-locker key.

A code is never stored in clear. The database keeps HMAC-SHA256(code) under a
key derived from the per-locker key file, so a stolen database file reveals no
code and cannot be brute-forced offline without the key. The few places where
a code must wait on disk to be delivered (an event not yet acknowledged by the
broker, a stored reply) are sealed with AES-GCM under another derived key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from locker.errors import LockerError

CodeKind = Literal["pickup", "deposit"]
KEY_BYTES = 32


class CodeFormatError(LockerError):
    """Input that is not a code of this locker (the message is shown to the person)."""

    def __init__(self, message: str, reason: str = "not_a_code") -> None:
        super().__init__(message)
        self.reason = reason  # not_a_code, or other_locker (a wrong attempt)


class KeyFileError(LockerError):
    """The locker key file is missing, unreadable, too open, or malformed."""


def load_or_create_key(path: Path) -> bytes:
    """Return the locker's secret key, creating it (mode 0600) on first start.

    Created with O_EXCL so two starting processes cannot both write a key, and
    fsynced so a power cut right after first start does not lose it (losing it
    would kill every live code).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        # data_dir is relative to the configuration's folder, not to wherever the
        # reader of this message stands: the command to run names the absolute path.
        raise KeyFileError(
            f"{path}: key file is readable by others (mode {mode:o});"
            f" run chmod 600 {path.absolute()}"
        )
    text = path.read_text(encoding="ascii").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"{path}: key file is not hex; restore it from backup") from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{path}: key file holds {len(key)} bytes, expected {KEY_BYTES}")
    return key


def _derive(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, b"pickup-locker/" + purpose, hashlib.sha256).digest()


@dataclass(frozen=True)
class CodeBook:
    """Everything keyed: hashing codes and sealing the secrets that wait for delivery."""

    hash_key: bytes
    seal_key: bytes

    @classmethod
    def from_key(cls, key: bytes) -> CodeBook:
        return cls(hash_key=_derive(key, b"code-hash"), seal_key=_derive(key, b"seal"))

    def digest(self, code: str) -> str:
        """The keyed hash under which a code is stored and looked up."""
        return hmac.new(self.hash_key, code.encode("ascii"), hashlib.sha256).hexdigest()

    def matches(self, code: str, stored_digest: str) -> bool:
        """Constant-time check of a code against a stored digest."""
        return hmac.compare_digest(self.digest(code), stored_digest)

    def seal(self, plaintext: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self.seal_key).encrypt(nonce, plaintext, b"locker-seal-v1")

    def unseal(self, blob: bytes) -> bytes:
        return AESGCM(self.seal_key).decrypt(blob[:12], blob[12:], b"locker-seal-v1")


def new_code(digits: int) -> str:
    """A uniformly random code of exactly `digits` decimal digits (leading zeros kept)."""
    return f"{secrets.randbelow(10**digits):0{digits}d}"


def qr_text(locker_id: str, kind: CodeKind, code: str) -> str:
    """The contract's QR text: `locker:{id}:pickup:{code}` or `locker:{id}:deposit:{code}`."""
    return f"locker:{locker_id}:{kind}:{code}"


@dataclass(frozen=True)
class ParsedCode:
    code: str
    kind: CodeKind | None  # None: plain digits, the kind is told by the code's length


MAX_INPUT = 256


def parse_code_input(text: str, locker_id: str) -> ParsedCode:
    """Turn what a keypad, scanner or camera delivered into a code.

    Accepts plain digits or the QR text. A QR for another locker is refused with
    a message saying so (the caller counts it as a wrong attempt).
    """
    text = text.strip()
    if not text:
        raise CodeFormatError("no code entered")
    if len(text) > MAX_INPUT:
        raise CodeFormatError("input too long to be a code")
    if text.isascii() and text.isdigit():
        return ParsedCode(code=text, kind=None)
    parts = text.split(":")
    if len(parts) == 4 and parts[0] == "locker":
        _, qr_locker, kind, code = parts
        if kind not in ("pickup", "deposit") or not (code.isascii() and code.isdigit()):
            raise CodeFormatError("this QR code is not a locker code")
        if not hmac.compare_digest(qr_locker.encode(), locker_id.encode()):
            raise CodeFormatError(
                "this QR code is for another locker; please check the locker named in your message",
                "other_locker",
            )
        return ParsedCode(code=code, kind="pickup" if kind == "pickup" else "deposit")
    raise CodeFormatError("not a valid code: codes are digits only")
