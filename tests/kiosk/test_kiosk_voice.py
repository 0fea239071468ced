"""The real kiosk speaks its results: under Xvfb, against a real lockerd, a wrong code, a
code that opens a door and the door closed again are each played on the speaker (the
player here is a real process keeping what it is fed: see test_voice.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import reserve_on_loop
from kiosk_helpers import Steps, display, start_daemon, tap  # noqa: F401 (a fixture)
from test_voice import SPEECH_RMS, keeper, kept, said

from drivers.sim import SimBoard
from kiosk_ui.voice import Voice, rms
from locker.daemon import Locker


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Locker, SimBoard]]:
    running, board = start_daemon(tmp_path, "kiosk-v", 4)
    yield running.locker, board
    running.stop()


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_each_result_is_spoken(daemon: tuple[Locker, SimBoard], tmp_path: Path) -> None:
    locker, board = daemon
    deposit_code = reserve_on_loop(locker, "SO-V")

    from kiosk_ui.app import build_app

    app = build_app(str(locker.config.api.socket), lang="en")
    played = tmp_path / "played"
    voice = Voice(volume=100, command=keeper(played))
    app.voice = voice  # the cabinet's speaker, heard by the test
    seen: dict[str, Any] = {}
    step = Steps(app)

    def typed(code: str) -> None:  # on the keypad, laid out a frame after it is shown
        for digit in code:
            tap(app.widgets.keys[digit])
        tap(app.widgets.keys["ok"])

    @step
    def to_keypad() -> None:
        app.show("keypad")

    @step
    def wrong_code() -> None:
        typed("12345678")

    @step
    def wrong_is_said() -> bool:
        if app.sm.current != "result":  # lockerd's reply comes back a frame later
            return False
        seen["wrong"] = kept(played, 0)
        app.show("keypad")
        return True

    @step
    def right_code() -> None:
        typed(deposit_code)

    @step
    def door_open_is_said() -> bool:
        if len(voice.requests) < 2:
            return False
        seen["door"] = board.is_open(1)
        seen["open"] = kept(played, 1)
        board.close_door(1)
        return True

    @step
    def thanks_is_said() -> bool:
        if len(voice.requests) < 3:  # once lockerd says the door was closed
            return False
        seen["thanks"] = kept(played, 2)
        return True

    try:
        step.run()
    finally:
        voice.close()
    assert voice.asked == [("wrong", "en"), ("opened_deposit", "en"), ("thanks", "en")]
    assert seen["door"] is True
    for name, key in (("wrong", "wrong"), ("open", "opened_deposit"), ("thanks", "thanks")):
        assert seen[name] == said("en", [key]), f"{name}: not the shipped clip"
        assert rms(seen[name]) > SPEECH_RMS
