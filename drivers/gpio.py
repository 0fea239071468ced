"""Locks on GPIO: a relay per lock, a reed switch per door (gpiozero).

The pulse is timed in software here, so the driver enforces a hard maximum
on-time at the lowest layer: every relay switched on gets an off-deadline,
and a guard thread turns off any relay past it, whatever happened to the
timer that should have done it. A relay left energised burns the solenoid
and leaves the door unlatched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from gpiozero import DigitalInputDevice, OutputDevice
from gpiozero.pins import Factory

from locker.boards import BoardError
from locker.config import BoardConfig

log = logging.getLogger(__name__)

MAX_ON_CAP_S = 5.0
GUARD_PERIOD_S = 0.01


class GpioBoard:
    """Relays and reed switches on the Pi's own pins, as one 'board'."""

    def __init__(self, cfg: BoardConfig, pin_factory: Factory | None = None) -> None:
        self._name = cfg.name
        self.pulse_s = cfg.pulse_ms / 1000
        # Twice the pulse: room for a slow timer, never long enough to cook a solenoid.
        self.max_on_s = min(MAX_ON_CAP_S, 2 * self.pulse_s)
        self._relays = [
            OutputDevice(
                pin, active_high=cfg.active_high, initial_value=False, pin_factory=pin_factory
            )
            for pin in cfg.lock_pins
        ]
        # Pull resistors are either on the cabinet's interface board (door_pull = none,
        # door_open_high saying which level means open) or the Pi's own (up: the reed
        # switch closes to ground; down: to 3.3 V). Either way a cut reed cable reads as
        # an open door: visible, never a silently "closed" one.
        pull = {"up": True, "down": False}.get(cfg.door_pull)
        self._doors = [
            DigitalInputDevice(
                pin,
                pull_up=pull,
                # gpiozero derives the active level from the pull: active = switch closed.
                active_state=cfg.door_open_high if pull is None else None,
                bounce_time=(cfg.debounce_ms / 1000) or None,
                pin_factory=pin_factory,
            )
            for pin in cfg.door_pins
        ]
        self._open_when_active = pull is None
        self._off_at: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._guard = threading.Thread(
            target=self._watch, name=f"gpio-guard-{cfg.name}", daemon=True
        )
        self._guard.start()

    @property
    def name(self) -> str:
        return self._name

    @property
    def channels(self) -> int:
        return len(self._relays)

    def unlock(self, channel: int) -> None:
        if not 1 <= channel <= len(self._relays):
            raise BoardError(self._name, f"no channel {channel} (1-{len(self._relays)})")
        with self._lock:
            self._off_at[channel] = time.monotonic() + self.pulse_s
            self._relays[channel - 1].on()

    def read_doors(self) -> Mapping[int, bool]:
        return {
            ch: bool(dev.value) == self._open_when_active
            for ch, dev in enumerate(self._doors, start=1)
        }

    def _watch(self) -> None:
        """Ends every pulse on time, and any relay on past the hard maximum."""
        on_since: dict[int, float] = {}
        while not self._stop.wait(GUARD_PERIOD_S):
            now = time.monotonic()
            with self._lock:
                for ch, relay in enumerate(self._relays, start=1):
                    if not relay.value:
                        on_since.pop(ch, None)
                        continue
                    since = on_since.setdefault(ch, now)
                    due = self._off_at.get(ch)
                    if (due is not None and now >= due) or now - since >= self.max_on_s:
                        if due is None or now - since >= self.max_on_s:
                            log.error("relay %d of %s on too long: forced off", ch, self._name)
                        relay.off()
                        self._off_at.pop(ch, None)
                        on_since.pop(ch, None)

    def close(self) -> None:
        self._stop.set()
        self._guard.join(timeout=1)
        for relay in self._relays:
            relay.off()
            relay.close()
        for door in self._doors:
            door.close()


def make_gpio(cfg: BoardConfig) -> GpioBoard:
    return GpioBoard(cfg)
