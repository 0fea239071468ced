"""Modbus relay boards: CRC vectors, then the pymodbus driver over a real pty."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from drivers.modbus_relay import ModbusRelayBoard, forget_client, make_modbus_relay
from drivers.sim import SimBoard
from locker.boards import BoardError
from locker.config import BoardConfig
from simulator.modbus import ModbusRelaySim, crc16


def test_crc_vectors() -> None:
    # Waveshare's flash example: relay 0 on for 700 ms.
    assert crc16(bytes.fromhex("01 05 02 00 00 07")) == bytes.fromhex("8D B0")
    assert crc16(bytes.fromhex("01 02 00 00 00 08")) == bytes.fromhex("79 CC")


@pytest.fixture
def bus() -> Iterator[tuple[ModbusRelaySim, dict[int, SimBoard]]]:
    sims = {1: SimBoard("m1", 8, door_close_s=0), 2: SimBoard("m2", 8, door_close_s=0)}
    device = ModbusRelaySim(sims, baud=9600)
    yield device, sims
    forget_client(device.path)
    device.close()


def board(device: ModbusRelaySim, slave: int = 1, **kw: object) -> ModbusRelayBoard:
    fields: dict[str, object] = {
        "name": f"m{slave}",
        "driver": "modbus-relay",
        "port": device.path,
        "baud": 9600,
        "address": slave,
        "timeout_ms": 200,
        "retries": 2,
        "pulse_ms": 700,
    }
    fields.update(kw)
    return make_modbus_relay(BoardConfig(**fields))  # type: ignore[arg-type]


def test_read_and_flash_unlock(bus: tuple[ModbusRelaySim, dict[int, SimBoard]]) -> None:
    device, sims = bus
    b1 = board(device)
    assert b1.read_doors() == dict.fromkeys(range(1, 9), False)
    before = len(device.received)
    b1.unlock(3)
    # one request, the board-timed pulse: coil 0x0202, 7 x 100 ms
    assert device.received[before:] == [
        bytes.fromhex("01 05 02 02 00 07") + crc16(bytes.fromhex("01 05 02 02 00 07"))
    ]
    assert b1.read_doors()[3] is True
    sims[1].jammed.add(4)
    b1.unlock(4)
    assert b1.read_doors()[4] is False


def test_two_slaves_and_the_silent_interval(
    bus: tuple[ModbusRelaySim, dict[int, SimBoard]],
) -> None:
    device, sims = bus
    b1, b2 = board(device, 1), board(device, 2)
    assert b1.line is b2.line
    sims[2].open_door(8)
    for _ in range(5):
        assert b1.read_doors()[8] is False
        assert b2.read_doors()[8] is True
    gaps = [b - a for a, b in zip(device.arrivals, device.arrivals[1:], strict=False)]
    # request 8 bytes + reply 6 bytes on the wire (ten bits each at 8N1, as the simulator
    # takes them), plus 3.5 characters of silence (eleven-bit characters, as Modbus counts)
    wire, silence = (8 + 6) * 10 / 9600, 3.5 * 11 / 9600
    assert min(gaps) >= (wire + silence) * 0.95


def test_faults_are_retried_then_reported(
    bus: tuple[ModbusRelaySim, dict[int, SimBoard]],
) -> None:
    device, _ = bus
    b1 = board(device)
    device.faults.no_reply = 1
    assert b1.read_doors()[1] is False
    device.faults.bad_checksum = 1
    assert b1.read_doors()[1] is False
    device.faults.offline = True
    with pytest.raises(BoardError) as err:
        b1.read_doors()
    assert err.value.board == "m1" and err.value.frames
    assert any(" > 01 02 00 00 00 08" in f for f in err.value.frames)
    device.faults.offline = False
    assert b1.read_doors()[1] is False


def test_a_missed_reply_that_the_retry_recovers_logs_nothing_alarming(
    bus: tuple[ModbusRelaySim, dict[int, SimBoard]], caplog: pytest.LogCaptureFixture
) -> None:
    device, _ = bus
    b1 = board(device)
    caplog.set_level(logging.DEBUG)
    device.faults.no_reply = 1
    assert b1.read_doors()[1] is False
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("attempt 1" in r.getMessage() for r in caplog.records)  # kept for debugging


def test_inverted_inputs_and_bad_channel(bus: tuple[ModbusRelaySim, dict[int, SimBoard]]) -> None:
    device, _ = bus
    device.inputs_inverted = True
    b1 = board(device, door_open_high=False)
    assert not any(b1.read_doors().values())
    with pytest.raises(BoardError, match="no channel 9"):
        b1.unlock(9)


def test_an_echo_that_differs_is_retried(bus: tuple[ModbusRelaySim, dict[int, SimBoard]]) -> None:
    device, sims = bus
    b1 = board(device)
    device.wrong_echo = 1
    before = len(device.received)
    b1.unlock(2)  # the first echo names another duration: sent again, echoed right
    pulse = bytes.fromhex("01 05 02 01 00 07")
    assert device.received[before:] == [pulse + crc16(pulse)] * 2
    assert sims[1].is_open(2)
    device.wrong_echo = 5
    with pytest.raises(BoardError, match="not echoed"):
        b1.unlock(3)


def test_an_exception_reply_is_a_clear_answer_not_retried(
    bus: tuple[ModbusRelaySim, dict[int, SimBoard]],
) -> None:
    device, _ = bus
    b1 = board(device, channels=16)  # the board has 8 inputs: exception 2
    before = len(device.received)
    with pytest.raises(BoardError, match=r"refused it \(illegal data address, code 2\)") as err:
        b1.read_doors()
    assert len(device.received) - before == 1  # asked once: the board answered
    assert any(" < 01 82 02" in f for f in err.value.frames)


def test_the_last_board_on_a_line_closes_the_port(
    bus: tuple[ModbusRelaySim, dict[int, SimBoard]],
) -> None:
    from drivers import modbus_relay

    device, _ = bus
    b1, b2 = board(device, 1), board(device, 2)
    b1.read_doors()
    b1.close()
    b1.close()  # twice is once
    assert b2.read_doors()[1] is False  # the line is still there for the other board
    assert b2.line.client.connected
    b2.close()
    assert not b2.line.client.connected
    assert device.path not in modbus_relay._lines
    b3 = board(device, 1)  # a new board gets a new line
    assert b3.line is not b2.line and b3.read_doors()[1] is False


def test_a_reply_in_two_pieces_is_one_reply(
    bus: tuple[ModbusRelaySim, dict[int, SimBoard]],
) -> None:
    device, sims = bus
    b1 = board(device)
    device.faults.split = True  # each reply in two halves with a pause between
    before = len(device.received)
    b1.unlock(5)
    pulse = bytes.fromhex("01 05 02 04 00 07")
    assert device.received[before:] == [pulse + crc16(pulse)]  # echoed whole: sent once
    assert b1.line.last_received == pulse + crc16(pulse)
    assert b1.read_doors()[5] is True
    assert sims[1].is_open(5)
