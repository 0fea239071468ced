"""Wrong-code throttle: free tries, growing lock, cap, reset by success or by time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from locker.throttle import (
    ThrottlePolicy,
    ThrottleState,
    attempts_left,
    record_failure,
    record_success,
    wait_s,
)

P = ThrottlePolicy(free_attempts=3, base_s=30, max_s=900, reset_s=900)


def fail_n(n: int, now: float = 0.0) -> tuple[ThrottleState, list[float]]:
    state, locks = ThrottleState(), []
    for _ in range(n):
        state, locked = record_failure(state, now, P)
        locks.append(locked)
        now = max(now, state.locked_until)  # the next try comes when the wait is over
    return state, locks


def test_free_attempts_then_doubling_up_to_the_cap() -> None:
    _, locks = fail_n(10)
    assert locks == [0, 0, 0, 30, 60, 120, 240, 480, 900, 900]


def test_wait_counts_down() -> None:
    state, _ = fail_n(4)
    start = state.last_failure_at
    assert wait_s(state, start) == 30
    assert wait_s(state, start + 10) == 20
    assert wait_s(state, start + 31) == 0


def test_success_resets() -> None:
    state, _ = fail_n(5)
    state = record_success(state)
    assert state == ThrottleState()
    assert attempts_left(state, 0, P) == 3


def test_quiet_time_resets() -> None:
    state, _ = fail_n(5)
    quiet = state.locked_until + P.reset_s
    assert attempts_left(state, quiet - 1, P) == 0
    assert attempts_left(state, quiet, P) == 3
    state, locked = record_failure(state, quiet, P)
    assert locked == 0 and state.failures == 1


@given(st.lists(st.floats(min_value=0, max_value=5000), min_size=1, max_size=40))
def test_lock_never_exceeds_cap_and_never_shrinks_without_reset(gaps: list[float]) -> None:
    state, now, last = ThrottleState(), 0.0, 0.0
    for gap in gaps:
        now += gap
        before = state
        state, locked = record_failure(state, now, P)
        assert 0 <= locked <= P.max_s
        reset = now - max(before.last_failure_at, before.locked_until) >= P.reset_s
        if locked and not reset and last:
            assert locked >= min(last, P.max_s)
        last = locked if locked else (0.0 if reset else last)
