"""Every replica target [replica] names, each kept by a writer of its own, seen as one.

A directory (a USB stick) and a standby may both be configured. They get one
`ReplicaWriter` each rather than one writer copying to both: each then keeps its own
pace and its own retry delay, so a standby being serviced (its writer backing off to a
copy every 30 s) never holds back the stick's copy, and a slow 50 MB transfer never
delays the local one. lockerd sees them as one: one `status()`, the worst of them (a
fault names the target that fails), and the lowest seq that every copy holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from locker.config import Config
from locker.replica import ReplicaStatus, ReplicaWriter
from locker.standby import standby_target


class Replicas:
    """The replica writers of one database, with the interface of one writer."""

    def __init__(self, writers: Sequence[ReplicaWriter]) -> None:
        if not writers:
            raise ValueError("no replica writer")
        self.writers = tuple(writers)

    @classmethod
    def from_config(
        cls, config: Config, source: Path, store_commits: Callable[[], int] = lambda: 0
    ) -> Replicas | None:
        """The writers [replica] asks for (None: no replica); a LockerError names the
        key of an unreadable CA or secret file."""
        writers = []
        if config.replica.directory:
            writers.append(
                ReplicaWriter(source, Path(config.replica.directory), store_commits=store_commits)
            )
        if config.replica.standby:
            writers.append(
                ReplicaWriter(source, standby_target(config), store_commits=store_commits)
            )
        return cls(writers) if writers else None

    def start(self) -> None:
        for writer in self.writers:
            writer.start()

    def close(self, timeout: float = 10.0) -> None:
        for writer in self.writers:
            writer.close(timeout)

    def committed(self) -> None:
        for writer in self.writers:
            writer.committed()

    def status(self) -> ReplicaStatus:
        return combined([writer.status() for writer in self.writers])


def combined(statuses: Sequence[ReplicaStatus]) -> ReplicaStatus:
    """Several targets' status as one: ok only when all are, as far behind as the one
    furthest behind, as new as the oldest copy, and the seq every copy holds."""
    if len(statuses) == 1:
        return statuses[0]
    failing = [s for s in statuses if not s.ok]
    copied = [s.copied_at for s in statuses]
    return ReplicaStatus(
        target=", ".join(s.target for s in statuses),
        ok=not failing,
        lag_s=max(s.lag_s for s in statuses),
        copied_at=None if None in copied else min(c for c in copied if c is not None),
        detail="; ".join(f"{s.target}: {s.detail}" for s in failing),
        seq=min(s.seq for s in statuses),
        commits=min(s.commits for s in statuses),
    )
