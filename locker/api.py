"""The local API: JSON lines on a Unix socket, for the kiosk and `lockerctl`.

One request a line, `{"id": ..., "op": ..., ...}`, one reply a line with the
same `id`; `{"op": "subscribe"}` turns the connection into a stream of
`{"stream": "state", ...}` lines, one per change, and `{"stream": "entry", ...}`
lines with the result of each code the scanner or the camera handed in (so the
screen shows the shopper what happened). Every request runs on the
daemon's loop (the only owner of state); the API threads only read and write
lines. A line that is not a request gets an error line and the connection
carries on; nothing a client sends can stop the daemon.

The loop never waits on a client: it only puts stream lines into each
subscriber's bounded queue, which a thread of that connection writes out; a
subscriber that falls a whole queue behind is told (`{"stream": "closed",
"reason": "too slow"}`) and closed, so its screen reconnects and starts from a
fresh snapshot. Connections are capped well below the process's descriptor
limit, so a flood of clients cannot take the descriptors the boards, the
database and the platform link need.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import queue
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locker.api_ops import OPS, ApiError, Context, code_result
from locker.events import CodeEntered, Committed, PhaseDone
from locker.instance import AlreadyRunning
from locker.loop import call_on
from locker.model import CommandError
from locker.service import Service

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024  # bytes of one request line; a longer one is refused and skipped
# Connections served at once. Far below systemd's default limit of 1024 descriptors, so the
# boards, the database and the platform link always have theirs; above what the kiosk
# (a stream and a request connection), lockerctl and the maintenance screen use together.
MAX_CONNECTIONS = 64
STREAM_QUEUE = 256  # stream lines a subscriber may be behind before it is closed as too slow
# A client that takes none of our bytes for this long is closed (its queue or reply waits).
STALL_S = 5.0
ACCEPT_PAUSE_S = 0.1  # after EMFILE and the like: descriptors free up; do not spin meanwhile
LOG_EVERY_S = 60.0  # at most one journal line a minute per kind of trouble under a flood
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
TOO_MANY = f"too many connections (at most {MAX_CONNECTIONS}); close one or try again later"
Post = Callable[[Callable[[], None]], None]
Health = Callable[[], dict[str, Any]]


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


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


_TOO_SLOW = _encode({"stream": "closed", "reason": "too slow"})


class _Throttled:
    """Logs a kind of trouble at most once per LOG_EVERY_S, saying how often it happened
    meanwhile: a flood must show in the journal without filling it."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self.monotonic = monotonic
        self._next = -math.inf
        self._quiet = 0

    def warning(self, message: str, *args: object) -> None:
        now = self.monotonic()
        if now < self._next:
            self._quiet += 1
            return
        if self._quiet:
            message += " (and %d more times since the last such line)"
            args = (*args, self._quiet)
        self._next, self._quiet = now + LOG_EVERY_S, 0
        log.warning(message, *args)


