"""Codes: generation, keyed hashing, constant-time compare, QR text, the key file, sealing."""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from pytest_mock import MockerFixture

from locker.codes import (
    CodeBook,
    CodeFormatError,
    KeyFileError,
    load_or_create_key,
    new_code,
    parse_code_input,
    qr_text,
)


def test_codes_have_exact_digits_and_keep_leading_zeros(mocker: MockerFixture) -> None:
    assert len(new_code(8)) == 8 and new_code(8).isdigit()
    mocker.patch("secrets.randbelow", return_value=42)
    assert new_code(10) == "0000000042"


def test_codes_are_spread() -> None:
    assert len({new_code(8) for _ in range(2000)}) > 1990


def test_digest_is_keyed() -> None:
    a = CodeBook.from_key(b"a" * 32)
    b = CodeBook.from_key(b"b" * 32)
    assert a.digest("12345678") != b.digest("12345678")
    assert "12345678" not in a.digest("12345678")
    assert a.matches("12345678", a.digest("12345678"))
    assert not a.matches("12345679", a.digest("12345678"))


def test_match_uses_constant_time_compare(mocker: MockerFixture) -> None:
    book = CodeBook.from_key(b"k" * 32)
    spy = mocker.spy(hmac, "compare_digest")
    book.matches("1", book.digest("1"))
    assert spy.call_count == 1


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "locker.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "locker.key"
    load_or_create_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_key(path)


def test_damaged_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "locker.key"
    path.write_text("not hex")
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="not hex"):
        load_or_create_key(path)


def test_qr_text_round_trip() -> None:
    text = qr_text("store-001-a", "pickup", "01234567")
    assert text == "locker:store-001-a:pickup:01234567"
    parsed = parse_code_input(text, "store-001-a")
    assert (parsed.code, parsed.kind) == ("01234567", "pickup")
    parsed = parse_code_input(" 0123456789\r\n", "store-001-a")
    assert (parsed.code, parsed.kind) == ("0123456789", None)
    deposit = parse_code_input(qr_text("store-001-a", "deposit", "99"), "store-001-a")
    assert deposit.kind == "deposit"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("locker:store-002-b:pickup:01234567", "another locker"),
        ("", "no code"),
        ("12ab34", "digits only"),
        ("locker:store-001-a:admin:1234", "not a locker code"),
        ("locker:store-001-a:pickup:12x4", "not a locker code"),
        ("1" * 300, "too long"),
    ],
)
def test_bad_input_is_refused_with_a_message(text: str, message: str) -> None:
    with pytest.raises(CodeFormatError, match=message):
        parse_code_input(text, "store-001-a")


def test_seal_round_trip_and_tamper_detected() -> None:
    book = CodeBook.from_key(b"s" * 32)
    blob = book.seal(b"pickup 12345678")
    assert b"12345678" not in blob
    assert book.unseal(blob) == b"pickup 12345678"
    with pytest.raises(InvalidTag):
        book.unseal(blob[:-1] + bytes([blob[-1] ^ 1]))
