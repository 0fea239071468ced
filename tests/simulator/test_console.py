"""`locker-sim boards`: the cabinet it builds, the config it writes, the commands it takes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from drivers.bus import forget_bus
from drivers.modbus_relay import forget_client
from drivers.registry import make_board
from locker.config import load_config
from simulator.console import Cabinet

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
