"""The maintenance screen's voice controls, touched for real in the real app under Xvfb.

The controls sit on the window over whatever screen shows (here: out of service, no
lockerd); the player is a real process keeping what it is fed (see test_voice.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kiosk_helpers import Steps, display, overflowing, tap  # noqa: F401 (a fixture)
from test_voice import keeper, kept, said

from kiosk_ui.voice import Voice, gain, rms


@pytest.mark.usefixtures("display")
def test_voice_controls_change_the_voice_at_a_touch(tmp_path: Path) -> None:
    from kivy.core.window import Window

    from kiosk_ui.app import build_app
    from kiosk_ui.voice_controls import VoiceControls

    app = build_app(str(tmp_path / "no-lockerd.sock"), lang="en")
    voice = Voice(volume=50, command=keeper(tmp_path / "played"))
    step = Steps(app)
    seen: dict[str, Any] = {}

    @step
    def lay_the_controls_out() -> None:
        seen["controls"] = VoiceControls(voice, app.texts, size=(700, 70), pos=(50, 20))
        Window.add_widget(seen["controls"])

    @step
    def louder() -> None:
        controls = seen["controls"]
        assert controls.switch.text == "Voice: on" and controls.level.text == "Volume 50"
        assert controls.test.text == "Test"
        assert not overflowing(controls)
        tap(controls.louder)

    @step
    def louder_is_heard() -> None:
        controls = seen["controls"]
        assert voice.volume == 60 and controls.level.text == "Volume 60"
        assert voice.asked == [("thanks", "en")]  # the new level, heard at once
        played = kept(tmp_path / "played")
        assert rms(played) == pytest.approx(rms(said("en", ["thanks"])) * gain(60), rel=0.01)
        tap(controls.switch)

    @step
    def switched_off() -> None:
        controls = seen["controls"]
        assert not voice.enabled and controls.switch.text == "Voice: off"
        assert controls.louder.disabled and controls.softer.disabled
        app.toggle_language()
        controls.refresh()
        assert controls.switch.text == "语音：关"  # noqa: RUF001 (Chinese punctuation)
        assert controls.test.text == "试听"
        Window.remove_widget(controls)

    try:
        step.run()
    finally:
        voice.close()
