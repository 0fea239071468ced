"""Where is my door: on a 96-door cabinet (two CU48 boards' worth of simulated doors, each
board four columns of twelve), the result screen's map highlights exactly the doors the
code opened, in their place on the cabinet, and a low bay opened for an accessible
customer carries the wheelchair sign."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, wait_for
from kiosk_helpers import (  # noqa: F401 (a fixture)
    Steps,
    display,
    overflowing,
    shot,
    start_cabinet,
    tap,
)
from PIL import Image

from drivers.sim import SimBoard
from locker.clock import rfc3339
from locker.commands import CommandProcessor
from locker.model import Method

# Board a: 46 small doors and two large; board b: 46 medium and two small low bays.
COMPARTMENTS = """
[[compartments]]
numbers = "1-46"
channels = "1-46"
board = "a"
size = "S"
[[compartments]]
numbers = "47-48"
channels = "47-48"
board = "a"
size = "L"
[[compartments]]
numbers = "49-94"
channels = "1-46"
board = "b"
size = "M"
[[compartments]]
numbers = "95-96"
channels = "47-48"
board = "b"
size = "S"
low = true
"""
CABINET = (
    '[cabinet]\ncolumns = ["1-12", "13-24", "25-36", "37-48", "49-60", "61-72", "73-84", "85-96"]\n'
)


@pytest.fixture
def cabinet(tmp_path: Path) -> Iterator[tuple[RunningDaemon, dict[str, SimBoard]]]:
    running, boards = start_cabinet(
        tmp_path, "map-1", {"a": 48, "b": 48}, COMPARTMENTS, extra=CABINET
    )
    yield running, boards
    running.stop()


def loaded(running: RunningDaemon, boards: dict[str, SimBoard], order: dict[str, Any]) -> str:
    """Reserve `order` and load it as staff would (doors opened and closed again); the
    pickup code the platform would send the customer."""
    locker = running.locker
    payload = {"command_id": f"r-{order['order_id']}", "sent_at": rfc3339(time.time()), **order}
    reply = running.call(
        lambda: CommandProcessor(locker.service).handle("reserve", json.dumps(payload))
    )
    assert reply is not None and reply["ok"], reply
    code = reply["result"]["deposit_code"]
    result = running.call(lambda: locker.service.enter_code(code, Method.SCANNER, notify=False))
    assert result.outcome == "opened", result

    def doors() -> dict[int, str]:
        snap = running.call(locker.service.snapshot)
        return {c["number"]: c["door"] for c in snap["compartments"]}

    # Closed once lockerd has seen them open, as a person takes a moment to load.
    wait_for(lambda: all(doors()[n] == "open" for n in result.compartments), "doors seen open")
    for number in result.compartments:
        c = locker.config.compartment(number)
        boards[c.board].close_door(c.channel)
    pickup: list[str] = []

    def deposited() -> bool:
        for ev in running.call(lambda: locker.store.events(0, 1000)):
            if ev.type == "deposited" and ev.fields["order_id"] == order["order_id"]:
                pickup.append(ev.fields["pickup_code"])
        return bool(pickup)

    wait_for(deposited, f"order {order['order_id']} deposited")
    return pickup[0]


def colour_at(png: Path, x: float, y: float) -> tuple[int, int, int]:
    """The screenshot's colour at window point (x, y) (Kivy's y is up, the image's down)."""
    with Image.open(png) as img:
        rgb = img.convert("RGB")
        pixel: tuple[int, int, int] = rgb.getpixel((int(x), rgb.height - 1 - int(y)))
        return pixel


