"""Board and scanner drivers by their configuration name (`driver = ...`).

One line per driver: the name a configuration uses and the module attribute
that declares the driver (its options, its channels, its factory). The
simulator is a driver like any other. A driver module is imported only when a
configuration names it, and it imports its hardware library (pyserial,
gpiozero, pyzbar) only when a device is opened, so options are checked at load
on any machine and a missing library is a clear error when the device is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drivers.options import BoardDriver, ScannerDriver, read_options
from locker.boards import Board
from locker.config import BoardConfig, ScannerSection
from locker.config_reader import Reader
from locker.errors import LockerError
from locker.scanners import Scanner, ScannerEvents

BOARD_DRIVERS: dict[str, str] = {
    "kerong-cu48": "drivers.kerong:CU48",
    "kerong-cu16": "drivers.kerong:CU16",
    "modbus-relay": "drivers.modbus_relay:DRIVER",
    "generic-8a": "drivers.generic8a:DRIVER",
    "gpio": "drivers.gpio:DRIVER",
    "sim": "drivers.sim:DRIVER",
}
SCANNER_DRIVERS: dict[str, str] = {
    "serial": "drivers.scanner:DRIVER",
    "camera": "drivers.camera:DRIVER",
}


class DriverError(LockerError):
    """A driver named in the configuration is not available."""


def _load(where: str, name: str, table: Mapping[str, str]) -> Any:
    entry = table.get(name)
    if entry is None:
        raise DriverError(f"{where}: no driver {name!r} (available: {', '.join(sorted(table))})")
    module_name, _, attribute = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DriverError(f"{where}: driver {name} cannot load: {exc}") from exc
    return getattr(module, attribute)


def board_driver(name: str, board: str = "") -> BoardDriver[Any]:
    """The declaration of the board driver `name`; DriverError if there is none."""
    driver: BoardDriver[Any] = _load(f"board {board}" if board else "boards", name, BOARD_DRIVERS)
    return driver


def scanner_driver(name: str) -> ScannerDriver[Any]:
    """The declaration of the scanner driver `name`; DriverError if there is none."""
    driver: ScannerDriver[Any] = _load("scanner", name, SCANNER_DRIVERS)
    return driver


def make_board(cfg: BoardConfig) -> Board:
    """Build a board from its configuration, its options checked first."""
    driver = board_driver(cfg.driver, cfg.name)
    options = driver.read(cfg)  # before any port is opened: a config slip is no wiring fault
    driver.channels(cfg)
    return driver.make(cfg, options)


def make_scanner(cfg: ScannerSection, events: ScannerEvents, source: Path) -> Scanner | None:
    """Build the configured scanner (None for `driver = "none"`); not started.

    `source` is the configuration file: relative paths in the options are its folder's.
    ScannerUnavailable when the device or its library is not there."""
    if cfg.driver == "none":
        return None
    driver = scanner_driver(cfg.driver)
    options = driver.check(Reader(source, "[scanner]", dict(cfg.options)), cfg.driver)
    return driver.make(cfg, options, events)


def board_config(name: str, driver: str, channels: int = 0, **options: Any) -> BoardConfig:
    """A checked BoardConfig built in code (tests, benches), as a [[boards]] table would be."""
    r = Reader(Path(f"board {name}"), "option", dict(options))
    return BoardConfig(name, driver, channels, CATALOGUE.board_options(r, driver, channels))


class Catalogue:
    """The registry as the configuration loader sees it (locker.config.DriverCatalogue)."""

    def board_options(self, r: Reader, driver: str, channels: int) -> Mapping[str, Any]:
        if driver not in BOARD_DRIVERS:
            raise r.fail("driver", f'"{driver}" is not one of {", ".join(BOARD_DRIVERS)}')
        spec = board_driver(driver)
        if channels > spec.max_channels:
            raise r.fail(
                "channels", f"driver {driver} has at most {spec.max_channels}, not {channels}"
            )
        return dict(vars(read_options(spec.options, r, driver)))

    def scanner_options(self, r: Reader, driver: str) -> Mapping[str, Any]:
        if driver not in SCANNER_DRIVERS:
            raise r.fail("driver", f'"{driver}" is not one of {", ".join(SCANNER_DRIVERS)}, none')
        spec = scanner_driver(driver)
        return dict(vars(spec.check(r, driver)))


CATALOGUE = Catalogue()
