"""Where is my door: the cabinet drawn from its layout, the opened doors highlighted.

After a code opens doors, a shopper in front of a 96-door cabinet sees the
cabinet's columns and rows as they stand before it, the opened doors filled in
the accent colour with their numbers large, and a low bay (kept for a customer
in a wheelchair) marked with the wheelchair sign. The layout is lockerd's
(`[cabinet]`, the local API's `layout` op): the kiosk reads no configuration of
lockerd's. `cell_boxes` places the cells; the maintenance grid uses it too.

Imported only once Kivy's window is configured (see `app.build_app`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kivy.core.text import Label as CoreLabel
from kivy.graphics import Color, Ellipse, Line, Rectangle, RoundedRectangle, Triangle
from kivy.uix.widget import Widget

from kiosk_ui.theme import Theme, rgba
from kiosk_ui.worker import Failure, RequestWorker, Result
from locker.config_layout import Layout

Box = tuple[float, float, float, float]  # x, y, width, height
RGBA = tuple[float, float, float, float]

# A door no wider than this many times its height: a cabinet of three columns on a wide
# screen is drawn narrower, not as three long bars.
MAX_CELL_RATIO = 2.5
CALLOUT_SHARE = 0.2  # of the map's width, each side, for the opened doors' large numbers


@dataclass(frozen=True)
class DoorColours:
    """The map's colours; every text/background pair is at least 4.5:1 (WCAG AA), checked
    by tests/kiosk/test_doormap.py. A theme may pass its own."""

    cabinet: RGBA = (0.16, 0.18, 0.21, 1)  # the cabinet's body, around the doors
    door: RGBA = (0.33, 0.36, 0.40, 1)  # a door that stays shut
    door_text: RGBA = (0.93, 0.94, 0.95, 1)
    opened: RGBA = (0.96, 0.65, 0.14, 1)  # the door to go to
    opened_text: RGBA = (0.07, 0.07, 0.07, 1)
    outline: RGBA = (1.0, 1.0, 1.0, 1)  # around an opened door, so it stands out in grey
    low_mark: RGBA = (0.07, 0.07, 0.07, 1)  # the wheelchair sign, on an opened door

    @classmethod
    def from_theme(cls, theme: Theme) -> DoorColours:
        """The opened doors in the store's accent, their numbers and the wheelchair sign
        in the text colour that reads on it (white or near-black, `Theme.on_accent`)."""
        on_accent = rgba(theme.on_accent)
        return cls(opened=rgba(theme.accent), opened_text=on_accent, low_mark=on_accent)


def cell_boxes(layout: Layout, box: Box, gap: float = 2.0) -> dict[int, Box]:
    """Each compartment's rectangle (window coordinates, y up) when the cabinet is drawn in
    `box`: columns of equal width, rows of equal height, row 1 at the top, the whole
    centred; `gap` pixels between doors."""
    x, y, width, height = box
    if not layout.cells or width <= 0 or height <= 0:
        return {}
    unit_h = height / layout.rows
    unit_w = min(width / layout.columns, unit_h * MAX_CELL_RATIO)
    left = x + (width - unit_w * layout.columns) / 2
    top = y + height
    out = {}
    for c in layout.cells:
        cx = left + (c.column - 1) * unit_w
        cy = top - (c.row - 1 + c.height) * unit_h
        out[c.number] = (
            cx + gap / 2,
            cy + gap / 2,
            max(1.0, unit_w - gap),
            max(1.0, unit_h * c.height - gap),
        )
    return out


def fetch_layout(worker: RequestWorker, done: Callable[[Layout | None], None]) -> None:
    """Ask lockerd for the cabinet's layout; `done` gets it on the UI thread, or None when
    lockerd cannot answer (the map stays as it was: the result's text names the doors)."""

    def fetched(reply: Result) -> None:
        try:
            layout = Layout.from_dict(reply)
        except (KeyError, TypeError, ValueError):  # a lockerd that does not know `layout`
            layout = None
        done(layout)

    def failed(_exc: Failure) -> None:
        done(None)  # asked again with the next opened doors

    worker.request("layout", fetched, failed)


class DoorMap(Widget):  # type: ignore[misc]  # Kivy ships no types
    """The cabinet with `highlighted` doors filled and numbered large; the `accessible`
    ones (by default the highlighted low bays) carry the wheelchair sign."""

    def __init__(
        self,
        layout: Layout | None = None,
        highlighted: Iterable[int] = (),
        accessible: Iterable[int] | None = None,
        colours: DoorColours | None = None,
        fetch: Callable[[Callable[[Layout | None], None]], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.layout = layout or Layout()
        # Asks lockerd for the layout when a door to show is not in the one held (none yet,
        # or lockerd restarted with another cabinet); `fetch_layout` with the app's worker.
        self.fetch = fetch
        self.fetching = False
        # Shown only while doors are highlighted: a result without doors keeps the screen.
        self.shown_hint: float | None = kwargs.get("size_hint_y", 1.0)
        self.colours = colours or DoorColours()
        self.highlighted: frozenset[int] = frozenset()
        self.accessible: frozenset[int] = frozenset()
        # What the last drawing shows, by compartment: "opened" or "door" (for the tests,
        # and for anyone asking what the shopper was shown).
        self.shown: dict[int, str] = {}
        self.boxes: dict[int, Box] = {}
        self.callouts: dict[int, Box] = {}  # the opened doors' large numbers
        self.bind(pos=self._redraw, size=self._redraw)
        self.update(highlighted, accessible)

    def set_layout(self, layout: Layout | None) -> None:
        """The layout lockerd gave (None: it could not answer; the next doors ask again)."""
        self.fetching = False
        if layout is not None:
            self.layout = layout
            self.update(self.highlighted)

    def update(self, highlighted: Iterable[int], accessible: Iterable[int] | None = None) -> None:
        """Show these doors opened; `accessible`: the ones to mark as low bays (default:
        the opened doors the layout says are low)."""
        self.highlighted = frozenset(highlighted)
        if accessible is None:
            low = {c.number for c in self.layout.cells if c.low}
            accessible = self.highlighted & low
        self.accessible = frozenset(accessible)
        known = {c.number for c in self.layout.cells}
        if self.fetch is not None and not self.fetching and not self.highlighted <= known:
            self.fetching = True
            self.fetch(self.set_layout)  # redrawn when it comes
        if self.highlighted:
            self.size_hint_y, self.opacity = self.shown_hint, 1
        else:
            self.size_hint_y, self.height, self.opacity = None, 0, 0
        self._redraw()

    def _redraw(self, *_args: Any) -> None:
        colours = self.colours
        # Beside the cabinet, a callout a door: the number as large as a shopper reads it
        # from a step back, its line pointing at the door (a door of a 96-door cabinet is
        # a few millimetres on the screen).
        margin = self.width * CALLOUT_SHARE if self.highlighted else 0.0
        cabinet = (self.x + margin, self.y, self.width - 2 * margin, self.height)
        self.boxes = cell_boxes(self.layout, cabinet)
        self.shown = {n: "opened" if n in self.highlighted else "door" for n in self.boxes}
        self.callouts = {}
        self.canvas.clear()
        if not self.boxes:
            return
        with self.canvas:
            left = min(b[0] for b in self.boxes.values())
            right = max(b[0] + b[2] for b in self.boxes.values())
            Color(*colours.cabinet)
            RoundedRectangle(
                pos=(left - 4, self.y - 2), size=(right - left + 8, self.height + 4), radius=[6]
            )
            for number, (x, y, w, h) in self.boxes.items():
                opened = number in self.highlighted
                Color(*(colours.opened if opened else colours.door))
                Rectangle(pos=(x, y), size=(w, h))
                text = colours.opened_text if opened else colours.door_text
                if h >= 16 and w >= 22:  # its number where it can still be read
                    self._text(str(number), (x, y, w, h), h * 0.55, text, bold=opened)
                if opened:
                    Color(*colours.outline)
                    Line(rectangle=(x - 1, y - 1, w + 2, h + 2), width=1.6)
            self._callouts(left, right, margin)

    def _callouts(self, left: float, right: float, margin: float) -> None:
        """The opened doors' numbers, large, left of the cabinet for its left half's doors
        and right for the others, each at its door's height (pushed apart when two meet)."""
        colours, middle = self.colours, (left + right) / 2
        sides: dict[bool, list[int]] = {True: [], False: []}
        for number in sorted(self.highlighted & set(self.boxes)):
            x, _y, w, _h = self.boxes[number]
            sides[x + w / 2 < middle].append(number)
        for on_left, numbers in sides.items():
            if not numbers:
                continue
            height = min(self.height / len(numbers), max(56.0, self.height * 0.5))
            width = margin - 12
            bx = self.x + 4 if on_left else self.right - 4 - width
            top = self.top
            # From the top down, each below the one above it and at its door if it can be.
            for number in sorted(numbers, key=lambda n: -self.boxes[n][1]):
                x, y, w, h = self.boxes[number]
                want = y + h / 2 + height / 2
                box_top = min(want, top)
                box_top = max(box_top, self.y + height)  # the last ones stay on the map
                top = box_top - height
                box = (bx, box_top - height, width, height - 4)
                self.callouts[number] = box
                # The line ends at the cabinet's side, at the door's row, pointing along
                # it: drawn over other doors it would point at them too. In the accent
                # colour, seen on a light page and on a dark one.
                Color(*colours.opened)
                edge, tip = (left - 5, 7.0) if on_left else (right + 5, -7.0)
                start = bx + width if on_left else bx
                mid = y + h / 2
                Line(points=[start, box_top - height / 2, edge - tip, mid, edge, mid], width=2.5)
                Triangle(points=[edge, mid, edge - tip, mid + 6, edge - tip, mid - 6])
                Color(*colours.opened)
                RoundedRectangle(pos=box[:2], size=box[2:], radius=[8])
                mark = number in self.accessible
                side = min(box[3] * 0.8, box[2] * 0.35)
                pad = box[2] * 0.06
                text_box = (box[0] + pad, box[1], box[2] - 2 * pad - (side if mark else 0), box[3])
                size = box[3] * 0.75
                self._text(str(number), text_box, size, colours.opened_text, bold=True)
                if mark:
                    self._wheelchair(
                        box[0] + box[2] - side - pad, box[1] + (box[3] - side) / 2, side
                    )

    def _text(self, text: str, box: Box, size: float, colour: RGBA, bold: bool = False) -> None:
        """`text` centred in `box`, shrunk to fit its width."""
        x, y, w, h = box
        label = CoreLabel(text=text, font_size=size, bold=bold)
        label.refresh()
        tw, th = label.texture.size
        if tw > w and tw > 0:
            scale = w / tw
            tw, th = tw * scale, th * scale
        Color(*colour)
        Rectangle(texture=label.texture, pos=(x + (w - tw) / 2, y + (h - th) / 2), size=(tw, th))

    def _wheelchair(self, x: float, y: float, side: float) -> None:
        """The international symbol of access, drawn: a head, a seated body, a wheel."""
        Color(*self.colours.low_mark)
        head = side * 0.16
        Ellipse(pos=(x + side * 0.36, y + side * 0.80), size=(head, head))
        width = max(1.2, side * 0.07)
        # back down to the seat, then forward to the knee and down to the foot
        Line(
            points=[
                x + side * 0.44,
                y + side * 0.74,
                x + side * 0.44,
                y + side * 0.42,
                x + side * 0.72,
                y + side * 0.42,
                x + side * 0.86,
                y + side * 0.12,
            ],
            width=width,
        )
        Line(
            points=[x + side * 0.44, y + side * 0.62, x + side * 0.66, y + side * 0.62], width=width
        )
        Line(
            circle=(x + side * 0.40, y + side * 0.32, side * 0.28, 60, 330),
            width=width,
        )
