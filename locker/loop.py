"""The daemon's single loop: the only thread that touches the service.

Other threads (the MQTT client, the local API, the scanner) never call the
service directly; they `post` work here. The loop polls every board every
`[doors] poll_ms`, hands the readings to the service, fires timers, and keeps
trying a board that stopped answering with a capped backoff.

Work per turn is bounded (a count and a time budget), so a flood of commands
never keeps the loop from reading the doors or pinging the watchdog. Posting
never blocks (paho calls back holding its own locks, and the loop publishes
through the same client: a post that waited could deadlock the two); instead
every producer is bounded where it starts: the broker hands the MQTT link at
most `RECEIVE_MAXIMUM` unacknowledged commands, events in flight are a window,
each local API connection has one request in flight and connections are capped.
Work for a person in front of the cabinet (a code at the screen or the scanner, a
maintenance request) is posted as urgent and runs before the platform's backlog:
a flood of commands must not make a shopper wait for their door.
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from locker.boardio import BoardWorker
from locker.boards import Board, BoardError
from locker.events import LoopTurn, UnlockSent
from locker.sdnotify import Notifier, watchdog_interval_s
from locker.service import Service

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BACKOFF_S = 2.0
# While an unlock waits to be confirmed by its door sensor, its board is read this
# often: the confirmation (and the remote open's reply) should not wait a whole poll.
CONFIRM_POLL_S = 0.02
# At most this much posted work between two looks at the doors and the watchdog: a
# command is a transaction with an fsync (about a millisecond on an SD card, more on a
# bad one), and the time budget caps a turn whatever each job costs.
MAX_JOBS_PER_TURN = 64
MAX_TURN_WORK_S = 0.05
URGENT, NORMAL = 0, 1


def call_on(post: Callable[[Callable[[], None]], None], fn: Callable[[], T], timeout: float) -> T:
    """Run `fn` on the loop through `post` and wait for its result; what it raises is
    raised again in the caller's thread. For threads other than the loop's."""
    future: Future[T] = Future()

    def job() -> None:
        try:
            future.set_result(fn())
        except Exception as exc:  # handed to the waiting thread, not lost on the loop
            future.set_exception(exc)

    post(job)
    return future.result(timeout)


@dataclass
class _BoardPoll:
    board: Board
    last: float = -1e9  # when it was last read
    backoff_until: float = 0.0
    failures: int = 0
    worker: BoardWorker | None = None  # the board's I/O thread (None: read on the loop)
    reading: bool = False  # a read handed to the worker has not come back yet


class Loop:
    """Runs the locker: work from other threads, board polls and timers, in one thread."""

    def __init__(
        self, service: Service, boards: Mapping[str, Board], workers: bool = False
    ) -> None:
        """`workers`: each board's I/O in a thread of its own (the daemon); without, the
        loop reads the boards itself (tests that move a fake clock turn by turn)."""
        self.service = service
        self.poll_s = service.config.doors.poll_ms / 1000
        self._polls = [
            # The doors' results go ahead of the platform's backlog, like a shopper's code.
            _BoardPoll(b, worker=BoardWorker(b, self.post_urgent) if workers else None)
            for b in boards.values()
        ]
        # (priority, order, job): urgent work first, first come first served within each.
        self._work: queue.PriorityQueue[tuple[int, int, Callable[[], None]]] = queue.PriorityQueue()
        self._order = itertools.count()
        self.max_backlog = 0  # the deepest the queue has been, for health and benches
        self._stop = False
        self._by_name = {p.board.name: p for p in self._polls}
        self._watchdog = watchdog_interval_s()
        self._watchdog_due = 0.0
        self.notifier = Notifier()

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the loop thread (safe to call from any thread, never blocks)."""
        self._work.put((NORMAL, next(self._order), fn))

    def post_urgent(self, fn: Callable[[], None]) -> None:
        """Like `post`, ahead of all normal work (someone is waiting at the cabinet)."""
        self._work.put((URGENT, next(self._order), fn))

    def stop(self) -> None:
        """Stop after the current turn (safe from a signal handler or any thread)."""
        self._stop = True
        self.post(lambda: None)  # wake a turn waiting for work

    def _take(self, timeout: float) -> Callable[[], None] | None:
        try:
            if timeout > 0:
                return self._work.get(timeout=timeout)[2]
            return self._work.get_nowait()[2]
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop the boards' I/O threads (before the boards themselves are closed)."""
        for p in self._polls:
            if p.worker is not None:
                p.worker.close()

    def unlock_on_worker(
        self, board: str, channel: int, failed: Callable[[BoardError], None]
    ) -> bool:
        """Send an unlock pulse from the board's own I/O thread (with `workers`)."""
        worker = self._by_name[board].worker
        assert worker is not None
        worker.unlock(channel, failed)
        return True

    def expedite(self, sent: UnlockSent) -> None:
        """Read this board at the next turn: an unlock pulse just went out."""
        p = self._by_name.get(sent.board)
        if p is not None and not p.failures:
            p.last = -1e9

    def _due(self, p: _BoardPoll, confirming: set[str]) -> float:
        if p.reading:
            return float("inf")  # its result will wake the loop
        if p.failures:
            return p.backoff_until
        interval = CONFIRM_POLL_S if p.board.name in confirming else self.poll_s
        return p.last + min(interval, self.poll_s)

    def next_due(self) -> float:
        """When the next board read is due (monotonic time)."""
        confirming = self.service.openings.boards_confirming()
        return min((self._due(p, confirming) for p in self._polls), default=float("inf"))

    def poll_boards(self, force: bool = False) -> None:
        """Read every board whose poll is due (every board with `force`)."""
        now = self.service.clock.monotonic()
        confirming = self.service.openings.boards_confirming()
        for p in self._polls:
            if now < self._due(p, confirming) and not force:
                continue
            if p.reading:
                continue
            p.last = now
            if p.worker is not None:
                p.reading = True
                p.worker.read(functools.partial(self._read_done, p))
                continue
            result: Mapping[int, bool] | BoardError
            try:
                result = p.board.read_doors()
            except BoardError as exc:
                result = exc
            self._read_done(p, result)

    def _read_done(self, p: _BoardPoll, result: Mapping[int, bool] | BoardError) -> None:
        p.reading = False
        if isinstance(result, BoardError):
            p.failures += 1
            # Capped backoff: a dead bus is not hammered, a revived one is seen quickly.
            p.backoff_until = p.last + min(MAX_BACKOFF_S, self.poll_s * 2 ** min(p.failures, 6))
            self.service.doors_unread(p.board.name, result)
            return
        p.failures = 0
        self.service.doors_read(p.board.name, result)

    def run_once(self, timeout: float) -> None:
        """One turn: pending work (bounded), due polls, timers, the watchdog; waits at most
        `timeout` for work."""
        self.max_backlog = max(self.max_backlog, self._work.qsize())
        fn = self._take(max(0.0, timeout))
        # Real time for the budget, like the watchdog: it is about this process keeping
        # its rhythm, not about the locker's clock.
        budget_end = time.monotonic() + MAX_TURN_WORK_S
        ran = 0
        while fn is not None:
            self._run(fn)
            ran += 1
            if ran >= MAX_JOBS_PER_TURN or time.monotonic() >= budget_end:
                break
            fn = self._take(0)
        self.poll_boards()
        self.service.tick()
        # Periodic work of adapters (the platform link's state and heartbeat).
        self.service.hub.loop_turn.publish(LoopTurn(self.service.clock.monotonic()))
        if self._watchdog is not None and time.monotonic() >= self._watchdog_due:
            self.notifier.notify("WATCHDOG=1")
            self._watchdog_due = time.monotonic() + self._watchdog

    @property
    def backlog(self) -> int:
        """Posted work not yet run."""
        return self._work.qsize()

    def _run(self, fn: Callable[[], None]) -> None:
        # Work comes from outside (a command, a scanned line). A bug it trips must not
        # stop the loop that watches every door: log it with its traceback and go on.
        # The failed job's transaction was rolled back, so no half change remains.
        try:
            fn()
        except Exception:
            log.exception("job %r failed; the locker carries on", fn)

    def run_forever(self) -> None:
        self.notifier.notify("READY=1")
        clock = self.service.clock
        while not self._stop:
            wait = 0.0 if self.backlog else min(self.next_due() - clock.monotonic(), self.poll_s)
            self.run_once(max(0.0, wait))
        self.notifier.notify("STOPPING=1")
        self.notifier.close()
