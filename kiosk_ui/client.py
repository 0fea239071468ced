"""The kiosk's side of the local API: one request, one reply line, over the Unix socket."""

from __future__ import annotations

import itertools
import json
import socket
import threading
from typing import Any


class ApiUnavailable(Exception):
    """lockerd is not answering (restarting, or not running)."""


class Refused(ValueError):
    """lockerd refused the request: the English `error` as the message, and the whole
    reply for the fields a screen reads instead (`code`, `refusal`)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(reply.get("error", "refused"))
        self.reply = reply


class ApiClient:
    def __init__(self, path: str, timeout_s: float = 10.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    def request(self, op: str, **fields: Any) -> Any:
        """The result of one request; ApiUnavailable when lockerd is away, Refused (a
        ValueError) when it refused the request (the message says why)."""
        with self._lock:
            try:
                if self._sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.settimeout(self.timeout_s)
                    sock.connect(self.path)
                    self._sock, self._file = sock, sock.makefile("rb")
                rid = next(self._ids)
                self._sock.sendall(json.dumps({"id": rid, "op": op, **fields}).encode() + b"\n")
                line = self._file.readline()
                if not line:
                    raise OSError("lockerd closed the connection")
            except OSError as exc:
                self._drop()
                raise ApiUnavailable(str(exc)) from exc
        reply = json.loads(line)
        if not reply.get("ok"):
            raise Refused(reply)
        return reply["result"]
