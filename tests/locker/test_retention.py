"""Retention: finished orders, audit entries and stored commands older than keep_days go,
in bounded steps; nothing a live order or a re-delivered command needs goes with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import Locker, start_locker

from locker import repo
from locker.clock import rfc3339
from locker.config_standby import RetentionSection
from locker.events import LoopTurn
from locker.retention import BACKLOG_S, ORDERS_A_STEP, Retention

HOUR = 3600.0
DAY = 86400.0
ORDER_TABLES = ("orders", "order_stages", "order_compartments", "openings", "opening_doors")


def retention(lk: Locker, keep_days: float = 2, batch: int = 200, every_s: float = 60) -> Retention:
    settings = RetentionSection(keep_days=keep_days, batch=batch, every_s=every_s)
    return Retention(lk.store, settings, lk.service.now, lk.config.mqtt.command_max_age_s)


def rows(lk: Locker) -> dict[str, int]:
    with lk.store.read() as tx:
        return repo.table_rows(tx)


def order_rows(lk: Locker, order_id: str) -> dict[str, int]:
    """Rows of each order table that belong to the orders with this id."""
    db = lk.store.db
    pks = [r[0] for r in db.execute("SELECT pk FROM orders WHERE order_id=?", (order_id,))]
    marks = ",".join("?" * len(pks))
    counts = {"orders": len(pks)}
    for table in ("order_stages", "order_compartments", "openings", "codes"):
        sql = f"SELECT COUNT(*) FROM {table} WHERE order_pk IN ({marks})"
        counts[table] = db.execute(sql, pks).fetchone()[0]
    sql = (
        "SELECT COUNT(*) FROM opening_doors d JOIN openings o ON o.id = d.opening_id"
        f" WHERE o.order_pk IN ({marks})"
    )
    counts["opening_doors"] = db.execute(sql, pks).fetchone()[0]
    return counts


def assert_sound(lk: Locker) -> None:
    db = lk.store.db
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert [r[0] for r in db.execute("PRAGMA integrity_check")] == ["ok"]


def collect(lk: Locker, order_id: str) -> None:
    """Reserve, deposit and pick up one order."""
    _, code = lk.deposit(order_id)
    opened = lk.code(code)
    assert opened.outcome == "opened", opened
    lk.open_close(*opened.compartments)


def redeliver(lk: Locker, payload: str) -> dict[str, Any]:
    reply = lk.commands.handle("reserve", payload)
    assert reply is not None
    return reply


def test_old_finished_orders_go_with_every_row_of_theirs(locker: Locker) -> None:
    collect(locker, "SO-DONE")
    locker.reserve("SO-LAPSED")
    locker.advance(12 * HOUR)  # the reservation lapses
    assert locker.reserve("SO-CANC")["ok"]
    assert locker.command("cancel", order_id="SO-CANC", reason="changed mind")["ok"]
    result, _ = locker.deposit("SO-RETR")
    locker.advance(72 * HOUR)  # expired, then the staff take it out
    opened = locker.code(result["deposit_code"])
    assert opened.purpose == "retrieval"
    locker.open_close(*opened.compartments)
    locker.service.maintenance_open(6, "technician:li")
    locker.poll()
    locker.board.close_door(6)
    locker.poll()
    ids = ("SO-DONE", "SO-LAPSED", "SO-CANC", "SO-RETR")
    states = {o: locker.service.history(o)[-1]["stage"] for o in ids}
    assert states == {
        "SO-DONE": "collected",
        "SO-LAPSED": "lapsed",
        "SO-CANC": "cancelled",
        "SO-RETR": "retrieved",
    }
    assert all(order_rows(locker, o)["order_stages"] for o in ids)
    assert order_rows(locker, "SO-DONE")["opening_doors"] == 2

    locker.clock.advance(2 * DAY + 1)
    purged = retention(locker).step()

    assert purged.orders == 4
    for order_id in ids:
        assert set(order_rows(locker, order_id).values()) == {0}, order_id
        assert locker.service.history(order_id) == []
    left = rows(locker)
    assert {t: left[t] for t in ORDER_TABLES} == dict.fromkeys(ORDER_TABLES, 0)
    assert left["codes"] == 0 and left["audit"] == 0
    assert_sound(locker)
    # The cabinet goes on as before.
    collect(locker, "SO-NEXT")
    assert locker.service.history("SO-NEXT")[-1]["stage"] == "collected"


def test_live_orders_of_any_age_are_kept(locker: Locker) -> None:
    locker.deposit("SO-EXP")
    locker.deposit("SO-CWG")
    assert locker.command("cancel", order_id="SO-CWG", reason="refund")["ok"]
    locker.advance(72 * HOUR)  # SO-EXP expires
    locker.reserve("SO-RES")
    locker.deposit("SO-LOAD")
    # No turn of the timers from here: SO-RES and SO-LOAD stay live for 400 days.
    locker.clock.advance(400 * DAY)
    before = {o: order_rows(locker, o) for o in ("SO-RES", "SO-LOAD", "SO-EXP", "SO-CWG")}
    assert {o: locker.service.history(o)[-1]["stage"] for o in before} == {
        "SO-RES": "reserved",
        "SO-LOAD": "deposited",
        "SO-EXP": "expired",
        "SO-CWG": "cancelled",
    }

    purged = retention(locker, keep_days=1).step()

    assert purged.orders == 0
    assert {o: order_rows(locker, o) for o in before} == before
    held = {c["state"] for c in locker.service.snapshot()["compartments"]} - {"free"}
    assert held == {"reserved", "loaded", "retrieval"}
    assert_sound(locker)


def test_recent_finished_orders_are_kept_until_keep_days_after_they_ended(
    locker: Locker,
) -> None:
    deposit_code = locker.reserve("SO-OLD")["result"]["deposit_code"]
    locker.clock.advance(11 * HOUR)  # reserved long before it ends
    locker.open_close(*locker.code(deposit_code).compartments)
    [deposited] = locker.events("deposited")
    locker.open_close(*locker.code(deposited.fields["pickup_code"]).compartments)
    assert locker.service.history("SO-OLD")[-1]["stage"] == "collected"
    ended = order_rows(locker, "SO-OLD")
    r = retention(locker, keep_days=0.5)  # 12 hours: the reservation is older than that
    locker.clock.advance(12 * HOUR - 60)
    assert r.step().orders == 0
    assert order_rows(locker, "SO-OLD") == ended
    locker.clock.advance(120)
    assert r.step().orders == 1
    assert order_rows(locker, "SO-OLD")["orders"] == 0


def test_audit_older_than_keep_days_goes_and_newer_stays(locker: Locker) -> None:
    for i in range(3):
        locker.service.audit_action("technician:li", "maintenance_login", f"old {i}")
    locker.clock.advance(DAY)
    locker.service.audit_action("technician:li", "maintenance_login", "new")
    locker.clock.advance(2 * DAY - HOUR)
    total = rows(locker)["audit"]
    assert retention(locker, keep_days=2).step().audit == total - 1
    [entry] = locker.store.audit_entries(10)
    assert entry.detail == "new"


def test_stored_replies_stay_while_younger_than_keep_days_and_answer_a_redelivery(
    locker: Locker,
) -> None:
    payload = json.dumps(
        {
            "command_id": "dup-1",
            "sent_at": rfc3339(locker.clock.now()),
            "order_id": "SO-D",
            "items": [{"sku": "1", "qty": 1, "fresh": False, "size": "S"}],
        }
    )
    first = redeliver(locker, payload)
    assert first["ok"]
    r = retention(locker, keep_days=1)
    # Far past the command's freshness window, but younger than keep_days.
    locker.clock.advance(DAY - 60)
    assert r.step().commands == 0
    assert redeliver(locker, payload) == first
    locker.clock.advance(120)
    assert r.step().commands == 1
    # Forgotten: a re-delivery is refused by its age now, never acted on twice.
    again = redeliver(locker, payload)
    assert again["error"]["code"] == "COMMAND_EXPIRED"
    assert rows(locker)["orders"] == 1


def test_stored_replies_stay_while_a_redelivery_would_still_be_executed(
    locker: Locker,
) -> None:
    max_age = locker.config.mqtt.command_max_age_s
    r = retention(locker, keep_days=60 / DAY)  # a minute: shorter than the window
    sent = locker.clock.now()
    payload = json.dumps(
        {
            "command_id": "dup-2",
            "sent_at": rfc3339(sent),
            "order_id": "SO-F",
            "items": [{"sku": "1", "qty": 1, "fresh": False, "size": "S"}],
        }
    )
    first = redeliver(locker, payload)
    locker.clock.advance(max_age - 10)
    assert r.step().commands == 0
    assert redeliver(locker, payload) == first
    locker.clock.advance(20)
    assert r.step().commands == 1


def test_a_remote_open_still_waiting_for_its_door_keeps_its_command(locker: Locker) -> None:
    assert locker.command("open", compartment=5, reason="stuck", operator="cs-7") is None
    locker.clock.advance(10 * DAY)  # no turn of the timers: the opening still waits
    assert retention(locker, keep_days=1).step().commands == 0
    assert locker.store.stored_reply("c-1") == ("pending", None)


def test_a_backlog_goes_in_steps_of_at_most_batch_rows_a_table(tmp_path: Path) -> None:
    lk = start_locker(tmp_path)
    try:
        lk.deposit("SO-LIVE")  # the oldest order, still needed: the walk passes it
        for i in range(60):
            lk.reserve(f"SO-{i}")
            if i % 5 == 4:
                lk.advance(12 * HOUR)  # five lapse at a time
        with lk.store.transaction() as tx:
            for i in range(1000):
                tx.audit(lk.clock.now(), "system", "test", detail=str(i))
        lk.clock.advance(3 * DAY)
        before = rows(lk)
        assert before["orders"] == 61 and before["audit"] > 1000
        r = retention(lk, batch=25)
        steps = []
        while True:
            purged = r.step()
            steps.append(purged)
            fields = (purged.orders, purged.stages, purged.audit, purged.commands)
            assert max(fields) <= 25, purged
            if not r.backlog:
                break
            assert len(steps) < 100
        assert len(steps) >= 1000 // 25
        after = rows(lk)
        assert after["orders"] == 1 and after["audit"] == 0
        assert sum(p.orders for p in steps) == 60
        assert max(p.orders for p in steps) <= ORDERS_A_STEP  # and the stages batch bounds it too
        assert order_rows(lk, "SO-LIVE")["order_stages"] > 0
        assert_sound(lk)
    finally:
        lk.store.close()


def test_a_step_comes_every_s_after_the_last_and_sooner_while_a_backlog_remains(
    locker: Locker,
) -> None:
    with locker.store.transaction() as tx:
        for i in range(30):
            tx.audit(locker.clock.now(), "system", "test", detail=str(i))
    locker.clock.advance(3 * DAY)
    r = retention(locker, batch=10, every_s=60)
    assert rows(locker)["audit"] == 31  # and the start's entry

    def turn() -> int:
        n = rows(locker)["audit"]
        r.on_turn(LoopTurn(locker.clock.monotonic()))
        return n - rows(locker)["audit"]

    assert turn() == 0  # the first turn only sets when the first step comes
    locker.clock.advance(59)
    assert turn() == 0
    locker.clock.advance(1)
    assert turn() == 10
    assert turn() == 0  # a backlog: the next step a second later, not on every turn
    left = rows(locker)["audit"]
    assert left > 0
    while left:
        locker.clock.advance(BACKLOG_S)
        assert turn() == min(10, left)
        left = rows(locker)["audit"]
    with locker.store.transaction() as tx:
        tx.audit(locker.clock.now() - 3 * DAY, "system", "test")
    locker.clock.advance(59)
    assert turn() == 0  # no backlog now: every_s after the last step
    locker.clock.advance(1)
    assert turn() == 1
