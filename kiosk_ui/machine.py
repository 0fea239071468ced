"""The machine's health as the maintenance screen shows it (no Kivy here).

lockerd's `health` (and so `diagnostics`) carries the database's epoch, the
replica, disk space, CPU temperature, the Pi's power flags and uptime; a reading
the hardware does not offer is absent from it, and so absent from the screen.
Each reading becomes one `Line` in the screen's language, marked `warn` when a
technician should act on it now.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from kiosk_ui.i18n import Texts

# Below this a full disk is near: SQLite cannot commit and the replica cannot copy.
LOW_DISK_MB = 200
# The Pi's firmware caps the clock at 80 °C (soft limit) and throttles hard at 85 °C.
HOT_C = 80.0
# lockerd's own [replica] max_lag_s default: past it the replica is a fault there too.
MAX_LAG_S = 10.0
# A copy follows each commit within about a second: a smaller lag is a copy under way.
CURRENT_LAG_S = 1.0
GB_FROM_MB = 10 * 1024  # from 10 GB, in GB with one decimal

# The Pi's power flags, in the order shown; `undervoltage` (now) is the one to act on.
POWER_FLAGS = ("undervoltage", "undervoltage_since_boot", "throttled", "throttled_since_boot")


class Line(NamedTuple):
    """One reading: `key` names it (the replica's lines start with "replica")."""

    key: str
    label: str
    value: str
    warn: bool


def disk(texts: Texts, mb: int) -> str:
    if mb >= GB_FROM_MB:
        return texts.t("disk_free_gb", gb=f"{mb / 1024:.1f}")
    return texts.t("disk_free_mb", mb=mb)


def duration(texts: Texts, seconds: float) -> str:
    """A time span in the two largest units that matter: '42 s', '5 min', '7 h 3 min',
    '3 d 4 h'."""
    s = int(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return texts.t("span_days", d=days, h=hours)
    if hours:
        return texts.t("span_hours", h=hours, m=minutes)
    if minutes:
        return texts.t("span_minutes", m=minutes)
    return texts.t("span_seconds", s=s)


def replica_line(texts: Texts, replica: Mapping[str, Any]) -> Line:
    lag = float(replica.get("lag_s") or 0.0)
    target = str(replica["target"])
    if not replica["ok"]:
        value = texts.t(
            "replica_failing", target=target, lag=round(lag), detail=replica.get("detail") or ""
        )
        return Line("replica", texts.t("replica"), value, True)
    if lag < CURRENT_LAG_S:
        return Line("replica", texts.t("replica"), texts.t("replica_current", target=target), False)
    value = texts.t("replica_behind", target=target, lag=round(lag))
    return Line("replica", texts.t("replica"), value, lag > MAX_LAG_S)


def power_line(texts: Texts, health: Mapping[str, Any]) -> Line | None:
    """The power flags, when this machine has them (a Raspberry Pi's firmware)."""
    present = [flag for flag in POWER_FLAGS if flag in health]
    if not present:
        return None
    raised = [texts.t(f"power_{flag}") for flag in present if health[flag]]
    value = texts.t("list_separator").join(raised) if raised else texts.t("power_ok")
    return Line("power", texts.t("power"), value, bool(health.get("undervoltage")))


def machine_lines(texts: Texts, health: Mapping[str, Any]) -> list[Line]:
    """lockerd's `health` (or `diagnostics`) reply as the screen's lines, in the order
    shown: the machine first, then the replica."""
    lines: list[Line] = []
    if health.get("epoch") is not None:
        lines.append(Line("epoch", texts.t("epoch"), str(health["epoch"]), False))
    if health.get("disk_free_mb") is not None:
        mb = int(health["disk_free_mb"])
        lines.append(Line("disk", texts.t("data_disk"), disk(texts, mb), mb < LOW_DISK_MB))
    if health.get("cpu_temp_c") is not None:
        temp = float(health["cpu_temp_c"])
        lines.append(
            Line("cpu", texts.t("cpu_temp"), texts.t("celsius", c=f"{temp:.1f}"), temp >= HOT_C)
        )
    power = power_line(texts, health)
    if power is not None:
        lines.append(power)
    if health.get("uptime_s") is not None:
        lines.append(
            Line("uptime", texts.t("uptime"), duration(texts, float(health["uptime_s"])), False)
        )
    if health.get("replica") is not None:
        lines.append(replica_line(texts, health["replica"]))
    if health.get("replica_disk_free_mb") is not None:
        mb = int(health["replica_disk_free_mb"])
        lines.append(
            Line("replica_disk", texts.t("replica_disk"), disk(texts, mb), mb < LOW_DISK_MB)
        )
    return lines