class _Lines:
    """Cuts a byte stream into request lines of at most MAX_LINE bytes. A longer line is
    reported once (None) and its tail skipped up to its newline, so no piece of it is
    taken for a request."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skipping = False

    def feed(self, chunk: bytes) -> list[bytes | None]:
        out: list[bytes | None] = []
        self._buffer += chunk
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            if self._skipping:
                self._skipping = False
            elif end - start > MAX_LINE:
                out.append(None)
            elif line := bytes(self._buffer[start:end]).strip():
                out.append(line)
            start = end + 1
        del self._buffer[:start]
        if not self._skipping and len(self._buffer) > MAX_LINE:
            out.append(None)
            self._skipping = True
        if self._skipping:
            self._buffer.clear()
        return out


class _Connection:
    """One client: its socket, a lock so replies and stream lines never interleave, and
    once it subscribes, its bounded queue of stream lines with the thread that writes it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.send_lock = threading.Lock()
        self.reader: threading.Thread | None = None
        self.stream: queue.Queue[bytes | None] | None = None
        self.writer: threading.Thread | None = None
        self.too_slow = False  # set by the loop: the writer says so and ends the connection
        self.ended = False

    def send(self, data: bytes) -> None:
        """Write whole lines; blocks at most STALL_S on a client that does not read (never
        called on the loop)."""
        with self.send_lock:
            self.sock.sendall(data)

    def shutdown(self) -> None:
        """Wake this connection's threads out of recv/sendall; they close it."""
        with contextlib.suppress(OSError):  # already shut down or closed by the peer
            self.sock.shutdown(socket.SHUT_RDWR)


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
        self.context = Context(service, self.sessions, health, self.diagnostics)
        self._connections: set[_Connection] = set()
        self._subscribers: list[_Connection] = []
        self._lock = threading.Lock()  # guards the two above; never held while waiting
        self._stop = threading.Event()
        self._refused_log = _Throttled(service.clock.monotonic)
        self._accept_log = _Throttled(service.clock.monotonic)
        self._slow_log = _Throttled(service.clock.monotonic)
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
        # Room for a burst of connects while the accepter refuses those beyond the cap.
        self._server.listen(MAX_CONNECTIONS)
        self._server.settimeout(0.2)
        self._accepter = threading.Thread(target=self._accept, name="api", daemon=True)
        self._accepter.start()

    def close(self) -> None:
        self._stop.set()
        self._accepter.join(timeout=2)
        self._server.close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.shutdown()
        for conn in connections:
            for t in (conn.reader, conn.writer):
                if t is not None:
                    t.join(timeout=2)
        # Only our own socket: the path may since belong to a daemon started after us.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    # -- connections -------------------------------------------------------------------

    def _accept(self) -> None:
        # Nothing may end this thread but close(): without it every later request of the
        # kiosk would fail while the daemon looks healthy.
        while not self._stop.is_set():
            try:
                sock, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                self._accept_log.warning("local API: cannot accept a connection: %s", exc)
                # Out of descriptors or memory, the pending connection stays queued and
                # accept() would fail again at once: wait for some to be freed.
                if exc.errno in _OUT_OF_RESOURCES:
                    self._stop.wait(ACCEPT_PAUSE_S)
                continue
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        conn = _Connection(sock)
        with self._lock:
            full = len(self._connections) >= MAX_CONNECTIONS
            if not full:
                self._connections.add(conn)
        if not full:
            sock.settimeout(STALL_S)
            conn.reader = threading.Thread(
                target=self._serve, args=(conn,), name="api-client", daemon=True
            )
            try:
                conn.reader.start()
                return
            except RuntimeError:  # no thread to be had: refused like one over the cap
                with self._lock:
                    self._connections.discard(conn)
        self._refused_log.warning(
            "local API: refused a connection, %d open (at most %d)",
            len(self._connections),
            MAX_CONNECTIONS,
        )
        # The one line fits an empty socket buffer: this never waits on the client.
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.send(_encode({"id": None, "ok": False, "error": TOO_MANY}))
        sock.close()

    def _serve(self, conn: _Connection) -> None:
        lines = _Lines()
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.sock.recv(65536)
                except TimeoutError:  # an idle client is fine: the kiosk keeps one open
                    continue
                if not chunk:
                    return
                for line in lines.feed(chunk):
                    if line is None:
                        reply: dict[str, Any] | None = {
                            "id": None,
                            "ok": False,
                            "error": f"line too long (at most {MAX_LINE} bytes); skipped",
                        }
                    else:
                        reply = self._request(conn, line)
                    if reply is not None:
                        conn.send(_reply_line(reply))
        except OSError:  # gone, or took none of its replies for STALL_S
            return
        finally:
            self._end(conn)

    def _end(self, conn: _Connection) -> None:
        with self._lock:
            if conn in self._subscribers:
                self._subscribers.remove(conn)
        conn.ended = True
        conn.shutdown()
        if conn.stream is not None:
            with contextlib.suppress(queue.Full):  # a full queue: the writer is not waiting
                conn.stream.put_nowait(None)
        if conn.writer is not None:
            conn.writer.join(timeout=STALL_S + 1)
        conn.sock.close()
        with self._lock:
            self._connections.discard(conn)

    def _write_stream(self, conn: _Connection) -> None:
        """The subscriber's own thread: its queue to its socket, off the loop."""
        assert conn.stream is not None
        try:
            while True:
                data = conn.stream.get()
                if data is None or conn.ended or conn.too_slow:
                    break
                conn.send(data)
            if conn.too_slow:
                conn.send(_TOO_SLOW)
        except OSError:  # gone, or took nothing for STALL_S: ended below all the same
            pass
        finally:
            conn.shutdown()  # the reader sees the end and closes the connection

    # -- requests ----------------------------------------------------------------------

    def _request(self, conn: _Connection, line: bytes) -> dict[str, Any] | None:
        req = _parse(line)
        if isinstance(req, str):
            return {"id": None, "ok": False, "error": req}
        rid = req.get("id")
        if not _plain_id(rid):
            return {"id": None, "ok": False, "error": "id: expected a string, a number or null"}
        try:
            op = req.get("op")
            if op == "subscribe":
                self._subscribe(conn, rid)
                return None  # the reply heads the stream, from the subscriber's queue
            handler = OPS.get(op) if isinstance(op, str) else None
            if handler is None:
                shown = repr(op) if len(repr(op)) <= 40 else repr(op)[:40] + "..."
                raise ApiError(f"unknown op {shown}; known: subscribe, {', '.join(sorted(OPS))}")
            result = self._on_loop(lambda: handler(self.context, req))
            return {"id": rid, "ok": True, "result": result}
        except ApiError as exc:
            return {"id": rid, "ok": False, "error": str(exc), **exc.fields}

    def _subscribe(self, conn: _Connection, rid: Any) -> None:
        if conn.stream is None:
            conn.stream = queue.Queue(STREAM_QUEUE)
        stream = conn.stream

        def join() -> None:
            # On the loop: the snapshot and the registration at one instant, so the stream
            # neither misses a change after the snapshot nor repeats one before it.
            line = _reply_line({"id": rid, "ok": True, "result": self.svc.snapshot()})
            try:
                stream.put_nowait(line)
            except queue.Full:  # subscribed again while a whole queue behind
                self._drop_slow(conn)
                return
            with self._lock:
                if conn not in self._subscribers:
                    self._subscribers.append(conn)

        self._on_loop(join)
        if conn.writer is None:
            conn.writer = threading.Thread(
                target=self._write_stream, args=(conn,), name="api-stream", daemon=True
            )
            conn.writer.start()

    def _on_loop(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the daemon's loop and wait for its result."""
        try:
            return call_on(self.post, fn, timeout=30)
        except ApiError:
            raise
        except CommandError as exc:  # a use case refused: its code and message
            raise ApiError(f"{exc.code.value}: {exc.message}", code=exc.code.value) from exc
        except Exception as exc:  # reported to the client; the daemon carries on
            log.exception("local API request failed")
            raise ApiError(f"internal error: {exc}"[:200]) from exc

    def changed(self, commit: Committed) -> None:
        """On the loop thread, after a commit: tell every stream what changed."""
        if self._subscribers:
            types = list(commit.event_types)
            self._broadcast({"stream": "state", "events": types, "state": self.svc.snapshot()})

    def code_entered(self, entered: CodeEntered) -> None:
        """On the loop thread: a code from the scanner or the camera, for the screen."""
        if self._subscribers:
            method, result = entered.method.value, code_result(entered.result)
            self._broadcast({"stream": "entry", "method": method, **result})

    def phase_done(self, done: PhaseDone) -> None:
        """On the loop thread: every door of the phase seen open, then closed."""
        if self._subscribers:
            self._broadcast(
                {
                    "stream": "done",
                    "purpose": done.purpose.value,
                    "order_id": done.order_id,
                    "compartments": list(done.compartments),
                }
            )

    def _broadcast(self, message: dict[str, Any]) -> None:
        """On the loop: only puts the line into each subscriber's queue, never touches a
        socket; a subscriber whose queue is full is dropped as too slow."""
        data = _encode(message)  # once, shared by every queue
        with self._lock:
            subscribers = list(self._subscribers)
        for conn in subscribers:
            assert conn.stream is not None
            try:
                conn.stream.put_nowait(data)
            except queue.Full:
                self._drop_slow(conn)

    def _drop_slow(self, conn: _Connection) -> None:
        with self._lock:
            if conn in self._subscribers:
                self._subscribers.remove(conn)
        conn.too_slow = True
        assert conn.stream is not None
        # The writer may have emptied the queue meanwhile and wait in get(): wake it.
        with contextlib.suppress(queue.Full):
            conn.stream.put_nowait(None)
        self._slow_log.warning(
            "local API: a subscriber fell %d stream lines behind; closed (it may reconnect)",
            STREAM_QUEUE,
        )


def _parse(line: bytes) -> dict[str, Any] | str:
    """The request on `line`, or why it is not one."""
    try:
        req = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        return "not a JSON request line: nested too deeply"
    except ValueError:  # UnicodeDecodeError included
        return "not a JSON request line"
    if not isinstance(req, dict):
        return "a request is a JSON object"
    try:
        # A lone surrogate (`"\ud800"`) is valid JSON but no text: it would break the
        # reply's UTF-8 and every use of the string further on.
        json.dumps(req, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return "not a JSON request line: a string holds a lone surrogate escape"
    except RecursionError:
        return "not a JSON request line: nested too deeply"
    return req


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _plain_id(rid: Any) -> bool:
    # The id is echoed in the reply: a scalar, so echoing it never fails.
    if isinstance(rid, float):
        return math.isfinite(rid)
    return rid is None or isinstance(rid, str | int)


def _reply_line(reply: dict[str, Any]) -> bytes:
    try:
        return _encode(reply)
    except (ValueError, TypeError, RecursionError):  # a defect of ours: the client still hears
        log.exception("local API: a reply could not be encoded")
        return _encode({"id": None, "ok": False, "error": "internal error: unencodable reply"})
