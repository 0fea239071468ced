"""Modbus RTU relay boards used as lockers (Waveshare "Modbus RTU Relay" style).

Coils are the lock relays, discrete inputs the door sensors. An unlock is the
board-timed pulse ("flash": FC05 to coil 0x0200 + channel with the duration in
100 ms steps), never on-wait-off from here: a crash between "on" and "off"
would leave a lock energised.

pymodbus is the codec: its PDU classes and RTU framer build each request and
read each reply (CRC-16 included); the flash, which FC05 cannot say in
pymodbus's own words (its value is a duration, not ON/OFF), is a small PDU of
ours. The bytes move through the serial transport every bus driver shares
(`drivers.bus`): one port per device path for every slave id on it, the RTU
silent interval, retries, the frame history. Every reply's length follows from
its first three bytes (id, function, byte count or exception code), so a reply
is read to its last byte and no longer. pymodbus is imported when a Modbus
board is first used, not when a configuration is checked.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drivers.bus import BusBoard, FrameError, Reader, Refused
from drivers.options import BoardDriver, SerialOptions, option
from locker.config import BoardConfig

if TYPE_CHECKING:
    from pymodbus.framer import FramerRTU

log = logging.getLogger(__name__)

READ_COILS, READ_INPUTS, WRITE_COIL = 0x01, 0x02, 0x05
FLASH_BASE = 0x0200
DEFAULT_CHANNELS = 8
MAX_CHANNELS = 256
HEAD = 3  # id, function code, byte count (or exception code): enough to size any reply
EXCEPTION_LEN = 5
WRITE_LEN = 8
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
}


@functools.cache
def _codec() -> tuple[FramerRTU, type[Any]]:
    """pymodbus's RTU framer (client side) and our flash PDU, built on first use."""
    from pymodbus.framer import FramerRTU  # noqa: PLC0415 - on first use (module docstring)
    from pymodbus.pdu import DecodePDU, ModbusPDU  # noqa: PLC0415

    # pymodbus logs a frame it skips at ERROR; a bad reply reaches the locker as a
    # BoardError with the last frames, so its own lines are only noise.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    class FlashRequest(ModbusPDU):
        """FC05 to a flash coil, the value a duration in 100 ms steps (Waveshare)."""

        function_code = WRITE_COIL
        rtu_frame_size = WRITE_LEN

        def __init__(self, address: int = 0, steps: int = 0, dev_id: int = 1) -> None:
            super().__init__(dev_id=dev_id)
            self.address, self.steps = address, steps

        def encode(self) -> bytes:
            return struct.pack(">HH", self.address, self.steps)

        def decode(self, data: bytes) -> None:
            self.address, self.steps = struct.unpack(">HH", data[:4])

    return FramerRTU(DecodePDU(False)), FlashRequest


def read_inputs_request(slave: int, count: int) -> bytes:
    """FC02: the door inputs 0..count-1."""
    from pymodbus.pdu.bit_message import ReadDiscreteInputsRequest  # noqa: PLC0415

    framer, _ = _codec()
    return framer.buildFrame(ReadDiscreteInputsRequest(address=0, count=count, dev_id=slave))


def flash_request(slave: int, channel: int, steps: int) -> bytes:
    """FC05 to coil 0x0200 + channel - 1 with the pulse in 100 ms steps: the board times it."""
    framer, flash = _codec()
    return framer.buildFrame(flash(FLASH_BASE + channel - 1, steps, slave))


def reply_length(head: bytes) -> int:
    """The whole length of the reply that starts with these three bytes."""
    function = head[1]
    if function & 0x80:
        return EXCEPTION_LEN
    if function in (READ_COILS, READ_INPUTS):
        return HEAD + head[2] + 2
    if function == WRITE_COIL:
        return WRITE_LEN
    raise FrameError(f"reply with function code {function:#04x}")


