"""Wrong-code throttle: free tries, growing lock, cap, reset by success or by time; the
locker's daily budget: spent, then a long wait after each further wrong code, whole again
the next day."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from locker.config import MAX_TERMINAL_WAIT_S
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


def test_default_waits_are_seconds_not_minutes() -> None:
    state, locks = ThrottleState(), list[float]()
    for _ in range(20):
        state, locked = record_failure(state, state.locked_until, ThrottlePolicy())
        locks.append(locked)
    assert max(locks) == ThrottlePolicy().max_s == 60 <= MAX_TERMINAL_WAIT_S


B = BudgetPolicy(per_day=3, wait_s=900, day_s=86400)


def test_budget_spent_then_each_wrong_code_waits_long() -> None:
    state, waits = BudgetState(), []
    for t in (0, 10, 20, 30):
        state, wait = spend(state, t, B)
        waits.append(wait)
    assert waits == [0, 0, 900, 900]  # the third is the last the day allows
    assert budget_wait_s(state, 30 + 899, B) == 1
    assert budget_wait_s(state, 30 + 900, B) == 0
    assert state.spent == 4


def test_budget_is_whole_again_the_next_day() -> None:
    state = BudgetState()
    for t in (0, 1, 2):
        state, _ = spend(state, t, B)
    assert budget_wait_s(state, 102, B) == 800
    assert budget_wait_s(state, 86400, B) == 0  # the day is over, so is its wait
    state, wait = spend(state, 86400, B)
    assert (state.spent, wait, state.day_ends_at) == (1, 0, 2 * 86400)


@given(st.lists(st.floats(min_value=0, max_value=4000), min_size=1, max_size=200))
def test_budget_never_allows_more_than_its_day_plus_one_per_wait(gaps: list[float]) -> None:
    """However the tries are spread, wrong codes evaluated in one day (the budget's) stay
    within the budget plus one for every long wait that could end in it."""
    state, now, evaluated = BudgetState(), 0.0, 0
    for gap in gaps:
        now += gap
        if now >= B.day_s:
            break
        if budget_wait_s(state, now, B) > 0:
            continue
        state, _ = spend(state, now, B)
        evaluated += 1
    assert evaluated <= B.per_day + B.day_s / B.wait_s
