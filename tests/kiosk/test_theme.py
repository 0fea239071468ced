"""The theme's colours read (WCAG 2.1 AA) whatever colours a store gives, and the panel's
millimetres come out of its size and resolution."""

from __future__ import annotations

import pytest

from kiosk_ui.theme import AA, Theme, contrast, luminance, min_target_px, mm_per_px
from locker.config_kiosk import KioskSection, rgb

# The default, and store colours chosen to be hard: mid-grey (where white and black
# both barely pass), pale yellow, near-white, near-black, a saturated red and green.
STORE_COLOURS = [
    (KioskSection.primary_colour, KioskSection.accent_colour),
    ("#777777", "#767676"),
    ("#FFFF66", "#FFF8E1"),
    ("#F4F6F8", "#FFFFFF"),
    ("#050505", "#111111"),
    ("#FF0000", "#00FF00"),
    ("#E4002B", "#0077C8"),
]


def test_wcag_luminance_and_contrast_match_the_standard_s_figures() -> None:
    # The figures WCAG and every contrast checker give for these pairs.
    assert luminance((1.0, 1.0, 1.0)) == pytest.approx(1.0)
    assert contrast((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)) == pytest.approx(21.0)
    assert contrast(rgb("#767676"), (1.0, 1.0, 1.0)) == pytest.approx(4.54, abs=0.01)
    assert contrast(rgb("#777777"), (1.0, 1.0, 1.0)) == pytest.approx(4.48, abs=0.01)


@pytest.mark.parametrize(("primary", "accent"), STORE_COLOURS)
def test_every_text_colour_of_the_theme_reads_on_its_background(primary: str, accent: str) -> None:
    theme = Theme.from_config(KioskSection(primary_colour=primary, accent_colour=accent))
    pairs = theme.pairs()
    low = {
        name: round(contrast(fg, bg), 2)
        for name, (fg, bg) in pairs.items()
        if contrast(fg, bg) < AA
    }
    assert low == {}, f"below {AA}:1"
    # Every text style the screens use is a declared pair (screens.style reads them).
    assert {"page_ink", "page_heading", "primary", "accent", "card_heading"} <= pairs.keys()


def test_the_default_design_is_not_grey() -> None:
    theme = Theme.from_config(KioskSection())
    r, g, b = theme.primary
    assert max(r, g, b) - min(r, g, b) > 0.4, "a strong primary colour"
    assert luminance(theme.page) > 0.8, "a light page"


def test_nine_millimetres_on_a_seven_inch_800x480_panel_is_about_47_pixels() -> None:
    assert mm_per_px((800, 480), 7.0) == pytest.approx(0.19, abs=0.005)
    assert min_target_px((800, 480), 7.0) == 48  # 9 / 0.1906 = 47.2, rounded up
    assert min_target_px((1024, 600), 7.0) == 61
    assert min_target_px((800, 480), 10.1) < 48


def test_every_text_of_the_maintenance_screen_reads_on_its_background() -> None:
    # The technician's dark screen: its text, the warnings, the buttons, and each
    # compartment's number on its state's colour, door shut and open (the legend's chips).
    from kiosk_ui import maintenance as m

    pairs = {
        "text": (m.LIGHT_TEXT, m.BACKGROUND),
        "warning": (m.WARN_RGBA, m.BACKGROUND),
        "warning_markup": (rgb("#" + m.WARN), m.BACKGROUND[:3]),
        "button": (m.LIGHT_TEXT, m.BUTTON_FACE),
        "button_pressed": (m.LIGHT_TEXT, m.BUTTON_PRESSED),
        "open_chip": (m.OPEN_TEXT, m.LEGEND_OPEN_BACKGROUND),
    }
    for state, colour in m.COLOURS.items():
        for door_open in (False, True):
            pairs[f"{state}_{door_open}"] = (m.cell_text_colour(colour, door_open), colour)
    low = {
        name: round(contrast(fg[:3], bg[:3]), 2)
        for name, (fg, bg) in pairs.items()
        if contrast(fg[:3], bg[:3]) < AA
    }
    assert low == {}, f"below {AA}:1"
