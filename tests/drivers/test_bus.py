"""The one serial transport: a port shared by the boards on it, opened once, closed by the last."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from drivers import bus as bus_module
from drivers.bus import BusSettings, forget_bus
from drivers.kerong import KerongCU48Board, make_cu48
from drivers.registry import board_config
from drivers.sim import SimBoard
from locker.boards import BoardError
from simulator.kerong import KerongSim


@pytest.fixture
def device() -> Iterator[KerongSim]:
    sims = {a: SimBoard(f"k{a}", 48, door_close_s=0) for a in (0, 1)}
    device = KerongSim("cu48", sims)
    yield device
    forget_bus(device.path)
    device.close()


def cu48(device: KerongSim, address: int) -> KerongCU48Board:
    return make_cu48(board_config(f"k{address}", "kerong-cu48", port=device.path, address=address))


def test_two_boards_on_one_port_share_one_bus_and_the_last_closes_it(device: KerongSim) -> None:
    a, b = cu48(device, 0), cu48(device, 1)
    assert a.bus is b.bus and a.bus.users == 2
    a.read_doors()
    b.read_doors()
    a.close()
    a.close()  # twice is once: the other board's hold is not given back for it
    assert b.bus.users == 1 and b.bus.is_open
    assert not any(b.read_doors().values())  # the other board carries on
    b.close()
    assert b.bus.users == 0 and not b.bus.is_open
    assert device.path not in bus_module._buses
    c = cu48(device, 0)  # a board built later opens the port again
    assert c.bus is not a.bus and not any(c.read_doors().values())
    c.close()


def test_a_closed_port_is_closed_at_the_os_level(device: KerongSim) -> None:
    a = cu48(device, 0)
    a.read_doors()
    port = a.bus._port
    assert port is not None and port.is_open
    a.close()
    assert not port.is_open


def test_the_silent_interval_follows_the_rate() -> None:
    # Modbus RTU: 3.5 characters of 11 bits up to 19200 baud, 1.75 ms above.
    assert BusSettings("p", 9600).gap_s == pytest.approx(3.5 * 11 / 9600)
    assert BusSettings("p", 19200).gap_s == pytest.approx(0.002005, abs=1e-5)
    assert BusSettings("p", 115200).gap_s == 0.00175


def test_an_exchange_costs_its_wire_time_and_little_more(device: KerongSim) -> None:
    a = cu48(device, 0)
    try:
        a.read_doors()  # the port is open
        wire = BusSettings(device.path).wire_s(6 + 12)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            a.read_doors()
            times.append(time.perf_counter() - t)
        # The reply is read to its known length, never to a time-out; a loaded CI machine
        # gets room, a read that waited out the 100 ms timeout does not.
        assert sorted(times)[len(times) // 2] < wire + 0.02
    finally:
        a.close()


def test_errors_carry_the_last_frames_with_what_came_back(device: KerongSim) -> None:
    a = cu48(device, 0)
    try:
        device.faults.bad_checksum = 3
        with pytest.raises(BoardError) as err:
            a.read_doors()
        assert "checksum" in err.value.detail
        assert any(" < 02 00 00 65" in f for f in err.value.frames)  # the bad reply itself
        assert a.last_frames() == list(a.bus.frames)
    finally:
        a.close()
