"""The shoppers' and staff's screens, laid out: welcome, staff, keypad, result, please
wait, out of service. The texts are set by the app (`KioskApp.refresh_texts`), in the
language shown; this module only builds the widgets, styles them from the theme
(`theme.py`) and wires their touches.

The accessible mode (`Widgets.arrange(True)`) moves every control of the shoppers'
screens into the lower half (within reach from a wheelchair), enlarges the text and,
on the keypad, lays the keys out in two wide rows.

Imported only once Kivy's window is configured (see `app.build_app`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from kivy.animation import Animation
from kivy.graphics import Color, Line, Rectangle, RoundedRectangle
from kivy.properties import NumericProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.image import Image
from kivy.uix.label import Label
from kivy.uix.screenmanager import Screen, ScreenManager
from kivy.uix.widget import Widget

from kiosk_ui.art import Picture
from kiosk_ui.doormap import DoorColours, DoorMap, fetch_layout
from kiosk_ui.theme import Theme, rgba

if TYPE_CHECKING:
    from kiosk_ui.kiosk import KioskApp

KEYPAD_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "backspace", "0", "ok")
WORD_KEYS = ("backspace", "ok", "clear")  # keys labelled with a text, not a digit
# A button's face and its text, normal and pressed: pairs of `Theme.pairs`.
BUTTON_KINDS = {
    "primary": ("primary", "primary_pressed"),
    "secondary": ("card_heading", "card_pressed_heading"),
    "accent": ("accent", "primary"),
}
CONTROL_ROW = 64  # px: the height of a row of controls (9 mm is 48 px on a 7" 800x480)


class Look:
    """Makes the themed widgets and remembers their type sizes, so the accessible mode can
    enlarge every text at once."""

    def __init__(self, theme: Theme) -> None:
        self.theme = theme
        self.sized: list[tuple[Widget, float]] = []
        self.scale = 1.0

    def text(self, size: float, pair: str = "page_ink", bold: bool = False, **kw: Any) -> Label:
        label = Label(**{"halign": "center", "valign": "middle", "bold": bold, **kw})
        label.bind(size=lambda w, s: setattr(w, "text_size", s))
        label.color = self.theme.fg(pair)
        label.theme_pair = pair
        self._size(label, size)
        return label

    def button(self, kind: str, size: float, action: Callable[[], None], **kw: Any) -> Button:
        normal, pressed = BUTTON_KINDS[kind]
        t = self.theme
        button = Button(
            background_normal="",
            background_down="",
            background_color=(0, 0, 0, 0),
            halign="center",
            valign="middle",
            **kw,
        )
        button.theme_pair = normal
        button.bind(size=lambda w, s: setattr(w, "text_size", s))
        with button.canvas.before:
            face = Color(*t.bg(normal))
            shape = RoundedRectangle(radius=[t.radius])
            edge = Color(*rgba(t.line, 1 if kind == "secondary" else 0))
            outline = Line(width=1.2)

        def paint(*_args: Any) -> None:
            pair = pressed if button.state == "down" else normal
            face.rgba = t.bg(pair)
            button.color = t.fg(pair)
            shape.pos, shape.size = button.pos, button.size
            outline.rounded_rectangle = (*button.pos, *button.size, t.radius)
            edge.a = 1 if kind == "secondary" else 0

        # The pressed face is set on the touch itself: drawn in the very next frame.
        button.bind(state=paint, pos=paint, size=paint)
        paint()
        button.bind(on_release=lambda *_: action())
        self._size(button, size)
        return button

    def _size(self, widget: Widget, size: float) -> None:
        widget.font_size = size * self.scale
        self.sized.append((widget, size))

    def rescale(self, scale: float) -> None:
        self.scale = scale
        for widget, size in self.sized:
            widget.font_size = size * scale

    def unscaled(self, widget: Widget) -> None:
        """Keep a widget's type size in the accessible mode too (a word on a key that the
        accessible layout makes narrower, and that would no longer fit)."""
        self.sized = [(w, size) for w, size in self.sized if w is not widget]


class Countdown(Widget):  # type: ignore[misc]  # Kivy ships no types
    """A thin bar that empties while a screen's time runs out (hidden when none runs)."""

    fraction = NumericProperty(0.0)

    def __init__(self, theme: Theme, **kwargs: Any) -> None:
        super().__init__(size_hint_y=None, height=6, **kwargs)
        with self.canvas:
            Color(*rgba(theme.accent))
            self.bar = Rectangle()
        self.bind(pos=self._draw, size=self._draw, fraction=self._draw)

    def _draw(self, *_args: Any) -> None:
        self.bar.pos = self.pos
        self.bar.size = (self.width * self.fraction, self.height)

    def start(self, seconds: float) -> None:
        Animation.cancel_all(self)
        self.fraction = 1.0
        Animation(fraction=0.0, duration=max(seconds, 0.1)).start(self)

    def stop(self) -> None:
        Animation.cancel_all(self)
        self.fraction = 0.0


