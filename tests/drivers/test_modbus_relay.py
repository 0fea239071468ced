"""Modbus relay boards: the codec against worked examples and pymodbus, then the driver
over a real pty on the shared serial transport."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from drivers import bus as bus_module
from drivers.bus import FrameError, Refused, forget_bus
from drivers.modbus_relay import (
    ModbusRelayBoard,
    decode_inputs,
    flash_request,
    make_modbus_relay,
    read_inputs_request,
)
from drivers.registry import board_config
from drivers.sim import SimBoard
from locker.boards import BoardError
from simulator.modbus import ModbusRelaySim, crc16


def test_crc_vectors() -> None:
    # Waveshare's flash example: relay 0 on for 700 ms.
    assert crc16(bytes.fromhex("01 05 02 00 00 07")) == bytes.fromhex("8D B0")
    assert crc16(bytes.fromhex("01 02 00 00 00 08")) == bytes.fromhex("79 CC")


def test_crc_agrees_with_pymodbus() -> None:
    # The driver's codec is pymodbus, the simulator's CRC its own: checked against each
    # other, so a shared mistake cannot pass unseen.
    from pymodbus.framer.rtu import FramerRTU

    for frame in (flash_request(7, 3, 5), read_inputs_request(247, 32), b"\x01\x82\x02"):
        body = frame if len(frame) == 3 else frame[:-2]
        assert crc16(body) == FramerRTU.compute_CRC(body).to_bytes(2, "big")


def test_codec_requests_and_replies() -> None:
    assert read_inputs_request(1, 8) == bytes.fromhex("01 02 00 00 00 08 79 CC")
    assert flash_request(1, 1, 7)[:-2] == bytes.fromhex("01 05 02 00 00 07")
    reply = bytes.fromhex("01 02 01 05")
    assert decode_inputs(reply + crc16(reply), 1, 8) == (True, False, True) + (False,) * 5
    with pytest.raises(FrameError, match="CRC"):
        decode_inputs(reply + b"\x00\x00", 1, 8)
    with pytest.raises(FrameError, match="slave 1, asked 2"):
        decode_inputs(reply + crc16(reply), 2, 8)
    refused = bytes.fromhex("01 82 02")
    with pytest.raises(Refused, match="illegal data address"):
        decode_inputs(refused + crc16(refused), 1, 8)


@pytest.fixture
def bus() -> Iterator[tuple[ModbusRelaySim, dict[int, SimBoard]]]:
    sims = {1: SimBoard("m1", 8, door_close_s=0), 2: SimBoard("m2", 8, door_close_s=0)}
    device = ModbusRelaySim(sims, baud=9600)
    yield device, sims
    forget_bus(device.path)
    device.close()


def board(
    device: ModbusRelaySim, slave: int = 1, channels: int = 0, **kw: object
) -> ModbusRelayBoard:
    options: dict[str, object] = {
        "port": device.path,
        "baud": 9600,
        "address": slave,
        "timeout_ms": 200,
        "retries": 2,
        "pulse_ms": 700,
    }
    options.update(kw)
    return make_modbus_relay(board_config(f"m{slave}", "modbus-relay", channels, **options))


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
    assert b1.bus is b2.bus
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
    device, _ = bus
    b1, b2 = board(device, 1), board(device, 2)
    b1.read_doors()
    b1.close()
    b1.close()  # twice is once
    assert b2.read_doors()[1] is False  # the bus is still there for the other board
    assert b2.bus.is_open and b2.bus.users == 1
    b2.close()
    assert not b2.bus.is_open
    assert device.path not in bus_module._buses
    b3 = board(device, 1)  # a new board gets a new bus
    assert b3.bus is not b2.bus and b3.read_doors()[1] is False


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
    assert b1.last_frames()[-1].endswith("< " + (pulse + crc16(pulse)).hex(" "))
    assert b1.read_doors()[5] is True
    assert sims[1].is_open(5)


def test_each_unlock_names_its_own_coil_whatever_was_sent_before(
    bus: tuple[ModbusRelaySim, dict[int, SimBoard]],
) -> None:
    """The flash frames are built once a channel and kept: a frame kept under the wrong
    channel would open the wrong door."""
    device, sims = bus
    b1 = board(device)
    before = len(device.received)
    for channel in (2, 3, 2, 8, 3):
        b1.unlock(channel)
    coils = [frame[3] for frame in device.received[before:]]  # coil 0x02NN: channel NN + 1
    assert coils == [1, 2, 1, 7, 2]
    assert [ch for _, ch in sims[1].unlocks] == [2, 3, 2, 8, 3]
