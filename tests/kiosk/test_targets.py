"""Touch targets: every button of every screen of the real app is at least 9 mm in both
dimensions on a 7" panel at 800x480 (the mm computed from the panel's size and pixels)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon
from kiosk_helpers import Steps, display, start_daemon  # noqa: F401 (a fixture)

from drivers.sim import SimBoard
from kiosk_ui.theme import TARGET_MM, mm_per_px


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[RunningDaemon, SimBoard]]:
    running, board = start_daemon(tmp_path, "targets-1", 8)
    yield running, board
    running.stop()


SHOPPER_SCREENS = ("welcome", "staff", "keypad", "result", "wait", "offline")


@pytest.mark.usefixtures("display")
@pytest.mark.parametrize(
    ("accessible", "screens"),
    [
        (False, SHOPPER_SCREENS),
        (True, SHOPPER_SCREENS),
        (False, ("maintenance",)),
    ],
    ids=["standard", "accessible", "maintenance"],
)
def test_no_button_of_any_screen_is_under_9_mm_on_a_7_inch_800x480_panel(
    daemon: tuple[RunningDaemon, SimBoard], accessible: bool, screens: tuple[str, ...]
) -> None:
    running, _board = daemon
    from kivy.uix.button import Button

    from kiosk_ui.app import build_app

    app = build_app(str(running.locker.config.api.socket), lang="zh")
    mm = mm_per_px((800, 480), 7.0)
    small: dict[str, list[str]] = {}
    names: list[str] = []
    step = Steps(app)

    @step
    def mode() -> None:
        app.set_accessible(accessible)

    def visit(name: str) -> Any:
        def look() -> bool:
            if app.sm.current != name:
                app.sm.current = name  # every screen, the maintenance screen too
                return False
            names.append(name)
            screen = app.sm.get_screen(name)
            for w in screen.walk(restrict=True):
                if isinstance(w, Button) and w.opacity > 0 and w.width > 0:
                    width, height = w.width * mm, w.height * mm
                    if min(width, height) < TARGET_MM:
                        small.setdefault(name, []).append(f"{w.text!r} {width:.1f}x{height:.1f} mm")
            return True

        look.__name__ = f"look_at_{name}"
        return look

    for name in screens:
        step(visit(name))

    step.run()
    assert names == list(screens)
    assert small == {}, f"touch targets under {TARGET_MM} mm"
