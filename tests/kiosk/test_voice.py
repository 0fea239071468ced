"""Voice prompts: every clip is shipped in both languages and is speech, each result the
screen can show has its prompt, and the audio layer plays, mutes, scales and survives a
cabinet without a sound device (no window needed).

The player is a real process fed the WAV on its stdin, as `aplay` is: here one that
keeps what it was given, so the test hears exactly what the speaker would.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tomllib
import wave
from array import array
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from test_texts import result_outcomes_and_reasons

from kiosk_ui.i18n import LANGUAGES, ONE, Texts
from kiosk_ui.results import describe
from kiosk_ui.voice import (
    PROMPTS,
    RATE,
    SOUNDS,
    UNITS,
    Voice,
    clip_names,
    clips_for,
    gain,
    number_clips,
    prompt_for,
    read_clip,
    rms,
)
from locker.config_kiosk import KioskSection, read_kiosk
from locker.config_reader import Reader

ROOT = Path(__file__).resolve().parents[2]
SPEECH_RMS = 1000  # about -30 dBFS: espeak-ng's speech, normalised, is well above it
LONGEST_PROMPT_S = 6.0  # a shopper hears it through before the next touch
LONGEST_WORD_S = 1.2  # a number or a unit, said inside a sentence
# Keeps what it is fed as OUT/<n>.wav (n: how many it kept before), then, if asked to,
# hangs like a player stuck on a sound device until it is terminated.
KEEPER = """
import pathlib, sys, time
out = pathlib.Path(sys.argv[1])
data = sys.stdin.buffer.read()
n = len(list(out.glob("*.wav")))
(out / f"{n}.part").write_bytes(data)
(out / f"{n}.part").rename(out / f"{n}.wav")
if len(sys.argv) > 2:
    time.sleep(600)
