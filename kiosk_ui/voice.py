"""Spoken prompts: what the cabinet's speaker says about each result, in Chinese or English.

The prompts are WAV files shipped in the package (`kiosk_ui/sounds/{zh,en}/KEY.wav`, made
by `tools/make_voice.py` with espeak-ng and committed): nothing is synthesised or fetched
while the kiosk runs. A prompt's key is the translation key of the text the screen shows
for the same result, so what is said and what is shown are picked by the same rules.

Playback is `aplay` (ALSA) in a subprocess fed from a thread of its own: it needs no
desktop or sound server (a kiosk started by systemd on a Pi has neither), the UI thread
only queues a request, and a missing, busy or hung sound device costs a log line and a
process, never a frame. The volume scales the samples before they are piped to `aplay`,
so it never touches the system mixer that other software may rely on.
"""

from __future__ import annotations

import io
import logging
import math
import subprocess
import sys
import threading
import wave
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locker.config_kiosk import KioskSection

log = logging.getLogger(__name__)

SOUNDS = Path(__file__).resolve().parent / "sounds"
RATE = 16000  # every clip: 16 kHz, mono, 16-bit (plenty for speech, small files)
WIDTH = 2
APLAY = ("aplay", "-q", "-t", "wav", "-")
VOLUME_STEP = 10
SLACK_S = 5.0  # a player still running this long after its clip's end is stuck: killed

# What can be said: keys of kiosk_ui/translations/*.json, spoken without their numbers.
PROMPTS = (
    "opened",
    "opened_many",
    "opened_deposit",
    "opened_deposit_many",
    "opened_retrieval",
    "opened_retrieval_many",
    "close_reminder",
    "thanks",
    "wrong",
    "other_locker",
    "throttled",
    "throttled_desk",  # a wait too long to say (the daily budget spent): staff take over
    "door_failed",
    "refused",
    "not_a_code",
    "already_loaded",
    "not_now",
    "pin_refused",
    "storage",
    "offline",
)
UNITS = ("second", "seconds", "minute", "minutes")
REASONS = ("not_a_code", "already_loaded", "not_now", "storage")  # said as themselves
MOST = 99  # the largest number said; a longer wait is said in minutes, then not at all


def number_clips(n: int, lang: str) -> list[str]:
    """The clips that say `n` (1 to 99): English from its words ("n40", "n2"), Chinese
    from its characters (二十三 is "n2", "n10", "n3"; two of a thing is 两, "liang")."""
    if not 1 <= n <= MOST:
        raise ValueError(f"{n}: only 1 to {MOST} can be said")
    tens, ones = divmod(n, 10)
    if lang == "zh":
        if n == 2:
            return ["liang"]
        head = ([] if tens < 2 else [f"n{tens}"]) + (["n10"] if tens else [])
        return head + ([f"n{ones}"] if ones else [])
    if n < 20:
        return [f"n{n}"]
    return [f"n{tens * 10}"] + ([f"n{ones}"] if ones else [])


def numbers(lang: str) -> tuple[str, ...]:
    """Every number clip of a language."""
    return tuple(sorted({c for n in range(1, MOST + 1) for c in number_clips(n, lang)}))


def clip_names(lang: str) -> tuple[str, ...]:
    """Every clip a language needs: the prompts, the units and its numbers."""
    return PROMPTS + UNITS + numbers(lang)


def prompt_for(r: dict[str, Any]) -> str:
    """The prompt for a code's result, from the fields `results.describe` reads (the same
    rules, so that the voice says what the screen shows)."""
    compartments = r.get("compartments") or []
    many = "_many" if len(compartments) > 1 else ""
    outcome, reason = r["outcome"], r.get("reason")
    if reason == "pin_refused" and outcome != "throttled":
        return "pin_refused"
    if outcome == "opened":
        purpose = r.get("purpose") or "pickup"
        kind = f"_{purpose}" if purpose in ("deposit", "retrieval") else ""
        return f"opened{kind}{many}"
    if outcome == "wrong":
        return "other_locker" if reason == "other_locker" else "wrong"
    if outcome == "throttled":
        return "throttled"
    if outcome == "door_failed":
        return "door_failed"
    if reason in REASONS:
        return str(reason)
    return "refused"


def clips_for(key: str, lang: str, seconds: float | None = None) -> list[str]:
    """The clips said, in order, for prompt `key`: a throttle's wait is said after it ("…
    please wait" 30 "seconds"; past 99 s in minutes; past 99 minutes staff take over)."""
    if key != "throttled" or seconds is None:
        return [key]
    wait = math.ceil(seconds)
    unit = "second"
    if wait > MOST:
        wait, unit = math.ceil(wait / 60), "minute"
    if wait > MOST:
        return ["throttled_desk"]
    if wait < 1:
        return [key]
    return [key, *number_clips(wait, lang), unit if wait == 1 else unit + "s"]


def gain(volume: int) -> float:
    """The samples' factor for a volume of 0-100: squared, so that each step of the
    maintenance screen's - / + sounds like a similar change (loudness is heard about
    logarithmically; 50 is about 12 dB down, not a barely audible 6)."""
    return (max(0, min(100, volume)) / 100) ** 2


def rms(samples: array[int]) -> float:
    """Root mean square of 16-bit samples (0 for none): how loud a clip is."""
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def read_clip(path: Path) -> array[int]:
    """A clip's samples; a file not in the shipped format is refused by name."""
    with wave.open(str(path), "rb") as w:
        shape = (w.getnchannels(), w.getsampwidth(), w.getframerate())
        if shape != (1, WIDTH, RATE):
            raise ValueError(f"{path}: {shape}, expected mono 16-bit {RATE} Hz")
        samples = array("h", w.readframes(w.getnframes()))
    if sys.byteorder == "big":  # WAV is little-endian
        samples.byteswap()
    return samples


