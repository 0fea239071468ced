"""Helpers for the kiosk's UI tests: Xvfb, real touches, screenshots, steps one frame apart.

Screenshots go to a temporary folder, so a test run leaves the committed ones in
docs/screenshots/ alone; `LOCKER_SHOTS=docs/screenshots` (`make screenshots`)
writes them there on purpose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAME_S = 0.3
MAX_WAIT_FRAMES = 50  # a step that waits for something gives up after 15 s


_shots: list[Path] = []


def shots_dir() -> Path:
    """Where this session's screenshots go: $LOCKER_SHOTS, else the session's temporary
    folder (set by the `display` fixture)."""
    assert _shots, "screenshots need the display fixture"
    return _shots[0]


@pytest.fixture(scope="session")
def display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    wanted = os.environ.get("LOCKER_SHOTS")
    _shots[:] = [Path(wanted).resolve() if wanted else tmp_path_factory.mktemp("screenshots")]
    exe = shutil.which("Xvfb")
    assert exe, "Xvfb is installed by make test"
    number = 90 + os.getpid() % 9
    proc = subprocess.Popen(
        [exe, f":{number}", "-screen", "0", "1024x600x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    os.environ["DISPLAY"] = f":{number}"
    yield f":{number}"
    proc.terminate()
    proc.wait(10)


def tap(widget: Any) -> None:
    """A finger on the widget's centre: a real touch down and up through Kivy's input path."""
    from kivy.tests.common import UnitTestTouch

    x, y = widget.to_window(*widget.center)
    touch = UnitTestTouch(x, y)
    touch.touch_down()
    touch.touch_up()


def shot(name: str) -> Path:
    """Save the window as NAME.png in the screenshots folder (Kivy appends a counter to
    the name it is given; drop it)."""
    from kivy.core.window import Window

    folder = shots_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.png"
    Path(Window.screenshot(name=str(target))).replace(target)
    return target


def fire(callback: Callable[[float], Any]) -> float:
    """Run a timer the app has on Kivy's clock as if its time had come (the test moves the
    clock on instead of waiting); returns the timer's period. Fails if none is scheduled."""
    from kivy.clock import Clock

    events = [e for e in Clock.get_events() if e.get_callback() == callback]
    assert events, f"no timer scheduled for {callback.__name__}"
    event = events[0]
    timeout = float(event.timeout)
    if not event.loop:
        event.cancel()
    callback(timeout)
    return timeout


def overflowing(root: Any) -> list[str]:
    """Texts that do not fit their widget on the current screen (clipped or spilling)."""
    from kivy.uix.label import Label

    bad = []
    for widget in root.walk(restrict=True):
        if isinstance(widget, Label) and widget.text and widget.opacity > 0:
            widget.texture_update()
            tw, th = widget.texture_size
            if tw > widget.width + 2 or th > widget.height + 2:
                bad.append(f"{widget.text[:40]!r}: {tw}x{th} in {widget.width}x{widget.height}")
    return bad


class Steps:
    """Steps run one frame apart, as a person's taps come. A step that returns False is
    tried again next frame (waiting for the daemon or the door), up to 15 s."""

    def __init__(self, app: Any, size: tuple[int, int] = (800, 480)) -> None:
        self.app = app
        self.size = size
        self.todo: list[Callable[[], Any]] = []
        self.error: BaseException | None = None
        self.tries = 0
        self.frames = 0

    def __call__(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        self.todo.append(fn)
        return fn

    def _tick(self, _dt: float) -> None:
        self.frames += 1
        if self.frames <= 2:  # the first frames lay the screens out: no touch lands before
            return
        if not self.todo or self.error is not None:
            self.app.stop()
            return
        if self.app.sm.transition.is_active:
            return  # the screen is still changing (a slow frame): no touch lands until it has
        fn = self.todo[0]
        try:
            done = fn()
            if done is False:
                self.tries += 1
                if self.tries > MAX_WAIT_FRAMES:
                    raise AssertionError(f"step {fn.__name__} waited in vain")
                return
        except BaseException as exc:  # reported after the app stops
            self.error = exc
            self.app.stop()
            return
        self.tries = 0
        self.todo.pop(0)

    def run(self) -> None:
        from kivy.clock import Clock
        from kivy.core.window import Window

        Window.size = self.size  # one window for every test of the session
        event = Clock.schedule_interval(self._tick, FRAME_S)
        self.app.run()
        event.cancel()
        if self.error is not None:
            raise self.error
        assert not self.todo, f"steps left: {[f.__name__ for f in self.todo]}"


def start_daemon(
    tmp_path: Path,
    locker_id: str,
    channels: int,
    compartments: str = "",
    extra: str = "",
    pin: str | None = None,
) -> tuple[Any, Any]:
    """A real lockerd (its build() and loop) on one simulated board whose doors stay open
    until the test closes them; (RunningDaemon, SimBoard). Compartments default to one
    small compartment per channel."""
    running, boards = start_cabinet(tmp_path, locker_id, {"b0": channels}, compartments, extra, pin)
    return running, boards["b0"]


def start_cabinet(
    tmp_path: Path,
    locker_id: str,
    boards: dict[str, int],
    compartments: str = "",
    extra: str = "",
    pin: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A real lockerd on several simulated boards (name -> channels), doors staying open
    until the test closes them; (RunningDaemon, {name: SimBoard}). Compartments default to
    one small compartment per channel, numbered on from one board to the next."""
    from conftest import RunningDaemon

    from drivers.sim import SimBoard
    from locker.pin import write_pin

    if not compartments:
        first = 1
        for name, channels in boards.items():
            last = first + channels - 1
            compartments += (
                f'[[compartments]]\nnumbers = "{first}-{last}"\nchannels = "1-{channels}"\n'
                f'board = "{name}"\nsize = "S"\n'
            )
            first = last + 1
    declared = "".join(f'[[boards]]\nname = "{name}"\ndriver = "sim"\n' for name in boards)
    (tmp_path / "locker.toml").write_text(
        f'[locker]\nid = "{locker_id}"\ndata_dir = "data"\n[mqtt]\nenabled = false\n{extra}'
        '[api]\nsocket = "api.sock"\n' + declared + compartments
    )
    sims = {name: SimBoard(name, channels, door_close_s=0) for name, channels in boards.items()}
    running = RunningDaemon(tmp_path / "locker.toml", sims)
    if pin is not None:
        write_pin(running.locker.config.pin_path, pin)
    return running, sims
