"""Simulated generic "8A" lock boards on a pty, answering as the firmware does.

Several boards (DIP addresses) share one simulated bus; doors come from a
`SimBoard` per address. A read-all is answered with as many status bytes as
the board's channels need, but never fewer than `min_status_bytes` (three by
default: the 8-channel board of the worked example answered three), so the
reply's length varies with the board, as the driver must expect. An unlock is
applied and, unless `unlock_echo` is set, not answered. A request with a bad
check byte, or for an address nobody has (or whose board is unplugged), gets
no reply, as on a real bus.
"""

from __future__ import annotations

from drivers.generic8a import (
    FRAME_LEN,
    READ_ALL,
    READ_ALL_CODE,
    UNLOCK,
    UNLOCK_CODE,
    xor8,
)
from drivers.sim import SimBoard
from simulator.pty_device import PtyDevice

LOCKED, RELEASED = 0x11, 0x00  # the state byte of an unlock echo, as reported for these boards


class Generic8aSim(PtyDevice):
    """Generic 8A boards at their addresses behind one pty.

    `hook_inverted` reports the status bits the other way round (the driver's
    `hook_sense = "inverted"`).
    """

    def __init__(
        self,
        boards: dict[int, SimBoard],
        baud: int = 9600,
        hook_inverted: bool = False,
        min_status_bytes: int = 3,
        unlock_echo: bool = False,
    ) -> None:
        self.boards = boards
        self.hook_inverted = hook_inverted
        self.min_status_bytes = min_status_bytes
        self.unlock_echo = unlock_echo
        super().__init__(self._respond, baud=baud, name="generic-8a")

    def _respond(self, buffer: bytes) -> tuple[int, list[bytes]]:
        # The device only calls back when bytes arrive, so answer every whole request now.
        used = 0
        replies: list[bytes] = []
        while True:
            start = _next_header(buffer, used)
            if start < 0:
                return len(buffer), replies
            if len(buffer) - start < FRAME_LEN:
                return start, replies
            frame = buffer[start : start + FRAME_LEN]
            if xor8(frame[:-1]) != frame[-1] or frame[3] not in (UNLOCK_CODE, READ_ALL_CODE):
                used = start + 1  # noise, or a bad check byte: resynchronise on the next header
                continue
            used = start + FRAME_LEN
            replies += self._answer(frame)

    def _answer(self, frame: bytes) -> list[bytes]:
        header, address, channel = frame[0], frame[1], frame[2]
        sim = self.boards.get(address)
        if sim is None or address in self.faults.unplugged:
            return []
        if header == READ_ALL and frame[3] == READ_ALL_CODE:
            return [self._status(address, sim)]
        if header == UNLOCK and frame[3] == UNLOCK_CODE and 1 <= channel <= sim.channels:
            sim.unlock(channel)
            if self.unlock_echo:
                state = RELEASED if sim.read_doors()[channel] else LOCKED
                body = bytes([UNLOCK, address, channel, state])
                return [body + bytes([xor8(body)])]
        return []

    def _status(self, address: int, sim: SimBoard) -> bytes:
        doors = sim.read_doors()
        field = 0
        for ch in range(1, sim.channels + 1):
            locked = not doors.get(ch, False)
            if locked != self.hook_inverted:
                field |= 1 << (ch - 1)
        count = max(self.min_status_bytes, (sim.channels + 7) // 8)
        body = bytes([READ_ALL, address]) + field.to_bytes(count, "big") + bytes([READ_ALL_CODE])
        return body + bytes([xor8(body)])


def _next_header(buffer: bytes, start: int) -> int:
    """Index of the next byte that may begin a request (-1 if none)."""
    for i in range(start, len(buffer)):
        if buffer[i] in (UNLOCK, READ_ALL):
            return i
    return -1
