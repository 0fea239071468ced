"""The serial barcode/QR scanner: one code per line, ending in CR, LF or CRLF.

A reader thread turns bytes into lines and hands each good one to
`on_code` (the daemon posts it to its loop as `method = "scanner"`). Noise —
empty lines, binary garbage, lines over 256 characters — is dropped with a
log line. When the device vanishes (USB unplugged) the port is closed and
reopened with a capped backoff until it is back; nothing here ever raises
into the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.options import Options, ScannerDriver, option
from locker.config import ScannerSection
from locker.config_reader import BAUDS
from locker.scanners import ScannerEvents

if TYPE_CHECKING:
    import serial

log = logging.getLogger(__name__)

MAX_LINE = 256
# A scanner sends a whole code in a few milliseconds; bytes left waiting longer than
# this without their line end are a half scan (noise, a cable pulled) and are dropped,
# so they never join the next code as a wrong attempt.
STALE_S = 0.5
BACKOFF_S = 0.2
BACKOFF_MAX_S = 5.0

Opener = Callable[[str, int], "serial.Serial"]


def _open(port: str, baud: int) -> serial.Serial:
    import serial  # noqa: PLC0415 - only where a port is opened: options are checked without it

    return serial.Serial(port, baudrate=baud, timeout=0.1)


def _printable(line: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in line)


class LineSplitter:
    """Bytes in, complete lines out; CR, LF and CRLF each end one line."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._last_cr = False
        self._overlong = False
        self._last_at = 0.0
        self.dropped = 0

    def feed(self, data: bytes, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        if (self._buf or self._overlong) and now - self._last_at > STALE_S:
            self._buf.clear()
            self._overlong = False
            self.dropped += 1
            log.warning("scanner: dropped half a line left without its end")
        self._last_at = now
        lines: list[str] = []
        for b in data:
            if b == 0x0A and self._last_cr:  # the LF of a CRLF
                self._last_cr = False
                continue
            self._last_cr = b == 0x0D
            if b in (0x0A, 0x0D):
                line = self._end()
                if line is not None:
                    lines.append(line)
                continue
            if len(self._buf) >= MAX_LINE:
                self._overlong = True  # keep dropping until the line ends
                continue
            self._buf.append(b)
        return lines

    def _end(self) -> str | None:
        raw, overlong = bytes(self._buf), self._overlong
        self._buf.clear()
        self._overlong = False
        if overlong:
            self.dropped += 1
            log.warning("scanner: dropped a line longer than %d characters", MAX_LINE)
            return None
        if not raw.strip():
            return None
        if not _printable(raw):
            self.dropped += 1
            log.warning("scanner: dropped a line of %d bytes that is not text", len(raw))
            return None
        return raw.decode("ascii").strip()


class SerialScanner:
    """Reads codes from a serial scanner in a thread of its own."""

    def __init__(
        self,
        port: str,
        baud: int,
        on_code: Callable[[str], None],
        *,
        on_offline: Callable[[str], None] | None = None,
        on_online: Callable[[], None] | None = None,
        opener: Opener = _open,
    ) -> None:
        self.port = port
        self.baud = baud
        self.on_code = on_code
        self.on_offline = on_offline
        self.on_online = on_online
        self._opener = opener
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._splitter = LineSplitter()
        self._state: bool | None = None  # None until the first open is tried

    @property
    def name(self) -> str:
        return "scanner"

    @property
    def dropped(self) -> int:
        return self._splitter.dropped

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scanner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def close(self) -> None:
        self.stop()

    def _run(self) -> None:
        backoff = BACKOFF_S
        while not self._stop.is_set():
            try:
                dev = self._opener(self.port, self.baud)
            except OSError as exc:  # pyserial's SerialException is an OSError
                self._went_offline(f"cannot open {self.port}: {exc}")
                self._stop.wait(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
                continue
            backoff = BACKOFF_S
            self._came_online()
            try:
                self._read(dev)
            except (OSError, termios.error) as exc:
                self._went_offline(f"{self.port}: {exc}")
            finally:
                with contextlib.suppress(OSError):
                    dev.close()
            self._splitter = _carry_over(self._splitter)

    def _read(self, dev: serial.Serial) -> None:
        while not self._stop.is_set():
            # Wake on the first byte, then take what else has come: a line is handed over
            # the moment its end is in. (Reading a block waited out the port's timeout,
            # up to 100 ms, on every scan.) The timeout only lets stop() be seen.
            data = dev.read(1)
            if not data:
                continue
            waiting = dev.in_waiting
            if waiting:
                data += dev.read(waiting)
            for line in self._splitter.feed(data):
                self._deliver(line)

    def _deliver(self, line: str) -> None:
        try:
            self.on_code(line)
        except Exception:  # the consumer's bug must not kill the scanner
            log.exception("scanner: handing over a code failed")

    def _went_offline(self, detail: str) -> None:
        # Reported once per outage, including a scanner missing at start.
        if self._state is not False:
            log.warning("scanner unavailable: %s", detail)
            self._state = False
            if self.on_offline is not None:
                self.on_offline(detail)

    def _came_online(self) -> None:
        if self._state is not True:
            log.info("scanner on %s ready", self.port)
            if self._state is False and self.on_online is not None:
                self.on_online()
            self._state = True

    @property
    def online(self) -> bool:
        return self._state is True


def _carry_over(old: LineSplitter) -> LineSplitter:
    """A fresh splitter after a reconnect (a half line from before is noise), same counts."""
    new = LineSplitter()
    new.dropped = old.dropped
    return new


@dataclass(frozen=True)
class SerialScannerOptions(Options):
    port: str = option("", required=True)  # the scanner's serial device
    baud: int = option(9600, choices=BAUDS)


def _make(
    cfg: ScannerSection, options: SerialScannerOptions, events: ScannerEvents
) -> SerialScanner:
    return SerialScanner(
        options.port,
        options.baud,
        events.on_code,
        on_offline=events.on_offline,
        on_online=events.on_online,
    )


DRIVER = ScannerDriver(SerialScannerOptions, _make)
