"""The accessible mode and the touch targets, in the real app under Xvfb with a real lockerd:
every control within reach in the lower half, larger text, slower time-outs, and no
button under 9 mm on a 7" 800x480 panel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon
from kiosk_helpers import Steps, display, fire, shot, start_daemon, tap  # noqa: F401 (a fixture)

from drivers.sim import SimBoard
from kiosk_ui.theme import mm_per_px
from locker.config_kiosk import KioskSection


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[RunningDaemon, SimBoard]]:
    running, board = start_daemon(tmp_path, "acc-1", 8)
    yield running, board
    running.stop()


def buttons(root: Any) -> list[Any]:
    from kivy.uix.button import Button

    return [w for w in root.walk(restrict=True) if isinstance(w, Button) and w.opacity > 0]


@pytest.mark.usefixtures("display")
def test_the_accessible_mode_puts_the_keypad_below_the_middle_and_ends_at_the_welcome(
    daemon: tuple[RunningDaemon, SimBoard],
) -> None:
    running, _board = daemon
    from kivy.core.window import Window

    from kiosk_ui.app import build_app

    settings = KioskSection(accessible_timeout_factor=3.0)
    app = build_app(str(running.locker.config.api.socket), lang="en", kiosk=settings)
    seen: dict[str, Any] = {}
    step = Steps(app)

    @step
    def standard_keypad() -> None:
        seen["title_size"] = app.widgets.hint.font_size
        tap(app.widgets.type_code)

    @step
    def keys_reach_above_the_middle() -> bool:
        if app.sm.current != "keypad":
            return False
        seen["standard_top"] = max(k.top for k in app.widgets.keys.values())
        seen["standard_idle"] = fire(app.walked_away)  # back to the welcome
        return True

    @step
    def accessible_on() -> bool:
        if app.sm.current != "welcome":
            return False
        tap(app.widgets.accessible)
        return True

    @step
    def welcome_controls_low() -> None:
        seen["welcome_tops"] = {b.text: b.top for b in buttons(app.sm.current_screen)}
        seen["big_title"] = app.widgets.hint.font_size
        shot("30-welcome-accessible-en")
        app.toggle_language()

    @step
    def welcome_in_chinese() -> None:
        shot("31-welcome-accessible-zh")
        tap(app.widgets.type_code)

    @step
    def accessible_keypad() -> bool:
        if app.sm.current != "keypad" or app.sm.transition.is_active:
            return False
        screen = app.sm.current_screen
        seen["keypad_tops"] = {b.text: b.top for b in buttons(screen)}
        seen["half"] = Window.height / 2
        seen["sizes"] = [min(b.size) for b in buttons(screen)]
        shot("32-keypad-accessible-zh")
        app.toggle_language()
        return True

    @step
    def accessible_keypad_in_english() -> None:
        shot("32-keypad-accessible-en")
        seen["idle"] = fire(app.walked_away)  # the shopper leaves: back to the welcome

    @step
    def ended() -> bool:
        if app.sm.current != "welcome":
            return False
        seen["after"] = app.accessible
        seen["after_size"] = app.widgets.hint.font_size
        return True

    step.run()
    half = seen["half"]
    assert seen["standard_top"] > half, "the standard keypad fills the screen"
    assert {t: top for t, top in seen["keypad_tops"].items() if top > half} == {}
    assert {t: top for t, top in seen["welcome_tops"].items() if top > half} == {}
    assert seen["big_title"] > seen["title_size"]
    assert seen["idle"] == pytest.approx(3.0 * seen["standard_idle"])
    assert seen["after"] is False and seen["after_size"] == seen["title_size"]
    mm = mm_per_px((800, 480), 7.0)
    assert min(seen["sizes"]) * mm >= 9.0
