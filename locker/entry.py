"""Codes at the locker: what happens when a keypad, scanner or camera delivers one.

The throttle is checked first, then the code is looked up by its keyed hash;
a right code opens the compartments its order needs at this stage (deposit,
pickup or retrieval), a wrong one counts against the terminal and against the
locker's daily budget (`locker.throttle`). Only an entry that starts a new
opening resets the terminal: a live code that opens nothing (a loaded order's
deposit code, one's own code while the door is still open, a code whose board
is offline) proves nothing about the person guessing.

The staff screen is a terminal of its own ("staff"): it takes deposit codes only
(loading and retrieval), and shopper failures never make it wait, so no one at
the shopper's terminal can keep staff from loading or emptying the locker.
Input that is not a code at all is throttled on its own, lightly, and audited at
most once a minute per terminal.
"""

from __future__ import annotations

from collections.abc import Mapping

from locker import repo
from locker.clock import Clock
from locker.codes import CodeBook, CodeFormatError, parse_code_input
from locker.config import SecuritySection
from locker.model import (
    ALREADY_OPEN,
    CodeKind,
    CodeResult,
    Compartment,
    EntryOutcome,
    Method,
    OrderState,
    Purpose,
)
from locker.openings import Openings, OpenRequest
from locker.pin import check_pin
from locker.rows import OrderRow
from locker.storage import Store, Transaction
from locker.throttle import (
    BudgetPolicy,
    BudgetState,
    ThrottlePolicy,
    ThrottleState,
    attempts_left,
    budget_wait_s,
    record_failure,
    record_success,
    spend,
    wait_s,
)

# Terminals that are not a method: the staff screen, the technician PIN, and the
# throttle table's row that holds the locker's daily budget (the event's terminal too).
STAFF = "staff"
TECHNICIAN = "technician"
LOCKER = "locker"
# Not-a-code input is a nuisance, not a guess (it tells nothing about any code): it waits
# on its own, lightly, so a mistyped or stray scan never costs a shopper a code attempt.
NOT_A_CODE_FREE = 10
NOT_A_CODE_BASE_S = 1.0
NOT_A_CODE_AUDIT_S = 60.0  # at most one audit row per terminal in this time, with a count


