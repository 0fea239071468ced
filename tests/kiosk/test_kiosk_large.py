"""The maintenance screen of a large cabinet (112 compartments: two CU48 and a CU16 worth)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon
from kiosk_helpers import Steps, display, overflowing, shot, start_daemon, tap  # noqa: F401 (a fixture)

from drivers.sim import SimBoard
from kiosk_ui.i18n import load

PIN = "97531864"
EN = load("en")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[RunningDaemon, SimBoard]]:
    running, board = start_daemon(tmp_path, "big-1", 112, pin=PIN)
    yield running, board
    running.stop()


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_a_large_cabinet_fits_the_maintenance_screen(
    daemon: tuple[RunningDaemon, SimBoard],
) -> None:
    _running, board = daemon
    for number in (1, 57, 112):
        board.open_door(number)  # doors pulled open: forced-door alarms
    from kivy.core.window import Window

    from kiosk_ui.app import build_app

    app = build_app(str(_running.locker.config.api.socket), lang="en")
    seen: dict[str, Any] = {"overflow": {}}
    step = Steps(app)

    @step
    def to_maintenance() -> None:
        tap(app.widgets.maintenance)

    @step
    def pin() -> None:
        for digit in PIN:
            tap(app.widgets.keys[digit])
        tap(app.widgets.keys["ok"])

    @step
    def grid() -> bool:
        m = app.maintenance
        if app.sm.current != "maintenance" or len(m.cells) != 112:
            return False
        if EN["door_open_short"] not in m.cells[112].text or not m.diag["alarms"]:
            return False  # the forced doors seen and alarmed
        seen["cols"] = m.grid.cols
        seen["cells"] = {n: m.cells[n].text for n in (1, 2, 57, 112)}
        seen["events"] = m.events.text
        return True

    @step
    def picture() -> None:  # a frame after the screen change: the keypad is gone
        seen["overflow"]["800x480"] = overflowing(app.sm.current_screen)
        shot("18-maintenance-112-en")
        Window.size = (1024, 600)

    @step
    def bigger() -> None:
        seen["overflow"]["1024x600"] = overflowing(app.sm.current_screen)
        tap(app.maintenance.exit)

    step.run()
    assert seen["cols"] == 12
    assert seen["cells"] == {1: "1\nOPEN", 2: "2", 57: "57\nOPEN", 112: "112\nOPEN"}
    assert f"{EN['action_door_forced']} #112" in seen["events"]
    assert seen["overflow"] == {"800x480": [], "1024x600": []}, "text that does not fit"
