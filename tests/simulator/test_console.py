"""`locker-sim boards`: the cabinet it builds, the config it writes, the commands it takes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.bus import forget_bus
from drivers.modbus_relay import forget_client
from drivers.registry import make_board
from locker.config import load_config
from simulator.console import Cabinet, ConsoleError

BIN = Path(sys.executable).parent


def test_config_written_for_every_bus_drives_the_real_drivers(tmp_path: Path) -> None:
    cab = Cabinet(tmp_path / "cab", cu48=2, cu16=1, modbus=1, scanner=True)
    try:
        config = load_config(cab.config_path)
        assert [b.driver for b in config.boards] == [
            "kerong-cu48",
            "kerong-cu48",
            "kerong-cu16",
            "modbus-relay",
        ]
        assert len(config.compartments) == 48 + 48 + 16 + 8
        assert config.scanner.driver == "serial"
        boards = {b.name: make_board(b) for b in config.boards}
        assert cab.run("open 97") == "compartment 97 door open"  # first CU16 channel
        assert boards["cu16-0"].read_doors()[1] is True
        assert cab.run("force 113") == "compartment 113 door open"  # the relay board
        assert boards["relay-1"].read_doors()[1] is True
        assert cab.run("jam 2").endswith("jammed")
        boards["cu48-0"].unlock(2)
        assert boards["cu48-0"].read_doors()[2] is False
    finally:
        for b in config.boards:
            forget_bus(b.port)
            forget_client(b.port)
        cab.close()


def test_scenario_file(tmp_path: Path) -> None:
    scenario = tmp_path / "s.txt"
    scenario.write_text(
        "# what the technician does\nopen 3\nunplug cu48-0\nstatus\n"
        "plug cu48-0\nnonsense\nscan 12345678\nquit\nopen 4\n"
    )
    out = subprocess.run(
        [BIN / "locker-sim", "boards", "--dir", str(tmp_path / "cab"), "--scenario", str(scenario)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"daemon configuration: {tmp_path / 'cab' / 'locker.toml'}" in text
    assert "OFF THE BUS; open: 3" in text
    assert "error: unknown command 'nonsense'; type help" in text
    assert "scanned" in text
    assert "compartment 4" not in text  # nothing after quit


def test_a_cabinet_with_a_camera_shows_qr_codes_to_the_real_daemon(tmp_path: Path) -> None:
    import json
    import time

    from conftest import RunningDaemon

    from locker.clock import rfc3339
    from locker.commands import CommandProcessor

    cab = Cabinet(tmp_path / "cab", cu48=1, scanner=True, camera=True, locker_id="cam-sim")
    running = None
    try:
        config = load_config(cab.config_path)
        assert config.scanner.driver == "camera" and cab.scanner is None
        running = RunningDaemon(cab.config_path)
        payload = {
            "command_id": "c1",
            "sent_at": rfc3339(time.time()),
            "order_id": "SO-CAMSIM",
            "items": [{"sku": "1", "qty": 1, "size": "S"}],
        }
        reply = running.call(
            lambda: CommandProcessor(running.locker.service).handle("reserve", json.dumps(payload))
        )
        code = reply["result"]["deposit_code"]
        assert (
            cab.run(f"show locker:cam-sim:deposit:{code}") == "shown to the camera: QR of the text"
        )
        deadline = time.monotonic() + 5
        while not cab.compartments[1].sim.is_open(1):
            assert time.monotonic() < deadline, "the QR shown to the camera opened nothing"
            time.sleep(0.02)
        with pytest.raises(ConsoleError, match="no camera in this cabinet"):
            Cabinet.run(cab_without_camera(tmp_path), "show 123")
    finally:
        if running is not None:
            running.stop()
        for b in load_config(cab.config_path).boards:
            forget_bus(b.port)
        cab.close()


def cab_without_camera(tmp_path: Path) -> Cabinet:
    cab = Cabinet(tmp_path / "plain", cu48=0, scanner=False)
    cab.close()  # nothing of it is used but its console
    return cab
