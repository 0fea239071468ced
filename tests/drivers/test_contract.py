"""One contract, every driver: what the domain relies on from any lock board.

Runs against the in-process simulated board, the Kerong CU48 and CU16, the
Modbus relay and the generic 8A drivers over real ptys against the byte-level simulator,
the GPIO driver on gpiozero's MockFactory, and a real board when
LOCKER_TEST_PORT (and LOCKER_TEST_DRIVER, default kerong-cu48; LOCKER_TEST_ADDRESS,
default 0; LOCKER_TEST_BAUD, default 19200) are set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from drivers.bus import forget_bus
from drivers.registry import board_config, make_board
from drivers.sim import SimBoard
from locker.boards import Board, BoardError


@dataclass
class World:
    """The board under test and the means to act as the world around it."""

    board: Board
    channels: int
    open_door: Callable[[int], None]
    close_door: Callable[[int], None]
    jam: Callable[[int], None]
    settle: Callable[[], None] = lambda: None  # let the world react to an unlock


def _sim_world() -> Iterator[World]:
    board = SimBoard("s0", channels=8, door_close_s=0)
    yield World(board, 8, board.open_door, board.close_door, board.jammed.add)


def _pty_world(driver: str, channels: int) -> Iterator[World]:
    sim = SimBoard("p0", channels=channels, door_close_s=0)
    device: object
    baud = 19200
    if driver == "generic-8a":
        from simulator.generic8a import Generic8aSim

        address, baud = 1, 9600  # DIP addresses start at 1; the boards' factory rate
        device = Generic8aSim({address: sim}, baud=baud)
    elif driver == "modbus-relay":
        from simulator.modbus import ModbusRelaySim

        address = 1
        device = ModbusRelaySim({address: sim}, baud=19200)
    else:
        from simulator.kerong import KerongSim

        address = 0
        device = KerongSim(driver.split("-")[1], {address: sim}, baud=19200)
    path: str = device.path  # type: ignore[attr-defined]
    cfg = board_config(
        "p0", driver, channels, port=path, baud=baud, address=address, timeout_ms=100, retries=1
    )
    board = make_board(cfg)
    try:
        yield World(
            board,
            channels,
            sim.open_door,
            sim.close_door,
            sim.jammed.add,
            settle=lambda: time.sleep(0.05),
        )
    finally:
        board.close()  # the last board on the bus: the port closes with it
        device.close()  # type: ignore[attr-defined]


def _gpio_world() -> Iterator[World]:
    from gpiozero.pins.mock import MockFactory

    from drivers.gpio import GpioBoard

    factory = MockFactory()
    locks, doors = (5, 6, 13, 19), (12, 16, 20, 21)
    cfg = board_config("g0", "gpio", lock_pins=locks, door_pins=doors, pulse_ms=100, debounce_ms=0)
    board = GpioBoard(cfg, pin_factory=factory)
    jammed: set[int] = set()

    def door_pin(ch: int) -> object:
        return factory.pin(doors[ch - 1])

    def settle() -> None:
        # The world: a pulsed lock releases its door (unless jammed).
        time.sleep(0.02)
        for ch, lock in enumerate(locks, start=1):
            states = factory.pin(lock).states  # type: ignore[attr-defined]
            if any(s.state for s in states[1:]) and ch not in jammed:
                door_pin(ch).drive_high()  # type: ignore[attr-defined]
        time.sleep(0.02)

    try:
        yield World(
            board,
            4,
            lambda ch: door_pin(ch).drive_high(),  # type: ignore[attr-defined]
            lambda ch: door_pin(ch).drive_low(),  # type: ignore[attr-defined]
            jammed.add,
            settle,
        )
    finally:
        board.close()
        factory.reset()


def _real_world() -> Iterator[World]:
    port = os.environ["LOCKER_TEST_PORT"]
    driver = os.environ.get("LOCKER_TEST_DRIVER", "kerong-cu48")
    cfg = board_config(
        "real",
        driver,
        port=port,
        baud=int(os.environ.get("LOCKER_TEST_BAUD", "19200")),
        address=int(os.environ.get("LOCKER_TEST_ADDRESS", "0")),
    )
    board = make_board(cfg)

    def person(ch: int) -> None:
        raise pytest.skip.Exception("needs a person at a real cabinet")

    try:
        yield World(
            board,
            getattr(board, "channels", cfg.channels or 48),  # the driver's default count
            person,
            person,
            person,
            settle=lambda: time.sleep(0.5),
        )
    finally:
        board.close()
        forget_bus(port)


WORLDS: dict[str, Callable[[], Iterator[World]]] = {
    "sim": _sim_world,
    "kerong-cu48": lambda: _pty_world("kerong-cu48", 48),
    "kerong-cu16": lambda: _pty_world("kerong-cu16", 16),
    "modbus-relay": lambda: _pty_world("modbus-relay", 8),
    "generic-8a": lambda: _pty_world("generic-8a", 8),
    "gpio": _gpio_world,
}
if os.environ.get("LOCKER_TEST_PORT"):
    WORLDS["real"] = _real_world


@pytest.fixture(params=sorted(WORLDS))
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    yield from WORLDS[request.param]()


def test_every_channel_reported_closed_at_rest(world: World) -> None:
    doors = world.board.read_doors()
    assert sorted(doors) == list(range(1, world.channels + 1))
    if world.board.name != "real":  # a real cabinet's doors are wherever people left them
        assert not any(doors.values())


def test_unlock_releases_only_that_door(world: World) -> None:
    world.board.unlock(2)
    world.settle()
    doors = world.board.read_doors()
    assert doors[2] is True
    assert not any(v for ch, v in doors.items() if ch != 2)


def test_doors_moved_by_people_are_read(world: World) -> None:
    world.open_door(3)
    world.settle()
    assert world.board.read_doors()[3] is True
    world.close_door(3)
    world.settle()
    assert world.board.read_doors()[3] is False


def test_an_acknowledged_unlock_of_a_jammed_lock_leaves_the_door_shut(world: World) -> None:
    world.jam(1)
    world.board.unlock(1)
    world.settle()
    assert world.board.read_doors()[1] is False


def test_a_channel_the_board_does_not_have_is_an_error(world: World) -> None:
    with pytest.raises(BoardError):
        world.board.unlock(world.channels + 1)


def test_the_last_frames_are_lines_of_text(world: World) -> None:
    world.board.read_doors()
    frames = world.board.last_frames()
    assert isinstance(frames, list) and all(isinstance(f, str) for f in frames)
    # A board on a wire shows its request; the in-memory and GPIO boards have no wire.
    wired = not isinstance(world.board, SimBoard) and type(world.board).__name__ != "GpioBoard"
    assert bool(frames) == wired
