"""The technician PIN: hashed at rest, checked in constant time, weak PINs refused."""

from __future__ import annotations

import hmac
import stat
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from locker.pin import PinError, check_pin, hash_pin, read_pin_hash, write_pin


def test_hash_and_check(mocker: MockerFixture) -> None:
    stored = hash_pin("246810", iterations=1000)
    assert "246810" not in stored and stored.startswith("pbkdf2_sha256$1000$")
    spy = mocker.spy(hmac, "compare_digest")
    assert check_pin("246810", stored)
    assert not check_pin("246811", stored)
    assert spy.call_count == 2
    assert not check_pin("246810", "garbage")
    assert hash_pin("246810") != hash_pin("246810")  # salted


def test_written_private_and_weak_pins_refused(tmp_path: Path) -> None:
    path = tmp_path / "technician.pin"
    assert read_pin_hash(path) is None
    write_pin(path, "13572468")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = read_pin_hash(path)
    assert stored is not None and check_pin("13572468", stored)
    for weak in ("12345", "abcdef", ""):
        with pytest.raises(PinError, match="at least 6 digits"):
            write_pin(path, weak)
