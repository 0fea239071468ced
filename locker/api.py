"""The local API: JSON lines on a Unix socket, for the kiosk and `lockerctl`.

One request a line, `{"id": ..., "op": ..., ...}`, one reply a line with the
same `id`; `{"op": "subscribe"}` turns the connection into a stream of
`{"stream": "state", ...}` lines, one per change, and `{"stream": "entry", ...}`
lines with the result of each code the scanner or the camera handed in (so the
screen shows the shopper what happened). Every request runs on the
daemon's loop (the only owner of state); the API threads only read and write
lines. A line that is not a request gets an error line and the connection
carries on; nothing a client sends can stop the daemon.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locker.entry import CodeResult
from locker.instance import AlreadyRunning
from locker.loop import call_on
from locker.model import CommandError, Method
from locker.pin import read_pin_hash
from locker.service import Service

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
Post = Callable[[Callable[[], None]], None]
Health = Callable[[], dict[str, Any]]
SESSION_S = 300.0  # a maintenance session ends after five minutes without a request


def _served(path: str) -> bool:
    """Whether a live process accepts connections on the Unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:  # absent, stale (refused), not a socket: nobody serves it
        return False
    finally:
        probe.close()
    return True


class ApiError(Exception):
    """A request the API refuses; the message goes back to the client."""


