"""The kiosk's requests to lockerd, sent from a thread of their own.

Kivy draws and takes touches on one thread; a socket call there would freeze the
screen for as long as lockerd takes to answer (up to the client's timeout when it
hangs). The screen hands each request to this worker instead: one thread sends
them one at a time, in the order given, over the one connection of `ApiClient`,
and each result (or ApiUnavailable / Refused) goes back through `deliver`, which
the app points at Kivy's clock so the reply is handled on the UI thread. No Kivy
here: the worker can be tested without a window.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kiosk_ui.client import ApiClient, ApiUnavailable, Refused

log = logging.getLogger(__name__)

# lockerd's replies are JSON: what a result holds depends on the request.
Result = Any
# What the screen learns when a request fails: lockerd away, or a refusal (a ValueError:
# a line that is not JSON counts as one too, as it did for the blocking client).
Failure = ApiUnavailable | ValueError
OnResult = Callable[[Result], None]
OnFailure = Callable[[Failure], None]
Deliver = Callable[[Callable[[], None]], None]

__all__ = ["ApiUnavailable", "Failure", "Refused", "RequestWorker", "Result"]


@dataclass(frozen=True)
class _Request:
    op: str
    fields: dict[str, Any]
    on_result: OnResult
    on_failure: OnFailure


class RequestWorker:
    """Sends requests to lockerd from one thread; results come back through `deliver`
    (on the UI thread). After `stop` nothing more is delivered, so a reply that
    arrives late never reaches a screen that is gone."""

    def __init__(self, api: ApiClient, deliver: Deliver) -> None:
        self.api = api
        self._deliver = deliver
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kiosk-requests", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No more deliveries; the thread ends once the request on the wire (if any) is
        answered or times out, and closes the connection (the UI never waits for it)."""
        self._stopped.set()
        self._queue.put(None)

    def request(self, op: str, on_result: OnResult, on_failure: OnFailure, **fields: Any) -> None:
        """Send `op` with `fields`; later, on the UI thread, `on_result(result)` or
        `on_failure(exc)`."""
        self._queue.put(_Request(op, fields, on_result, on_failure))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None and not self._stopped.is_set():
            self._send(item)
        self.api.close()

    def _send(self, item: _Request) -> None:
        try:
            result = self.api.request(item.op, **item.fields)
        except (ApiUnavailable, ValueError) as exc:
            log.debug("%s: %s", item.op, exc)
            self._hand_back(functools.partial(item.on_failure, exc))
            return
        self._hand_back(functools.partial(item.on_result, result))

    def _hand_back(self, call: Callable[[], None]) -> None:
        def on_ui_thread() -> None:
            if not self._stopped.is_set():
                call()

        self._deliver(on_ui_thread)
