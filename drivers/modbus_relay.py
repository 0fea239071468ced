"""Modbus RTU relay boards used as lockers (Waveshare "Modbus RTU Relay" style), via pymodbus.

Coils are the lock relays, discrete inputs the door sensors. An unlock is the
board-timed pulse ("flash": FC05 to coil 0x0200 + channel with the duration in
100 ms steps), never on-wait-off from here: a crash between "on" and "off"
would leave a lock energised. One pymodbus client per serial port serves every
slave id on it, one request at a time, with the RTU silent interval kept.
"""

from __future__ import annotations

import logging
import struct
import termios
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TypeVar

import serial
from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from locker.boards import BoardError
from locker.config import BoardConfig

log = logging.getLogger(__name__)
# pymodbus logs "No response received" at ERROR for a missed reply even when our retry
# then succeeds; a failure that matters reaches the locker as a BoardError with the last
# frames (and the journal through the board's fault), so its own lines are only noise.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

FLASH_BASE = 0x0200
DEFAULT_CHANNELS = 8
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
}
FRAMES_KEPT = 20
T = TypeVar("T")


class FlashRequest(ModbusPDU):
    """FC05 with a duration instead of 0xFF00/0x0000: the board times the pulse itself."""

    function_code = 5
    rtu_frame_size = 8

    def __init__(self, address: int = 0, steps: int = 0, dev_id: int = 1) -> None:
        super().__init__(dev_id=dev_id, address=address)
        self.steps = steps

    def encode(self) -> bytes:
        return struct.pack(">HH", self.address, self.steps)

    def decode(self, data: bytes) -> None:
        self.address, self.steps = struct.unpack(">HH", data[:4])


class Refused(ModbusException):
    """The board answered with a Modbus exception: a clear answer, so not retried."""

    def __init__(self, what: str, reply: object) -> None:
        code = getattr(reply, "exception_code", None)
        name = EXCEPTION_NAMES.get(code, "exception") if isinstance(code, int) else "exception"
        super().__init__(f"{what}: the board refused it ({name}, code {code})")


class LengthFramedClient(ModbusSerialClient):
    """pymodbus's serial client, reading each reply up to the length its first bytes give.

    pymodbus 3.16 finds the end of a reply by polling the input count every four
    character times until it stops growing: 6-10 ms after the last byte at 9600 baud, on
    every exchange. A reply's length follows from its id, function code and byte count
    (pymodbus's own PDU classes know it), so the read waits in select() for exactly those
    bytes and returns as the last one arrives. A reply that stops short waits out the
    timeout, as a missing one does, and is retried. An unknown function code (line noise
    in front of a reply) falls back to pymodbus's framing by silence.
    """

    HEAD = 3  # id, function code, byte count (or the first data byte): enough to size any reply

    def recv(self, size: int | None) -> bytes:
        port = self.socket
        if size is not None or port is None:
            return super().recv(size)
        frame = b""
        try:
            while True:
                missing = self._missing(frame)
                if missing is None:
                    return frame + super().recv(None)
                if not missing:
                    return frame
                chunk = port.read(missing)
                if not chunk:  # the timeout: what came (if anything) goes to the framer
                    return frame
                frame += chunk
        except (OSError, serial.SerialException):
            self.close()  # type: ignore[no-untyped-call]  # reopened by the next request
            raise ConnectionException(str(self)) from None

    def _missing(self, frame: bytes) -> int | None:
        """Bytes still to come of the reply that starts `frame` (None: no way to tell)."""
        if len(frame) < self.HEAD:
            return self.HEAD - len(frame)
        pdu_class = self.framer.decoder.lookupPduClass(frame)
        if pdu_class is None:
            return None
        try:
            size = pdu_class.calculateRtuFrameSize(frame)
        except ModbusException:  # a class that does not say its RTU size
            return None
        return max(0, size - len(frame)) if size else None


