"""The order state machine as data: every state x event, on a real SQLite store."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from conftest import Locker

from locker import orders
from locker.model import OrderState
from locker.orders import TRANSITIONS, IllegalTransition, OrderEvent
from locker.storage import Transaction

ROOT = Path(__file__).resolve().parent.parent.parent


class RecordingDoors:
    """The openings' part in a transition, recorded (a fake that records, not a stub)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def abandon_order(self, tx: Transaction, order_pk: int) -> None:
        self.calls.append(("abandon_order", order_pk))

    def reset_phase(self, tx: Transaction, order_pk: int) -> None:
        self.calls.append(("reset_phase", order_pk))


def order_in(locker: Locker, state: OrderState) -> int:
    """A reserved order with both kinds of code, put in `state` (the test's own SQL: the
    table is what is under test)."""
    result, _ = locker.deposit("SO-T")
    with locker.store.transaction() as tx:
        row = tx.one("SELECT pk FROM orders WHERE order_id='SO-T'")
        assert row is not None
        pk = int(row["pk"])
        tx.q("UPDATE orders SET state=? WHERE pk=?", (state.value, pk))
        tx.q(
            "UPDATE compartments SET order_pk=? WHERE number=?",
            (pk, result["compartments"][0]["number"]),
        )
    return pk


def facts(locker: Locker, pk: int) -> tuple[str, set[str], bool, list[str]]:
    db = locker.store.db
    state = db.execute("SELECT state FROM orders WHERE pk=?", (pk,)).fetchone()[0]
    kinds = {r[0] for r in db.execute("SELECT kind FROM codes WHERE order_pk=?", (pk,))}
    holds = db.execute("SELECT COUNT(*) FROM compartments WHERE order_pk=?", (pk,)).fetchone()[0]
    stages = [r[0] for r in db.execute("SELECT stage FROM order_stages WHERE order_pk=?", (pk,))]
    return state, kinds, holds > 0, stages


@pytest.mark.parametrize(
    ("state", "event"), list(itertools.product(OrderState, OrderEvent)), ids=str
)
def test_every_state_and_event(locker: Locker, state: OrderState, event: OrderEvent) -> None:
    pk = order_in(locker, state)
    before_state, kinds, held, stages = facts(locker, pk)
    assert kinds == {"deposit", "pickup"} and held
    doors = RecordingDoors()
    move = TRANSITIONS.get((state, event))
    if move is None:
        with pytest.raises(IllegalTransition), locker.store.transaction() as tx:
            orders.apply(tx, pk, event, 1.0, doors)
        assert facts(locker, pk) == (before_state, kinds, held, stages)  # nothing changed
        assert doors.calls == []
        return
    with locker.store.transaction() as tx:
        assert orders.apply(tx, pk, event, 1.0, doors) is move
    after, left, still_held, new_stages = facts(locker, pk)
    assert after == move.to.value
    assert new_stages == [*stages, move.stage]
    expected_codes = {
        None: {"deposit", "pickup"},
        "pickup": {"deposit"},
        "all": set(),
    }[move.kill_codes]
    assert left == expected_codes
    assert still_held is not move.free
    assert doors.calls == [
        *([("abandon_order", pk)] if move.abandon_openings else []),
        *([("reset_phase", pk)] if move.reset_phase else []),
    ]


def test_terminal_states_have_no_way_out() -> None:
    for state in (OrderState.COLLECTED, OrderState.LAPSED, OrderState.RETRIEVED):
        assert not [event for s, event in TRANSITIONS if s == state]


def test_the_diagram_in_the_docs_is_the_table() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    found = re.search(r"```mermaid\n(.*?)\n```", text, re.S)
    assert found is not None and found.group(1) == orders.mermaid()
