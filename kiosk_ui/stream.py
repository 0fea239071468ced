"""lockerd's stream of changes, read in a thread of its own and handed to the screen.

The kiosk subscribes once and receives `{"stream": "state"}` lines (doors,
compartments) and `{"stream": "entry"}` lines (a code the scanner or camera
handed in). When lockerd goes away the listener retries every few seconds; the
screen learns of it from its own health checks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

RETRY_S = 1.0


class StreamListener:
    def __init__(self, path: str, on_message: Callable[[dict[str, Any]], None]) -> None:
        self.path = path
        self.on_message = on_message
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="kiosk-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by lockerd
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except (OSError, ValueError) as exc:
                log.debug("stream: %s", exc)
            self._stop.wait(RETRY_S)

    def _listen(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(self.path)
            self._sock = sock
            sock.sendall(b'{"id": "stream", "op": "subscribe"}\n')
            with sock.makefile("rb") as lines:
                for line in lines:
                    if self._stop.is_set():
                        return
                    message = json.loads(line)
                    if message.get("id") == "stream" and message.get("ok"):
                        first = {"stream": "state", "events": [], "state": message["result"]}
                        self.on_message(first)
                    elif "stream" in message:
                        self.on_message(message)
            self._sock = None
