"""The daemon's configuration: one TOML file, read strictly.

Unknown sections and keys, wrong types and values out of bounds are errors
that name the file and the key, and the daemon does not start: a typo in a
cabinet's configuration must not turn into a silently wrong locker. How a
table is read strictly is in `locker/config_reader.py`; this module is the shape.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from locker.config_kiosk import KioskSection, read_kiosk
from locker.config_layout import COMPARTMENT_KEYS, Layout, read_layout
from locker.config_reader import ConfigError, Reader, names, resolve, table_list
from locker.config_standby import (
    ReplicaSection,
    RetentionSection,
    StandbySection,
    read_replica,
    read_retention,
    read_standby,
)
from locker.model import SIZES

DEFAULT_CONFIG = "/etc/locker/locker.toml"

# ConfigError is raised by the reader and belongs to this module's interface too.
__all__ = [
    "DEFAULT_CONFIG",
    "BoardConfig",
    "CompartmentConfig",
    "Config",
    "ConfigError",
    "DriverCatalogue",
    "ScannerSection",
    "load_config",
    "parse_config",
]

ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
RANGE_RE = re.compile(r"\s*(\d+)\s*-\s*(\d+)\s*")


@dataclass(frozen=True)
class LockerSection:
    id: str
    data_dir: Path


@dataclass(frozen=True)
class MqttSection:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "lockers"
    username: str = ""
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    heartbeat_s: int = 30
    command_max_age_s: int = 300
    session_expiry_s: int = 604800


@dataclass(frozen=True)
class RulesSection:
    max_items: int = 4
    allow_fresh: bool = False
    max_compartments_per_order: int = 2
    reserve_hours: float = 12
    hold_hours: float = 72
    reminder_before_hours: float = 12
    pickup_code_digits: int = 8
    deposit_code_digits: int = 10


@dataclass(frozen=True)
class DoorsSection:
    open_confirm_s: float = 3
    open_alarm_s: float = 60
    unlock_retries: int = 2
    poll_ms: int = 100


# The longest wait one terminal's wrong codes may cause: a longer one would let a single
# person keep a terminal closed to every customer (the daily budget slows guessing instead).
MAX_TERMINAL_WAIT_S = 300.0


@dataclass(frozen=True)
class SecuritySection:
    remote_open_per_hour: int = 10
    free_attempts: int = 5
    throttle_base_s: float = 30
    throttle_max_s: float = 60
    throttle_reset_s: float = 900
    wrong_codes_per_day: int = 200
    budget_wait_s: float = 900
    key_file: str = ""  # "" = {data_dir}/locker.key
    pin_file: str = ""  # "" = {data_dir}/technician.pin


@dataclass(frozen=True)
class BoardConfig:
    """One [[boards]] table: the keys every board has, and the driver's own.

    `options` holds the driver's keys, checked against its declaration (with their
    defaults filled in) when the configuration is loaded with the driver catalogue,
    and checked again whenever a board is built from it.
    """

    name: str
    driver: str
    channels: int = 0  # 0 = the driver's default
    options: Mapping[str, Any] = field(default_factory=dict)


BOARD_KEYS = ("name", "driver", "channels")


@dataclass(frozen=True)
class CompartmentConfig:
    number: int
    board: str
    channel: int
    size: str
    low: bool = False


@dataclass(frozen=True)
class ScannerSection:
    """[scanner]: the driver's name ("none": keypad only) and the driver's own keys."""

    driver: str = "none"
    options: Mapping[str, Any] = field(default_factory=dict)


class DriverCatalogue(Protocol):
    """The drivers a configuration may name, and the check of each one's own keys.

    The domain does not import drivers: whoever loads the configuration for a running
    locker (lockerd, `lockerd --check`) hands the registry in, and the driver tables
    are then checked at load; without it they are kept as written and checked when
    the boards are built.
    """

    def board_options(self, r: Reader, driver: str, channels: int) -> Mapping[str, Any]:
        """The board driver's options read from `r` (ConfigError naming the key)."""
        ...

    def scanner_options(self, r: Reader, driver: str) -> Mapping[str, Any]:
        """The scanner driver's options read from `r` (ConfigError naming the key)."""
        ...


@dataclass(frozen=True)
class ApiSection:
    socket: str = "/run/locker/api.sock"