class CodeEntry:
    """The code-entry use case."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        codebook: CodeBook,
        locker_id: str,
        security: SecuritySection,
        policy: ThrottlePolicy,
        compartments: Mapping[int, Compartment],
        online: Mapping[str, bool],
        openings: Openings,
    ) -> None:
        """`online` is read, never written (the board status belongs to its owner)."""
        self.store = store
        self.clock = clock
        self.codebook = codebook
        self.locker_id = locker_id
        self.policy = policy
        self.compartments = compartments
        self.online = online
        self.openings = openings
        self.budget = BudgetPolicy(
            per_day=security.wrong_codes_per_day, wait_s=security.budget_wait_s
        )
        self.not_a_code = ThrottlePolicy(
            free_attempts=NOT_A_CODE_FREE,
            base_s=NOT_A_CODE_BASE_S,
            max_s=max(NOT_A_CODE_BASE_S, security.throttle_max_s),
            reset_s=security.throttle_reset_s,
        )

    # -- codes at the locker -----------------------------------------------------------

    def enter_code(self, text: str, method: Method, staff: bool = False) -> CodeResult:
        """A code typed, scanned or seen by the camera at this terminal; `staff` when it
        was entered on the staff screen (deposit codes only, its own throttle)."""
        terminal = STAFF if staff else method.value
        # Audits and events are stamped with wall time; the throttle's waits are judged
        # on steady time, which an NTP step of the wall clock does not move (docs/time.md).
        now, steady = self.clock.now(), self.clock.steady()
        with self.store.transaction() as tx:
            state = self.throttle_state(tx, terminal)
            wait = wait_s(state, steady)
            if not staff:
                wait = max(wait, budget_wait_s(self.budget_state(tx), steady, self.budget))
            if wait > 0:
                return _waiting(wait, "codes")
            try:
                parsed = parse_code_input(text, self.locker_id)
            except CodeFormatError as exc:
                if exc.reason == "other_locker":
                    return self._wrong(tx, terminal, state, now, steady, str(exc), exc.reason)
                return self._not_a_code(tx, terminal, now, steady, exc)
            digest = self.codebook.digest(parsed.code)
            row = repo.code(tx, digest)
            if (
                row is None
                or not self.codebook.matches(parsed.code, row.digest)
                or (parsed.kind is not None and parsed.kind != row.kind)
                # The staff screen loads and empties compartments: a pickup code is not
                # live there, so guessing at it finds no shopper's code.
                or (staff and row.kind != CodeKind.DEPOSIT)
            ):
                return self._wrong(tx, terminal, state, now, steady, "wrong code")
            order = repo.order(tx, row.order_pk)
            assert order is not None
            if row.kind == CodeKind.DEPOSIT and order.state == OrderState.LOADED and not staff:
                # Dead for shoppers while the order is loaded (it opens nothing, and telling
                # a guesser it exists would help); staff are told it is already loaded.
                return self._wrong(
                    tx,
                    terminal,
                    state,
                    now,
                    steady,
                    "wrong code",
                    detail="deposit code of a loaded order",
                )
            result, started = self._use_code(tx, order, row.kind, method, now)
            if started:
                self.save_throttle(tx, terminal, record_success(state))
            return result

    def _use_code(
        self, tx: Transaction, order: OrderRow, kind: CodeKind, method: Method, now: float
    ) -> tuple[CodeResult, bool]:
        """What a live code leads to, and whether it started a new opening (the only entry
        that counts as a success for the throttle)."""
        state, order_id = order.state, order.order_id
        purpose: Purpose
        if kind == CodeKind.DEPOSIT and state == OrderState.RESERVED:
            purpose = Purpose.DEPOSIT
        elif kind == CodeKind.DEPOSIT and state in (OrderState.EXPIRED, OrderState.CANCELLED):
            purpose = Purpose.RETRIEVAL
        elif kind == CodeKind.PICKUP and state == OrderState.LOADED:
            purpose = Purpose.PICKUP
        elif kind == CodeKind.DEPOSIT and state == OrderState.LOADED:
            tx.audit(now, method.value, "deposit_code_reused", order_id)
            return CodeResult(
                EntryOutcome.REFUSED,
                "this order is already loaded",
                order_id=order_id,
                reason="already_loaded",
            ), False
        else:  # a live code always belongs to one of the states above
            return CodeResult(
                EntryOutcome.REFUSED, "this code cannot be used now", reason="not_now"
            ), False
        numbers = repo.unclosed_numbers(tx, order.pk)
        boards = {self.compartments[n].board for n in numbers}
        offline = sorted(b for b in boards if not self.online.get(b, True))
        if offline:
            tx.audit(
                now,
                method.value,
                f"{purpose.value}_refused",
                order_id,
                detail=f"board offline: {','.join(offline)}",
            )
            return CodeResult(
                EntryOutcome.DOOR_FAILED,
                "the door cannot be opened right now; please go to the service desk",
                purpose=purpose.value,
                order_id=order_id,
            ), False
        active = repo.active_opening_numbers(tx, order.pk)
        if active is not None:
            return CodeResult(
                EntryOutcome.OPENED,
                ALREADY_OPEN,
                purpose=purpose.value,
                order_id=order_id,
                compartments=tuple(active),
            ), False
        tx.audit(
            now,
            method.value,
            f"{purpose.value}_code",
            order_id,
            detail="compartments=" + ",".join(map(str, numbers)),
        )
        request = OpenRequest(purpose, tuple(numbers), method.value, method.value, order.pk)
        self.openings.open(tx, request)
        return CodeResult(
            EntryOutcome.OPENED,
            "compartment " + ", ".join(map(str, numbers)) + " is open",
            purpose=purpose.value,
            order_id=order_id,
            compartments=tuple(numbers),
        ), True

    def throttle_state(self, tx: Transaction, terminal: str) -> ThrottleState:
        return repo.throttle(tx, terminal)

    def save_throttle(self, tx: Transaction, terminal: str, state: ThrottleState) -> None:
        repo.save_throttle(tx, terminal, state)

    def budget_state(self, tx: Transaction) -> BudgetState:
        # The daily budget lives in the throttle table's "locker" row, so it survives a
        # restart like a terminal's: failures = spent, locked_until = the day's end.
        state = self.throttle_state(tx, LOCKER)
        return BudgetState(state.failures, state.locked_until, state.last_failure_at)

    def _save_budget(self, tx: Transaction, state: BudgetState) -> None:
        self.save_throttle(tx, LOCKER, ThrottleState(state.spent, state.day_ends_at, state.last_at))

    def check_pin(self, pin: str, stored: str | None) -> CodeResult | None:
        """None when the technician PIN is right; else what the screen should say.

        The PIN has its own terminal with the same short, capped waits: codes entered
        anywhere never make it wait, and PIN failures never spend the codes' budget."""
        terminal = TECHNICIAN
        now, steady = self.clock.now(), self.clock.steady()
        with self.store.transaction() as tx:
            state = self.throttle_state(tx, terminal)
            wait = wait_s(state, steady)
            if wait > 0:
                return _waiting(wait, "PINs")
            if stored is None:
                tx.audit(now, terminal, "pin_refused", detail="no technician PIN set")
                return CodeResult(
                    EntryOutcome.REFUSED, "no technician PIN is set (lockerctl set-pin)"
                )
            if not check_pin(pin, stored):
                return self._wrong(tx, terminal, state, now, steady, "wrong PIN")
            self.save_throttle(tx, terminal, record_success(state))
            return None

    def _not_a_code(
        self, tx: Transaction, terminal: str, now: float, steady: float, exc: CodeFormatError
    ) -> CodeResult:
        key = f"{terminal}:not_a_code"
        state = self.throttle_state(tx, key)
        wait = wait_s(state, steady)
        if wait > 0:
            return _waiting(wait, "inputs")
        new_state, locked_for = record_failure(state, steady, self.not_a_code)
        self.save_throttle(tx, key, new_state)
        # A flood of junk must not grow the audit log without bound: one row a minute
        # per terminal, with how many came in a row.
        if not repo.audited_since(tx, "code_rejected", now - NOT_A_CODE_AUDIT_S, terminal):
            tx.audit(
                now,
                terminal,
                "code_rejected",
                detail=f"{exc} ({new_state.failures} such inputs in a row)",
            )
        if locked_for:
            return CodeResult(
                EntryOutcome.THROTTLED,
                f"{exc}; too many inputs that are not a code, try again in {int(locked_for)} s",
                wait_s=locked_for,
            )
        return CodeResult(EntryOutcome.REFUSED, str(exc), reason=exc.reason)

    def _wrong(
        self,
        tx: Transaction,
        terminal: str,
        state: ThrottleState,
        now: float,
        steady: float,
        why: str,
        reason: str | None = None,
        detail: str | None = None,
    ) -> CodeResult:
        new_state, locked_for = record_failure(state, steady, self.policy)
        self.save_throttle(tx, terminal, new_state)
        tx.audit(now, terminal, "wrong_code", detail=detail or why)
        if locked_for and new_state.failures == self.policy.free_attempts + 1:
            # Told once per run of failures: the waits are short and come often, the
            # daily budget's alarm is the one that says an attack is under way.
            self._alarm(tx, terminal, now, new_state.failures, locked_for)
        if terminal != TECHNICIAN:
            budget, locker_wait = spend(self.budget_state(tx), steady, self.budget)
            self._save_budget(tx, budget)
            if locker_wait:
                # Spent: every shopper terminal now waits after each further wrong code,
                # and staff are called (the staff screen keeps its own short waits).
                self._alarm(tx, LOCKER, now, budget.spent, locker_wait)
                if terminal != STAFF:
                    locked_for = max(locked_for, locker_wait)
        if locked_for:
            return CodeResult(
                EntryOutcome.THROTTLED,
                f"{why}; too many wrong codes, try again in {int(locked_for + 0.999)} s",
                wait_s=locked_for,
            )
        left = attempts_left(new_state, steady, self.policy)
        return CodeResult(
            EntryOutcome.WRONG, f"{why}; {left} attempts left", attempts_left=left, reason=reason
        )

    def _alarm(
        self, tx: Transaction, terminal: str, now: float, failures: int, locked_for: float
    ) -> None:
        """`code_attempts_throttled` to the platform and the audit's alarms; terminal
        "locker" when the daily budget is spent."""
        scope = "wrong codes today" if terminal == LOCKER else "failures"
        tx.audit(
            now,
            terminal,
            "code_attempts_throttled",
            detail=f"{failures} {scope}, locked {int(locked_for + 0.999)} s",
        )
        tx.emit(
            "code_attempts_throttled",
            {
                "failures": failures,
                "locked_for_s": int(locked_for + 0.999),
                "terminal": terminal,
            },
            now,
        )


def _waiting(wait: float, what: str) -> CodeResult:
    message = f"too many wrong {what}; try again in {int(wait + 0.999)} s"
    return CodeResult(EntryOutcome.THROTTLED, message, wait_s=wait)
