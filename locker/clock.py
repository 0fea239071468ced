"""Time sources. The domain never reads the system clock directly: tests move time.

Three readings, for three kinds of time (docs/time.md):

- `now()`, wall time: deadlines that survive a restart and were told to the platform
  (`reserved_until`, `pickup_until`), event and audit stamps, a command's age.
- `monotonic()`: short timers held in memory (door confirmation, technician sessions,
  the loop's timers); it never jumps when NTP steps the wall clock.
- `steady()`: wall time as it would read had the wall clock not been stepped since this
  process began: for short waits that are stored so that a restart keeps them (the
  wrong-code throttle). Within a run it moves exactly with `monotonic()`.

A Raspberry Pi has no battery clock: it may boot hours behind and be stepped forward
when NTP syncs, or be stepped back. `synchronised()` says whether the kernel trusts its
wall clock (None when it cannot be asked).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

from locker.sysclock import clock_synchronised


class Clock(Protocol):
    """Wall time for deadlines and event stamps, monotonic time for short durations."""

    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (door timers survive an NTP step).

        On Linux it counts from boot, so it also tells how long the system has been up."""
        ...

    def steady(self) -> float:
        """Epoch seconds that move with `monotonic()`: the wall time at the start of this
        process plus the monotonic time since (a stored short wait keeps its length)."""
        ...

    def synchronised(self) -> bool | None:
        """Whether the wall clock is known good (NTP); None when this cannot be asked."""
        ...


class SystemClock:
    """The real clocks."""

    def __init__(self) -> None:
        # Fixed once: steady() then ignores every later step of the wall clock.
        self._steady_offset = time.time() - time.monotonic()

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def steady(self) -> float:
        return self._steady_offset + time.monotonic()

    def synchronised(self) -> bool | None:
        return clock_synchronised()


class FakeClock:
    """A clock that only moves when a test says so.

    `advance()` moves every reading, as real time passing does; `step()` moves only the
    wall clock, either way, as NTP or a person setting the date does. `synced` is what
    `synchronised()` answers."""

    def __init__(self, start: float = 1_795_600_000.0) -> None:
        self._wall = start
        self._mono = 1000.0
        self._steady_offset = start - self._mono
        self.synced: bool | None = True

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def steady(self) -> float:
        return self._steady_offset + self._mono

    def synchronised(self) -> bool | None:
        return self.synced

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._wall += seconds
        self._mono += seconds

    def step(self, seconds: float) -> None:
        """Step the wall clock by `seconds` (negative: back); monotonic time stays."""
        self._wall += seconds


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
