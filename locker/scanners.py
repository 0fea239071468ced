"""The interface every code scanner implements, as the domain sees it.

A scanner (a serial barcode reader, a camera) reads codes in a thread of its own
and hands each one over through `ScannerEvents.on_code`; the composition root
posts it to the loop. Drivers live in `drivers/` and are picked by the
`[scanner] driver` name through the registry. A scanner keeps no frame history:
what goes over its wire is codes, and a code never goes into a log or a
diagnostic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from locker.errors import LockerError


class ScannerUnavailable(LockerError):
    """The configured scanner or the library it needs is not there: the locker runs
    without it (the keypad still works) and maintenance sees the fault."""

    def __init__(self, device: str, detail: str) -> None:
        super().__init__(detail)
        self.device = device
        self.detail = detail


def _ignore(detail: str) -> None:
    """No one listening for outages."""


def _nothing() -> None:
    """No one listening for recoveries."""


@dataclass(frozen=True)
class ScannerEvents:
    """What a scanner reports, from its own thread."""

    on_code: Callable[[str], None]
    on_offline: Callable[[str], None] = _ignore  # the device went away (detail for the log)
    on_online: Callable[[], None] = _nothing  # the device is back after an outage


class Scanner(Protocol):
    """One code scanner."""

    @property
    def name(self) -> str:
        """The device's name where maintenance lists devices down ("scanner", "camera")."""
        ...

    @property
    def online(self) -> bool | None:
        """Whether the device answers now; None when it cannot tell."""
        ...

    def start(self) -> None:
        """Start reading codes (in a thread of the scanner's own)."""
        ...

    def close(self) -> None:
        """Stop reading and release the device."""
        ...
