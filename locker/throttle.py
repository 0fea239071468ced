"""Throttling of wrong codes: per terminal, and against a locker-wide daily budget.

Pure functions over small state records that the service stores, so the
throttle survives a restart (power-cycling the cabinet must not reset it).

Per terminal (keypad, scanner, camera, the staff screen, the technician PIN):
a few wrong codes are free; after that every wrong code makes the terminal
wait, doubling up to a cap of seconds, not minutes, so that no one can keep a
terminal closed to the next customer for long. A long quiet spell forgives the
past failures; only an entry that starts a new opening resets the terminal
(a code that opens nothing proves nothing, and resetting on it let guessing run
at machine speed).

The short waits alone would still allow thousands of guesses a day, so every
wrong code evaluated at any code terminal is also counted against the
locker's daily budget. Once it is spent, each further wrong code makes every
shopper terminal wait long, and the platform and the maintenance screen are
told (an attack is under way: staff take over). The staff screen and the
technician PIN have their own terminals, which shopper failures never touch.

The throttle is per terminal, never per order: a guesser cannot lock a
customer out of their own order.

Time: the times given here are meant to be `Clock.steady()` readings, which a step of
the wall clock does not move. The functions also stay sensible when the time they are
given jumps (a restart after a step, or a caller passing wall time; docs/time.md).
Times before the last failure mean the clock went back: how long ago that failure
really was is then unknown, so a wait in progress ends (at most one wait is lost; a
wait frozen until the clock catches up again could last a day), while the failures and
the budget spent are kept. A day of the budget is never reset by time going back and
never lasts more than a day from the time given.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottlePolicy:
    free_attempts: int = 5
    base_s: float = 30.0
    max_s: float = 60.0
    reset_s: float = 900.0


@dataclass(frozen=True)
class ThrottleState:
    failures: int = 0
    locked_until: float = 0.0
    last_failure_at: float = 0.0


def wait_s(state: ThrottleState, now: float) -> float:
    """Seconds the terminal must still wait before a code is looked at (0 = go ahead)."""
    if now < state.last_failure_at:
        return 0.0  # the clock went back (module docstring): not a wait of hours
    return max(0.0, state.locked_until - now)


def _current(state: ThrottleState, now: float, policy: ThrottlePolicy) -> ThrottleState:
    # A long quiet spell after the last lock ends forgives the past failures.
    quiet_since = max(state.last_failure_at, state.locked_until)
    if state.failures and now - quiet_since >= policy.reset_s:
        return ThrottleState()
    return state


def record_failure(
    state: ThrottleState, now: float, policy: ThrottlePolicy
) -> tuple[ThrottleState, float]:
    """Count one wrong code. Returns the new state and the lock it starts (0 = none)."""
    state = _current(state, now, policy)
    failures = state.failures + 1
    over = failures - policy.free_attempts
    if over <= 0:
        return ThrottleState(failures, state.locked_until, now), 0.0
    locked_for = min(policy.max_s, policy.base_s * 2 ** min(over - 1, 30))
    return ThrottleState(failures, now + locked_for, now), locked_for


def record_success(state: ThrottleState) -> ThrottleState:
    """An entry that started a new opening (or a right PIN) resets the terminal."""
    return ThrottleState()


def attempts_left(state: ThrottleState, now: float, policy: ThrottlePolicy) -> int:
    """Wrong codes still free before the next lock (for the screen's message)."""
    state = _current(state, now, policy)
    return max(0, policy.free_attempts - state.failures)


@dataclass(frozen=True)
class BudgetPolicy:
    """How many wrong codes the whole locker evaluates in a day before it slows down."""

    per_day: int = 200
    wait_s: float = 900.0  # every shopper terminal's wait after each wrong code beyond it
    day_s: float = 86400.0


@dataclass(frozen=True)
class BudgetState:
    spent: int = 0  # wrong codes evaluated since the day began
    day_ends_at: float = 0.0  # the day starts at the first wrong code after the last one
    last_at: float = 0.0


def _day_end(state: BudgetState, now: float, policy: BudgetPolicy) -> float:
    # Time going back (a clock booted ahead and corrected) must not reset the budget, nor
    # stretch its day: the day ends at most one day after the time given.
    return min(state.day_ends_at, now + policy.day_s)


def budget_wait_s(state: BudgetState, now: float, policy: BudgetPolicy) -> float:
    """Seconds every shopper terminal must still wait (0 = the budget allows a code)."""
    day_ends_at = _day_end(state, now, policy)
    if now >= day_ends_at or state.spent < policy.per_day or now < state.last_at:
        return 0.0  # a new day, budget left, or the clock went back (module docstring)
    return max(0.0, min(state.last_at + policy.wait_s, day_ends_at) - now)


def spend(state: BudgetState, now: float, policy: BudgetPolicy) -> tuple[BudgetState, float]:
    """Count one evaluated wrong code against the day's budget. Returns the new state and
    the locker-wide wait it starts (0 = budget left)."""
    day_ends_at = _day_end(state, now, policy)
    if now >= day_ends_at:
        state, day_ends_at = BudgetState(0, now + policy.day_s, now), now + policy.day_s
    new = BudgetState(state.spent + 1, day_ends_at, now)
    return new, budget_wait_s(new, now, policy)
