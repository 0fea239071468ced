"""The serial scanner over a real pty: line endings, noise, unplug and plug back."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import serial

from drivers.scanner import MAX_LINE, LineSplitter, SerialScanner
from simulator.scanner import SimScanner


def test_line_endings_cr_lf_crlf() -> None:
    s = LineSplitter()
    assert s.feed(b"111\r222\n333\r\n444") == ["111", "222", "333"]
    assert s.feed(b"\r\n\r\n") == ["444"]  # empty lines are nothing


def test_noise_is_dropped_and_counted() -> None:
    s = LineSplitter()
    assert s.feed(b"\x00\xff\x13garbage\r\n12345678\r\n") == ["12345678"]
    assert s.feed(b"9" * (MAX_LINE + 10) + b"\r\nlocker:a:pickup:1\n") == ["locker:a:pickup:1"]
    assert s.dropped == 2


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[SimScanner, SerialScanner, queue.Queue[str]]]:
    sim = SimScanner(tmp_path)
    codes: queue.Queue[str] = queue.Queue()
    reader = SerialScanner(
        sim.path,
        9600,
        codes.put,
        on_offline=lambda detail: codes.put(f"OFFLINE {detail}"),
        on_online=lambda: codes.put("ONLINE"),
    )
    reader.start()
    deadline = time.monotonic() + 5
    while not reader.online and time.monotonic() < deadline:
        time.sleep(0.01)
    yield sim, reader, codes
    reader.stop()
    sim.close()


def test_codes_arrive_in_order(rig: tuple[SimScanner, SerialScanner, queue.Queue[str]]) -> None:
    sim, _, codes = rig
    sim.scan("12345678")
    sim.scan("locker:store-001-a:pickup:87654321", ending="\n")
    sim.write_raw(b"555")
    sim.write_raw(b"666\r")
    assert [codes.get(timeout=3) for _ in range(3)] == [
        "12345678",
        "locker:store-001-a:pickup:87654321",
        "555666",
    ]


def test_garbage_then_a_good_code(
    rig: tuple[SimScanner, SerialScanner, queue.Queue[str]],
) -> None:
    sim, reader, codes = rig
    sim.write_raw(bytes(range(256)) + b"\r\n")
    sim.scan("x" * 300)
    sim.scan("0123456789")
    assert codes.get(timeout=3) == "0123456789"
    assert reader.dropped >= 2


def test_unplugged_and_back(rig: tuple[SimScanner, SerialScanner, queue.Queue[str]]) -> None:
    sim, reader, codes = rig
    sim.unplug()
    assert codes.get(timeout=5).startswith("OFFLINE")
    assert not reader.online
    sim.plug()
    assert codes.get(timeout=5) == "ONLINE"
    sim.scan("24681357")
    assert codes.get(timeout=3) == "24681357"


def test_a_scanner_missing_at_start_is_reported_once(tmp_path: Path) -> None:
    events: list[str] = []
    reader = SerialScanner(
        str(tmp_path / "nothing"),
        9600,
        events.append,
        on_offline=lambda d: events.append("OFFLINE"),
    )
    reader.start()
    time.sleep(0.8)  # several reopen attempts
    reader.stop()
    assert events == ["OFFLINE"]


def test_half_a_line_left_waiting_is_dropped_not_joined_to_the_next() -> None:
    s = LineSplitter()
    assert s.feed(b"1234", now=10.0) == []
    assert s.feed(b"5678\r", now=10.1) == ["12345678"]  # one scan in two reads
    assert s.feed(b"9999", now=20.0) == []  # then nothing: noise, or a cable pulled
    assert s.feed(b"87654321\r\n", now=25.0) == ["87654321"]
    assert s.dropped == 1


class OneScanPort:
    """A port holding one scanned line and nothing after it. A read asking for more bytes
    than have come would sit out the port's timeout: the first such read notes how many
    codes had been handed over by then."""

    def __init__(self, data: bytes, codes: list[str]) -> None:
        self.buf = bytearray(data)
        self.codes = codes
        self.out_at_first_wait: int | None = None
        self.waited = threading.Event()

    @property
    def in_waiting(self) -> int:
        return len(self.buf)

    def read(self, size: int = 1) -> bytes:
        if size > len(self.buf):
            if self.out_at_first_wait is None:
                self.out_at_first_wait = len(self.codes)
                self.waited.set()
            time.sleep(0.01)  # the timeout, shortened
        got = bytes(self.buf[:size])
        del self.buf[:size]
        return got

    def close(self) -> None:
        pass


def test_a_line_is_handed_over_before_waiting_for_more_bytes() -> None:
    codes: list[str] = []
    port = OneScanPort(b"12345678\r\n", codes)
    reader = SerialScanner(
        "fake", 9600, codes.append, opener=lambda p, b: cast(serial.Serial, port)
    )
    reader.start()
    try:
        assert port.waited.wait(5)
    finally:
        reader.stop()
    assert codes == ["12345678"]
    assert port.out_at_first_wait == 1  # not held back until the read's timeout
