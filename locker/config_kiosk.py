"""The [kiosk] table: how the touchscreen shows itself (language, size, the store's colours
and logo, where the scanner is, the panel's size, the accessible mode, the voice).

Read twice with the same checks: by lockerd at start (every key of its configuration
is checked) and by `locker-kiosk` from its own kiosk.toml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from locker.config_reader import Reader, names, resolve

LANGUAGES = ("zh", "en")
SIZES = ("800x480", "1024x600")
SCANNER_SIDES = ("left", "right", "below", "none")
_HEX = re.compile(r"#[0-9A-Fa-f]{6}")


@dataclass(frozen=True)
class KioskSection:
    language: str = "zh"  # the language the screen starts in: zh | en
    size: str = "800x480"  # 800x480 | 1024x600
    primary_colour: str = "#0B5FA5"  # the store's colour: buttons, headings ("#RRGGBB")
    accent_colour: str = "#F5A623"  # the second colour: highlights, the countdown
    logo: str = ""  # a PNG shown on the welcome screen; "" = the drawn wordmark
    scanner_side: str = "right"  # where the scanner is: left | right | below | none
    panel_diagonal_in: float = 7.0  # the panel's diagonal, for touch targets in mm
    accessible_timeout_factor: float = 2.0  # time-outs multiplied in the accessible mode
    voice: bool = True  # spoken prompts on the cabinet's speaker
    volume: int = 80  # 0-100

    @property
    def width_height(self) -> tuple[int, int]:
        width, height = self.size.split("x")
        return int(width), int(height)


def rgb(text: str) -> tuple[float, float, float]:
    """ "#RRGGBB" as three channels 0-1."""
    return (int(text[1:3], 16) / 255, int(text[3:5], 16) / 255, int(text[5:7], 16) / 255)


def read_kiosk(r: Reader, base: Path) -> KioskSection:
    """The [kiosk] table read by `r`; ConfigError names the key. A relative `logo` is
    relative to the configuration file's folder (`base`)."""
    r.check_keys(names(KioskSection))
    d = KioskSection()
    logo = r.get_str("logo", d.logo)
    if logo and not logo.lower().endswith(".png"):
        raise r.fail("logo", f'"{logo}" is not a PNG file ("" = the drawn wordmark)')
    return KioskSection(
        language=r.get_choice("language", LANGUAGES, d.language),
        size=r.get_choice("size", SIZES, d.size),
        logo=resolve(base, logo),
        scanner_side=r.get_choice("scanner_side", SCANNER_SIDES, d.scanner_side),
        panel_diagonal_in=r.get_float("panel_diagonal_in", d.panel_diagonal_in, lo=3, hi=40),
        accessible_timeout_factor=r.get_float(
            "accessible_timeout_factor", d.accessible_timeout_factor, lo=1, hi=10
        ),
        voice=r.get_bool("voice", d.voice),
        volume=r.get_int("volume", d.volume, lo=0, hi=100),
        primary_colour=_colour(r, "primary_colour", d.primary_colour),
        accent_colour=_colour(r, "accent_colour", d.accent_colour),
    )


def _colour(r: Reader, key: str, default: str) -> str:
    value = r.get_str(key, default)
    if not _HEX.fullmatch(value):
        raise r.fail(key, f'"{value}" is not a colour "#RRGGBB"')
    return value.upper()
