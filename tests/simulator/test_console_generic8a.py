"""`locker-sim boards --generic8a N`: a cabinet of generic 8A boards the real driver runs on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from drivers.bus import forget_bus
from drivers.registry import make_board
from locker.config import load_config
from simulator.console import Cabinet

BIN = Path(sys.executable).parent


def test_generic8a_boards_are_written_into_the_config_and_answer_the_driver(
    tmp_path: Path,
) -> None:
    cab = Cabinet(tmp_path / "cab", cu48=0, generic8a=2, scanner=False)
    config = load_config(cab.config_path)
    try:
        assert [
            (b.name, b.driver, b.options["address"], b.options["baud"]) for b in config.boards
        ] == [
            ("8a-1", "generic-8a", 1, 9600),
            ("8a-2", "generic-8a", 2, 9600),
        ]
        assert len(config.compartments) == 16
        boards = {b.name: make_board(b) for b in config.boards}
        assert cab.run("open 9") == "compartment 9 door open"  # channel 1 of the second board
        assert boards["8a-2"].read_doors()[1] is True
        assert not any(boards["8a-1"].read_doors().values())
        cab.run("jam 3")
        boards["8a-1"].unlock(3)
        assert boards["8a-1"].read_doors()[3] is False
        boards["8a-1"].unlock(4)
        assert boards["8a-1"].read_doors()[4] is True
        cab.run("fault 8a-1 bad-checksum")
        assert boards["8a-1"].read_doors()[4] is True  # read again after one retry
        assert "OFF THE BUS" in cab.run("unplug 8a-2") + cab.status()
    finally:
        for b in config.boards:
            forget_bus(b.options["port"])
        cab.close()


def test_the_command_line_option_builds_that_cabinet(tmp_path: Path) -> None:
    scenario = tmp_path / "s.txt"
    scenario.write_text("open 2\nstatus\n")
    args = ["--dir", str(tmp_path / "cab"), "--no-mqtt", "--generic8a", "1"]
    out = subprocess.run(
        [BIN / "locker-sim", "boards", *args, "--scenario", str(scenario)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "8a-1 (generic-8a," in out.stdout and "open: 2;" in out.stdout
    assert "cu48" not in out.stdout  # asking for one kind of board means no other
