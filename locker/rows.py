"""The records the repository hands out: rows of the database as typed, frozen values.

Nothing outside `locker.repo` sees a `sqlite3.Row`: a state is an enum, a flag a bool,
a missing time None, so a misspelt column or state fails in mypy, not at a door.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from locker.model import (
    CodeKind,
    CompartmentState,
    Door,
    DoorOutcome,
    OpeningState,
    OrderState,
    Purpose,
)


def _opt(value: float | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class OrderRow:
    pk: int
    order_id: str
    state: OrderState
    accessible: bool
    item_count: int
    pickup_hours: float
    reserved_at: float
    reserved_until: float
    deposited_at: float | None
    pickup_until: float | None
    reminder_sent: bool
    opened_at: float | None
    closed_at: float | None
    method: str | None
    end_reason: str | None

    @classmethod
    def of(cls, r: sqlite3.Row) -> OrderRow:
        return cls(
            pk=r["pk"],
            order_id=r["order_id"],
            state=OrderState(r["state"]),
            accessible=bool(r["accessible"]),
            item_count=r["item_count"],
            pickup_hours=float(r["pickup_hours"]),
            reserved_at=float(r["reserved_at"]),
            reserved_until=float(r["reserved_until"]),
            deposited_at=_opt(r["deposited_at"]),
            pickup_until=_opt(r["pickup_until"]),
            reminder_sent=bool(r["reminder_sent"]),
            opened_at=_opt(r["opened_at"]),
            closed_at=_opt(r["closed_at"]),
            method=r["method"],
            end_reason=r["end_reason"],
        )


@dataclass(frozen=True)
class CompartmentRow:
    """A compartment as stored, with the state of the order it holds (if any)."""

    number: int
    size: str
    low: bool
    board: str
    channel: int
    in_service: bool
    jammed: bool
    door: Door
    door_since: float | None
    left_open_alarmed: bool
    order_pk: int | None
    order_state: OrderState | None

    @classmethod
    def of(cls, r: sqlite3.Row) -> CompartmentRow:
        return cls(
            number=r["number"],
            size=r["size"],
            low=bool(r["low"]),
            board=r["board"],
            channel=r["channel"],
            in_service=bool(r["in_service"]),
            jammed=bool(r["jammed"]),
            door=Door(r["door"]),
            door_since=_opt(r["door_since"]),
            left_open_alarmed=bool(r["left_open_alarmed"]),
            order_pk=r["order_pk"],
            order_state=None if r["order_state"] is None else OrderState(r["order_state"]),
        )

    def state(self, board_online: bool) -> CompartmentState:
        """The contract's compartment state: a fault first, then what the order makes it."""
        if self.jammed or not board_online:
            return CompartmentState.FAULT
        if self.order_state == OrderState.RESERVED:
            return CompartmentState.RESERVED
        if self.order_state == OrderState.LOADED:
            return CompartmentState.LOADED
        if self.order_state in (OrderState.EXPIRED, OrderState.CANCELLED):
            return CompartmentState.RETRIEVAL
        if not self.in_service:
            return CompartmentState.OUT_OF_SERVICE
        return CompartmentState.FREE


@dataclass(frozen=True)
class OrderCompartment:
    """A compartment an order was given, in the contract's shape."""

    number: int
    size: str

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "size": self.size}


@dataclass(frozen=True)
class CodeRow:
    digest: str
    order_pk: int
    kind: CodeKind


@dataclass(frozen=True)
class OpeningDoorRow:
    """One door of an opening, with its opening's facts and its order's id."""

    opening_id: int
    number: int
    attempts: int
    seen_open_at: float | None
    seen_closed_at: float | None
    outcome: DoorOutcome | None
    purpose: Purpose
    method: str
    order_pk: int | None
    command_id: str | None
    state: OpeningState
    order_id: str | None
    created_at: float  # wall time the intent was committed (its unlock went out then)
    # Steady time by which the door must be seen open; None for intents older than it.
    confirm_by: float | None

    @classmethod
    def of(cls, r: sqlite3.Row) -> OpeningDoorRow:
        return cls(
            opening_id=r["opening_id"],
            number=r["number"],
            attempts=r["attempts"],
            seen_open_at=_opt(r["seen_open_at"]),
            seen_closed_at=_opt(r["seen_closed_at"]),
            outcome=None if r["outcome"] is None else DoorOutcome(r["outcome"]),
            purpose=Purpose(r["purpose"]),
            method=r["method"],
            order_pk=r["order_pk"],
            command_id=r["command_id"],
            state=OpeningState(r["state"]),
            order_id=r["order_id"],
            created_at=float(r["created_at"]),
            confirm_by=_opt(r["confirm_by"]),
        )


@dataclass(frozen=True)
class PhaseTimes:
    """When the first door of an order's phase opened and the last one closed."""

    opened_at: float
    closed_at: float


@dataclass(frozen=True)
class StageRow:
    stage: str
    at: float
    detail: str


@dataclass(frozen=True)
class BoardRow:
    name: str
    online: bool
    errors: int
    detail: str


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str
    action: str
    order_id: str | None
    compartment: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AgedOrder:
    """An order as retention weighs it: its age, whether anything still needs it, and
    the rows of each table that go with it."""

    pk: int
    state: OrderState
    reserved_at: float
    ended_at: float  # its newest stage (its reservation when it has none)
    needed: bool  # a compartment holds it, a code of it works, or an opening waits
    stages: int
    compartments: int  # rows of order_compartments


@dataclass(frozen=True)
class Purged:
    """How many rows of each kind one retention step deleted."""

    orders: int = 0
    stages: int = 0
    compartments: int = 0
    openings: int = 0
    doors: int = 0
    audit: int = 0
    commands: int = 0

    def __add__(self, other: Purged) -> Purged:
        mine, theirs = vars(self).values(), vars(other).values()
        return Purged(*(a + b for a, b in zip(mine, theirs, strict=True)))

    @property
    def total(self) -> int:
        return sum(vars(self).values())
