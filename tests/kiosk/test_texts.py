"""What the screen says about each result, in both languages (no window needed).

The Chinese screens are checked against everything lockerd can send them: each
outcome and reason of a code's result and each action name of its audit log are
read from lockerd's own source, so a new one without a translation fails here.
"""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from kiosk_ui.audit import action_text, audit_row, named
from kiosk_ui.i18n import LANGUAGES, ONE, Texts, load
from kiosk_ui.results import describe
from locker.model import Door, EntryOutcome

LOCKER = Path(__file__).resolve().parents[2] / "locker"
# Runs of Latin letters a Chinese screen may show: what people there call things by, and
# the language button, written in the language it switches to (as a reader looks for it).
ALLOWED_LATIN = {"QR", "English"}


def fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def test_both_languages_have_every_text_with_the_same_fields() -> None:
    en, zh = load("en"), load("zh")
    plurals = {k for k in en if k.endswith(ONE)}  # Chinese has no plural forms
    assert en.keys() - plurals == zh.keys()
    for key in zh:
        assert fields(en[key]) == fields(zh[key]), key
    for key in plurals:
        base = key.removesuffix(ONE)
        assert base in en and fields(en[key]) <= fields(en[base]), key


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
        {"outcome": "wrong", "attempts_left": 1, "reason": None},
        (
            "Wrong code. 1 attempt left",
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
        {"outcome": "wrong", "attempts_left": 1, "reason": "other_locker"},
        (
            "This QR code is for another locker — please check the locker named in your message",
            "1 attempt left",
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
        ("PIN not accepted", ""),
    ),
    (
        {"outcome": "wrong", "reason": "pin_refused", "attempts_left": 1, "wait_s": 0},
        ("PIN not accepted", "1 attempt left"),
    ),
    (
        {"outcome": "refused", "reason": "not_now"},
        ("This code cannot be used now — please go to the service desk", ""),
    ),
    (
        {"outcome": "refused", "reason": None, "message": "text: expected the code as a string"},
        ("This code was not accepted — please go to the service desk", ""),
    ),
]


@pytest.mark.parametrize(("result", "expected"), RESULTS)
def test_each_result_in_english(result: dict[str, object], expected: tuple[str, str]) -> None:
    assert describe(Texts("en"), result) == expected


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(("result", "_expected"), RESULTS[:-1])
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


# -- what lockerd can send, read from its source -------------------------------------------


def _calls(name: str) -> list[ast.Call]:
    """Every call of a function or method called `name` in locker/."""
    found = []
    for path in sorted(LOCKER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called == name:
                    found.append(node)
    return found


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and type(n.value) is str}


# Actions lockerd composes from a template, with every value the template can take. A new
# template fails the test below until it is listed here (and translated).
TEMPLATES = {
    "door_{}": ("forced", "left_open", "jammed", "board_offline", "interrupted"),
    "{}_code": ("deposit", "pickup", "retrieval"),
    "{}_refused": ("deposit", "pickup", "retrieval"),
}


def audit_actions() -> set[str]:
    """Every action name lockerd writes to its audit log: `tx.audit(at, actor, ACTION, …)`
    and `svc.audit_action(actor, ACTION)`."""
    actions: set[str] = set()
    variables: set[str] = set()
    arguments = [(c, 2) for c in _calls("audit")] + [(c, 1) for c in _calls("audit_action")]
    for call, index in arguments:
        arg = call.args[index] if len(call.args) > index else None
        if arg is None:
            arg = next(k.value for k in call.keywords if k.arg == "action")
        if isinstance(arg, ast.Constant):
            actions.add(arg.value)
        elif isinstance(arg, ast.JoinedStr):
            template = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in arg.values)
            assert template in TEMPLATES, f"audit action {template!r}: list its values"
            actions |= {template.format(v) for v in TEMPLATES[template]}
        elif isinstance(arg, ast.Name):
            variables.add(arg.id)
    # An action held in a variable: the strings assigned to it (set_service's in/out).
    for path in sorted(LOCKER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in variables for t in node.targets
            ):
                actions |= _strings(node.value)
    return actions


