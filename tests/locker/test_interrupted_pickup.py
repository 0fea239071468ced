"""An unlock intent cut short by a restart is reconciled with the doors and reported.

The process dies after committing an intent (its pulse went out), the door opens and
closes while no process watches it, and the next process finds it closed: the platform
must hear of it, in the shape each purpose calls for.
"""

from __future__ import annotations

from pathlib import Path

from conftest import Locker, start_locker

from drivers.sim import SimBoard
from locker.clock import FakeClock
from locker.model import Method
from mqtt.schemas import problems

CONFIRM_S = 3.0  # the example configuration's [doors] open_confirm_s


def restart(tmp_path: Path, lk: Locker, board: SimBoard | None = None) -> Locker:
    """The process dies (nothing more is committed) and a new one starts on the same file;
    its board shows the doors as they are now: closed unless the test opens one."""
    lk.store.close()
    return start_locker(tmp_path, lk.clock, board)


def past_the_deadline(lk: Locker) -> None:
    for _ in range(int(CONFIRM_S) + 1):
        lk.advance(1)


def wire(lk: Locker, type_: str) -> list[dict[str, object]]:
    out = []
    for ev in lk.events(type_):
        payload = ev.payload("store-001-a")
        assert problems(f"event-{type_}", payload) == [], payload
        out.append(payload)
    return out


def test_a_pickup_cut_short_by_a_restart_is_reported_as_picked_up_unseen(
    tmp_path: Path,
) -> None:
    lk = start_locker(tmp_path, FakeClock())
    _, code = lk.deposit()
    assert lk.service.enter_code(code, Method.SCANNER).outcome == "opened"  # intent committed
    assert lk.board.is_open(3)  # the pulse went out; the process dies before its next poll
    lk2 = restart(tmp_path, lk)  # the shopper took the goods and shut the door meanwhile
    past_the_deadline(lk2)
    [event] = wire(lk2, "picked_up")
    assert event["order_id"] == "SO-1" and event["method"] == "scanner"
    assert event["door_seen"] is False
    assert lk2.board.unlocks == []  # never sent again
    # collected: the code is dead, the bay free for the next order
    assert lk2.code(code).outcome == "wrong"
    assert lk2.service.snapshot()["compartments"][2]["state"] == "free"
    stages = [s["stage"] for s in lk2.service.history("SO-1")]
    assert "door_not_seen" in stages and stages[-1] == "collected"
    lk2.store.close()


def test_a_pickup_whose_door_is_open_at_the_restart_completes_as_seen(tmp_path: Path) -> None:
    lk = start_locker(tmp_path, FakeClock())
    _, code = lk.deposit()
    lk.service.enter_code(code, Method.KEYPAD)
    board = SimBoard("b0", door_close_s=0, monotonic=lk.clock.monotonic)
    board.open_door(3)  # the shopper still holds the door when the new process first looks
    lk2 = restart(tmp_path, lk, board)
    past_the_deadline(lk2)
    assert lk2.events("picked_up") == []
    board.close_door(3)
    lk2.poll()
    [event] = wire(lk2, "picked_up")
    assert "door_seen" not in event
    lk2.store.close()


def test_a_deposit_cut_short_by_a_restart_is_reported_and_its_code_opens_again(
    tmp_path: Path,
) -> None:
    lk = start_locker(tmp_path, FakeClock())
    reply = lk.reserve()
    deposit_code = reply["result"]["deposit_code"]
    assert lk.service.enter_code(deposit_code, Method.SCANNER).outcome == "opened"
    lk2 = restart(tmp_path, lk)
    past_the_deadline(lk2)
    [event] = wire(lk2, "open_interrupted")
    assert event["order_id"] == "SO-1"
    assert event["compartment"] == 3 and event["purpose"] == "deposit"
    assert lk2.events("deposited") == []  # goods loaded cannot be assumed
    assert lk2.service.snapshot()["compartments"][2]["state"] == "reserved"
    # staff scan again: the door really opens, and the deposit completes as usual
    assert lk2.code(deposit_code).compartments == (3,)
    assert lk2.board.unlocks != []
    lk2.open_close(3)
    assert len(lk2.events("deposited")) == 1
    lk2.store.close()


def test_a_retrieval_cut_short_by_a_restart_is_reported(tmp_path: Path) -> None:
    lk = start_locker(tmp_path, FakeClock())
    first, _ = lk.deposit()
    lk.command("cancel", order_id="SO-1", reason="customer")
    lk.service.enter_code(first["deposit_code"], Method.KEYPAD)
    lk2 = restart(tmp_path, lk)
    past_the_deadline(lk2)
    [event] = wire(lk2, "open_interrupted")
    assert event["purpose"] == "retrieval"
    assert lk2.events("retrieved") == []
    assert lk2.code(first["deposit_code"]).compartments == (3,)
    lk2.open_close(3)
    assert len(lk2.events("retrieved")) == 1
    lk2.store.close()


def test_a_remote_open_cut_short_by_a_restart_is_answered(tmp_path: Path) -> None:
    lk = start_locker(tmp_path, FakeClock())
    lk.command("open", compartment=5, reason="stuck", operator="cs-1")
    assert lk.board.is_open(5)
    lk2 = restart(tmp_path, lk)
    past_the_deadline(lk2)
    stored = lk2.store.stored_reply("c-1")
    assert stored is not None and stored[1] is not None
    reply = stored[1]
    assert reply["ok"] is False and "restarted" in reply["error"]["message"]
    assert problems("reply", reply) == []
    assert [cid for cid, _ in lk2.replies] == ["c-1"]  # delivered, not only stored
    lk2.store.close()
