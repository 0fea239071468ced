"""The generic "8A" RS-485 electric-lock board (sold under many names).

Requests are five bytes, the last the XOR of the four before it:
unlock `8A BB CH 11 X` (BB = board 1-31 on its DIP switch, CH = channel 1-based)
and read-all `80 BB 00 33 X`.

The read-all reply is `80 BB S.. 33 X`: the header and address, one or more
status bytes, 0x33 and the XOR of everything before it. Its length depends on
the board (an 8-channel board at address 1 answered `80 01 00 00 00 33 B2`:
three status bytes), so it is framed by the line falling silent, never by an
assumed length. The status bytes are read as one big-endian bit field: the
last byte holds channels 1-8 (bit 0 = channel 1), the one before it 9-16, and
so on, which is how a 24-channel board's reply reads in public notes on this
board; our worked example is all zeros, so it confirms the framing and the
checksum, not the bit order. A set bit is a locked (shut) door; boards wired
the other way are `hook_sense = "inverted"`, as for Kerong.

A board's read-all reply keeps its length, so the first one is framed by
silence and the ones after it by the length learned from it (a reply that
then fails its checks is framed by silence again): a poll costs its wire time,
not a silence on top.

Whether the board answers an unlock is not documented; some are reported to
echo a five-byte `8A BB CH ST X`. The driver assumes no reply, as for the
Kerong CU48, and the caller confirms the unlock by reading the doors. The first
unlock waits out the reply timeout for a possible echo, so that an echo cannot
run into the next read-all reply; what it saw (an echo or none) is what the
board does, and later unlocks wait for exactly that.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.bus import BusBoard, FrameError, Reader
from drivers.options import BoardDriver, OptionError, SerialOptions, option
from locker.config import BoardConfig
from locker.config_reader import BAUDS

UNLOCK, READ_ALL = 0x8A, 0x80
UNLOCK_CODE, READ_ALL_CODE = 0x11, 0x33
FRAME_LEN = 5  # every request, and an unlock echo
MIN_ADDRESS, MAX_ADDRESS = 1, 31  # the board's five DIP switches; 0 is not a board
DEFAULT_CHANNELS = 24  # the common large variant; the example's 3 status bytes hold 24
MAX_CHANNELS = 64  # the reply has no length field; a bound keeps a babbling line finite
MAX_REPLY = 4 + (MAX_CHANNELS + 7) // 8
# The end of a first reply is the line falling silent. Modbus RTU counts 3.5 characters,
# but a USB adapter delivers bytes in bursts (an FTDI's latency timer is 16 ms by
# default), so a shorter silence could cut one reply in two: paid until the length is known.
SILENCE_CHARS, SILENCE_MIN_S = 3.5, 0.02

log = logging.getLogger(__name__)


def xor8(data: bytes) -> int:
    """XOR of every byte (the board's check byte)."""
    x = 0
    for b in data:
        x ^= b
    return x


def _frame(body: bytes) -> bytes:
    return body + bytes([xor8(body)])


def unlock_request(address: int, channel: int) -> bytes:
    """Pulse the lock of `channel` (1-255) on board `address` (1-31)."""
    if not 1 <= channel <= 0xFF:
        raise ValueError(f"channel {channel} out of range 1-255")
    return _frame(bytes([UNLOCK, address, channel, UNLOCK_CODE]))


def read_all_request(address: int) -> bytes:
    """Read every lock's state of board `address` in one reply."""
    return _frame(bytes([READ_ALL, address, 0x00, READ_ALL_CODE]))


def decode_read_all(reply: bytes, address: int, channels: int) -> tuple[bool, ...]:
    """The status bit of channels 1..`channels` (True = bit set = locked, as wired normally)."""
    if len(reply) < 5:
        raise FrameError(f"reply of {len(reply)} bytes, a read-all reply has at least 5")
    if reply[0] != READ_ALL or reply[-2] != READ_ALL_CODE:
        raise FrameError(f"reply not framed as 80 .. 33: {reply.hex(' ')}")
    if xor8(reply[:-1]) != reply[-1]:
        raise FrameError(f"check byte {reply[-1]:02x}, computed {xor8(reply[:-1]):02x}")
    if reply[1] != address:
        raise FrameError(f"reply from board {reply[1]}, asked {address}")
    status = reply[2:-2]
    if len(status) * 8 < channels:
        raise FrameError(
            f"reply holds {len(status) * 8} channels, the config says {channels}:"
            " set `channels` to the board's count"
        )
    field = int.from_bytes(status, "big")
    return tuple(bool(field >> i & 1) for i in range(channels))


def read_until_silence(read: Reader, silence_s: float) -> bytes:
    """Frame a reply by the line falling silent after it (its length is not known)."""
    reply = read(MAX_REPLY, idle_s=silence_s)
    if not reply:
        raise FrameError("no reply")
    return reply


@dataclass(frozen=True)
class Generic8aOptions(SerialOptions):
    baud: int = option(9600, choices=BAUDS)  # the boards' factory rate
    address: int = option(MIN_ADDRESS, lo=0, hi=0xFF)  # the board's five DIP switches
    # Boards wired the other way report bit 1 = unlocked: "inverted".
    hook_sense: str = option("normal", choices=("normal", "inverted"))

    def __post_init__(self) -> None:
        if not MIN_ADDRESS <= self.address <= MAX_ADDRESS:
            raise OptionError(
                "address",
                f"{self.address} out of range {MIN_ADDRESS}-{MAX_ADDRESS}:"
                " set `address` to the board's DIP switches",
            )


class Generic8aBoard(BusBoard):
    """One generic 8A board at a DIP address 1-31 on a bus."""

    def __init__(self, cfg: BoardConfig, options: Generic8aOptions, channels: int) -> None:
        super().__init__(cfg.name, channels, options)
        self.address = options.address
        self.inverted = options.hook_sense == "inverted"
        self.silence_s = max(SILENCE_CHARS * self.bus.char_s, SILENCE_MIN_S)
        self.reply_len = 0  # of a read-all reply, once seen (0: frame by silence)
        self.echoes: bool | None = None  # whether the board answers an unlock, once seen

    def read_doors(self) -> Mapping[int, bool]:
        reply = self.bus.exchange(self._name, read_all_request(self.address), self._read_status)
        bits = decode_read_all(reply, self.address, self.channels)
        # Bit set = locked = door shut, unless the board is wired the other way.
        return {ch: bits[ch - 1] == self.inverted for ch in range(1, self.channels + 1)}

    def _read_status(self, read: Reader) -> bytes:
        if self.reply_len:
            reply = read(self.reply_len)
            if not reply:
                raise FrameError("no reply")
        else:
            reply = read_until_silence(read, self.silence_s)
        try:
            decode_read_all(reply, self.address, self.channels)  # a bad frame is retried
        except FrameError:
            self.reply_len = 0
            raise
        self.reply_len = len(reply)
        return reply

    def unlock(self, channel: int) -> None:
        self._channel(channel)
        log.debug("%s: unlock channel %d", self._name, channel)
        framer = None if self.echoes is False else self._read_echo
        self.bus.exchange(self._name, unlock_request(self.address, channel), framer)

    def _read_echo(self, read: Reader) -> bytes:
        # Never a FrameError: a retry would pulse the lock again for nothing more than a
        # missing or garbled echo; the door sensor, read next, is what confirms the unlock.
        if self.echoes:
            echo = read(FRAME_LEN)
        else:
            echo = read(MAX_REPLY, idle_s=self.silence_s)
            self.echoes = bool(echo)
        if echo and (len(echo) != FRAME_LEN or echo[0] != UNLOCK or xor8(echo[:-1]) != echo[-1]):
            log.debug("%s: unexpected bytes after an unlock: %s", self._name, echo.hex(" "))
        return echo


def make_generic8a(cfg: BoardConfig, options: Generic8aOptions | None = None) -> Generic8aBoard:
    """A generic 8A board on the port's shared bus."""
    return Generic8aBoard(cfg, options or DRIVER.read(cfg), DRIVER.channels(cfg))


DRIVER = BoardDriver(Generic8aOptions, make_generic8a, DEFAULT_CHANNELS, MAX_CHANNELS)
