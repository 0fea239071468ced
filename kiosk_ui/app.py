"""`locker-kiosk`: the shopper's touchscreen (Kivy), a client of lockerd's local API only.

Screens: welcome (scan or type), a numeric keypad with large targets, the
result of a code (door open, wrong code with attempts left, wait when
throttled, door failed: service desk), and "out of service" while lockerd is
away — the kiosk reconnects by itself. Chinese and English, switched on
screen. The staff deposit and maintenance screens are still to come.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from kiosk_ui.client import ApiClient, ApiUnavailable
from kiosk_ui.i18n import Texts

CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
RESULT_SECONDS = 8.0
RETRY_SECONDS = 2.0


def font() -> str | None:
    return next((f for f in CJK_FONTS if os.path.exists(f)), None)


def build_app(socket_path: str, lang: str = "zh", size: tuple[int, int] = (800, 480)) -> Any:
    """Create the Kivy app (Kivy is imported here: a headless daemon never loads it)."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    from kivy.config import Config

    Config.set("graphics", "width", str(size[0]))
    Config.set("graphics", "height", str(size[1]))
    Config.set("input", "mouse", "mouse,disable_multitouch")
    from kivy.app import App
    from kivy.clock import Clock
    from kivy.core.text import LabelBase
    from kivy.uix.boxlayout import BoxLayout
    from kivy.uix.button import Button
    from kivy.uix.gridlayout import GridLayout
    from kivy.uix.label import Label
    from kivy.uix.screenmanager import NoTransition, Screen, ScreenManager

    cjk = font()
    if cjk:
        LabelBase.register("Roboto", cjk)  # every label can show Chinese

    class KioskApp(App):  # type: ignore[misc]
        def build(self) -> Any:
            self.title = "locker-kiosk"
            self.texts = Texts(lang)
            self.api = ApiClient(socket_path)
            self.code = ""
            self.sm = ScreenManager(transition=NoTransition())
            self.widgets: dict[str, Any] = {}
            self._screen_welcome(Screen(name="welcome"))
            self._screen_keypad(Screen(name="keypad"))
            self._screen_message(Screen(name="result"), "result")
            self._screen_message(Screen(name="offline"), "offline")
            self.refresh_texts()
            Clock.schedule_interval(self.check_daemon, RETRY_SECONDS)
            self.check_daemon(0)
            return self.sm

        # -- screens ---------------------------------------------------------------

        def _screen_welcome(self, screen: Any) -> None:
            box = BoxLayout(orientation="vertical", padding=30, spacing=20)
            title = Label(font_size="44sp", bold=True)
            hint = Label(font_size="26sp")
            row = BoxLayout(spacing=20, size_hint_y=0.35)
            type_code = Button(font_size="30sp", on_release=lambda *_: self.show("keypad"))
            language = Button(
                font_size="24sp", size_hint_x=0.35, on_release=lambda *_: self.toggle_language()
            )
            row.add_widget(type_code)
            row.add_widget(language)
            for w in (title, hint, row):
                box.add_widget(w)
            screen.add_widget(box)
            self.sm.add_widget(screen)
            self.widgets.update(title=title, hint=hint, type_code=type_code, language=language)

        def _screen_keypad(self, screen: Any) -> None:
            box = BoxLayout(orientation="vertical", padding=12, spacing=8)
            prompt = Label(font_size="24sp", size_hint_y=0.15)
            shown = Label(font_size="40sp", size_hint_y=0.2)
            grid = GridLayout(cols=3, spacing=8)
            keys: dict[str, Any] = {}
            for key in ("1", "2", "3", "4", "5", "6", "7", "8", "9", "clear", "0", "ok"):
                button = Button(font_size="34sp")
                button.bind(on_release=lambda _b, k=key: self.press(k))
                grid.add_widget(button)
                keys[key] = button
            back = Button(
                font_size="22sp", size_hint_y=0.15, on_release=lambda *_: self.show("welcome")
            )
            for w in (prompt, shown, grid, back):
                box.add_widget(w)
            screen.add_widget(box)
            self.sm.add_widget(screen)
            self.widgets.update(prompt=prompt, shown=shown, back=back, keys=keys)

        def _screen_message(self, screen: Any, name: str) -> None:
            label = Label(font_size="32sp", halign="center", valign="middle")
            label.bind(size=lambda w, s: setattr(w, "text_size", s))
            screen.add_widget(label)
            self.sm.add_widget(screen)
            self.widgets[name] = label

        # -- behaviour -------------------------------------------------------------

        def refresh_texts(self) -> None:
            t, w = self.texts.t, self.widgets
            w["title"].text = t("welcome_title")
            w["hint"].text = t("welcome_hint")
            w["type_code"].text = t("type_code")
            w["language"].text = t("language")
            w["prompt"].text = t("enter_code")
            w["back"].text = t("back")
            for key, button in w["keys"].items():
                button.text = t(key) if key in ("ok", "clear") else key
            w["offline"].text = t("offline")
            w["shown"].text = "•" * len(self.code)

        def toggle_language(self) -> None:
            self.texts.toggle()
            self.refresh_texts()

        def show(self, name: str) -> None:
            self.code = ""
            self.widgets["shown"].text = ""
            self.sm.current = name

        def press(self, key: str) -> None:
            if key == "clear":
                self.code = ""
            elif key == "ok":
                self.submit(self.code)
                return
            elif len(self.code) < 16:
                self.code += key
            self.widgets["shown"].text = "•" * len(self.code)  # never the code on screen

        def submit(self, text: str, method: str = "keypad") -> None:
            try:
                result = self.api.request("code", text=text, method=method)
            except ApiUnavailable:
                self.show("offline")
                return
            except ValueError as exc:
                self.widgets["result"].text = str(exc)
            else:
                self.widgets["result"].text = self.describe(result)
            self.show("result")
            Clock.unschedule(self.back_to_welcome)
            Clock.schedule_once(self.back_to_welcome, RESULT_SECONDS)

        def describe(self, r: dict[str, Any]) -> str:
            t = self.texts.t
            numbers = ", ".join(str(n) for n in r["compartments"])
            if r["outcome"] == "opened":
                key = {"deposit": "opened_deposit", "retrieval": "opened_retrieval"}.get(
                    r["purpose"] or "", "opened"
                )
                return t(key, numbers=numbers)
            if r["outcome"] == "wrong":
                return t("wrong", left=r["attempts_left"])
            if r["outcome"] == "throttled":
                return t("throttled", seconds=int(r["wait_s"] + 0.999))
            if r["outcome"] == "door_failed":
                return t("door_failed")
            return t("refused", message=r["message"])

        def back_to_welcome(self, _dt: float) -> None:
            if self.sm.current == "result":
                self.show("welcome")

        def check_daemon(self, _dt: float) -> None:
            try:
                self.api.request("health")
            except (ApiUnavailable, ValueError):
                if self.sm.current != "offline":
                    self.show("offline")
                return
            if self.sm.current == "offline":
                self.show("welcome")

    return KioskApp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="locker-kiosk", description="Pickup locker kiosk")
    parser.add_argument("--config", default="/etc/locker/locker.toml")
    parser.add_argument("--lang", choices=["zh", "en"], default="zh")
    parser.add_argument("--size", default="800x480", help="800x480 or 1024x600")
    parser.add_argument("--socket", help="lockerd's local API socket (default: from --config)")
    args = parser.parse_args(argv)
    socket_path = args.socket or _socket_from_config(args.config)
    width, height = (int(x) for x in args.size.split("x"))
    build_app(socket_path, args.lang, (width, height)).run()
    return 0


def _socket_from_config(path: str) -> str:
    """[api] socket of the daemon's configuration (the kiosk reads nothing else of it)."""
    try:
        with open(path, "rb") as f:
            api = tomllib.load(f).get("api", {})
    except (OSError, tomllib.TOMLDecodeError):
        return "/run/locker/api.sock"
    socket_path = str(api.get("socket", "/run/locker/api.sock"))
    return str(Path(path).parent / socket_path) if not socket_path.startswith("/") else socket_path


if __name__ == "__main__":
    sys.exit(main())
