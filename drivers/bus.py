"""One RS-485 bus on one serial port, shared by every board at an address on it.

The transport owns what the domain must never do: one request at a time on
the wire, the input flushed before each request (stale bytes are the classic
cause of garbled replies), a minimum silent gap between frames, retries with a
capped backoff, and re-opening the port when a USB adapter vanished and came
back. It keeps the last frames exchanged and attaches them to every error.
"""

from __future__ import annotations

import contextlib
import logging
import termios
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import serial

from locker.boards import BoardError

log = logging.getLogger(__name__)

FRAMES_KEPT = 20


class FrameError(Exception):
    """A reply that is short, mis-framed or fails its checksum (the transport retries)."""


class Reader(Protocol):
    """What a reply framer pulls bytes with, before the reply's deadline.

    `read(n)` returns up to `n` bytes (fewer on the deadline). With `idle_s` it also
    returns once the line has been silent that long after the first byte: the way to
    frame a reply whose length is not known in advance (`n` is then only a cap).
    """

    def __call__(self, n: int, /, *, idle_s: float | None = None) -> bytes: ...


@dataclass(frozen=True)
class BusSettings:
    port: str
    baud: int = 19200
    timeout_s: float = 0.1  # for a whole reply, after the request left
    retries: int = 2
    gap_s: float = 0.002  # silence kept between frames (Modbus: 3.5 characters)
    backoff_s: float = 0.02
    backoff_max_s: float = 0.5


class SerialBus:
    """Request/response exchanges on one serial port, strictly one at a time."""

    def __init__(
        self,
        settings: BusSettings,
        opener: Callable[[BusSettings], serial.Serial] | None = None,
    ) -> None:
        self.settings = settings
        self._opener = opener or _open_serial
        self._port: serial.Serial | None = None
        self._lock = threading.Lock()
        self._last_io = 0.0
        self.frames: deque[str] = deque(maxlen=FRAMES_KEPT)
        self.errors = 0
        self.exchanges = 0

    @property
    def char_s(self) -> float:
        """Wire time of one 8N1 character (10 bits)."""
        return 10 / self.settings.baud

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._port is not None:
            with contextlib.suppress(OSError, serial.SerialException):
                self._port.close()
            self._port = None

    def _ensure_open(self) -> serial.Serial:
        if self._port is None:
            self._port = self._opener(self.settings)
            log.info("opened %s at %d baud", self.settings.port, self.settings.baud)
        return self._port

    def _note(self, direction: str, data: bytes) -> None:
        self.frames.append(f"{time.time():.3f} {direction} {data.hex(' ')}")

    def exchange(
        self,
        board: str,
        request: bytes,
        read_reply: Callable[[Reader], bytes] | None,
    ) -> bytes:
        """Send `request` and return the reply that `read_reply` frames (b"" if none expected).

        `read_reply(read)` pulls bytes with `read(n)` (which returns fewer on a time-out)
        and raises FrameError for a bad reply. Retries with capped backoff; after the
        last try raises BoardError carrying the last frames.
        """
        s = self.settings
        with self._lock:
            problem = ""
            for attempt in range(s.retries + 1):
                if attempt:
                    time.sleep(min(s.backoff_max_s, s.backoff_s * 2 ** (attempt - 1)))
                try:
                    port = self._ensure_open()
                    wait = self._last_io + s.gap_s - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    port.reset_input_buffer()
                    self._note(">", request)
                    port.write(request)
                    port.flush()
                    if read_reply is None:
                        self._last_io = time.monotonic()
                        self.exchanges += 1
                        return b""
                    deadline = time.monotonic() + s.timeout_s + len(request) * self.char_s
                    reply = read_reply(self._reader(port, deadline))
                    self._last_io = time.monotonic()
                    self._note("<", reply)
                    self.exchanges += 1
                    return reply
                except FrameError as exc:
                    problem = str(exc)
                    self._last_io = time.monotonic()
                except (OSError, serial.SerialException, termios.error) as exc:
                    # The adapter vanished (unplugged, reset): reopen on the next try.
                    problem = f"port {s.port}: {exc}"
                    self._drop()
                self.errors += 1
                self._note("!", problem.encode()[:60])
            raise BoardError(board, problem, tuple(self.frames))

    def _reader(self, port: serial.Serial, deadline: float) -> Reader:
        def read(n: int, /, *, idle_s: float | None = None) -> bytes:
            return self._read(port, n, deadline=deadline, idle_s=idle_s)

        return read

    def _read(
        self, port: serial.Serial, n: int, *, deadline: float, idle_s: float | None = None
    ) -> bytes:
        data = b""
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            want = n - len(data)
            if idle_s is not None:
                # Take what has arrived, else wait for one more byte: pyserial's timeout
                # covers a whole read, so asking for `n` would always run to the deadline.
                want = min(want, max(1, port.in_waiting))
                if data:
                    left = min(left, idle_s)
            port.timeout = left
            chunk = port.read(want)
            if not chunk:
                break
            data += chunk
        return data


def _open_serial(settings: BusSettings) -> serial.Serial:
    return serial.Serial(
        settings.port,
        baudrate=settings.baud,
        bytesize=serial.EIGHTBITS,
        parity=serial.PARITY_NONE,
        stopbits=serial.STOPBITS_ONE,
        timeout=settings.timeout_s,
        write_timeout=1.0,
    )


_buses: dict[str, SerialBus] = {}
_buses_lock = threading.Lock()


def bus_for(settings: BusSettings) -> SerialBus:
    """The one SerialBus of a port: boards at different addresses share it."""
    with _buses_lock:
        bus = _buses.get(settings.port)
        if bus is None:
            bus = SerialBus(settings)
            _buses[settings.port] = bus
        return bus


def bus_for_board(board: str, wanted: BusSettings) -> SerialBus:
    """`bus_for`, for a board that asks for these settings: the first board on a port
    sets the bus up, and a board asking for others is a config slip worth seeing."""
    bus = bus_for(wanted)
    if bus.settings != wanted:
        log.warning(
            "%s: port %s already runs at %d baud, timeout %.3f s, %d retries; using those",
            board,
            wanted.port,
            bus.settings.baud,
            bus.settings.timeout_s,
            bus.settings.retries,
        )
    return bus


def forget_bus(port: str) -> None:
    """Close and drop a shared bus (tests, and a daemon shutting down)."""
    with _buses_lock:
        bus = _buses.pop(port, None)
    if bus is not None:
        bus.close()
