"""Board drivers by their configuration name (`[[boards]] driver = ...`)."""

from __future__ import annotations

from collections.abc import Callable

from drivers.sim import DEFAULT_CHANNELS, SimBoard
from locker.boards import Board
from locker.config import BoardConfig
from locker.errors import LockerError

BoardFactory = Callable[[BoardConfig], Board]


class DriverError(LockerError):
    """A driver named in the configuration is not available."""


def _sim(cfg: BoardConfig) -> Board:
    return SimBoard(cfg.name, cfg.channels or DEFAULT_CHANNELS, cfg.door_close_s)


DRIVERS: dict[str, BoardFactory] = {"sim": _sim}


def make_board(cfg: BoardConfig) -> Board:
    factory = DRIVERS.get(cfg.driver)
    if factory is None:
        raise DriverError(
            f"board {cfg.name}: driver {cfg.driver!r} is not available in this release"
            f" (available: {', '.join(sorted(DRIVERS))})"
        )
    return factory(cfg)
