"""Whether the kernel's clock is synchronised (NTP, chrony, systemd-timesyncd alike).

A Raspberry Pi has no battery clock: after a power cut without network its
time may be hours off, and with it every deadline and the age of every platform
command. lockerd does not wait for the network to start (a locker must work
offline); it says so in its log and on the maintenance screen instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
_TIMEX_BYTES = 512  # larger than struct timex on every Linux architecture


@functools.cache
def _adjtimex() -> Callable[[ctypes.Array[ctypes.c_char]], int] | None:
    # Looked up once: find_library runs ldconfig, far too slow for every health request.
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn: Callable[[ctypes.Array[ctypes.c_char]], int] = ctypes.CDLL(
            name, use_errno=True
        ).adjtimex
    except (OSError, AttributeError):
        return None
    return fn


def clock_synchronised() -> bool | None:
    """True when the kernel's clock is synchronised, False when it says it is not,
    None when this cannot be asked (not Linux). One system call."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    # modes = 0 (the first field, zeroed): read only, nothing is changed.
    state = adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES))
    if state < 0:
        return None
    return bool(state != TIME_ERROR)
