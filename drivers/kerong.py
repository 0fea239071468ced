"""Kerong KR-CU48 and KR-CU16 lock boards over RS-485.

Codecs are pure functions (tested against the vendor's worked examples in
PROTOCOLS.md); the boards move bytes through the shared `SerialBus`, which
owns flushing, gaps, retries and the frame history.

CU48: request `02 ADDR LOCK CMD 03 SUM`; status reply of 12 bytes; unlock has
no reply (the door sensor confirms it). CU16: request `02 ADDR CMD 03 SUM`
with ADDR = board << 4 | lock; status and unlock both answer 9 bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from drivers.bus import BusBoard, FrameError
from drivers.options import BoardDriver, OptionError, SerialOptions, option
from locker.config import BoardConfig

STX, ETX = 0x02, 0x03
CU48_STATUS, CU48_UNLOCK, CU48_REPLY = 0x50, 0x51, 0x65
CU48_ALL_LOCKS, CU48_BROADCAST = 0x30, 0x0A
CU48_LOCKS, CU48_REPLY_LEN = 48, 12
CU16_STATUS, CU16_UNLOCK, CU16_REPLY = 0x30, 0x31, 0x35
CU16_LOCKS, CU16_REPLY_LEN = 16, 9

CU48_MAX_ADDRESS, CU16_MAX_BOARD = 0x09, 0x0F

Reader = Callable[[int], bytes]

log = logging.getLogger(__name__)


def sum8(data: bytes) -> int:
    """Low byte of the arithmetic sum (the boards' checksum)."""
    return sum(data) & 0xFF


def _frame(body: bytes) -> bytes:
    return body + bytes([sum8(body)])


def _bits(data: bytes, count: int) -> tuple[bool, ...]:
    """LSB-first bits of `data`: bit 0 of byte 0 is lock 1."""
    return tuple(bool(data[i // 8] >> (i % 8) & 1) for i in range(count))


# -- CU48 -------------------------------------------------------------------------------


def cu48_status_request(address: int) -> bytes:
    """Read the hooks of board `address` (0x0A: every board answers, in turn)."""
    return _frame(bytes([STX, address, 0x00, CU48_STATUS, ETX]))


def cu48_unlock_request(address: int, lock: int | None) -> bytes:
    """Unlock lock 1..48, or every lock of the board with `lock=None`."""
    if lock is None:
        code = CU48_ALL_LOCKS
    elif 1 <= lock <= CU48_LOCKS:
        code = lock - 1
    else:
        raise ValueError(f"CU48 lock {lock} out of range 1-{CU48_LOCKS}")
    return _frame(bytes([STX, address, code, CU48_UNLOCK, ETX]))


def _check_frame(reply: bytes, length: int) -> None:
    """Length, STX/ETX framing and checksum: what every Kerong reply shares."""
    if len(reply) != length:
        raise FrameError(f"reply of {len(reply)} bytes, expected {length}")
    if reply[0] != STX or reply[-2] != ETX:
        raise FrameError("reply not framed by STX/ETX")
    if sum8(reply[:-1]) != reply[-1]:
        raise FrameError(f"checksum {reply[-1]:02x}, computed {sum8(reply[:-1]):02x}")


def decode_cu48_status(reply: bytes, address: int) -> tuple[bool, ...]:
    """The 48 hook bits of a status reply; True = hook engaged (locked)."""
    _check_frame(reply, CU48_REPLY_LEN)
    if reply[1] != address:
        raise FrameError(f"reply from address {reply[1]:#04x}, asked {address:#04x}")
    if reply[3] != CU48_REPLY:  # byte 2 is to be ignored (vendor document)
        raise FrameError("reply carries an unexpected command byte")
    return _bits(reply[4:10], CU48_LOCKS)


# -- CU16 -------------------------------------------------------------------------------


def _cu16_address(board: int, lock: int) -> int:
    if not 0 <= board <= 0x0F:
        raise ValueError(f"CU16 board {board} out of range 0-15")
    if not 1 <= lock <= CU16_LOCKS:
        raise ValueError(f"CU16 lock {lock} out of range 1-{CU16_LOCKS}")
    return board << 4 | (lock - 1)


def cu16_status_request(board: int) -> bytes:
    """Read the hooks and infrared sensors of board 0-15."""
    return _frame(bytes([STX, _cu16_address(board, 1), CU16_STATUS, ETX]))


def cu16_unlock_request(board: int, lock: int) -> bytes:
    """Unlock lock 1..16 of board 0-15; the board answers with its status."""
    return _frame(bytes([STX, _cu16_address(board, lock), CU16_UNLOCK, ETX]))


def decode_cu16_reply(reply: bytes, board: int) -> tuple[tuple[bool, ...], tuple[bool, ...]]:
    """(hook bits, infrared bits) of a status or unlock reply; hook True = locked."""
    _check_frame(reply, CU16_REPLY_LEN)
    if reply[1] >> 4 != board:
        raise FrameError(f"reply from board {reply[1] >> 4}, asked {board}")
    if reply[2] != CU16_REPLY:
        raise FrameError("reply carries an unexpected command byte")
    return _bits(reply[3:5], CU16_LOCKS), _bits(reply[5:7], CU16_LOCKS)


# -- framing a reply off the wire -------------------------------------------------------


def fixed_reply(length: int) -> Callable[[Reader], bytes]:
    """Read a reply of a known length, skipping noise before the STX."""

    def read_reply(read: Reader) -> bytes:
        data = read(1)
        while data and data[0] != STX:
            data = read(1)
        if not data:
            raise FrameError("no reply")
        data += read(length - 1)
        if len(data) < length:
            raise FrameError(f"reply cut short after {len(data)} of {length} bytes")
        return data

    return read_reply


# -- options ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KerongOptions(SerialOptions):
    address: int = option(0, lo=0, hi=0xFF)  # the board's address selector
    # Hook switches wired normally-closed report bit 1 = unlocked: "inverted".
    hook_sense: str = option("normal", choices=("normal", "inverted"))

    max_address = 0

    def __post_init__(self) -> None:
        if not 0 <= self.address <= self.max_address:
            raise OptionError(
                "address",
                f"{self.address} out of range 0-{self.max_address}:"
                " set the board's address selector and `address` in the config to match",
            )


@dataclass(frozen=True)
class CU48Options(KerongOptions):
    # 0x0A is the broadcast address: every board would answer a status request.
    max_address = CU48_MAX_ADDRESS


@dataclass(frozen=True)
class CU16Options(KerongOptions):
    max_address = CU16_MAX_BOARD


# -- the boards -------------------------------------------------------------------------


class _KerongBoard(BusBoard):
    def __init__(self, cfg: BoardConfig, options: KerongOptions, channels: int) -> None:
        super().__init__(cfg.name, channels, options)
        self.address = options.address
        self.inverted = options.hook_sense == "inverted"

    def _doors(self, hooks: tuple[bool, ...]) -> Mapping[int, bool]:
        # Hook engaged = locked = door shut; the wiring (NO/NC) may invert the bit.
        return {ch: hooks[ch - 1] == self.inverted for ch in range(1, self.channels + 1)}


class KerongCU48Board(_KerongBoard):
    """One CU48 board (48 locks) at an address 0x00-0x09 on a bus."""

    def read_doors(self) -> Mapping[int, bool]:
        reply = self.bus.exchange(self._name, cu48_status_request(self.address), self._read_status)
        return self._doors(decode_cu48_status(reply, self.address))

    def _read_status(self, read: Reader) -> bytes:
        reply = fixed_reply(CU48_REPLY_LEN)(read)
        decode_cu48_status(reply, self.address)  # a bad frame is retried by the bus
        return reply

    def unlock(self, channel: int) -> None:
        request = cu48_unlock_request(self.address, self._channel(channel))
        log.debug("%s: unlock channel %d", self._name, channel)
        # The CU48 does not answer an unlock: the caller confirms by reading status.
        self.bus.exchange(self._name, request, None)


class KerongCU16Board(_KerongBoard):
    """One CU16 board (16 locks); its number 0-15 is the high nibble of the address byte."""

    def _read_reply(self, read: Reader) -> bytes:
        reply = fixed_reply(CU16_REPLY_LEN)(read)
        decode_cu16_reply(reply, self.address)
        return reply

    def read_doors(self) -> Mapping[int, bool]:
        reply = self.bus.exchange(self._name, cu16_status_request(self.address), self._read_reply)
        return self._doors(decode_cu16_reply(reply, self.address)[0])

    def unlock(self, channel: int) -> None:
        request = cu16_unlock_request(self.address, self._channel(channel))
        log.debug("%s: unlock channel %d", self._name, channel)
        # A lost reply makes the bus resend the unlock: a second pulse on a lock that is
        # already open is harmless, a missed unlock is not.
        self.bus.exchange(self._name, request, self._read_reply)


def make_cu48(cfg: BoardConfig, options: CU48Options | None = None) -> KerongCU48Board:
    """A CU48 board on the port's shared bus."""
    return KerongCU48Board(cfg, options or CU48.read(cfg), CU48.channels(cfg))


def make_cu16(cfg: BoardConfig, options: CU16Options | None = None) -> KerongCU16Board:
    """A CU16 board on the port's shared bus."""
    return KerongCU16Board(cfg, options or CU16.read(cfg), CU16.channels(cfg))


CU48 = BoardDriver(CU48Options, make_cu48, CU48_LOCKS, CU48_LOCKS)
CU16 = BoardDriver(CU16Options, make_cu16, CU16_LOCKS, CU16_LOCKS)
