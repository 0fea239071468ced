"""The machine's health as the maintenance screen words it, in both languages (no window)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kiosk_ui.i18n import LANGUAGES, Texts
from kiosk_ui.machine import Line, duration, machine_lines

EN, ZH = Texts("en"), Texts("zh")
TARGET = "/media/usb/locker"

# A Raspberry Pi with a replica, as locker/health.py reports it.
PI: dict[str, Any] = {
    "epoch": 3,
    "disk_free_mb": 5321,
    "cpu_temp_c": 54.2,
    "undervoltage": False,
    "throttled": False,
    "uptime_s": 3 * 86400 + 4 * 3600 + 59 * 60,
    "replica": {
        "target": TARGET,
        "ok": True,
        "lag_s": 0.0,
        "copied_at": "2026-12-01T09:00:00.000Z",
        "detail": "",
        "seq": 12,
    },
    "replica_disk_free_mb": 14848,
}


def shown(texts: Texts, health: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    return {line.key: (line.label, line.value, line.warn) for line in machine_lines(texts, health)}


def test_every_reading_of_a_pi_in_english() -> None:
    assert machine_lines(EN, PI) == [
        Line("epoch", "Epoch", "3", False),
        Line("disk", "Data disk", "5321 MB free", False),
        Line("cpu", "CPU", "54.2 °C", False),
        Line("power", "Power", "normal", False),
        Line("uptime", "Up", "3 d 4 h", False),
        Line("replica", "Replica", f"{TARGET}: up to date", False),
        Line("replica_disk", "Replica disk", "14.5 GB free", False),
    ]


def test_every_reading_of_a_pi_in_chinese() -> None:
    assert machine_lines(ZH, PI) == [
        Line("epoch", "数据代次", "3", False),
        Line("disk", "数据盘", "剩余 5321 兆字节", False),
        Line("cpu", "处理器温度", "54.2 ℃", False),
        Line("power", "电源", "正常", False),
        Line("uptime", "运行时间", "3 天 4 小时", False),
        Line("replica", "副本", f"{TARGET}：已同步", False),  # noqa: RUF001 (Chinese punctuation)
        Line("replica_disk", "副本盘", "剩余 14.5 吉字节", False),
    ]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_reading_the_machine_lacks_is_not_shown(lang: str) -> None:
    """A container: no thermal zone, no power flags, no replica configured."""
    lines = machine_lines(Texts(lang), {"epoch": 1, "disk_free_mb": 900, "uptime_s": 42.7})
    assert [line.key for line in lines] == ["epoch", "disk", "uptime"]
    assert not any("None" in line.value for line in lines)
    assert machine_lines(Texts(lang), {}) == []


def test_nothing_shows_none_when_lockerd_sends_null() -> None:
    lines = machine_lines(EN, {"epoch": None, "disk_free_mb": None, "replica": None})
    assert lines == []


@pytest.mark.parametrize(
    ("seconds", "en", "zh"),
    [
        (0, "0 s", "0 秒"),
        (59.9, "59 s", "59 秒"),
        (60, "1 min", "1 分钟"),
        (3599, "59 min", "59 分钟"),
        (3600 + 5 * 60, "1 h 5 min", "1 小时 5 分钟"),
        (86399, "23 h 59 min", "23 小时 59 分钟"),
        (86400, "1 d 0 h", "1 天 0 小时"),
        (3 * 86400 + 4 * 3600, "3 d 4 h", "3 天 4 小时"),
    ],
)
def test_uptime_in_human_units(seconds: float, en: str, zh: str) -> None:
    assert (duration(EN, seconds), duration(ZH, seconds)) == (en, zh)


def test_a_replica_behind_and_failing() -> None:
    def replica(**fields: Any) -> tuple[str, str, bool]:
        return shown(EN, {"replica": {**PI["replica"], **fields}})["replica"]

    assert replica(lag_s=0.4) == ("Replica", f"{TARGET}: up to date", False)  # a copy under way
    assert replica(lag_s=10.0) == ("Replica", f"{TARGET}: 10 s behind", False)
    assert replica(lag_s=10.6) == ("Replica", f"{TARGET}: 11 s behind", True)
    failing = replica(ok=False, lag_s=3.2, detail="[Errno 17] File exists: '/media/usb/locker'")
    assert failing == (
        "Replica",
        f"{TARGET}: FAILING, 3 s behind: [Errno 17] File exists: '/media/usb/locker'",
        True,
    )
    zh = shown(ZH, {"replica": {**PI["replica"], "ok": False, "lag_s": 61, "detail": "x"}})
    assert zh["replica"] == ("副本", f"{TARGET}：复制失败，落后 61 秒：x", True)  # noqa: RUF001


@pytest.mark.parametrize(
    ("health", "key", "warn"),
    [
        ({"disk_free_mb": 200}, "disk", False),
        ({"disk_free_mb": 199}, "disk", True),
        ({"replica": PI["replica"], "replica_disk_free_mb": 200}, "replica_disk", False),
        ({"replica": PI["replica"], "replica_disk_free_mb": 12}, "replica_disk", True),
        ({"cpu_temp_c": 79.9}, "cpu", False),
        ({"cpu_temp_c": 80.0}, "cpu", True),
        ({"undervoltage": True, "throttled": False}, "power", True),
        ({"undervoltage": False, "throttled": True}, "power", False),
        ({"undervoltage": False, "undervoltage_since_boot": True}, "power", False),
    ],
)
@pytest.mark.parametrize("lang", LANGUAGES)
def test_warn_thresholds(lang: str, health: dict[str, Any], key: str, warn: bool) -> None:
    assert shown(Texts(lang), health)[key][2] is warn


def test_the_power_flags_raised_are_named() -> None:
    flags = {
        "undervoltage": True,
        "undervoltage_since_boot": True,
        "throttled": True,
        "throttled_since_boot": False,
    }
    assert shown(EN, flags)["power"] == (
        "Power",
        "UNDER-VOLTAGE now, under-voltage since boot, throttled now",
        True,
    )
    assert shown(ZH, flags)["power"] == ("电源", "当前欠压、开机后曾欠压、当前降频", True)
    assert shown(EN, {"undervoltage": False, "throttled": False})["power"][1] == "normal"


def test_the_chinese_lines_hold_no_english() -> None:
    """Only lockerd's own words (the replica's path and error) may be Latin."""
    health = {
        **PI,
        "cpu_temp_c": 85.0,
        "undervoltage": True,
        "undervoltage_since_boot": True,
        "throttled": True,
        "throttled_since_boot": True,
        "replica": {**PI["replica"], "target": "/", "ok": False, "lag_s": 12, "detail": ""},
        "replica_disk_free_mb": 100,
    }
    latin = {
        line.key: re.findall(r"[A-Za-z]+", line.label + line.value)
        for line in machine_lines(ZH, health)
    }
    assert latin == {key: [] for key in latin}
    assert len(latin) == 7
