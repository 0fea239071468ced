"""The kernel's clock synchronisation, as lockerd reports it."""

from __future__ import annotations

import sys

import pytest

from locker import sysclock


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux's")
def test_linux_answers_yes_or_no() -> None:
    assert sysclock.clock_synchronised() in (True, False)


def test_without_a_c_library_it_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sysclock.ctypes.util, "find_library", lambda name: None)
    sysclock._adjtimex.cache_clear()
    try:
        assert sysclock.clock_synchronised() is None
    finally:
        sysclock._adjtimex.cache_clear()


def test_asking_is_cheap_enough_for_every_health_request() -> None:
    # The C library is looked up once (ldconfig is slow), then each answer is a syscall.
    sysclock._adjtimex.cache_clear()
    sysclock.clock_synchronised()
    sysclock.clock_synchronised()
    assert sysclock._adjtimex.cache_info().misses == 1
