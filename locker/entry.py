"""Codes at the locker: what happens when a keypad, scanner or camera delivers one.

The throttle is checked first, then the code is looked up by its keyed hash;
a right code opens the compartments its order needs at this stage (deposit,
pickup or retrieval), a wrong one counts against the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from locker.codes import CodeFormatError, parse_code_input
from locker.model import Method, OrderState, Purpose
from locker.pin import check_pin
from locker.storage import Transaction
from locker.throttle import (
    ThrottleState,
    attempts_left,
    record_failure,
    record_success,
    wait_s,
)

if TYPE_CHECKING:
    from locker.service import Service


ALREADY_OPEN = "compartment already open"


@dataclass(frozen=True)
class CodeResult:
    """What a terminal shows after a code was entered."""

    outcome: str  # opened | wrong | throttled | refused | door_failed
    message: str
    purpose: str | None = None
    order_id: str | None = None
    compartments: tuple[int, ...] = ()
    attempts_left: int | None = None
    wait_s: float = 0.0
    # Why a code was refused, for the screen to pick its text: other_locker, not_a_code,
    # already_loaded, not_now (None for a plain wrong code).
    reason: str | None = None

    def summary(self) -> str:
        """One journal line: what the code led to, as far as it is known now (the door's
        own outcome is logged when it is seen), never the code itself."""
        if self.outcome != "opened":
            return f"{self.outcome} ({self.message})"
        numbers = ", ".join(map(str, self.compartments))
        done = "already open" if self.message == ALREADY_OPEN else "unlock sent"
        return f"{self.purpose} code of order {self.order_id}: compartment {numbers} {done}"


class CodeEntry:
    """The code-entry use case (owned by the Service)."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc

    # -- codes at the locker -----------------------------------------------------------

    def enter_code(self, text: str, method: Method) -> CodeResult:
        """A code typed, scanned or seen by the camera at this terminal."""
        terminal = method.value
        now = self.svc.now()
        with self.svc.store.transaction() as tx:
            state, waiting = self._throttled(tx, terminal, now, "codes")
            if waiting is not None:
                return waiting
            try:
                parsed = parse_code_input(text, self.svc.locker_id)
            except CodeFormatError as exc:
                if exc.reason == "other_locker":
                    return self._wrong(tx, terminal, state, now, str(exc), exc.reason)
                tx.audit(now, terminal, "code_rejected", detail=str(exc))
                return CodeResult("refused", str(exc), reason=exc.reason)
            digest = self.svc.codebook.digest(parsed.code)
            row = tx.one("SELECT digest, order_pk, kind FROM codes WHERE digest=?", (digest,))
            if (
                row is None
                or not self.svc.codebook.matches(parsed.code, row["digest"])
                or (parsed.kind is not None and parsed.kind != row["kind"])
            ):
                return self._wrong(tx, terminal, state, now, "wrong code")
            self.save_throttle(tx, terminal, record_success(state))
            order = tx.one("SELECT * FROM orders WHERE pk=?", (row["order_pk"],))
            assert order is not None
            return self._use_code(tx, order, row["kind"], method, now)

    def _use_code(
        self, tx: Transaction, order: Any, kind: str, method: Method, now: float
    ) -> CodeResult:
        state = order["state"]
        purpose: Purpose
        if kind == "deposit" and state == OrderState.RESERVED:
            purpose = Purpose.DEPOSIT
        elif kind == "deposit" and state in (OrderState.EXPIRED, OrderState.CANCELLED):
            purpose = Purpose.RETRIEVAL
        elif kind == "pickup" and state == OrderState.LOADED:
            purpose = Purpose.PICKUP
        elif kind == "deposit" and state == OrderState.LOADED:
            tx.audit(now, method.value, "deposit_code_reused", order["order_id"])
            return CodeResult(
                "refused",
                "this order is already loaded",
                order_id=order["order_id"],
                reason="already_loaded",
            )
        else:  # a live code always belongs to one of the states above
            return CodeResult("refused", "this code cannot be used now", reason="not_now")
        numbers = [
            r["number"]
            for r in tx.q(
                "SELECT number FROM order_compartments WHERE order_pk=? AND closed_at IS NULL"
                " ORDER BY number",
                (order["pk"],),
            )
        ]
        offline = sorted(
            {
                self.svc.compartments[n].board
                for n in numbers
                if not self.svc.online.get(self.svc.compartments[n].board, True)
            }
        )
        if offline:
            tx.audit(
                now,
                method.value,
                f"{purpose.value}_refused",
                order["order_id"],
                detail=f"board offline: {','.join(offline)}",
            )
            return CodeResult(
                "door_failed",
                "the door cannot be opened right now; please go to the service desk",
                purpose=purpose.value,
                order_id=order["order_id"],
            )
        active = self.svc.doors.active_for_order(tx, order["pk"])
        if active is not None:
            return CodeResult(
                "opened",
                ALREADY_OPEN,
                purpose=purpose.value,
                order_id=order["order_id"],
                compartments=tuple(active),
            )
        tx.audit(
            now,
            method.value,
            f"{purpose.value}_code",
            order["order_id"],
            detail="compartments=" + ",".join(map(str, numbers)),
        )
        self.svc.doors.open(tx, purpose, order["pk"], numbers, method.value, method.value, None)
        return CodeResult(
            "opened",
            "compartment " + ", ".join(map(str, numbers)) + " is open",
            purpose=purpose.value,
            order_id=order["order_id"],
            compartments=tuple(numbers),
        )

    def throttle_state(self, tx: Transaction, terminal: str) -> ThrottleState:
        row = tx.one("SELECT * FROM throttle WHERE terminal=?", (terminal,))
        if row is None:
            return ThrottleState()
        return ThrottleState(row["failures"], row["locked_until"], row["last_failure_at"])

    def save_throttle(self, tx: Transaction, terminal: str, state: ThrottleState) -> None:
        tx.q(
            "INSERT INTO throttle (terminal, failures, locked_until, last_failure_at)"
            " VALUES (?,?,?,?) ON CONFLICT(terminal) DO UPDATE SET failures=excluded.failures,"
            " locked_until=excluded.locked_until, last_failure_at=excluded.last_failure_at",
            (terminal, state.failures, state.locked_until, state.last_failure_at),
        )

    def _throttled(
        self, tx: Transaction, terminal: str, now: float, what: str
    ) -> tuple[ThrottleState, CodeResult | None]:
        """The terminal's throttle state, and what to show while it must still wait."""
        state = self.throttle_state(tx, terminal)
        wait = wait_s(state, now)
        if wait <= 0:
            return state, None
        message = f"too many wrong {what}; try again in {int(wait + 0.999)} s"
        return state, CodeResult("throttled", message, wait_s=wait)

    def check_pin(self, pin: str, stored: str | None) -> CodeResult | None:
        """None when the technician PIN is right; else what the screen should say."""
        terminal = "technician"
        now = self.svc.now()
        with self.svc.store.transaction() as tx:
            state, waiting = self._throttled(tx, terminal, now, "PINs")
            if waiting is not None:
                return waiting
            if stored is None:
                tx.audit(now, terminal, "pin_refused", detail="no technician PIN set")
                return CodeResult("refused", "no technician PIN is set (lockerctl set-pin)")
            if not check_pin(pin, stored):
                return self._wrong(tx, terminal, state, now, "wrong PIN")
            self.save_throttle(tx, terminal, record_success(state))
            return None

    def _wrong(
        self,
        tx: Transaction,
        terminal: str,
        state: ThrottleState,
        now: float,
        why: str,
        reason: str | None = None,
    ) -> CodeResult:
        new_state, locked_for = record_failure(state, now, self.svc.policy)
        self.save_throttle(tx, terminal, new_state)
        tx.audit(now, terminal, "wrong_code", detail=why)
        if locked_for:
            tx.audit(
                now,
                terminal,
                "code_attempts_throttled",
                detail=f"{new_state.failures} failures, locked {int(locked_for)} s",
            )
            self.svc.emit(
                tx,
                "code_attempts_throttled",
                {
                    "failures": new_state.failures,
                    "locked_for_s": int(locked_for),
                    "terminal": terminal,
                },
                now,
            )
            return CodeResult(
                "throttled",
                f"{why}; too many wrong codes, try again in {int(locked_for)} s",
                wait_s=locked_for,
            )
        left = attempts_left(new_state, now, self.svc.policy)
        return CodeResult(
            "wrong", f"{why}; {left} attempts left", attempts_left=left, reason=reason
        )
