"""What the machine says about itself: disk space, temperature, power, uptime.

Read from the kernel's own files, never from a tool that may be missing. A
reading the hardware does not offer (no thermal zone in a container, no
firmware throttling flags off a Raspberry Pi) is absent from the result, not an
error: the heartbeat omits it and the maintenance screen shows nothing for it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

# The Pi firmware's throttling flags (bits of `get_throttled`, as `vcgencmd` prints them).
UNDERVOLTAGE_NOW = 1 << 0
FREQ_CAPPED_NOW = 1 << 1
THROTTLED_NOW = 1 << 2
SOFT_TEMP_LIMIT_NOW = 1 << 3
UNDERVOLTAGE_SINCE_BOOT = 1 << 16
THROTTLED_SINCE_BOOT = 1 << 18

# Where kernels publish the flags (newer ones through the firmware driver's sysfs node).
THROTTLED_FILES = (
    "sys/devices/platform/soc/soc:firmware/get_throttled",
    "sys/devices/platform/soc/soc:firmware/raspberrypi-hwmon/get_throttled",
)
THERMAL_ZONE = "sys/class/thermal/thermal_zone0/temp"
UPTIME = "proc/uptime"


@dataclass(frozen=True)
class Power:
    """The firmware's view of the supply: now, and whether it happened since boot."""

    undervoltage: bool
    throttled: bool
    undervoltage_since_boot: bool
    throttled_since_boot: bool

    @classmethod
    def from_flags(cls, flags: int) -> Power:
        return cls(
            undervoltage=bool(flags & UNDERVOLTAGE_NOW),
            throttled=bool(flags & (THROTTLED_NOW | FREQ_CAPPED_NOW | SOFT_TEMP_LIMIT_NOW)),
            undervoltage_since_boot=bool(flags & UNDERVOLTAGE_SINCE_BOOT),
            throttled_since_boot=bool(flags & THROTTLED_SINCE_BOOT),
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


class SysInfo:
    """Readings of this machine; `root` is "/" except in tests (a tree of real files)."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    def disk_free_mb(self, path: Path) -> int | None:
        """Free space for an unprivileged writer on the medium holding `path`."""
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            return None
        return usage.free // (1024 * 1024)

    def cpu_temp_c(self) -> float | None:
        text = _read(self.root / THERMAL_ZONE)
        try:
            return round(int(text) / 1000, 1) if text is not None else None
        except ValueError:
            return None

    def power(self) -> Power | None:
        for name in THROTTLED_FILES:
            text = _read(self.root / name)
            if text is None:
                continue
            try:
                return Power.from_flags(int(text, 16))
            except ValueError:
                return None
        return None

    def uptime_s(self) -> float | None:
        """Seconds since the machine booted."""
        text = _read(self.root / UPTIME)
        try:
            return float(text.split()[0]) if text else None
        except ValueError:
            return None

    def load(self) -> float | None:
        try:
            return round(os.getloadavg()[0], 2)
        except OSError:
            return None
