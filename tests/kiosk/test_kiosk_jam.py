"""A jammed lock, as the shopper sees it: the real kiosk under Xvfb against a real lockerd
whose simulated board does not release the lock (the simulator's `jam N`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, reserve_on_loop
from kiosk_helpers import Steps, display, shot, start_daemon, tap  # noqa: F401 (a fixture)

from drivers.sim import SimBoard
from kiosk_ui.i18n import load
from locker.model import Method

ZH, EN = load("zh"), load("en")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[RunningDaemon, SimBoard]]:
    # lockerd gives up on a door quickly here (3 s and two retries on a cabinet).
    running, board = start_daemon(
        tmp_path, "jam-1", 4, extra="[doors]\nopen_confirm_s = 0.3\nunlock_retries = 1\n"
    )
    yield running, board
    running.stop()


def pickup_code(running: RunningDaemon, order_id: str) -> str | None:
    for ev in running.call(lambda: running.locker.store.events(0, 1000)):
        if ev.type == "deposited" and ev.fields["order_id"] == order_id:
            code: str = ev.fields["pickup_code"]
            return code
    return None


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_a_jammed_door_sends_the_shopper_to_the_service_desk(
    daemon: tuple[RunningDaemon, SimBoard],
) -> None:
    running, board = daemon
    locker = running.locker
    deposit_code = reserve_on_loop(locker, "SO-J")

    from kiosk_ui.app import build_app

    app = build_app(str(locker.config.api.socket), lang="zh")
    seen: dict[str, Any] = {}
    step = Steps(app)
    show_result = app.show_result

    def first_result(r: dict[str, Any], since: int | None = None) -> None:
        # The reply and lockerd's word on the jam both arrive between two steps: keep
        # what the screen said first.
        show_result(r, since)
        seen.setdefault("first", app.widgets.result.text)

    app.show_result = first_result  # type: ignore[method-assign]

    @step
    def staff_loads_the_order() -> None:
        result = running.call(
            lambda: locker.service.enter_code(deposit_code, Method.SCANNER, notify=False)
        )
        assert result.compartments == (1,)

    @step
    def and_closes_the_door() -> bool:
        if not board.is_open(1):
            return False
        board.close_door(1)
        return True

    @step
    def the_lock_jams() -> bool:
        code = pickup_code(running, "SO-J")
        if code is None:  # loaded once the door was seen closed
            return False
        seen["code"] = code
        board.jammed.add(1)
        tap(app.widgets.type_code)
        return True

    @step
    def shopper_types_the_pickup_code() -> None:
        for digit in seen["code"]:
            tap(app.widgets.keys[digit])
        tap(app.widgets.keys["ok"])

    @step
    def lockerd_gives_up_on_the_door() -> bool:
        if app.widgets.result.text != ZH["door_failed"]:
            return False
        seen["screen"] = app.sm.current
        seen["waiting"] = set(app.waiting_doors)
        shot("19-door-jammed-zh")
        app.toggle_language()
        return True

    @step
    def jammed_in_english() -> None:
        seen["english"] = app.widgets.result.text
        shot("19-door-jammed-en")

    step.run()
    assert seen["first"] == ZH["opened"].format(numbers=1)
    assert seen["screen"] == "result" and seen["waiting"] == set()
    assert seen["english"] == EN["door_failed"]
    assert not board.is_open(1)
    alarms = running.call(
        lambda: [
            r[0] for r in locker.store.db.execute("SELECT action FROM audit WHERE compartment=1")
        ]
    )
    assert "door_jammed" in alarms
