"""The technician PIN: stored only as a salted PBKDF2 hash in a file readable by the daemon.

Maintenance actions (test-open, open all, taking a compartment out of service)
need it on the kiosk's maintenance screen and in `lockerctl`. Wrong PINs are
throttled like wrong codes, under their own terminal name.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from locker.errors import LockerError

ITERATIONS = 200_000
MIN_DIGITS = 6


class PinError(LockerError):
    """The PIN file is missing or malformed, or a new PIN is too weak."""


def hash_pin(pin: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def check_pin(pin: str, stored: str) -> bool:
    """Constant-time check of a PIN against its stored hash."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        computed = hashlib.pbkdf2_hmac("sha256", pin.encode(), bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(computed.hex(), digest)


def write_pin(path: Path, pin: str) -> None:
    """Store a new PIN (digits only, at least six), mode 0600, atomically.

    The PIN's folder belongs to the locker user, and lockerctl may run as root: a
    fixed temporary name, or a PIN path that is a symlink, would let that user make
    root write through a planted link into any file. So the new file gets a name of
    its own, created with O_EXCL|O_NOFOLLOW (never an existing file, never through
    a link), and replaces the PIN file by rename, which replaces a link itself,
    never its target. A PIN path that is a link is refused outright all the same.
    """
    if not pin.isdigit() or len(pin) < MIN_DIGITS:
        raise PinError(f"a technician PIN is at least {MIN_DIGITS} digits")
    if path.is_symlink():
        raise PinError(f"{path} is a symbolic link; remove it and set the PIN again")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.new")
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask may only take bits away; say it outright
            os.write(fd, (hash_pin(pin) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_pin_hash(path: Path) -> str | None:
    """The stored hash, or None when no PIN has been set (maintenance is then refused)."""
    try:
        return path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None
