"""The staff screen, the scanners and the maintenance screen of the real kiosk, under Xvfb.

The real Kivy app against a real lockerd (simulated board, camera frames from a
folder): a staff deposit typed on the keypad, one scanned by a USB scanner in
keyboard mode, a shopper's QR (rendered as `lockerctl qr` renders it) shown to
the camera, the technician's PIN, test-open and the service toggle on the
maintenance screen, then the same screens at 1024x600. Every screen is checked
for text that does not fit, and saved under docs/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, reserve_on_loop
from kiosk_helpers import Steps, display, overflowing, shot, start_daemon, tap  # noqa: F401 (a fixture)

from drivers.sim import SimBoard
from kiosk_ui.i18n import load
from locker.qr import save_png

PIN = "24681357"
ZH, EN = load("zh"), load("en")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[RunningDaemon, SimBoard, Path]]:
    frames = tmp_path / "frames"
    running, board = start_daemon(
        tmp_path,
        "kiosk-2",
        8,
        compartments='[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\n'
        'size = "S"\n[[compartments]]\nnumbers = "5-8"\nchannels = "5-8"\nboard = "b0"\n'
        'size = "M"\n',
        extra='[scanner]\ndriver = "camera"\nport = "folder:frames"\n',
        pin=PIN,
    )
    yield running, board, frames
    running.stop()


def pickup_qr(running: RunningDaemon, order_id: str) -> str | None:
    events = running.call(lambda: running.locker.store.events(0, 1000))
    for ev in events:
        if ev.type == "deposited" and ev.fields["order_id"] == order_id:
            text: str = ev.fields["pickup_qr"]
            return text
    return None


@pytest.mark.slow
@pytest.mark.usefixtures("display")
def test_staff_scanners_and_maintenance(
    daemon: tuple[RunningDaemon, SimBoard, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    running, board, frames = daemon
    locker = running.locker
    monkeypatch.setattr("kiosk_ui.kiosk.REMINDER_SECONDS", 1.5)  # 20 s on the cabinet
    first, second = reserve_on_loop(locker, "SO-S1"), reserve_on_loop(locker, "SO-S2")

    from kivy.core.window import Window

    from kiosk_ui.app import build_app

    app = build_app(str(locker.config.api.socket), lang="zh")
    w = app.widgets
    seen: dict[str, Any] = {"overflow": {}}
    step = Steps(app)

    def check(name: str) -> None:
        seen["overflow"][name] = overflowing(app.sm.current_screen)
        shot(name)

    def result() -> str:
        return str(app.widgets.result.text)

    @step
    def to_staff() -> None:
        tap(w.staff)

    @step
    def staff_screen() -> None:
        seen["staff_screen"] = (app.sm.current, w.staff_title.text)
        check("08-staff-zh")
        tap(w.staff_language)

    @step
    def staff_screen_in_english() -> None:
        seen["staff_title_en"] = w.staff_title.text
        check("08-staff-en")
        tap(w.staff_language)  # back to Chinese

    @step
    def staff_types() -> None:
        tap(w.staff_type)

    @step
    def staff_types_the_deposit_code() -> None:
        seen["staff_prompt"] = w.prompt.text
        for digit in first:
            tap(w.keys[digit])
        tap(w.keys["ok"])

    @step
    def doors_open_for_the_staff() -> bool:
        if not board.is_open(1) or app.sm.current != "result":
            return False
        seen["staff_result"] = (result(), w.note.text)
        check("09-staff-deposit-zh")
        app.toggle_language()
        return True

    @step
    def staff_deposit_in_english() -> None:
        check("09-staff-deposit-en")
        app.toggle_language()  # back to Chinese

    @step
    def a_reminder_while_the_door_stays_open() -> bool:
        if w.note.text != ZH["close_reminder"].format(numbers=1):
            return False
        check("16-close-the-door-zh")
        app.toggle_language()
        return True

    @step
    def the_reminder_in_english() -> None:
        seen["reminder_en"] = w.note.text
        check("16-close-the-door-en")
        app.toggle_language()  # back to Chinese
        board.close_door(1)

    @step
    def thanks_once_the_door_is_closed() -> bool:
        if result() != ZH["thanks"]:
            return False
        check("10-thank-you-zh")
        app.toggle_language()
        return True

    @step
    def thanks_in_english() -> None:
        seen["thanks_en"] = result()
        check("10-thank-you-en")
        app.toggle_language()  # back to Chinese

    @step
    def back_on_the_staff_screen() -> bool:
        return bool(app.sm.current == "staff")

    @step
    def a_usb_scanner_types_a_deposit_qr() -> None:
        # A keyboard-mode scanner is a keyboard: its characters, then Enter, reach the window.
        for ch in f"locker:kiosk-2:deposit:{second}":
            Window.dispatch("on_textinput", ch)
        Window.dispatch("on_key_down", 13, 40, "\r", [])

    @step
    def the_scanned_code_opened_a_door() -> bool:
        if not board.is_open(2) or result() != ZH["opened_deposit"].format(numbers=2):
            return False
        seen["scanned"] = result()
        board.close_door(2)
        return True

    @step
    def done_then_welcome_in_english() -> bool:
        if result() != ZH["thanks"]:
            return False
        tap(w.done)  # back to the staff screen
        return True

    @step
    def leave_staff() -> None:
        tap(w.staff_back)

    @step
    def english() -> None:
        tap(w.language)

    @step
    def shopper_shows_the_qr_to_the_camera() -> bool:
        qr = pickup_qr(running, "SO-S1")
        if qr is None:  # the deposit is complete once the door was seen closed
            return False
        # A whole frame at once, as a camera delivers it: written aside, then renamed.
        save_png(qr, frames / "phone.part").replace(frames / "phone.png")
        return True

    @step
    def camera_opened_the_door() -> bool:
        if not board.is_open(1) or app.sm.current != "result":
            return False
        seen["camera"] = result()
        check("11-camera-pickup-en")
        app.toggle_language()
        return True

    @step
    def camera_pickup_in_chinese() -> None:
        check("11-camera-pickup-zh")
        app.toggle_language()  # back to English
        board.close_door(1)

    @step
    def collected() -> bool:
        if result() != EN["thanks"]:
            return False
        tap(w.done)
        return True

    @step
    def a_wrong_pin_first() -> None:
        tap(w.maintenance)

    @step
    def type_a_wrong_pin() -> None:
        for digit in "11111111":
            tap(w.keys[digit])
        tap(w.keys["ok"])

    @step
    def the_pin_is_refused_with_the_attempts_left() -> bool:
        if result() != EN["pin_refused"]:
            return False
        seen["pin_note"] = w.note.text
        tap(w.done)
        return True

    @step
    def maintenance_pin() -> bool:
        if app.sm.current != "welcome":
            return False
        tap(w.maintenance)
        return True

    @step
    def type_the_pin() -> None:
        seen["pin_prompt"] = w.prompt.text
        seen["pin_shown"] = None
        for digit in PIN:
            tap(w.keys[digit])
        seen["pin_shown"] = w.shown.text
        tap(w.keys["ok"])

    @step
    def maintenance_screen() -> bool:
        if app.sm.current != "maintenance" or 3 not in app.maintenance.cells:
            return False
        tap(app.maintenance.cells[3])
        return True

    @step
    def test_open() -> None:
        tap(app.maintenance.test_open)

    @step
    def door_three_open_on_the_grid() -> bool:
        m = app.maintenance
        if not board.is_open(3) or EN["door_open_short"] not in m.cells[3].text:
            return False
        seen["detail"] = m.detail.text
        seen["status"] = m.status.text
        seen["events"] = m.events.text
        check("12-maintenance-en")
        board.close_door(3)
        tap(m.service)
        return True

    @step
    def out_of_service() -> bool:
        comp = app.maintenance._compartment(3)
        if comp is None or comp["in_service"]:
            return False
        seen["out_of_service"] = app.maintenance.detail.text
        tap(app.maintenance.language)
        return True

    @step
    def maintenance_in_chinese() -> None:
        seen["zh_detail"] = app.maintenance.detail.text
        check("17-maintenance-zh")
        tap(app.maintenance.language)  # back to English

    @step
    def bigger_screen() -> None:
        Window.size = (1024, 600)

    @step
    def maintenance_at_1024() -> None:
        check("13-maintenance-1024x600-en")
        tap(app.maintenance.exit)

    @step
    def welcome_at_1024() -> None:
        seen["after_exit"] = app.sm.current
        seen["token_after_exit"] = app.maintenance.token
        check("14-welcome-1024x600-en")
        tap(w.type_code)

    @step
    def keypad_at_1024() -> None:
        check("15-keypad-1024x600-en")

    step.run()

    assert seen["staff_screen"] == ("staff", ZH["staff_title"])
    assert seen["staff_title_en"] == EN["staff_title"]
    assert seen["reminder_en"] == EN["close_reminder"].format(numbers=1)
    assert seen["thanks_en"] == EN["thanks"]
    assert seen["staff_prompt"] == ZH["staff_prompt"]
    assert seen["staff_result"] == (
        ZH["opened_deposit"].format(numbers=1),
        ZH["order_line"].format(order="SO-S1"),
    )
    assert seen["scanned"] == ZH["opened_deposit"].format(numbers=2)
    assert seen["camera"] == EN["opened"].format(numbers=1)
    assert seen["pin_prompt"] == EN["pin_prompt"] and seen["pin_shown"] == "•" * len(PIN)
    assert seen["pin_note"] == "4 attempts left"  # from the reply's fields, not its English
    assert seen["detail"].startswith("Compartment 3 (S): free, door open, board b0")
    assert "Compartment 3 opened for a test" in seen["detail"]
    assert "platform NOT connected" in seen["status"] and "version" in seen["status"]
    assert "  ·  clock " in seen["status"]  # the cabinet's time, and whether it is synchronised
    assert f"{EN['action_maintenance_open']} #3" in seen["events"]
    assert "out of service" in seen["out_of_service"]
    assert seen["zh_detail"].startswith("3 号柜格（S）：停用")  # noqa: RUF001 (Chinese punctuation)
    assert seen["zh_detail"].endswith(ZH["taken_out"].format(number=3))
    assert seen["after_exit"] == "welcome" and seen["token_after_exit"] is None
    assert seen["overflow"] == {name: [] for name in seen["overflow"]}, "text that does not fit"

    def audit() -> list[tuple[str, str, str]]:
        rows = locker.store.db.execute(
            "SELECT actor, action, COALESCE(order_id, compartment) FROM audit"
            " WHERE action IN ('deposit_code', 'pickup_code', 'maintenance_open',"
            " 'out_of_service', 'maintenance_login') ORDER BY id"
        )
        return [tuple(map(str, r)) for r in rows]

    assert running.call(audit) == [
        ("keypad", "deposit_code", "SO-S1"),
        ("scanner", "deposit_code", "SO-S2"),
        ("camera", "pickup_code", "SO-S1"),
        ("technician", "maintenance_login", "None"),
        ("technician", "maintenance_open", "3"),
        ("technician", "out_of_service", "3"),
    ]
