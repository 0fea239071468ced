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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.options import BoardDriver, OptionError, Options, option
from locker.boards import check_channel
from locker.config import BoardConfig

if TYPE_CHECKING:
    from gpiozero.pins import Factory

log = logging.getLogger(__name__)

MAX_ON_CAP_S = 5.0
GUARD_PERIOD_S = 0.01
MAX_CHANNELS = 28  # the BCM pins 0-27, one relay each at the most


@dataclass(frozen=True)
class GpioOptions(Options):
    lock_pins: tuple[int, ...] = option((), required=True, pin=True)  # relay per channel
    door_pins: tuple[int, ...] = option((), pin=True)  # reed switch per channel
    pulse_ms: int = option(500, lo=100, hi=5000)  # relay on-time per unlock
    active_high: bool = option(True)  # the relay is energised by a high output
    # The Pi's own pull resistor on the reed inputs: up | down | none (on the cabinet).
    door_pull: str = option("none", choices=("up", "down", "none"))
    # An open door reads high; with a pull resistor the wiring decides (None: follow it).
    door_open_high: bool | None = option(None)
    debounce_ms: int = option(20, lo=0, hi=1000)  # reed switch debounce

    def __post_init__(self) -> None:
        if not self.lock_pins:
            raise OptionError("lock_pins", "required for driver gpio (one BCM pin per channel)")
        if len(self.door_pins) != len(self.lock_pins):
            raise OptionError("door_pins", f"needs one pin per lock ({len(self.lock_pins)})")
        pins = self.lock_pins + self.door_pins
        if len(set(pins)) != len(pins):
            raise OptionError("door_pins", "a pin is used twice")
        # With the Pi's pull resistor the wiring is fixed: the reed switch closes to the
        # opposite rail, so an open door (or a cut cable) reads as the pulled level.
        wired = self.door_pull != "down"
        if self.door_open_high is None:
            object.__setattr__(self, "door_open_high", wired)
        elif self.door_pull != "none" and self.door_open_high != wired:
            level = "high" if wired else "low"
            raise OptionError(
                "door_open_high",
                f"with door_pull = {self.door_pull} an open door reads {level};"
                " remove door_open_high",
            )


class GpioBoard:
    """Relays and reed switches on the Pi's own pins, as one 'board'."""

    def __init__(
        self,
        cfg: BoardConfig,
        pin_factory: Factory | None = None,
        options: GpioOptions | None = None,
    ) -> None:
        # gpiozero only where pins are claimed: options are checked without it.
        from gpiozero import DigitalInputDevice, OutputDevice  # noqa: PLC0415

        opts = options or DRIVER.read(cfg)
        self._name = cfg.name
        self.pulse_s = opts.pulse_ms / 1000
        # Twice the pulse: room for a slow timer, never long enough to cook a solenoid.
        self.max_on_s = min(MAX_ON_CAP_S, 2 * self.pulse_s)
        self._relays = [
            OutputDevice(
                pin, active_high=opts.active_high, initial_value=False, pin_factory=pin_factory
            )
            for pin in opts.lock_pins
        ]
        # Pull resistors are either on the cabinet's interface board (door_pull = none,
        # door_open_high saying which level means open) or the Pi's own (up: the reed
        # switch closes to ground; down: to 3.3 V). Either way a cut reed cable reads as
        # an open door: visible, never a silently "closed" one.
        pull = {"up": True, "down": False}.get(opts.door_pull)
        self._doors = [
            DigitalInputDevice(
                pin,
                pull_up=pull,
                # gpiozero derives the active level from the pull: active = switch closed.
                active_state=opts.door_open_high if pull is None else None,
                bounce_time=(opts.debounce_ms / 1000) or None,
                pin_factory=pin_factory,
            )
            for pin in opts.door_pins
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
        check_channel(self._name, channel, len(self._relays))
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

    def last_frames(self) -> list[str]:
        return []  # pins, no wire


def make_gpio(cfg: BoardConfig, options: GpioOptions | None = None) -> GpioBoard:
    return GpioBoard(cfg, options=options)


DRIVER = BoardDriver(GpioOptions, make_gpio, 0, MAX_CHANNELS)
