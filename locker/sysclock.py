"""Whether the kernel's clock is synchronised (NTP, chrony, systemd-timesyncd alike).

A Raspberry Pi has no battery clock: after a power cut without network its
time may be hours off, and with it every deadline and the age of every platform
command. lockerd does not wait for the network to start (a locker must work
offline); it says so in its log and on the maintenance screen instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
_TIMEX_BYTES = 512  # larger than struct timex on every Linux architecture


def clock_synchronised() -> bool | None:
    """True when the kernel's clock is synchronised, False when it says it is not,
    None when this cannot be asked (not Linux)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        adjtimex = ctypes.CDLL(name, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    # modes = 0 (the first field, zeroed): read only, nothing is changed.
    state = adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES))
    if state < 0:
        return None
    return bool(state != TIME_ERROR)