def near(a: tuple[int, int, int], b: tuple[float, ...]) -> bool:
    return all(abs(p - round(q * 255)) <= 12 for p, q in zip(a, b[:3], strict=False))


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_the_map_highlights_exactly_the_opened_doors_of_a_96_door_cabinet(
    cabinet: tuple[RunningDaemon, dict[str, SimBoard]],
) -> None:
    running, boards = cabinet
    # One small parcel and one medium: a door on each board.
    two = loaded(
        running,
        boards,
        {
            "order_id": "SO-M",
            "items": [{"sku": "1", "qty": 1, "size": "S"}],
            "parcels": [{"size": "S"}, {"size": "M"}],
        },
    )
    low = loaded(
        running,
        boards,
        {
            "order_id": "SO-W",
            "items": [{"sku": "2", "qty": 1, "size": "S"}],
            "customer": {"accessible": True},
        },
    )
    from kiosk_ui.app import build_app

    app = build_app(str(running.locker.config.api.socket), lang="en")
    seen: dict[str, Any] = {}
    step = Steps(app)

    def type_code(code: str) -> None:
        for digit in code:
            tap(app.widgets.keys[digit])
        tap(app.widgets.keys["ok"])

    @step
    def shopper_opens_the_keypad() -> None:
        tap(app.widgets.type_code)

    @step
    def and_types_the_two_door_code() -> None:
        type_code(two)

    @step
    def the_map_shows_the_opened_doors() -> bool:
        door_map = app.widgets.door_map
        if app.sm.current != "result" or len(door_map.boxes) != 96:
            return False
        seen["opened"] = {n for n, what in door_map.shown.items() if what == "opened"}
        seen["boxes"] = dict(door_map.boxes)
        seen["marked"] = set(door_map.accessible)
        seen["png"] = shot("25-door-map-two-doors-en")
        return True

    @step
    def the_doors_are_closed() -> bool:
        for number in seen["opened"]:
            c = running.locker.config.compartment(number)
            if not boards[c.board].is_open(c.channel):
                return False
        for number in seen["opened"]:
            c = running.locker.config.compartment(number)
            boards[c.board].close_door(c.channel)
        return True

    @step
    def then_home() -> bool:
        if app.sm.current == "result":
            return False
        seen["hidden"] = app.widgets.door_map.opacity
        return True

    @step
    def a_wheelchair_user_opens_the_keypad() -> None:
        app.toggle_language()  # who reads Chinese: the map in both languages
        tap(app.widgets.type_code)

    @step
    def and_types_theirs() -> None:
        type_code(low)

    @step
    def the_low_bay_is_marked() -> bool:
        door_map = app.widgets.door_map
        if app.sm.current != "result" or not door_map.highlighted:
            return False
        seen["low_opened"] = set(door_map.highlighted)
        seen["low_marked"] = set(door_map.accessible)
        shot("26-door-map-low-bay-zh")
        tap(app.widgets.done)
        return True

    step.run()
    opened_doors = seen["opened"]
    assert opened_doors == {1, 49}  # the lowest free small door, and the lowest medium one
    assert seen["marked"] == set()
    boxes = seen["boxes"]
    # In their place: board a's doors left of board b's, 1 at the top of the first column,
    # 49 at the top of the fifth; 12 at the bottom of the first.
    assert max(boxes[n][0] for n in range(1, 49)) < min(boxes[n][0] for n in range(49, 97))
    assert boxes[1][0] < boxes[13][0] < boxes[25][0] < boxes[37][0] < boxes[49][0]
    assert boxes[1][1] == boxes[49][1] > boxes[2][1] > boxes[12][1]
    # The picture the shopper saw: the opened doors in the accent colour, every other
    # door in the shut colour (sampled at each door's corner, away from its number).
    from kiosk_ui.doormap import DoorColours

    colours = DoorColours()
    png = seen["png"]
    for number, (x, y, _w, _h) in boxes.items():
        pixel = colour_at(png, x + 2, y + 2)
        want = colours.opened if number in opened_doors else colours.door
        assert near(pixel, want), f"door {number}: {pixel} is not {want}"
    assert seen["hidden"] == 0  # the start screen again, the map gone with the result
    assert seen["low_opened"] == seen["low_marked"] == {95}


@pytest.fixture
def cabinet_with_pin(tmp_path: Path) -> Iterator[tuple[RunningDaemon, dict[str, SimBoard]]]:
    running, boards = start_cabinet(
        tmp_path, "map-2", {"a": 48, "b": 48}, COMPARTMENTS, extra=CABINET, pin=PIN
    )
    yield running, boards
    running.stop()


PIN = "97531864"


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_the_maintenance_grid_stands_as_the_cabinet_with_a_legend_and_each_boards_hour(
    cabinet_with_pin: tuple[RunningDaemon, dict[str, SimBoard]],
) -> None:
    running, boards = cabinet_with_pin
    boards["b"].offline = True  # unplugged: its reads fail, its errors count up
    from kivy.core.window import Window

    from kiosk_ui.app import build_app
    from kiosk_ui.i18n import load

    en = load("en")
    app = build_app(str(running.locker.config.api.socket), lang="en")
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
        if app.sm.current != "maintenance" or len(m.cells) != 96 or m.grid.cols != 8:
            return False
        if "in the last hour" not in m.boards.text or not m.diag["errors_hour"]["b"]:
            return False  # board b's failed reads counted
        seen["pos"] = {n: (m.cells[n].x, m.cells[n].y) for n in m.cells}
        seen["size"] = {n: tuple(m.cells[n].size) for n in m.cells}
        seen["boards"] = m.boards.text
        seen["legend"] = [chip.text for chip in m.legend.values()]
        seen["overflow"]["800x480"] = overflowing(app.sm.current_screen)
        shot("27-maintenance-cabinet-en")
        Window.size = (1024, 600)
        return True

    @step
    def bigger() -> None:
        m = app.maintenance
        seen["bigger"] = {n: (m.cells[n].x, m.cells[n].y) for n in (1, 12, 49)}
        seen["overflow"]["1024x600"] = overflowing(app.sm.current_screen)
        shot("28-maintenance-cabinet-1024x600-en")
        tap(m.exit)

    step.run()
    pos = seen["pos"]
    # Eight columns of twelve, as [cabinet] says: one x a column, left to right; within
    # a column, one row under the other from the top.
    for first in range(1, 97, 12):
        column = list(range(first, first + 12))
        assert {pos[n][0] for n in column} == {pos[first][0]}
        assert [pos[n][1] for n in column] == sorted((pos[n][1] for n in column), reverse=True)
    xs = [pos[first][0] for first in range(1, 97, 12)]
    assert xs == sorted(xs) and len(set(xs)) == 8
    assert {pos[n][1] for n in range(1, 97, 12)} == {pos[1][1]}  # row 1 level across
    assert len(set(seen["size"].values())) == 1
    assert seen["legend"] == [
        en["state_free"],
        en["state_reserved"],
        en["state_loaded"],
        en["state_retrieval"],
        en["state_out_of_service"],
        en["state_fault"],
        en["door_open_short"],
    ]
    a_line, b_line = (line for line in seen["boards"].splitlines() if line[:2] in ("a:", "b:"))
    assert "0 in the last hour" in a_line
    assert "in the last hour" in b_line and "0 in the last hour" not in b_line
    # At 1024x600 the same cabinet, larger.
    large = seen["bigger"]
    assert large[1][0] == large[12][0] < large[49][0] and large[1][1] > large[12][1]
    assert seen["overflow"] == {"800x480": [], "1024x600": []}, "text that does not fit"
