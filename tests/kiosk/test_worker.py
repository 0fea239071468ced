"""The request worker without a window: replies and failures come back through `deliver`,
in order, and nothing is delivered once it is stopped."""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path

from test_kiosk_slow_daemon import SlowLockerd

from kiosk_ui.client import ApiClient, ApiUnavailable
from kiosk_ui.worker import Failure, RequestWorker, Result

Delivered = queue.SimpleQueue[Callable[[], None]]


def started(path: Path) -> tuple[RequestWorker, Delivered]:
    """A worker whose deliveries wait in a queue, as Kivy's clock holds them for a frame."""
    delivered: Delivered = queue.SimpleQueue()
    worker = RequestWorker(ApiClient(str(path), timeout_s=5), delivered.put)
    worker.start()
    return worker, delivered


def test_replies_come_back_in_order_through_deliver(tmp_path: Path) -> None:
    lockerd = SlowLockerd(tmp_path / "api.sock")
    worker, delivered = started(lockerd.path)
    seen: list[tuple[str, Result | Failure]] = []
    try:
        worker.request("health", lambda r: seen.append(("health", r)), seen.append)
        worker.request("code", lambda r: seen.append(("code", r)), seen.append, text="1")
        delivered.get(timeout=5)()
        assert seen == [("health", {})]  # the code's reply is held back by lockerd
        lockerd.answer_code()
        delivered.get(timeout=5)()
        assert seen[1] == ("code", {"outcome": "wrong", "attempts_left": 4, "reason": None})
    finally:
        worker.stop()
        lockerd.close()


def test_lockerd_away_is_a_failure_and_nothing_comes_after_stop(tmp_path: Path) -> None:
    worker, delivered = started(tmp_path / "no-lockerd.sock")
    failures: list[Failure] = []
    worker.request("health", lambda _r: None, failures.append)
    handed_back = delivered.get(timeout=5)
    handed_back()
    assert len(failures) == 1 and isinstance(failures[0], ApiUnavailable)
    worker.request("health", lambda _r: None, failures.append)
    late = delivered.get(timeout=5)
    worker.stop()
    late()  # a reply that reaches the UI thread after the app stopped
    assert len(failures) == 1
