"""Throttling of wrong codes per terminal (keypad, scanner, camera).

Pure functions over a small state record that the service stores, so the
throttle survives a restart (power-cycling the cabinet must not reset it).
A few wrong codes are free; after that every wrong code locks the terminal for
a wait that doubles up to a cap. A right code or a long quiet spell resets it.
The throttle is per terminal, never per order: a guesser cannot lock a
customer out of their own order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottlePolicy:
    free_attempts: int = 5
    base_s: float = 30.0
    max_s: float = 900.0
    reset_s: float = 900.0


@dataclass(frozen=True)
class ThrottleState:
    failures: int = 0
    locked_until: float = 0.0
    last_failure_at: float = 0.0


def wait_s(state: ThrottleState, now: float) -> float:
    """Seconds the terminal must still wait before a code is looked at (0 = go ahead)."""
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
    """A right code resets the terminal."""
    return ThrottleState()


def attempts_left(state: ThrottleState, now: float, policy: ThrottlePolicy) -> int:
    """Wrong codes still free before the next lock (for the screen's message)."""
    state = _current(state, now, policy)
    return max(0, policy.free_attempts - state.failures)
