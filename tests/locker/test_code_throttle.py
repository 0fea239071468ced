"""Wrong codes: the terminal throttle, the daily budget, and what counts as a success
(split from test_service.py; the same fixtures)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Locker, start_locker

from locker.boards import BoardError
from locker.model import Method
from locker.pin import hash_pin
from locker.throttle import ThrottlePolicy, ThrottleState, record_failure, wait_s

HOUR = 3600.0


def states(lk: Locker) -> dict[int, str]:
    return {c["number"]: c["state"] for c in lk.service.snapshot()["compartments"]}


def test_wrong_codes_throttle_the_terminal_not_the_order(locker: Locker) -> None:
    _, code = locker.deposit()
    for i in range(5):
        r = locker.code("00000000")
        assert (r.outcome, r.attempts_left) == ("wrong", 4 - i)
    r = locker.code("00000000")
    assert r.outcome == "throttled" and r.wait_s == 30
    [ev] = locker.events("code_attempts_throttled")
    assert ev.fields["failures"] == 6 and ev.fields["locked_for_s"] == 30
    assert locker.code(code).outcome == "throttled"  # the keypad waits, whoever types
    assert locker.code(code, Method.SCANNER).outcome == "opened"  # other terminal unaffected


def allowed_evaluations(times: list[float], policy: ThrottlePolicy) -> int:
    """How many wrong codes tried at these times one terminal's throttle lets through,
    with nothing but wrong codes in between: the allowance any mix of codes must keep to."""
    state, evaluated = ThrottleState(), 0
    for t in times:
        if wait_s(state, t) > 0:
            continue
        state, _ = record_failure(state, t, policy)
        evaluated += 1
    return evaluated


def wrong_codes_evaluated(locker: Locker, terminal: str) -> int:
    """Wrong codes the locker looked up (each has its audit row; a throttled one has none)."""
    row = locker.store.db.execute(
        "SELECT COUNT(*) FROM audit WHERE action='wrong_code' AND actor=? AND detail='wrong code'",
        (terminal,),
    ).fetchone()
    return int(row[0])


def _hold_own_door_open(locker: Locker) -> str:
    _, pickup = locker.deposit()
    assert locker.code(pickup).outcome == "opened"  # the door is open, and stays open
    return pickup


def _loaded_orders_deposit_code(locker: Locker) -> str:
    result, _ = locker.deposit()
    return str(result["deposit_code"])


def _code_on_an_offline_board(locker: Locker) -> str:
    _, pickup = locker.deposit()
    locker.board.offline = True
    with pytest.raises(BoardError) as failed:
        locker.board.read_doors()
    locker.service.board_failed("b0", failed.value)
    locker.service.board_failed("b0", failed.value)
    assert locker.service.enter_code(pickup, Method.KEYPAD).outcome == "door_failed"
    return pickup


@pytest.mark.parametrize(
    "live_code",
    [_loaded_orders_deposit_code, _hold_own_door_open, _code_on_an_offline_board],
    ids=["loaded-deposit-code", "own-door-held-open", "board-offline"],
)
def test_a_live_code_that_opens_nothing_never_resets_the_throttle(
    locker: Locker, live_code: Callable[[Locker], str]
) -> None:
    """The brute force that ran at machine speed: 5 wrong codes, then a live code that
    opens nothing, 10,000 times, one try every 0.1 s. Not one wrong code more is
    evaluated than the throttle lets through with wrong codes alone."""
    code = live_code(locker)
    svc, wrong_times = locker.service, []
    for i in range(10_000):
        locker.clock.advance(0.1)
        if i % 6 == 5:
            assert svc.enter_code(code, Method.KEYPAD).message != "compartment 3 is open"
            continue
        wrong_times.append(locker.clock.now())
        svc.enter_code(f"{10_000_000 + i}", Method.KEYPAD)
    evaluated = wrong_codes_evaluated(locker, "keypad")
    allowance = allowed_evaluations(wrong_times, svc.policy)
    assert allowance < 30  # the throttle's own figure for 1,000 s of trying
    assert evaluated <= allowance
    assert [e.fields["terminal"] for e in locker.events("code_attempts_throttled")] == ["keypad"]


def test_a_new_opening_is_the_only_success(locker: Locker) -> None:
    _, pickup = locker.deposit()
    for _ in range(4):
        locker.code("00000000")
    assert locker.code(pickup).outcome == "opened"  # a new opening: the keypad starts afresh
    assert locker.code("00000000").attempts_left == 4
    for _ in range(3):
        assert locker.code(pickup).message == "compartment already open"
    assert locker.code("00000000").attempts_left == 3  # holding the door open proved nothing


def test_a_loaded_orders_deposit_code_is_wrong_for_shoppers_and_live_again_for_retrieval(
    locker: Locker,
) -> None:
    result, _ = locker.deposit()
    deposit = result["deposit_code"]
    r = locker.code(deposit)
    assert (r.outcome, r.reason, r.attempts_left) == ("wrong", None, 4)  # as any wrong code
    staff = locker.service.entry.enter_code(deposit, Method.SCANNER, staff=True)
    assert (staff.outcome, staff.reason) == ("refused", "already_loaded")  # staff are told
    assert locker.command("cancel", order_id="SO-1", reason="x")["ok"]
    retrieval = locker.code(deposit)
    assert (retrieval.outcome, retrieval.purpose) == ("opened", "retrieval")


def test_the_daily_budget_calls_staff_and_slows_every_shopper_terminal(tmp_path: Path) -> None:
    lk = start_locker(tmp_path, security={"wrong_codes_per_day": 20, "budget_wait_s": 900})
    _, pickup = lk.deposit()
    deposit = lk.reserve("SO-2")["result"]["deposit_code"]
    terminals = [Method.KEYPAD, Method.SCANNER, Method.CAMERA]
    tries = []
    for i in range(200):  # three terminals, each trying whenever its own wait is over
        lk.clock.advance(61)
        tries.append(lk.service.enter_code(f"{20_000_000 + i}", terminals[i % 3]))
        if tries[-1].wait_s == 900:
            break
    assert len(tries) == 20 and tries[-1].outcome == "throttled"  # the 20th was evaluated
    [alarm] = [e for e in lk.events("code_attempts_throttled") if e.fields["terminal"] == "locker"]
    assert alarm.fields == {"failures": 20, "locked_for_s": 900, "terminal": "locker"}
    audit = lk.store.db.execute(
        "SELECT detail FROM audit WHERE actor='locker' AND action='code_attempts_throttled'"
    ).fetchall()
    assert [r[0] for r in audit] == ["20 wrong codes today, locked 900 s"]
    lk.clock.advance(60)
    for method in terminals:  # every shopper terminal waits, even for a right code
        r = lk.service.enter_code(pickup, method)
        assert r.outcome == "throttled" and r.wait_s == 840
    # Staff load the locker and the technician logs in as if nothing happened.
    staff = lk.service.entry.enter_code(deposit, Method.KEYPAD, staff=True)
    assert (staff.outcome, staff.purpose) == ("opened", "deposit")
    assert lk.service.entry.check_pin("24681357", hash_pin("24681357", iterations=1000)) is None
    # Then one wrong code per wait, all day long, each one told to the platform.
    lk.clock.advance(840)
    assert lk.service.enter_code(pickup, Method.CAMERA).outcome == "opened"
    assert lk.service.enter_code("20999999", Method.SCANNER).wait_s == 900
    assert lk.service.enter_code("20999998", Method.KEYPAD).outcome == "throttled"
    assert (
        len([e for e in lk.events("code_attempts_throttled") if e.fields["terminal"] == "locker"])
        == 2
    )
    lk.clock.advance(24 * HOUR)  # a new day: the budget is whole again
    assert lk.service.enter_code("20999997", Method.KEYPAD).outcome == "wrong"
    lk.store.close()


def test_a_shopper_flood_never_locks_out_the_staff_screen_or_the_technician(
    locker: Locker,
) -> None:
    deposit = locker.reserve("SO-2")["result"]["deposit_code"]
    stored = hash_pin("24681357", iterations=1000)
    terminals = [Method.KEYPAD, Method.SCANNER, Method.CAMERA]
    for i in range(10_000):  # 10,000 wrong codes in 1,000 s at every shopper terminal
        locker.clock.advance(0.1)
        locker.service.enter_code(f"{30_000_000 + i}", terminals[i % 3])
    assert locker.service.enter_code(deposit, Method.KEYPAD).outcome == "throttled"
    staff = locker.service.entry.enter_code(deposit, Method.KEYPAD, staff=True)
    assert (staff.outcome, staff.compartments) == ("opened", (3,))
    assert locker.service.entry.check_pin("24681357", stored) is None
    # A flood at the staff screen or of PINs makes that terminal wait a minute at most.
    for i in range(100):
        locker.clock.advance(0.1)
        staff = locker.service.entry.enter_code(f"{4_000_000_000 + i}", Method.KEYPAD, staff=True)
        pin = locker.service.entry.check_pin("11111111", stored)
        assert staff.wait_s <= 60 and pin is not None and pin.wait_s <= 60
    locker.clock.advance(60)
    assert locker.service.entry.check_pin("24681357", stored) is None


def test_the_staff_screen_takes_deposit_codes_only(locker: Locker) -> None:
    _, pickup = locker.deposit()
    r = locker.service.entry.enter_code(pickup, Method.KEYPAD, staff=True)
    assert (r.outcome, r.reason) == ("wrong", None)  # no shopper's code is found there
    assert locker.code(pickup).outcome == "opened"


def test_a_flood_of_input_that_is_not_a_code_is_throttled_and_audited_once_a_minute(
    locker: Locker,
) -> None:
    _, pickup = locker.deposit()
    before = locker.store.db.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
    times, evaluated = [], 0
    for _ in range(10_000):  # 10,000 junk inputs in 500 s
        locker.clock.advance(0.05)
        times.append(locker.clock.now())
        r = locker.service.enter_code("not a code", Method.SCANNER)
        evaluated += r.outcome != "throttled"
    rows = locker.store.db.execute(
        "SELECT actor, action, detail FROM audit WHERE id > ?", (before,)
    ).fetchall()
    assert 1 <= len(rows) <= 500 / 60 + 1
    assert evaluated <= allowed_evaluations(times, locker.service.entry.not_a_code) < 30
    assert {(r[0], r[1]) for r in rows} == {("scanner", "code_rejected")}
    assert "in a row" in rows[-1][2]
    # Junk is no guess: it spends neither the scanner's code attempts nor the day's budget.
    assert locker.code("00000000", Method.SCANNER).attempts_left == 4
    assert locker.code(pickup, Method.SCANNER).outcome == "opened"
