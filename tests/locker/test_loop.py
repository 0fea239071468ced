"""The daemon loop: posted work, board polls with backoff, and survival of a failing job."""

from __future__ import annotations

import logging
import threading

import pytest
from conftest import Locker

from locker.events import Committed
from locker.model import Method


def count_reads(locker: Locker) -> list[int]:
    """Count the board's reads from now on (one slot list, read by the test)."""
    reads = [0]
    real = locker.board.read_doors

    def counting() -> object:
        reads[0] += 1
        return real()

    locker.board.read_doors = counting  # type: ignore[method-assign]
    return reads


def test_work_posted_from_another_thread_runs_on_the_loop(locker: Locker) -> None:
    seen: list[str] = []
    t = threading.Thread(
        target=lambda: locker.loop.post(lambda: seen.append(threading.current_thread().name))
    )
    t.start()
    t.join()
    locker.loop.run_once(0.0)
    assert seen == [threading.current_thread().name]


def test_a_failing_job_is_logged_and_the_loop_carries_on(
    locker: Locker, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("bug in a handler")

    results = []
    locker.loop.post(broken)
    locker.loop.post(lambda: results.append(locker.service.enter_code("123", Method.KEYPAD)))
    with caplog.at_level(logging.ERROR):
        locker.loop.run_once(0.0)
    assert "bug in a handler" in caplog.text
    assert results and results[0].outcome == "wrong"


def test_a_dead_board_is_polled_with_capped_backoff(locker: Locker) -> None:
    locker.board.offline = True
    locker.clock.advance(0.1)
    locker.loop.poll_boards()
    assert len(locker.events("fault")) == 1
    reads = count_reads(locker)
    for _ in range(100):  # ten seconds of 100 ms turns
        locker.clock.advance(0.1)
        locker.loop.poll_boards()
    assert 5 <= reads[0] <= 15  # backing off (not 100 reads), but never more than 2 s apart
    locker.board.offline = False
    locker.clock.advance(2.0)
    locker.loop.poll_boards()
    assert len(locker.events("fault_cleared")) == 1


def test_a_board_is_read_quickly_while_an_unlock_awaits_its_door(locker: Locker) -> None:
    reads = count_reads(locker)
    locker.clock.advance(0.02)
    locker.loop.poll_boards()
    assert reads[0] == 0  # at rest: every poll_ms (100 ms)
    locker.board.jammed.add(5)  # the door will not open: the unlock stays unconfirmed
    assert locker.command("open", compartment=5, reason="r", operator="o") is None
    for _ in range(5):
        locker.clock.advance(0.02)
        locker.loop.poll_boards()
    assert reads[0] == 5  # every 20 ms while confirming


def test_a_flood_of_posted_work_never_keeps_the_loop_from_the_doors(locker: Locker) -> None:
    """5,000 commands queued at once (a burst from the broker, a backlog after a restart):
    a door forced in the middle of them is seen while most are still waiting."""
    from locker.loop import MAX_JOBS_PER_TURN

    done = [0]
    seen_at: list[int] = []

    def command(i: int) -> None:
        locker.command("extend", order_id=f"SO-{i}", pickup_until="2030-01-01T00:00:00Z")
        done[0] += 1
        if done[0] == 100:
            locker.board.open_door(7)  # forced: no command asked for it

    def watch(commit: Committed) -> None:
        if "door_alarm" in commit.event_types and not seen_at:
            seen_at.append(done[0])

    locker.store.hub.committed.subscribe(watch)
    total = 5_000
    # The broker's side: posts as fast as the loop takes them (waiting when the queue is
    # full), as paho's thread would.
    producer = threading.Thread(
        target=lambda: [locker.loop.post(lambda i=i: command(i)) for i in range(total)]
    )
    producer.start()
    while producer.is_alive() or locker.loop.backlog:
        locker.clock.advance(0.1)  # every turn finds the board due for a poll
        locker.loop.run_once(0.01)
    producer.join()
    assert done[0] == total
    [alarm] = locker.events("door_alarm")
    assert alarm.fields["kind"] == "forced" and alarm.fields["compartment"] == 7
    # Seen within a turn of the forcing, not after the whole backlog.
    assert seen_at and seen_at[0] <= 100 + MAX_JOBS_PER_TURN < total // 10


def test_a_code_at_the_cabinet_goes_ahead_of_the_platforms_backlog(locker: Locker) -> None:
    ran: list[str] = []
    for _ in range(1_000):
        locker.loop.post(lambda: ran.append("command"))
    locker.loop.post_urgent(lambda: ran.append("code at the screen"))
    locker.loop.run_once(0.0)
    assert ran[0] == "code at the screen"
    while locker.loop.backlog:
        locker.loop.run_once(0.0)
    assert ran.count("command") == 1_000  # and nothing of the backlog is lost


def test_a_board_that_hangs_never_holds_up_the_loop(locker: Locker) -> None:
    """Board I/O runs in the board's own thread: while a read hangs on a dead bus, the loop
    keeps taking work (codes, commands, API requests)."""
    from locker.loop import Loop

    release = threading.Event()
    reading = threading.Event()

    class HangingBoard:
        name = "b0"

        def read_doors(self) -> dict[int, bool]:
            reading.set()
            release.wait(5)  # a read stuck in timeouts and retries
            reading.clear()
            return {}

        def unlock(self, channel: int) -> None:
            raise AssertionError("no unlock in this test")

        def close(self) -> None:
            pass

    loop = Loop(locker.service, {"b0": HangingBoard()}, workers=True)
    try:
        loop.run_once(0.0)  # hands the first read to the board's thread
        assert reading.wait(10)
        during_read: list[bool] = []
        loop.post(lambda: during_read.append(reading.is_set()))
        loop.run_once(0.0)
        assert during_read == [True]  # served while the read still hangs
    finally:
        release.set()
        loop.close()