class LocalApi:
    """Serves the local socket; `close()` stops it."""

    def __init__(
        self,
        service: Service,
        path: str,
        post: Post,
        health: Health,
        diagnostics: Health | None = None,
    ) -> None:
        self.svc = service
        self.path = path
        self.post = post
        self.health = health
        self.diagnostics = diagnostics or health
        # Maintenance sessions opened with the PIN: token -> expiry on the service's
        # monotonic clock. In memory only: a restart of lockerd ends them.
        self.sessions: dict[str, float] = {}
        self._subscribers: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if _served(path):
            # Another lockerd (other data directory, same socket path) answers there:
            # taking the path over would cut its kiosk off.
            raise AlreadyRunning(
                f"{path} is served by another running lockerd; give this one its own"
                " [api] socket or stop the other"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a daemon that died
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        os.chmod(path, 0o660)  # the daemon's user and the kiosk's group, nobody else
        self._inode = os.stat(path).st_ino
        self._server.listen(8)
        self._server.settimeout(0.2)
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name="api", daemon=True)
        self._accepter.start()
        service.store.on_commit.append(self._changed)
        service.entry_listeners.append(self._entry)

    def close(self) -> None:
        self._stop.set()
        self._accepter.join(timeout=2)
        self._server.close()
        with self._lock:
            for conn in self._subscribers:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(timeout=2)
        # Only our own socket: the path may since belong to a daemon started after us.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    # -- connections -------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), name="api-client", daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        self._send(conn, self._request(conn, line))
                if len(buffer) > MAX_LINE:
                    buffer = b""
                    self._send(conn, {"id": None, "ok": False, "error": "line too long"})
        except OSError:
            return
        finally:
            with self._lock:
                if conn in self._subscribers:
                    self._subscribers.remove(conn)
            conn.close()

    def _send(self, conn: socket.socket, message: dict[str, Any]) -> None:
        data = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        conn.sendall(data)

    # -- requests ----------------------------------------------------------------------

    def _request(self, conn: socket.socket, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return {"id": None, "ok": False, "error": "not a JSON request line"}
        if not isinstance(req, dict):
            return {"id": None, "ok": False, "error": "a request is a JSON object"}
        rid = req.get("id")
        try:
            op = req.get("op")
            if op == "subscribe":
                with self._lock:
                    self._subscribers.append(conn)
                return {"id": rid, "ok": True, "result": self._on_loop(self.svc.snapshot)}
            handler = OPS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise ApiError(f"unknown op {op!r}; known: subscribe, {', '.join(sorted(OPS))}")
            result = self._on_loop(lambda: handler(self, req))
            return {"id": rid, "ok": True, "result": result}
        except ApiError as exc:
            return {"id": rid, "ok": False, "error": str(exc)}

    def _on_loop(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the daemon's loop and wait for its result."""
        try:
            return call_on(self.post, fn, timeout=30)
        except ApiError:
            raise
        except CommandError as exc:  # a use case refused: its code and message
            raise ApiError(f"{exc.code.value}: {exc.message}") from exc
        except Exception as exc:  # reported to the client; the daemon carries on
            log.exception("local API request failed")
            raise ApiError(f"internal error: {exc}"[:200]) from exc

    def _changed(self, types: list[str]) -> None:
        # On the loop thread, after a commit: tell every subscriber what changed.
        if self._subscribers:
            self._broadcast({"stream": "state", "events": types, "state": self.svc.snapshot()})

    def _entry(self, method: Method, result: CodeResult) -> None:
        # On the loop thread: a code from the scanner or the camera, for the screen to show.
        if self._subscribers:
            self._broadcast({"stream": "entry", "method": method.value, **_result(result)})

    def _broadcast(self, message: dict[str, Any]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for conn in subscribers:
            try:
                self._send(conn, message)
            except OSError:
                with self._lock:
                    if conn in self._subscribers:
                        self._subscribers.remove(conn)


def _code(api: LocalApi, req: dict[str, Any]) -> dict[str, Any]:
    text, method = req.get("text"), req.get("method", "keypad")
    if not isinstance(text, str):
        raise ApiError("text: expected the code as a string")
    if method not in ("keypad", "scanner", "camera"):
        raise ApiError("method: expected keypad, scanner or camera")
    # The kiosk shows this reply itself: no stream line for it.
    return _result(api.svc.enter_code(text, Method(method), notify=False))


def _result(r: CodeResult) -> dict[str, Any]:
    return {
        "outcome": r.outcome,
        "message": r.message,
        "purpose": r.purpose,
        "compartments": list(r.compartments),
        "attempts_left": r.attempts_left,
        "wait_s": r.wait_s,
        "reason": r.reason,
        # Staff see which order they are loading; a shopper's result never names one.
        "order_id": r.order_id if r.purpose in ("deposit", "retrieval") else None,
    }


def _history(api: LocalApi, req: dict[str, Any]) -> Any:
    order_id = req.get("order_id")
    if not isinstance(order_id, str):
        raise ApiError("order_id: expected a string")
    return api.svc.history(order_id)


def _technician(api: LocalApi, req: dict[str, Any]) -> None:
    """Maintenance actions need the technician PIN (hashed on disk, wrong ones throttled),
    or the token of a session opened with it (`login`)."""
    token = req.get("token")
    if isinstance(token, str):
        now = api.svc.clock.monotonic()
        for known, expires in list(api.sessions.items()):
            if expires < now:
                del api.sessions[known]
            elif hmac.compare_digest(known, token):
                api.sessions[known] = now + SESSION_S
                return
        raise ApiError("token: the maintenance session has ended; enter the PIN again")
    pin = req.get("pin")
    if not isinstance(pin, str):
        raise ApiError("pin: the technician PIN is required for this action")
    refused = api.svc.entry.check_pin(pin, read_pin_hash(api.svc.config.pin_path))
    if refused is not None:
        raise ApiError(refused.message)


def _login(api: LocalApi, req: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(req.get("pin"), str):
        raise ApiError("pin: the technician PIN is required to log in")
    _technician(api, {"pin": req["pin"]})
    token = secrets.token_hex(16)
    api.sessions[token] = api.svc.clock.monotonic() + SESSION_S
    api.svc.audit_action("technician", "maintenance_login")
    return {"token": token, "expires_in_s": SESSION_S}


def _logout(api: LocalApi, req: dict[str, Any]) -> dict[str, Any]:
    token = req.get("token")
    ended = isinstance(token, str) and api.sessions.pop(token, None) is not None
    return {"ended": ended}


def _diagnostics(api: LocalApi, req: dict[str, Any]) -> dict[str, Any]:
    _technician(api, req)
    return api.diagnostics()


def _reissue(api: LocalApi, req: dict[str, Any]) -> dict[str, Any]:
    """A new pickup code for a loaded order (the old one stops working, the platform is
    told by `code_issued`): how a technician prints a QR for a customer at the locker."""
    _technician(api, req)
    order_id = req.get("order_id")
    if not isinstance(order_id, str):
        raise ApiError("order_id: expected a string")
    return api.svc.reissue_code(order_id, actor="technician")


def _compartment(api: LocalApi, req: dict[str, Any]) -> int:
    number = req.get("compartment")
    if (
        isinstance(number, bool)
        or not isinstance(number, int)
        or (number not in api.svc.compartments)
    ):
        raise ApiError(f"compartment: this locker has no compartment {number!r}")
    return number


def _test_open(api: LocalApi, req: dict[str, Any]) -> dict[str, Any]:
    _technician(api, req)
    number = _compartment(api, req)
    api.svc.maintenance_open(number, "technician")
    return {"compartment": number}


def _open_all(api: LocalApi, req: dict[str, Any]) -> dict[str, Any]:
    _technician(api, req)
    numbers = sorted(api.svc.compartments)
    for number in numbers:  # each one logged; only here and in lockerctl, never remotely
        api.svc.maintenance_open(number, "technician:open_all")
    return {"compartments": numbers}


def _set_service(api: LocalApi, req: dict[str, Any]) -> dict[str, Any]:
    _technician(api, req)
    number = _compartment(api, req)
    in_service = req.get("in_service")
    if not isinstance(in_service, bool):
        raise ApiError("in_service: expected true or false")
    reason = req.get("reason") if isinstance(req.get("reason"), str) else "maintenance"
    return api.svc.set_service(number, in_service, str(reason), actor="technician")


OPS: dict[str, Callable[[LocalApi, dict[str, Any]], Any]] = {
    "login": _login,
    "logout": _logout,
    "diagnostics": _diagnostics,
    "reissue_code": _reissue,
    "test_open": _test_open,
    "open_all": _open_all,
    "set_service": _set_service,
    "code": _code,
    "snapshot": lambda api, req: api.svc.snapshot(),
    "history": _history,
    "health": lambda api, req: api.health(),
}
