"""Board drivers by their configuration name (`[[boards]] driver = ...`).

Drivers are imported only when a configuration names them, so a cabinet with
Kerong boards never loads pymodbus or gpiozero, and a missing optional
library is reported as a clear error instead of a crash at import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from drivers.sim import DEFAULT_CHANNELS, SimBoard
from locker.boards import Board
from locker.config import BoardConfig
from locker.errors import LockerError

BoardFactory = Callable[[BoardConfig], Board]


class DriverError(LockerError):
    """A driver named in the configuration is not available."""


def _sim(cfg: BoardConfig) -> Board:
    return SimBoard(cfg.name, cfg.channels or DEFAULT_CHANNELS, cfg.door_close_s)


# name -> (module, factory function); "sim" is in-process and always there.
DRIVERS: dict[str, tuple[str, str]] = {
    "kerong-cu48": ("drivers.kerong", "make_cu48"),
    "kerong-cu16": ("drivers.kerong", "make_cu16"),
    "modbus-relay": ("drivers.modbus_relay", "make_modbus_relay"),
    "generic-8a": ("drivers.generic8a", "make_generic8a"),
    "gpio": ("drivers.gpio", "make_gpio"),
}


def make_board(cfg: BoardConfig) -> Board:
    if cfg.driver == "sim":
        return _sim(cfg)
    entry = DRIVERS.get(cfg.driver)
    if entry is None:
        raise DriverError(
            f"board {cfg.name}: no driver {cfg.driver!r}"
            f" (available: sim, {', '.join(sorted(DRIVERS))})"
        )
    module_name, factory_name = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DriverError(f"board {cfg.name}: driver {cfg.driver} cannot load: {exc}") from exc
    factory = cast(BoardFactory, getattr(module, factory_name))
    return factory(cfg)
