"""The door map on its own: where each door is drawn, its colours' contrast, what it shows
for the doors it is given, and the large numbers beside the cabinet."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from kiosk_helpers import display, shot  # noqa: F401 (a fixture)
from test_theme import STORE_COLOURS

from kiosk_ui.maintenance import contrast
from kiosk_ui.theme import Theme
from locker.config_kiosk import KioskSection
from locker.config_layout import Cell, Layout

# Two CU48 boards, each four columns of twelve, a low bay at the bottom of the last.
CABINET = Layout(
    8,
    12,
    tuple(Cell(n, (n - 1) // 12 + 1, (n - 1) % 12 + 1, 1, low=n == 96) for n in range(1, 97)),
)


@pytest.mark.parametrize("store", [None, *STORE_COLOURS], ids=str)
def test_every_text_on_the_map_reads_against_its_background(
    store: tuple[str, str] | None,
) -> None:
    from kiosk_ui.doormap import DoorColours

    if store is None:
        c = DoorColours()
    else:  # as the result screen makes them: from the store's theme
        primary, accent = store
        theme = Theme.from_config(KioskSection(primary_colour=primary, accent_colour=accent))
        c = DoorColours.from_theme(theme)
        assert c.opened[:3] == theme.accent
    for text, background in (
        (c.door_text, c.door),
        (c.opened_text, c.opened),
        (c.low_mark, c.opened),
    ):
        assert contrast(text, background) >= 4.5, (text, background)
    if store is None or store == STORE_COLOURS[0]:  # the default: seen from a step away
        # An opened door's outline stands out from the shut doors and the cabinet (WCAG's
        # 3:1 for the parts of a picture that carry its meaning).
        assert contrast(c.outline, c.door) >= 3 and contrast(c.opened, c.cabinet) >= 3


def test_cells_stand_in_their_columns_and_rows_inside_the_area() -> None:
    from kiosk_ui.doormap import cell_boxes

    area = (100.0, 50.0, 600.0, 300.0)
    boxes = cell_boxes(CABINET, area, gap=2)
    assert sorted(boxes) == list(range(1, 97))
    for column in range(1, 9):
        cells = [boxes[c.number] for c in CABINET.column(column)]
        assert len({round(b[0], 3) for b in cells}) == 1  # one column, one x
        assert all(a[1] > b[1] for a, b in pairwise(cells))  # row 1 at the top
    xs = [boxes[c.number][0] for c in (CABINET.cell(n) for n in (1, 13, 25, 37, 49, 61, 73, 85))]
    assert xs == sorted(xs)
    for x, y, w, h in boxes.values():
        assert area[0] <= x and x + w <= area[0] + area[2] + 0.01
        assert area[1] <= y and y + h <= area[1] + area[3] + 0.01
    # Two rows tall: as high as two cells and the gap between them.
    tall = Layout(1, 3, (Cell(1, 1, 1, 2), Cell(2, 1, 3)))
    b = cell_boxes(tall, (0, 0, 100, 300), gap=2)
    assert b[1][3] == pytest.approx(198) and b[2][3] == pytest.approx(98)


def test_a_wide_area_draws_a_narrower_cabinet_centred() -> None:
    from kiosk_ui.doormap import MAX_CELL_RATIO, cell_boxes

    three = Layout(3, 2, tuple(Cell(n, n, 1) for n in (1, 2, 3)))
    boxes = cell_boxes(three, (0, 0, 1000, 100), gap=0)
    assert boxes[1][2] == pytest.approx(50 * MAX_CELL_RATIO)
    assert boxes[1][0] == pytest.approx(1000 - (boxes[3][0] + boxes[3][2]))


@pytest.mark.usefixtures("display")
def test_the_map_draws_the_given_doors_opened_with_their_numbers_large() -> None:
    from kivy.app import App
    from kivy.clock import Clock
    from kivy.core.window import Window

    from kiosk_ui.doormap import DoorMap

    asked: list[Any] = []
    seen: dict[str, Any] = {}

    class MapApp(App):  # type: ignore[misc]
        def build(self) -> DoorMap:
            # No layout yet: the map asks for it when it has doors to show.
            self.map = DoorMap(fetch=asked.append)
            return self.map

    app = MapApp()

    def steps(_dt: float) -> None:
        door_map = app.map
        door_map.update({37, 96})
        seen["asked"] = len(asked)
        seen["empty"] = dict(door_map.shown)
        asked[0](CABINET)  # lockerd's answer
        seen["shown"] = dict(door_map.shown)
        seen["marked"] = set(door_map.accessible)
        seen["callouts"] = dict(door_map.callouts)
        seen["boxes"] = dict(door_map.boxes)
        Clock.schedule_once(lambda _dt: (shot("33-door-map-96-doors"), app.stop()), 0.3)

    Window.size = (800, 480)
    Clock.schedule_once(steps, 0.5)
    app.run()
    assert seen["asked"] == 1 and seen["empty"] == {}
    assert {n for n, what in seen["shown"].items() if what == "opened"} == {37, 96}
    assert len(seen["shown"]) == 96
    assert seen["marked"] == {96}  # the low bay opened: the wheelchair sign
    callouts, boxes = seen["callouts"], seen["boxes"]
    assert set(callouts) == {37, 96}
    cabinet_left = min(b[0] for b in boxes.values())
    cabinet_right = max(b[0] + b[2] for b in boxes.values())
    assert callouts[37][0] + callouts[37][2] < cabinet_left  # 37: left half, number left
    assert callouts[96][0] > cabinet_right
    for number in (37, 96):  # larger than a door: read from a step back
        assert callouts[number][3] > 2 * boxes[number][3]
