"""The screen never waits on lockerd's socket: against a stand-in lockerd that holds a
code's reply back, Kivy's clock keeps ticking, "please wait" shows, and the reply is
shown once it comes."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kiosk_helpers import Steps, display, tap  # noqa: F401 (a fixture)

from kiosk_ui.i18n import load

EN = load("en")
FRAMES_WHILE_HELD = 30  # frames drawn while the code's reply is held back


class SlowLockerd:
    """lockerd's local API on a real Unix socket, answering every request at once except
    `code`, whose reply waits until the test calls `answer_code`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.code_reply: dict[str, Any] = {"outcome": "wrong", "attempts_left": 4, "reason": None}
        self.subscribers: list[socket.socket] = []
        self.codes: list[dict[str, Any]] = []
        self.code_received = threading.Event()
        self._answer = threading.Event()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen()
        self._server.settimeout(0.05)  # the accept loop looks at the stop flag this often
        self._threads = [threading.Thread(target=self._accept, name="slow-lockerd")]
        self._threads[0].start()

    def answer_code(self) -> None:
        self._answer.set()

    def push_doors(self, doors: dict[int, str]) -> None:
        """A state line on the stream, as lockerd sends one after each change."""
        compartments = [
            {"number": n, "door": door, "state": "loaded", "size": "S", "in_service": True}
            for n, door in doors.items()
        ]
        self.push({"stream": "state", "events": [], "state": {"compartments": compartments}})

    def push(self, line: dict[str, Any]) -> None:
        for conn in self.subscribers:
            conn.sendall(json.dumps(line).encode() + b"\n")

    def close(self) -> None:
        self._stop.set()
        self._answer.set()
        for conn in self._conns:
            with contextlib.suppress(OSError):  # the kiosk closed it already
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name="slow-lockerd-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                request = json.loads(line)
                result: dict[str, Any] = {}
                if request["op"] == "code":
                    self.codes.append(request)
                    self.code_received.set()
                    self._answer.wait()
                    result = self.code_reply
                elif request["op"] == "subscribe":
                    result = {"compartments": []}
                    self.subscribers.append(conn)
                reply = {"id": request["id"], "ok": True, "result": result}
                with contextlib.suppress(OSError):  # the kiosk stopped meanwhile
                    conn.sendall(json.dumps(reply).encode() + b"\n")


@pytest.fixture
def lockerd(tmp_path: Path) -> Iterator[SlowLockerd]:
    server = SlowLockerd(tmp_path / "api.sock")
    yield server
    server.close()


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_the_screen_keeps_drawing_while_lockerd_holds_a_reply_back(
    lockerd: SlowLockerd,
) -> None:
    from kivy.clock import Clock

    from kiosk_ui.app import build_app

    app = build_app(str(lockerd.path), lang="en")
    frames = [0]
    seen: dict[str, Any] = {}
    step = Steps(app)

    def count(_dt: float) -> None:
        frames[0] += 1

    ticking = Clock.schedule_interval(count, 0)  # once every frame Kivy draws

    @step
    def to_keypad() -> None:
        tap(app.widgets.type_code)

    @step
    def type_a_code() -> None:
        for digit in "12345678":
            tap(app.widgets.keys[digit])
        tap(app.widgets.keys["ok"])

    @step
    def lockerd_has_the_code() -> bool:
        if not lockerd.code_received.is_set():
            return False
        seen["frame_at_request"] = frames[0]
        return True

    @step
    def the_screen_says_please_wait_and_keeps_drawing() -> bool:
        if app.sm.current != "wait" or frames[0] < seen["frame_at_request"] + FRAMES_WHILE_HELD:
            return False
        seen["wait_text"] = app.widgets.wait.text
        seen["frames_while_held"] = frames[0] - seen["frame_at_request"]
        seen["codes_while_held"] = len(lockerd.codes)
        lockerd.answer_code()
        return True

    @step
    def the_reply_is_shown() -> bool:
        if app.sm.current != "result":
            return False
        seen["result"] = app.widgets.result.text
        return True

    step.run()
    ticking.cancel()
    assert seen["frames_while_held"] >= FRAMES_WHILE_HELD
    assert seen["wait_text"] == EN["please_wait"]
    assert seen["codes_while_held"] == 1
    assert seen["result"] == "Wrong code. 4 attempts left"
    assert [c["text"] for c in lockerd.codes] == ["12345678"]


def type_a_code_once_streaming(step: Steps, app: Any, lockerd: SlowLockerd) -> None:
    """The first steps of a shopper: once the screen's stream is connected, to the keypad,
    a code, OK."""

    @step
    def to_keypad() -> bool:
        if not lockerd.subscribers:
            return False
        tap(app.widgets.type_code)
        return True

    @step
    def type_the_code() -> None:
        for digit in "12345678":
            tap(app.widgets.keys[digit])
        tap(app.widgets.keys["ok"])


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_lockerds_word_that_the_doors_are_done_before_the_reply_is_shown_still_says_thanks(
    lockerd: SlowLockerd,
) -> None:
    """The reply comes off the UI thread: the stream may show the door open and closed
    again before the screen has the reply that opened it."""
    from kiosk_ui.app import build_app

    lockerd.code_reply = {"outcome": "opened", "purpose": "pickup", "compartments": [3]}
    app = build_app(str(lockerd.path), lang="en")
    seen: dict[str, Any] = {}
    step = Steps(app)

    type_a_code_once_streaming(step, app, lockerd)

    @step
    def the_door_opens_and_closes_while_the_reply_is_held() -> bool:
        if not lockerd.code_received.is_set():
            return False
        lockerd.push_doors({3: "open"})
        lockerd.push_doors({3: "closed"})
        lockerd.push(
            {"stream": "done", "purpose": "pickup", "order_id": "SO-1", "compartments": [3]}
        )
        return True

    @step
    def the_stream_lines_arrived() -> bool:
        if 3 not in app.last_done:
            return False
        lockerd.answer_code()
        return True

    @step
    def thanks() -> bool:
        if app.sm.current != "result" or app.widgets.result.text != EN["thanks"]:
            return False
        seen["thanks"] = True
        return True

    step.run()
    assert seen == {"thanks": True}


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_the_screen_thanks_on_lockerds_word_not_on_door_readings(lockerd: SlowLockerd) -> None:
    """A door read open and then closed is not yet a pickup (lockerd decides, with every
    door of the order): the screen waits for lockerd's `done` line."""
    from kiosk_ui.app import build_app

    lockerd.code_reply = {"outcome": "opened", "purpose": "pickup", "compartments": [3, 4]}
    lockerd.answer_code()  # no hold this time
    app = build_app(str(lockerd.path), lang="en")
    seen: dict[str, Any] = {}
    step = Steps(app)

    type_a_code_once_streaming(step, app, lockerd)

    @step
    def one_door_opens_and_closes() -> bool:
        if app.sm.current != "result" or app.waiting_doors != {3, 4}:
            return False
        lockerd.push_doors({3: "open", 4: "open"})
        lockerd.push_doors({3: "closed", 4: "closed"})
        return True

    @step
    def still_waiting_for_lockerd() -> bool:
        if app.doors.get(4) != "closed":
            return False
        seen["before_done"] = app.widgets.result.text
        lockerd.push(
            {"stream": "done", "purpose": "pickup", "order_id": "SO-1", "compartments": [3, 4]}
        )
        return True

    @step
    def thanks() -> bool:
        if app.widgets.result.text != EN["thanks"]:
            return False
        seen["thanks"] = True
        return True

    step.run()
    assert seen["before_done"] != EN["thanks"]
    assert seen["thanks"]
