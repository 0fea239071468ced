"""Kerong CU48 / CU16: the vendor's worked examples, the simulator, then the driver over a pty."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from drivers.bus import BusSettings, FrameError, SerialBus, forget_bus
from drivers.kerong import (
    KerongCU16Board,
    KerongCU48Board,
    cu16_status_request,
    cu16_unlock_request,
    cu48_status_request,
    cu48_unlock_request,
    decode_cu16_reply,
    decode_cu48_status,
    make_cu16,
    make_cu48,
    sum8,
)
from drivers.registry import board_config
from drivers.sim import SimBoard
from locker.boards import BoardError
from locker.config import BoardConfig, ConfigError
from simulator.kerong import KerongSim

H = bytes.fromhex
World = tuple[KerongSim, dict[int, SimBoard]]


def framed(hexbody: str) -> bytes:
    """A reply body with its SUM8 appended (for replies the documents give no example of)."""
    body = H(hexbody)
    return body + bytes([sum8(body)])


def on(bits: tuple[bool, ...]) -> list[int]:
    return [i + 1 for i, v in enumerate(bits) if v]


# -- codecs: every worked example of PROTOCOLS.md ---------------------------------------


def test_sum8_keeps_the_low_byte() -> None:
    assert sum8(H("02 00 00 50 03")) == 0x55
    assert sum8(H("FF FF 03")) == 0x01


def test_cu48_worked_examples() -> None:
    assert cu48_status_request(0) == H("02 00 00 50 03 55")
    assert cu48_status_request(0x0A) == H("02 0A 00 50 03 5F")
    assert cu48_unlock_request(0, 1) == H("02 00 00 51 03 56")
    assert cu48_unlock_request(0, None) == H("02 00 30 51 03 86")
    locked = decode_cu48_status(H("02 00 00 65 07 00 00 00 00 C0 03 31"), 0)
    assert len(locked) == 48 and on(locked) == [1, 2, 3, 47, 48]


def test_cu48_byte_2_of_a_status_reply_is_ignored() -> None:
    assert on(decode_cu48_status(framed("02 03 7F 65 00 01 00 00 00 00 03"), 3)) == [9]


def test_cu16_worked_examples() -> None:
    assert cu16_status_request(0) == H("02 00 30 03 35")
    assert cu16_unlock_request(0, 1) == H("02 00 31 03 36")
    assert cu16_unlock_request(0, 16) == H("02 0F 31 03 45")
    assert cu16_unlock_request(1, 1) == H("02 10 31 03 46")
    hooks, ir = decode_cu16_reply(framed("02 10 35 05 80 00 00 03"), 1)
    assert len(hooks) == 16 and on(hooks) == [1, 3, 16] and not any(ir)
    # an unlock reply carries the lock in the low nibble; infrared bits decode separately
    hooks, ir = decode_cu16_reply(framed("02 1F 35 00 00 01 80 03"), 1)
    assert not any(hooks) and on(ir) == [1, 16]


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (H("02 00 00 65 07 00 00 00 00 C0 03 32"), "checksum"),
        (H("02 00 00 65 07 00 00 00 00 C0 03"), "11 bytes"),
        (H("02 00 00 65 07 00 00 00 00 C0 03 31 00"), "13 bytes"),
        (framed("02 01 00 65 07 00 00 00 00 C0 03"), "address"),
        (framed("02 00 00 66 07 00 00 00 00 C0 03"), "command"),
        (framed("05 00 00 65 07 00 00 00 00 C0 03"), "STX"),
        (framed("02 00 00 65 07 00 00 00 00 C0 04"), "ETX"),
    ],
)
def test_cu48_bad_replies_are_refused(reply: bytes, problem: str) -> None:
    with pytest.raises(FrameError, match=problem):
        decode_cu48_status(reply, 0)


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (H("02 10 35 05 80 00 00 03 00"), "checksum"),
        (framed("02 10 35 05 80 00 00"), "8 bytes"),
        (framed("02 00 35 05 80 00 00 03"), "board"),
        (framed("02 10 65 05 80 00 00 03"), "command"),
        (framed("06 10 35 05 80 00 00 03"), "STX"),
        (framed("02 10 35 05 80 00 00 02"), "ETX"),
    ],
)
def test_cu16_bad_replies_are_refused(reply: bytes, problem: str) -> None:
    with pytest.raises(FrameError, match=problem):
        decode_cu16_reply(reply, 1)


def test_codecs_refuse_out_of_range_locks_and_boards() -> None:
    bad_calls: tuple[Callable[[], bytes], ...] = (
        lambda: cu48_unlock_request(0, 0),
        lambda: cu48_unlock_request(0, 49),
        lambda: cu16_unlock_request(0, 0),
        lambda: cu16_unlock_request(0, 17),
        lambda: cu16_status_request(16),
    )
    for bad in bad_calls:
        with pytest.raises(ValueError, match="out of range"):
            bad()


# -- worlds: simulated boards on a pty ----------------------------------------------------


@contextmanager
def world(kind: str, channels: int, hook_inverted: bool = False) -> Iterator[World]:
    sims = {a: SimBoard(f"{kind}-{a}", channels, door_close_s=0) for a in (0, 1)}
    device = KerongSim(kind, sims, hook_inverted=hook_inverted)
    try:
        yield device, sims
    finally:
        forget_bus(device.path)  # boards share the bus and do not close it themselves
        device.close()


@pytest.fixture
def cu48() -> Iterator[World]:
    with world("cu48", 48) as w:
        yield w


@pytest.fixture
def cu16() -> Iterator[World]:
    with world("cu16", 16) as w:
        yield w


def board_cfg(
    device: KerongSim, driver: str = "kerong-cu48", channels: int = 0, **kw: object
) -> BoardConfig:
    options: dict[str, object] = {"port": device.path, "timeout_ms": 100, "retries": 2}
    options.update(kw)
    return board_config(f"b{kw.get('address', 0)}", driver, channels, **options)


@pytest.fixture
def raw(cu48: World) -> Iterator[Callable[[bytes, int], bytes]]:
    """Send bytes to the CU48 sim and return what comes back within 150 ms (up to n bytes)."""
    bus = SerialBus(BusSettings(port=cu48[0].path, timeout_s=0.15, retries=0))

    def send(request: bytes, n: int) -> bytes:
        return bus.exchange("raw", request, lambda read: read(n))

    yield send
    bus.close()


# -- the simulator, as seen from the wire --------------------------------------------------


def test_sim_status_of_every_board_answers_in_address_order(
    cu48: World, raw: Callable[[bytes, int], bytes]
) -> None:
    _, sims = cu48
    sims[1].open_door(3)
    replies = raw(H("02 0A 00 50 03 5F"), 24)
    assert len(replies) == 24
    assert decode_cu48_status(replies[:12], 0) == (True,) * 48
    assert on(decode_cu48_status(replies[12:], 1)) == [n for n in range(1, 49) if n != 3]


def test_sim_unlock_all_opens_one_board_and_sends_nothing(
    cu48: World, raw: Callable[[bytes, int], bytes]
) -> None:
    _, sims = cu48
    assert raw(H("02 00 30 51 03 86"), 12) == b""
    assert all(sims[0].read_doors().values())
    assert not any(sims[1].read_doors().values())


def test_sim_ignores_bad_checksums_and_unknown_addresses_and_resyncs(
    cu48: World, raw: Callable[[bytes, int], bytes]
) -> None:
    device, _ = cu48
    assert raw(H("02 00 00 50 03 56"), 12) == b""  # checksum off by one
    assert raw(cu48_status_request(5), 12) == b""  # nobody at address 5
    reply = raw(H("FF 02 13") + cu48_status_request(1), 12)  # line noise, then a request
    assert decode_cu48_status(reply, 1) == (True,) * 48
    assert device.received[-1].endswith(cu48_status_request(1))


# -- the CU48 driver ----------------------------------------------------------------------


def test_cu48_reads_unlocks_and_shares_the_bus(cu48: World) -> None:
    device, sims = cu48
    b0, b1 = make_cu48(board_cfg(device)), make_cu48(board_cfg(device, address=1))
    assert isinstance(b0, KerongCU48Board) and b0.bus is b1.bus
    doors = b0.read_doors()
    assert sorted(doors) == list(range(1, 49)) and not any(doors.values())
    b1.unlock(7)
    assert b1.read_doors()[7] is True
    assert not any(b0.read_doors().values())  # the other board on the bus was not touched
    sims[0].open_door(48)  # someone forces a door open
    assert b0.read_doors()[48] is True
    b0.close()  # the bus stays open for b1
    assert b1.read_doors()[7] is True


def test_cu48_unlock_is_one_request_without_a_reply(cu48: World) -> None:
    device, sims = cu48
    board = make_cu48(board_cfg(device, address=1))
    board.read_doors()
    exchanges, before = board.bus.exchanges, len(device.received)
    board.unlock(7)
    assert board.bus.exchanges == exchanges + 1
    assert board.read_doors()[7] is True  # the sim has consumed the unlock by now
    assert device.received[before:] == [cu48_unlock_request(1, 7), cu48_status_request(1)]
    assert [ch for _, ch in sims[1].unlocks] == [7] and board.bus.errors == 0


def test_cu48_jammed_lock_stays_shut(cu48: World) -> None:
    device, sims = cu48
    board = make_cu48(board_cfg(device))
    sims[0].jammed.add(5)
    board.unlock(5)
    assert board.read_doors()[5] is False


def test_channels_out_of_range_are_board_errors_bad_options_config_errors(cu48: World) -> None:
    device, _ = cu48
    board = make_cu48(board_cfg(device, channels=8))
    assert sorted(board.read_doors()) == list(range(1, 9))
    for channel in (0, 9, 49):
        with pytest.raises(BoardError, match=f"no channel {channel}"):
            board.unlock(channel)
    with pytest.raises(ConfigError, match="channels: driver kerong-cu48 has at most 48"):
        make_cu48(board_cfg(device, channels=49))
    with pytest.raises(ConfigError, match="address: 10 out of range 0-9"):
        make_cu48(board_cfg(device, address=10))  # 0x0A is the broadcast address
    with pytest.raises(ConfigError, match="address: 16 out of range 0-15"):
        make_cu16(board_cfg(device, "kerong-cu16", address=16))
    # A configuration built by hand is checked when the board is built, before any port.
    with pytest.raises(ConfigError, match="board b0: option address: 10 out of range"):
        make_cu48(BoardConfig("b0", "kerong-cu48", 0, {"port": device.path, "address": 10}))


def test_hook_sense_inverted() -> None:
    sim = SimBoard("k0", 48, door_close_s=0)
    device = KerongSim("cu48", {0: sim}, hook_inverted=True)  # NC wiring: bit 1 = unlocked
    try:
        normal = make_cu48(board_cfg(device))
        assert all(normal.read_doors().values())  # wrong polarity: every door looks open
        inverted = make_cu48(board_cfg(device, hook_sense="inverted"))
        assert not any(inverted.read_doors().values())
        sim.open_door(2)
        inverted.unlock(40)
        assert on(tuple(inverted.read_doors().values())) == [2, 40]
    finally:
        forget_bus(device.path)
        device.close()


def test_garbage_in_the_input_is_flushed_before_a_request(cu48: World) -> None:
    device, _ = cu48
    board = make_cu48(board_cfg(device))
    board.read_doors()  # port open
    os.write(device.master, H("02 00 00 65 FF FF"))  # a stale half reply waiting in the input
    assert not any(board.read_doors().values())
    assert board.bus.errors == 0  # read clean the first time, not after a retry


def test_a_lost_reply_is_retried(cu48: World) -> None:
    device, _ = cu48
    board = make_cu48(board_cfg(device))
    device.faults.no_reply = 1
    assert not any(board.read_doors().values())
    assert board.bus.errors == 1


def test_a_corrupt_reply_is_retried(cu48: World) -> None:
    device, _ = cu48
    board = make_cu48(board_cfg(device))
    device.faults.bad_checksum = 1
    assert not any(board.read_doors().values())
    assert board.bus.errors == 1 and any(" ! " in f for f in board.bus.frames)


def test_a_split_reply_is_reassembled(cu48: World) -> None:
    device, sims = cu48
    board = make_cu48(board_cfg(device))
    device.faults.split = True  # every reply, retries included, comes in two pieces
    sims[0].open_door(41)
    assert on(tuple(board.read_doors().values())) == [41]
    assert board.bus.errors == 0


def test_a_board_off_the_bus_raises_with_the_last_frames(cu48: World) -> None:
    device, _ = cu48
    board = make_cu48(board_cfg(device, retries=1))
    board.read_doors()
    device.faults.offline = True
    with pytest.raises(BoardError) as err:
        board.read_doors()
    assert err.value.board == "b0" and "no reply" in err.value.detail
    requests = [f for f in err.value.frames if " > 02 00 00 50 03 55" in f]
    assert len(requests) == 3  # the good read, then the request and its one retry
    device.faults.offline = False
    assert not any(board.read_doors().values())  # back by itself


def test_a_usb_adapter_that_vanishes_and_returns_is_picked_up_again(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB0"
    sim = SimBoard("k0", 48, door_close_s=0)
    first = KerongSim("cu48", {0: sim})
    link.symlink_to(first.path)
    board = make_cu48(board_config("b0", "kerong-cu48", port=str(link), retries=1))
    try:
        assert not any(board.read_doors().values())
        first.close()  # unplugged: the device node is gone
        link.unlink()
        with pytest.raises(BoardError):
            board.read_doors()
        second = KerongSim("cu48", {0: sim})  # plugged back, a new node behind the same name
        link.symlink_to(second.path)
        try:
            sim.open_door(9)
            assert board.read_doors()[9] is True
        finally:
            second.close()
    finally:
        forget_bus(str(link))


# -- the CU16 driver ----------------------------------------------------------------------


def test_cu16_reads_and_unlocks_two_boards_on_one_bus(cu16: World) -> None:
    device, sims = cu16
    b0 = make_cu16(board_cfg(device, "kerong-cu16"))
    b1 = make_cu16(board_cfg(device, "kerong-cu16", address=1))
    assert isinstance(b1, KerongCU16Board) and b1.channels == 16 and b0.bus is b1.bus
    assert sorted(b1.read_doors()) == list(range(1, 17)) and not any(b1.read_doors().values())
    b1.unlock(16)
    assert device.received[-1] == H("02 1F 31 03 55")
    assert b1.read_doors()[16] is True and not any(b0.read_doors().values())
    sims[0].jammed.add(1)
    b0.unlock(1)
    assert b0.read_doors()[1] is False
    sims[0].open_door(2)
    assert on(tuple(b0.read_doors().values())) == [2]
    with pytest.raises(BoardError, match="no channel 17"):
        b1.unlock(17)


def test_cu16_unlock_waits_for_its_reply_and_retries_a_bad_one(cu16: World) -> None:
    device, sims = cu16
    board = make_cu16(board_cfg(device, "kerong-cu16"))
    device.faults.bad_checksum = 1
    board.unlock(4)
    assert board.bus.errors == 1 and [ch for _, ch in sims[0].unlocks] == [4, 4]
    assert any(" < 02 03 35" in f for f in board.bus.frames)  # the reply was read and kept
    device.faults.offline = True
    with pytest.raises(BoardError, match="no reply"):
        board.unlock(5)


def test_cu16_hook_sense_inverted() -> None:
    with world("cu16", 16, hook_inverted=True) as (device, sims):
        board = make_cu16(board_cfg(device, "kerong-cu16", hook_sense="inverted"))
        assert not any(board.read_doors().values())
        sims[0].open_door(9)
        assert on(tuple(board.read_doors().values())) == [9]


def test_a_second_board_asking_other_bus_settings_is_warned_about(
    cu48: World, caplog: pytest.LogCaptureFixture
) -> None:
    device, _ = cu48
    first = make_cu48(board_cfg(device))
    second = make_cu48(board_cfg(device, address=1, baud=9600))
    assert second.bus is first.bus and first.bus.settings.baud == 19200
    assert "b1: port" in caplog.text and "already runs at 19200 baud" in caplog.text


def test_the_maintenance_screen_sees_the_last_frames_on_the_wire(cu48: World) -> None:
    from locker.health import last_frames

    device, _sims = cu48
    board = make_cu48(board_cfg(device))
    try:
        board.read_doors()
        board.unlock(5)
        frames = last_frames(board)
        request = cu48_status_request(0).hex(" ")
        assert any(f.endswith(f"> {request}") for f in frames), frames
        assert frames[-1].endswith(f"> {cu48_unlock_request(0, 5).hex(' ')}")
        assert any(" < " in f for f in frames)  # the board's replies too
        assert last_frames(SimBoard("mem")) == []  # no wire, nothing to show
    finally:
        board.close()
