"""Modbus RTU relay boards used as lockers (Waveshare "Modbus RTU Relay" style).

Coils are the lock relays, discrete inputs the door sensors. An unlock is the
board-timed pulse ("flash": FC05 to coil 0x0200 + channel with the duration in
100 ms steps), never on-wait-off from here: a crash between "on" and "off"
would leave a lock energised.

The codec is a pure pair of functions per request (CRC-16/Modbus included),
and the bytes move through the serial transport every bus driver shares
(`drivers.bus`): one port per device path for every slave id on it, the RTU
silent interval, retries, the frame history. Every reply's length follows from
its first three bytes (id, function, byte count or exception code), so a reply
is read to its last byte and no longer.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.bus import BusBoard, FrameError, Reader, Refused
from drivers.options import BoardDriver, SerialOptions, option
from locker.config import BoardConfig

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


def crc16(data: bytes) -> bytes:
    """CRC-16/Modbus, low byte first as it goes on the wire."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


def _frame(body: bytes) -> bytes:
    return body + crc16(body)


def read_inputs_request(slave: int, count: int) -> bytes:
    """FC02: the door inputs 0..count-1."""
    return _frame(struct.pack(">BBHH", slave, READ_INPUTS, 0, count))


def flash_request(slave: int, channel: int, steps: int) -> bytes:
    """FC05 to coil 0x0200 + channel - 1 with the pulse in 100 ms steps: the board times it."""
    return _frame(struct.pack(">BBHH", slave, WRITE_COIL, FLASH_BASE + channel - 1, steps))


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


def check_reply(reply: bytes, slave: int, function: int, what: str) -> bytes:
    """The reply's PDU data after its checks; Refused for an exception reply."""
    if len(reply) < EXCEPTION_LEN:
        raise FrameError(f"reply of {len(reply)} bytes")
    if crc16(reply[:-2]) != reply[-2:]:
        raise FrameError(f"CRC {reply[-2:].hex()}, computed {crc16(reply[:-2]).hex()}")
    if reply[0] != slave:
        raise FrameError(f"reply from slave {reply[0]}, asked {slave}")
    if reply[1] == function | 0x80:
        code = reply[2]
        name = EXCEPTION_NAMES.get(code, "exception")
        raise Refused(f"{what}: the board refused it ({name}, code {code})")
    if reply[1] != function:
        raise FrameError(f"reply to function {reply[1]:#04x}, asked {function:#04x}")
    return reply[2:-2]


def decode_inputs(reply: bytes, slave: int, count: int) -> tuple[bool, ...]:
    """The `count` input bits of an FC02 reply, input 0 first."""
    data = check_reply(reply, slave, READ_INPUTS, f"reading {count} door inputs")
    if data[0] != len(data) - 1 or data[0] * 8 < count:
        raise FrameError(f"reply of {data[0]} bytes for {count} inputs")
    return tuple(bool(data[1 + i // 8] >> (i % 8) & 1) for i in range(count))


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

    def read_doors(self) -> Mapping[int, bool]:
        request = read_inputs_request(self.slave, self.channels)
        reply = self.bus.exchange(self._name, request, self._read_inputs)
        bits = decode_inputs(reply, self.slave, self.channels)
        return {ch: bits[ch - 1] == self.open_level for ch in range(1, self.channels + 1)}

    def _read_inputs(self, read: Reader) -> bytes:
        reply = read_rtu_reply(read)
        decode_inputs(reply, self.slave, self.channels)  # a bad frame is retried by the bus
        return reply

    def unlock(self, channel: int) -> None:
        request = flash_request(self.slave, self._channel(channel), self.steps)
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
