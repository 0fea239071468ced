"""How the maintenance screen shows lockerd's audit log and wire frames (no Kivy here).

Every action lockerd writes to its audit log has a text `action_NAME` in both
languages, so a Chinese screen never shows a raw name such as
`maintenance_login`; an action newer than this kiosk is shown as lockerd wrote it.
Times are the cabinet's local wall-clock time.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from kiosk_ui.i18n import Texts

# lockerd names the board or device of these entries only at the start of the detail
# ("b1: no reply", or just "b1"); the rest of the detail is the driver's English text.
NAMED_IN_DETAIL = ("board_offline", "board_online", "device_offline", "device_online")


def hms(at: float) -> str:
    """A moment as the cabinet's local wall-clock time, HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(at))


def local_time(stamp: str) -> str:
    """'2026-11-25T10:14:59.578Z' as the cabinet's local '10:14:59'."""
    try:
        return hms(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return stamp


def frame(line: str) -> str:
    """'1795601699.578 > 02 00 …' as '10:14:59.578 > 02 00 …' (at most 60 characters)."""
    stamp, _, rest = line.partition(" ")
    try:
        at = float(stamp)
    except ValueError:
        return line[:60]
    return f"{hms(at)}.{int(at * 1000) % 1000:03d} {rest}"[:60]


def named(texts: Texts, kind: str, value: str) -> str:
    """A name lockerd gives a thing (an action, a door's state, a fault, a device) in the
    screen's language: the text `KIND_VALUE`, or the name itself if this kiosk has none."""
    key = f"{kind}_{value}".replace(" ", "_")
    return texts.t(key) if texts.has(key) else value


def action_text(texts: Texts, action: str) -> str:
    return named(texts, "action", action)


def audit_row(texts: Texts, r: dict[str, Any]) -> str:
    """One audit entry on one line: time, what happened, and what it happened to."""
    parts = [hms(r["at"]), action_text(texts, r["action"])]
    if r["action"] in NAMED_IN_DETAIL and r.get("detail"):
        name = str(r["detail"]).partition(":")[0]
        # A device (scanner, camera, replica) has a name in the screen's language; a
        # board's name is the technician's own.
        parts.append(named(texts, "device", name) if r["action"].startswith("device") else name)
    if r.get("compartment"):
        parts.append(f"#{r['compartment']}")
    if r.get("order_id"):
        parts.append(str(r["order_id"]))
    return " ".join(parts)