def to_wav(samples: array[int]) -> bytes:
    data = array("h", samples)
    if sys.byteorder == "big":
        data.byteswap()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(WIDTH)
        w.setframerate(RATE)
        w.writeframes(data.tobytes())
    return out.getvalue()


@dataclass(frozen=True)
class Request:
    """One prompt the kiosk asked for, and whether it went to the speaker (not when the
    voice is off or the volume is 0)."""

    key: str
    lang: str
    clips: tuple[str, ...]
    volume: int
    sent: bool


class Voice:
    """The speaker. `play` and `say` return at once (called on the UI thread); a newer
    prompt cuts the one being said. `requests` keeps the last prompts asked for, for the
    tests and the maintenance screen. `close()` stops the player thread."""

    def __init__(
        self,
        enabled: bool = True,
        volume: int = 80,
        command: Sequence[str] = APLAY,
        folder: Path = SOUNDS,
    ) -> None:
        self.enabled = enabled
        self.volume = max(0, min(100, volume))
        self.command = list(command)
        self.folder = folder
        self.requests: deque[Request] = deque(maxlen=50)
        self.spoken = 0  # prompts the player said to their end
        self.failures = 0  # prompts the player could not say (no device, no aplay, …)
        self._clips: dict[tuple[str, str], array[int]] = {}
        self._wake = threading.Condition()
        self._next: Request | None = None
        self._player: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._broken = False  # the last attempt failed: said once in the log, not per prompt
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, kiosk: KioskSection, command: Sequence[str] = APLAY) -> Voice:
        """The voice as the `[kiosk]` table sets it at start (`voice`, `volume`)."""
        return cls(enabled=kiosk.voice, volume=kiosk.volume, command=command)

    # -- the UI thread's side ----------------------------------------------------------

    def say(self, result: dict[str, Any], lang: str) -> None:
        """Say a code's result (the throttle's wait with its number)."""
        self.play(prompt_for(result), lang, result.get("wait_s"))

    def play(self, key: str, lang: str, seconds: float | None = None) -> None:
        clips = tuple(clips_for(key, lang, seconds))
        sent = self.enabled and self.volume > 0
        request = Request(key, lang, clips, self.volume, sent)
        self.requests.append(request)
        if not sent:
            return
        with self._wake:
            if self._closed:
                return
            self._next = request
            if self._player is not None and self._player.poll() is None:
                self._player.terminate()  # the newer result is the one that matters
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="voice", daemon=True)
                self._thread.start()
            self._wake.notify()

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            self.stop()

    def set_volume(self, volume: int) -> None:
        self.volume = max(0, min(100, volume))

    def louder(self) -> None:
        self.set_volume(self.volume + VOLUME_STEP)

    def softer(self) -> None:
        self.set_volume(self.volume - VOLUME_STEP)

    def stop(self) -> None:
        """Stop what is being said, and anything waiting to be."""
        with self._wake:
            self._next = None
            if self._player is not None and self._player.poll() is None:
                self._player.terminate()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=SLACK_S + 1)

    @property
    def asked(self) -> list[tuple[str, str]]:
        """(key, language) of every prompt asked for, oldest first."""
        return [(r.key, r.lang) for r in self.requests]

    # -- the player thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._next is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                request, self._next = self._next, None
            if request is not None:
                self._speak(request)

    def _samples(self, request: Request) -> array[int]:
        out = array("h")
        for name in request.clips:
            if (name, request.lang) not in self._clips:
                path = self.folder / request.lang / f"{name}.wav"
                self._clips[name, request.lang] = read_clip(path)
            out.extend(self._clips[name, request.lang])
        factor = gain(request.volume)
        if factor == 1:
            return out
        return array("h", (int(s * factor) for s in out))

    def _speak(self, request: Request) -> None:
        try:
            samples = self._samples(request)
        except (OSError, ValueError, EOFError, wave.Error) as exc:
            self._failed(f"prompt {request.key} ({request.lang}) unreadable: {exc}")
            return
        # Started outside the lock: `play` on the UI thread never waits for a fork.
        try:
            player = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            self._failed(f"cannot start {self.command[0]}: {exc}")
            return
        with self._wake:
            superseded = self._closed or self._next is not None
            if not superseded:
                self._player = player
        if superseded:  # a newer prompt, or the kiosk stopping, came meanwhile
            player.kill()
            player.communicate()
            return
        try:
            _out, err = player.communicate(to_wav(samples), timeout=len(samples) / RATE + SLACK_S)
        except subprocess.TimeoutExpired:
            player.kill()
            player.communicate()
            self._failed(f"{self.command[0]} hung (a sound device that never plays?)")
            return
        finally:
            with self._wake:
                self._player = None
        if player.returncode == 0:
            self.spoken += 1
            if self._broken:
                log.info("speaker working again")
            self._broken = False
        elif player.returncode > 0:  # < 0: cut by a newer prompt, not a fault
            words = err.decode(errors="replace").strip().splitlines()
            self._failed(f"{self.command[0]} failed: {words[-1] if words else player.returncode}")

    def _failed(self, why: str) -> None:
        self.failures += 1
        if not self._broken:
            log.warning("voice prompts not heard: %s (the kiosk goes on without sound)", why)
        self._broken = True
