"""The interface every lock-board driver implements, as the domain sees it.

Drivers live in `drivers/`; the domain only knows this protocol. A driver
reports door sensors as read from the hardware (never inferred from an
acknowledgement) and raises `BoardError` when the board does not answer
properly; retries belong to the driver's transport, not to the domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from locker.errors import LockerError


class BoardError(LockerError):
    """A board did not answer, answered garbage, or its port is gone."""

    def __init__(self, board: str, detail: str, frames: tuple[str, ...] = ()) -> None:
        super().__init__(f"board {board}: {detail}")
        self.board = board
        self.detail = detail
        self.frames = frames  # the last frames exchanged on the bus, for diagnosis


class Board(Protocol):
    """One lock board (one address on a bus, or one set of GPIO pins)."""

    @property
    def name(self) -> str: ...

    def unlock(self, channel: int) -> None:
        """Send one unlock pulse to a 1-based channel. Returns when the board took it."""
        ...

    def read_doors(self) -> Mapping[int, bool]:
        """Read every door sensor of the board in one request: channel -> True if open."""
        ...

    def close(self) -> None:
        """Release the port or pins."""
        ...

    def last_frames(self) -> list[str]:
        """The last frames on the board's wire, oldest first, for diagnosis ([] without a
        wire: GPIO, the in-memory simulator)."""
        ...


def check_channel(board: str, channel: int, channels: int) -> int:
    """`channel` if the board has it (1-based), else the BoardError every driver raises."""
    if not 1 <= channel <= channels:
        raise BoardError(board, f"no channel {channel} (1-{channels})")
    return channel
