"""The in-process simulated lock board (`driver = "sim"`).

A fake that can act and record, in the manner of gpiozero's mock pins: a door
opens when its lock is pulsed and closes by itself after `door_close_s`
(0 = stays open until `close_door`), and a test or a technician can open,
close, jam or unplug it. Every unlock is recorded, and optionally appended to
a journal file so a test can count what really reached the "wire" across
crashes of the daemon.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from drivers.options import BoardDriver, Options, option
from locker.boards import BoardError, check_channel
from locker.config import BoardConfig

DEFAULT_CHANNELS = 48
MAX_CHANNELS = 256


@dataclass(frozen=True)
class SimOptions(Options):
    # An unlocked door closes by itself after this many seconds (0: stays open).
    door_close_s: float = option(5.0, lo=0, hi=3600)


class SimBoard:
    """A lock board that lives in memory."""

    def __init__(
        self,
        name: str,
        channels: int = DEFAULT_CHANNELS,
        door_close_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        journal: Path | None = None,
    ) -> None:
        self._name = name
        self.channels = channels
        self.door_close_s = door_close_s
        self._mono = monotonic
        self._journal = journal
        self._lock = threading.Lock()
        self._open: dict[int, bool] = dict.fromkeys(range(1, channels + 1), False)
        self._close_at: dict[int, float] = {}
        self.jammed: set[int] = set()
        self.stuck: dict[int, bool] = {}
        self.offline = False
        self.unlocks: list[tuple[float, int]] = []
        # No wire, so no frames of its own; a test may put some here for a screen to show.
        self.frames: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    # -- the Board interface ---------------------------------------------------------

    def unlock(self, channel: int) -> None:
        with self._lock:
            self._check(channel)
            self.unlocks.append((self._mono(), channel))
            if self._journal is not None:
                line = f"{self._name} {channel} {time.time():.6f}\n".encode()
                fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            if channel in self.jammed:
                return
            self._open[channel] = True
            if self.door_close_s > 0:
                self._close_at[channel] = self._mono() + self.door_close_s

    def read_doors(self) -> Mapping[int, bool]:
        with self._lock:
            if self.offline:
                raise BoardError(self._name, "no reply (simulated board unplugged)")
            now = self._mono()
            for channel, due in list(self._close_at.items()):
                if now >= due:
                    self._open[channel] = False
                    del self._close_at[channel]
            doors = dict(self._open)
            doors.update(self.stuck)
            return doors

    def close(self) -> None:
        """Nothing to release."""

    def last_frames(self) -> list[str]:
        return list(self.frames)

    # -- the world acting on the board -------------------------------------------------

    def _check(self, channel: int) -> None:
        if self.offline:
            raise BoardError(self._name, "no reply (simulated board unplugged)")
        check_channel(self._name, channel, self.channels)

    def open_door(self, channel: int) -> None:
        """Someone pulls the door open (forced, when the lock was not pulsed)."""
        with self._lock:
            self._open[channel] = True
            self._close_at.pop(channel, None)

    def close_door(self, channel: int) -> None:
        with self._lock:
            self._open[channel] = False
            self._close_at.pop(channel, None)

    def is_open(self, channel: int) -> bool:
        with self._lock:
            return self._open[channel]


def _make(cfg: BoardConfig, options: SimOptions) -> SimBoard:
    return SimBoard(cfg.name, cfg.channels or DEFAULT_CHANNELS, options.door_close_s)


DRIVER = BoardDriver(SimOptions, _make, DEFAULT_CHANNELS, MAX_CHANNELS)