@dataclass
class Widgets:
    """The widgets whose text or colour changes, by screen."""

    look: Look
    # welcome
    title: Label
    hint: Label
    scan_here: Label
    type_code: Button
    language: Button
    accessible: Button
    staff: Button
    maintenance: Button
    # staff
    staff_title: Label
    staff_hint: Label
    staff_type: Button
    staff_back: Button
    staff_language: Button
    # keypad: the digits, backspace, ok and clear by name
    prompt: Label
    shown: Label
    back: Button
    keys: dict[str, Button]
    # result
    result: Label
    picture: Picture
    note: Label
    done: Button
    door_map: DoorMap
    # please wait, out of service
    wait: Label
    offline: Label
    # the time left on the keypad, result and staff screens
    countdowns: dict[str, Countdown] = field(default_factory=dict)
    # the accessible mode's layout, on or off
    arrange: Callable[[bool], None] = lambda _on: None


def build_screens(app: KioskApp, sm: ScreenManager) -> Widgets:
    """Add every screen but maintenance to `sm`; their touches call `app`."""
    theme = Theme.from_config(app.settings)
    look = Look(theme)
    side = app.settings.scanner_side
    found: dict[str, Any] = {"look": look}
    arrangers = [
        _welcome(app, look, side, _screen(sm, "welcome", theme), found),
        _keypad(app, look, _screen(sm, "keypad", theme), found),
    ]
    _staff(app, look, _screen(sm, "staff", theme), found)
    _result(app, look, _screen(sm, "result", theme), found)
    for name, kind in (("wait", "wait"), ("offline", "out_of_service")):
        box = BoxLayout(orientation="vertical", padding=40, spacing=20)
        box.add_widget(Picture(theme, kind=kind, size_hint_y=0.55))
        found[name] = look.text(theme.sizes.heading, "page_ink", size_hint_y=0.45)
        box.add_widget(found[name])
        _screen(sm, name, theme).add_widget(box)

    def arrange(on: bool) -> None:
        look.rescale(theme.accessible_scale if on else 1.0)
        for fn in arrangers:
            fn(on)

    return Widgets(**found, arrange=arrange)


def _screen(sm: ScreenManager, name: str, theme: Theme) -> Screen:
    screen = Screen(name=name)
    with screen.canvas.before:
        Color(*rgba(theme.page))
        page = Rectangle()
    screen.bind(
        size=lambda s, v: setattr(page, "size", v), pos=lambda s, v: setattr(page, "pos", v)
    )
    sm.add_widget(screen)
    return screen


def _row(**kw: Any) -> BoxLayout:
    return BoxLayout(**{"size_hint_y": None, "height": CONTROL_ROW, "spacing": 12, **kw})


