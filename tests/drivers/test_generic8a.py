"""Generic 8A board: the worked examples, the simulator, then the driver over a pty."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from drivers.bus import FrameError, forget_bus
from drivers.generic8a import (
    Generic8aBoard,
    decode_read_all,
    make_generic8a,
    read_all_request,
    unlock_request,
    xor8,
)
from drivers.registry import CATALOGUE, board_config, make_board
from drivers.sim import SimBoard
from locker.boards import BoardError
from locker.config import BoardConfig, ConfigError, load_config
from simulator.generic8a import Generic8aSim

H = bytes.fromhex


def framed(hexbody: str) -> bytes:
    body = H(hexbody)
    return body + bytes([xor8(body)])


def on(doors: dict[int, bool] | tuple[bool, ...]) -> list[int]:
    values = doors.values() if isinstance(doors, dict) else doors
    return [i + 1 for i, v in enumerate(values) if v]


# -- codecs: the worked examples of PROTOCOLS.md -------------------------------------------


def test_unlock_worked_example() -> None:
    assert unlock_request(1, 1) == H("8A 01 01 11 9B")


def test_read_all_request_carries_its_xor() -> None:
    assert read_all_request(1) == H("80 01 00 33 B2")
    assert read_all_request(31) == H("80 1F 00 33 AC")


def test_read_all_worked_reply_of_an_8_channel_board() -> None:
    bits = decode_read_all(H("80 01 00 00 00 33 B2"), 1, 8)
    assert bits == (False,) * 8


def test_the_last_status_byte_holds_channels_1_to_8() -> None:
    # Three status bytes, big-endian: 24-17, 16-9, 8-1.
    bits = decode_read_all(framed("80 01 80 01 05 33"), 1, 24)
    assert on(bits) == [1, 3, 9, 24]


def test_replies_of_any_length_decode() -> None:
    assert on(decode_read_all(framed("80 02 81 33"), 2, 8)) == [1, 8]  # one status byte
    assert on(decode_read_all(framed("80 02 01 00 00 00 02 33"), 2, 8)) == [2]
    assert len(decode_read_all(framed("80 02 00 00 00 00 33"), 2, 32)) == 32


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (H("80 01 00 00 00 33 B3"), "check byte"),
        (framed("80 02 00 00 00 33"), "from board 2"),
        (framed("8A 01 00 00 00 33"), "framed"),
        (framed("80 01 00 00 00 34"), "framed"),
        (H("80 01 33 B2"), "at least 5"),
        (framed("80 01 00 33"), "holds 8 channels"),
    ],
)
def test_bad_replies_are_refused(reply: bytes, problem: str) -> None:
    channels = 24 if problem == "holds 8 channels" else 8
    with pytest.raises(FrameError, match=problem):
        decode_read_all(reply, 1, channels)


# -- options, checked in one place ---------------------------------------------------------


def cfg(port: str = "/dev/null", name: str = "g1", channels: int = 0, **kw: object) -> BoardConfig:
    options: dict[str, object] = {
        "port": port,
        "baud": 9600,
        "address": 1,
        "timeout_ms": 100,
        "retries": 2,
    }
    options.update(kw)
    return board_config(name, "generic-8a", channels, **options)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"address": 0}, "address: 0 out of range 1-31: set `address` to the board's DIP"),
        ({"address": 32}, "address: 32 out of range 1-31"),
        ({"channels": 65}, "channels: driver generic-8a has at most 64, not 65"),
        ({"port": None}, "port: required for driver generic-8a"),
    ],
)
def test_bad_options_are_refused_before_the_port_is_opened(
    options: dict[str, object], problem: str
) -> None:
    given = {"port": "/nonexistent/tty", "address": 1, **options}
    channels = int(given.pop("channels", 0))  # type: ignore[call-overload]
    if given["port"] is None:
        del given["port"]
    with pytest.raises(ConfigError, match=problem):
        make_generic8a(BoardConfig("g1", "generic-8a", channels, given))


def test_the_config_knows_the_driver_and_its_factory_rate(tmp_path: Path) -> None:
    path = tmp_path / "locker.toml"
    path.write_text(
        '[locker]\nid = "s"\ndata_dir = "d"\n'
        '[[boards]]\nname = "g1"\ndriver = "generic-8a"\nport = "/dev/ttyUSB0"\naddress = 1\n'
        '[[boards]]\nname = "k0"\ndriver = "kerong-cu48"\nport = "/dev/ttyUSB1"\n'
        '[[compartments]]\nnumber = 1\nchannel = 1\nboard = "g1"\nsize = "S"\n'
    )
    config = load_config(path, CATALOGUE)
    assert config.board("g1").options["baud"] == 9600  # the boards' factory setting
    assert config.board("k0").options["baud"] == 19200  # other drivers keep theirs


# -- the simulator and the driver over a pty -------------------------------------------------


@contextmanager
def world(
    channels: int = 8, **sim_options: object
) -> Iterator[tuple[Generic8aSim, dict[int, SimBoard]]]:
    sims = {a: SimBoard(f"g{a}", channels, door_close_s=0) for a in (1, 2)}
    device = Generic8aSim(sims, **sim_options)  # type: ignore[arg-type]
    try:
        yield device, sims
    finally:
        forget_bus(device.path)
        device.close()


def test_reads_unlocks_and_shares_the_bus_with_a_neighbour() -> None:
    with world() as (device, sims):
        g1 = make_board(cfg(device.path, channels=8))
        g2 = make_board(cfg(device.path, name="g2", address=2, channels=8))
        assert isinstance(g1, Generic8aBoard) and isinstance(g2, Generic8aBoard)
        assert g1.bus is g2.bus
        assert sorted(g1.read_doors()) == list(range(1, 9)) and not any(g1.read_doors().values())
        g2.unlock(7)
        assert on(dict(g2.read_doors())) == [7] and not any(g1.read_doors().values())
        sims[1].open_door(8)  # a door forced open
        assert on(dict(g1.read_doors())) == [8]
        assert device.received[-1] == read_all_request(1)
        assert g1.bus.errors == 0


def test_the_example_board_answers_seven_bytes_and_is_read_by_silence() -> None:
    with world() as (device, _):
        board = make_generic8a(cfg(device.path, channels=8))
        board.read_doors()
        replies = [f for f in board.bus.frames if " < " in f]
        assert replies[-1].endswith("< 80 01 00 00 ff 33 4d")  # 7 bytes: 3 status bytes


@pytest.mark.parametrize(("channels", "status_bytes"), [(8, 1), (12, 2), (32, 4), (40, 5)])
def test_boards_answering_other_lengths_are_read_alike(channels: int, status_bytes: int) -> None:
    with world(channels, min_status_bytes=1) as (device, sims):
        board = make_generic8a(cfg(device.path, channels=channels))
        sims[1].open_door(channels)
        board.unlock(1)
        assert on(dict(board.read_doors())) == [1, channels]
        reply = next(f for f in reversed(board.bus.frames) if " < " in f)
        assert len(reply.split(" < ")[1].split()) == 4 + status_bytes
        assert board.bus.errors == 0


def test_unlock_is_one_request_with_no_reply_confirmed_by_reading() -> None:
    with world() as (device, sims):
        board = make_generic8a(cfg(device.path, channels=8))
        board.read_doors()
        before = len(device.received)
        board.unlock(3)
        assert board.read_doors()[3] is True
        assert device.received[before:] == [unlock_request(1, 3), read_all_request(1)]
        assert [ch for _, ch in sims[1].unlocks] == [3] and board.bus.errors == 0


def test_an_unlock_echo_does_not_spill_into_the_next_reading() -> None:
    with world(unlock_echo=True) as (device, sims):
        board = make_generic8a(cfg(device.path, channels=8))
        board.unlock(5)
        assert on(dict(board.read_doors())) == [5]
        assert board.bus.errors == 0 and [ch for _, ch in sims[1].unlocks] == [5]
        assert any(f.endswith("< 8a 01 05 00 8e") for f in board.bus.frames)


def test_a_jammed_lock_stays_shut() -> None:
    with world() as (device, sims):
        board = make_generic8a(cfg(device.path, channels=8))
        sims[1].jammed.add(2)
        board.unlock(2)
        assert board.read_doors()[2] is False


def test_hook_sense_inverted() -> None:
    with world(hook_inverted=True) as (device, sims):
        normal = make_generic8a(cfg(device.path, channels=8))
        assert all(normal.read_doors().values())  # wrong polarity: every door looks open
        inverted = make_generic8a(cfg(device.path, channels=8, hook_sense="inverted"))
        assert not any(inverted.read_doors().values())
        sims[1].open_door(4)
        assert on(dict(inverted.read_doors())) == [4]


def test_channels_it_does_not_have_are_board_errors() -> None:
    with world() as (device, _):
        board = make_generic8a(cfg(device.path, channels=8))
        for channel in (0, 9):
            with pytest.raises(BoardError, match=f"no channel {channel}"):
                board.unlock(channel)
        too_many = make_generic8a(cfg(device.path, channels=32))
        with pytest.raises(BoardError, match="holds 24 channels, the config says 32"):
            too_many.read_doors()


def test_a_lost_reply_is_retried() -> None:
    with world() as (device, _):
        board = make_generic8a(cfg(device.path, channels=8))
        device.faults.no_reply = 1
        assert not any(board.read_doors().values())
        assert board.bus.errors == 1


def test_a_corrupt_reply_is_retried() -> None:
    with world() as (device, _):
        board = make_generic8a(cfg(device.path, channels=8))
        device.faults.bad_checksum = 1
        assert not any(board.read_doors().values())
        assert board.bus.errors == 1 and any(" ! " in f for f in board.bus.frames)


def test_a_reply_with_a_pause_inside_is_still_one_reply() -> None:
    with world() as (device, sims):
        board = make_generic8a(cfg(device.path, channels=8))
        device.faults.split = True  # as a USB adapter's latency timer may deliver it
        sims[1].open_door(6)
        assert on(dict(board.read_doors())) == [6]
        assert board.bus.errors == 0


def test_stale_bytes_in_the_input_are_flushed_before_a_request() -> None:
    with world() as (device, _):
        board = make_generic8a(cfg(device.path, channels=8))
        board.read_doors()  # port open
        os.write(device.master, H("80 01 FF 33"))  # a stale half reply waiting in the input
        assert not any(board.read_doors().values())
        assert board.bus.errors == 0


def test_the_sim_ignores_bad_check_bytes_and_unplugged_boards() -> None:
    with world() as (device, sims):
        board = make_generic8a(cfg(device.path, channels=8, retries=0))
        device.faults.unplugged.add(1)
        with pytest.raises(BoardError, match="no reply"):
            board.read_doors()
        board.unlock(1)  # no reply is expected: nothing to tell yet, the next reading tells
        assert not sims[1].unlocks  # an unplugged board does not act either
        device.faults.unplugged.clear()
        assert not any(board.read_doors().values())  # back by itself
        board.bus.exchange("raw", H("8A 01 01 11 9A"), None)  # check byte off by one
        assert not any(board.read_doors().values()) and not sims[1].unlocks


def test_a_board_off_the_bus_raises_with_the_last_frames() -> None:
    with world() as (device, _):
        board = make_generic8a(cfg(device.path, channels=8, retries=1))
        board.read_doors()
        device.faults.offline = True
        with pytest.raises(BoardError) as err:
            board.read_doors()
        assert err.value.board == "g1" and "no reply" in err.value.detail
        assert len([f for f in err.value.frames if " > 80 01 00 33 b2" in f]) == 3
