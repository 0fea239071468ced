"""systemd's notify protocol (Type=notify, WatchdogSec) without a library: one datagram.

The socket is opened once, at start: a daemon at its file limit (a flood of local
clients) must still be able to ping the watchdog, and a ping that needs a new file
descriptor would then fail, or worse, raise in the loop.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """The daemon's line to systemd; does nothing when not run by systemd."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract socket namespace
        self.address = address
        self._sock: socket.socket | None = None
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def notify(self, state: str) -> bool:
        """Send `state` (e.g. "READY=1", "WATCHDOG=1"); False when not under systemd or
        when the datagram could not be sent."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto(state.encode(), self.address)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s() -> float | None:
    """Half the watchdog period systemd asked for, or None when there is no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    return int(usec) / 2_000_000