def _brand(look: Look, found: dict[str, Any]) -> BoxLayout:
    """The store's logo (or the drawn wordmark) and the title, at the top."""
    t = look.theme
    bar = BoxLayout(size_hint_y=None, height=CONTROL_ROW, spacing=12)
    if t.logo:
        bar.add_widget(
            Image(source=t.logo, size_hint_x=None, width=3 * CONTROL_ROW, fit_mode="contain")
        )
    else:
        bar.add_widget(Picture(t, kind="wordmark", size_hint_x=None, width=CONTROL_ROW))
    found["title"] = look.text(t.sizes.heading, "page_heading", bold=True, halign="left")
    bar.add_widget(found["title"])
    return bar


def _welcome(
    app: KioskApp, look: Look, side: str, screen: Screen, found: dict[str, Any]
) -> Callable[[bool], None]:
    t = look.theme
    box = BoxLayout(orientation="vertical", padding=t.padding, spacing=t.spacing)
    top = _brand(look, found)
    found["language"] = look.button(
        "secondary", t.sizes.body, app.toggle_language, size_hint_x=None, width=130
    )
    top.add_widget(found["language"])
    middle = BoxLayout(spacing=t.spacing)
    found["hint"] = look.text(t.sizes.title, "page_ink", bold=True, halign="left")
    middle.add_widget(found["hint"])
    scan = BoxLayout(orientation="vertical", size_hint_x=0.36)
    scan.add_widget(Picture(t, side, kind="scan" if side != "none" else "keypad"))
    found["scan_here"] = look.text(t.sizes.body, "page_heading", size_hint_y=0.22)
    scan.add_widget(found["scan_here"])
    middle.add_widget(scan)
    actions = _row(height=CONTROL_ROW + 24)
    found["type_code"] = look.button("primary", t.sizes.button, lambda: app.keypad("shopper"))
    found["accessible"] = look.button(
        "accent", t.sizes.body, app.toggle_accessible, size_hint_x=0.42
    )
    _with_icon(found["accessible"], Picture(t, kind="wheelchair"))
    actions.add_widget(found["type_code"])
    actions.add_widget(found["accessible"])
    # The doors for staff and technicians, small and out of the shopper's way.
    footer = _row()
    found["staff"] = look.button(
        "secondary", t.sizes.small, lambda: app.show("staff"), size_hint_x=None, width=150
    )
    found["maintenance"] = look.button(
        "secondary", t.sizes.small, lambda: app.keypad("pin"), size_hint_x=None, width=170
    )
    footer.add_widget(found["staff"])
    footer.add_widget(Widget())
    footer.add_widget(found["maintenance"])
    for w in (top, middle, actions, footer):
        box.add_widget(w)
    screen.add_widget(box)

    def arrange(on: bool) -> None:
        # Within reach: the language button joins the actions, low on the screen.
        language = found["language"]
        language.parent.remove_widget(language)
        (actions if on else top).add_widget(language)
        language.size_hint_x, language.width = (0.25, 130) if on else (None, 130)
        found["accessible"].size_hint_x = 0.62 if on else 0.42

    return arrange


def _with_icon(button: Button, picture: Picture) -> None:
    """A picture at the left of a button, the text beside it."""
    button.add_widget(picture)

    def place(*_args: Any) -> None:
        side = button.height * 0.7
        picture.size = (side, side)
        picture.pos = (button.x + 12, button.center_y - side / 2)
        button.padding = [side + 24, 0, 8, 0]  # the text beside the picture, not under it

    button.bind(pos=place, size=place)


def _staff(app: KioskApp, look: Look, screen: Screen, found: dict[str, Any]) -> None:
    t = look.theme
    box = BoxLayout(orientation="vertical", padding=t.padding, spacing=t.spacing)
    found["staff_title"] = look.text(t.sizes.heading, "page_heading", bold=True, size_hint_y=0.3)
    found["staff_hint"] = look.text(t.sizes.body, "page_muted", size_hint_y=0.7)
    actions = _row(height=CONTROL_ROW + 24)
    found["staff_type"] = look.button("primary", t.sizes.button, lambda: app.keypad("staff"))
    found["staff_back"] = look.button(
        "secondary", t.sizes.button, lambda: app.show("welcome"), size_hint_x=0.35
    )
    actions.add_widget(found["staff_type"])
    actions.add_widget(found["staff_back"])
    footer = _row()
    found["staff_language"] = look.button(
        "secondary", t.sizes.small, app.toggle_language, size_hint_x=None, width=150
    )
    footer.add_widget(Widget())
    footer.add_widget(found["staff_language"])
    countdown = Countdown(t)
    found.setdefault("countdowns", {})["staff"] = countdown
    for w in (found["staff_title"], found["staff_hint"], actions, footer, countdown):
        box.add_widget(w)
    screen.add_widget(box)


