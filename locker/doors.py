"""Openings and doors: unlock intents, confirmation by the sensors, alarms.

An *opening* is the committed intent "open compartments X for purpose P".
Each of its doors is unlocked only after the intent is on disk, must then be
seen open within `open_confirm_s` (else retried, then declared jammed), and is
done once seen closed again. A door that opens while no opening expects it is
`forced`. After a restart an intent is never sent again: its doors are only
watched, and one that does not open is reported as interrupted.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from locker.boards import BoardError
from locker.clock import rfc3339
from locker.model import Door, ErrorCode, Purpose

if TYPE_CHECKING:
    from locker.service import Service
    from locker.storage import Transaction

log = logging.getLogger(__name__)

RESOLVED = ("jammed", "board_offline", "interrupted")


class DoorTracker:
    """Door state and unlock intents of one locker (owned by the Service)."""

    def __init__(self, service: Service) -> None:
        self.svc = service
        self.door: dict[int, Door] = {}
        # (opening_id, number) -> monotonic time by which the door must be seen open.
        self.deadline: dict[tuple[int, int], float] = {}
        self.no_retry: set[tuple[int, int]] = set()
        # number -> monotonic time of the last unlock pulse sent to it.
        self.last_unlock: dict[int, float] = {}

    # -- intents -----------------------------------------------------------------------

    def open(
        self,
        tx: Transaction,
        purpose: Purpose,
        order_pk: int | None,
        numbers: list[int],
        method: str,
        actor: str,
        command_id: str | None,
    ) -> int:
        """Commit the intent to open `numbers`; the unlocks go out after the commit."""
        now = self.svc.now()
        cur = tx.q(
            "INSERT INTO openings (purpose, order_pk, method, actor, command_id, created_at)"
            " VALUES (?,?,?,?,?,?)",
            (purpose.value, order_pk, method, actor, command_id, now),
        )
        opening_id = cur.lastrowid
        assert opening_id is not None
        for number in numbers:
            tx.q(
                "INSERT INTO opening_doors (opening_id, number, attempts, last_attempt_at)"
                " VALUES (?,?,1,?)",
                (opening_id, number, now),
            )
            tx.after_commit(functools.partial(self._send, opening_id, number))
        return opening_id

    def _send(self, opening_id: int, number: int) -> None:
        comp = self.svc.compartments[number]
        key = (opening_id, number)
        self.deadline[key] = self.svc.clock.monotonic() + self.svc.config.doors.open_confirm_s
        if comp.board not in self.svc.boards:  # configuration guarantees it
            self.deadline[key] = self.svc.clock.monotonic()
            return
        self.last_unlock[number] = self.svc.clock.monotonic()
        failed = functools.partial(self._unlock_failed, key, comp.board)
        if not self.svc.send_unlock(comp.board, comp.channel, failed):
            return  # it failed at once (the board's I/O ran in this thread)
        for listener in self.svc.unlock_listeners:
            listener(comp.board)
        if self.door.get(number) == Door.OPEN:
            # The sensor already read open (a broken sensor, a door left ajar): it must
            # not block the unlock, and the next reading counts as "seen open".
            del self.door[number]

    def _unlock_failed(self, key: tuple[int, int], board: str, exc: BoardError) -> None:
        log.warning("unlock of compartment %d failed: %s", key[1], exc)
        if key in self.deadline:
            self.deadline[key] = self.svc.clock.monotonic()  # retry on the next tick
        self.svc.board_failed(board, exc)

    def boards_confirming(self) -> set[str]:
        """Boards with an unlock waiting to be seen by its door sensor."""
        comps = self.svc.compartments
        return {comps[number].board for _, number in self.deadline}

    def recover(self, tx: Transaction) -> None:
        """After a restart: watch the doors of unfinished intents, never re-send them."""
        mono = self.svc.clock.monotonic()
        for row in tx.q(
            "SELECT d.opening_id, d.number FROM opening_doors d JOIN openings o"
            " ON o.id = d.opening_id WHERE o.state='active' AND d.seen_open_at IS NULL"
            " AND d.outcome IS NULL"
        ).fetchall():
            key = (row["opening_id"], row["number"])
            self.deadline[key] = mono + self.svc.config.doors.open_confirm_s
            self.no_retry.add(key)
            tx.audit(
                self.svc.now(),
                "system",
                "intent_recovered",
                compartment=row["number"],
                detail=f"opening {row['opening_id']}: not re-sent",
            )

    def active_for_order(self, tx: Transaction, order_pk: int) -> list[int] | None:
        row = tx.one(
            "SELECT id FROM openings WHERE order_pk=? AND state='active' ORDER BY id DESC",
            (order_pk,),
        )
        if row is None:
            return None
        return [
            r["number"]
            for r in tx.q(
                "SELECT number FROM opening_doors WHERE opening_id=? ORDER BY number", (row["id"],)
            )
        ]

    def any_door_opened(self, tx: Transaction, order_pk: int) -> bool:
        """Has any compartment of the order been opened in its current phase?"""
        return (
            tx.one(
                "SELECT 1 FROM order_compartments WHERE order_pk=? AND opened_at IS NOT NULL",
                (order_pk,),
            )
            is not None
        )

    def door_open_now(self, tx: Transaction, order_pk: int) -> bool:
        """Is a compartment of the order open right now (opened, not yet closed)?"""
        return (
            tx.one(
                "SELECT 1 FROM order_compartments WHERE order_pk=? AND opened_at IS NOT NULL"
                " AND closed_at IS NULL",
                (order_pk,),
            )
            is not None
        )

    def abandon_order(self, tx: Transaction, order_pk: int) -> None:
        """The order changed under an opening (lapse, expiry, cancel): stop waiting for it."""
        now = self.svc.now()
        for row in tx.q(
            "SELECT id FROM openings WHERE order_pk=? AND state='active'", (order_pk,)
        ).fetchall():
            tx.q("UPDATE openings SET state='abandoned', ended_at=? WHERE id=?", (now, row["id"]))
            for key in [k for k in self.deadline if k[0] == row["id"]]:
                del self.deadline[key]

    def reset_phase(self, tx: Transaction, order_pk: int) -> None:
        tx.q(
            "UPDATE order_compartments SET opened_at=NULL, closed_at=NULL WHERE order_pk=?",
            (order_pk,),
        )

    # -- the sensors -------------------------------------------------------------------

    def observe(self, number: int, door: Door) -> None:
        """A door sensor reading from the poller; only changes do work."""
        prev = self.door.get(number, Door.UNKNOWN)
        if door == prev:
            return
        self.door[number] = door
        now = self.svc.now()
        with self.svc.store.transaction() as tx:
            tx.q(
                "UPDATE compartments SET door=?, door_since=?, left_open_alarmed=0 WHERE number=?",
                (door.value, now, number),
            )
            if door == Door.OPEN:
                self._opened(tx, number, prev, now)
            elif door == Door.CLOSED:
                self._closed(tx, number, now)

    def _opened(self, tx: Transaction, number: int, prev: Door, now: float) -> None:
        row = tx.one(
            "SELECT d.opening_id, d.outcome, o.order_pk, o.command_id, o.purpose, r.order_id"
            " FROM opening_doors d JOIN openings o ON o.id = d.opening_id"
            " LEFT JOIN orders r ON r.pk = o.order_pk WHERE o.state='active' AND d.number=?"
            " AND d.seen_open_at IS NULL ORDER BY d.opening_id DESC LIMIT 1",
            (number,),
        )
        if row is None:
            if prev == Door.CLOSED and not self._recently_unlocked(number):
                self._alarm(tx, number, "forced", self._order_id_of(tx, number), now)
            return
        key = (row["opening_id"], number)
        self.deadline.pop(key, None)
        self.no_retry.discard(key)
        of_order = f" of order {row['order_id']}" if row["order_id"] else ""
        tx.after_commit(
            functools.partial(
                log.info, "compartment %d seen open (%s%s)", number, row["purpose"], of_order
            )
        )
        tx.q(
            "UPDATE opening_doors SET seen_open_at=?, outcome='opened' WHERE opening_id=?"
            " AND number=?",
            (now, row["opening_id"], number),
        )
        if row["order_pk"] is not None:
            tx.q(
                "UPDATE order_compartments SET opened_at=COALESCE(opened_at, ?)"
                " WHERE order_pk=? AND number=?",
                (now, row["order_pk"], number),
            )
        jam = tx.one("SELECT jammed FROM compartments WHERE number=?", (number,))
        if jam is not None and jam["jammed"]:
            tx.q("UPDATE compartments SET jammed=0 WHERE number=?", (number,))
            self.svc.emit(
                tx,
                "fault_cleared",
                {
                    "component": f"lock:{number}",
                    "detail": "door opened",
                    "compartments": [number],
                },
                now,
            )
        if row["command_id"]:
            self.svc.finish_command(
                tx,
                row["command_id"],
                {
                    "command_id": row["command_id"],
                    "ok": True,
                    "result": {"compartment": number, "door": "opened"},
                },
            )

    def _recently_unlocked(self, number: int) -> bool:
        """Was a pulse sent lately? Then an opening is ours, even if its intent was dropped.

        (An order cancelled or lapsed in the instant between the pulse and the next poll
        must not turn the staff's own opening into an intrusion alarm.)
        """
        sent = self.last_unlock.get(number)
        doors = self.svc.config.doors
        window = doors.open_confirm_s * (doors.unlock_retries + 1)
        return sent is not None and self.svc.clock.monotonic() - sent <= window

    def _closed(self, tx: Transaction, number: int, now: float) -> None:
        row = tx.one(
            "SELECT d.opening_id, o.order_pk, o.purpose, o.method FROM opening_doors d"
            " JOIN openings o ON o.id = d.opening_id WHERE o.state='active' AND d.number=?"
            " AND d.seen_open_at IS NOT NULL AND d.seen_closed_at IS NULL"
            " ORDER BY d.opening_id DESC LIMIT 1",
            (number,),
        )
        if row is None:
            return
        tx.q(
            "UPDATE opening_doors SET seen_closed_at=? WHERE opening_id=? AND number=?",
            (now, row["opening_id"], number),
        )
        order_pk = row["order_pk"]
        if order_pk is not None:
            tx.q(
                "UPDATE order_compartments SET closed_at=? WHERE order_pk=? AND number=?"
                " AND opened_at IS NOT NULL",
                (now, order_pk, number),
            )
        self._maybe_finish(tx, row["opening_id"], now)
        if (
            order_pk is not None
            and tx.one(
                "SELECT 1 FROM order_compartments WHERE order_pk=? AND closed_at IS NULL",
                (order_pk,),
            )
            is None
        ):
            self.svc.phase_complete(tx, order_pk, row["purpose"], row["method"])

    def _maybe_finish(self, tx: Transaction, opening_id: int, now: float) -> None:
        rows = tx.q(
            "SELECT seen_closed_at, outcome FROM opening_doors WHERE opening_id=?", (opening_id,)
        ).fetchall()
        if all(r["seen_closed_at"] is not None or r["outcome"] in RESOLVED for r in rows):
            ok = all(r["seen_closed_at"] is not None for r in rows)
            tx.q(
                "UPDATE openings SET state=?, ended_at=? WHERE id=?",
                ("done" if ok else "failed", now, opening_id),
            )

    def _order_id_of(self, tx: Transaction, number: int) -> str | None:
        row = tx.one(
            "SELECT o.order_id FROM compartments c JOIN orders o ON o.pk = c.order_pk"
            " WHERE c.number=?",
            (number,),
        )
        return row["order_id"] if row else None

    # -- timers ------------------------------------------------------------------------

    def tick(self, tx: Transaction, now: float) -> None:
        mono = self.svc.clock.monotonic()
        for key, due in list(self.deadline.items()):
            if mono >= due:
                self._confirm_timeout(tx, key, now)
        limit = now - self.svc.config.doors.open_alarm_s
        for row in tx.q(
            "SELECT number FROM compartments WHERE door='open' AND left_open_alarmed=0"
            " AND door_since <= ?",
            (limit,),
        ).fetchall():
            number = row["number"]
            tx.q("UPDATE compartments SET left_open_alarmed=1 WHERE number=?", (number,))
            self._alarm(tx, number, "left_open", self._order_id_of(tx, number), now)

    def _alarm(
        self, tx: Transaction, number: int, kind: str, order_id: str | None, now: float
    ) -> None:
        """A `door_alarm` event (forced, left_open, jammed), audited (and so in the journal)."""
        tx.audit(now, "system", f"door_{kind}", order_id, number)
        fields: dict[str, Any] = {"compartment": number, "kind": kind}
        if order_id:
            fields["order_id"] = order_id
        self.svc.emit(tx, "door_alarm", fields, now)

    def _confirm_timeout(self, tx: Transaction, key: tuple[int, int], now: float) -> None:
        opening_id, number = key
        row = tx.one(
            "SELECT d.attempts, o.order_pk, o.command_id, o.state FROM opening_doors d"
            " JOIN openings o ON o.id = d.opening_id WHERE d.opening_id=? AND d.number=?",
            (opening_id, number),
        )
        del self.deadline[key]
        if row is None or row["state"] != "active":
            return
        comp = self.svc.compartments[number]
        online = self.svc.online.get(comp.board, True)
        if key in self.no_retry:
            self.no_retry.discard(key)
            outcome = "interrupted"
        elif row["attempts"] <= self.svc.config.doors.unlock_retries:
            tx.q(
                "UPDATE opening_doors SET attempts=attempts+1, last_attempt_at=?"
                " WHERE opening_id=? AND number=?",
                (now, opening_id, number),
            )
            tx.audit(
                now,
                "system",
                "unlock_retry",
                compartment=number,
                detail=f"attempt {row['attempts'] + 1}",
            )
            tx.after_commit(functools.partial(self._send, opening_id, number))
            return
        else:
            outcome = "jammed" if online else "board_offline"
        tx.q(
            "UPDATE opening_doors SET outcome=? WHERE opening_id=? AND number=?",
            (outcome, opening_id, number),
        )
        order_id = None
        if row["order_pk"] is not None:
            o = tx.one("SELECT order_id FROM orders WHERE pk=?", (row["order_pk"],))
            order_id = o["order_id"] if o else None
            # The order's history keeps the failed attempt beside the stages that worked.
            tx.stage(
                row["order_pk"],
                "open_failed",
                now,
                f"compartment {number}: {outcome.replace('_', ' ')}"
                f" after {row['attempts']} unlock attempts",
            )
        if outcome == "jammed":
            tx.q("UPDATE compartments SET jammed=1 WHERE number=?", (number,))
            self._alarm(tx, number, "jammed", order_id, now)
            self.svc.emit(
                tx,
                "fault",
                {
                    "component": f"lock:{number}",
                    "detail": f"door not seen open after {row['attempts']} unlock attempts",
                    "compartments": [number],
                },
                now,
            )
        else:
            tx.audit(now, "system", f"door_{outcome}", order_id, number)
        if row["command_id"]:
            code = ErrorCode.BOARD_OFFLINE if outcome == "board_offline" else ErrorCode.DOOR_JAMMED
            message = {
                "jammed": f"compartment {number} did not open",
                "board_offline": f"board {comp.board} of compartment {number} is offline",
                "interrupted": f"the locker restarted before compartment {number} was seen open"
                f" (at {rfc3339(now)}); check the door before trying again",
            }[outcome]
            self.svc.finish_command(
                tx,
                row["command_id"],
                {
                    "command_id": row["command_id"],
                    "ok": False,
                    "error": {"code": code.value, "message": message},
                },
            )
        self._maybe_finish(tx, opening_id, now)
