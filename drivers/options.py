"""Each driver's own keys, declared beside the driver as a typed dataclass.

A driver module declares its options as a frozen dataclass whose fields carry
their checks (`option(default, lo=, hi=, choices=, required=)`), and whose
`__post_init__` raises `OptionError(key, problem)` for checks across keys. The
same declaration is read at configuration load (through the registry, with
errors naming the file, the board and the key) and when a board is built, so a
board never runs on options nobody checked.

This module and the declarations import no hardware library: the registry
imports a driver module to check its options on a machine that may not have
pyserial, gpiozero or a camera.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from locker.boards import Board
from locker.config import BoardConfig, ScannerSection
from locker.config_reader import BAUDS, ConfigError, Reader
from locker.scanners import Scanner, ScannerEvents

log = logging.getLogger(__name__)

# Every key a [[boards]] table could hold when one record had every driver's options.
# A board that does not use one of them ignores it, with a warning, as it did then:
# a configuration written for that shape keeps starting.
LEGACY_BOARD_KEYS = (
    "port",
    "baud",
    "address",
    "door_close_s",
    "hook_sense",
    "pulse_ms",
    "timeout_ms",
    "retries",
    "lock_pins",
    "door_pins",
    "active_high",
    "door_open_high",
    "door_pull",
    "debounce_ms",
)


class OptionError(Exception):
    """A check across options failed; `key` is the one to change."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def option(
    default: Any = None,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[Any, ...] = (),
    required: bool = False,
    pin: bool = False,
) -> Any:
    """A declared option: its default and the checks its value must pass.

    `required` options still take a default (an empty one) so that a dataclass may
    declare them in any order; reading a table without them is an error."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "required": required, "pin": pin}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Options:
    """Base of every driver's options (a driver without options uses it as is)."""


@dataclass(frozen=True)
class SerialOptions(Options):
    """The keys of every board on an RS-485 bus."""

    port: str = option("", required=True)  # the adapter, e.g. /dev/ttyUSB0
    baud: int = option(19200, choices=BAUDS)
    timeout_ms: int = option(100, lo=10, hi=5000)  # reply time-out per request
    retries: int = option(2, lo=0, hi=10)  # transport retries before the board is failing


OptionsT = TypeVar("OptionsT", bound=Options)


def read_options(cls: type[OptionsT], r: Reader, driver: str) -> OptionsT:
    """Check a table against a driver's declaration; ConfigError names the key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in list(r.data):
        if key not in fields:
            if key in LEGACY_BOARD_KEYS:
                log.warning(
                    "%s: %s %s: not used by driver %s; ignored", r.path, r.where, key, driver
                )
                continue
            known = ", ".join(sorted(fields)) or "none"
            raise r.fail(key, f"unknown key for driver {driver} (its keys: {known})")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        meta = f.metadata
        if not r.has(name):
            if meta.get("required"):
                raise r.fail(name, f"required for driver {driver}")
            continue
        values[name] = _value(r, name, hints[name], meta)
    try:
        return cls(**values)
    except OptionError as exc:
        raise r.fail(exc.key, exc.problem) from None


def _value(r: Reader, key: str, kind: Any, meta: Mapping[str, Any]) -> Any:
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices", ())
    if type(None) in typing.get_args(kind):  # optional: None is the default, never written
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    value: Any
    if kind is bool:
        value = r.get_bool(key)
    elif kind is int:
        value = r.get_int(key, 0, lo, hi)
    elif kind is float:
        value = r.get_float(key, 0.0, lo, hi)
    elif kind is str:
        value = r.get_str(key)
    elif typing.get_origin(kind) is tuple:
        value = r.get_pins(key) if meta.get("pin") else tuple(r.data[key])
    else:  # a declaration this reader does not know: a defect of the driver
        raise TypeError(f"option {key}: no reader for {kind!r}")
    if choices and value not in choices:
        shown = ", ".join(str(c) for c in choices)
        raise r.fail(key, f"{_shown(value)} is not one of {shown}")
    return value


def _shown(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def reader_for(cfg: BoardConfig) -> Reader:
    """A Reader over a board configuration's options: errors name the board and the key."""
    return Reader(Path(f"board {cfg.name}"), "option", dict(cfg.options))


@dataclass(frozen=True)
class BoardDriver(Generic[OptionsT]):
    """What the registry knows of a board driver: its options, channels and factory."""

    options: type[OptionsT]
    make: Callable[[BoardConfig, OptionsT], Board]
    default_channels: int
    max_channels: int

    def read(self, cfg: BoardConfig) -> OptionsT:
        return read_options(self.options, reader_for(cfg), cfg.driver)

    def channels(self, cfg: BoardConfig) -> int:
        """The board's channel count: configured, else the driver's default."""
        channels = cfg.channels or self.default_channels
        if channels > self.max_channels:
            raise ConfigError(
                f"board {cfg.name}: option channels: driver {cfg.driver} has at most"
                f" {self.max_channels}, not {channels}"
            )
        return channels


@dataclass(frozen=True)
class ScannerDriver(Generic[OptionsT]):
    """What the registry knows of a scanner driver: its options and its factory."""

    options: type[OptionsT]
    make: Callable[[ScannerSection, OptionsT, ScannerEvents], Scanner]
    # Paths in the options made absolute against the configuration file's folder.
    resolve: Callable[[OptionsT, Path], OptionsT] | None = None

    def check(self, r: Reader, driver: str) -> OptionsT:
        """The options of a [scanner] table read from `r`, paths made absolute against the
        folder of the file `r` reads."""
        options = read_options(self.options, r, driver)
        return options if self.resolve is None else self.resolve(options, r.path.parent)
