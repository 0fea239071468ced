"""A USB scanner in keyboard mode: it "types" the code and presses Enter.

The kiosk has no keyboard of its own, so every key that reaches the window
comes from the scanner. Characters are collected until Enter; a pause longer
than `gap_s` between two characters starts afresh, so half a scan (a cable
pulled mid-code) never joins the next one.
"""

from __future__ import annotations

MAX_CHARS = 256


class WedgeBuffer:
    def __init__(self, gap_s: float = 0.5) -> None:
        self.gap_s = gap_s
        self._chars: list[str] = []
        self._last = 0.0
        self._overflow = False

    def char(self, text: str, now: float) -> None:
        if self._chars and now - self._last > self.gap_s:
            self._chars.clear()
            self._overflow = False
        self._last = now
        self._chars.extend(c for c in text if c.isprintable())
        if len(self._chars) > MAX_CHARS:  # no code is this long: drop it, as the serial
            self._chars.clear()  # scanner drops such a line
            self._overflow = True

    def enter(self, now: float) -> str | None:
        """The scanned text when Enter ends a fresh scan, else None."""
        fresh = self._chars and now - self._last <= self.gap_s and not self._overflow
        text = "".join(self._chars).strip()
        self._chars.clear()
        self._overflow = False
        return text if fresh and text else None