def check_reply(reply: bytes, slave: int, function: int, what: str) -> Any:
    """The reply as pymodbus decodes it, after our checks; Refused for an exception reply."""
    if len(reply) < EXCEPTION_LEN:
        raise FrameError(f"reply of {len(reply)} bytes")
    if reply[0] != slave:
        raise FrameError(f"reply from slave {reply[0]}, asked {slave}")
    framer, _ = _codec()
    if not framer.check_CRC(reply[:-2], int.from_bytes(reply[-2:], "big")):
        raise FrameError(f"CRC {reply[-2:].hex()} does not match the frame")
    _, pdu = framer.handleFrame(reply, slave, 0)
    if pdu is None:
        raise FrameError(f"reply pymodbus cannot read: {reply.hex(' ')}")
    if pdu.isError():
        code = int(pdu.exception_code)
        name = EXCEPTION_NAMES.get(code, "exception")
        raise Refused(f"{what}: the board refused it ({name}, code {code})")
    if pdu.function_code != function:
        raise FrameError(f"reply to function {pdu.function_code:#04x}, asked {function:#04x}")
    return pdu


def decode_inputs(reply: bytes, slave: int, count: int) -> tuple[bool, ...]:
    """The `count` input bits of an FC02 reply, input 0 first."""
    pdu = check_reply(reply, slave, READ_INPUTS, f"reading {count} door inputs")
    bits = list(pdu.bits)
    if reply[2] != len(reply) - 5 or len(bits) < count:
        raise FrameError(f"reply of {reply[2]} bytes for {count} inputs")
    return tuple(bool(b) for b in bits[:count])


def read_rtu_reply(read: Reader) -> bytes:
    """One RTU reply, by the length its first bytes give."""
    head = read(HEAD)
    if len(head) < HEAD:
        raise FrameError("no reply" if not head else f"reply cut short after {len(head)} bytes")
    length = reply_length(head)
    reply = head + read(length - HEAD)
    if len(reply) < length:
        raise FrameError(f"reply cut short after {len(reply)} of {length} bytes")
    return reply


@dataclass(frozen=True)
class ModbusOptions(SerialOptions):
    address: int = option(1, lo=1, hi=247)  # the slave id (DIP switches or register)
    pulse_ms: int = option(500, lo=100, hi=5000)  # the board-timed unlock pulse
    door_open_high: bool = option(True)  # an open door reads 1 on its input


class ModbusRelayBoard(BusBoard):
    """One relay board (one slave id) used as a lock board."""

    def __init__(self, cfg: BoardConfig, options: ModbusOptions, channels: int) -> None:
        super().__init__(cfg.name, channels, options)
        self.slave = options.address
        self.steps = max(1, round(options.pulse_ms / 100))
        self.open_level = options.door_open_high
        self._flash_requests: dict[int, bytes] = {}

    @functools.cached_property
    def _read_request(self) -> bytes:
        # The same frame every poll: built once (by pymodbus, some 60 us a frame).
        return read_inputs_request(self.slave, self.channels)

    def read_doors(self) -> Mapping[int, bool]:
        reply = self.bus.exchange(self._name, self._read_request, self._read_inputs)
        bits = decode_inputs(reply, self.slave, self.channels)
        return {ch: bits[ch - 1] == self.open_level for ch in range(1, self.channels + 1)}

    def _read_inputs(self, read: Reader) -> bytes:
        reply = read_rtu_reply(read)
        decode_inputs(reply, self.slave, self.channels)  # a bad frame is retried by the bus
        return reply

    def unlock(self, channel: int) -> None:
        # Built once a channel: an unlock is sent on an idle bus, so building it is latency.
        request = self._flash_requests.get(channel)
        if request is None:
            request = flash_request(self.slave, self._channel(channel), self.steps)
            self._flash_requests[channel] = request
        coil = FLASH_BASE + channel - 1

        def echoed(read: Reader) -> bytes:
            reply = read_rtu_reply(read)
            check_reply(reply, self.slave, WRITE_COIL, f"flash of coil {coil:#06x}")
            if reply != request:
                # FC05 is answered with an exact echo (coil and duration). Anything else:
                # the pulse may or may not have happened; the door sensor decides, and
                # the retry is a second pulse at worst.
                raise FrameError(f"flash of coil {coil:#06x} not echoed: {reply.hex(' ')}")
            return reply

        log.debug("%s: unlock channel %d", self._name, channel)
        self.bus.exchange(self._name, request, echoed)


def make_modbus_relay(cfg: BoardConfig, options: ModbusOptions | None = None) -> ModbusRelayBoard:
    """A relay board on the port's shared bus."""
    return ModbusRelayBoard(cfg, options or DRIVER.read(cfg), DRIVER.channels(cfg))


DRIVER = BoardDriver(ModbusOptions, make_modbus_relay, DEFAULT_CHANNELS, MAX_CHANNELS)
