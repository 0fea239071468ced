"""The order state machine, as data: (state, event) -> the state it moves to and what
goes with the move. `apply()` is the only writer of an order's state; a move the table
does not list raises `IllegalTransition`, so no use case can put an order where the
design has no arrow.

The effects that every site used to repeat by hand are columns of the table: which
codes die, whether the compartments are freed, whether door openings still waiting for
the order are dropped, whether the next phase's doors are counted afresh. What is
particular to one use case (the pickup code a deposit issues, the event that goes to the
platform) stays in the use case.

`python -m locker.orders` prints the table as a Mermaid state diagram: the one in
docs/architecture.md, which a test keeps equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

from locker import repo
from locker.errors import LockerError
from locker.model import CodeKind, OrderState
from locker.storage import Transaction


class OrderEvent(StrEnum):
    """What happens to an order."""

    DEPOSITED = "deposited"  # staff loaded it: every door seen open, then closed
    COLLECTED = "collected"  # the shopper took it the same way
    LAPSED = "lapsed"  # nothing loaded by reserved_until
    EXPIRED = "expired"  # not collected by pickup_until
    CANCELLED_EMPTY = "cancelled_empty"  # cancelled before any door of it opened
    CANCELLED_WITH_GOODS = "cancelled_with_goods"  # cancelled with goods (maybe) inside
    RETRIEVED = "retrieved"  # staff took an expired or cancelled order out


@dataclass(frozen=True)
class Transition:
    to: OrderState
    kill_codes: Literal["all", "pickup"] | None  # which of the order's codes stop working
    free: bool  # its compartments can be reserved again
    abandon_openings: bool  # openings still waiting for its doors are dropped
    reset_phase: bool  # its doors must be seen open and closed afresh for the next phase
    stage: str  # the name of the stage in the order's history


S, E = OrderState, OrderEvent
TRANSITIONS: dict[tuple[OrderState, OrderEvent], Transition] = {
    (S.RESERVED, E.DEPOSITED): Transition(S.LOADED, None, False, False, True, "deposited"),
    (S.RESERVED, E.LAPSED): Transition(S.LAPSED, "all", True, True, False, "lapsed"),
    (S.RESERVED, E.CANCELLED_EMPTY): Transition(S.CANCELLED, "all", True, True, False, "cancelled"),
    (S.RESERVED, E.CANCELLED_WITH_GOODS): Transition(
        S.CANCELLED, "pickup", False, True, True, "cancelled"
    ),
    (S.LOADED, E.COLLECTED): Transition(S.COLLECTED, "all", True, False, False, "collected"),
    (S.LOADED, E.EXPIRED): Transition(S.EXPIRED, "pickup", False, True, True, "expired"),
    (S.LOADED, E.CANCELLED_WITH_GOODS): Transition(
        S.CANCELLED, "pickup", False, True, True, "cancelled"
    ),
    (S.EXPIRED, E.RETRIEVED): Transition(S.RETRIEVED, "all", True, False, False, "retrieved"),
    (S.CANCELLED, E.RETRIEVED): Transition(S.RETRIEVED, "all", True, False, False, "retrieved"),
}
del S, E


class IllegalTransition(LockerError):
    """An order was asked to move where the state machine has no arrow."""


class DoorEffects(Protocol):
    """What a transition asks of the doors (`locker.openings.Openings` provides it)."""

    def abandon_order(self, tx: Transaction, order_pk: int) -> None: ...

    def reset_phase(self, tx: Transaction, order_pk: int) -> None: ...


def apply(
    tx: Transaction, order_pk: int, event: OrderEvent, at: float, doors: DoorEffects
) -> Transition:
    """Move the order by `event`, with every effect the table lists, in `tx`."""
    row = repo.order(tx, order_pk)
    if row is None:
        raise IllegalTransition(f"order {order_pk}: no such order")
    state = row.state
    move = TRANSITIONS.get((state, event))
    if move is None:
        raise IllegalTransition(f"order {order_pk}: no transition from {state} on {event}")
    repo.set_order_state(tx, order_pk, move.to)
    repo.add_stage(tx, order_pk, move.stage, at)
    if move.kill_codes == "all":
        repo.kill_codes(tx, order_pk)
    elif move.kill_codes == "pickup":
        repo.kill_codes(tx, order_pk, CodeKind.PICKUP)
    if move.free:
        repo.free_compartments(tx, order_pk)
    if move.abandon_openings:
        doors.abandon_order(tx, order_pk)
    if move.reset_phase:
        doors.reset_phase(tx, order_pk)
    return move


def mermaid() -> str:
    """The table as a Mermaid state diagram (docs/architecture.md holds this text)."""
    lines = ["stateDiagram-v2", "    [*] --> reserved: reserve"]
    for (state, event), move in TRANSITIONS.items():
        lines.append(f"    {state.value} --> {move.to.value}: {event.value}")
    ends = sorted({m.to.value for m in TRANSITIONS.values()} - {s.value for s, _ in TRANSITIONS})
    lines += [f"    {end} --> [*]" for end in ends]
    return "\n".join(lines)


if __name__ == "__main__":
    print(mermaid())  # noqa: T201 - the diagram for docs/architecture.md
