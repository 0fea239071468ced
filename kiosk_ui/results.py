"""What the screen says about a code's result (no Kivy here: tested without a window)."""

from __future__ import annotations

import math
from typing import Any

from kiosk_ui.i18n import Texts


def describe(texts: Texts, r: dict[str, Any]) -> tuple[str, str]:
    """What the screen says about a code's result: the text and a second line. Only the
    reply's fields are read, never its English `message`."""
    t = texts.t
    compartments = r.get("compartments", [])
    numbers = ", ".join(str(n) for n in compartments)
    many = "_many" if len(compartments) > 1 else ""
    outcome, reason = r["outcome"], r.get("reason")
    if reason == "pin_refused" and outcome != "throttled":
        left = r.get("attempts_left")
        return t("pin_refused"), "" if left is None else texts.n("attempts_left", left, left=left)
    if outcome == "opened":
        purpose = r.get("purpose") or "pickup"
        if purpose in ("deposit", "retrieval"):
            key = "opened_deposit" if purpose == "deposit" else "opened_retrieval"
            order = t("order_line", order=r["order_id"]) if r.get("order_id") else ""
            return t(key + many, numbers=numbers), order
        return t("opened" + many, numbers=numbers), ""
    if outcome == "wrong":
        left = r["attempts_left"]
        if reason == "other_locker":
            return t("other_locker"), texts.n("attempts_left", left, left=left)
        return texts.n("wrong", left, left=left), t("service_desk_hint")
    if outcome == "throttled":
        return t("throttled", seconds=math.ceil(r["wait_s"])), ""
    if outcome == "door_failed":
        return t("door_failed"), ""
    if reason in ("not_a_code", "already_loaded", "not_now", "pin_refused", "storage"):
        return t(reason), ""
    return t("refused"), ""


def picture_for(r: dict[str, Any]) -> str:
    """The picture beside a result (a kind of `art.KINDS`)."""
    outcome, reason = r["outcome"], r.get("reason")
    if outcome == "opened":
        return "door_open"
    if outcome == "throttled":
        return "wait"
    if outcome in ("door_failed", "refused") or reason in ("not_now", "storage"):
        return "service_desk"
    return "wrong"