class ModbusLine:
    """One serial port with its pymodbus client, shared by the boards on it."""

    def __init__(self, port: str, baud: int, timeout_s: float, retries: int) -> None:
        self.port = port
        self.baud = baud
        self.retries = retries
        self.frames: deque[str] = deque(maxlen=FRAMES_KEPT)
        self.users = 0  # boards using this line; the last one to close closes the port
        self.last_sent = self.last_received = b""  # the raw frames of the last exchange
        self.exchanges = 0
        self.errors = 0
        # The silent interval: 3.5 characters at <= 19200 baud, 1.75 ms above.
        self.gap_s = 3.5 * 11 / baud if baud <= 19200 else 0.00175
        self._lock = threading.Lock()
        self._last_io = 0.0
        self.client = LengthFramedClient(
            port,
            framer=FramerType.RTU,
            baudrate=baud,
            timeout=timeout_s,
            retries=0,  # our own retries, with backoff, below
            trace_packet=self._trace,
        )

    def _trace(self, sending: bool, data: bytes) -> bytes:
        self.frames.append(f"{time.time():.3f} {'>' if sending else '<'} {data.hex(' ')}")
        if sending:
            self.last_sent, self.last_received = data, b""
        else:  # pymodbus hands over everything received so far for this reply
            self.last_received = data
        return data

    def close(self) -> None:
        with self._lock:
            self.client.close()  # type: ignore[no-untyped-call]

    def call(self, board: str, fn: Callable[[ModbusSerialClient], T]) -> T:
        """Run one request with retries; BoardError (with the last frames) when it fails."""
        problem = ""
        with self._lock:
            for attempt in range(self.retries + 1):
                if attempt:
                    time.sleep(min(0.5, 0.02 * 2 ** (attempt - 1)))
                wait = self._last_io + self.gap_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    if not self.client.connected and not self.client.connect():
                        raise ModbusException(f"cannot open {self.port}")
                    result = fn(self.client)
                    self._last_io = time.monotonic()
                    self.exchanges += 1
                    return result
                except Refused as exc:
                    self._last_io = time.monotonic()
                    self.errors += 1
                    raise BoardError(board, str(exc), tuple(self.frames)) from exc
                except (ModbusException, OSError, termios.error) as exc:
                    self._last_io = time.monotonic()
                    problem = str(exc) or type(exc).__name__
                    log.debug("%s on %s, attempt %d: %s", board, self.port, attempt + 1, problem)
                    if not isinstance(exc, ModbusException):
                        self.client.close()  # type: ignore[no-untyped-call]  # reopen next time
                self.errors += 1
            raise BoardError(board, problem, tuple(self.frames))


class ModbusRelayBoard:
    """One relay board (one slave id) used as a lock board."""

    def __init__(self, cfg: BoardConfig, line: ModbusLine) -> None:
        self._name = cfg.name
        self.slave = cfg.address
        self.channels = cfg.channels or DEFAULT_CHANNELS
        self.steps = max(1, round(cfg.pulse_ms / 100))
        self.open_level = cfg.door_open_high
        self.line = line
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    def read_doors(self) -> Mapping[int, bool]:
        def read(client: ModbusSerialClient) -> list[bool]:
            rr = client.read_discrete_inputs(0, count=self.channels, device_id=self.slave)
            if rr.isError():
                raise Refused(f"reading {self.channels} door inputs", rr)
            return list(rr.bits[: self.channels])

        bits = self.line.call(self._name, read)
        return {ch: bits[ch - 1] == self.open_level for ch in range(1, self.channels + 1)}

    def unlock(self, channel: int) -> None:
        if not 1 <= channel <= self.channels:
            raise BoardError(self._name, f"no channel {channel} (1-{self.channels})")
        address = FLASH_BASE + channel - 1

        def flash(client: ModbusSerialClient) -> None:
            rr = client.execute(False, FlashRequest(address, self.steps, dev_id=self.slave))
            if rr.isError():
                raise Refused(f"flash of coil {address:#06x}", rr)
            if self.line.last_received != self.line.last_sent:
                # FC05 is answered with an exact echo (coil and duration). Anything else:
                # the pulse may or may not have happened; the door sensor decides, and
                # the retry is a second pulse at worst.
                raise ModbusException(f"flash of coil {address:#06x} not echoed: {rr}")

        self.line.call(self._name, flash)

    def close(self) -> None:
        """The line is shared: the last board on it closes the port."""
        if self._closed:
            return
        self._closed = True
        with _lines_lock:
            self.line.users -= 1
            last = self.line.users <= 0 and _lines.get(self.line.port) is self.line
            if last:
                del _lines[self.line.port]
        if last:
            self.line.close()


_lines: dict[str, ModbusLine] = {}
_lines_lock = threading.Lock()


def make_modbus_relay(cfg: BoardConfig) -> ModbusRelayBoard:
    with _lines_lock:
        line = _lines.get(cfg.port)
        if line is None:
            line = ModbusLine(cfg.port, cfg.baud, cfg.timeout_ms / 1000, cfg.retries)
            _lines[cfg.port] = line
        line.users += 1
    return ModbusRelayBoard(cfg, line)


def forget_client(port: str) -> None:
    with _lines_lock:
        line = _lines.pop(port, None)
    if line is not None:
        line.close()