def result_outcomes_and_reasons() -> tuple[set[str], set[str | None]]:
    """Every outcome a `CodeResult` can have and every `reason` lockerd gives one."""
    outcomes = {str(outcome) for outcome in EntryOutcome}
    reasons: set[str | None] = {None, "pin_refused"}  # pin_refused: the kiosk's own
    for call in _calls("CodeResult"):
        reasons |= {
            k.value.value
            for k in call.keywords
            if k.arg == "reason" and isinstance(k.value, ast.Constant)
        }
    for call in _calls("CodeFormatError"):
        reasons |= {a.value for a in call.args[1:] if isinstance(a, ast.Constant)}
    codes = ast.parse((LOCKER / "codes.py").read_text(encoding="utf-8"))
    for cls in ast.walk(codes):
        if isinstance(cls, ast.ClassDef) and cls.name == "CodeFormatError":
            reasons |= _strings(next(f for f in cls.body if isinstance(f, ast.FunctionDef)).args)
    return outcomes, reasons


def test_lockerds_source_is_read() -> None:
    """The readers above find what they must: a test that reads nothing checks nothing."""
    actions = audit_actions()
    assert {"maintenance_login", "board_offline", "door_jammed", "pickup_code"} <= actions
    assert {"in_service", "out_of_service"} <= actions
    outcomes, reasons = result_outcomes_and_reasons()
    assert outcomes == {"opened", "wrong", "throttled", "refused", "door_failed"}
    assert {"not_a_code", "other_locker", "already_loaded", "not_now"} <= reasons


def diagnostics_names() -> dict[str, list[str]]:
    """The names lockerd's `diagnostics` gives a compartment's door and fault and a device
    that is down (locker/daemon.py), which the maintenance screen shows."""
    return {
        "door": [door.value for door in Door],
        "fault": ["jammed", "board offline"],
        "device": ["camera", "scanner", "replica"],
    }


def latin_words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z]+", text)) - ALLOWED_LATIN


def test_the_chinese_screens_hold_no_english() -> None:
    zh = Texts("zh")
    shown: dict[str, str] = {}
    for key, text in load("zh").items():
        shown[f"text {key}"] = text.format(**dict.fromkeys(fields(text), 7))
    outcomes, reasons = result_outcomes_and_reasons()
    for outcome in outcomes:
        for reason in reasons:
            for purpose in ("pickup", "deposit", "retrieval"):
                result = {
                    "outcome": outcome,
                    "reason": reason,
                    "purpose": purpose,
                    "message": "lockerd's words, in English",
                    "compartments": [7],
                    "attempts_left": 1,
                    "wait_s": 3.0,
                }
                text, note = describe(zh, result)
                shown[f"result {outcome}/{reason}/{purpose}"] = f"{text} {note}"
    for action in audit_actions():
        shown[f"audit {action}"] = action_text(zh, action)
    for kind, values in diagnostics_names().items():
        for value in values:
            shown[f"{kind} {value}"] = named(zh, kind, value)
    english = {where: latin_words(text) for where, text in shown.items() if latin_words(text)}
    assert english == {}


def test_an_alarm_names_its_board() -> None:
    en = Texts("en")
    offline = {"at": 0, "action": "board_offline", "compartment": None, "order_id": None}
    row = audit_row(en, {**offline, "detail": "modbus-1: no reply"})
    assert row.endswith(" board offline modbus-1")
    online = audit_row(en, {**offline, "action": "board_online", "detail": "modbus-1"})
    assert online.endswith(" board online again modbus-1")


def test_one_thing_is_singular_in_english() -> None:
    en = Texts("en")
    singular = {}
    for key, text in load("en").items():
        if key.endswith(("_many", ONE)):
            continue  # several compartments by definition; the singulars themselves
        singular[key] = en.n(key, 1, **dict.fromkeys(fields(text), 1))
    plural_after_one = {k: v for k, v in singular.items() if re.search(r"\b1 (?!is\b)[a-z]+s\b", v)}
    assert plural_after_one == {}
    assert en.n("outbox", 2, n=2) == "2 events waiting"
