"""Every state transition of orders and compartments, with the events each one causes."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from conftest import Locker, start_locker

from locker.clock import rfc3339
from locker.model import Method

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
