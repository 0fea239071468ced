"""The real Kivy kiosk under Xvfb against a real lockerd, driven by touches, with screenshots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon

from drivers.sim import SimBoard
from locker.clock import rfc3339
from locker.commands import CommandProcessor
from locker.daemon import Locker

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    exe = shutil.which("Xvfb")
    assert exe, "Xvfb is installed by make test"
    number = 90 + os.getpid() % 9
    proc = subprocess.Popen(
        [exe, f":{number}", "-screen", "0", "800x480x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    os.environ["DISPLAY"] = f":{number}"
    yield f":{number}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Locker, SimBoard]]:
    (tmp_path / "locker.toml").write_text(
        '[locker]\nid = "kiosk-1"\ndata_dir = "data"\n[mqtt]\nenabled = false\n'
        '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-8"\nchannels = "1-8"\nboard = "b0"\nsize = "S"\n'
    )
    board = SimBoard("b0", 8, door_close_s=0)
    running = RunningDaemon(tmp_path / "locker.toml", {"b0": board})
    yield running.locker, board
    running.stop()


def tap(widget: Any) -> None:
    """A finger on the widget's centre: a real touch down and up through Kivy's input path."""
    from kivy.tests.common import UnitTestTouch

    x, y = widget.to_window(*widget.center)
    touch = UnitTestTouch(x, y)
    touch.touch_down()
    touch.touch_up()


@pytest.mark.slow
def test_shopper_types_a_code_and_the_door_opens(
    display: str, daemon: tuple[Locker, SimBoard]
) -> None:
    locker, board = daemon
    processor = CommandProcessor(locker.service)
    done = threading.Event()
    box: list[Any] = []

    def reserve() -> None:
        box.append(
            processor.handle(
                "reserve",
                json.dumps(
                    {
                        "command_id": "k1",
                        "sent_at": rfc3339(time.time()),
                        "order_id": "SO-K",
                        "items": [{"sku": "1", "qty": 1, "size": "S"}],
                    }
                ),
            )
        )
        done.set()

    locker.loop.post(reserve)
    assert done.wait(5)
    deposit_code = box[0]["result"]["deposit_code"]

    from kivy.clock import Clock

    from kiosk_ui.app import build_app

    SHOTS.mkdir(parents=True, exist_ok=True)
    app = build_app(str(locker.config.api.socket), lang="zh")
    seen: dict[str, Any] = {}

    def shot(name: str) -> None:
        from kivy.core.window import Window

        Window.screenshot(name=str(SHOTS / f"{name}.png"))
        produced = sorted(SHOTS.glob(f"{name}*.png"))[-1]
        produced.replace(SHOTS / f"{name}.png")

    steps = []

    def step(fn: Any) -> Any:
        steps.append(fn)
        return fn

    @step
    def welcome_zh() -> None:
        seen["welcome_zh"] = app.widgets["title"].text
        shot("01-welcome-zh")

    @step
    def switch_language() -> None:
        tap(app.widgets["language"])

    @step
    def welcome_en() -> None:
        seen["welcome_en"] = app.widgets["title"].text
        shot("02-welcome-en")
        tap(app.widgets["type_code"])

    @step
    def type_wrong() -> None:
        for digit in "12345678":
            tap(app.widgets["keys"][digit])
        seen["shown"] = app.widgets["shown"].text

    @step
    def keypad_shot() -> None:  # a frame later, so the dots are drawn
        shot("03-keypad")
        tap(app.widgets["keys"]["ok"])

    @step
    def wrong_result() -> None:
        seen["wrong"] = app.widgets["result"].text
        shot("04-wrong-code")
        app.show("keypad")

    @step
    def type_right() -> None:
        for digit in deposit_code:
            tap(app.widgets["keys"][digit])
        tap(app.widgets["keys"]["ok"])

    @step
    def opened() -> None:
        seen["opened"] = app.widgets["result"].text
        seen["door"] = board.is_open(1)
        shot("05-compartment-open")
        app.toggle_language()  # back to Chinese

    def to_keypad() -> None:
        app.show("keypad")

    def one_wrong_code() -> None:  # one screen change a frame, as a person's taps come
        for digit in "99999999":
            tap(app.widgets["keys"][digit])
        tap(app.widgets["keys"]["ok"])

    for _ in range(6):  # the first wrong code was typed above: six more lock the keypad
        step(to_keypad)
        step(one_wrong_code)

    @step
    def throttled_zh() -> None:
        seen["throttled"] = app.widgets["result"].text
        seen["throttled_screen"] = app.sm.current
        shot("06-throttled-zh")

    @step
    def daemon_goes_away() -> None:
        assert locker.api is not None
        locker.api.close()  # lockerd restarting: its socket is gone
        app.api.close()
        app.check_daemon(0)

    @step
    def out_of_service() -> None:
        seen["offline"] = app.widgets["offline"].text
        seen["offline_screen"] = app.sm.current
        shot("07-out-of-service-zh")

    def run_steps(_dt: float) -> None:
        if steps:
            steps.pop(0)()
        else:
            app.stop()

    Clock.schedule_interval(run_steps, 0.3)
    app.run()
    assert seen["welcome_zh"] == "自助取货柜"
    assert seen["welcome_en"] == "Pickup locker"
    assert seen["shown"] == "••••••••"  # the code itself is never shown
    assert seen["wrong"] == "Wrong code. 4 attempts left"
    assert seen["door"] is True
    assert seen["opened"].startswith("Compartment 1 is open")
    for name in (
        "01-welcome-zh",
        "02-welcome-en",
        "03-keypad",
        "04-wrong-code",
        "05-compartment-open",
    ):
        assert (SHOTS / f"{name}.png").stat().st_size > 1000
