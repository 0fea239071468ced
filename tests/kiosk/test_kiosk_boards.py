"""The maintenance screen of a cabinet with three boards (two CU48 and a Modbus board's
worth), one of them unplugged, on the real kiosk under Xvfb against a real lockerd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, reserve_on_loop
from kiosk_helpers import Steps, display, overflowing, shot, start_cabinet, tap  # noqa: F401 (a fixture)

from drivers.sim import SimBoard
from kiosk_ui.i18n import load
from locker.model import Method

PIN = "86420135"
EN = load("en")
BOARDS = {"cu48-a": 48, "cu48-b": 48, "modbus-1": 8}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[RunningDaemon, dict[str, SimBoard]]]:
    running, boards = start_cabinet(tmp_path, "boards-1", BOARDS, pin=PIN)
    for board in boards.values():
        # The frames a real board's driver keeps (the simulated board has no wire): the
        # last frames on the wire, which the screen shows under a board.
        board.frames = [f"{1795601699.5 + i} > 02 00 {i:02x} 03" for i in range(8)]
    yield running, boards
    running.stop()


def laid_out_height(label: Any) -> float:
    """The height the label's whole text takes at the label's width."""
    from kivy.uix.label import Label

    whole = Label(
        text=label.text,
        markup=label.markup,
        font_size=label.font_size,
        text_size=(label.width, None),
    )
    whole.texture_update()
    return float(whole.texture_size[1])


def visible_height(label: Any) -> float:
    """How much of the label the screen shows: its own box, or its scrolling view's."""
    from kivy.uix.scrollview import ScrollView

    parent = label.parent
    return float(parent.height if isinstance(parent, ScrollView) else label.height)


def luminance(colour: Any) -> float:
    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in list(colour)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: Any, b: Any) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_every_board_shows_and_the_unplugged_one_is_named(
    daemon: tuple[RunningDaemon, dict[str, SimBoard]],
) -> None:
    running, boards = daemon
    locker = running.locker
    deposit_code = reserve_on_loop(locker, "SO-B")

    from kiosk_ui.app import build_app

    app = build_app(str(locker.config.api.socket), lang="en")
    seen: dict[str, Any] = {"overflow": {}}
    step = Steps(app)
    cu48 = boards["cu48-a"]

    @step
    def the_order_is_loaded() -> None:
        result = running.call(
            lambda: locker.service.enter_code(deposit_code, Method.SCANNER, notify=False)
        )
        seen["loaded"] = result.compartments[0]

    @step
    def and_its_door_closed() -> bool:
        if not cu48.is_open(seen["loaded"]):
            return False
        cu48.close_door(seen["loaded"])
        return True

    @step
    def then_pulled_open_and_the_modbus_board_unplugged() -> bool:
        state = running.call(locker.service.snapshot)["compartments"][seen["loaded"] - 1]
        if state["state"] != "loaded" or state["door"] != "closed":
            return False
        cu48.open_door(seen["loaded"])
        boards["modbus-1"].offline = True
        tap(app.widgets.maintenance)
        return True

    @step
    def pin() -> None:
        for digit in PIN:
            tap(app.widgets.keys[digit])
        tap(app.widgets.keys["ok"])

    @step
    def maintenance_screen() -> bool:
        m = app.maintenance
        if app.sm.current != "maintenance" or not m.diag:
            return False
        offline = [a for a in m.diag["alarms"] if a["action"] == "board_offline"]
        loaded = m._compartment(seen["loaded"])
        if not offline or loaded is None or loaded["door"] != "open":
            return False
        seen["boards_text"] = m.boards.text
        seen["boards_fit"] = (laid_out_height(m.boards), visible_height(m.boards))
        seen["events"] = m.events.text
        cell = m.cells[seen["loaded"]]
        seen["open_cell"] = (cell.text, contrast(cell.color, cell.background_color))
        seen["red"] = [m.cells[n].background_color for n in range(97, 105)]
        seen["overflow"]["800x480"] = overflowing(app.sm.current_screen)
        shot("20-maintenance-3-boards-en")
        cu48.close_door(seen["loaded"])
        tap(cell)
        return True

    @step
    def test_open_a_loaded_compartment() -> bool:
        m = app.maintenance
        if m._compartment(seen["loaded"])["door"] != "closed":
            return False
        seen["unlocks_before"] = len(cu48.unlocks)
        tap(m.test_open)
        seen["unlocks_after_one_tap"] = len(cu48.unlocks)
        seen["asked"] = (m.detail.text, m.test_open.text)
        return True

    @step
    def confirmed() -> None:
        m = app.maintenance
        tap(m.test_open)

    @step
    def opened_on_the_second_tap() -> bool:
        m = app.maintenance
        if not cu48.is_open(seen["loaded"]):
            return False
        seen["confirmed"] = m.test_open.text
        tap(m.exit)
        return True

    step.run()

    text = seen["boards_text"]
    assert all(name in text for name in BOARDS), text
    assert text.count(EN["offline_board"]) == 1
    whole, visible = seen["boards_fit"]
    assert whole <= visible + 2, f"the boards need {whole} px and get {visible}"
    assert f"{EN['action_board_offline']} modbus-1" in seen["events"]
    assert all(colour == seen["red"][0] for colour in seen["red"])
    cell_text, cell_contrast = seen["open_cell"]
    assert EN["door_open_short"] in cell_text
    assert cell_contrast >= 3.0, "OPEN must read on the loaded compartment's amber"
    assert seen["unlocks_after_one_tap"] == seen["unlocks_before"]
    detail, button = seen["asked"]
    assert detail.endswith(EN["test_open_confirm"].format(number=seen["loaded"]))
    assert button == EN["confirm_open"]
    assert seen["confirmed"] == EN["test_open"]
    assert seen["overflow"] == {"800x480": []}, "text that does not fit"
