"""Openings and doors: unlock intents, confirmation by the sensors, alarms.

An *opening* is the committed intent "open compartments X for purpose P".
Each of its doors is unlocked only after the intent is on disk, must then be
seen open within `open_confirm_s` (else retried, then declared jammed), and is
done once seen closed again. A door that opens while no opening expects it is
`forced`. After a restart an intent is never sent again: its doors are only
watched until the deadline stored with the intent (so a crash loop cannot keep
it waiting), and a door still not seen open then is reconciled with what it
shows: a pickup is taken as done (`picked_up` with `door_seen: false`), a
deposit or retrieval is reported (`open_interrupted`) and its code works again,
a remote open is answered.

Door alarms and lock faults are this module's own events; what the rest of the
locker must act on (a phase of an order completed, the late reply to a remote
open) is returned to the caller, inside the same transaction.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from locker import repo
from locker.boards import BoardError
from locker.clock import Clock, rfc3339
from locker.config import DoorsSection
from locker.model import (
    AlarmKind,
    Compartment,
    Component,
    Door,
    DoorOutcome,
    ErrorCode,
    OpeningState,
    OrderState,
    Purpose,
)
from locker.rows import OpeningDoorRow
from locker.storage import Transaction

log = logging.getLogger(__name__)

# (board, channel, what to do if it fails) -> False when it already failed.
SendUnlock = Callable[[str, int, Callable[[BoardError], None]], bool]


@dataclass(frozen=True)
class OpenRequest:
    """What every front end asks for: open these compartments, for this reason."""

    purpose: Purpose
    numbers: tuple[int, ...]
    method: str  # the contract's method, or "technician"
    actor: str  # who asked, for the audit
    order_pk: int | None = None
    command_id: str | None = None  # a remote open's command, answered when the door moves


@dataclass(frozen=True)
class PhaseComplete:
    """Every compartment of an order was seen open and then closed."""

    order_pk: int
    purpose: Purpose
    method: str
    # False when a door's unlock went out before a restart and it was found closed after
    # it, never seen open: the phase is taken as done on the committed intent alone.
    door_seen: bool = True


@dataclass(frozen=True)
class CommandReply:
    """The late reply of a pending command (a remote open), to store and deliver."""

    command_id: str
    reply: dict[str, Any]


Outcome = PhaseComplete | CommandReply


class Openings:
    """Door readings and unlock intents of one locker."""

    def __init__(
        self,
        *,
        clock: Clock,
        settings: DoorsSection,
        compartments: Mapping[int, Compartment],
        boards: Collection[str],
        online: Mapping[str, bool],
        send_unlock: SendUnlock,
        board_failed: Callable[[str, BoardError], None],
        unlocked: Callable[[str], None],
    ) -> None:
        """`online` is read, never written (the board status belongs to its owner);
        `unlocked` hears the board after each pulse sent."""
        self.clock = clock
        self.settings = settings
        self.compartments = compartments
        self.boards = boards
        self.online = online
        self.send_unlock = send_unlock
        self.board_failed = board_failed
        self.unlocked = unlocked
        self.door: dict[int, Door] = {}
        # (opening_id, number) -> monotonic time by which the door must be seen open.
        self.deadline: dict[tuple[int, int], float] = {}
        self.no_retry: set[tuple[int, int]] = set()
        # number -> monotonic time of the last unlock pulse sent to it.
        self.last_unlock: dict[int, float] = {}
        # board -> monotonic time its doors last went unread (a poll that failed).
        self.unread_at: dict[str, float] = {}

    # -- intents -----------------------------------------------------------------------

    def open(self, tx: Transaction, request: OpenRequest) -> int:
        """Commit the intent to open the request's doors; the unlocks go out after the commit."""
        opening_id = repo.insert_opening(
            tx,
            request.purpose,
            request.order_pk,
            request.numbers,
            request.method,
            request.actor,
            request.command_id,
            self.clock.now(),
            self.clock.steady() + self.settings.open_confirm_s,
        )
        for number in request.numbers:
            tx.after_commit(functools.partial(self._send, opening_id, number))
        return opening_id

    def _send(self, opening_id: int, number: int) -> None:
        comp = self.compartments[number]
        key = (opening_id, number)
        self.deadline[key] = self.clock.monotonic() + self.settings.open_confirm_s
        if comp.board not in self.boards:  # configuration guarantees it
            self.deadline[key] = self.clock.monotonic()
            return
        self.last_unlock[number] = self.clock.monotonic()
        failed = functools.partial(self._unlock_failed, key, comp.board)
        if not self.send_unlock(comp.board, comp.channel, failed):
            return  # it failed at once (the board's I/O ran in this thread)
        self.unlocked(comp.board)
        if self.door.get(number) == Door.OPEN:
            # The sensor already read open (a broken sensor, a door left ajar): it must
            # not block the unlock, and the next reading counts as "seen open".
            del self.door[number]

    def _unlock_failed(self, key: tuple[int, int], board: str, exc: BoardError) -> None:
        log.warning("unlock of compartment %d failed: %s", key[1], exc)
        if key in self.deadline:
            self.deadline[key] = self.clock.monotonic()  # retry on the next tick
        self.board_failed(board, exc)

    def boards_confirming(self) -> set[str]:
        """Boards with an unlock waiting to be seen by its door sensor."""
        return {self.compartments[number].board for _, number in self.deadline}

    def recover(self, tx: Transaction) -> None:
        """After a restart: watch the doors of unfinished intents until their stored
        deadline, never re-send them.

        The deadline is steady time of the run that stored it; a wall clock stepped back
        between the runs would push it out, so it is never later than `open_confirm_s`
        from now (and stored so, or a crash loop would grant that much afresh each run).
        One already past is resolved once the door has been read in this run
        (docs/time.md)."""
        mono, steady = self.clock.monotonic(), self.clock.steady()
        latest = steady + self.settings.open_confirm_s
        for row in repo.unconfirmed_doors(tx):
            key = (row.opening_id, row.number)
            due = steady if row.confirm_by is None else min(row.confirm_by, latest)
            if due != row.confirm_by:
                repo.set_confirm_by(tx, row.opening_id, row.number, due)
            self.deadline[key] = mono + max(0.0, due - steady)
            self.no_retry.add(key)
            tx.audit(
                self.clock.now(),
                "system",
                "intent_recovered",
                compartment=row.number,
                detail=f"opening {row.opening_id}: not re-sent,"
                f" resolved in {max(0.0, due - steady):.1f} s",
            )

    # -- what an order's transition asks of the doors (orders.DoorEffects) --------------

    def abandon_order(self, tx: Transaction, order_pk: int) -> None:
        """The order changed under an opening (lapse, expiry, cancel): stop waiting for it."""
        for opening_id in repo.abandon_openings(tx, order_pk, self.clock.now()):
            for key in [k for k in self.deadline if k[0] == opening_id]:
                del self.deadline[key]

    def reset_phase(self, tx: Transaction, order_pk: int) -> None:
        repo.reset_phase(tx, order_pk)

    # -- the sensors -------------------------------------------------------------------

    def read_failed(self, board: str) -> None:
        """A poll of `board` failed: a door unlocked before it may have opened and closed
        unseen, so its unlock is not sent again (see `_confirm_timeout`)."""
        self.unread_at[board] = self.clock.monotonic()

    def _blind_since_pulse(self, number: int) -> bool:
        """Did a poll of this door's board fail after the last pulse sent to it?"""
        pulsed = self.last_unlock.get(number)
        unread = self.unread_at.get(self.compartments[number].board)
        return pulsed is not None and unread is not None and unread >= pulsed

    def reading(self, number: int, door: Door) -> Door | None:
        """Record a sensor reading; the previous one when it changed (else None: only
        changes do work)."""
        prev = self.door.get(number, Door.UNKNOWN)
        if door == prev:
            return None
        self.door[number] = door
        return prev

    def observe(self, tx: Transaction, number: int, door: Door, prev: Door) -> list[Outcome]:
        """A changed door: store it, settle the opening that waited for it."""
        now = self.clock.now()
        # door_since only times the left-open alarm: steady time, which NTP does not step.
        repo.set_door(tx, number, door, self.clock.steady())
        if door == Door.OPEN:
            return self._opened(tx, number, prev, now)
        if door == Door.CLOSED:
            return self._closed(tx, number, now)
        return []

    def _opened(self, tx: Transaction, number: int, prev: Door, now: float) -> list[Outcome]:
        row = repo.door_awaited(tx, number, Door.OPEN)
        if row is None:
            if prev == Door.CLOSED and not self._recently_unlocked(number):
                self._alarm(tx, number, AlarmKind.FORCED, repo.order_id_in(tx, number), now)
            return []
        key = (row.opening_id, number)
        self.deadline.pop(key, None)
        self.no_retry.discard(key)
        of_order = f" of order {row.order_id}" if row.order_id else ""
        tx.after_commit(
            functools.partial(
                log.info, "compartment %d seen open (%s%s)", number, row.purpose, of_order
            )
        )
        repo.mark_seen(tx, row.opening_id, number, Door.OPEN, now)
        if row.order_pk is not None:
            repo.mark_order_door(tx, row.order_pk, number, Door.OPEN, now)
        if repo.set_jammed(tx, number, False):
            tx.emit("fault_cleared", self._lock_fault(number, "door opened"), now)
        if not row.command_id:
            return []
        result = {"compartment": number, "door": DoorOutcome.OPENED.value}
        reply = {"command_id": row.command_id, "ok": True, "result": result}
        return [CommandReply(row.command_id, reply)]

    def _recently_unlocked(self, number: int) -> bool:
        """Was a pulse sent lately? Then an opening is ours, even if its intent was dropped.

        (An order cancelled or lapsed in the instant between the pulse and the next poll
        must not turn the staff's own opening into an intrusion alarm.)
        """
        sent = self.last_unlock.get(number)
        window = self.settings.open_confirm_s * (self.settings.unlock_retries + 1)
        return sent is not None and self.clock.monotonic() - sent <= window

    def _closed(self, tx: Transaction, number: int, now: float) -> list[Outcome]:
        row = repo.door_awaited(tx, number, Door.CLOSED)
        if row is None:
            return []
        repo.mark_seen(tx, row.opening_id, number, Door.CLOSED, now)
        if row.order_pk is not None:
            repo.mark_order_door(tx, row.order_pk, number, Door.CLOSED, now)
        self._maybe_finish(tx, row.opening_id, now)
        if row.order_pk is not None and not repo.unclosed_numbers(tx, row.order_pk):
            seen = repo.opening_doors_seen(tx, row.opening_id)
            return [PhaseComplete(row.order_pk, row.purpose, row.method, door_seen=seen)]
        return []

    def _maybe_finish(self, tx: Transaction, opening_id: int, now: float) -> None:
        state = repo.opening_settled(tx, opening_id)
        if state is not None:
            repo.end_opening(tx, opening_id, state, now)

    # -- timers ------------------------------------------------------------------------

    def tick(self, tx: Transaction, now: float) -> list[Outcome]:
        """Doors not seen open in time, doors left open too long."""
        outcomes: list[Outcome] = []
        mono = self.clock.monotonic()
        for key, due in list(self.deadline.items()):
            if mono >= due and self._door_known(key):
                outcomes += self._confirm_timeout(tx, key, now)
        for number in repo.doors_left_open(tx, self.clock.steady() - self.settings.open_alarm_s):
            self._alarm(tx, number, AlarmKind.LEFT_OPEN, repo.order_id_in(tx, number), now)
        return outcomes

    def _door_known(self, key: tuple[int, int]) -> bool:
        """Can the door of this timer be judged? A recovered intent's door waits for its
        first reading in this run (it may be open right now: then it completes as usual),
        unless its board is offline and no reading is coming."""
        number = key[1]
        return (
            key not in self.no_retry
            or number in self.door
            or not self.online.get(self.compartments[number].board, True)
        )

    def _lock_fault(self, number: int, detail: str) -> dict[str, Any]:
        """A lock that failed (or works again) is its board's fault, on one compartment."""
        return {
            "component": Component.BOARD.value,
            "board": self.compartments[number].board,
            "detail": f"lock of compartment {number}: {detail}",
            "compartments": [number],
        }

    def _alarm(
        self, tx: Transaction, number: int, kind: AlarmKind, order_id: str | None, now: float
    ) -> None:
        """A `door_alarm` event (forced, left_open, jammed), audited (and so in the journal)."""
        tx.audit(now, "system", f"door_{kind}", order_id, number)
        fields: dict[str, Any] = {"compartment": number, "kind": kind.value}
        if order_id:
            fields["order_id"] = order_id
        tx.emit("door_alarm", fields, now)

    def _confirm_timeout(self, tx: Transaction, key: tuple[int, int], now: float) -> list[Outcome]:
        opening_id, number = key
        row = repo.opening_door(tx, opening_id, number)
        del self.deadline[key]
        if row is None or row.state != OpeningState.ACTIVE:
            return []
        comp = self.compartments[number]
        if key in self.no_retry:
            self.no_retry.discard(key)
            outcome = DoorOutcome.INTERRUPTED
        elif self._blind_since_pulse(number):
            # The pulse went out, then the board's doors went unread: the door may have
            # opened and closed unseen, and a second pulse would open it a second time for
            # one input. It is judged like a door unlocked before a restart: given time to
            # be seen open, else reconciled (`_interrupted`), never pulsed again.
            self.no_retry.add(key)
            self.deadline[key] = self.clock.monotonic() + self.settings.open_confirm_s
            tx.audit(now, "system", "unlock_not_retried", compartment=number,
                     detail="the board's doors went unread after the pulse")  # fmt: skip
            return []
        elif row.attempts <= self.settings.unlock_retries:
            confirm_by = self.clock.steady() + self.settings.open_confirm_s
            repo.count_attempt(tx, opening_id, number, now, confirm_by)
            detail = f"attempt {row.attempts + 1}"
            tx.audit(now, "system", "unlock_retry", compartment=number, detail=detail)
            tx.after_commit(functools.partial(self._send, opening_id, number))
            return []
        elif self.online.get(comp.board, True):
            outcome = DoorOutcome.JAMMED
        else:
            outcome = DoorOutcome.BOARD_OFFLINE
        repo.settle_door(tx, opening_id, number, outcome)
        if outcome == DoorOutcome.INTERRUPTED:
            return self._interrupted(tx, row, now)
        if row.order_pk is not None:
            # The order's history keeps the failed attempt beside the stages that worked.
            repo.add_stage(
                tx,
                row.order_pk,
                "open_failed",
                now,
                f"compartment {number}: {outcome.value.replace('_', ' ')}"
                f" after {row.attempts} unlock attempts",
            )
        if outcome == DoorOutcome.JAMMED:
            repo.set_jammed(tx, number, True)
            self._alarm(tx, number, AlarmKind.JAMMED, row.order_id, now)
            detail = f"door not seen open after {row.attempts} unlock attempts"
            tx.emit("fault", self._lock_fault(number, detail), now)
        else:
            tx.audit(now, "system", f"door_{outcome}", row.order_id, number)
        outcomes: list[Outcome] = []
        if row.command_id:
            outcomes.append(
                CommandReply(row.command_id, _failed_reply(row.command_id, comp, outcome, now))
            )
        self._maybe_finish(tx, opening_id, now)
        return outcomes

    def _interrupted(self, tx: Transaction, row: OpeningDoorRow, now: float) -> list[Outcome]:
        """A door unlocked before a restart, not seen open by its deadline after it, now
        closed (or its board silent): reconcile it with its purpose, never drop it.

        The intent commits a fraction of a millisecond before its pulse goes out, so an
        intent found unfinished almost surely unlocked its door for the person who asked,
        and the door opened and closed while no process watched it (a power cut)."""
        opening_id, number = row.opening_id, row.number
        order = None if row.order_pk is None else repo.order(tx, row.order_pk)
        unlocked_at = rfc3339(row.created_at)
        tx.audit(now, "system", "door_interrupted", row.order_id, number, f"unlocked {unlocked_at}")
        outcomes: list[Outcome] = []
        if order is not None and row.purpose == Purpose.PICKUP and order.state == OrderState.LOADED:
            # The shopper had the door unlocked and most likely left with the goods: the
            # platform confirms receipt only on `picked_up`, so it gets one, flagged for
            # customer service; the code dies and the bay is freed as on any pickup.
            repo.mark_order_door(tx, order.pk, number, Door.OPEN, row.created_at)
            repo.mark_order_door(tx, order.pk, number, Door.CLOSED, now)
            repo.add_stage(
                tx, order.pk, "door_not_seen", now, f"compartment {number}: unlocked {unlocked_at}"
            )
            self._maybe_finish(tx, opening_id, now)
            if not repo.unclosed_numbers(tx, order.pk):
                outcomes.append(PhaseComplete(order.pk, row.purpose, row.method, door_seen=False))
            return outcomes
        if order is not None and row.purpose in (Purpose.DEPOSIT, Purpose.RETRIEVAL):
            # Goods loaded or taken out cannot be assumed: a wrong `deposited` would send
            # the shopper to an empty bay. The order stays as it was, its deposit code opens
            # the door again (the intent no longer blocks it), and the platform is told so
            # that staff scan again.
            repo.add_stage(
                tx, order.pk, "open_interrupted", now, f"compartment {number}: {row.purpose}"
            )
            fields: dict[str, Any] = {
                "order_id": order.order_id,
                "compartment": number,
                "purpose": row.purpose.value,
                "unlocked_at": unlocked_at,
            }
            tx.emit("open_interrupted", fields, now)
        if row.command_id:
            comp = self.compartments[number]
            reply = _failed_reply(row.command_id, comp, DoorOutcome.INTERRUPTED, now)
            outcomes.append(CommandReply(row.command_id, reply))
        self._maybe_finish(tx, opening_id, now)
        return outcomes


def _failed_reply(
    command_id: str, comp: Compartment, outcome: DoorOutcome, now: float
) -> dict[str, Any]:
    """The remote open's reply when its door was never seen open."""
    number = comp.number
    code = (
        ErrorCode.BOARD_OFFLINE if outcome == DoorOutcome.BOARD_OFFLINE else ErrorCode.DOOR_JAMMED
    )
    message = {
        DoorOutcome.JAMMED: f"compartment {number} did not open",
        DoorOutcome.BOARD_OFFLINE: f"board {comp.board} of compartment {number} is offline",
        DoorOutcome.INTERRUPTED: f"the locker restarted before compartment {number} was seen"
        f" open (at {rfc3339(now)}); check the door before trying again",
    }[outcome]
    return {
        "command_id": command_id,
        "ok": False,
        "error": {"code": code.value, "message": message},
    }
