"""A simulated serial scanner: a pty behind a stable path that can be unplugged."""

from __future__ import annotations

import contextlib
import os
import tty
from pathlib import Path


class SimScanner:
    """Types code lines into a pty; `path` is a symlink that survives unplug/plug."""

    def __init__(self, folder: Path, name: str = "scanner") -> None:
        self.path = str(folder / name)
        self._master: int | None = None
        self._slave: int | None = None
        self.plug()

    def plug(self) -> None:
        """A (new) device appears behind the same path, as udev would name it."""
        self.unplug()
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        self._master, self._slave = master, slave
        tmp = self.path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)

    def unplug(self) -> None:
        """The USB cable is pulled: the device and its path are gone."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def write_raw(self, data: bytes) -> None:
        if self._master is None:
            raise OSError("scanner unplugged")
        os.write(self._master, data)

    def scan(self, text: str, ending: str = "\r\n") -> None:
        """One code read, sent as the scanner does: the text and a line ending."""
        self.write_raw(text.encode("ascii") + ending.encode("ascii"))

    def close(self) -> None:
        self.unplug()
