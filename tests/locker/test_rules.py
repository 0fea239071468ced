"""The contract's reserve rules, their order, and compartment allocation (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from locker.model import CommandError, ErrorCode
from locker.rules import RulesConfig, Slot, allocate, check_rules, parse_reserve

RULES = RulesConfig(max_items=4, allow_fresh=False, max_compartments_per_order=2)


def item(**kw: Any) -> dict[str, Any]:
    return {"sku": "690", "qty": 1, "fresh": False, "size": "S", **kw}


def order(**kw: Any) -> dict[str, Any]:
    return {"order_id": "SO-1", "items": [item()], **kw}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"items": [item()]}, "order_id: missing"),
        (order(order_id=7), "order_id: expected a string"),
        (order(order_id=""), "order_id: must not be empty"),
        (order(order_id="x" * 65), "order_id: longer than 64"),
        (order(items="tea"), "items: expected a list"),
        (order(items=[]), "items: an order needs at least one item"),
        (order(items=[5]), "items[0]: expected an object"),
        (order(items=[item(), {"qty": 1, "size": "S"}]), "items[1].sku: missing"),
        (order(items=[item(qty=0)]), "items[0].qty: must be at least 1"),
        (order(items=[item(qty="2")]), "items[0].qty: expected an integer"),
        (order(items=[item(qty=True)]), "items[0].qty: expected an integer"),
        (order(items=[item(qty=1.5)]), "items[0].qty: expected an integer"),
        (order(items=[item(fresh="no")]), "items[0].fresh: expected true or false"),
        (order(items=[item(size="XXL")]), "items[0].size: unknown size"),
        (order(items=[{"sku": "1", "qty": 1}]), "items[0].size: missing"),
        (order(parcels=[]), "parcels: expected a non-empty list"),
        (order(parcels=[{"size": "Q"}]), "parcels[0].size: unknown size"),
        (order(parcels=[{}]), "parcels[0].size: missing"),
        (order(customer="me"), "customer: expected an object"),
        (order(customer={"accessible": "yes"}), "customer.accessible: expected true or false"),
        (order(pickup_hours=0), "pickup_hours: expected a positive number"),
        (order(pickup_hours="72"), "pickup_hours: expected a positive number"),
    ],
)
def test_invalid_payload_names_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(CommandError) as err:
        parse_reserve(payload)
    assert err.value.code == ErrorCode.INVALID_PAYLOAD
    assert field in err.value.message


def test_default_parcel_is_one_of_the_largest_item_size() -> None:
    req = parse_reserve(order(items=[item(size="S"), item(size="M"), item(size="S")]))
    assert req.parcels == ("M",)
    assert req.accessible is False and req.pickup_hours is None


def _code(payload: dict[str, Any], largest: str = "L", rules: RulesConfig = RULES) -> ErrorCode:
    with pytest.raises(CommandError) as err:
        check_rules(parse_reserve(payload), rules, largest)
    return err.value.code


@pytest.mark.parametrize(
    ("payload", "largest", "code"),
    [
        (order(items=[item(fresh=True)]), "L", ErrorCode.FRESH_NOT_ALLOWED),
        (order(items=[item(qty=5)]), "L", ErrorCode.TOO_MANY_ITEMS),
        (order(items=[item(qty=2), item(qty=3)]), "L", ErrorCode.TOO_MANY_ITEMS),
        (order(items=[item(size="XL")]), "L", ErrorCode.OVERSIZE),
        (order(parcels=[{"size": "XL"}]), "L", ErrorCode.OVERSIZE),
        (order(items=[item(size="L")]), "M", ErrorCode.OVERSIZE),
        (order(parcels=[{"size": "S"}] * 3), "L", ErrorCode.TOO_MANY_PARCELS),
        # the order of the checks: each payload breaks this rule and every later one
        (
            order(items=[item(fresh=True, qty=9, size="XL")], parcels=[{"size": "S"}] * 3),
            "L",
            ErrorCode.FRESH_NOT_ALLOWED,
        ),
        (
            order(items=[item(qty=9, size="XL")], parcels=[{"size": "S"}] * 3),
            "L",
            ErrorCode.TOO_MANY_ITEMS,
        ),
        (order(items=[item(size="XL")], parcels=[{"size": "S"}] * 3), "L", ErrorCode.OVERSIZE),
    ],
)
def test_rules_in_contract_order(payload: dict[str, Any], largest: str, code: ErrorCode) -> None:
    assert _code(payload, largest) == code


def test_four_items_pass_and_fresh_allowed_by_config() -> None:
    check_rules(parse_reserve(order(items=[item(qty=4)])), RULES, "L")
    fresh_ok = RulesConfig(max_items=4, allow_fresh=True, max_compartments_per_order=2)
    check_rules(parse_reserve(order(items=[item(fresh=True)])), fresh_ok, "L")


SLOTS = [
    Slot(1, "S", True),
    Slot(2, "S", False),
    Slot(3, "S", False),
    Slot(9, "M", True),
    Slot(10, "M", False),
    Slot(13, "L", False),
]


def test_smallest_fitting_size_and_low_bays_kept_free() -> None:
    chosen = allocate(["S"], SLOTS, accessible=False)
    assert chosen == [Slot(2, "S", False)]


def test_accessible_customer_gets_a_low_bay() -> None:
    assert allocate(["S"], SLOTS, accessible=True) == [Slot(1, "S", True)]
    assert allocate(["M"], SLOTS, accessible=True) == [Slot(9, "M", True)]


def test_low_bay_used_when_it_is_the_only_one_of_the_size() -> None:
    assert allocate(["S"], [Slot(1, "S", True), Slot(9, "M", False)], False) == [Slot(1, "S", True)]


def test_bigger_size_when_the_size_is_full_and_none_when_nothing_fits() -> None:
    assert allocate(["M"], [Slot(2, "S", False), Slot(13, "L", False)], False) == [
        Slot(13, "L", False)
    ]
    assert allocate(["L"], [Slot(2, "S", False), Slot(9, "M", False)], False) is None


def test_large_parcels_choose_first() -> None:
    # A small parcel allocated first would take the only M; the L parcel then
    # would take the L and the order still fits, but with S+M the S must not steal M.
    slots = [Slot(9, "M", False), Slot(2, "S", False)]
    chosen = allocate(["S", "M"], slots, False)
    assert chosen is not None
    assert sorted(s.number for s in chosen) == [2, 9]
    assert allocate(["S", "S"], [Slot(2, "S", False)], False) is None