"""


def keeper(out: Path, hang: bool = False) -> list[str]:
    out.mkdir(exist_ok=True)
    return [sys.executable, "-c", KEEPER, str(out), *(["hang"] if hang else [])]


def kept(out: Path, n: int = 0) -> array[int]:
    path = out / f"{n}.wav"
    wait_for(path.exists, f"the player was fed prompt {n}")
    return read_clip(path)


def said(lang: str, clips: list[str]) -> array[int]:
    samples = array("h")
    for name in clips:
        samples.extend(read_clip(SOUNDS / lang / f"{name}.wav"))
    return samples


# -- the shipped clips ---------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_clip_is_shipped_as_speech_short_enough(lang: str) -> None:
    folder = SOUNDS / lang
    assert {p.stem for p in folder.glob("*.wav")} == set(clip_names(lang)), "missing or stale"
    for name in clip_names(lang):
        samples = read_clip(folder / f"{name}.wav")  # 16 kHz mono 16-bit, or refused
        seconds = len(samples) / RATE
        assert rms(samples) > SPEECH_RMS, f"{lang}/{name}.wav is silent"
        longest = LONGEST_PROMPT_S if name in PROMPTS else LONGEST_WORD_S
        assert 0.2 < seconds <= longest, f"{lang}/{name}.wav lasts {seconds:.2f} s"


def test_both_languages_have_every_prompt_and_unit() -> None:
    for lang in LANGUAGES:
        assert set(PROMPTS + UNITS) <= set(clip_names(lang))
        for n in range(1, 100):
            assert set(number_clips(n, lang)) <= set(clip_names(lang)), (lang, n)


def test_the_package_ships_the_clips() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["kiosk_ui"]
    package = ROOT / "kiosk_ui"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    assert set(SOUNDS.glob("*/*.wav")) <= shipped


def test_a_silent_clip_measures_silent(tmp_path: Path) -> None:
    """The RMS check above can fail: a clip of zeros, or of a faint hiss, is under it."""
    path = tmp_path / "quiet.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(array("h", [0, 40, -40, 0] * 4000).tobytes())
    assert rms(read_clip(path)) < SPEECH_RMS


# -- which prompt for which result ---------------------------------------------------------


class KeyedTexts(Texts):
    """Texts that remember which key gave which text."""

    def __init__(self, lang: str) -> None:
        super().__init__(lang)
        self.keys: dict[str, str] = {}

    def t(self, key: str, **values: object) -> str:
        text = super().t(key, **values)
        self.keys.setdefault(text, key)
        return text


def every_result() -> list[dict[str, Any]]:
    outcomes, reasons = result_outcomes_and_reasons()
    return [
        {
            "outcome": outcome,
            "reason": reason,
            "purpose": purpose,
            "compartments": compartments,
            "order_id": "SO-1",
            "attempts_left": 1,
            "wait_s": 29.2,
        }
        for outcome in sorted(outcomes)
        for reason in sorted(reasons, key=str)
        for purpose in ("pickup", "deposit", "retrieval", None)
        for compartments in ([7], [7, 8])
    ]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_result_has_the_prompt_of_the_text_the_screen_shows(lang: str) -> None:
    results = every_result()
    assert len(results) > 100  # lockerd's outcomes and reasons were read
    for r in results:
        texts = KeyedTexts(lang)
        text, _note = describe(texts, r)
        shown = texts.keys[text].removesuffix(ONE)  # "1 attempt left": the same prompt
        assert prompt_for(r) == shown, r


def test_a_result_from_the_kiosk_itself_has_its_prompt() -> None:
    """The results the app makes up: a refusal, a door that failed, a PIN throttled."""
    assert prompt_for({"outcome": "refused", "reason": None}) == "refused"
    assert prompt_for({"outcome": "door_failed"}) == "door_failed"
    pin = {"outcome": "throttled", "reason": "pin_refused", "attempts_left": None}
    assert prompt_for({**pin, "wait_s": 30}) == "throttled"


@pytest.mark.parametrize(
    ("lang", "seconds", "clips"),
    [
        ("en", 29.2, ["throttled", "n30", "seconds"]),
        ("en", 45, ["throttled", "n40", "n5", "seconds"]),
        ("en", 13, ["throttled", "n13", "seconds"]),
        ("en", 0.4, ["throttled", "n1", "second"]),
        ("en", 0, ["throttled"]),
        ("en", 900, ["throttled", "n15", "minutes"]),
        ("en", 86400, ["throttled_desk"]),
        ("zh", 2, ["throttled", "liang", "seconds"]),
        ("zh", 10, ["throttled", "n10", "seconds"]),
        ("zh", 15, ["throttled", "n10", "n5", "seconds"]),
        ("zh", 60, ["throttled", "n6", "n10", "seconds"]),
        ("zh", 23, ["throttled", "n2", "n10", "n3", "seconds"]),
        ("zh", 120, ["throttled", "liang", "minutes"]),
    ],
)
def test_a_wait_is_said_with_its_number(lang: str, seconds: float, clips: list[str]) -> None:
    assert clips_for("throttled", lang, seconds) == clips
    assert clips_for("opened", lang, seconds) == ["opened"]  # only a wait has a number


# -- the audio layer -------------------------------------------------------------------------


def test_a_prompt_is_played_as_its_clip(tmp_path: Path) -> None:
    voice = Voice(volume=100, command=keeper(tmp_path))
    try:
        voice.say({"outcome": "opened", "purpose": "pickup", "compartments": [7]}, "en")
        assert kept(tmp_path) == said("en", ["opened"])
        voice.play("thanks", "zh")
        assert kept(tmp_path, 1) == said("zh", ["thanks"])
    finally:
        voice.close()
    assert voice.asked == [("opened", "en"), ("thanks", "zh")]
    assert all(r.sent for r in voice.requests)


def test_a_wait_is_played_with_its_number(tmp_path: Path) -> None:
    voice = Voice(volume=100, command=keeper(tmp_path))
    try:
        voice.say({"outcome": "throttled", "wait_s": 23.5}, "zh")
        assert kept(tmp_path) == said("zh", ["throttled", "n2", "n10", "n4", "seconds"])
    finally:
        voice.close()
    assert voice.requests[-1].clips == ("throttled", "n2", "n10", "n4", "seconds")


def test_the_volume_scales_what_is_played(tmp_path: Path) -> None:
    voice = Voice(volume=50, command=keeper(tmp_path))
    try:
        voice.play("door_failed", "en")
        half = kept(tmp_path)
        voice.louder()
        voice.play("door_failed", "en")
        louder = kept(tmp_path, 1)
    finally:
        voice.close()
    full = said("en", ["door_failed"])
    assert len(half) == len(full)
    assert rms(half) == pytest.approx(rms(full) * gain(50), rel=0.01)
    assert rms(louder) == pytest.approx(rms(full) * gain(60), rel=0.01)
    assert gain(50) == 0.25 and gain(0) == 0 and gain(100) == 1 and gain(150) == 1


def test_the_kiosk_table_sets_voice_and_volume(tmp_path: Path) -> None:
    section = read_kiosk(Reader(tmp_path / "kiosk.toml", "[kiosk]", {"volume": 30}), tmp_path)
    voice = Voice.from_config(section)
    assert (voice.enabled, voice.volume) == (True, 30)
    off = Reader(tmp_path / "kiosk.toml", "[kiosk]", {"voice": False})
    assert not Voice.from_config(read_kiosk(off, tmp_path)).enabled
    assert Voice.from_config(KioskSection()).volume == KioskSection.volume


@pytest.mark.parametrize("muted", [{"enabled": False}, {"volume": 0}])
def test_voice_off_or_volume_zero_plays_nothing(tmp_path: Path, muted: dict[str, Any]) -> None:
    voice = Voice(command=keeper(tmp_path), **muted)
    try:
        voice.play("thanks", "en")
        assert voice.asked == [("thanks", "en")]
        assert not voice.requests[-1].sent
        assert voice._thread is None  # no player was ever started
        voice.set_enabled(True)
        voice.set_volume(80)
        voice.play("thanks", "en")  # the same player, let speak: it is fed
        assert len(kept(tmp_path)) == len(said("en", ["thanks"]))
    finally:
        voice.close()
    assert [r.sent for r in voice.requests] == [False, True]


def test_a_newer_prompt_cuts_the_one_being_said(tmp_path: Path) -> None:
    voice = Voice(volume=100, command=keeper(tmp_path, hang=True))
    try:
        voice.play("opened", "en")
        kept(tmp_path)  # and the player hangs
        voice.play("thanks", "en")
        assert kept(tmp_path, 1) == said("en", ["thanks"])
    finally:
        voice.close()  # ends the hanging second player too
    assert voice.failures == 0  # a prompt cut short is not a fault


def test_no_player_program_is_logged_once_and_the_kiosk_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    voice = Voice(command=[str(tmp_path / "no-aplay-here")])
    try:
        with caplog.at_level(logging.WARNING, logger="kiosk_ui.voice"):
            voice.play("thanks", "en")
            wait_for(lambda: voice.failures == 1, "the first prompt failed")
            voice.play("thanks", "zh")
            wait_for(lambda: voice.failures == 2, "the second prompt failed")
    finally:
        voice.close()
    warnings = [r for r in caplog.records if r.name == "kiosk_ui.voice"]
    assert len(warnings) == 1 and "no-aplay-here" in warnings[0].getMessage()


NO_APLAY = shutil.which("aplay") is None
NO_APLAY_REASON = "alsa-utils (aplay) not installed"


@pytest.mark.skipif(NO_APLAY, reason=NO_APLAY_REASON)
def test_aplay_says_a_prompt_to_its_end_on_alsas_null_device() -> None:
    """aplay reads the WAV the voice pipes it as a sound card would be fed (the null
    device: a cabinet's card is `default`)."""
    voice = Voice(command=["aplay", "-q", "-D", "null", "-t", "wav", "-"])
    try:
        voice.say({"outcome": "throttled", "wait_s": 45}, "en")
        wait_for(lambda: voice.spoken == 1, "aplay said the prompt")
    finally:
        voice.close()
    assert voice.failures == 0


@pytest.mark.skipif(NO_APLAY, reason=NO_APLAY_REASON)
def test_aplay_without_its_sound_device_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    voice = Voice(command=["aplay", "-q", "-D", "hw:CARD=NoSuchCard", "-t", "wav", "-"])
    try:
        with caplog.at_level(logging.WARNING, logger="kiosk_ui.voice"):
            for n in (1, 2, 3):
                voice.play("close_reminder", "en")
                wait_for(lambda n=n: voice.failures == n, f"prompt {n} failed")
    finally:
        voice.close()
    warnings = [r for r in caplog.records if r.name == "kiosk_ui.voice"]
    assert len(warnings) == 1 and "aplay failed" in warnings[0].getMessage()
