"""The shoppers' and staff's screens, laid out: welcome, staff, keypad, result, please
wait, out of service. The texts are set by the app (`KioskApp.refresh_texts`), in the
language shown; this module only builds the widgets and wires their touches.

Imported only once Kivy's window is configured (see `app.build_app`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.screenmanager import Screen, ScreenManager
from kivy.uix.widget import Widget

from kiosk_ui.doormap import DoorMap, fetch_layout

if TYPE_CHECKING:
    from collections.abc import Callable

    from kiosk_ui.kiosk import KioskApp

KEYPAD_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "backspace", "0", "ok")
WORD_KEYS = ("backspace", "ok", "clear")  # keys labelled with a text, not a digit


@dataclass(frozen=True)
class Widgets:
    """The widgets whose text or colour changes, by screen."""

    # welcome
    title: Label
    hint: Label
    type_code: Button
    language: Button
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
    note: Label
    done: Button
    door_map: DoorMap
    # please wait, out of service
    wait: Label
    offline: Label


# What each screen's builder hands back: checked against `Widgets` where they meet.
class _Welcome(TypedDict):
    title: Label
    hint: Label
    type_code: Button
    language: Button
    staff: Button
    maintenance: Button


class _Staff(TypedDict):
    staff_title: Label
    staff_hint: Label
    staff_type: Button
    staff_back: Button
    staff_language: Button


class _Keypad(TypedDict):
    prompt: Label
    shown: Label
    back: Button
    keys: dict[str, Button]


class _Result(TypedDict):
    result: Label
    note: Label
    done: Button
    door_map: DoorMap


def centred(**kwargs: Any) -> Label:
    label = Label(halign="center", valign="middle", **kwargs)
    label.bind(size=lambda w, s: setattr(w, "text_size", s))
    return label


def build_screens(app: KioskApp, sm: ScreenManager) -> Widgets:
    """Add every screen but maintenance to `sm`; their touches call `app`."""
    welcome = _welcome(app, _screen(sm, "welcome"))
    staff = _staff(app, _screen(sm, "staff"))
    keypad = _keypad(app, _screen(sm, "keypad"))
    result = _result(app, _screen(sm, "result"))
    wait = centred(font_size="32sp")
    _screen(sm, "wait").add_widget(wait)
    offline = centred(font_size="32sp")
    _screen(sm, "offline").add_widget(offline)
    return Widgets(**welcome, **staff, **keypad, **result, wait=wait, offline=offline)


def _screen(sm: ScreenManager, name: str) -> Screen:
    screen = Screen(name=name)
    sm.add_widget(screen)
    return screen


def _heading(
    screen: Screen,
    sizes: tuple[str, str, str],
    action: Callable[[], None],
    aside: Callable[[], None],
) -> tuple[Label, Label, Button, Button, BoxLayout]:
    """Title, hint and a row of a large action button beside a smaller one (the welcome
    and staff screens); returns the four widgets and the screen's box."""
    title_size, hint_size, action_size = sizes
    box = BoxLayout(orientation="vertical", padding=24, spacing=14)
    title = centred(font_size=title_size, bold=True, size_hint_y=0.26)
    hint = centred(font_size=hint_size, size_hint_y=0.3)
    row = BoxLayout(spacing=20, size_hint_y=0.34)
    main = Button(font_size=action_size, on_release=lambda *_: action())
    side = Button(font_size="24sp", size_hint_x=0.35, on_release=lambda *_: aside())
    row.add_widget(main)
    row.add_widget(side)
    for w in (title, hint, row):
        box.add_widget(w)
    screen.add_widget(box)
    return title, hint, main, side, box


def _welcome(app: KioskApp, screen: Screen) -> _Welcome:
    title, hint, type_code, language, box = _heading(
        screen, ("44sp", "26sp", "30sp"), lambda: app.keypad("shopper"), app.toggle_language
    )
    # The doors for staff and technicians, small and out of the shopper's way.
    footer = BoxLayout(spacing=12, size_hint_y=0.18)
    staff = Button(font_size="18sp", size_hint_x=0.24, on_release=lambda *_: app.show("staff"))
    maintenance = Button(
        font_size="18sp", size_hint_x=0.24, on_release=lambda *_: app.keypad("pin")
    )
    footer.add_widget(staff)
    footer.add_widget(Widget())
    footer.add_widget(maintenance)
    box.add_widget(footer)
    return {
        "title": title,
        "hint": hint,
        "type_code": type_code,
        "language": language,
        "staff": staff,
        "maintenance": maintenance,
    }


def _staff(app: KioskApp, screen: Screen) -> _Staff:
    title, hint, type_code, back, box = _heading(
        screen,
        ("36sp", "22sp", "28sp"),
        lambda: app.keypad("staff"),
        lambda: app.show("welcome"),
    )
    footer = BoxLayout(spacing=12, size_hint_y=0.18)
    language = Button(
        font_size="18sp", size_hint_x=0.24, on_release=lambda *_: app.toggle_language()
    )
    footer.add_widget(Widget())
    footer.add_widget(language)
    box.add_widget(footer)
    return {
        "staff_title": title,
        "staff_hint": hint,
        "staff_type": type_code,
        "staff_back": back,
        "staff_language": language,
    }


def _keypad(app: KioskApp, screen: Screen) -> _Keypad:
    box = BoxLayout(orientation="vertical", padding=12, spacing=8)
    prompt = centred(font_size="24sp", size_hint_y=0.15)
    shown = centred(font_size="40sp", size_hint_y=0.2)
    grid = GridLayout(cols=3, spacing=8)
    keys: dict[str, Button] = {}
    for key in KEYPAD_KEYS:
        button = Button(font_size="26sp" if key in WORD_KEYS else "34sp")
        button.bind(on_release=lambda _b, k=key: app.press(k))
        grid.add_widget(button)
        keys[key] = button
    row = BoxLayout(spacing=8, size_hint_y=0.15)
    back = Button(font_size="22sp", on_release=lambda *_: app.home())
    keys["clear"] = Button(font_size="22sp", on_release=lambda *_: app.press("clear"))
    row.add_widget(back)
    row.add_widget(keys["clear"])
    for w in (prompt, shown, grid, row):
        box.add_widget(w)
    screen.add_widget(box)
    return {"prompt": prompt, "shown": shown, "back": back, "keys": keys}


def _result(app: KioskApp, screen: Screen) -> _Result:
    box = BoxLayout(orientation="vertical", padding=(30, 16), spacing=10)
    label = centred(font_size="32sp", size_hint_y=0.32)
    # Where the opened doors are on the cabinet (shown only when a code opened doors).
    door_map = DoorMap(
        fetch=lambda done: fetch_layout(app.worker, done), size_hint_y=0.5, opacity=0
    )
    note = centred(font_size="20sp", size_hint_y=0.18)
    done = Button(font_size="24sp", size_hint=(0.4, 0.16), pos_hint={"center_x": 0.5})
    done.bind(on_release=lambda *_: app.home())
    for w in (label, door_map, note, done):
        box.add_widget(w)
    screen.add_widget(box)
    return {"result": label, "note": note, "done": done, "door_map": door_map}
