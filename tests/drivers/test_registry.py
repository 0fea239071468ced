"""The registry: every driver, the simulator included, found by name; options checked early."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers import registry
from drivers.options import BoardDriver, ScannerDriver
from drivers.registry import (
    BOARD_DRIVERS,
    SCANNER_DRIVERS,
    DriverError,
    board_config,
    board_driver,
    make_board,
    make_scanner,
    scanner_driver,
)
from drivers.scanner import SerialScanner
from drivers.sim import SimBoard
from locker.config import BoardConfig, ConfigError, ScannerSection
from locker.scanners import ScannerEvents, ScannerUnavailable

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("name", sorted(BOARD_DRIVERS))
def test_every_board_driver_is_declared_in_its_own_module(name: str) -> None:
    driver = board_driver(name)
    assert isinstance(driver, BoardDriver)
    assert 0 <= driver.default_channels <= driver.max_channels


def test_the_simulator_is_resolved_like_any_other_driver() -> None:
    assert BOARD_DRIVERS["sim"] == "drivers.sim:DRIVER"
    board = make_board(board_config("s1", "sim", 4, door_close_s=0))
    assert isinstance(board, SimBoard) and board.channels == 4 and board.door_close_s == 0
    with pytest.raises(ConfigError, match="board s1: option door_close_s: must be between"):
        make_board(BoardConfig("s1", "sim", 0, {"door_close_s": -1}))


def test_an_unknown_driver_names_the_ones_there_are() -> None:
    with pytest.raises(DriverError, match=r"board x: no driver 'kerong' \(available: .*sim"):
        make_board(BoardConfig("x", "kerong"))
    with pytest.raises(ConfigError, match='option driver: "usb" is not one of'):
        board_config("x", "usb")


def test_an_unknown_option_lists_the_drivers_own() -> None:
    with pytest.raises(ConfigError, match=r"option colour: unknown key for driver sim \(its keys"):
        board_config("x", "sim", colour="red")
    with pytest.raises(ConfigError, match="option lock_pins: required for driver gpio"):
        board_config("x", "gpio")
    with pytest.raises(ConfigError, match="option baud: 1234 is not one of"):
        board_config("x", "modbus-relay", port="/dev/null", baud=1234)


def test_checking_options_loads_no_hardware_library() -> None:
    # A cabinet's configuration is checked on any machine: pyserial, pymodbus, gpiozero,
    # pyzbar and Pillow are imported only when a device is opened.
    script = (
        "import sys\n"
        "from drivers.registry import CATALOGUE, board_config, board_driver, scanner_driver\n"
        "from locker.config import load_config\n"
        "for n in ('kerong-cu48', 'kerong-cu16', 'modbus-relay', 'generic-8a', 'gpio', 'sim'):\n"
        "    board_driver(n)\n"
        "scanner_driver('serial'); scanner_driver('camera')\n"
        "board_config('g', 'gpio', lock_pins=[5], door_pins=[6])\n"
        "load_config('config/example.toml', CATALOGUE)\n"
        "libs = ('serial', 'pymodbus', 'gpiozero', 'pyzbar', 'PIL', 'cv2')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in libs))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# -- scanners ------------------------------------------------------------------------------


def events() -> ScannerEvents:
    return ScannerEvents(on_code=lambda code: None)


@pytest.mark.parametrize("name", sorted(SCANNER_DRIVERS))
def test_every_scanner_driver_is_declared_in_its_own_module(name: str) -> None:
    assert isinstance(scanner_driver(name), ScannerDriver)


def test_no_scanner_is_none(tmp_path: Path) -> None:
    assert make_scanner(ScannerSection(), events(), tmp_path / "locker.toml") is None


def test_the_serial_scanner_comes_from_the_registry_not_started(tmp_path: Path) -> None:
    cfg = ScannerSection("serial", {"port": "/dev/null-scanner", "baud": 19200})
    scanner = make_scanner(cfg, events(), tmp_path / "locker.toml")
    assert isinstance(scanner, SerialScanner)
    assert (scanner.name, scanner.port, scanner.baud) == ("scanner", "/dev/null-scanner", 19200)
    assert scanner.online is False  # never opened
    scanner.close()  # closing a scanner never started is fine


def test_the_cameras_folder_is_the_configuration_files_and_frames_are_read(
    tmp_path: Path,
) -> None:
    pytest.importorskip("pyzbar.pyzbar")
    cfg = ScannerSection("camera", {"port": "folder:frames"})
    camera = make_scanner(cfg, events(), tmp_path / "locker.toml")
    assert camera is not None and camera.name == "camera" and camera.online is None
    assert (tmp_path / "frames").is_dir()
    camera.close()


def test_a_camera_without_its_decoder_is_unavailable_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyzbar", None)  # as without libzbar0
    cfg = ScannerSection("camera", {"port": f"folder:{tmp_path}"})
    with pytest.raises(ScannerUnavailable, match="apt install libzbar0") as err:
        make_scanner(cfg, events(), tmp_path / "locker.toml")
    assert err.value.device == "camera"


def test_scanner_options_are_checked_with_the_key_named(tmp_path: Path) -> None:
    config = tmp_path / "locker.toml"
    with pytest.raises(ConfigError, match=r'\[scanner\] port: "webcam": the camera is folder:'):
        make_scanner(ScannerSection("camera", {"port": "webcam"}), events(), config)
    with pytest.raises(ConfigError, match=r"\[scanner\] port: required for driver serial"):
        make_scanner(ScannerSection("serial", {}), events(), config)
    with pytest.raises(DriverError, match="scanner: no driver 'usb'"):
        make_scanner(ScannerSection("usb", {}), events(), config)
    assert registry.SCANNER_DRIVERS.keys() == {"serial", "camera"}
