"""GPIO locks on gpiozero's MockFactory: pulse length, polarity, the hard on-time limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.gpio import GpioBoard
from drivers.registry import board_config
from locker.boards import BoardError

LOCKS, DOORS = (5, 6), (12, 16)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory()
    yield f
    f.reset()


def make(factory: MockFactory, **kw: object) -> GpioBoard:
    options: dict[str, object] = {
        "lock_pins": LOCKS,
        "door_pins": DOORS,
        "pulse_ms": 200,
        "debounce_ms": 0,
    }
    options.update(kw)
    return GpioBoard(board_config("g0", "gpio", **options), pin_factory=factory)


def on_time(factory: MockFactory, pin: int) -> float:
    """How long the pin stayed high (a MockPin stamps each state with the time since the
    previous change)."""
    states = factory.pin(pin).states  # type: ignore[attr-defined]
    ups = [i for i, s in enumerate(states) if s.state]
    assert len(ups) == 1, states
    return float(states[ups[0] + 1].timestamp)


def test_unlock_is_a_pulse_of_pulse_ms(factory: MockFactory) -> None:
    board = make(factory)
    try:
        board.unlock(1)
        assert factory.pin(5).state  # type: ignore[attr-defined]
        time.sleep(0.35)
        assert not factory.pin(5).state  # type: ignore[attr-defined]
        assert 0.19 <= on_time(factory, 5) <= 0.3
        assert not factory.pin(6).state  # type: ignore[attr-defined]
    finally:
        board.close()


def test_active_low_relays(factory: MockFactory) -> None:
    board = make(factory, active_high=False)
    try:
        assert factory.pin(5).state  # type: ignore[attr-defined]  # high = off
        board.unlock(1)
        assert not factory.pin(5).state  # type: ignore[attr-defined]
        time.sleep(0.35)
        assert factory.pin(5).state  # type: ignore[attr-defined]
    finally:
        board.close()


def test_door_inputs_either_polarity(factory: MockFactory) -> None:
    board = make(factory)
    try:
        factory.pin(12).drive_high()  # type: ignore[attr-defined]
        factory.pin(16).drive_low()  # type: ignore[attr-defined]
        assert board.read_doors() == {1: True, 2: False}
    finally:
        board.close()
    factory.reset()
    board = make(factory, door_open_high=False)
    try:
        factory.pin(12).drive_high()  # type: ignore[attr-defined]
        factory.pin(16).drive_low()  # type: ignore[attr-defined]
        assert board.read_doors() == {1: False, 2: True}
    finally:
        board.close()


def test_a_relay_switched_on_behind_the_drivers_back_is_forced_off(
    factory: MockFactory,
) -> None:
    board = make(factory)
    try:
        board._relays[1].on()  # no pulse deadline: a bug elsewhere, or a stuck timer
        time.sleep(0.3)
        assert factory.pin(6).state  # type: ignore[attr-defined]  # still within 2 x pulse
        time.sleep(0.25)
        assert not factory.pin(6).state  # type: ignore[attr-defined]
    finally:
        board.close()


def test_close_leaves_every_relay_off_and_bad_channels_refused(factory: MockFactory) -> None:
    board = make(factory)
    board.unlock(1)
    board.unlock(2)
    with pytest.raises(BoardError, match="no channel 3"):
        board.unlock(3)
    board.close()
    assert not factory.pin(5).state and not factory.pin(6).state  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("pull", "open_high"),
    [("up", True), ("down", False)],
)
def test_the_pis_own_pull_resistors_a_cut_cable_reads_open(
    factory: MockFactory, pull: str, open_high: bool
) -> None:
    board = make(factory, door_pull=pull, door_open_high=open_high)
    try:
        pin: Any = factory.pin(12)
        assert pin.pull == pull
        # Nothing on the input: the pull resistor decides, and that reads as open.
        assert board.read_doors()[1] is True
        low_closes = pull == "up"
        closed, opened = (
            (pin.drive_low, pin.drive_high) if low_closes else (pin.drive_high, pin.drive_low)
        )
        closed()  # the reed switch closes to the other rail
        assert board.read_doors()[1] is False
        opened()
        assert board.read_doors()[1] is True
    finally:
        board.close()
