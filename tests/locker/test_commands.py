"""Every command and every reply error code of contract v1, through the command processor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Locker, start_locker

from locker.clock import rfc3339


def err(reply: dict[str, Any] | None) -> str:
    assert reply is not None and reply["ok"] is False, reply
    code: str = reply["error"]["code"]
    assert reply["error"]["message"]
    return code


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff\xfe", "not JSON"),
        (b'{"sent_at": "2026-11-25T08:00:00Z"}', "command_id"),
        (b'{"command_id": 7}', "command_id"),
        (b'{"command_id": ""}', "command_id"),
        (json.dumps({"command_id": "x" * 200}).encode(), "command_id"),
        (b"{" + b" " * (64 * 1024) + b"}", "64 KiB"),
    ],
)
def test_unreadable_payload_gets_null_command_id(
    locker: Locker, payload: bytes, message: str
) -> None:
    reply = locker.commands.handle("reserve", payload)
    assert reply is not None
    assert reply["command_id"] is None
    assert err(reply) == "INVALID_PAYLOAD"
    assert message in reply["error"]["message"]


def test_unknown_command(locker: Locker) -> None:
    reply = locker.command("self_destruct")
    assert err(reply) == "UNKNOWN_COMMAND" and "self_destruct" in reply["error"]["message"]


def test_sent_at_missing_or_bad(locker: Locker) -> None:
    reply = locker.commands.handle("sync", json.dumps({"command_id": "a"}))
    assert err(reply) == "INVALID_PAYLOAD" and "sent_at" in reply["error"]["message"]
    reply = locker.commands.handle(
        "sync", json.dumps({"command_id": "b", "sent_at": "2026-11-25 08:00"})
    )
    assert err(reply) == "INVALID_PAYLOAD" and "sent_at" in reply["error"]["message"]


def test_stale_commands_are_not_executed(locker: Locker) -> None:
    now = locker.clock.now()
    old = {"command_id": "old", "sent_at": rfc3339(now - 301), "compartment": 5}
    assert err(locker.commands.handle("open", json.dumps(old))) == "COMMAND_EXPIRED"
    fresh_but_expired = {
        "command_id": "exp",
        "sent_at": rfc3339(now - 10),
        "expires_at": rfc3339(now - 1),
        "compartment": 5,
    }
    assert err(locker.commands.handle("open", json.dumps(fresh_but_expired))) == "COMMAND_EXPIRED"
    # expires_at, when given, decides: older than it would be without it, still fresh
    within_expiry = {
        "command_id": "ok",
        "sent_at": rfc3339(now - 250),
        "expires_at": rfc3339(now + 50),
    }
    assert locker.commands.handle("sync", json.dumps(within_expiry))["ok"]
    locker.poll()
    assert locker.board.unlocks == []  # the stale remote open never fired


@pytest.mark.parametrize(
    ("sent_after_s", "expires_after_s", "message"),
    [
        (61, None, "in the future"),
        (3600, None, "in the future"),
        (0, 301, "after sent_at"),
        (-3600, 3600, "after sent_at"),  # hours old yet still 'fresh' by a far expires_at
        (0, 7 * 86400, "after sent_at"),
    ],
)
def test_remote_open_outside_the_freshness_bounds_never_fires(
    locker: Locker, sent_after_s: float, expires_after_s: float | None, message: str
) -> None:
    """Contract v1.1: sent_at at most 60 s ahead, expires_at at most command_max_age_s on."""
    now = locker.clock.now()
    command: dict[str, Any] = {
        "command_id": "far",
        "sent_at": rfc3339(now + sent_after_s),
        "compartment": 5,
        "reason": "test",
        "operator": "cs-1",
    }
    if expires_after_s is not None:
        command["expires_at"] = rfc3339(now + expires_after_s)
    reply = locker.commands.handle("open", json.dumps(command))
    assert err(reply) == "COMMAND_EXPIRED" and message in reply["error"]["message"]
    locker.advance(1)
    assert locker.board.unlocks == [] and locker.replies == []


def test_the_freshness_bounds_themselves_are_accepted(locker: Locker) -> None:
    now = locker.clock.now()
    ahead = {"command_id": "ahead", "sent_at": rfc3339(now + 60)}
    assert locker.commands.handle("sync", json.dumps(ahead))["ok"]
    longest = {"command_id": "longest", "sent_at": rfc3339(now), "expires_at": rfc3339(now + 300)}
    assert locker.commands.handle("sync", json.dumps(longest))["ok"]
    reply = locker.command("open", compartment=5, expires_at=rfc3339(now + 300), reason="r")
    assert reply is None  # answered once the door is seen open
    locker.poll()
    assert [ch for _, ch in locker.board.unlocks] == [locker.config.compartment(5).channel]


def test_duplicate_command_id_answers_again_without_acting(locker: Locker) -> None:
    payload = json.dumps(
        {
            "command_id": "dup-1",
            "sent_at": rfc3339(locker.clock.now()),
            "order_id": "SO-D",
            "items": [{"sku": "1", "qty": 1, "fresh": False, "size": "S"}],
        }
    )
    first = locker.commands.handle("reserve", payload)
    again = locker.commands.handle("reserve", payload)
    assert first == again and first is not None and first["ok"]
    snap = locker.service.snapshot()
    assert sum(c["state"] == "reserved" for c in snap["compartments"]) == 1
    # even long after the command's age limit, the stored reply is what comes back
    locker.clock.advance(3600)
    assert locker.commands.handle("reserve", payload) == first


def test_duplicate_of_a_refused_command_is_refused_the_same_way(locker: Locker) -> None:
    payload = json.dumps(
        {"command_id": "dup-2", "sent_at": rfc3339(locker.clock.now()), "order_id": "NOPE"}
    )
    first = locker.commands.handle("cancel", payload)
    assert err(first) == "UNKNOWN_ORDER"
    assert locker.commands.handle("cancel", payload) == first


def test_reserve_errors(locker: Locker) -> None:
    def reserve(**kw: Any) -> str:
        kw.setdefault("items", [{"sku": "1", "qty": 1, "fresh": False, "size": "S"}])
        return err(locker.command("reserve", order_id=kw.pop("order_id", "SO-X"), **kw))

    assert reserve(items=[{"sku": "1", "qty": 0, "size": "S"}]) == "INVALID_PAYLOAD"
    assert reserve(items=[{"sku": "1", "qty": 1, "fresh": True, "size": "S"}]) == (
        "FRESH_NOT_ALLOWED"
    )
    assert reserve(items=[{"sku": "1", "qty": 5, "size": "S"}]) == "TOO_MANY_ITEMS"
    assert reserve(items=[{"sku": "1", "qty": 1, "size": "XL"}]) == "OVERSIZE"
    assert reserve(parcels=[{"size": "S"}] * 3) == "TOO_MANY_PARCELS"
    first = locker.reserve("SO-E")
    assert first["ok"]
    again = locker.command("reserve", order_id="SO-E", items=[{"sku": "1", "qty": 1, "size": "S"}])
    assert err(again) == "ORDER_EXISTS"
    assert again["result"]["compartments"] == first["result"]["compartments"]
    assert again["result"]["reserved_until"] == first["result"]["reserved_until"]
    assert "deposit_code" not in again["result"]
    for i in range(2):
        assert locker.reserve(f"SO-L{i}", items=[{"sku": "1", "qty": 1, "size": "L"}])["ok"]
    assert reserve(order_id="SO-L2", items=[{"sku": "1", "qty": 1, "size": "L"}]) == (
        "NO_COMPARTMENT_AVAILABLE"
    )


def test_oversize_against_the_largest_compartment(tmp_path: Path) -> None:
    lk = start_locker(
        tmp_path, compartments=[{"numbers": "1-4", "channels": "1-4", "board": "b0", "size": "S"}]
    )
    reply = lk.command("reserve", order_id="SO-M", items=[{"sku": "1", "qty": 1, "size": "M"}])
    assert err(reply) == "OVERSIZE"
    lk.store.close()


def test_order_commands_on_unknown_and_collected_orders(locker: Locker) -> None:
    for name, extra in [
        ("cancel", {"reason": "x"}),
        ("extend", {"pickup_until": rfc3339(locker.clock.now() + 3600)}),
        ("reissue_code", {}),
    ]:
        assert err(locker.command(name, order_id="GHOST", **extra)) == "UNKNOWN_ORDER"
    _, code = locker.deposit("SO-P")
    locker.code(code)
    locker.open_close(3)
    for name, extra in [
        ("cancel", {"reason": "x"}),
        ("extend", {"pickup_until": rfc3339(locker.clock.now() + 3600)}),
        ("reissue_code", {}),
    ]:
        assert err(locker.command(name, order_id="SO-P", **extra)) == "ALREADY_COLLECTED"


def test_extend_into_the_past_and_on_a_reserved_order(locker: Locker) -> None:
    locker.deposit("SO-1")
    reply = locker.command("extend", order_id="SO-1", pickup_until=rfc3339(locker.clock.now() - 1))
    assert err(reply) == "INVALID_PAYLOAD" and "pickup_until" in reply["error"]["message"]
    locker.reserve("SO-2")
    reply = locker.command(
        "extend", order_id="SO-2", pickup_until=rfc3339(locker.clock.now() + 3600)
    )
    assert err(reply) == "ORDER_NOT_LOADED"
    assert err(locker.command("reissue_code", order_id="SO-2")) == "ORDER_NOT_LOADED"


def test_open_errors(locker: Locker) -> None:
    assert err(locker.command("open", compartment=99, reason="x", operator="o")) == (
        "UNKNOWN_COMPARTMENT"
    )
    assert err(locker.command("open", compartment="5")) == "INVALID_PAYLOAD"
    assert err(locker.command("set_service", compartment=99, in_service=False)) == (
        "UNKNOWN_COMPARTMENT"
    )
    assert err(locker.command("set_service", compartment=3)) == "INVALID_PAYLOAD"


def test_remote_open_rate_limited(locker: Locker) -> None:
    for n in range(10):
        assert locker.command("open", compartment=3 + n % 6, reason="r", operator="o") is None
        locker.poll()
        locker.board.close_door(3 + n % 6)
        locker.poll()
    assert len(locker.replies) == 10
    assert err(locker.command("open", compartment=3, reason="r", operator="o")) == "RATE_LIMITED"
    locker.clock.advance(3601)
    assert locker.command("open", compartment=3, reason="r", operator="o") is None


def test_remote_open_jammed_and_board_offline(locker: Locker) -> None:
    locker.board.jammed.add(4)
    assert locker.command("open", compartment=4, reason="r", operator="o") is None
    for _ in range(12):
        locker.advance(1)
    [(_, reply)] = locker.replies
    assert err(reply) == "DOOR_JAMMED"
    locker.board.offline = True
    locker.advance(1)
    assert err(locker.command("open", compartment=5, reason="r", operator="o")) == ("BOARD_OFFLINE")


def test_pending_open_redelivered_does_not_open_twice(locker: Locker) -> None:
    payload = json.dumps(
        {
            "command_id": "o-1",
            "sent_at": rfc3339(locker.clock.now()),
            "compartment": 6,
            "reason": "r",
            "operator": "o",
        }
    )
    assert locker.commands.handle("open", payload) is None
    assert locker.commands.handle("open", payload) is None
    assert len(locker.board.unlocks) == 1
    locker.poll()
    stored = locker.commands.handle("open", payload)
    assert stored is not None and stored["result"]["door"] == "opened"
    assert len(locker.board.unlocks) == 1


def test_sync_returns_the_snapshot_without_secrets(locker: Locker) -> None:
    result, code = locker.deposit()
    reply = locker.command("sync")
    snap = reply["result"]
    assert snap["locker_id"] == "store-001-a"
    assert snap["free"] == {"S": 7, "M": 4, "L": 2}
    assert snap["compartments"][2] == {
        "number": 3,
        "size": "S",
        "state": "loaded",
        "door": "closed",
        "in_service": True,
    }
    text = json.dumps(snap)
    assert code not in text and result["deposit_code"] not in text and "SO-1" not in text


def test_stored_replies_are_pruned_after_the_session_expiry(locker: Locker) -> None:
    payload = json.dumps(
        {
            "command_id": "old-1",
            "sent_at": rfc3339(locker.clock.now()),
            "order_id": "SO-9",
            "items": [{"sku": "1", "qty": 1, "size": "S"}],
        }
    )
    assert locker.commands.handle("reserve", payload)["ok"]
    locker.advance(7 * 86400 + 3601)
    assert locker.store.stored_reply("old-1") is None
    # delivered again that late, it is stale: refused, not executed a second time
    assert err(locker.commands.handle("reserve", payload)) == "COMMAND_EXPIRED"
