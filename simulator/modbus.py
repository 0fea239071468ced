"""Simulated Modbus RTU relay boards on a pty (several slave ids on one bus).

FC01 reads the relays (on while a flash pulse runs), FC02 the door sensors,
FC05 switches a relay, all relays (coil 0x00FF), or flashes one (coil
0x0200 + channel, value = duration in 100 ms steps). Replies echo FC05 as the
real boards do; a bad CRC, an unknown slave id or an unplugged board gets no
reply.
"""

from __future__ import annotations

import struct
import time

from drivers.modbus_relay import FLASH_BASE
from drivers.sim import SimBoard
from simulator.pty_device import PtyDevice

__all__ = ["ModbusRelaySim", "crc16"]

ALL_RELAYS = 0x00FF


def crc16(data: bytes) -> bytes:
    """CRC-16/Modbus, low byte first as on the wire: the simulator's own, written apart
    from the driver's codec (pymodbus), so the two meet only on the wire."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


def _bits(values: list[bool]) -> bytes:
    out = bytearray((len(values) + 7) // 8)
    for i, v in enumerate(values):
        if v:
            out[i // 8] |= 1 << (i % 8)
    return bytes([len(out)]) + bytes(out)


class ModbusRelaySim(PtyDevice):
    """Relay boards behind one pty."""

    def __init__(
        self, boards: dict[int, SimBoard], baud: int = 9600, inputs_inverted: bool = False
    ) -> None:
        self.boards = boards
        self.inputs_inverted = inputs_inverted
        self.relay_until: dict[tuple[int, int], float] = {}
        self.arrivals: list[float] = []  # when each request arrived (silent-interval checks)
        self.wrong_echo = 0  # answer the next N pulses with another duration (valid CRC)
        super().__init__(self._respond, baud=baud, name="modbus-relay")

    def _respond(self, buffer: bytes) -> tuple[int, list[bytes]]:
        # Every request we answer is 8 bytes: slave, function, 4 data bytes, CRC.
        for start in range(len(buffer)):
            frame = buffer[start : start + 8]
            if len(frame) < 8:
                return start, []
            if crc16(frame[:6]) == frame[6:] and frame[1] in (1, 2, 5):
                self.arrivals.append(time.monotonic())
                reply = self._handle(frame)
                return start + 8, [reply] if reply else []
        return len(buffer), []

    def _handle(self, frame: bytes) -> bytes | None:
        slave, function = frame[0], frame[1]
        sim = self.boards.get(slave)
        if sim is None or slave in self.faults.unplugged:
            return None
        address, value = struct.unpack(">HH", frame[2:6])
        n = sim.channels
        if function in (1, 2):
            if value < 1 or address + value > n:
                return self._exception(slave, function, 2)
            if function == 1:
                now = time.monotonic()
                states = [self.relay_until.get((slave, ch), 0) > now for ch in range(1, n + 1)]
            else:
                doors = sim.read_doors()
                states = [doors[ch] != self.inputs_inverted for ch in range(1, n + 1)]
            body = bytes([slave, function]) + _bits(states[address : address + value])
            return body + crc16(body)
        if address == ALL_RELAYS or address < n:
            targets = range(1, n + 1) if address == ALL_RELAYS else [address + 1]
            for ch in targets:
                if value == 0xFF00:
                    sim.unlock(ch)
                    self.relay_until[(slave, ch)] = float("inf")
                else:
                    self.relay_until.pop((slave, ch), None)
        elif FLASH_BASE <= address < FLASH_BASE + n:
            ch = address - FLASH_BASE + 1
            sim.unlock(ch)
            self.relay_until[(slave, ch)] = time.monotonic() + value / 10
        else:
            return self._exception(slave, function, 2)
        if self.wrong_echo:
            self.wrong_echo -= 1
            body = frame[:4] + struct.pack(">H", (value + 1) & 0xFFFF)
            return body + crc16(body)
        return frame  # FC05 is answered with an echo

    @staticmethod
    def _exception(slave: int, function: int, code: int) -> bytes:
        body = bytes([slave, function | 0x80, code])
        return body + crc16(body)
