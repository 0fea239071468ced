"""Each board's errors over the last hour, as the maintenance screen shows them."""

from __future__ import annotations

from locker.health import HOUR_S, ErrorHistory


def test_errors_in_the_last_hour_count_from_the_count_an_hour_ago() -> None:
    history = ErrorHistory()
    assert history.recent("a", 5, 0.0) == 0  # before the first reading nothing is known
    assert history.recent("a", 7, 600.0) == 2
    assert history.recent("a", 7, HOUR_S) == 2
    # An hour after the two errors, they have left the window.
    assert history.recent("a", 7, 600.0 + HOUR_S) == 0
    assert history.recent("a", 8, 700.0 + HOUR_S) == 1
    assert history.recent("b", 0, 700.0 + HOUR_S) == 0  # each board its own


def test_a_board_that_never_fails_keeps_one_reading() -> None:
    history = ErrorHistory()
    for second in range(0, 10 * int(HOUR_S), 10):
        assert history.recent("a", 3, float(second)) == 0
    assert len(history.readings["a"]) == 1
