"""The maintenance diagnostic screen, behind the technician PIN.

A grid of compartments laid out as the cabinet's columns and rows (lockerd's
`layout`, as the door map draws it), coloured by state (red for a fault, grey
out of service) with open doors marked, a legend of the colours and the last
hour's alarms on a time line below it; the selected compartment's details with
test-open (confirmed by a second tap when the compartment may hold an order)
and the service toggle; every board on a line of its own with its error count,
those of the last hour and the time of its last frame, and the last frames of
the selected compartment's board; the platform link and the outbox; recent
alarms and events, each naming its board or compartment; the software version;
along the bottom, the machine itself (epoch, disk space, CPU temperature,
power, uptime, and the replica), a reading to act on in red.
Everything comes from lockerd's `diagnostics` request with the session token,
sent through the app's request worker (the screen keeps drawing while lockerd
answers); the screen closes itself after two idle minutes
so it is never left open for the next shopper.

Imported only once Kivy's window is configured (see `app.build_app`).
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kivy.clock import Clock
from kivy.core.window import Window
from kivy.graphics import Color, Line, Rectangle
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.screenmanager import Screen
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget
from kivy.utils import escape_markup

from kiosk_ui.audit import audit_row, frame, hms, local_time, named
from kiosk_ui.client import ApiUnavailable
from kiosk_ui.doormap import cell_boxes
from kiosk_ui.machine import machine_lines
from kiosk_ui.theme import AA, SUCCESS, min_target_px, rgba
from kiosk_ui.voice_controls import VoiceControls
from kiosk_ui.worker import Failure, Result
from locker.config_layout import Cell, Layout

if TYPE_CHECKING:
    from kiosk_ui.kiosk import KioskApp

IDLE_S = 120.0
LARGE_GRID = 48
FALLBACK_ROWS = 10  # a lockerd that gives no layout: columns of ten, in number order
TIMELINE_S = 3600.0  # the alarms' time line: the last hour
REFRESH_S = 1.0
# A dark screen (a technician's tool, not the shoppers' light page); every text on it
# reads at WCAG AA (4.5:1), checked by tests/kiosk/test_theme.py.
BACKGROUND = (0.0, 0.0, 0.0, 1)
BUTTON_FACE = (0.27, 0.30, 0.35, 1)
BUTTON_PRESSED = (0.14, 0.16, 0.19, 1)  # a touch seen in the next frame
COLOURS = {
    "free": rgba(SUCCESS),
    "reserved": (0.2, 0.42, 0.78, 1),
    "loaded": (0.86, 0.56, 0.12, 1),
    "retrieval": (0.55, 0.32, 0.72, 1),
    "out_of_service": (0.42, 0.42, 0.42, 1),
    "fault": (0.82, 0.14, 0.14, 1),
}
# The legend's chips, in the order a compartment goes through them; "open": a door open.
LEGEND = ("free", "reserved", "loaded", "retrieval", "out_of_service", "fault", "open")
LEGEND_H = 18
LEGEND_OPEN_BACKGROUND = (0.15, 0.15, 0.15, 1)  # the open door's yellow, on no state's colour
# Compartments that may hold an order: a test-open there needs a second tap.
EMPTY_STATES = ("free", "out_of_service")
LIGHT_TEXT = (1.0, 1.0, 1.0, 1)
DARK_TEXT = (0.08, 0.08, 0.08, 1)
OPEN_TEXT = (1.0, 0.92, 0.2, 1)
WARN_RGBA = (1.0, 0.4, 0.4, 1)
WARN = "ff6666"  # the markup colour of what needs a technician: offline boards, alarms
MIN_CONTRAST = AA  # the cells' and chips' text is small: WCAG's 4.5:1, not large text's 3:1


def wrapped(**kwargs: Any) -> Label:
    """A label whose text wraps inside its box, aligned top-left."""
    label = Label(**{"halign": "left", "valign": "top", "markup": True, **kwargs})
    label.bind(size=lambda w, s: setattr(w, "text_size", s))
    return label


def _luminance(colour: tuple[float, ...]) -> float:
    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in colour[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """WCAG contrast ratio of two colours, 1 to 21."""
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def cell_text_colour(background: tuple[float, ...], door_open: bool) -> tuple[float, ...]:
    """An open door stands out in yellow where yellow reads well on the state's colour
    (not on the amber of a loaded compartment); otherwise light or dark text, whichever
    reads better."""
    if door_open and contrast(OPEN_TEXT, background) >= MIN_CONTRAST:
        return OPEN_TEXT
    return max((LIGHT_TEXT, DARK_TEXT), key=lambda c: contrast(c, background))


def themed(button: Button) -> Button:
    """A flat button in the screen's colours, darker while pressed."""
    button.background_normal = button.background_down = ""
    button.background_disabled_normal = button.background_disabled_down = ""
    button.color = LIGHT_TEXT

    def paint(*_args: Any) -> None:
        button.background_color = BUTTON_PRESSED if button.state == "down" else BUTTON_FACE

    button.bind(state=paint)
    paint()
    return button


