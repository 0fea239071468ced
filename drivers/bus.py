"""One RS-485 bus on one serial port, shared by every board at an address on it.

The one transport of every serial board driver (Kerong, the generic 8A board,
Modbus RTU). It owns what the domain must never do: one request at a time on
the wire, the input flushed before each request (stale bytes are the classic
cause of garbled replies), the silent interval between frames, retries with a
capped backoff, and re-opening the port when a USB adapter vanished and came
back. It keeps the last frames exchanged and attaches them to every error.

A port is opened once per device path, whatever the number of boards on it:
each board takes the bus with `open_bus` and gives it back with `release`, and
the last one to give it back closes the port.

pyserial is imported when a port is first opened, so that a driver's options
can be checked at configuration load on a machine without it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import termios
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from drivers.options import SerialOptions
from locker.boards import BoardError, check_channel

if TYPE_CHECKING:
    import serial

log = logging.getLogger(__name__)

FRAMES_KEPT = 20
WRITE_TIMEOUT_S = 1.0


class FrameError(Exception):
    """A reply that is short, mis-framed or fails its checksum (the transport retries)."""


class Refused(Exception):
    """The board answered, and said no (a Modbus exception): a clear answer, not retried."""


class Reader(Protocol):
    """What a reply framer pulls bytes with, before the reply's deadline.

    `read(n)` returns up to `n` bytes (fewer on the deadline). With `idle_s` it also
    returns once the line has been silent that long after the first byte: the way to
    frame a reply whose length is not known in advance (`n` is then only a cap).
    """

    def __call__(self, n: int, /, *, idle_s: float | None = None) -> bytes: ...


ReplyFramer = Callable[[Reader], bytes]


@dataclass(frozen=True)
class BusSettings:
    port: str
    baud: int = 19200
    timeout_s: float = 0.1  # for a whole reply, after the request left
    retries: int = 2
    backoff_s: float = 0.02
    backoff_max_s: float = 0.5

    @property
    def char_s(self) -> float:
        """Wire time of one 8N1 character (10 bits)."""
        return 10 / self.baud

    @property
    def gap_s(self) -> float:
        """The silence kept between frames: Modbus RTU's 3.5 characters (of 11 bits, as
        Modbus counts them) up to 19200 baud, 1.75 ms above. Kept on every bus: the
        other boards do not ask for it, but a second board on a bus that timed out on
        every read until this gap was kept is the field report behind it."""
        return 3.5 * 11 / self.baud if self.baud <= 19200 else 0.00175

    def wire_s(self, n_bytes: int) -> float:
        """Wire time of `n_bytes` bytes at this rate."""
        return n_bytes * self.char_s


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
        self.users = 0  # boards holding the bus (open_bus / release)

    @property
    def char_s(self) -> float:
        return self.settings.char_s

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def release(self) -> None:
        """A board is done with the bus; the last one closes the port."""
        with _buses_lock:
            self.users -= 1
            last = self.users <= 0
            if last and _buses.get(self.settings.port) is self:
                del _buses[self.settings.port]
        if last:
            self.close()

    def _drop(self) -> None:
        if self._port is not None:
            with contextlib.suppress(OSError):  # pyserial's SerialException is an OSError
                self._port.close()
            self._port = None

    def _ensure_open(self) -> serial.Serial:
        if self._port is None:
            self._port = self._opener(self.settings)
            log.info("opened %s at %d baud", self.settings.port, self.settings.baud)
        return self._port

    def _note(self, direction: str, data: bytes) -> None:
        self.frames.append(f"{time.time():.3f} {direction} {data.hex(' ')}")

    def exchange(self, board: str, request: bytes, read_reply: ReplyFramer | None) -> bytes:
        """Send `request` and return the reply that `read_reply` frames (b"" if none expected).

        `read_reply(read)` pulls bytes with `read(n)` (which returns fewer on a time-out)
        and raises FrameError for a bad reply (retried) or Refused for a clear refusal
        (not retried). Retries with capped backoff; after the last try raises BoardError
        carrying the last frames.
        """
        s = self.settings
        with self._lock:
            problem = ""
            for attempt in range(s.retries + 1):
                if attempt:
                    time.sleep(min(s.backoff_max_s, s.backoff_s * 2 ** (attempt - 1)))
                received = bytearray()
                try:
                    port = self._ensure_open()
                    wait = self._last_io + s.gap_s - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    port.reset_input_buffer()
                    self._note(">", request)
                    _write(port, request)
                    port.flush()
                    if read_reply is None:
                        self._last_io = time.monotonic()
                        self.exchanges += 1
                        return b""
                    deadline = time.monotonic() + s.timeout_s + s.wire_s(len(request))
                    reply = read_reply(self._reader(port, deadline, received))
                    self._last_io = time.monotonic()
                    self._note("<", reply)
                    self.exchanges += 1
                    return reply
                except Refused as exc:
                    self._last_io = time.monotonic()
                    self._note("<", bytes(received))
                    self.errors += 1
                    raise BoardError(board, str(exc), tuple(self.frames)) from exc
                except FrameError as exc:
                    problem = str(exc)
                    self._last_io = time.monotonic()
                    if received:
                        self._note("<", bytes(received))
                except (OSError, termios.error) as exc:
                    # The adapter vanished (unplugged, reset): reopen on the next try.
                    problem = f"port {s.port}: {exc}"
                    self._drop()
                self.errors += 1
                self._note("!", problem.encode()[:60])
                log.debug("%s on %s, attempt %d: %s", board, s.port, attempt + 1, problem)
            raise BoardError(board, problem, tuple(self.frames))

    def _reader(self, port: serial.Serial, deadline: float, received: bytearray) -> Reader:
        def read(n: int, /, *, idle_s: float | None = None) -> bytes:
            data = _read(port, n, deadline=deadline, idle_s=idle_s)
            received.extend(data)
            return data

        return read


def _write(port: serial.Serial, data: bytes) -> None:
    # Straight to the descriptor: pyserial's write adds a select() and its bookkeeping to
    # every frame, and a frame of a few bytes always fits the driver's buffer.
    fd = port.fileno()
    deadline = time.monotonic() + WRITE_TIMEOUT_S
    while data:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            data = data[os.write(fd, data) :]
        if data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise OSError(errno.ETIMEDOUT, f"port {port.port}: write timed out")


def _read(port: serial.Serial, n: int, *, deadline: float, idle_s: float | None) -> bytes:
    # select() and os.read() on the port's descriptor: a reply of known length costs its
    # wire time and nothing more. (pyserial's read wants its timeout set first, and
    # setting it rewrites the port's termios every time: twice a reply.)
    fd = port.fileno()
    data = b""
    while len(data) < n:
        # Past the deadline, bytes already in are still taken: a reply that came in time
        # is not thrown away because this thread was late to read it (a loaded machine).
        left = max(0.0, deadline - time.monotonic())
        if data and idle_s is not None:
            left = min(left, idle_s)  # the line went quiet: the reply is whole
        if not select.select([fd], [], [], left)[0]:
            break
        try:
            chunk = os.read(fd, n - len(data))
        except (BlockingIOError, InterruptedError):
            continue
        if not chunk:
            # Ready but empty: what a USB adapter that vanished looks like (the bus reopens).
            raise OSError(errno.EIO, f"port {port.port}: ready to read but no data")
        data += chunk
    return data


def _open_serial(settings: BusSettings) -> serial.Serial:
    import serial  # noqa: PLC0415 - only where a port is opened (see the module's docstring)

    return serial.Serial(
        settings.port,
        baudrate=settings.baud,
        bytesize=serial.EIGHTBITS,
        parity=serial.PARITY_NONE,
        stopbits=serial.STOPBITS_ONE,
        timeout=settings.timeout_s,
        write_timeout=WRITE_TIMEOUT_S,
    )


_buses: dict[str, SerialBus] = {}
_buses_lock = threading.Lock()


def open_bus(board: str, wanted: BusSettings) -> SerialBus:
    """The one bus of a port, taken by one more board (give it back with `release`).

    The first board on a port sets the bus up; a board asking for other settings is a
    config slip worth seeing, and runs with the ones already in use."""
    with _buses_lock:
        bus = _buses.get(wanted.port)
        if bus is None:
            bus = SerialBus(wanted)
            _buses[wanted.port] = bus
        bus.users += 1
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
    """Close and drop a port's bus whoever still holds it (a test tearing down a world)."""
    with _buses_lock:
        bus = _buses.pop(port, None)
    if bus is not None:
        bus.close()


def settings_of(options: SerialOptions) -> BusSettings:
    """The bus settings a board's options ask for."""
    return BusSettings(
        port=options.port,
        baud=options.baud,
        timeout_s=options.timeout_ms / 1000,
        retries=options.retries,
    )


class BusBoard:
    """What every board at an address on a shared bus has: its name, its channels, its
    hold on the bus (given back once, on close) and the bus's last frames."""

    def __init__(self, name: str, channels: int, options: SerialOptions) -> None:
        self._name = name
        self.channels = channels
        self.bus = open_bus(name, settings_of(options))
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    def _channel(self, channel: int) -> int:
        return check_channel(self._name, channel, self.channels)

    def last_frames(self) -> list[str]:
        return list(self.bus.frames)

    def close(self) -> None:
        """Gives the bus back; the last board on it closes the port."""
        if not self._closed:
            self._closed = True
            self.bus.release()
