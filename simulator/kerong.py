"""Simulated Kerong CU48 / CU16 boards on a pty, answering as the firmware does.

Several boards (addresses) share one simulated bus. Doors come from a
`SimBoard` per address. A request with a bad checksum, or for an address
nobody has (or whose board is unplugged), gets no reply, as on a real bus.
"""

from __future__ import annotations

from drivers.kerong import (
    CU16_REPLY,
    CU16_STATUS,
    CU16_UNLOCK,
    CU48_ALL_LOCKS,
    CU48_BROADCAST,
    CU48_REPLY,
    CU48_STATUS,
    CU48_UNLOCK,
    ETX,
    STX,
    sum8,
)
from drivers.sim import SimBoard
from simulator.pty_device import PtyDevice


def _hook_bytes(sim: SimBoard, locks: int, inverted: bool) -> bytes:
    doors = sim.read_doors()
    out = bytearray((locks + 7) // 8)
    for ch in range(1, locks + 1):
        locked = not doors.get(ch, False)
        if locked != inverted:
            out[(ch - 1) // 8] |= 1 << ((ch - 1) % 8)
    return bytes(out)


class KerongSim(PtyDevice):
    """CU48 or CU16 boards (`kind` "cu48" or "cu16") at their addresses behind one pty.

    `hook_inverted` reports the hook bits the other way round, as a board whose hook
    switches are wired normally-closed does (the driver's `hook_sense = "inverted"`).
    """

    def __init__(
        self,
        kind: str,
        boards: dict[int, SimBoard],
        baud: int = 19200,
        hook_inverted: bool = False,
    ) -> None:
        if kind not in ("cu48", "cu16"):
            raise ValueError(f"unknown Kerong board kind {kind!r}")
        self.kind = kind
        self.boards = boards
        self.hook_inverted = hook_inverted
        self.frame_len = 6 if kind == "cu48" else 5
        super().__init__(self._respond, baud=baud, name=f"kerong-{kind}")

    def _respond(self, buffer: bytes) -> tuple[int, list[bytes]]:
        # The device only calls back when bytes arrive, so answer every whole frame now.
        consumed = 0
        replies: list[bytes] = []
        while True:
            used, frame = self._next_frame(buffer[consumed:])
            consumed += used
            if frame is None:
                return consumed, replies
            replies += self._cu48(frame) if self.kind == "cu48" else self._cu16(frame)

    def _next_frame(self, buffer: bytes) -> tuple[int, bytes | None]:
        """(bytes used, the next well-formed request or None if none is complete yet)."""
        used = 0
        while True:
            # Resynchronise on STX: bytes before it are line noise.
            start = buffer.find(bytes([STX]), used)
            if start < 0:
                return len(buffer), None
            if len(buffer) - start < self.frame_len:
                return start, None
            frame = buffer[start : start + self.frame_len]
            if frame[-2] == ETX and sum8(frame[:-1]) == frame[-1]:
                return start + self.frame_len, frame
            used = start + 1  # not a frame here (or a bad checksum): try the next STX

    def _cu48(self, frame: bytes) -> list[bytes]:
        address, lock, command = frame[1], frame[2], frame[3]
        targets = sorted(self.boards) if address == CU48_BROADCAST else [address]
        replies = []
        for addr in targets:
            sim = self.boards.get(addr)
            if sim is None or addr in self.faults.unplugged:
                continue
            if command == CU48_STATUS:
                body = bytes([STX, addr, 0x00, CU48_REPLY])
                body += _hook_bytes(sim, 48, self.hook_inverted) + bytes([ETX])
                replies.append(body + bytes([sum8(body)]))
            elif command == CU48_UNLOCK:
                locks = range(1, sim.channels + 1) if lock == CU48_ALL_LOCKS else [lock + 1]
                for ch in locks:
                    if ch <= sim.channels:
                        sim.unlock(ch)
                # the CU48 sends no reply to an unlock
        return replies

    def _cu16(self, frame: bytes) -> list[bytes]:
        board, lock, command = frame[1] >> 4, (frame[1] & 0x0F) + 1, frame[2]
        sim = self.boards.get(board)
        if sim is None or board in self.faults.unplugged:
            return []
        if command not in (CU16_STATUS, CU16_UNLOCK):
            return []
        if command == CU16_UNLOCK and lock <= sim.channels:
            sim.unlock(lock)
        body = bytes([STX, frame[1], CU16_REPLY])
        body += _hook_bytes(sim, 16, self.hook_inverted) + b"\x00\x00" + bytes([ETX])
        return [body + bytes([sum8(body)])]
