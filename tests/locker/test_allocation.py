"""The reservation's choice of compartments from the repository's short list equals the
choice from every free compartment, whatever the cabinet (a real SQLite file)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from locker import repo
from locker.codes import CodeBook
from locker.model import SIZES
from locker.rules import Slot, allocate
from locker.storage import Store

BOOK = CodeBook.from_key(b"a" * 32)

bays = st.lists(
    st.tuples(st.sampled_from(SIZES), st.booleans(), st.booleans()),  # size, low, free
    min_size=1,
    max_size=60,
)
parcels = st.lists(st.sampled_from(SIZES), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(bays=bays, parcels=parcels, accessible=st.booleans(), offline=st.booleans())
def test_the_short_list_allocates_as_the_whole_cabinet_would(
    bays: list[tuple[str, bool, bool]], parcels: list[str], accessible: bool, offline: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "l.db", BOOK)
        try:
            with store.transaction() as tx:
                tx.q(
                    "INSERT INTO orders (order_id, state, accessible, item_count, pickup_hours,"
                    " reserved_at, reserved_until) VALUES ('X', 'reserved', 0, 1, 1, 0, 1)"
                )
                for number, (size, low, free) in enumerate(bays, start=1):
                    # Every third bay on a board that is offline in half the examples.
                    board = "b2" if number % 3 == 0 else "b1"
                    tx.q(
                        "INSERT INTO compartments (number, size, low, board, channel, order_pk)"
                        " VALUES (?,?,?,?,?,?)",
                        (number, size, int(low), board, number, None if free else 1),
                    )
            down = ["b2"] if offline else []
            everything = [
                Slot(n, size, low)
                for n, (size, low, free) in enumerate(bays, start=1)
                if free and not (offline and n % 3 == 0)
            ]
            with store.read() as tx:
                short = repo.free_slots(tx, down, per_kind=len(parcels))
            assert allocate(parcels, short, accessible) == allocate(parcels, everything, accessible)
        finally:
            store.close()