def fallback_layout(numbers: list[int]) -> Layout:
    """Columns of ten in number order: what the grid shows when lockerd gives no layout
    (an older lockerd) or one without these compartments."""
    cells = tuple(
        Cell(n, i // FALLBACK_ROWS + 1, i % FALLBACK_ROWS + 1)
        for i, n in enumerate(sorted(numbers))
    )
    rows = min(FALLBACK_ROWS, len(cells))
    return Layout(math.ceil(len(cells) / FALLBACK_ROWS), rows, cells)


class CabinetGrid(Widget):  # type: ignore[misc]  # Kivy ships no types
    """The compartments' buttons where their doors are on the cabinet: `cols` and `rows`
    are the cabinet's, each button in its cell (`cell_boxes`, as on the door map)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layout = Layout()
        self.buttons: dict[int, Button] = {}
        self.bind(pos=self.place, size=self.place)

    @property
    def cols(self) -> int:
        return self.layout.columns

    def set_cells(self, layout: Layout, buttons: dict[int, Button]) -> None:
        self.clear_widgets()
        self.layout, self.buttons = layout, buttons
        for button in buttons.values():
            button.size_hint = (None, None)
            self.add_widget(button)
        self.place()

    def place(self, *_args: Any) -> None:
        boxes = cell_boxes(self.layout, (self.x, self.y, self.width, self.height), gap=3)
        for number, (x, y, w, h) in boxes.items():
            button = self.buttons.get(number)
            if button is not None:
                button.pos, button.size = (x, y), (w, h)


class AlarmTimeline(Widget):  # type: ignore[misc]  # Kivy ships no types
    """The last hour as a bar, now at its right end, a red mark at each alarm's moment:
    a burst of alarms, or one an hour old, is seen at a glance."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marks: list[float] = []  # where each alarm is on the bar, 0 (an hour ago) to 1
        self.bind(pos=self.draw, size=self.draw)

    def show(self, now: float, alarms: list[float]) -> None:
        self.marks = [1 - (now - at) / TIMELINE_S for at in alarms if 0 <= now - at <= TIMELINE_S]
        self.draw()

    def draw(self, *_args: Any) -> None:
        self.canvas.clear()
        mid = self.y + self.height / 2
        with self.canvas:
            Color(0.55, 0.55, 0.55, 1)
            Line(points=[self.x, mid, self.right, mid], width=1.2)
            for quarter in range(5):  # a tick each quarter of an hour
                x = self.x + self.width * quarter / 4
                Line(points=[x, mid - 3, x, mid + 3], width=1)
            Color(*WARN_RGBA)
            for mark in self.marks:
                x = self.x + self.width * mark
                Rectangle(pos=(x - 2, self.y + 1), size=(4, self.height - 2))


def _frame_time(line: str) -> str:
    """When a frame went over the wire ('1795601699.578 > 02 00 …'), HH:MM:SS."""
    try:
        return hms(float(line.partition(" ")[0]))
    except ValueError:
        return "?"


def _ignore(_reply: Result | Failure) -> None:
    """A logout's reply: if lockerd cannot be told, the session ends by itself on its side."""


class MaintenanceScreen(Screen):  # type: ignore[misc]  # Kivy ships no types
    """The technician's screen: diagnostics refreshed each second, test-open, service."""

    def __init__(self, app: KioskApp, **kwargs: Any) -> None:
        super().__init__(name="maintenance", **kwargs)
        self.app = app
        self.token: str | None = None
        self.diag: dict[str, Any] = {}
        self.fetching = False  # diagnostics asked for: the next refresh waits for them
        self.acting = False  # a test-open or service change is with lockerd
        self.selected: int | None = None
        self.cells: dict[int, Button] = {}
        self.layout: Layout | None = None  # lockerd's `layout`, asked for on entering
        self.last_touch = time.monotonic()
        self.notice: tuple[str, dict[str, Any]] | None = None
        self.confirming: int | None = None  # a test-open waiting for its second tap

        with self.canvas.before:  # the screen's own dark page, whatever the window's colour
            Color(*BACKGROUND)
            page = Rectangle()
        self.bind(
            pos=lambda _w, p: setattr(page, "pos", p), size=lambda _w, sz: setattr(page, "size", sz)
        )
        root = BoxLayout(orientation="vertical", padding=6, spacing=6)
        # The rows of buttons are 9 mm high on this panel (`fit`), whatever its pixels.
        top = BoxLayout(size_hint_y=None, spacing=6)
        self.status = wrapped(font_size="14sp", valign="middle")
        self.exit = themed(
            Button(font_size="18sp", size_hint_x=0.14, on_release=lambda *_: self.leave())
        )
        self.language = themed(
            Button(font_size="16sp", size_hint_x=0.12, on_release=lambda *_: self.toggle_language())
        )
        top.add_widget(self.status)
        top.add_widget(self.language)
        top.add_widget(self.exit)
        body = BoxLayout(spacing=8)
        left = BoxLayout(orientation="vertical", spacing=3, size_hint_x=0.52)
        self.grid = CabinetGrid()
        # The colours' legend, one chip a state, and the last hour's alarms below it.
        legend = BoxLayout(spacing=3, size_hint_y=None, height=LEGEND_H)
        self.legend: dict[str, Label] = {}
        for state in LEGEND:
            chip = Label(font_size="10sp", bold=state == "open", halign="center")
            colour = COLOURS.get(state, LEGEND_OPEN_BACKGROUND)
            chip.color = OPEN_TEXT if state == "open" else cell_text_colour(colour, False)
            with chip.canvas.before:
                Color(*colour)
                rect = Rectangle()
            chip.bind(
                pos=lambda w, p, r=rect: setattr(r, "pos", p),
                size=lambda w, sz, r=rect: setattr(r, "size", sz),
            )
            legend.add_widget(chip)
            self.legend[state] = chip
        hour = BoxLayout(spacing=6, size_hint_y=None, height=LEGEND_H)
        self.timeline_label = Label(font_size="10sp", size_hint_x=0.3, halign="right")
        self.timeline_label.bind(size=lambda w, sz: setattr(w, "text_size", sz))
        self.timeline = AlarmTimeline()
        hour.add_widget(self.timeline_label)
        hour.add_widget(self.timeline)
        # On/off, volume and a test prompt, acting on the app's voice at once.
        self.voice = VoiceControls(app.voice, app.texts, size_hint_y=None)
        for w in self.voice.children:
            if isinstance(w, Button):
                themed(w)
        for w in (self.grid, legend, hour, self.voice):
            left.add_widget(w)
        side = BoxLayout(orientation="vertical", spacing=4, size_hint_x=0.48)
        self.detail = wrapped(font_size="14sp", size_hint_y=0.18)
        actions = BoxLayout(spacing=6, size_hint_y=None)
        self.test_open = themed(Button(font_size="16sp", on_release=lambda *_: self.do_test_open()))
        self.service = themed(
            Button(font_size="16sp", on_release=lambda *_: self.do_toggle_service())
        )
        actions.add_widget(self.test_open)
        actions.add_widget(self.service)
        # Every board has a line; a cabinet with more boards than fit scrolls.
        self.boards = Label(
            font_size="12sp", markup=True, halign="left", valign="top", size_hint_y=None
        )
        self.boards.bind(
            width=lambda w, width: setattr(w, "text_size", (width, None)),
            texture_size=lambda w, size: setattr(w, "height", size[1]),
        )
        self.boards_view = ScrollView(size_hint_y=0.24, do_scroll_x=False, bar_width=6)
        self.boards_view.add_widget(self.boards)
        # Three alarms and five events (ten lines) fit above the machine's lines, three of
        # them when the replica fails with a long path (tests/kiosk/test_kiosk_machine.py).
        self.events = wrapped(font_size="12sp", size_hint_y=0.46)
        for w in (self.detail, actions, self.boards_view, self.events):
            side.add_widget(w)
        body.add_widget(left)
        body.add_widget(side)
        # As high as its lines need (two, three with a long replica failure): the grid
        # and the side column share what is left.
        self.machine = Label(
            font_size="12sp", markup=True, halign="left", valign="top", size_hint_y=None
        )
        self.machine.bind(
            width=lambda w, width: setattr(w, "text_size", (width, None)),
            texture_size=lambda w, size: setattr(w, "height", size[1]),
        )
        root.add_widget(top)
        root.add_widget(body)
        root.add_widget(self.machine)
        self.add_widget(root)
        self.rows = (top, actions, self.voice)
        self.bind(size=self.fit)  # the screen is the window's size
        self.fit()

    def fit(self, *_args: Any) -> None:
        """Each row of buttons 9 mm high on the configured panel at the window's size."""
        target = min_target_px(Window.size, self.app.settings.panel_diagonal_in)
        for row in self.rows:
            row.height = target

    # -- session -----------------------------------------------------------------------

    def enter(self, token: str) -> None:
        self.token = token
        self.selected = None
        self.notice = None
        self.confirming = None
        self.acting = False
        self.last_touch = time.monotonic()
        self.fetch_layout()
        self.refresh(0)
        Clock.schedule_interval(self.refresh, REFRESH_S)

    def fetch_layout(self) -> None:
        """Ask lockerd where each compartment is (asked again on each entry: a lockerd
        restarted with another [cabinet] is drawn as it is now)."""

        def fetched(layout: Result) -> None:
            try:
                self.layout = Layout.from_dict(layout)
            except (KeyError, TypeError, ValueError):  # an older lockerd: columns of ten
                self.layout = None
            self.cells = {}  # laid out again at the next drawing
            if self.diag:
                self.render()

        def failed(_exc: Failure) -> None:  # the grid falls back to columns of ten
            self.layout = None

        self.app.worker.request("layout", fetched, failed)

    def leave(self) -> None:
        Clock.unschedule(self.refresh)
        if self.token is not None:
            self.app.worker.request("logout", _ignore, _ignore, token=self.token)
        self.token = None
        self.diag = {}
        self.app.show("welcome")

    def on_touch_down(self, touch: Any) -> Any:
        self.last_touch = time.monotonic()
        return super().on_touch_down(touch)

    def refresh(self, _dt: float) -> None:
        if self.token is None:
            return
        if time.monotonic() - self.last_touch > IDLE_S:
            self.leave()
            return
        if self.fetching:  # a slow lockerd gets one request at a time, not a queue of them
            return
        self.fetching = True
        token = self.token

        def fetched(diag: Result) -> None:
            self.fetching = False
            if self.token == token:  # not left (or left and entered again) meanwhile
                self.diag = diag
                self.render()

        def failed(exc: Failure) -> None:
            self.fetching = False
            if self.token != token:
                return
            if isinstance(exc, ApiUnavailable):
                self.app.show("offline")
                Clock.unschedule(self.refresh)
                self.token = None
            else:  # the session ended (lockerd restarted, or timed out)
                self.token = None
                self.leave()

        self.app.worker.request("diagnostics", fetched, failed, token=token)

    # -- actions -----------------------------------------------------------------------

    def select(self, number: int) -> None:
        self.selected = number
        self.notice = None
        self.confirming = None
        self.render()

    def _act(self, op: str, done_key: str, **fields: Any) -> None:
        number = self.selected
        self.acting = True
        self.notice = ("please_wait", {})
        self.render()

        def done(_result: Result) -> None:
            self.acting = False
            self.notice = (done_key, {"number": number})
            self.refresh(0)

        def failed(exc: Failure) -> None:
            self.acting = False
            # lockerd's reason is English: the screen says it generically.
            self.notice = (
                ("offline", {}) if isinstance(exc, ApiUnavailable) else ("action_refused", {})
            )
            self.refresh(0)

        self.app.worker.request(op, done, failed, token=self.token, compartment=number, **fields)

    def do_test_open(self) -> None:
        comp = self._compartment(self.selected)
        if comp is None or self.acting:  # one action at a time: a second tap is not queued
            return
        if comp["state"] not in EMPTY_STATES and self.confirming != comp["number"]:
            # A loaded compartment opened by mistake is an order out in the open.
            self.confirming = comp["number"]
            self.notice = ("test_open_confirm", {"number": comp["number"]})
            self.render()
            return
        self.confirming = None
        self._act("test_open", "test_opened")

    def do_toggle_service(self) -> None:
        comp = self._compartment(self.selected)
        if comp is not None and not self.acting:
            now_in = not comp["in_service"]
            self._act(
                "set_service",
                "put_in_service" if now_in else "taken_out",
                in_service=now_in,
                reason="maintenance screen",
            )

    def toggle_language(self) -> None:
        self.app.toggle_language()
        self.voice.refresh()
        self.render()

    def _compartment(self, number: int | None) -> dict[str, Any] | None:
        for c in self.diag.get("compartments", []):
            if c["number"] == number:
                found: dict[str, Any] = c
                return found
        return None

    # -- drawing -----------------------------------------------------------------------

    def render(self) -> None:
        t, d = self.app.texts.t, self.diag
        if not d:
            return
        link = t("mqtt_on") if d["mqtt_connected"] else t("mqtt_off")
        synced = d.get("clock_synchronised")
        clock = "clock_unknown" if synced is None else "clock_ok" if synced else "clock_bad"
        self.status.text = "  ·  ".join(
            [
                t("maintenance_title", locker=d["locker_id"], version=d["version"]),
                link,
                self.app.texts.n("outbox", d["outbox"], n=d["outbox"]),
                t(clock, time=local_time(d["time"])),
            ]
        )
        self.exit.text = t("exit")
        self.language.text = t("language")
        self.voice.refresh()
        self._render_grid(d["compartments"])
        self._render_legend(d)
        self._render_detail()
        self.boards.text = self._boards_text(d)
        self.events.text = self._events_text(d)
        self.machine.text = self._machine_text(d)

    def _render_grid(self, compartments: list[dict[str, Any]]) -> None:
        t = self.app.texts.t
        numbers = [c["number"] for c in compartments]
        large = len(numbers) > LARGE_GRID  # two CU48 boards and more: smaller cells
        if sorted(self.cells) != sorted(numbers):
            layout = self.layout
            if layout is None or {c.number for c in layout.cells} != set(numbers):
                layout = fallback_layout(numbers)
            font_size = "11sp" if large else "14sp"
            self.cells = {}
            for n in numbers:
                cell = Button(font_size=font_size, background_normal="", halign="center")
                cell.bind(on_release=lambda _b, n=n: self.select(n))
                self.cells[n] = cell
            self.grid.set_cells(layout, self.cells)
        for c in compartments:
            cell = self.cells[c["number"]]
            state = "fault" if c["fault"] else c["state"]
            cell.background_color = COLOURS.get(state, COLOURS["fault"])
            label = str(c["number"]) if large else f"{c['number']} {c['size']}"
            selected = c["number"] == self.selected
            lines = [f"[{label}]" if selected else label]
            if c["door"] == "open":
                lines.append(t("door_open_short"))
            cell.text = "\n".join(lines)
            cell.bold = selected or c["door"] == "open"
            cell.color = cell_text_colour(cell.background_color, c["door"] == "open")

    def _render_legend(self, d: dict[str, Any]) -> None:
        t = self.app.texts.t
        for state, chip in self.legend.items():
            chip.text = t("door_open_short") if state == "open" else t(f"state_{state}")
            chip.texture_update()
            chip.size_hint_x = chip.texture_size[0] + 6  # each chip as wide as its words
        self.timeline_label.text = t("alarms_last_hour")
        try:
            now = datetime.fromisoformat(d["time"].replace("Z", "+00:00")).timestamp()
        except ValueError:
            now = time.time()
        self.timeline.show(now, [a["at"] for a in d["alarms"]])

    def _render_detail(self) -> None:
        t = self.app.texts.t
        comp = self._compartment(self.selected)
        confirming = comp is not None and self.confirming == comp["number"]
        self.test_open.text = t("confirm_open") if confirming else t("test_open")
        if comp is None:
            self.detail.text = t("select_compartment") + self._notice_text()
            self.service.text = t("take_out")
            self.test_open.disabled = self.service.disabled = True
            return
        self.test_open.disabled = self.service.disabled = False
        self.service.text = t("put_in") if not comp["in_service"] else t("take_out")
        texts = self.app.texts
        door = named(texts, "door", comp["door"])
        fault = t("fault_line", fault=named(texts, "fault", comp["fault"])) if comp["fault"] else ""
        self.detail.text = (
            t(
                "compartment_line",
                number=comp["number"],
                size=comp["size"],
                state=t(f"state_{comp['state']}"),
                door=door,
                board=comp["board"],
            )
            + (f"  {fault}" if fault else "")
            + self._notice_text()
        )

    def _notice_text(self) -> str:
        """The last action's outcome, in the language shown now."""
        if self.notice is None:
            return ""
        key, values = self.notice
        text: str = self.app.texts.t(key, **values)
        return "\n" + text

    def _boards_text(self, d: dict[str, Any]) -> str:
        """One line a board (so every board shows, however many), the driver's words when
        it is offline, and the last frames of the selected compartment's board."""
        texts = self.app.texts
        comp = self._compartment(self.selected)
        lines = [f"[b]{texts.t('boards')}[/b]"]
        for b in d["boards"]:
            online = b["online"]
            status = (
                texts.t("online") if online else f"[color={WARN}]{texts.t('offline_board')}[/color]"
            )
            line = texts.n(
                "board_line",
                b["errors"],
                name=escape_markup(b["name"]),
                status=status,
                errors=b["errors"],
            )
            hour = d.get("errors_hour", {}).get(b["name"])
            if hour is not None:  # a lockerd older than the count says nothing of it
                recent = texts.n("errors_hour", hour, errors=hour)
                line += " · " + (f"[color={WARN}]{recent}[/color]" if hour else recent)
            if b["frames"]:
                line += " · " + texts.t("last_frame", time=_frame_time(b["frames"][-1]))
            lines.append(line)
            if b["detail"] and not online:
                lines.append(f"  {escape_markup(b['detail'])}")
            if comp is not None and comp["board"] == b["name"]:
                lines += [f"  {frame(f)}" for f in b["frames"][-3:]]
        if d.get("devices_down"):
            devices = ", ".join(named(texts, "device", name) for name in d["devices_down"])
            lines.append(texts.t("devices_down", devices=devices))
        return "\n".join(lines)

    def _events_text(self, d: dict[str, Any]) -> str:
        texts = self.app.texts
        lines = [f"[b]{texts.t('alarms')}[/b]"]
        alarms = [
            f"[color={WARN}]{escape_markup(audit_row(texts, r))}[/color]" for r in d["alarms"][:3]
        ]
        lines += alarms or [texts.t("none")]
        lines.append(f"[b]{texts.t('recent')}[/b]")
        lines += [escape_markup(audit_row(texts, r)) for r in d["recent"][:5]]
        return "\n".join(lines)

    def _machine_text(self, d: dict[str, Any]) -> str:
        """The machine's readings on one line, the replica's on the next; a reading to act
        on in the warn colour. lockerd's words (a path, an error) are shown as they are."""
        texts = self.app.texts
        rows: list[list[str]] = [[], []]
        for line in machine_lines(texts, d):
            item = texts.t(
                "machine_item", label=escape_markup(line.label), value=escape_markup(line.value)
            )
            if line.warn:
                item = f"[color={WARN}]{item}[/color]"
            rows[1 if line.key.startswith("replica") else 0].append(item)
        return "\n".join("  ·  ".join(row) for row in rows if row)
