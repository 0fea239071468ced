"""The screen's look in one place: colours, type sizes, spacing, corner radius, and the
size of a millimetre on this panel. No Kivy here (tested without a window).

A calm light design: an off-white page, white cards, near-black text, the store's
primary colour on the main buttons and headings, its accent on what must catch the
eye (opened doors, the countdown). The store may give any colours: where one carries
text, the text is white or near-black, whichever reads better, and where a colour is
itself text it is darkened until it reads (WCAG 2.1 AA, 4.5:1). Every pair of a text
colour and the colour behind it is declared in `Theme.pairs`, so the contrast test
checks them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from locker.config_kiosk import KioskSection, rgb

RGB = tuple[float, float, float]
RGBA = tuple[float, float, float, float]
AA = 4.5  # WCAG 2.1 AA, normal text
TARGET_MM = 9.0  # the smallest touch target
MM_PER_INCH = 25.4

PAGE = rgb("#F4F6F8")
CARD = rgb("#FFFFFF")
INK = rgb("#17202A")
MUTED = rgb("#4B5563")
LINE = rgb("#CBD2D9")
DANGER = rgb("#B42318")
SUCCESS = rgb("#1E7B4A")
WHITE = (1.0, 1.0, 1.0)
BLACK = (0.0, 0.0, 0.0)


def luminance(c: RGB) -> float:
    """WCAG 2.1 relative luminance of an sRGB colour."""

    def linear(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(v) for v in c)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: RGB, b: RGB) -> float:
    """WCAG 2.1 contrast ratio, 1 to 21."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def text_on(bg: RGB) -> RGB:
    """White or near-black, whichever reads better on `bg`; pure black where neither
    reaches AA (a mid-tone: white or black always does, the worse of them at 4.58:1)."""
    best = WHITE if contrast(WHITE, bg) >= contrast(INK, bg) else INK
    return best if contrast(best, bg) >= AA else BLACK


def readable(fg: RGB, bg: RGB) -> RGB:
    """`fg`, darkened (or lightened, on a dark `bg`) in small steps until it reads on `bg`."""
    target = BLACK if luminance(bg) > 0.18 else WHITE
    colour = fg
    for step in range(21):
        t = step / 20
        colour = (
            fg[0] + (target[0] - fg[0]) * t,
            fg[1] + (target[1] - fg[1]) * t,
            fg[2] + (target[2] - fg[2]) * t,
        )
        if contrast(colour, bg) >= AA + 0.05:
            break
    return colour


def rgba(c: RGB, alpha: float = 1.0) -> RGBA:
    return (c[0], c[1], c[2], alpha)


@dataclass(frozen=True)
class Sizes:
    """Type sizes in pixels at the 800x480 layout (scaled with the window's height)."""

    title: float = 40
    heading: float = 30
    body: float = 22
    button: float = 26
    key: float = 34
    small: float = 18


@dataclass(frozen=True)
class Theme:
    """Colours (RGB 0-1), type sizes, spacing and radius of every screen."""

    primary: RGB
    accent: RGB
    logo: str = ""
    page: RGB = PAGE
    card: RGB = CARD
    ink: RGB = INK
    muted: RGB = MUTED
    line: RGB = LINE
    danger: RGB = DANGER
    success: RGB = SUCCESS
    sizes: Sizes = field(default_factory=Sizes)
    spacing: int = 12
    padding: int = 20
    radius: int = 14
    accessible_scale: float = 1.3  # text in the accessible mode

    @classmethod
    def from_config(cls, kiosk: KioskSection) -> Theme:
        return cls(
            primary=rgb(kiosk.primary_colour), accent=rgb(kiosk.accent_colour), logo=kiosk.logo
        )

    # -- colours derived so that every text reads ----------------------------------

    @property
    def on_primary(self) -> RGB:
        return text_on(self.primary)

    @property
    def on_accent(self) -> RGB:
        return text_on(self.accent)

    @property
    def on_danger(self) -> RGB:
        return text_on(self.danger)

    @property
    def on_success(self) -> RGB:
        return text_on(self.success)

    @property
    def heading(self) -> RGB:
        """The primary colour as text on the page (headings, secondary buttons' text)."""
        return readable(self.primary, self.page)

    @property
    def primary_pressed(self) -> RGB:
        """A pressed main button: the primary colour a shade darker (seen in one frame)."""
        return tuple(v * 0.78 for v in self.primary)  # type: ignore[return-value]

    @property
    def card_pressed(self) -> RGB:
        return rgb("#E3E8EE")

    def pairs(self) -> dict[str, tuple[RGB, RGB]]:
        """Every text colour with the colour behind it, by the name widgets are styled
        with (`screens.style`): the contrast test checks each of them."""
        return {
            "page_ink": (self.ink, self.page),
            "page_muted": (self.muted, self.page),
            "page_heading": (self.heading, self.page),
            "page_danger": (readable(self.danger, self.page), self.page),
            "card_ink": (self.ink, self.card),
            "card_muted": (self.muted, self.card),
            "card_heading": (readable(self.primary, self.card), self.card),
            "card_pressed_heading": (readable(self.primary, self.card_pressed), self.card_pressed),
            "primary": (self.on_primary, self.primary),
            "primary_pressed": (text_on(self.primary_pressed), self.primary_pressed),
            "accent": (self.on_accent, self.accent),
            "danger": (self.on_danger, self.danger),
            "success": (self.on_success, self.success),
        }

    def fg(self, pair: str) -> RGBA:
        return rgba(self.pairs()[pair][0])

    def bg(self, pair: str) -> RGBA:
        return rgba(self.pairs()[pair][1])


def mm_per_px(window: tuple[int, int], diagonal_in: float) -> float:
    """Millimetres per pixel of a panel of `diagonal_in` inches showing `window` pixels
    (square pixels): 7 inches at 800x480 is about 0.19 mm."""
    return diagonal_in * MM_PER_INCH / math.hypot(*window)


def min_target_px(window: tuple[int, int], diagonal_in: float) -> int:
    """The smallest touch target on this panel, in pixels (9 mm, rounded up)."""
    return math.ceil(TARGET_MM / mm_per_px(window, diagonal_in))