def _keypad(
    app: KioskApp, look: Look, screen: Screen, found: dict[str, Any]
) -> Callable[[bool], None]:
    t = look.theme
    box = BoxLayout(orientation="vertical", padding=12, spacing=8)
    upper = BoxLayout(orientation="vertical", size_hint_y=0.3, spacing=4)
    head = BoxLayout(spacing=8)
    head.add_widget(Picture(t, kind="keypad", size_hint_x=None, width=48))
    found["prompt"] = look.text(t.sizes.body, "page_ink")
    head.add_widget(found["prompt"])
    found["shown"] = look.text(t.sizes.key + 6, "page_heading", bold=True)
    upper.add_widget(head)
    upper.add_widget(found["shown"])
    lower = BoxLayout(orientation="vertical", size_hint_y=0.7, spacing=8)
    grid = GridLayout(cols=3, spacing=8)
    keys: dict[str, Button] = {}
    for key in KEYPAD_KEYS:
        kind = "primary" if key == "ok" else "secondary"
        size = t.sizes.button if key in WORD_KEYS else t.sizes.key
        keys[key] = look.button(kind, size, partial(app.press, key))
        if key == "backspace":
            look.unscaled(keys[key])  # "← Delete" on a key a sixth of the screen wide
        grid.add_widget(keys[key])
    row = _row(height=56, spacing=8)
    found["back"] = look.button("secondary", t.sizes.body, app.home)
    keys["clear"] = look.button("secondary", t.sizes.body, lambda: app.press("clear"))
    row.add_widget(found["back"])
    row.add_widget(keys["clear"])
    lower.add_widget(grid)
    lower.add_widget(row)
    countdown = Countdown(t)
    found.setdefault("countdowns", {})["keypad"] = countdown
    for w in (upper, lower, countdown):
        box.add_widget(w)
    screen.add_widget(box)
    found["keys"] = keys

    def arrange(on: bool) -> None:
        # Two wide rows of keys in the lower half; the code and prompt above them.
        grid.cols = 6 if on else 3
        upper.size_hint_y, lower.size_hint_y = (0.54, 0.46) if on else (0.3, 0.7)

    return arrange


def _result(app: KioskApp, look: Look, screen: Screen, found: dict[str, Any]) -> None:
    t = look.theme
    box = BoxLayout(orientation="vertical", padding=(24, 12), spacing=8)
    top = BoxLayout(spacing=t.spacing, size_hint_y=0.34)
    found["picture"] = Picture(t, size_hint_x=0.2)
    found["result"] = look.text(t.sizes.heading, "page_ink", bold=True)
    top.add_widget(found["picture"])
    top.add_widget(found["result"])
    # Where the opened doors are on the cabinet (shown only when a code opened doors).
    found["door_map"] = DoorMap(
        fetch=lambda done: fetch_layout(app.worker, done),
        colours=DoorColours.from_theme(t),
        size_hint_y=0.5,
        opacity=0,
    )
    found["note"] = look.text(t.sizes.body, "page_muted", size_hint_y=0.18)
    actions = _row()
    found["done"] = look.button("primary", t.sizes.button, app.home, size_hint_x=0.4)
    actions.add_widget(Widget(size_hint_x=0.3))
    actions.add_widget(found["done"])
    actions.add_widget(Widget(size_hint_x=0.3))
    countdown = Countdown(t)
    found.setdefault("countdowns", {})["result"] = countdown
    for w in (top, found["door_map"], found["note"], actions, countdown):
        box.add_widget(w)
    screen.add_widget(box)
