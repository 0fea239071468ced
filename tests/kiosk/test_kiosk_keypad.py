"""The keypad and the staff screen of the real kiosk under Xvfb against a real lockerd:
OK on an empty field, the backspace key, the throttle's wait counted down, and the staff
screen going back to the shoppers' welcome by itself.

Time-outs are not waited for: the test finds the timer the app put on Kivy's clock,
checks its period and runs it as if its time had come (`kiosk_helpers.fire`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon
from kiosk_helpers import Steps, display, fire, shot, start_daemon, tap  # noqa: F401 (a fixture)

from drivers.sim import SimBoard
from kiosk_ui.i18n import load

ZH, EN = load("zh"), load("en")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[RunningDaemon, SimBoard]]:
    running, board = start_daemon(
        tmp_path, "keys-1", 4, extra="[security]\nfree_attempts = 1\nthrottle_base_s = 30\n"
    )
    yield running, board
    running.stop()


def audit_count(running: RunningDaemon, action: str) -> int:
    def count() -> int:
        row = running.locker.store.db.execute(
            "SELECT COUNT(*) FROM audit WHERE action=?", (action,)
        ).fetchone()
        return int(row[0])

    return int(running.call(count))


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_keypad_empty_ok_backspace_and_the_wait_counted_down(
    daemon: tuple[RunningDaemon, SimBoard],
) -> None:
    running, _board = daemon
    from kiosk_ui.app import build_app

    app = build_app(str(running.locker.config.api.socket), lang="en")
    seen: dict[str, Any] = {}
    step = Steps(app)

    def keys() -> dict[str, Any]:
        return dict(app.widgets.keys)

    def type_code(code: str) -> None:
        for digit in code:
            tap(keys()[digit])

    @step
    def to_keypad() -> None:
        tap(app.widgets.type_code)

    @step
    def ok_on_an_empty_field() -> None:
        tap(keys()["ok"])
        seen["empty"] = (app.sm.current, app.widgets.prompt.text)
        seen["rejected"] = audit_count(running, "code_rejected")

    @step
    def backspace() -> None:
        type_code("123")
        tap(keys()["backspace"])
        seen["after_backspace"] = app.widgets.shown.text
        seen["prompt_again"] = app.widgets.prompt.text

    @step
    def one_wrong_code() -> None:
        type_code("45678")  # 1245678 after the backspace
        tap(keys()["ok"])

    @step
    def back_to_the_keypad() -> bool:
        if app.sm.current != "result":  # lockerd's reply comes back a frame later
            return False
        seen["wrong"] = app.widgets.result.text
        app.show("keypad")
        return True

    @step
    def another() -> None:
        type_code("99999999")
        tap(keys()["ok"])

    @step
    def throttled() -> bool:
        if app.sm.current != "result":
            return False
        seen["wait"] = app.widgets.result.text
        seen["tick"] = fire(app.count_down)
        seen["a_second_later"] = app.widgets.result.text
        app.count_down(28.5)
        seen["half_a_second_left"] = app.widgets.result.text
        app.count_down(0.5)
        seen["over"] = app.sm.current
        return True

    step.run()
    assert seen["empty"] == ("keypad", EN["empty_code"])
    assert seen["rejected"] == 0  # nothing was sent to lockerd
    assert seen["after_backspace"] == "••"
    assert seen["prompt_again"] == EN["enter_code"]
    assert seen["wrong"] == "Wrong code. 0 attempts left"
    assert seen["wait"] == EN["throttled"].format(seconds=30)
    assert seen["tick"] == 1.0
    assert seen["a_second_later"] == EN["throttled"].format(seconds=29)
    assert seen["half_a_second_left"] == EN["throttled"].format(seconds=1)
    assert seen["over"] == "welcome"


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_the_staff_screen_goes_back_to_the_welcome_in_the_default_language(
    daemon: tuple[RunningDaemon, SimBoard],
) -> None:
    running, _board = daemon
    from kiosk_ui.app import build_app
    from kiosk_ui.kiosk import STAFF_IDLE_SECONDS

    app = build_app(str(running.locker.config.api.socket), lang="zh")
    seen: dict[str, Any] = {}
    step = Steps(app)

    @step
    def to_staff() -> None:
        tap(app.widgets.staff)

    @step
    def staff_switches_to_english() -> None:
        tap(app.widgets.staff_language)

    @step
    def then_the_keypad() -> None:
        seen["english"] = app.widgets.staff_title.text
        tap(app.widgets.staff_type)

    @step
    def walks_away_from_the_keypad() -> None:
        fire(app.walked_away)
        seen["after_keypad"] = app.sm.current

    @step
    def and_from_the_staff_screen() -> None:
        seen["idle_s"] = fire(app.staff_idle)
        seen["after_staff"] = (app.sm.current, app.widgets.title.text)

    step.run()
    assert seen["english"] == EN["staff_title"]
    assert seen["after_keypad"] == "staff"
    assert seen["idle_s"] == STAFF_IDLE_SECONDS
    assert seen["after_staff"] == ("welcome", ZH["welcome_title"])
