"""What the bench scripts share: percentiles of measured values (printed, never asserted)."""

from __future__ import annotations


def pct(values: list[float], p: float) -> float:
    """The value below which a fraction `p` of the measurements lie (nearest rank)."""
    return sorted(values)[min(len(values) - 1, int(len(values) * p))]
