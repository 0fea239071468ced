"""A simulated serial device on a pseudo-terminal, with wire timing and faults on demand.

The driver under test opens the pty's slave path like a real /dev/ttyUSB0;
the device reads requests on the master side, answers as the firmware would,
and takes the real time of every byte at the configured baud rate. Faults a
technician or a test can switch on: no reply, a corrupted checksum, replies
split into pieces with pauses, one board (address) unplugged, and the whole
bus off the wire.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Faults:
    """Switches for misbehaviour; each applies to every reply while set."""

    offline: bool = False  # no reply at all from any board: the bus cable is cut
    # Addresses whose board is unplugged: they neither answer nor act on a request,
    # while the other boards on the bus carry on (the responders check it).
    unplugged: set[int] = field(default_factory=set)
    no_reply: int = 0  # drop the next N replies
    bad_checksum: int = 0  # corrupt the last byte of the next N replies
    split: bool = False  # send replies in two pieces with a pause between
    # Line noise for a fault campaign: each reply is dropped, or its last byte corrupted,
    # with these chances (drawn from `rng`, seeded by the campaign so a run replays).
    drop_p: float = 0.0
    corrupt_p: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    dropped: int = 0  # replies dropped and corrupted by the chances above, for the counts
    corrupted: int = 0


class PtyDevice:
    """Owns a pty pair and a thread that turns request bytes into reply bytes.

    `respond(data) -> (consumed, replies)` is given everything received and not
    yet consumed; it returns how many bytes it used and the replies to send.
    """

    def __init__(
        self,
        respond: Callable[[bytes], tuple[int, list[bytes]]],
        baud: int = 19200,
        name: str = "device",
    ) -> None:
        self._respond = respond
        self.baud = baud
        self.name = name
        self.faults = Faults()
        self.master, slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        # Keep the slave open ourselves so the pty survives the driver closing it.
        self._slave = slave
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pty-{name}", daemon=True)
        self.received: list[bytes] = []
        self._thread.start()

    @property
    def char_s(self) -> float:
        return 10 / self.baud

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                # A silent gap ends whatever partial frame was pending (as RTU framing does).
                if buffer and len(buffer) > 256:
                    buffer = b""
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                continue
            time.sleep(len(chunk) * self.char_s)  # the request's own wire time
            buffer += chunk
            consumed, replies = self._respond(buffer)
            if consumed:
                self.received.append(buffer[:consumed])
                buffer = buffer[consumed:]
            for reply in replies:
                self._send(reply)

    def _send(self, reply: bytes) -> None:
        f = self.faults
        if f.offline:
            return
        if f.no_reply:
            f.no_reply -= 1
            return
        if f.bad_checksum:
            f.bad_checksum -= 1
            reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
        elif f.drop_p or f.corrupt_p:
            draw = f.rng.random()
            if draw < f.drop_p:
                f.dropped += 1
                return
            if draw < f.drop_p + f.corrupt_p:
                f.corrupted += 1
                reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
        pieces = [reply[: len(reply) // 2], reply[len(reply) // 2 :]] if f.split else [reply]
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(0.01)
            time.sleep(len(piece) * self.char_s)
            try:
                os.write(self.master, piece)
            except OSError:
                return
