"""The maintenance screen's voice controls: on/off, volume - and +, and a test prompt.

A change holds in this kiosk until it restarts; it is not written to the configuration
(lockerd owns that file, and the kiosk reads its `[kiosk] voice` and `volume` at start),
so a technician who wants it to last changes the configuration.

Imported only once Kivy's window is configured (see `app.build_app`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label
from kivy.uix.togglebutton import ToggleButton

if TYPE_CHECKING:
    from kiosk_ui.i18n import Texts
    from kiosk_ui.voice import Voice

TEST_PROMPT = "thanks"


class VoiceControls(BoxLayout):  # type: ignore[misc]  # Kivy ships no types
    """One row: [Voice: on] [-] Volume 80 [+] [Test], acting on `voice` at once."""

    def __init__(self, voice: Voice, texts: Texts, **kwargs: Any) -> None:
        kwargs.setdefault("spacing", 6)
        super().__init__(**kwargs)
        self.voice = voice
        self.texts = texts
        self.switch = ToggleButton(font_size="16sp", size_hint_x=0.3)
        self.switch.state = "down" if voice.enabled else "normal"
        self.switch.bind(state=lambda _w, state: self.set_enabled(state == "down"))
        self.softer = Button(text="-", font_size="24sp", size_hint_x=0.14)
        self.softer.bind(on_release=lambda *_: self.step(-1))
        self.level = Label(font_size="16sp", size_hint_x=0.28)
        self.louder = Button(text="+", font_size="24sp", size_hint_x=0.14)
        self.louder.bind(on_release=lambda *_: self.step(+1))
        self.test = Button(font_size="16sp", size_hint_x=0.14)
        self.test.bind(on_release=lambda *_: self.try_it())
        for w in (self.switch, self.softer, self.level, self.louder, self.test):
            self.add_widget(w)
        self.refresh()

    def t(self, key: str, **values: object) -> str:
        text: str = self.texts.t(key, **values)  # kiosk_ui/translations/*.json
        return text

    def refresh(self) -> None:
        """Say the current state, in the current language (call it after a language change)."""
        self.switch.text = self.t("voice_on" if self.voice.enabled else "voice_off")
        self.level.text = self.t("volume", volume=self.voice.volume)
        self.test.text = self.t("voice_test")
        for w in (self.softer, self.louder, self.test):
            w.disabled = not self.voice.enabled

    def set_enabled(self, enabled: bool) -> None:
        self.voice.set_enabled(enabled)
        self.refresh()

    def step(self, direction: int) -> None:
        """One step softer or louder, then a prompt at the new level to hear it by."""
        if direction > 0:
            self.voice.louder()
        else:
            self.voice.softer()
        self.refresh()
        self.try_it()

    def try_it(self) -> None:
        self.voice.play(TEST_PROMPT, self.texts.lang)
