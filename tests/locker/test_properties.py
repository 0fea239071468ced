"""Property test: random sequences of use cases and clock moves keep the invariants.

Invariants checked after every step:
- a compartment holds at most one order;
- a dead code opens nothing;
- the snapshot's free counts match the compartment states;
- `seq` strictly increases, with no gap;
- `picked_up` only after a valid pickup code and its doors seen open and then closed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from conftest import Locker, start_locker
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from locker.clock import rfc3339
from locker.model import Method

METHODS = st.sampled_from([Method.KEYPAD, Method.SCANNER, Method.CAMERA])


class LockerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="locker-prop-"))
        self.lk: Locker = start_locker(self.dir, security={"free_attempts": 1000})
        self.n = 0
        self.deposit_codes: dict[str, str] = {}
        self.pickup_codes: dict[str, str] = {}
        self.dead: set[str] = set()
        self.seen_events = 0
        # doors of the order whose valid pickup code was last accepted: number -> phase
        self.pickup_doors: dict[str, dict[int, str]] = {}
        self.order_numbers: dict[str, list[int]] = {}

    def teardown(self) -> None:
        self.lk.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- what the world does -----------------------------------------------------------

    def _poll(self) -> None:
        before = {n: self.lk.board.is_open(n) for n in range(1, 15)}
        self.lk.poll()
        for doors in self.pickup_doors.values():
            for number, phase in doors.items():
                if phase == "unlocked" and before[number]:
                    doors[number] = "seen_open"
                elif phase == "seen_open" and not before[number]:
                    doors[number] = "seen_closed"
        self._follow_events()

    def _follow_events(self) -> None:
        for ev in self.lk.events()[self.seen_events :]:
            self.seen_events += 1
            f = ev.fields
            if ev.type == "deposited":
                self.pickup_codes[f["order_id"]] = f["pickup_code"]
                self.dead.add(self.deposit_codes.get(f["order_id"], ""))
            elif ev.type == "code_issued":
                self.dead.add(self.pickup_codes.get(f["order_id"], ""))
                self.pickup_codes[f["order_id"]] = f["pickup_code"]
            elif ev.type == "picked_up":
                doors = self.pickup_doors.get(f["order_id"], {})
                numbers = [c["number"] for c in f["compartments"]]
                assert numbers and all(doors.get(n) == "seen_closed" for n in numbers), (
                    f["order_id"],
                    doors,
                )
                self.dead.add(self.pickup_codes.get(f["order_id"], ""))
            elif ev.type in ("expired",):
                self.dead.add(self.pickup_codes.get(f["order_id"], ""))
            elif ev.type in ("reservation_lapsed", "retrieved"):
                self.dead.add(self.deposit_codes.get(f["order_id"], ""))
                self.dead.add(self.pickup_codes.get(f["order_id"], ""))
        self.dead.discard("")

    @rule(
        sizes=st.lists(st.sampled_from("SML"), min_size=1, max_size=3),
        accessible=st.booleans(),
        fresh=st.booleans(),
        qty=st.integers(1, 5),
    )
    def reserve(self, sizes: list[str], accessible: bool, fresh: bool, qty: int) -> None:
        self.n += 1
        order_id = f"P-{self.n}"
        reply = self.lk.reserve(
            order_id,
            items=[{"sku": "1", "qty": qty, "fresh": fresh, "size": sizes[0]}],
            parcels=[{"size": s} for s in sizes],
            customer={"accessible": accessible},
        )
        if reply["ok"]:
            assert not fresh and qty <= 4 and len(sizes) <= 2
            self.deposit_codes[order_id] = reply["result"]["deposit_code"]
            self.order_numbers[order_id] = [c["number"] for c in reply["result"]["compartments"]]
        self._follow_events()

    @rule(data=st.data(), method=METHODS)
    def enter_deposit_code(self, data: st.DataObject, method: Method) -> None:
        if not self.deposit_codes:
            return
        order_id = data.draw(st.sampled_from(sorted(self.deposit_codes)))
        self._enter(self.deposit_codes[order_id], method, order_id, pickup=False)

    @rule(data=st.data(), method=METHODS, as_qr=st.booleans())
    def enter_pickup_code(self, data: st.DataObject, method: Method, as_qr: bool) -> None:
        if not self.pickup_codes:
            return
        order_id = data.draw(st.sampled_from(sorted(self.pickup_codes)))
        code = self.pickup_codes[order_id]
        text = f"locker:store-001-a:pickup:{code}" if as_qr else code
        self._enter(text, method, order_id, pickup=True, code=code)

    @rule(code=st.text(alphabet="0123456789", min_size=8, max_size=10), method=METHODS)
    def enter_random_code(self, code: str, method: Method) -> None:
        live = set(self.deposit_codes.values()) | set(self.pickup_codes.values())
        if code in live:
            return
        assert self.lk.service.enter_code(code, method).outcome in ("wrong", "throttled")

    def _enter(
        self, text: str, method: Method, order_id: str, pickup: bool, code: str | None = None
    ) -> None:
        result = self.lk.service.enter_code(text, method)
        if (code or text) in self.dead:
            assert result.outcome != "opened", (order_id, result)
        if result.outcome == "opened" and pickup and result.message != "compartment already open":
            self.pickup_doors[order_id] = dict.fromkeys(result.compartments, "unlocked")
        self._poll()

    @rule(number=st.integers(1, 14))
    def close_door(self, number: int) -> None:
        self.lk.board.close_door(number)
        self._poll()

    @rule(number=st.integers(1, 14))
    def force_door(self, number: int) -> None:
        self.lk.board.open_door(number)
        self._poll()

    @rule(number=st.integers(1, 14), jam=st.booleans())
    def jam(self, number: int, jam: bool) -> None:
        if jam:
            self.lk.board.jammed.add(number)
        else:
            self.lk.board.jammed.discard(number)

    @rule(seconds=st.sampled_from([0.5, 1, 2, 5, 61, 3600, 11 * 3600, 24 * 3600]))
    def advance(self, seconds: float) -> None:
        self.lk.clock.advance(seconds)
        self._poll()

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        if not self.deposit_codes:
            return
        order_id = data.draw(st.sampled_from(sorted(self.deposit_codes)))
        reply = self.lk.command("cancel", order_id=order_id, reason="p")
        assert reply is not None
        if reply["ok"]:
            self.dead.add(self.pickup_codes.get(order_id, ""))
            self.dead.discard("")
        self._poll()

    @rule(data=st.data())
    def reissue(self, data: st.DataObject) -> None:
        if not self.pickup_codes:
            return
        order_id = data.draw(st.sampled_from(sorted(self.pickup_codes)))
        self.lk.command("reissue_code", order_id=order_id)
        self._follow_events()

    @rule(data=st.data(), hours=st.sampled_from([1, 24, 100]))
    def extend(self, data: st.DataObject, hours: int) -> None:
        if not self.pickup_codes:
            return
        order_id = data.draw(st.sampled_from(sorted(self.pickup_codes)))
        self.lk.command(
            "extend", order_id=order_id, pickup_until=rfc3339(self.lk.clock.now() + hours * 3600)
        )

    @rule(number=st.integers(1, 14), in_service=st.booleans())
    def set_service(self, number: int, in_service: bool) -> None:
        self.lk.command("set_service", compartment=number, in_service=in_service, reason="p")

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def one_order_per_compartment(self) -> None:
        db = self.lk.store.db
        owners: Counter[int] = Counter()
        for pk, state in db.execute("SELECT pk, state FROM orders").fetchall():
            assigned = {
                r[0]
                for r in db.execute("SELECT number FROM order_compartments WHERE order_pk=?", (pk,))
            }
            held = {
                r[0] for r in db.execute("SELECT number FROM compartments WHERE order_pk=?", (pk,))
            }
            if state in ("reserved", "loaded", "expired"):
                assert held == assigned, (pk, state, held, assigned)
            elif state == "cancelled":  # holds until retrieved, or nothing if never loaded
                assert held in (assigned, set()), (pk, state, held, assigned)
            else:
                assert held == set(), (pk, state, held)
            owners.update(held)
        assert all(n == 1 for n in owners.values()), owners

    @invariant()
    def free_counts_match_states(self) -> None:
        snap = self.lk.service.snapshot()
        counted = Counter(c["size"] for c in snap["compartments"] if c["state"] == "free")
        assert {s: counted.get(s, 0) for s in snap["free"]} == snap["free"]

    @invariant()
    def seq_strictly_increases(self) -> None:
        seqs = [e.seq for e in self.lk.events()]
        assert seqs == list(range(1, len(seqs) + 1))


LockerMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("LOCKER_PROP_EXAMPLES", "100")),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.slow
class TestLockerProperties(LockerMachine.TestCase):  # type: ignore[misc, valid-type]
    pass
