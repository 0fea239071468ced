"""Order life cycle driven by doors and time: phases completed, lapse, reminder, expiry."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from locker import orders
from locker.clock import rfc3339
from locker.codes import qr_text
from locker.model import OrderState, Purpose
from locker.orders import OrderEvent
from locker.storage import Transaction

if TYPE_CHECKING:
    from locker.service import Service

HOUR = 3600.0


class Lifecycle:
    """What happens to orders when doors close and deadlines pass (part of the Service)."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self._next_prune = 0.0

    # -- phases completed by the doors -------------------------------------------------

    def phase_complete(self, tx: Transaction, order_pk: int, purpose: str, method: str) -> None:
        """Every compartment of the order was seen open and then closed."""
        now = self.svc.now()
        order = tx.one("SELECT * FROM orders WHERE pk=?", (order_pk,))
        assert order is not None
        comps = self.svc.order_compartments(tx, order_pk)
        order_id = order["order_id"]
        numbers = tuple(int(c["number"]) for c in comps)
        for listener in self.svc.phase_listeners:
            tx.after_commit(functools.partial(listener, order_id, str(purpose), numbers))
        times = tx.one(
            "SELECT MIN(opened_at) AS o, MAX(closed_at) AS c FROM order_compartments"
            " WHERE order_pk=?",
            (order_pk,),
        )
        assert times is not None
        # The history keeps when the doors of each phase opened and closed.
        prefix = "" if purpose == Purpose.PICKUP else f"{purpose}_"
        tx.stage(order_pk, f"{prefix}opened", times["o"])
        tx.stage(order_pk, f"{prefix}closed", times["c"])
        if purpose == Purpose.DEPOSIT and order["state"] == OrderState.RESERVED:
            pickup_until = now + order["pickup_hours"] * HOUR
            reminder_due = pickup_until - self.svc.config.rules.reminder_before_hours * HOUR
            tx.q(
                "UPDATE orders SET deposited_at=?, pickup_until=?, reminder_sent=? WHERE pk=?",
                (now, pickup_until, int(reminder_due <= now), order_pk),
            )
            orders.apply(tx, order_pk, OrderEvent.DEPOSITED, now, self.svc.doors)
            code = self.svc.new_code(
                tx, order_pk, "pickup", self.svc.config.rules.pickup_code_digits
            )
            tx.audit(now, method, "deposited", order_id)
            self.svc.emit(
                tx,
                "deposited",
                {
                    "order_id": order_id,
                    "compartments": comps,
                    "pickup_code": code,
                    "pickup_qr": qr_text(self.svc.locker_id, "pickup", code),
                    "pickup_until": rfc3339(pickup_until),
                    "reserved_at": rfc3339(order["reserved_at"]),
                    "deposited_at": rfc3339(now),
                },
                now,
            )
        elif purpose == Purpose.PICKUP and order["state"] == OrderState.LOADED:
            tx.q(
                "UPDATE orders SET opened_at=?, closed_at=?, method=? WHERE pk=?",
                (times["o"], times["c"], method, order_pk),
            )
            orders.apply(tx, order_pk, OrderEvent.COLLECTED, now, self.svc.doors)
            tx.audit(now, method, "picked_up", order_id)
            self.svc.emit(
                tx,
                "picked_up",
                {
                    "order_id": order_id,
                    "compartments": comps,
                    "method": method,
                    "reserved_at": rfc3339(order["reserved_at"]),
                    "deposited_at": rfc3339(order["deposited_at"]),
                    "opened_at": rfc3339(times["o"]),
                    "closed_at": rfc3339(times["c"]),
                },
                now,
            )
        elif purpose == Purpose.RETRIEVAL and order["state"] in (
            OrderState.EXPIRED,
            OrderState.CANCELLED,
        ):
            reason = "expired" if order["state"] == OrderState.EXPIRED else "cancelled"
            orders.apply(tx, order_pk, OrderEvent.RETRIEVED, now, self.svc.doors)
            tx.audit(now, method, "retrieved", order_id, detail=reason)
            self.svc.emit(
                tx,
                "retrieved",
                {
                    "order_id": order_id,
                    "compartments": comps,
                    "retrieved_at": rfc3339(now),
                    "reason": reason,
                },
                now,
            )

    # -- timers ------------------------------------------------------------------------

    def tick(self) -> None:
        """Fire every deadline that has passed: lapse, reminder, expiry, doors."""
        now = self.svc.now()
        with self.svc.store.transaction() as tx:
            for order in tx.q(
                "SELECT * FROM orders WHERE state='reserved' AND reserved_until <= ?", (now,)
            ).fetchall():
                if self.svc.doors.any_door_opened(tx, order["pk"]):
                    continue  # staff are loading it right now
                orders.apply(tx, order["pk"], OrderEvent.LAPSED, now, self.svc.doors)
                tx.audit(now, "system", "reservation_lapsed", order["order_id"])
                self.svc.emit(tx, "reservation_lapsed", {"order_id": order["order_id"]}, now)
            reminder_s = self.svc.config.rules.reminder_before_hours * HOUR
            for order in tx.q(
                "SELECT * FROM orders WHERE state='loaded' AND reminder_sent=0"
                " AND pickup_until - ? <= ? AND pickup_until > ?",
                (reminder_s, now, now),
            ).fetchall():
                tx.q("UPDATE orders SET reminder_sent=1 WHERE pk=?", (order["pk"],))
                tx.stage(order["pk"], "reminded", now)
                self.svc.emit(
                    tx,
                    "expiring_soon",
                    {
                        "order_id": order["order_id"],
                        "pickup_until": rfc3339(order["pickup_until"]),
                    },
                    now,
                )
            for order in tx.q(
                "SELECT * FROM orders WHERE state='loaded' AND pickup_until <= ?", (now,)
            ).fetchall():
                if self.svc.doors.door_open_now(tx, order["pk"]):
                    continue  # the customer is taking it out right now
                orders.apply(tx, order["pk"], OrderEvent.EXPIRED, now, self.svc.doors)
                tx.audit(now, "system", "expired", order["order_id"])
                self.svc.emit(
                    tx,
                    "expired",
                    {
                        "order_id": order["order_id"],
                        "compartments": self.svc.order_compartments(tx, order["pk"]),
                        "pickup_until": rfc3339(order["pickup_until"]),
                    },
                    now,
                )
            self.svc.doors.tick(tx, now)
        if now >= self._next_prune:
            # Past the broker's session expiry a command cannot be delivered again.
            self._next_prune = now + HOUR
            keep = max(
                self.svc.config.mqtt.session_expiry_s, self.svc.config.mqtt.command_max_age_s
            )
            self.svc.store.prune_replies(now - keep)
