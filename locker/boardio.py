"""Board I/O off the loop: each board's requests run in a thread of its own.

A serial exchange sleeps for its silent gap and waits for its reply, with timeouts and
retries when the board is gone; on the loop, a dead board would delay every code,
command and API request behind it. Here the loop only hands a request over and goes on;
the result comes back as posted work. One request at a time per board (boards sharing
a bus are serialised by the bus itself), an unlock always before a waiting read, and at
most one read waiting: a board that is slow is polled less, never queued up.

The safety order is unchanged: an unlock is handed over only after its intent has
committed (it is after-commit work), and nothing here retries it.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping

from locker.boards import Board, BoardError

log = logging.getLogger(__name__)

Post = Callable[[Callable[[], None]], None]
ReadDone = Callable[[Mapping[int, bool] | BoardError], None]
UnlockFailed = Callable[[BoardError], None]


class BoardWorker:
    """One board's thread: takes unlocks and reads from the loop, posts results back."""

    def __init__(self, board: Board, post: Post) -> None:
        self.board = board
        self.post = post
        self._cv = threading.Condition()
        self._unlocks: deque[tuple[int, UnlockFailed]] = deque()
        self._read: ReadDone | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"board-{board.name}", daemon=True)
        self._thread.start()

    def unlock(self, channel: int, failed: UnlockFailed) -> None:
        """Send an unlock pulse (before any read); `failed` runs on the loop if it fails."""
        with self._cv:
            self._unlocks.append((channel, failed))
            self._cv.notify()
        # Not a wait: the GIL let go for a moment (sched_yield releases it), so that the
        # woken worker puts the frame on the wire now instead of after the rest of the
        # loop's turn (0.2 to 0.4 ms of Python that holds the GIL: the commit's
        # follow-ups, the broker's ack, the tick).
        os.sched_yield()

    def read(self, done: ReadDone) -> None:
        """Read the doors; `done` runs on the loop with the readings or the error."""
        with self._cv:
            self._read = done
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self._unlocks and self._read is None:
                    self._cv.wait()
                if self._stop:
                    return
                if self._unlocks:
                    channel, failed = self._unlocks.popleft()
                    read = None
                else:
                    read, self._read = self._read, None
            if read is None:
                self._unlock(channel, failed)
            else:
                self._poll(read)

    def _unlock(self, channel: int, failed: UnlockFailed) -> None:
        try:
            self.board.unlock(channel)
        except BoardError as exc:
            self.post(functools.partial(failed, exc))
        except Exception as exc:  # a driver bug must not end the board's thread
            log.exception("unlock on board %s failed", self.board.name)
            self.post(
                functools.partial(failed, BoardError(self.board.name, f"driver error: {exc}"))
            )

    def _poll(self, done: ReadDone) -> None:
        result: Mapping[int, bool] | BoardError
        try:
            result = self.board.read_doors()
        except BoardError as exc:
            result = exc
        except Exception as exc:  # a driver bug must not end the board's thread
            log.exception("reading board %s failed", self.board.name)
            result = BoardError(self.board.name, f"driver error: {exc}")
        self.post(functools.partial(done, result))
