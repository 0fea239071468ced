"""Configuration: the example loads, and every mistake stops start-up with a clear message."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from drivers.registry import CATALOGUE
from locker import config as config_module
from locker.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent.parent

BASE = """
[locker]
id = "store-001-a"
data_dir = "data"

[[boards]]
name = "b0"
driver = "sim"

[[compartments]]
numbers = "1-4"
channels = "1-4"
board = "b0"
size = "S"
"""


GPIO = BASE.replace(
    'driver = "sim"', 'driver = "gpio"\nlock_pins = [5, 6, 13, 19]\ndoor_pins = [12, 16, 20, 21]'
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "locker.toml"
    path.write_text(text)
    return path


def test_example_config_loads() -> None:
    config = load_config(ROOT / "config" / "example.toml")
    assert config.locker.id == "store-001-a"
    assert len(config.compartments) == 14
    sizes = [c.size for c in config.compartments]
    assert sizes == ["S"] * 8 + ["M"] * 4 + ["L"] * 2
    assert [c.number for c in config.compartments if c.low] == [1, 2]
    assert all(c.channel == c.number for c in config.compartments)
    assert config.board("b0").driver == "sim"
    assert config.locker.data_dir == ROOT / "config" / "var" / "demo"


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.doors.poll_ms == 100 and config.doors.open_confirm_s == 3
    assert config.rules.max_items == 4 and config.rules.allow_fresh is False
    assert config.mqtt.topic_prefix == "lockers" and config.mqtt.command_max_age_s == 300
    assert config.security.remote_open_per_hour == 10
    assert config.locker.data_dir == tmp_path / "data"
    assert config.key_path == tmp_path / "data" / "locker.key"
    assert config.scanner.driver == "none"


def test_single_compartment_form(tmp_path: Path) -> None:
    text = (
        BASE + '\n[[compartments]]\nnumber = 9\nchannel = 9\nboard = "b0"\nsize = "L"\nlow = true\n'
    )
    config = load_config(write(tmp_path, text))
    assert config.compartment(9).size == "L" and config.compartment(9).low


CASES = [
    ("unknown section", BASE + "\n[foo]\nx = 1\n", "unknown section [foo]"),
    (
        "unknown key",
        BASE.replace('id = "store-001-a"', 'id = "store-001-a"\ncolour = 1'),
        "[locker] colour: unknown key",
    ),
    (
        "wrong type",
        BASE + '\n[doors]\npoll_ms = "fast"\n',
        '[doors] poll_ms: expected an integer, got "fast"',
    ),
    (
        "bool for int",
        BASE + "\n[rules]\nmax_items = true\n",
        "[rules] max_items: expected an integer, got true",
    ),
    ("out of bounds", BASE + "\n[doors]\npoll_ms = 5\n", "[doors] poll_ms: must be between"),
    (
        "negative time",
        BASE + "\n[doors]\nopen_confirm_s = -1\n",
        "[doors] open_confirm_s: must be greater than 0",
    ),
    ("bad port", BASE + "\n[mqtt]\nport = 70000\n", "[mqtt] port: must be between"),
    ("bad prefix", BASE + '\n[mqtt]\ntopic_prefix = "a/#"\n', "[mqtt] topic_prefix"),
    ("bad id", BASE.replace('"store-001-a"', '"store 1"'), "[locker] id"),
    ("missing id", BASE.replace('id = "store-001-a"\n', ""), "[locker] id: missing"),
    ("no locker", BASE.replace("[locker]", "[lockr]"), "unknown section [lockr]"),
    (
        "same digits",
        BASE + "\n[rules]\npickup_code_digits = 10\n",
        "[rules] deposit_code_digits: must differ",
    ),
    (
        "reminder",
        BASE + "\n[rules]\nreminder_before_hours = 80\n",
        "[rules] reminder_before_hours: must be less than hold_hours",
    ),
    (
        "unknown driver",
        BASE.replace('driver = "sim"', 'driver = "kerong"'),
        '[[boards]] #1 "b0" driver: "kerong" is not one of',
    ),
    (
        "port needed",
        BASE.replace('driver = "sim"', 'driver = "kerong-cu48"'),
        '[[boards]] #1 "b0" port: required for driver kerong-cu48',
    ),
    (
        "bad baud",
        BASE.replace(
            'driver = "sim"', 'driver = "kerong-cu48"\nport = "/dev/ttyUSB0"\nbaud = 1234'
        ),
        '[[boards]] #1 "b0" baud: 1234 is not one of 1200, 2400',
    ),
    (
        "duplicate board",
        BASE + '\n[[boards]]\nname = "b0"\ndriver = "sim"\n',
        '[[boards]] #2 name: "b0" is used by two boards',
    ),
    (
        "no boards",
        BASE.replace('[[boards]]\nname = "b0"\ndriver = "sim"\n', ""),
        "[[boards]] missing",
    ),
    (
        "unknown board",
        BASE.replace('board = "b0"', 'board = "b9"'),
        '[[compartments]] #1 board: "b9" is not a board',
    ),
    (
        "duplicate number",
        BASE + '\n[[compartments]]\nnumber = 3\nchannel = 9\nboard = "b0"\nsize = "S"\n',
        "[[compartments]] #2 number: compartment 3 is declared twice",
    ),
    (
        "shared channel",
        BASE + '\n[[compartments]]\nnumber = 9\nchannel = 2\nboard = "b0"\nsize = "S"\n',
        "[[compartments]] #2 channel: board b0 channel 2 is used by compartments 2 and 9",
    ),
    (
        "XL compartment",
        BASE.replace('size = "S"', 'size = "XL"'),
        '[[compartments]] #1 size: "XL" is not one of S, M, L',
    ),
    (
        "bad range",
        BASE.replace('numbers = "1-4"', 'numbers = "4-1"'),
        '[[compartments]] #1 numbers: "4-1" is not a range',
    ),
    (
        "range lengths",
        BASE.replace('channels = "1-4"', 'channels = "1-5"'),
        "[[compartments]] #1 channels: range has 5 channels for 4 numbers",
    ),
    (
        "both forms",
        BASE.replace('size = "S"', 'size = "S"\nnumber = 1'),
        "[[compartments]] #1 numbers: use either",
    ),
    (
        "scanner",
        BASE + '\n[scanner]\ndriver = "usb"\n',
        '[scanner] driver: "usb" is not one of serial, camera, none',
    ),
    (
        "door pull",
        GPIO.replace("door_pins", 'door_pull = "sideways"\ndoor_pins'),
        '[[boards]] #1 "b0" door_pull: "sideways" is not one of up, down, none',
    ),
    (
        "pull against polarity",
        GPIO.replace("door_pins", 'door_pull = "up"\ndoor_open_high = false\ndoor_pins'),
        "door_open_high: with door_pull = up an open door reads high; remove door_open_high",
    ),
    (
        "camera source",
        BASE + '\n[scanner]\ndriver = "camera"\nport = "/dev/video0"\n',
        '[scanner] port: "/dev/video0": the camera is folder:PATH, opencv:DEVICE or picamera2',
    ),
    (
        "serial scanner port",
        BASE + '\n[scanner]\ndriver = "serial"\n',
        "[scanner] port: required for driver serial",
    ),
    (
        "a key no driver has",
        BASE.replace('driver = "sim"', 'driver = "kerong-cu48"\nport = "/dev/ttyUSB0"\nadress = 1'),
        '[[boards]] #1 "b0" adress: unknown key for driver kerong-cu48'
        " (its keys: address, baud, hook_sense, port, retries, timeout_ms)",
    ),
    (
        "another driver's key, not one every board once had",
        BASE.replace('driver = "sim"', 'driver = "sim"\ncolour = "red"'),
        '[[boards]] #1 "b0" colour: unknown key for driver sim (its keys: door_close_s)',
    ),
    (
        "more channels than the board has",
        BASE.replace(
            'driver = "sim"', 'driver = "kerong-cu16"\nport = "/dev/ttyUSB0"\nchannels = 17'
        ),
        '[[boards]] #1 "b0" channels: driver kerong-cu16 has at most 16, not 17',
    ),
    (
        "CU48 broadcast address",
        BASE.replace(
            'driver = "sim"', 'driver = "kerong-cu48"\nport = "/dev/ttyUSB0"\naddress = 10'
        ),
        '[[boards]] #1 "b0" address: 10 out of range 0-9: set the board\'s address selector',
    ),
    (
        "8A address 0",
        BASE.replace('driver = "sim"', 'driver = "generic-8a"\nport = "/dev/ttyUSB0"\naddress = 0'),
        '[[boards]] #1 "b0" address: 0 out of range 1-31',
    ),
    (
        "modbus pulse",
        BASE.replace(
            'driver = "sim"', 'driver = "modbus-relay"\nport = "/dev/ttyUSB0"\npulse_ms = 50'
        ),
        '[[boards]] #1 "b0" pulse_ms: must be between 100 and 5000, got 50',
    ),
    (
        "gpio without pins",
        BASE.replace('driver = "sim"', 'driver = "gpio"'),
        '[[boards]] #1 "b0" lock_pins: required for driver gpio',
    ),
    (
        "gpio pin twice",
        GPIO.replace("[12, 16, 20, 21]", "[12, 16, 20, 5]"),
        '[[boards]] #1 "b0" door_pins: a pin is used twice',
    ),
    ("toml syntax", BASE + "\n[doors\n", "not valid TOML"),
    (
        # A terminal's wait of minutes would let one person close it to every customer.
        "terminal wait too long",
        BASE + "\n[security]\nthrottle_max_s = 900\n",
        "[security] throttle_max_s: ",
    ),
    (
        "no daily budget",
        BASE + "\n[security]\nwrong_codes_per_day = 0\n",
        "[security] wrong_codes_per_day: ",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), CASES, ids=[c[0] for c in CASES])
def test_mistakes_name_the_file_and_the_key(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, CATALOGUE)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_without_the_drivers_a_board_table_is_kept_as_written(tmp_path: Path) -> None:
    # Tools that only read the configuration (lockerctl) do not load the drivers: the
    # boards' own keys are checked by lockerd, at load, and again when a board is built.
    text = BASE.replace('driver = "sim"', 'driver = "kerong-cu48"\nport = "/dev/ttyUSB0"')
    config = load_config(write(tmp_path, text))
    assert config.board("b0").options == {"port": "/dev/ttyUSB0"}
    checked = load_config(write(tmp_path, text), CATALOGUE)
    assert checked.board("b0").options["baud"] == 19200  # the driver's defaults filled in


def test_a_key_every_board_once_had_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Configurations written when one record held every driver's options keep starting.
    text = BASE.replace('driver = "sim"', 'driver = "sim"\nport = ""\nlock_pins = []')
    config = load_config(write(tmp_path, text), CATALOGUE)
    assert config.board("b0").options == {"door_close_s": 5.0}
    assert '[[boards]] #1 "b0" port: not used by driver sim; ignored' in caplog.text
    assert "lock_pins: not used by driver sim" in caplog.text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.toml")


def test_a_pull_down_means_an_open_door_reads_low(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, GPIO.replace("door_pins", 'door_pull = "down"\ndoor_pins')), CATALOGUE
    )
    options = config.boards[0].options
    assert (options["door_pull"], options["door_open_high"]) == ("down", False)
    options = load_config(write(tmp_path, GPIO), CATALOGUE).boards[0].options
    assert (options["door_pull"], options["door_open_high"]) == ("none", True)


def _example_keys() -> tuple[dict[str, list[dict[str, object]]], set[tuple[str, str]]]:
    """The example's tables (each as a list of entries) and the keys marked as differing."""
    text = (ROOT / "config" / "example.toml").read_text()
    data = tomllib.loads(text)
    tables = {k: (v if isinstance(v, list) else [v]) for k, v in data.items()}
    marked: set[tuple[str, str]] = set()
    table = ""
    for line in text.splitlines():
        header = re.fullmatch(r"\[\[?(\w+)\]\]?.*", line)
        if header:
            table = header.group(1)
        elif "# not the default" in line:
            marked.add((table, line.split("=")[0].strip()))
    return tables, marked


