"""The screen's pictures, drawn by the project with Kivy's canvas (no image files): scan
here, type your code, door open, close the door, thank you, go to the service desk, out
of service, wrong code, please wait, the accessible mode's wheelchair, the wordmark.

Each is drawn in the largest square of its widget (coordinates 0-1 of that square), and
redrawn when the widget moves or is resized.

Imported only once Kivy's window is configured (see `app.build_app`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from kivy.graphics import Color, Ellipse, Line, Rectangle, RoundedRectangle, Triangle
from kivy.properties import StringProperty
from kivy.uix.widget import Widget

from kiosk_ui.theme import RGB, Theme, rgba

KINDS = (
    "scan",
    "keypad",
    "door_open",
    "close_door",
    "thanks",
    "service_desk",
    "out_of_service",
    "wrong",
    "wait",
    "wheelchair",
    "wordmark",
)


class Pen:
    """Draws in a square of side `s` at (x, y): every coordinate and width is 0-1."""

    def __init__(self, x: float, y: float, s: float) -> None:
        self.x, self.y, self.s = x, y, s

    def p(self, u: float, v: float) -> tuple[float, float]:
        return self.x + u * self.s, self.y + v * self.s

    def colour(self, c: RGB) -> None:
        Color(*rgba(c))

    def box(self, u: float, v: float, w: float, h: float, r: float = 0.0) -> None:
        pos, size = self.p(u, v), (w * self.s, h * self.s)
        if r:
            RoundedRectangle(pos=pos, size=size, radius=[r * self.s])
        else:
            Rectangle(pos=pos, size=size)

    def frame(self, u: float, v: float, w: float, h: float, width: float, r: float = 0.0) -> None:
        x, y = self.p(u, v)
        Line(
            rounded_rectangle=(x, y, w * self.s, h * self.s, max(r * self.s, 1)),
            width=width * self.s,
        )

    def disc(self, u: float, v: float, r: float) -> None:
        x, y = self.p(u - r, v - r)
        Ellipse(pos=(x, y), size=(2 * r * self.s, 2 * r * self.s))

    def ring(
        self, u: float, v: float, r: float, width: float, arc: tuple[int, int] = (0, 360)
    ) -> None:
        x, y = self.p(u, v)
        Line(circle=(x, y, r * self.s, arc[0], arc[1]), width=width * self.s)

    def line(self, points: list[float], width: float) -> None:
        flat: list[float] = []
        for i in range(0, len(points), 2):
            flat.extend(self.p(points[i], points[i + 1]))
        Line(points=flat, width=width * self.s, cap="round", joint="round")

    def tri(self, points: list[float]) -> None:
        flat: list[float] = []
        for i in range(0, 6, 2):
            flat.extend(self.p(points[i], points[i + 1]))
        Triangle(points=flat)

    def arrow(self, u: float, v: float, angle: float, length: float, width: float) -> None:
        """An arrow from (u, v) pointing at `angle` degrees (0 = right, 90 = up)."""
        a = math.radians(angle)
        dx, dy = math.cos(a), math.sin(a)
        tip = (u + dx * length, v + dy * length)
        head = width * 2.6
        base = (tip[0] - dx * head, tip[1] - dy * head)
        self.line([u, v, base[0], base[1]], width)
        nx, ny = -dy * head * 0.8, dx * head * 0.8
        self.tri([tip[0], tip[1], base[0] + nx, base[1] + ny, base[0] - nx, base[1] - ny])


def _scan(pen: Pen, t: Theme, side: str) -> None:
    # A phone showing a QR code, and an arrow to where the scanner is.
    pen.colour(t.ink)
    pen.box(0.3, 0.12, 0.4, 0.76, 0.06)
    pen.colour(t.card)
    pen.box(0.34, 0.2, 0.32, 0.6, 0.02)
    pen.colour(t.ink)
    for u, v in ((0.37, 0.55), (0.51, 0.55), (0.37, 0.35)):
        pen.frame(u, v + 0.02, 0.11, 0.11, 0.018)
        pen.box(u + 0.035, v + 0.055, 0.04, 0.04)
    for u, v in ((0.52, 0.36), (0.58, 0.42), (0.54, 0.46), (0.6, 0.34)):
        pen.box(u, v, 0.04, 0.04)
    pen.colour(t.accent)
    angle = {"left": 180.0, "right": 0.0, "below": -90.0}.get(side)
    if angle is not None:
        start = {"left": (0.26, 0.5), "right": (0.74, 0.5), "below": (0.5, 0.1)}[side]
        pen.arrow(start[0], start[1], angle, 0.24 if side != "below" else 0.1, 0.035)


def _keypad(pen: Pen, t: Theme, _side: str) -> None:
    pen.colour(t.ink)
    pen.box(0.22, 0.06, 0.56, 0.88, 0.07)
    pen.colour(t.card)
    pen.box(0.28, 0.72, 0.44, 0.14, 0.03)
    for row in range(4):
        for col in range(3):
            pen.colour(t.accent if (row, col) == (3, 2) else t.card)
            pen.box(0.28 + col * 0.155, 0.12 + row * 0.145, 0.13, 0.115, 0.025)


def _cabinet(pen: Pen, t: Theme) -> None:
    pen.colour(t.ink)
    pen.frame(0.14, 0.08, 0.62, 0.84, 0.03, 0.04)
    pen.line([0.45, 0.08, 0.45, 0.92], 0.015)
    pen.line([0.14, 0.5, 0.76, 0.5], 0.015)


def _door_open(pen: Pen, t: Theme, _side: str) -> None:
    _cabinet(pen, t)
    pen.colour(t.accent)
    pen.box(0.46, 0.51, 0.29, 0.4)
    pen.colour(t.ink)
    # The door swung towards the viewer, hinged on the right.
    pen.line([0.76, 0.51, 0.92, 0.58, 0.92, 0.98, 0.76, 0.91, 0.76, 0.51], 0.025)
    pen.disc(0.895, 0.78, 0.02)


def _close_door(pen: Pen, t: Theme, _side: str) -> None:
    _cabinet(pen, t)
    pen.colour(t.accent)
    pen.box(0.46, 0.51, 0.29, 0.4)
    pen.colour(t.ink)
    pen.line([0.76, 0.51, 0.86, 0.56, 0.86, 0.96, 0.76, 0.91, 0.76, 0.51], 0.025)
    pen.colour(t.heading)
    pen.ring(0.76, 0.7, 0.2, 0.03, (20, 110))  # the push that closes it
    pen.tri([0.59, 0.76, 0.66, 0.84, 0.68, 0.71])


def _badge(pen: Pen, c: RGB) -> None:
    pen.colour(c)
    pen.disc(0.5, 0.5, 0.42)


def _thanks(pen: Pen, t: Theme, _side: str) -> None:
    _badge(pen, t.success)
    pen.colour(t.on_success)
    pen.line([0.3, 0.52, 0.44, 0.37, 0.72, 0.66], 0.06)


def _wrong(pen: Pen, t: Theme, _side: str) -> None:
    _badge(pen, t.danger)
    pen.colour(t.on_danger)
    pen.line([0.34, 0.34, 0.66, 0.66], 0.06)
    pen.line([0.34, 0.66, 0.66, 0.34], 0.06)


def _service_desk(pen: Pen, t: Theme, _side: str) -> None:
    # A person behind a counter, an arrow towards it.
    pen.colour(t.heading)
    pen.disc(0.62, 0.72, 0.1)
    pen.box(0.5, 0.42, 0.24, 0.2, 0.08)
    pen.colour(t.ink)
    pen.box(0.36, 0.16, 0.56, 0.28, 0.03)
    pen.colour(t.accent)
    pen.arrow(0.06, 0.3, 0.0, 0.26, 0.04)


def _out_of_service(pen: Pen, t: Theme, _side: str) -> None:
    pen.colour(t.accent)
    pen.tri([0.5, 0.92, 0.06, 0.12, 0.94, 0.12])
    pen.colour(t.on_accent)
    pen.line([0.5, 0.66, 0.5, 0.38], 0.06)
    pen.disc(0.5, 0.25, 0.045)


def _wait(pen: Pen, t: Theme, _side: str) -> None:
    pen.colour(t.heading)
    pen.line([0.28, 0.9, 0.72, 0.9], 0.04)
    pen.line([0.28, 0.1, 0.72, 0.1], 0.04)
    pen.line([0.32, 0.9, 0.32, 0.82, 0.68, 0.18, 0.68, 0.1], 0.03)
    pen.line([0.68, 0.9, 0.68, 0.82, 0.32, 0.18, 0.32, 0.1], 0.03)
    pen.colour(t.accent)
    pen.tri([0.36, 0.14, 0.64, 0.14, 0.5, 0.36])


def _wheelchair(pen: Pen, t: Theme, _side: str) -> None:
    # The International Symbol of Access, simplified.
    pen.colour(t.on_accent)
    pen.disc(0.46, 0.86, 0.08)
    pen.line([0.44, 0.72, 0.42, 0.46, 0.68, 0.46, 0.8, 0.2, 0.9, 0.24], 0.06)
    pen.line([0.42, 0.6, 0.62, 0.6], 0.05)
    pen.ring(0.4, 0.34, 0.24, 0.05, (60, 330))


def _wordmark(pen: Pen, t: Theme, _side: str) -> None:
    # The project's logo: a cabinet of four doors, one open in the accent colour.
    pen.colour(t.primary)
    pen.box(0.04, 0.04, 0.92, 0.92, 0.16)
    pen.colour(t.on_primary)
    for u, v in ((0.18, 0.18), (0.52, 0.18), (0.18, 0.52)):
        pen.box(u, v, 0.3, 0.3, 0.05)
    pen.colour(t.accent)
    pen.box(0.52, 0.52, 0.3, 0.3, 0.05)


DRAW: dict[str, Callable[[Pen, Theme, str], None]] = {
    "scan": _scan,
    "keypad": _keypad,
    "door_open": _door_open,
    "close_door": _close_door,
    "thanks": _thanks,
    "service_desk": _service_desk,
    "out_of_service": _out_of_service,
    "wrong": _wrong,
    "wait": _wait,
    "wheelchair": _wheelchair,
    "wordmark": _wordmark,
}


class Picture(Widget):  # type: ignore[misc]  # Kivy ships no types
    """One of the `KINDS`, drawn in the largest square of the widget ("" draws nothing)."""

    kind = StringProperty("")

    def __init__(self, theme: Theme, side: str = "right", **kwargs: Any) -> None:
        self.theme = theme
        self.side = side
        super().__init__(**kwargs)
        self.bind(pos=self.redraw, size=self.redraw, kind=self.redraw)

    def redraw(self, *_args: Any) -> None:
        self.canvas.clear()
        if not self.kind:
            return
        s = min(self.width, self.height)
        x = self.x + (self.width - s) / 2
        y = self.y + (self.height - s) / 2
        with self.canvas:
            DRAW[self.kind](Pen(x, y, s), self.theme, self.side)
