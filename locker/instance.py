"""One lockerd per data directory.

Two daemons on one directory would share a database, a serial bus and an MQTT
client id: replies from the wrong board, flapping faults sent to the platform,
and the second one's exit deleting the first one's API socket. The first
lockerd takes an exclusive `flock` on `{data_dir}/lockerd.lock` and writes its
pid there; the kernel releases the lock when the process dies, however it dies,
so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from locker.errors import LockerError

LOCK_NAME = "lockerd.lock"


class AlreadyRunning(LockerError):
    """Another live lockerd holds the data directory or serves the API socket."""


class InstanceLock:
    """The exclusive hold of one data directory, kept until `release()` or exit."""

    def __init__(self, data_dir: Path, holder: str = "lockerd") -> None:
        self.path = data_dir / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, other = os.pread(fd, 64, 0).decode(errors="replace").strip().partition(" ")
            os.close(fd)
            other = other or "lockerd"  # a lock file written before holders were named
            raise AlreadyRunning(
                f"{data_dir} is in use by {'another ' if other == holder else ''}{other}"
                f" (pid {pid or 'unknown'}); stop it first (systemctl stop {other})"
                " or give this one its own [locker] data_dir"
            ) from None
        os.ftruncate(fd, 0)
        # The holder's name: lockerd and the standby's receiver exclude each other here.
        os.pwrite(fd, f"{os.getpid()} {holder}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            # The file stays: removing it would let a third process lock a new inode
            # while a second one still holds the old.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
