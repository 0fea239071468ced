"""Time sources. The domain never reads the system clock directly: tests move time."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Wall time for deadlines and event stamps, monotonic time for short durations."""

    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (door timers survive an NTP step)."""
        ...


class SystemClock:
    """The real clocks."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that only moves when a test says so."""

    def __init__(self, start: float = 1_795_600_000.0) -> None:
        self._wall = start
        self._mono = 1000.0

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._wall += seconds
        self._mono += seconds


def rfc3339(ts: float) -> str:
    """Format epoch seconds as the contract's RFC 3339 UTC form with a Z suffix."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Parse an RFC 3339 time with an explicit offset (Z or ±hh:mm) to epoch seconds.

    Raises ValueError for anything else, including a time without an offset,
    which would silently mean local time.
    """
    if not isinstance(text, str) or len(text) < 20:
        raise ValueError("expected an RFC 3339 time such as 2026-11-25T08:00:00Z")
    dt = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError("time has no UTC offset; use a Z suffix")
    return dt.timestamp()
