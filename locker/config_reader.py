"""Reading one TOML table strictly: typed getters whose errors name the file and the key.

The shape of the locker's configuration is in `locker/config.py`; this is the
mechanism it is read with.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from locker.errors import LockerError

BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


class ConfigError(LockerError):
    """The configuration file cannot be used; the message names the file and the key."""


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


class Reader:
    """Reads one table, remembering where it is for error messages."""

    def __init__(self, path: Path, where: str, data: object) -> None:
        self.path = path
        self.where = where
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: {where}: expected a table, got {_describe(data)}")
        self.data: dict[str, Any] = data

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.where} {key}: {problem}")

    def part(self, keys: tuple[str, ...]) -> Reader:
        """A Reader over the other keys of this table, with the same place in messages
        (a driver's options, beside the keys every board has)."""
        rest = {k: v for k, v in self.data.items() if k not in keys}
        return Reader(self.path, self.where, rest)

    def check_keys(self, known: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in known:
                raise self.fail(key, f"unknown key (known: {', '.join(sorted(known))})")

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: Any, required: bool) -> Any:
        if key not in self.data:
            if required:
                raise self.fail(key, "missing (required)")
            return default
        return self.data[key]

    def get_str(self, key: str, default: str = "", required: bool = False) -> str:
        value = self._get(key, default, required)
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {_describe(value)}")
        return value

    def get_choice(
        self, key: str, choices: tuple[str, ...], default: str = "", required: bool = False
    ) -> str:
        """A string that must be one of `choices`."""
        value = self.get_str(key, default, required)
        if value not in choices:
            raise self.fail(key, f'"{value}" is not one of {", ".join(choices)}')
        return value

    def get_bool(self, key: str, default: bool = False) -> bool:
        value = self._get(key, default, False)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_describe(value)}")
        return value

    def get_int(
        self,
        key: str,
        default: int = 0,
        lo: int | None = None,
        hi: int | None = None,
        required: bool = False,
    ) -> int:
        value = self._get(key, default, required)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {_describe(value)}")
        self._bounds(key, value, lo, hi)
        return value

    def get_float(
        self,
        key: str,
        default: float,
        lo: float | None = None,
        hi: float | None = None,
        positive: bool = False,
    ) -> float:
        value = self._get(key, default, False)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {_describe(value)}")
        if positive and value <= 0:
            raise self.fail(key, f"must be greater than 0, got {value}")
        self._bounds(key, value, lo, hi)
        return float(value)

    def get_pins(self, key: str) -> tuple[int, ...]:
        """A list of the Raspberry Pi's BCM pin numbers."""
        value = self._get(key, [], False)
        if not isinstance(value, list | tuple) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 27 for p in value
        ):
            raise self.fail(key, "expected a list of BCM pin numbers 0-27")
        return tuple(value)

    def _bounds(self, key: str, value: float, lo: float | None, hi: float | None) -> None:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            low = "" if lo is None else f"{lo}"
            high = "" if hi is None else f"{hi}"
            raise self.fail(
                key, f"must be between {low or '-inf'} and {high or 'inf'}, got {value}"
            )


def names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def resolve(base: Path, value: str) -> str:
    if not value:
        return value
    p = Path(value)
    return str(p if p.is_absolute() else (base / p))


def table_list(path: Path, name: str, value: object) -> list[object]:
    if value is None:
        raise ConfigError(f"{path}: [[{name}]] missing: at least one is required")
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{path}: [[{name}]] must be a non-empty array of tables")
    return value
