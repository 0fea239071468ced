"""A crash loop never strands an order: an unfinished unlock intent resolves on the
deadline stored with it, however often the process restarts before it.

Each run here is a new service over the same SQLite file (what a restart under
`Restart=always` leaves), living less than `open_confirm_s`; time is moved, never slept,
and the proof counts restarts instead of measuring seconds.
"""

from __future__ import annotations

from pathlib import Path

from conftest import Locker, start_locker

from locker.clock import FakeClock
from locker.entry import ALREADY_OPEN
from locker.model import Method

CONFIRM_S = 3.0  # the example configuration's [doors] open_confirm_s
RUN_S = CONFIRM_S / 3 - 0.1  # each run dies this long after it started
RUNS = 12  # four times as long as the deadline, in all


def crash_loop(tmp_path: Path, lk: Locker, done: object, new_clock: bool = False) -> int:
    """Kill and restart the locker until `done(locker)` holds; the number of restarts."""
    for restarts in range(1, RUNS + 1):
        lk.store.close()
        clock = FakeClock(lk.clock.now()) if new_clock else lk.clock
        lk = start_locker(tmp_path, clock)  # its first poll: the door shows closed
        lk.advance(RUN_S)
        if done(lk):  # type: ignore[operator]
            lk.store.close()
            return restarts
    lk.store.close()
    return RUNS + 1


def test_a_deposit_code_works_again_in_a_crash_loop(tmp_path: Path) -> None:
    lk = start_locker(tmp_path, FakeClock())
    code = lk.reserve()["result"]["deposit_code"]
    lk.service.enter_code(code, Method.SCANNER)  # committed; the process dies at once

    def code_opens(run: Locker) -> bool:
        result = run.service.enter_code(code, Method.SCANNER)
        return result.message != ALREADY_OPEN and run.board.unlocks != []

    restarts = crash_loop(tmp_path, lk, code_opens)
    # resolved on the stored deadline, in the run that passes it, not RUN_S after it
    assert restarts == int(CONFIRM_S // RUN_S) + 1


def test_a_remote_open_is_answered_in_a_crash_loop(tmp_path: Path) -> None:
    lk = start_locker(tmp_path, FakeClock())
    lk.command("open", compartment=5, reason="stuck", operator="cs-1")

    def answered(run: Locker) -> bool:
        stored = run.store.stored_reply("c-1")
        return stored is not None and stored[1] is not None

    assert crash_loop(tmp_path, lk, answered) == int(CONFIRM_S // RUN_S) + 1


def test_a_clock_stepped_back_between_runs_delays_the_deadline_once_at_most(
    tmp_path: Path,
) -> None:
    lk = start_locker(tmp_path, FakeClock())
    code = lk.reserve()["result"]["deposit_code"]
    lk.service.enter_code(code, Method.SCANNER)
    lk.store.close()
    # The next run boots with a clock an hour behind (no battery clock): the stored
    # deadline lies an hour ahead of it and is cut to open_confirm_s from that start.
    lk = start_locker(tmp_path, FakeClock(lk.clock.now() - 3600))

    def code_opens(run: Locker) -> bool:
        result = run.service.enter_code(code, Method.SCANNER)
        return result.message != ALREADY_OPEN and run.board.unlocks != []

    # every later run is a new process whose steady time starts at its wall clock
    assert crash_loop(tmp_path, lk, code_opens, new_clock=True) <= int(CONFIRM_S // RUN_S) + 1