def test_example_shows_every_key_with_its_default_or_says_why_not(tmp_path: Path) -> None:
    # The loader's own defaults: what a minimal configuration is read as (its board is
    # the simulator's, so the board's keys are the ones every board has and the sim's).
    loaded = load_config(write(tmp_path, BASE), CATALOGUE)
    board = loaded.boards[0]
    shapes: dict[str, object] = {
        "mqtt": loaded.mqtt,
        "rules": loaded.rules,
        "doors": loaded.doors,
        "security": loaded.security,
        "compartments": loaded.compartments[0],
        "api": loaded.api,
        "kiosk": loaded.kiosk,
        "locker": loaded.locker,
        "replica": loaded.replica,
        "standby": loaded.standby,
        "retention": loaded.retention,
    }
    defaults = {
        k: {f.name: getattr(v, f.name) for f in dataclasses.fields(v)} for k, v in shapes.items()
    }  # type: ignore[arg-type]
    defaults["boards"] = {
        "name": board.name,
        "driver": board.driver,
        "channels": 0,
        **board.options,
    }
    defaults["scanner"] = {"driver": loaded.scanner.driver}  # "none": no keys of a driver
    defaults["cabinet"] = {}  # no defaults: absent, the compartments are laid out by board
    assert set(defaults) == set(config_module.SECTIONS)  # a new section is checked too
    required = {
        "locker": {"id", "data_dir"},
        "boards": {"name", "driver"},
        "compartments": {"number", "channel", "board", "size"},
    }
    tables, marked = _example_keys()
    differing = set()
    for section, keys in defaults.items():
        entries = tables.get(section, [])
        for key, default in keys.items():
            present = [e[key] for e in entries if key in e]
            assert present, f"config/example.toml: [{section}] {key} is not shown"
            if key in required.get(section, set()):
                continue
            for value in present:
                if (tuple(value) if isinstance(value, list) else value) != default:
                    differing.add((section, key))
    assert {"numbers", "channels"} <= set().union(*tables["compartments"])  # the range form
    # Exactly the lines that say "not the default" differ from it, and they say why.
    assert differing == marked
    assert marked == {("boards", "door_close_s"), ("compartments", "low"), ("api", "socket")}


