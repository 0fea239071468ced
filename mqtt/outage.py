"""What the log says about the platform link while it is down.

An operator reading the journal of a locker that cannot reach its broker must
see why at once, and again only when something changes: the first failure,
each change of reason (refused → does not resolve → bad password), a reminder
at most every `repeat_s` while the same reason goes on, and the recovery with
how long it took. paho retries every few seconds for as long as the broker is
away: one line per attempt would bury everything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

REPEAT_S = 300.0


class OutageLog:
    """Rate-limited log lines for one link's connection problems (thread-safe enough:
    paho calls it from its one network thread)."""

    def __init__(
        self,
        log: logging.Logger,
        where: str,
        monotonic: Callable[[], float],
        repeat_s: float = REPEAT_S,
    ) -> None:
        self.log = log
        self.where = where
        self.monotonic = monotonic
        self.repeat_s = repeat_s
        self.reason: str | None = None
        self.since = 0.0
        self.attempts = 0
        self._logged_at = 0.0

    def failed(self, reason: str) -> None:
        """A connection attempt failed, or the broker refused it, for `reason`."""
        now = self.monotonic()
        self.attempts += 1
        if reason != self.reason:
            if self.reason is None:
                self.since = now
            self.reason = reason
            self._logged_at = now
            self.log.warning(
                "cannot reach the platform's broker at %s: %s (retrying)", self.where, reason
            )
        elif now - self._logged_at >= self.repeat_s:
            self._logged_at = now
            self.log.warning(
                "still cannot reach the platform's broker at %s after %d attempts in %.0f s: %s",
                self.where,
                self.attempts,
                now - self.since,
                reason,
            )

    def connected(self) -> None:
        """The link is up; after an outage, say how long it lasted."""
        if self.reason is not None:
            self.log.info(
                "reached the broker at %s after %d failed attempts in %.0f s",
                self.where,
                self.attempts,
                self.monotonic() - self.since,
            )
        self.reason = None
        self.attempts = 0
