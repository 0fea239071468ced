"""The real Kivy kiosk under Xvfb against a real lockerd, driven by touches, with screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import reserve_on_loop
from kiosk_helpers import Steps, display, overflowing, shot, shots_dir, start_daemon, tap  # noqa: F401 (a fixture)

from drivers.sim import SimBoard
from kiosk_ui.i18n import load
from locker.daemon import Locker


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Locker, SimBoard]]:
    running, board = start_daemon(tmp_path, "kiosk-1", 8)
    yield running.locker, board
    running.stop()


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_shopper_types_a_code_and_the_door_opens(daemon: tuple[Locker, SimBoard]) -> None:
    locker, board = daemon
    deposit_code = reserve_on_loop(locker, "SO-K")

    from kiosk_ui.app import build_app

    app = build_app(str(locker.config.api.socket), lang="zh")
    seen: dict[str, Any] = {"overflow": {}}
    step = Steps(app)

    def check(name: str) -> None:
        seen["overflow"][name] = overflowing(app.sm.current_screen)
        shot(name)

    @step
    def welcome_zh() -> None:
        seen["welcome_zh"] = app.widgets.title.text
        check("01-welcome-zh")

    @step
    def switch_language() -> None:
        tap(app.widgets.language)

    @step
    def welcome_en() -> None:
        seen["welcome_en"] = app.widgets.title.text
        check("02-welcome-en")
        tap(app.widgets.type_code)

    @step
    def type_wrong() -> None:
        for digit in "12345678":
            tap(app.widgets.keys[digit])
        seen["shown"] = app.widgets.shown.text

    @step
    def keypad_shot() -> None:  # a frame later, so the dots are drawn
        check("03-keypad-en")
        app.toggle_language()

    @step
    def keypad_in_chinese() -> None:  # the typed code stays through a language touch
        seen["shown_zh"] = app.widgets.shown.text
        check("03-keypad-zh")
        app.toggle_language()
        tap(app.widgets.keys["ok"])

    @step
    def wrong_result() -> bool:
        if app.sm.current != "result":  # lockerd's reply comes back a frame later
            return False
        seen["wrong"] = app.widgets.result.text
        check("04-wrong-code-en")
        app.toggle_language()
        return True

    @step
    def wrong_result_in_chinese() -> None:  # the result said again in the language chosen
        seen["wrong_zh"] = (app.widgets.result.text, app.widgets.note.text)
        check("04-wrong-code-zh")
        app.toggle_language()
        app.show("keypad")

    @step
    def type_right() -> None:
        for digit in deposit_code:
            tap(app.widgets.keys[digit])
        tap(app.widgets.keys["ok"])

    @step
    def opened() -> bool:
        if app.sm.current != "result":
            return False
        seen["opened"] = app.widgets.result.text
        seen["door"] = board.is_open(1)
        check("05-compartment-open-en")
        app.toggle_language()  # back to Chinese
        return True

    @step
    def opened_in_chinese() -> None:
        seen["opened_zh"] = app.widgets.result.text
        check("05-compartment-open-zh")

    def to_keypad() -> bool:
        if app.sm.current != "result":  # the last code's reply first
            return False
        app.show("keypad")
        return True

    def one_wrong_code() -> None:  # one screen change a frame, as a person's taps come
        for digit in "99999999":
            tap(app.widgets.keys[digit])
        tap(app.widgets.keys["ok"])

    for _ in range(6):  # the first wrong code was typed above: six more lock the keypad
        step(to_keypad)
        step(one_wrong_code)

    @step
    def throttled_zh() -> bool:
        if app.sm.current != "result":
            return False
        seen["throttled"] = app.widgets.result.text
        seen["throttled_screen"] = app.sm.current
        check("06-throttled-zh")
        app.toggle_language()
        return True

    @step
    def throttled_en() -> None:
        seen["throttled_en"] = app.widgets.result.text
        check("06-throttled-en")
        app.toggle_language()  # back to Chinese

    @step
    def daemon_goes_away() -> None:
        assert locker.api is not None
        locker.api.close()  # lockerd restarting: its socket is gone
        app.api.close()
        app.check_daemon(0)

    @step
    def out_of_service() -> bool:
        if app.sm.current != "offline":  # the health check's reply comes a frame later
            return False
        seen["offline"] = app.widgets.offline.text
        seen["offline_screen"] = app.sm.current
        check("07-out-of-service-zh")
        app.toggle_language()
        return True

    @step
    def out_of_service_en() -> None:
        check("07-out-of-service-en")
        app.toggle_language()  # back to Chinese

    @step
    def daemon_is_back() -> None:
        from locker.api import LocalApi
        from locker.daemon import subscribe_api

        locker.api = LocalApi(
            locker.service, locker.config.api.socket, locker.loop.post, locker.health
        )
        subscribe_api(locker.service.hub, locker.api)

    @step
    def kiosk_reconnects_by_itself() -> bool:
        return bool(app.sm.current == "welcome")  # within its 2 s health check

    step.run()
    assert seen["welcome_zh"] == "自助取货柜"
    assert seen["welcome_en"] == "Pickup locker"
    assert seen["shown"] == "••••••••"  # the code itself is never shown
    assert seen["shown_zh"] == "••••••••"
    assert seen["wrong"] == "Wrong code. 4 attempts left"
    zh = load("zh")
    assert seen["wrong_zh"] == (zh["wrong"].format(left=4), zh["service_desk_hint"])
    assert seen["opened_zh"] == zh["opened_deposit"].format(numbers=1)
    assert seen["throttled_en"].startswith("Too many wrong codes")
    assert seen["door"] is True
    assert seen["overflow"] == {name: [] for name in seen["overflow"]}, "text that does not fit"
    assert seen["opened"].startswith("Compartment 1 is open")
    assert seen["offline_screen"] == "offline" and seen["offline"] == load("zh")["offline"]
    for name in (
        "01-welcome-zh",
        "02-welcome-en",
        "03-keypad-en",
        "03-keypad-zh",
        "04-wrong-code-en",
        "04-wrong-code-zh",
        "05-compartment-open-en",
        "05-compartment-open-zh",
    ):
        assert (shots_dir() / f"{name}.png").stat().st_size > 1000