def test_every_drivers_keys_are_in_the_reference_and_the_example() -> None:
    # A driver declares its keys; the reference documents each one, and the example
    # shows each one (on the simulator's board, or in a commented-out board).
    from drivers.registry import BOARD_DRIVERS, SCANNER_DRIVERS, board_driver, scanner_driver

    reference = (ROOT / "docs" / "configuration.md").read_text()
    example = (ROOT / "config" / "example.toml").read_text()
    declared = [(n, board_driver(n).options) for n in BOARD_DRIVERS]
    declared += [(n, scanner_driver(n).options) for n in SCANNER_DRIVERS]
    for name, options in declared:
        assert f"`{name}`" in reference, f"docs/configuration.md: driver {name} not described"
        for f in dataclasses.fields(options):
            assert f"`{f.name}`" in reference, f"docs/configuration.md: {name} {f.name}"
            assert re.search(rf"(?m)^#? ?{f.name} = ", example), f"example: {name} {f.name}"


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ('[replica]\nstandby = "10.0.0.2:7443"\nsecret_file = "s"', "ca_file: required"),
        ('[replica]\nstandby = "10.0.0.2"\nsecret_file = "s"\nca_file = "c"', "host:port"),
        ("[replica]\nmax_lag_s = 0", "max_lag_s: must be greater than 0"),
        ('[standby]\nlisten = "0.0.0.0:7443"\ncert_file = "c"\nkey_file = "k"', "secret_file"),
        ('[standby]\nlisten = "0.0.0.0:99999"', "host:port"),
        ("[retention]\nkeep_days = -1", "keep_days: must be greater than 0"),
        ("[retention]\nbatch = 0", "batch"),
        ('[replica]\nfolder = "/media/usb"', "folder"),
    ],
)
def test_replica_standby_and_retention_errors_name_the_key(
    tmp_path: Path, section: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[")):
        load_config(write(tmp_path, BASE + "\n" + section + "\n"))


def test_a_standby_keeps_its_copies_beside_its_data_unless_told(tmp_path: Path) -> None:
    plain = load_config(write(tmp_path, BASE))
    assert plain.standby_replica_dir == plain.locker.data_dir / "replica"
    assert not plain.replica.enabled
    told = load_config(write(tmp_path, BASE + '\n[standby]\nreplica_dir = "/srv/copy"\n'))
    assert told.standby_replica_dir == Path("/srv/copy")
    usb = load_config(write(tmp_path, BASE + '\n[replica]\ndirectory = "/media/usb"\n'))
    assert usb.replica.enabled and usb.replica.directory == "/media/usb"
