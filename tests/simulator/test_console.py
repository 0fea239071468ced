"""`locker-sim boards`: the cabinet it builds, the config it writes, the commands it takes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.bus import forget_bus
from drivers.registry import CATALOGUE, make_board
from locker.boards import BoardError
from locker.config import load_config
from simulator.console import Cabinet, ConsoleError

BIN = Path(sys.executable).parent


def test_config_written_for_every_bus_drives_the_real_drivers(tmp_path: Path) -> None:
    cab = Cabinet(tmp_path / "cab", cu48=2, cu16=1, modbus=1, scanner=True)
    try:
        config = load_config(cab.config_path, CATALOGUE)  # each driver checks its keys
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
            forget_bus(b.options["port"])
        cab.close()


def test_scenario_file(tmp_path: Path) -> None:
    scenario = tmp_path / "s.txt"
    scenario.write_text(
        "# what the technician does\nopen 3\nunplug cu48-0\nstatus\n"
        "plug cu48-0\nscan 12345678\nquit\nopen 4\n"
    )
    out = boards_cli(tmp_path / "cab", "--scenario", str(scenario))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"daemon configuration: {tmp_path / 'cab' / 'locker.toml'}" in text
    assert "OFF THE BUS; open: 3" in text
    assert "scanned" in text
    assert "compartment 4" not in text  # nothing after quit


def boards_cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`locker-sim boards` without a broker (these tests need none)."""
    return subprocess.run(
        [BIN / "locker-sim", "boards", "--dir", str(folder), "--no-mqtt", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_scenario_with_a_mistake_exits_non_zero_naming_the_line_and_runs_nothing(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "s.txt"
    scenario.write_text("open 3\nstatus\n# a comment\nnonsense 2\nclose 3\n")
    out = boards_cli(tmp_path / "cab", "--scenario", str(scenario))
    assert out.returncode == 1
    assert f"error: {scenario} line 4: unknown command 'nonsense'" in out.stderr
    assert "compartment 3 door open" not in out.stdout  # checked before the first line ran


def test_a_scenario_line_naming_nothing_in_the_cabinet_is_refused_before_it_runs(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "s.txt"
    scenario.write_text("open 3\nopen 49\n")
    out = boards_cli(tmp_path / "cab", "--scenario", str(scenario))
    assert out.returncode == 1
    assert f"error: {scenario} line 2: no compartment 49 (1-48)" in out.stderr


def test_one_board_option_alone_means_only_that_board(tmp_path: Path) -> None:
    empty = tmp_path / "nothing.txt"
    empty.write_text("")
    out = boards_cli(tmp_path / "cu16", "--cu16", "1", "--scenario", str(empty))
    assert out.returncode == 0, out.stderr
    config = load_config(tmp_path / "cu16" / "locker.toml")
    assert [b.driver for b in config.boards] == ["kerong-cu16"]
    out = boards_cli(tmp_path / "default", "--scenario", str(empty))
    assert out.returncode == 0, out.stderr
    config = load_config(tmp_path / "default" / "locker.toml")
    assert [b.driver for b in config.boards] == ["kerong-cu48"]


def test_unplug_takes_one_board_off_the_bus_and_unplug_bus_the_whole_bus(
    tmp_path: Path,
) -> None:
    cab = Cabinet(tmp_path / "cab", cu48=2, scanner=False)
    config = load_config(cab.config_path)
    boards = {b.name: make_board(b) for b in config.boards}
    try:
        assert cab.run("open 49") == "compartment 49 door open"  # cu48-1, channel 1
        assert cab.run("unplug cu48-0") == "board cu48-0 unplugged: address 0 no longer answers"
        with pytest.raises(BoardError):
            boards["cu48-0"].read_doors()
        assert boards["cu48-1"].read_doors()[1] is True  # its neighbour on the bus answers
        assert "cu48-0 (kerong-cu48" in cab.status() and "OFF THE BUS" in cab.status()
        # An unplugged board does not act on a request either.
        boards["cu48-0"].unlock(5)
        # The CU48 does not answer an unlock; a neighbour's reply comes after it was handled.
        boards["cu48-1"].read_doors()
        assert not cab.compartments[5].sim.is_open(5)
        assert cab.run("plug cu48-0") == "board cu48-0 back on the bus"
        assert boards["cu48-0"].read_doors()[5] is False
        assert cab.run("unplug-bus cu48-1").endswith("cu48-0, cu48-1 no longer answer")
        for name in ("cu48-0", "cu48-1"):
            with pytest.raises(BoardError):
                boards[name].read_doors()
        assert cab.run("plug-bus cu48-1").endswith("answer again")
        assert boards["cu48-1"].read_doors()[1] is True
    finally:
        for b in config.boards:
            forget_bus(b.options["port"])
        cab.close()


def test_fault_split_off_says_off_and_turns_it_off(tmp_path: Path) -> None:
    cab = Cabinet(tmp_path / "cab", cu48=1, scanner=False)
    try:
        faults = cab.buses[0].device.faults
        on = cab.run("fault cu48-0 split on")
        assert faults.split is True
        off = cab.run("fault cu48-0 split off")
        assert faults.split is False
        assert on != off and "whole again" in off
        with pytest.raises(ConsoleError, match=r"usage: fault B .*split on\|off"):
            cab.run("fault cu48-0 split maybe")
        assert cab.run("fault cu48-0 no-reply 3") == "the bus of cu48-0 drops the next 3 replies"
        assert faults.no_reply == 3
    finally:
        cab.close()


@pytest.mark.parametrize(
    ("line", "usage"),
    [
        ("open", "usage: open N"),
        ("close", "usage: close N"),
        ("force", "usage: force N"),
        ("jam", "usage: jam N"),
        ("unjam", "usage: unjam N"),
        ("stick 3", "usage: stick N"),
        ("stick 3 sideways", "usage: stick N"),
        ("unplug", "usage: unplug B"),
        ("plug", "usage: plug B"),
        ("fault cu48-0", "usage: fault B"),
        ("fault cu48-0 no-reply many", "usage: fault B"),
        ("scan", "usage: scan TEXT"),
        ("sleep", "usage: sleep SECONDS"),
        ("sleep soon", "usage: sleep SECONDS"),
        ("open three", "no compartment three (1-48)"),
        ("unplug cu99", "no board 'cu99' (boards: cu48-0)"),
        ("open 'unclosed", "cannot read the line"),
    ],
)
def test_a_command_written_wrong_gets_its_usage(tmp_path: Path, line: str, usage: str) -> None:
    cab = Cabinet(tmp_path / "cab", cu48=1, scanner=True)
    try:
        with pytest.raises(ConsoleError) as caught:
            cab.run(line)
        assert str(caught.value).startswith(usage)
    finally:
        cab.close()


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        (
            "platform",
            ["(default: 1883)", "(default: 1)", "(default: 127.0.0.1)", "(default: lockers)"],
        ),
        ("boards", ["(default: var/sim)", "(default: store-001-a)", "(default: 1 if no board"]),
    ],
)
def test_help_shows_the_defaults(
    capsys: pytest.CaptureFixture[str], command: str, defaults: list[str]
) -> None:
    from simulator.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # as one line, however it wraps
    for default in defaults:
        assert default in shown


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
            forget_bus(b.options["port"])
        cab.close()


def cab_without_camera(tmp_path: Path) -> Cabinet:
    cab = Cabinet(tmp_path / "plain", cu48=0, scanner=False)
    cab.close()  # nothing of it is used but its console
    return cab


def test_a_relative_dir_means_the_same_folder_to_lockerd_and_the_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cab = Cabinet(Path("var/sim"), cu48=1, scanner=False, camera=True)
    try:
        config = load_config("var/sim/locker.toml", CATALOGUE)  # as lockerd resolves it
        here = tmp_path / "var" / "sim"
        assert config.locker.data_dir == here / "data"
        assert config.api.socket == str(here / "api.sock")
        assert config.scanner.options["port"] == f"folder:{here / 'camera'}"
        cab.run("show 12345678")
        assert [p.name for p in (here / "camera").iterdir()] == ["frame-00001.png"]
    finally:
        cab.close()
