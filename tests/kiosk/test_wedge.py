"""The keyboard-mode scanner's buffer: a scan is the characters typed quickly, then Enter."""

from __future__ import annotations

from kiosk_ui.wedge import MAX_CHARS, WedgeBuffer


def typed(buffer: WedgeBuffer, text: str, start: float, step: float = 0.005) -> float:
    now = start
    for ch in text:
        buffer.char(ch, now)
        now += step
    return now


def test_a_scan_ends_with_enter() -> None:
    b = WedgeBuffer()
    now = typed(b, "locker:a:pickup:12345678", 10.0)
    assert b.enter(now) == "locker:a:pickup:12345678"
    assert b.enter(now + 0.01) is None  # Enter alone is nothing


def test_half_a_scan_never_joins_the_next_one() -> None:
    b = WedgeBuffer(gap_s=0.5)
    typed(b, "1234", 10.0)  # the cable was pulled mid-code
    now = typed(b, "87654321", 12.0)
    assert b.enter(now) == "87654321"


def test_enter_long_after_the_last_character_is_not_a_scan() -> None:
    b = WedgeBuffer(gap_s=0.5)
    now = typed(b, "12345678", 10.0)
    assert b.enter(now + 5) is None
    assert b.enter(now + 5.01) is None  # and the stale characters are gone


def test_control_characters_are_dropped_and_an_endless_line_too() -> None:
    b = WedgeBuffer()
    now = typed(b, "12\t34\x1b56", 10.0)
    assert b.enter(now) == "123456"
    now = typed(b, "9" * (MAX_CHARS + 50), 20.0, step=0.0001)
    assert b.enter(now) is None  # no code is that long: not a truncated attempt
    now = typed(b, "9" * MAX_CHARS, 30.0, step=0.0001)
    assert b.enter(now) == "9" * MAX_CHARS