@dataclass(frozen=True)
class Config:
    path: Path
    locker: LockerSection
    mqtt: MqttSection
    rules: RulesSection
    doors: DoorsSection
    security: SecuritySection
    boards: tuple[BoardConfig, ...]
    compartments: tuple[CompartmentConfig, ...]
    scanner: ScannerSection
    api: ApiSection
    kiosk: KioskSection = field(default_factory=KioskSection)
    replica: ReplicaSection = field(default_factory=ReplicaSection)
    standby: StandbySection = field(default_factory=StandbySection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    layout: Layout = field(default_factory=Layout)  # where each compartment is on the cabinet

    def compartment(self, number: int) -> CompartmentConfig:
        for c in self.compartments:
            if c.number == number:
                return c
        raise KeyError(number)

    def board(self, name: str) -> BoardConfig:
        for b in self.boards:
            if b.name == name:
                return b
        raise KeyError(name)

    @property
    def pin_path(self) -> Path:
        if self.security.pin_file:
            return Path(self.security.pin_file)
        return self.locker.data_dir / "technician.pin"

    @property
    def standby_replica_dir(self) -> Path:
        """Where a spare controller keeps the copies it receives."""
        if self.standby.replica_dir:
            return Path(self.standby.replica_dir)
        return self.locker.data_dir / "replica"

    @property
    def key_path(self) -> Path:
        if self.security.key_file:
            return Path(self.security.key_file)
        return self.locker.data_dir / "locker.key"


def load_config(path: str | Path, drivers: DriverCatalogue | None = None) -> Config:
    """Read and validate a configuration file (the driver tables too, given `drivers`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, path, drivers)


# -- sections --------------------------------------------------------------------------

SECTIONS = (
    "locker",
    "mqtt",
    "rules",
    "doors",
    "security",
    "boards",
    "compartments",
    "scanner",
    "api",
    "kiosk",
    "replica",
    "standby",
    "retention",
    "cabinet",
)


def parse_config(
    data: Mapping[str, object], path: Path, drivers: DriverCatalogue | None = None
) -> Config:
    """Validate an already-parsed TOML document."""
    path = Path(path)
    base = path.parent
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{key}] (known: {', '.join(SECTIONS)})")
    if "locker" not in data:
        raise ConfigError(f"{path}: [locker] section missing (required: id, data_dir)")
    locker = _locker(Reader(path, "[locker]", data["locker"]), base)
    mqtt = _mqtt(Reader(path, "[mqtt]", data.get("mqtt", {})), base)
    rules = _rules(Reader(path, "[rules]", data.get("rules", {})))
    doors = _doors(Reader(path, "[doors]", data.get("doors", {})))
    security = _security(Reader(path, "[security]", data.get("security", {})), base)
    boards = _boards(path, data.get("boards"), drivers)
    compartments = _compartments(path, data.get("compartments"), boards)
    layout = read_layout(
        path, data.get("cabinet"), data["compartments"], compartments, [b.name for b in boards]
    )
    scanner = _scanner(Reader(path, "[scanner]", data.get("scanner", {})), drivers)
    api_r = Reader(path, "[api]", data.get("api", {}))
    api_r.check_keys(names(ApiSection))
    api = ApiSection(
        socket=resolve(base, api_r.get_str("socket", ApiSection.socket) or ApiSection.socket)
    )
    # Read by lockerd only to check it (the kiosk reads its own copy, with the same checks).
    kiosk = read_kiosk(Reader(path, "[kiosk]", data.get("kiosk", {})), base)
    replica = read_replica(Reader(path, "[replica]", data.get("replica", {})), base)
    standby = read_standby(Reader(path, "[standby]", data.get("standby", {})), base)
    retention = read_retention(Reader(path, "[retention]", data.get("retention", {})))
    return Config(
        path,
        locker,
        mqtt,
        rules,
        doors,
        security,
        boards,
        compartments,
        scanner,
        api,
        kiosk,
        replica,
        standby,
        retention,
        layout,
    )


def _locker(r: Reader, base: Path) -> LockerSection:
    r.check_keys(names(LockerSection))
    locker_id = r.get_str("id", required=True)
    if not ID_RE.fullmatch(locker_id):
        raise r.fail("id", f'"{locker_id}" must be 1-64 characters of A-Z a-z 0-9 _ -')
    data_dir = r.get_str("data_dir", required=True)
    if not data_dir:
        raise r.fail("data_dir", "must not be empty")
    return LockerSection(id=locker_id, data_dir=Path(resolve(base, data_dir)))


def _mqtt(r: Reader, base: Path) -> MqttSection:
    r.check_keys(names(MqttSection))
    d = MqttSection()
    prefix = r.get_str("topic_prefix", d.topic_prefix)
    if (
        not prefix
        or any(c in prefix for c in "+#")
        or prefix.startswith("/")
        or prefix.endswith("/")
    ):
        raise r.fail(
            "topic_prefix",
            f'"{prefix}" must be non-empty, without + or # and without a leading or trailing /',
        )
    host = r.get_str("host", d.host)
    if not host:
        raise r.fail("host", "must not be empty")
    return MqttSection(
        enabled=r.get_bool("enabled", d.enabled),
        host=host,
        port=r.get_int("port", d.port, 1, 65535),
        topic_prefix=prefix,
        username=r.get_str("username", d.username),
        password_file=resolve(base, r.get_str("password_file", d.password_file)),
        tls=r.get_bool("tls", d.tls),
        ca_file=resolve(base, r.get_str("ca_file", d.ca_file)),
        heartbeat_s=r.get_int("heartbeat_s", d.heartbeat_s, 1, 3600),
        command_max_age_s=r.get_int("command_max_age_s", d.command_max_age_s, 1, 7 * 86400),
        session_expiry_s=r.get_int("session_expiry_s", d.session_expiry_s, 7 * 86400, 2**32 - 1),
    )


def _rules(r: Reader) -> RulesSection:
    r.check_keys(names(RulesSection))
    d = RulesSection()
    rules = RulesSection(
        max_items=r.get_int("max_items", d.max_items, 1, 1000),
        allow_fresh=r.get_bool("allow_fresh", d.allow_fresh),
        max_compartments_per_order=r.get_int(
            "max_compartments_per_order", d.max_compartments_per_order, 1, 100
        ),
        reserve_hours=r.get_float("reserve_hours", d.reserve_hours, positive=True, hi=24 * 366),
        hold_hours=r.get_float("hold_hours", d.hold_hours, positive=True, hi=24 * 366),
        reminder_before_hours=r.get_float(
            "reminder_before_hours", d.reminder_before_hours, positive=True, hi=24 * 366
        ),
        pickup_code_digits=r.get_int("pickup_code_digits", d.pickup_code_digits, 6, 16),
        deposit_code_digits=r.get_int("deposit_code_digits", d.deposit_code_digits, 6, 16),
    )
    if rules.reminder_before_hours >= rules.hold_hours:
        raise r.fail("reminder_before_hours", f"must be less than hold_hours ({rules.hold_hours})")
    if rules.pickup_code_digits == rules.deposit_code_digits:
        raise r.fail(
            "deposit_code_digits",
            "must differ from pickup_code_digits, so a code's length tells which kind it is",
        )
    return rules


def _doors(r: Reader) -> DoorsSection:
    r.check_keys(names(DoorsSection))
    d = DoorsSection()
    return DoorsSection(
        open_confirm_s=r.get_float("open_confirm_s", d.open_confirm_s, positive=True, hi=60),
        open_alarm_s=r.get_float("open_alarm_s", d.open_alarm_s, positive=True, hi=86400),
        unlock_retries=r.get_int("unlock_retries", d.unlock_retries, 0, 10),
        poll_ms=r.get_int("poll_ms", d.poll_ms, 10, 5000),
    )


def _security(r: Reader, base: Path) -> SecuritySection:
    r.check_keys(names(SecuritySection))
    d = SecuritySection()
    sec = SecuritySection(
        remote_open_per_hour=r.get_int("remote_open_per_hour", d.remote_open_per_hour, 0, 3600),
        free_attempts=r.get_int("free_attempts", d.free_attempts, 1, 1000),
        throttle_base_s=r.get_float(
            "throttle_base_s", d.throttle_base_s, positive=True, hi=MAX_TERMINAL_WAIT_S
        ),
        throttle_max_s=r.get_float(
            "throttle_max_s", d.throttle_max_s, positive=True, hi=MAX_TERMINAL_WAIT_S
        ),
        throttle_reset_s=r.get_float(
            "throttle_reset_s", d.throttle_reset_s, positive=True, hi=7 * 86400
        ),
        wrong_codes_per_day=r.get_int("wrong_codes_per_day", d.wrong_codes_per_day, 1, 100_000),
        budget_wait_s=r.get_float("budget_wait_s", d.budget_wait_s, positive=True, hi=86400),
        key_file=resolve(base, r.get_str("key_file", d.key_file)),
        pin_file=resolve(base, r.get_str("pin_file", d.pin_file)),
    )
    if sec.throttle_max_s < sec.throttle_base_s:
        raise r.fail("throttle_max_s", f"must be at least throttle_base_s ({sec.throttle_base_s})")
    return sec


def _scanner(r: Reader, drivers: DriverCatalogue | None) -> ScannerSection:
    driver = r.get_str("driver", ScannerSection.driver)
    rest = r.part(("driver",))
    if driver == "none":
        rest.check_keys(_LEGACY_SCANNER_KEYS)  # the keys the section had, left with "none"
        return ScannerSection()
    if drivers is None:
        return ScannerSection(driver, dict(rest.data))
    return ScannerSection(driver, drivers.scanner_options(rest, driver))


# What [scanner] held before each scanner driver read its own keys.
_LEGACY_SCANNER_KEYS = ("port", "baud")


def _boards(path: Path, value: object, drivers: DriverCatalogue | None) -> tuple[BoardConfig, ...]:
    boards: list[BoardConfig] = []
    for i, raw in enumerate(table_list(path, "boards", value), start=1):
        r = Reader(path, f"[[boards]] #{i}", raw)
        name = r.get_str("name", required=True)
        if not ID_RE.fullmatch(name):
            raise r.fail("name", f'"{name}" must be 1-64 characters of A-Z a-z 0-9 _ -')
        if any(b.name == name for b in boards):
            raise r.fail("name", f'"{name}" is used by two boards')
        r.where = f'[[boards]] #{i} "{name}"'  # from here on, messages name the board
        driver = r.get_str("driver", required=True)
        channels = r.get_int("channels", 0, 0, 256)
        rest = r.part(BOARD_KEYS)
        options = (
            dict(rest.data) if drivers is None else drivers.board_options(rest, driver, channels)
        )
        boards.append(BoardConfig(name, driver, channels, options))
    return tuple(boards)


def _range(r: Reader, key: str) -> range:
    text = r.get_str(key, required=True)
    m = RANGE_RE.fullmatch(text)
    if not m or int(m.group(1)) < 1 or int(m.group(1)) > int(m.group(2)):
        raise r.fail(key, f'"{text}" is not a range like "1-48" (first >= 1, first <= last)')
    return range(int(m.group(1)), int(m.group(2)) + 1)


def _compartments(
    path: Path, value: object, boards: tuple[BoardConfig, ...]
) -> tuple[CompartmentConfig, ...]:
    known = ("number", "numbers", "channel", "channels", "board", "size", "low", *COMPARTMENT_KEYS)
    by_number: dict[int, int] = {}
    by_channel: dict[tuple[str, int], int] = {}
    out: list[CompartmentConfig] = []
    board_names = {b.name for b in boards}
    for i, raw in enumerate(table_list(path, "compartments", value), start=1):
        r = Reader(path, f"[[compartments]] #{i}", raw)
        r.check_keys(known)
        board = r.get_str("board", required=True)
        if board not in board_names:
            raise r.fail("board", f'"{board}" is not a board declared in [[boards]]')
        size = r.get_choice("size", SIZES, required=True)
        low = r.get_bool("low", False)
        if r.has("numbers") or r.has("channels"):
            if r.has("number") or r.has("channel"):
                raise r.fail("numbers", "use either number/channel or numbers/channels, not both")
            numbers, channels = _range(r, "numbers"), _range(r, "channels")
            if len(numbers) != len(channels):
                raise r.fail(
                    "channels", f"range has {len(channels)} channels for {len(numbers)} numbers"
                )
            pairs = list(zip(numbers, channels, strict=True))
        else:
            pairs = [
                (
                    r.get_int("number", required=True, lo=1),
                    r.get_int("channel", required=True, lo=1),
                )
            ]
        for number, channel in pairs:
            if number in by_number:
                raise r.fail(
                    "number",
                    f"compartment {number} is declared twice"
                    f" (also in [[compartments]] #{by_number[number]})",
                )
            other = by_channel.get((board, channel))
            if other is not None:
                raise r.fail(
                    "channel",
                    f"board {board} channel {channel} is used by compartments {other} and {number}",
                )
            by_number[number] = i
            by_channel[(board, channel)] = number
            out.append(CompartmentConfig(number, board, channel, size, low))
    return tuple(sorted(out, key=lambda c: c.number))
