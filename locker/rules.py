"""Which orders a locker may take, and which compartments they get.

Pure functions: the reserve request is read field by field (so an error can
name the field), the contract's rules are checked in the contract's order, and
compartments are chosen by size and accessibility.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from locker.model import ITEM_SIZES, SIZE_RANK, CommandError, ErrorCode

MAX_ORDER_ID = 64


@dataclass(frozen=True)
class Item:
    sku: str
    qty: int
    fresh: bool
    size: str


@dataclass(frozen=True)
class ReserveRequest:
    order_id: str
    items: tuple[Item, ...]
    parcels: tuple[str, ...]  # sizes
    accessible: bool
    pickup_hours: float | None


@dataclass(frozen=True)
class RulesConfig:
    max_items: int
    allow_fresh: bool
    max_compartments_per_order: int


@dataclass(frozen=True)
class Slot:
    """A compartment as the allocator sees it."""

    number: int
    size: str
    low: bool


def invalid(field: str, problem: str) -> CommandError:
    return CommandError(ErrorCode.INVALID_PAYLOAD, f"{field}: {problem}")


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def req_str(data: Mapping[str, Any], key: str, *, field: str = "", max_len: int = 256) -> str:
    name = field or key
    if key not in data:
        raise invalid(name, "missing")
    value = data[key]
    if not isinstance(value, str):
        raise invalid(name, f"expected a string, got {_type_name(value)}")
    if not value.strip():
        raise invalid(name, "must not be empty")
    if len(value) > max_len:
        raise invalid(name, f"longer than {max_len} characters")
    return value


def opt_bool(data: Mapping[str, Any], key: str, default: bool, *, field: str = "") -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise invalid(field or key, f"expected true or false, got {_type_name(value)}")
    return value


def req_int(data: Mapping[str, Any], key: str, *, field: str = "") -> int:
    name = field or key
    if key not in data:
        raise invalid(name, "missing")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, f"expected an integer, got {_type_name(value)}")
    return value


def _size(value: object, field: str) -> str:
    if not isinstance(value, str) or value not in ITEM_SIZES:
        raise invalid(field, f"unknown size {value!r}; expected one of S, M, L, XL")
    return value


def parse_reserve(data: Mapping[str, Any]) -> ReserveRequest:
    """Read a reserve command; INVALID_PAYLOAD names the first bad field."""
    order_id = req_str(data, "order_id", max_len=MAX_ORDER_ID)
    raw_items = data.get("items")
    if not isinstance(raw_items, list):
        raise invalid("items", f"expected a list, got {_type_name(raw_items)}")
    if not raw_items:
        raise invalid("items", "an order needs at least one item")
    items = []
    for i, raw in enumerate(raw_items):
        f = f"items[{i}]"
        if not isinstance(raw, dict):
            raise invalid(f, f"expected an object, got {_type_name(raw)}")
        sku = req_str(raw, "sku", field=f"{f}.sku")
        qty = req_int(raw, "qty", field=f"{f}.qty")
        if qty < 1:
            raise invalid(f"{f}.qty", f"must be at least 1, got {qty}")
        fresh = opt_bool(raw, "fresh", False, field=f"{f}.fresh")
        if "size" not in raw:
            raise invalid(f"{f}.size", "missing")
        items.append(Item(sku=sku, qty=qty, fresh=fresh, size=_size(raw["size"], f"{f}.size")))
    if "parcels" in data:
        raw_parcels = data["parcels"]
        if not isinstance(raw_parcels, list) or not raw_parcels:
            raise invalid("parcels", 'expected a non-empty list of {"size": ...}')
        parcels = []
        for i, raw in enumerate(raw_parcels):
            if not isinstance(raw, dict):
                raise invalid(f"parcels[{i}]", f"expected an object, got {_type_name(raw)}")
            if "size" not in raw:
                raise invalid(f"parcels[{i}].size", "missing")
            parcels.append(_size(raw["size"], f"parcels[{i}].size"))
    else:
        parcels = [max((it.size for it in items), key=SIZE_RANK.__getitem__)]
    accessible = False
    if "customer" in data:
        customer = data["customer"]
        if not isinstance(customer, dict):
            raise invalid("customer", f"expected an object, got {_type_name(customer)}")
        accessible = opt_bool(customer, "accessible", False, field="customer.accessible")
    pickup_hours: float | None = None
    if "pickup_hours" in data:
        value = data["pickup_hours"]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and not math.isfinite(value))  # NaN passes <= 0
            or value <= 0
        ):
            raise invalid("pickup_hours", f"expected a positive number, got {value!r}")
        if value > 24 * 366:
            raise invalid("pickup_hours", "longer than a year")
        pickup_hours = float(value)
    return ReserveRequest(order_id, tuple(items), tuple(parcels), accessible, pickup_hours)


def check_rules(req: ReserveRequest, rules: RulesConfig, largest_size: str | None) -> None:
    """The contract's rules after INVALID_PAYLOAD, in the contract's order."""
    if not rules.allow_fresh and any(it.fresh for it in req.items):
        raise CommandError(
            ErrorCode.FRESH_NOT_ALLOWED,
            "order contains fresh goods; pick up at the service desk",
        )
    total = sum(it.qty for it in req.items)
    if total > rules.max_items:
        raise CommandError(
            ErrorCode.TOO_MANY_ITEMS,
            f"order has {total} items, a locker takes at most {rules.max_items};"
            " pick up at the service desk",
        )
    limit = SIZE_RANK[largest_size] if largest_size else 0
    for what, size in [("item", it.size) for it in req.items] + [
        ("parcel", p) for p in req.parcels
    ]:
        if size == "XL" or SIZE_RANK[size] > limit:
            raise CommandError(
                ErrorCode.OVERSIZE,
                f"{what} of size {size} does not fit this locker (largest compartment:"
                f" {largest_size or 'none'}); pick up at the service desk",
            )
    if len(req.parcels) > rules.max_compartments_per_order:
        raise CommandError(
            ErrorCode.TOO_MANY_PARCELS,
            f"{len(req.parcels)} parcels, a locker order takes at most"
            f" {rules.max_compartments_per_order}",
        )


def allocate(parcels: Sequence[str], free: Sequence[Slot], accessible: bool) -> list[Slot] | None:
    """Choose one free compartment per parcel, or None when they do not all fit.

    Per parcel: the smallest free size that fits; among those, a low bay for an
    accessible customer, otherwise a bay that is not low while one is free (low
    bays are kept for the people who need them); then the lowest number.
    Larger parcels choose first so a small parcel never takes the only big bay.
    """
    available = sorted(free, key=lambda s: s.number)
    chosen: list[Slot] = []
    for parcel in sorted(parcels, key=SIZE_RANK.__getitem__, reverse=True):
        fitting = [s for s in available if SIZE_RANK[s.size] >= SIZE_RANK[parcel]]
        if not fitting:
            return None
        smallest = min(SIZE_RANK[s.size] for s in fitting)
        same = [s for s in fitting if SIZE_RANK[s.size] == smallest]
        preferred = [s for s in same if s.low == accessible] or same
        pick = preferred[0]
        chosen.append(pick)
        available.remove(pick)
    return chosen
