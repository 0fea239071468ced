"""Order life cycle driven by doors and time: phases completed, lapse, reminder, expiry.

Each move goes through `orders.apply()`; what is particular to it (the pickup code a
deposit issues, the event that goes to the platform) is done here, in the caller's
transaction.

Deadlines are wall times, the ones the platform and the shopper were told, and are
judged on the wall clock (docs/time.md): when NTP steps the clock forward, every
deadline the corrected clock has passed fires in the next sweep; when it steps back,
nothing fires early and a window ends at the time it was told. Only while the kernel
says the clock is not synchronised, in the first hour after boot, are deadlines held:
such a clock may be ahead, and an order expired early cannot be given back, while one
expired late has only held its compartment a little longer.
"""

from __future__ import annotations

import logging
from typing import Any

from locker import orders, repo
from locker.clock import Clock, rfc3339
from locker.codes import CodeBook, qr_text
from locker.config import RulesSection
from locker.events import PhaseDone
from locker.model import CodeKind, OrderState, Purpose
from locker.openings import PhaseComplete
from locker.orders import DoorEffects, OrderEvent
from locker.storage import Transaction

log = logging.getLogger(__name__)

HOUR = 3600.0
# How long after boot (monotonic time counts from boot) deadlines wait for NTP when the
# kernel says the clock is not synchronised; a locker without network must still expire.
UNSYNCED_HOLD_S = HOUR


class Lifecycle:
    """What happens to orders when doors close and deadlines pass."""

    def __init__(
        self,
        rules: RulesSection,
        locker_id: str,
        codebook: CodeBook,
        doors: DoorEffects,
        clock: Clock | None = None,
    ) -> None:
        """`clock` tells whether deadlines may be judged now; without one they always are."""
        self.rules = rules
        self.locker_id = locker_id
        self.codebook = codebook
        self.doors = doors
        self.clock = clock
        self._holding = False

    # -- phases completed by the doors -------------------------------------------------

    def phase_complete(self, tx: Transaction, done: PhaseComplete, now: float) -> PhaseDone:
        """Every compartment of the order was seen open and then closed."""
        order_pk, purpose, method = done.order_pk, done.purpose, done.method
        order = repo.order(tx, order_pk)
        assert order is not None
        comps = repo.order_compartments(tx, order_pk)
        listed = [c.as_dict() for c in comps]
        order_id = order.order_id
        times = repo.phase_times(tx, order_pk)
        # The history keeps when the doors of each phase opened and closed.
        prefix = "" if purpose == Purpose.PICKUP else f"{purpose}_"
        repo.add_stage(tx, order_pk, f"{prefix}opened", times.opened_at)
        repo.add_stage(tx, order_pk, f"{prefix}closed", times.closed_at)
        if purpose == Purpose.DEPOSIT and order.state == OrderState.RESERVED:
            pickup_until = now + order.pickup_hours * HOUR
            reminder_due = pickup_until - self.rules.reminder_before_hours * HOUR
            repo.set_deposited(tx, order_pk, now, pickup_until, reminder_due <= now)
            orders.apply(tx, order_pk, OrderEvent.DEPOSITED, now, self.doors)
            code = repo.issue_code(
                tx, self.codebook, order_pk, CodeKind.PICKUP, self.rules.pickup_code_digits
            )
            tx.audit(now, method, "deposited", order_id)
            fields = {
                "order_id": order_id,
                "compartments": listed,
                "pickup_code": code,
                "pickup_qr": qr_text(self.locker_id, "pickup", code),
                "pickup_until": rfc3339(pickup_until),
                "reserved_at": rfc3339(order.reserved_at),
                "deposited_at": rfc3339(now),
            }
            tx.emit("deposited", fields, now)
        elif purpose == Purpose.PICKUP and order.state == OrderState.LOADED:
            repo.set_collected(tx, order_pk, times, method)
            orders.apply(tx, order_pk, OrderEvent.COLLECTED, now, self.doors)
            tx.audit(
                now, method, "picked_up", order_id, detail="" if done.door_seen else "door not seen"
            )
            assert order.deposited_at is not None
            picked: dict[str, Any] = {
                "order_id": order_id,
                "compartments": listed,
                "method": method,
                "reserved_at": rfc3339(order.reserved_at),
                "deposited_at": rfc3339(order.deposited_at),
                "opened_at": rfc3339(times.opened_at),
                "closed_at": rfc3339(times.closed_at),
            }
            if not done.door_seen:
                # Taken as collected on the unlock alone (a restart hid the door): the
                # platform still confirms, and customer service can tell it from the rest.
                picked["door_seen"] = False
            tx.emit("picked_up", picked, now)
        elif purpose == Purpose.RETRIEVAL and order.state in (
            OrderState.EXPIRED,
            OrderState.CANCELLED,
        ):
            reason = "expired" if order.state == OrderState.EXPIRED else "cancelled"
            orders.apply(tx, order_pk, OrderEvent.RETRIEVED, now, self.doors)
            tx.audit(now, method, "retrieved", order_id, detail=reason)
            fields = {
                "order_id": order_id,
                "compartments": listed,
                "retrieved_at": rfc3339(now),
                "reason": reason,
            }
            tx.emit("retrieved", fields, now)
        return PhaseDone(order_id, purpose, tuple(c.number for c in comps))

    # -- timers ------------------------------------------------------------------------

    def deadlines_held(self) -> bool:
        """Whether deadlines wait for the clock: it is known unsynchronised and the
        system has been up less than UNSYNCED_HOLD_S."""
        clock = self.clock
        held = (
            clock is not None
            and clock.synchronised() is False
            and clock.monotonic() < UNSYNCED_HOLD_S
        )
        if held != self._holding:
            self._holding = held
            if held:
                log.warning(
                    "the clock is not synchronised: order deadlines wait for NTP"
                    " (at most %d minutes after boot)",
                    UNSYNCED_HOLD_S // 60,
                )
            else:
                log.info("order deadlines are judged on the wall clock again")
        return held

    def tick(self, tx: Transaction, now: float) -> None:
        """Fire every order deadline that has passed: lapse, reminder, expiry."""
        if self.deadlines_held():
            return
        for order in repo.orders_in(tx, OrderState.RESERVED, "reserved_until", now):
            if repo.any_door_opened(tx, order.pk):
                continue  # staff are loading it right now
            orders.apply(tx, order.pk, OrderEvent.LAPSED, now, self.doors)
            tx.audit(now, "system", "reservation_lapsed", order.order_id)
            tx.emit("reservation_lapsed", {"order_id": order.order_id}, now)
        reminder_s = self.rules.reminder_before_hours * HOUR
        for order in repo.orders_to_remind(tx, reminder_s, now):
            assert order.pickup_until is not None
            repo.set_reminded(tx, order.pk)
            repo.add_stage(tx, order.pk, "reminded", now)
            due = rfc3339(order.pickup_until)
            tx.emit("expiring_soon", {"order_id": order.order_id, "pickup_until": due}, now)
        for order in repo.orders_in(tx, OrderState.LOADED, "pickup_until", now):
            if repo.door_open_now(tx, order.pk):
                continue  # the customer is taking it out right now
            assert order.pickup_until is not None
            orders.apply(tx, order.pk, OrderEvent.EXPIRED, now, self.doors)
            tx.audit(now, "system", "expired", order.order_id)
            fields = {
                "order_id": order.order_id,
                "compartments": [c.as_dict() for c in repo.order_compartments(tx, order.pk)],
                "pickup_until": rfc3339(order.pickup_until),
            }
            tx.emit("expired", fields, now)
