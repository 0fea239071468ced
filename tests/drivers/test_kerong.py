"""Kerong CU48 / CU16: the vendor's worked examples, then the driver over a real pty."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from drivers.bus import FrameError, forget_bus
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
from drivers.sim import SimBoard
from locker.boards import BoardError
from locker.config import BoardConfig
from simulator.kerong import KerongSim

H = bytes.fromhex


def test_cu48_worked_examples() -> None:
    assert cu48_status_request(0) == H("02 00 00 50 03 55")
    assert cu48_status_request(0x0A) == H("02 0A 00 50 03 5F")
    assert cu48_unlock_request(0, 1) == H("02 00 00 51 03 56")
    assert cu48_unlock_request(0, None) == H("02 00 30 51 03 86")
    locked = decode_cu48_status(H("02 00 00 65 07 00 00 00 00 C0 03 31"), 0)
    assert [i + 1 for i, v in enumerate(locked) if v] == [1, 2, 3, 47, 48]


def test_cu16_worked_examples() -> None:
    assert cu16_status_request(0) == H("02 00 30 03 35")
    assert cu16_unlock_request(0, 1) == H("02 00 31 03 36")
    assert cu16_unlock_request(0, 16) == H("02 0F 31 03 45")
    assert cu16_unlock_request(1, 1) == H("02 10 31 03 46")
    body = H("02 10 35 05 80 00 00 03")
    hooks, ir = decode_cu16_reply(body + bytes([sum8(body)]), 1)
    assert [i + 1 for i, v in enumerate(hooks) if v] == [1, 3, 16] and not any(ir)


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (H("02 00 00 65 07 00 00 00 00 C0 03 32"), "checksum"),
        (H("02 00 00 65 07 00 00 00 00 C0 03"), "11 bytes"),
        (H("02 01 00 65 07 00 00 00 00 C0 03 32"), "address"),
        (H("02 00 00 66 07 00 00 00 00 C0 03 32"), "command"),
        (H("05 00 00 65 07 00 00 00 00 C0 03 34"), "STX"),
    ],
)
def test_cu48_bad_replies_are_refused(reply: bytes, problem: str) -> None:
    with pytest.raises(FrameError, match=problem):
        decode_cu48_status(reply, 0)


def test_codecs_refuse_out_of_range_locks() -> None:
    with pytest.raises(ValueError, match="out of range"):
        cu48_unlock_request(0, 49)
    with pytest.raises(ValueError, match="out of range"):
        cu16_unlock_request(0, 17)


@pytest.fixture
def cu48() -> Iterator[tuple[KerongSim, dict[int, SimBoard]]]:
    sims = {0: SimBoard("k0", 48, door_close_s=0), 1: SimBoard("k1", 48, door_close_s=0)}
    device = KerongSim("cu48", sims)
    yield device, sims
    forget_bus(device.path)
    device.close()


def board_cfg(device: KerongSim, driver: str = "kerong-cu48", **kw: object) -> BoardConfig:
    fields: dict[str, object] = {
        "name": f"b{kw.get('address', 0)}",
        "driver": driver,
        "port": device.path,
        "timeout_ms": 100,
        "retries": 2,
    }
    fields.update(kw)
    return BoardConfig(**fields)  # type: ignore[arg-type]


def test_cu48_reads_unlocks_and_shares_the_bus(
    cu48: tuple[KerongSim, dict[int, SimBoard]],
) -> None:
    device, sims = cu48
    b0, b1 = make_cu48(board_cfg(device)), make_cu48(board_cfg(device, address=1))
    assert isinstance(b0, KerongCU48Board) and b0.bus is b1.bus
    assert not any(b0.read_doors().values())
    before = len(device.received)
    b1.unlock(7)
    assert b1.read_doors()[7] is True
    # one unlock = one request on the bus (then the status request just made)
    assert device.received[before:] == [cu48_unlock_request(1, 7), cu48_status_request(1)]
    assert not any(b0.read_doors().values())
    sims[0].open_door(48)  # someone pulls a door open
    assert b0.read_doors()[48] is True


def test_cu48_jammed_lock_stays_shut(cu48: tuple[KerongSim, dict[int, SimBoard]]) -> None:
    device, sims = cu48
    board = make_cu48(board_cfg(device))
    sims[0].jammed.add(5)
    board.unlock(5)
    assert board.read_doors()[5] is False


def test_hook_sense_inverted(tmp_path: object) -> None:
    sim = SimBoard("k0", 48, door_close_s=0)
    device = KerongSim("cu48", {0: sim}, hook_inverted=True)
    try:
        normal = make_cu48(board_cfg(device))
        assert all(normal.read_doors().values())  # wrong polarity: every door looks open
        inverted = make_cu48(board_cfg(device, hook_sense="inverted"))
        assert not any(inverted.read_doors().values())
        sim.open_door(2)
        assert inverted.read_doors()[2] is True
    finally:
        forget_bus(device.path)
        device.close()


def test_garbage_in_the_input_is_flushed(cu48: tuple[KerongSim, dict[int, SimBoard]]) -> None:
    device, _ = cu48
    board = make_cu48(board_cfg(device))
    board.read_doors()  # port open
    os.write(device.master, b"\x02\x00\x00\x65\xff\xff")  # a stale half reply
    assert not any(board.read_doors().values())


def test_missing_and_corrupt_replies_are_retried(
    cu48: tuple[KerongSim, dict[int, SimBoard]],
) -> None:
    device, _ = cu48
    board = make_cu48(board_cfg(device))
    device.faults.no_reply = 1
    assert not any(board.read_doors().values())
    device.faults.bad_checksum = 1
    assert not any(board.read_doors().values())
    device.faults.split = True
    assert not any(board.read_doors().values())
    assert board.bus.errors == 2


def test_a_board_off_the_bus_raises_with_the_last_frames(
    cu48: tuple[KerongSim, dict[int, SimBoard]],
) -> None:
    device, _ = cu48
    board = make_cu48(board_cfg(device, retries=1))
    board.read_doors()
    device.faults.offline = True
    with pytest.raises(BoardError) as err:
        board.read_doors()
    assert err.value.board == "b0" and "no reply" in err.value.detail
    assert any(" > 02 00 00 50 03 55" in f for f in err.value.frames)
    device.faults.offline = False
    assert not any(board.read_doors().values())  # back by itself


def test_cu16_over_the_wire() -> None:
    sims = {0: SimBoard("c0", 16, door_close_s=0), 1: SimBoard("c1", 16, door_close_s=0)}
    device = KerongSim("cu16", sims)
    try:
        b1 = make_cu16(board_cfg(device, "kerong-cu16", address=1))
        assert isinstance(b1, KerongCU16Board) and b1.channels == 16
        b1.unlock(16)
        assert device.received[-1] == H("02 1F 31 03 55")
        assert b1.read_doors()[16] is True
        with pytest.raises(BoardError, match="no channel 17"):
            b1.unlock(17)
    finally:
        forget_bus(device.path)
        device.close()


def test_a_usb_adapter_that_vanishes_and_returns_is_picked_up_again(tmp_path: object) -> None:
    from pathlib import Path

    link = Path(str(tmp_path)) / "ttyUSB0"
    sim = SimBoard("k0", 48, door_close_s=0)
    first = KerongSim("cu48", {0: sim})
    link.symlink_to(first.path)
    board = make_cu48(BoardConfig(name="b0", driver="kerong-cu48", port=str(link), retries=1))
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
