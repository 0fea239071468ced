"""Every state transition of orders and compartments, with the events each one causes."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Locker, start_locker

from locker.boards import BoardError
from locker.clock import rfc3339
from locker.model import Method
from locker.pin import hash_pin
from locker.throttle import ThrottlePolicy, ThrottleState, record_failure, wait_s

HOUR = 3600.0


def states(lk: Locker) -> dict[int, str]:
    return {c["number"]: c["state"] for c in lk.service.snapshot()["compartments"]}


def test_reserve_deposit_pickup_end_to_end(locker: Locker) -> None:
    reply = locker.reserve(
        "SO-1",
        items=[
            {"sku": "1", "qty": 2, "fresh": False, "size": "S"},
            {"sku": "2", "qty": 1, "fresh": False, "size": "M"},
        ],
    )
    assert reply["ok"], reply
    result = reply["result"]
    assert result["compartments"] == [{"number": 9, "size": "M"}]
    assert len(result["deposit_code"]) == 10
    assert result["reserved_until"] == rfc3339(locker.clock.now() + 12 * HOUR)
    assert states(locker)[9] == "reserved"

    locker.clock.advance(600)
    opened = locker.code(result["deposit_code"])
    assert (opened.outcome, opened.purpose, opened.compartments) == ("opened", "deposit", (9,))
    assert locker.events("deposited") == []  # not until the door was seen open and closed
    locker.open_close(9)
    [dep] = locker.events("deposited")
    pickup_code = dep.fields["pickup_code"]
    assert len(pickup_code) == 8
    assert dep.fields["pickup_qr"] == f"locker:store-001-a:pickup:{pickup_code}"
    assert dep.fields["compartments"] == [{"number": 9, "size": "M"}]
    assert dep.fields["pickup_until"] == rfc3339(locker.clock.now() + 72 * HOUR)
    assert states(locker)[9] == "loaded"

    locker.clock.advance(60)
    opened = locker.code(dep.fields["pickup_qr"], Method.SCANNER)
    assert (opened.outcome, opened.purpose) == ("opened", "pickup")
    locker.clock.advance(5)
    locker.poll()  # door seen open
    locker.clock.advance(7)
    locker.board.close_door(9)
    locker.poll()
    [picked] = locker.events("picked_up")
    f = picked.fields
    assert f["order_id"] == "SO-1" and f["method"] == "scanner"
    assert f["compartments"] == [{"number": 9, "size": "M"}]
    assert f["closed_at"] > f["opened_at"] > f["deposited_at"] > f["reserved_at"]
    assert states(locker)[9] == "free"
    # the code is dead after collection, and using it counts as a wrong code
    assert locker.code(pickup_code).outcome == "wrong"
    stages = [s["stage"] for s in locker.service.history("SO-1")]
    assert stages == [
        "reserved",
        "deposit_opened",
        "deposit_closed",
        "deposited",
        "opened",
        "closed",
        "collected",
    ]


def test_pickup_needs_every_compartment_seen_open_and_closed(locker: Locker) -> None:
    result, code = locker.deposit("SO-2", parcels=[{"size": "S"}, {"size": "M"}])
    numbers = [c["number"] for c in result["compartments"]]
    assert numbers == [3, 9]
    opened = locker.code(code)
    assert opened.compartments == (3, 9)
    locker.poll()
    locker.board.close_door(3)
    locker.poll()
    assert locker.events("picked_up") == []  # 9 is still open
    locker.board.close_door(9)
    locker.poll()
    assert len(locker.events("picked_up")) == 1


def test_unlock_acknowledged_but_door_never_opened_is_no_pickup(locker: Locker) -> None:
    _, code = locker.deposit()
    locker.board.jammed.add(3)
    locker.board.unlocks.clear()
    locker.code(code)
    for _ in range(10):
        locker.advance(1)
    assert locker.events("picked_up") == []
    [alarm] = locker.events("door_alarm")
    assert alarm.fields == {"compartment": 3, "kind": "jammed", "order_id": "SO-1"}
    [fault] = locker.events("fault")
    assert fault.fields["compartments"] == [3]
    # Contract v1.1's component values: a failed lock is its board's fault.
    assert (fault.fields["component"], fault.fields["board"]) == ("board", "b0")
    assert fault.fields["detail"].startswith("lock of compartment 3: ")
    assert states(locker)[3] == "fault"
    # 1 try + 2 retries (unlock_retries = 2), each one recorded before it was sent
    assert [ch for _, ch in locker.board.unlocks].count(3) == 3
    # the code stays valid: once the lock is freed the shopper can try again
    locker.board.jammed.clear()
    assert locker.code(code).outcome == "opened"
    locker.open_close(3)
    assert len(locker.events("picked_up")) == 1
    assert len(locker.events("fault_cleared")) == 1


def test_a_jammed_attempt_is_in_the_history_and_the_journal_says_what_happened(
    locker: Locker, caplog: pytest.LogCaptureFixture
) -> None:
    _, code = locker.deposit()
    caplog.set_level(logging.INFO)
    caplog.clear()  # the deposit's own lines
    locker.board.jammed.add(3)
    result = locker.code(code, Method.SCANNER)
    # What the daemon logs for the scan: what was asked, not that the door opened.
    assert result.summary() == "pickup code of order SO-1: compartment 3 unlock sent"
    for _ in range(10):
        locker.advance(1)
    journal = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.WARNING, "door_jammed by system order SO-1 compartment 3") in journal
    assert not any("seen open (pickup" in line for _, line in journal)
    stages = locker.service.history("SO-1")
    failed = [s for s in stages if s["stage"] == "open_failed"]
    assert [s["detail"] for s in failed] == ["compartment 3: jammed after 3 unlock attempts"]
    # Once freed, the shopper's second try works and the journal follows the door.
    locker.board.jammed.clear()
    caplog.clear()
    locker.code(code, Method.SCANNER)
    locker.open_close(3)
    journal = [r.getMessage() for r in caplog.records]
    assert "compartment 3 seen open (pickup of order SO-1)" in journal
    assert "picked_up by scanner order SO-1" in journal
    assert [s["stage"] for s in locker.service.history("SO-1")][-4:] == [
        "open_failed",
        "opened",
        "closed",
        "collected",
    ]


def test_reservation_lapses(locker: Locker) -> None:
    result = locker.reserve("SO-L")["result"]
    locker.advance(12 * HOUR - 1)
    assert locker.events("reservation_lapsed") == []
    locker.advance(1)
    [ev] = locker.events("reservation_lapsed")
    assert ev.fields == {"order_id": "SO-L"}
    assert states(locker)[3] == "free"
    assert locker.code(result["deposit_code"]).outcome == "wrong"


def test_reminder_then_expiry_then_staff_retrieval(locker: Locker) -> None:
    result, code = locker.deposit("SO-E")
    locker.advance(60 * HOUR - 1)
    assert locker.events("expiring_soon") == []
    locker.advance(1)
    [reminder] = locker.events("expiring_soon")
    assert reminder.fields["order_id"] == "SO-E"
    locker.advance(HOUR)
    assert len(locker.events("expiring_soon")) == 1  # once
    locker.advance(11 * HOUR)
    [expired] = locker.events("expired")
    assert expired.fields["compartments"] == [{"number": 3, "size": "S"}]
    assert states(locker)[3] == "retrieval"
    assert locker.code(code).outcome == "wrong"  # the pickup code died at expiry
    opened = locker.code(result["deposit_code"])
    assert (opened.outcome, opened.purpose) == ("opened", "retrieval")
    locker.open_close(3)
    [retrieved] = locker.events("retrieved")
    assert retrieved.fields["reason"] == "expired"
    assert states(locker)[3] == "free"
    assert locker.code(result["deposit_code"]).outcome == "wrong"


def test_expiry_waits_while_the_shopper_has_the_door_open(locker: Locker) -> None:
    _, code = locker.deposit()
    locker.advance(72 * HOUR - 5)
    locker.code(code)
    locker.advance(10)  # deadline passes with the door open
    assert locker.events("expired") == []
    locker.board.close_door(3)
    locker.poll()
    assert len(locker.events("picked_up")) == 1
    assert locker.events("expired") == []


def test_cancel_reserved_frees_and_cancel_loaded_waits_for_retrieval(locker: Locker) -> None:
    r1 = locker.reserve("SO-C1")["result"]
    reply = locker.command("cancel", order_id="SO-C1", reason="customer changed mind")
    assert reply == {
        "command_id": reply["command_id"],
        "ok": True,
        "result": {"order_id": "SO-C1", "state": "cancelled"},
    }
    assert states(locker)[3] == "free"
    assert locker.code(r1["deposit_code"]).outcome == "wrong"

    r2, code = locker.deposit("SO-C2")
    assert locker.command("cancel", order_id="SO-C2", reason="refund")["ok"]
    assert states(locker)[3] == "retrieval"
    assert locker.code(code).outcome == "wrong"
    opened = locker.code(r2["deposit_code"])
    assert opened.purpose == "retrieval"
    locker.open_close(3)
    [ev] = locker.events("retrieved")
    assert ev.fields["reason"] == "cancelled"


def test_extend_moves_the_deadline_and_rearms_the_reminder(locker: Locker) -> None:
    locker.deposit()
    locker.advance(61 * HOUR)
    assert len(locker.events("expiring_soon")) == 1
    new_until = locker.clock.now() + 48 * HOUR
    reply = locker.command("extend", order_id="SO-1", pickup_until=rfc3339(new_until))
    assert reply["ok"] and reply["result"]["pickup_until"] == rfc3339(new_until)
    locker.advance(12 * HOUR)
    assert locker.events("expired") == []
    locker.advance(24 * HOUR)
    assert len(locker.events("expiring_soon")) == 2
    locker.advance(12 * HOUR)
    assert len(locker.events("expired")) == 1


def test_reissue_kills_the_old_code(locker: Locker) -> None:
    _, old = locker.deposit()
    reply = locker.command("reissue_code", order_id="SO-1")
    new = reply["result"]["pickup_code"]
    assert new != old and reply["result"]["pickup_qr"].endswith(new)
    [ev] = locker.events("code_issued")
    assert ev.fields == {
        "order_id": "SO-1",
        "pickup_code": new,
        "pickup_qr": f"locker:store-001-a:pickup:{new}",
    }
    assert locker.code(old).outcome == "wrong"
    assert locker.code(new).outcome == "opened"


def test_out_of_service_is_never_allocated(locker: Locker) -> None:
    for n in range(3, 9):
        assert locker.command("set_service", compartment=n, in_service=False, reason="x")["ok"]
    assert states(locker)[3] == "out_of_service"
    # only the low S bays are left: a non-accessible customer still gets one
    assert locker.reserve("SO-A")["result"]["compartments"] == [{"number": 1, "size": "S"}]
    snap = locker.service.snapshot()
    assert snap["free"] == {"S": 1, "M": 4, "L": 2}
    assert locker.command("set_service", compartment=3, in_service=True, reason="fixed")["ok"]
    assert locker.reserve("SO-B")["result"]["compartments"] == [{"number": 3, "size": "S"}]


def test_forced_door_and_door_left_open(locker: Locker) -> None:
    locker.deposit()
    locker.advance(10)  # well after the deposit's own unlock pulse
    locker.board.open_door(3)
    locker.poll()
    [forced] = locker.events("door_alarm")
    assert forced.fields == {"compartment": 3, "kind": "forced", "order_id": "SO-1"}
    locker.advance(59)
    assert len(locker.events("door_alarm")) == 1
    locker.advance(1)
    left = locker.events("door_alarm")[-1]
    assert left.fields == {"compartment": 3, "kind": "left_open", "order_id": "SO-1"}
    locker.advance(120)
    assert len(locker.events("door_alarm")) == 2  # once per opening of the door


def test_board_offline_then_back(locker: Locker) -> None:
    _, code = locker.deposit()
    locker.board.offline = True
    try:
        locker.board.read_doors()
    except Exception as exc:  # what the poller does with a failed read
        from locker.boards import BoardError

        assert isinstance(exc, BoardError)
        locker.service.board_failed("b0", exc)
        locker.service.board_failed("b0", exc)
    [fault] = locker.events("fault")
    assert (fault.fields["component"], fault.fields["board"]) == ("board", "b0")
    assert fault.fields["compartments"] == list(range(1, 15))
    assert set(states(locker).values()) == {"fault"}
    shown = locker.service.enter_code(code, Method.KEYPAD)
    assert shown.outcome == "door_failed" and "service desk" in shown.message
    locker.board.offline = False
    locker.poll()
    [cleared] = locker.events("fault_cleared")
    assert (cleared.fields["component"], cleared.fields["board"]) == ("board", "b0")
    assert states(locker)[3] == "loaded"
    assert locker.code(code).outcome == "opened"  # the code survived the outage


def test_remote_open_answers_after_the_door_is_seen_open(locker: Locker) -> None:
    assert locker.command("open", compartment=5, reason="stuck", operator="cs-7") is None
    assert locker.replies == []
    locker.poll()
    [(cid, reply)] = locker.replies
    assert reply == {"command_id": cid, "ok": True, "result": {"compartment": 5, "door": "opened"}}
    locker.board.close_door(5)
    locker.poll()
    assert locker.events("door_alarm") == []


def test_door_opening_right_after_a_cancel_is_not_an_intrusion(locker: Locker) -> None:
    result = locker.reserve()["result"]
    locker.service.enter_code(result["deposit_code"], Method.KEYPAD)  # pulse sent, not yet seen
    assert locker.command("cancel", order_id="SO-1", reason="x")["ok"]
    locker.poll()  # the door the staff just unlocked is seen open
    assert locker.events("door_alarm") == []


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


def test_qr_of_another_locker_counts_as_wrong(locker: Locker) -> None:
    r = locker.code("locker:store-999-z:pickup:12345678", Method.CAMERA)
    assert r.outcome == "wrong" and "another locker" in r.message and r.attempts_left == 4


def test_codes_are_never_stored_in_clear(tmp_path: Path) -> None:
    lk = start_locker(tmp_path)
    result, pickup = lk.deposit()
    reply = lk.command("reissue_code", order_id="SO-1")
    reissued = reply["result"]["pickup_code"]
    lk.store.db.execute("PRAGMA wal_checkpoint(FULL)")
    blobs = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("locker.db*"))
    for code in (result["deposit_code"], pickup, reissued):
        assert code.encode() not in blobs
        assert code.encode("utf-16-le") not in blobs
    lk.store.close()


def test_live_codes_are_unique(locker: Locker, monkeypatch: object) -> None:
    import secrets

    values = iter([1234567890, 1234567890, 1234567890, 42])
    real = secrets.randbelow
    import pytest

    mp = pytest.MonkeyPatch()
    mp.setattr(secrets, "randbelow", lambda n: next(values) if n == 10**10 else real(n))
    try:
        first = locker.reserve("SO-U1")["result"]["deposit_code"]
        second = locker.reserve("SO-U2")["result"]["deposit_code"]
    finally:
        mp.undo()
    assert first == "1234567890"
    assert second == "0000000042"


def test_a_sensor_stuck_open_never_blocks_an_unlock(locker: Locker) -> None:
    _, code = locker.deposit()
    locker.board.stuck[3] = True  # broken sensor cable: always reads open
    locker.advance(10)
    locker.board.unlocks.clear()
    assert locker.code(code).outcome == "opened"
    assert [ch for _, ch in locker.board.unlocks] == [3]
    row = locker.store.db.execute(
        "SELECT seen_open_at FROM opening_doors ORDER BY opening_id DESC LIMIT 1"
    ).fetchone()
    assert row["seen_open_at"] is not None  # the reading after the pulse counts as opened


def test_technician_test_open_is_logged_and_not_an_alarm(locker: Locker) -> None:
    locker.service.maintenance_open(6, "technician:li")
    locker.poll()
    assert locker.board.is_open(6)
    locker.board.close_door(6)
    locker.poll()
    assert locker.events() == []  # no alarm, no order event
    row = locker.store.db.execute(
        "SELECT actor, action, compartment FROM audit WHERE action='maintenance_open'"
    ).fetchone()
    assert tuple(row) == ("technician:li", "maintenance_open", 6)
    state = locker.store.db.execute("SELECT state FROM openings").fetchone()["state"]
    assert state == "done"


def test_no_unlock_reaches_the_board_when_the_intent_fails_to_commit(locker: Locker) -> None:
    _, code = locker.deposit("SO-1")
    unlocks_before = list(locker.board.unlocks)
    # The COMMIT that would store the intent fails inside SQLite, as on a full medium: a
    # deferred foreign key, checked only at COMMIT, rides along with every new opening.
    db = locker.store.db
    db.execute("CREATE TABLE trap (pk INTEGER REFERENCES orders(pk) DEFERRABLE INITIALLY DEFERRED)")
    db.execute(
        "CREATE TRIGGER trap_openings AFTER INSERT ON openings"
        " BEGIN INSERT INTO trap VALUES (-1); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        locker.code(code)
    db.execute("DROP TRIGGER trap_openings")
    # Later transactions commit (door polls, timers, a command): the failed transaction's
    # unlock must not ride along with any of them.
    locker.advance(1)
    assert locker.reserve("SO-2")["ok"]
    locker.advance(1)
    assert locker.board.unlocks == unlocks_before
    # and the code still works once the medium does
    assert locker.code(code).outcome == "opened"
    assert len(locker.board.unlocks) == len(unlocks_before) + 1


# -- the wrong-code throttle under attack ---------------------------------------------------


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
