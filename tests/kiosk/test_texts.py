"""What the screen says about each result, in both languages (no window needed)."""

from __future__ import annotations

import string

import pytest

from kiosk_ui.app import describe
from kiosk_ui.i18n import LANGUAGES, Texts, load


def test_both_languages_have_every_text_with_the_same_fields() -> None:
    en, zh = load("en"), load("zh")
    assert en.keys() == zh.keys()
    for key in en:
        fields = {f for _, f, _, _ in string.Formatter().parse(en[key]) if f}
        assert fields == {f for _, f, _, _ in string.Formatter().parse(zh[key]) if f}, key


RESULTS = [
    (
        {"outcome": "opened", "purpose": "pickup", "compartments": [7], "order_id": None},
        ("Compartment 7 is open — take your items and close the door", ""),
    ),
    (
        {"outcome": "opened", "purpose": "deposit", "compartments": [3, 4], "order_id": "SO-9"},
        ("Compartments 3, 4 are open — load the order and close the doors", "Order SO-9"),
    ),
    (
        {"outcome": "opened", "purpose": "retrieval", "compartments": [2], "order_id": "SO-8"},
        ("Compartment 2 is open — take the order out and close the door", "Order SO-8"),
    ),
    (
        {"outcome": "wrong", "attempts_left": 3, "reason": None},
        (
            "Wrong code. 3 attempts left",
            "Orders with fresh goods, large items or five items or more are collected at the"
            " service desk.",
        ),
    ),
    (
        {"outcome": "wrong", "attempts_left": 2, "reason": "other_locker"},
        (
            "This QR code is for another locker — please check the locker named in your message",
            "2 attempts left",
        ),
    ),
    (
        {"outcome": "throttled", "wait_s": 29.2},
        ("Too many wrong codes. Please wait 30 s", ""),
    ),
    (
        {"outcome": "door_failed"},
        ("The door did not open — please go to the service desk", ""),
    ),
    (
        {"outcome": "refused", "reason": "not_a_code"},
        ("That is not a pickup code: codes are digits only", ""),
    ),
    (
        {"outcome": "refused", "reason": "already_loaded"},
        ("This order is already in the locker", ""),
    ),
    (
        {"outcome": "refused", "reason": "pin_refused", "message": "wrong PIN; 4 attempts left"},
        ("PIN refused: wrong PIN; 4 attempts left", ""),
    ),
    (
        {"outcome": "refused", "reason": "not_now"},
        ("This code cannot be used now — please go to the service desk", ""),
    ),
]


@pytest.mark.parametrize(("result", "expected"), RESULTS)
def test_each_result_in_english(result: dict[str, object], expected: tuple[str, str]) -> None:
    assert describe(Texts("en"), result) == expected


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(("result", "_expected"), RESULTS)
def test_each_result_has_its_own_text_in_each_language(
    lang: str, result: dict[str, object], _expected: tuple[str, str]
) -> None:
    text, _note = describe(Texts(lang), result)
    assert text and "{" not in text
    assert text not in describe(Texts(lang), {"outcome": "refused", "message": ""})


def test_chinese_for_the_shopper() -> None:
    zh = Texts("zh")
    assert describe(zh, {"outcome": "opened", "purpose": "pickup", "compartments": [7]}) == (
        "7 号柜门已打开，请取出商品并关好柜门",  # noqa: RUF001 (Chinese punctuation)
        "",
    )
    wrong = describe(zh, {"outcome": "wrong", "attempts_left": 4})[0]
    assert wrong == "取件码错误，还可尝试 4 次"  # noqa: RUF001 (Chinese punctuation)
