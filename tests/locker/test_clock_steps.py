"""A clock that jumps: the wall clock stepped forward or back (NTP after a boot without a
battery clock) while monotonic time goes on, as docs/time.md says the locker behaves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Locker, start_locker

from locker.api_ops import OPS, ApiError, Context
from locker.clock import parse_rfc3339, rfc3339
from locker.lifecycle import UNSYNCED_HOLD_S
from locker.model import Method
from locker.pin import write_pin

HOUR = 3600.0
DAY = 24 * HOUR
STEPS = [pytest.param(6 * HOUR, id="forward-6h"), pytest.param(-6 * HOUR, id="back-6h")]
BACK = [pytest.param(-6 * HOUR, id="back-6h"), pytest.param(-DAY, id="back-1d")]
ALL_STEPS = [*STEPS, pytest.param(-DAY, id="back-1d")]


def wrong(lk: Locker, n: int, method: Method = Method.KEYPAD) -> Any:
    result = None
    for i in range(n):
        result = lk.service.enter_code(f"{30_000_000 + lk.clock.monotonic() * 10 + i:.0f}", method)
    return result


def states(lk: Locker) -> dict[str, str]:
    rows = lk.store.db.execute("SELECT order_id, state FROM orders").fetchall()
    return {r["order_id"]: r["state"] for r in rows}


# -- the wrong-code throttle -------------------------------------------------------------


@pytest.mark.parametrize("step", ALL_STEPS)
def test_a_throttle_wait_in_progress_keeps_its_real_length(locker: Locker, step: float) -> None:
    wrong(locker, 5)  # the free attempts
    first = wrong(locker, 1)
    assert (first.outcome, first.wait_s) == ("throttled", 30)
    locker.clock.advance(10)
    locker.clock.step(step)
    still = wrong(locker, 1)
    assert (still.outcome, still.wait_s) == ("throttled", 20)  # not 0, not hours
    locker.clock.advance(20)
    assert wrong(locker, 1).wait_s == 60  # evaluated again, and counted as before


@pytest.mark.parametrize("step", BACK)
def test_a_backward_step_never_makes_a_terminal_wait_longer_than_its_lock(
    locker: Locker, step: float
) -> None:
    """Failed before: the wait became the step plus the rest (a keypad closed for a day)."""
    wrong(locker, 6)
    locker.clock.advance(10)
    locker.clock.step(step)
    r = wrong(locker, 1)
    assert r.outcome == "throttled" and r.wait_s <= 60
    pin = locker.service.entry.check_pin("00000000", None)
    assert pin is not None and pin.outcome == "refused"  # the technician's own terminal


@pytest.mark.parametrize("step", ALL_STEPS)
def test_the_daily_budget_is_not_reset_by_a_step(tmp_path: Path, step: float) -> None:
    """Failed before for the backward steps: every shopper terminal waited the step
    plus 15 minutes. Never reset: after the wait a wrong code finds the budget spent."""
    lk = start_locker(tmp_path, security={"free_attempts": 100, "wrong_codes_per_day": 5})
    terminals = [Method.KEYPAD, Method.SCANNER, Method.CAMERA]
    for i in range(5):
        lk.clock.advance(61)
        r = wrong(lk, 1, terminals[i % 3])
    assert (r.outcome, r.wait_s) == ("throttled", 900)  # spent
    lk.clock.advance(100)
    lk.clock.step(step)
    during = wrong(lk, 1, Method.SCANNER)
    assert during.outcome == "throttled" and during.wait_s <= 900
    lk.clock.advance(900)
    after = wrong(lk, 1, Method.CAMERA)
    assert (after.outcome, after.wait_s) == ("throttled", 900)  # still spent, not "wrong"
    lk.store.close()


@pytest.mark.parametrize("step", ALL_STEPS)
def test_the_budgets_wait_keeps_its_real_length(tmp_path: Path, step: float) -> None:
    lk = start_locker(tmp_path, security={"free_attempts": 100, "wrong_codes_per_day": 5})
    for _ in range(5):
        lk.clock.advance(61)
        r = wrong(lk, 1, Method.SCANNER)
    assert r.wait_s == 900
    lk.clock.advance(100)
    lk.clock.step(step)
    assert wrong(lk, 1, Method.KEYPAD).wait_s == 800
    lk.store.close()


# -- timers held in memory ---------------------------------------------------------------


@pytest.mark.parametrize("step", ALL_STEPS)
def test_a_technician_session_keeps_its_length(locker: Locker, step: float) -> None:
    write_pin(locker.config.pin_path, "24681357")
    api = Context(locker.service, {}, dict, dict)
    token = OPS["login"](api, {"pin": "24681357"})["token"]
    locker.clock.advance(290)
    locker.clock.step(step)
    assert OPS["diagnostics"](api, {"token": token}) == {}  # and the five minutes restart
    locker.clock.advance(299)
    locker.clock.step(-step)
    assert OPS["diagnostics"](api, {"token": token}) == {}
    locker.clock.advance(301)
    with pytest.raises(ApiError, match="session has ended"):
        OPS["diagnostics"](api, {"token": token})


@pytest.mark.parametrize("step", ALL_STEPS)
def test_a_door_left_open_alarms_after_its_real_time(locker: Locker, step: float) -> None:
    locker.deposit()
    locker.advance(10)
    locker.board.open_door(3)
    locker.poll()
    assert len(locker.events("door_alarm")) == 1  # forced
    locker.clock.step(step)
    locker.advance(59)
    assert len(locker.events("door_alarm")) == 1
    locker.advance(1)
    assert locker.events("door_alarm")[-1].fields["kind"] == "left_open"


@pytest.mark.parametrize("step", ALL_STEPS)
def test_an_unlocked_door_is_confirmed_on_its_real_time(locker: Locker, step: float) -> None:
    """The door is seen open within open_confirm_s of monotonic time: no alarm, no retry."""
    result = locker.reserve()["result"]
    locker.clock.step(step)
    opened = locker.code(result["deposit_code"])
    assert opened.outcome == "opened"
    locker.clock.step(-step)
    locker.advance(2)
    locker.open_close(*opened.compartments)
    assert [e.fields["order_id"] for e in locker.events("deposited")] == ["SO-1"]
    assert [e.fields["kind"] for e in locker.events("door_alarm")] in ([], ["left_open"])
    assert [ch for _, ch in locker.board.unlocks] == [3]  # one pulse: seen open in time


# -- deadlines: reservations and pickup windows --------------------------------------------


def test_a_forward_step_fires_every_deadline_it_passes_in_one_sweep(locker: Locker) -> None:
    """Documented: deadlines are the wall times the platform was told; past, they fire."""
    locker.reserve("SO-OLD")  # reserved_until in 12 h
    locker.deposit("SO-LOADED", pickup_hours=4)
    locker.advance(2 * HOUR)
    locker.reserve("SO-NEW")  # reserved_until in 12 h from here
    locker.clock.step(6 * HOUR)
    locker.poll()
    assert states(locker) == {"SO-OLD": "reserved", "SO-LOADED": "expired", "SO-NEW": "reserved"}
    locker.clock.step(4 * HOUR + 1)  # 12 h after SO-OLD, 10 h after SO-NEW
    locker.poll()
    assert states(locker)["SO-OLD"] == "lapsed" and states(locker)["SO-NEW"] == "reserved"
    assert [e.fields["order_id"] for e in locker.events("expired")] == ["SO-LOADED"]


@pytest.mark.parametrize("step", BACK)
def test_a_backward_step_expires_nothing_early_and_ends_windows_at_the_told_time(
    locker: Locker, step: float
) -> None:
    result = locker.reserve("SO-R")["result"]
    locker.deposit("SO-L", pickup_hours=2)
    [deposited] = locker.events("deposited")
    told = {"SO-R": result["reserved_until"], "SO-L": deposited.fields["pickup_until"]}
    locker.clock.step(step)
    locker.advance(2 * HOUR + 1)  # SO-L's two hours have passed in real time
    assert states(locker) == {"SO-R": "reserved", "SO-L": "loaded"}
    for order_id, at in sorted(told.items(), key=lambda kv: kv[1]):
        locker.advance(parse_rfc3339(at) - locker.clock.now() - 1)
        assert states(locker)[order_id] in ("reserved", "loaded")  # a second before: kept
        locker.advance(2)
        assert states(locker)[order_id] in ("lapsed", "expired")  # at the time told: ended


def test_deadlines_wait_for_ntp_in_the_first_hour_after_boot(tmp_path: Path) -> None:
    """Failed before: an unsynchronised clock (maybe ahead) lapsed reservations at once."""
    lk = start_locker(tmp_path, rules={"reserve_hours": 0.1})
    lk.service.lifecycle.clock = lk.clock
    lk.clock.synced = False
    lk.reserve("SO-1")
    lk.clock.step(HOUR)  # a clock booted ahead, or a date set by hand
    lk.poll()
    assert states(lk) == {"SO-1": "reserved"}
    lk.clock.synced = True  # NTP: the clock is right, and so is the deadline
    lk.clock.step(-HOUR + 360)
    lk.poll()
    assert states(lk) == {"SO-1": "lapsed"}
    lk.store.close()


def test_without_ntp_deadlines_are_judged_after_the_first_hour(tmp_path: Path) -> None:
    lk = start_locker(tmp_path, rules={"reserve_hours": 0.1})
    lk.service.lifecycle.clock = lk.clock
    lk.clock.synced = False
    lk.reserve("SO-1")
    lk.advance(UNSYNCED_HOLD_S - lk.clock.monotonic() - 1)
    assert states(lk) == {"SO-1": "reserved"}
    lk.advance(2)  # a locker without network must still expire
    assert states(lk) == {"SO-1": "lapsed"}
    lk.store.close()


def test_the_service_gives_the_lifecycle_its_clock(locker: Locker) -> None:
    assert locker.service.lifecycle.clock is locker.clock


# -- platform commands ---------------------------------------------------------------------


@pytest.mark.parametrize("synced", [True, False, None])
@pytest.mark.parametrize("step", STEPS)
def test_a_command_on_the_platforms_time_is_refused_naming_the_lockers_clock(
    locker: Locker, step: float, synced: bool | None
) -> None:
    """Documented: judged on the locker's clock even when unsynchronised (a stale remote
    open must never fire); the refusal carries the locker's time and clock state.
    Failed before: no result, and nothing said about the locker's clock."""
    platform_now = locker.clock.now()
    locker.clock.step(-step)  # the locker is 6 h behind (forward-6h) or ahead (back-6h)
    locker.clock.synced = synced
    command = {"command_id": "c-far", "sent_at": rfc3339(platform_now), "compartment": 5}
    reply = locker.commands.handle("open", json.dumps(command))
    assert reply is not None and reply["error"]["code"] == "COMMAND_EXPIRED"
    assert reply["result"] == {
        "locker_time": rfc3339(locker.clock.now()),
        "clock_synchronised": synced,
    }
    assert ("not synchronised" in reply["error"]["message"]) == (synced is False)
    locker.advance(1)
    assert locker.board.unlocks == [] and locker.replies == []
    # Once NTP puts the locker right, the platform's next command is executed.
    locker.clock.step(step)
    locker.clock.synced = True
    again = {**command, "command_id": "c-again", "sent_at": rfc3339(locker.clock.now())}
    assert locker.commands.handle("open", json.dumps(again)) is None  # the door follows
