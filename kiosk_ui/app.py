"""`locker-kiosk`: the locker's touchscreen (Kivy), a client of lockerd's local API only.

Screens: welcome (scan or type), a numeric keypad with large targets, the
result of a code (door open until it is closed again, with a reminder while it
stays open; wrong code with attempts left; the wait when throttled, counted
down; door failed: service desk, as soon as lockerd reports a door of the order
jammed; thank you), the staff screen (deposit and retrieval codes; back to the
welcome screen when left idle), the maintenance diagnostic screen behind the
technician PIN, and "out of service" while lockerd is away — the kiosk
reconnects by itself. Chinese and English, switched on screen. A USB scanner
in keyboard mode types into the code field; results of the serial scanner and
the camera (read by lockerd) arrive on lockerd's stream and are shown the same
way.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from kiosk_ui.client import ApiClient, ApiUnavailable, Refused
from kiosk_ui.i18n import Texts
from kiosk_ui.stream import StreamListener
from kiosk_ui.wedge import WedgeBuffer

CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
RESULT_SECONDS = 8.0  # a result goes back to the start screen after this
DOOR_WAIT_SECONDS = 120.0  # an open door keeps its screen at most this long
REMINDER_SECONDS = 20.0  # then "please close the door"
THANKS_SECONDS = 3.0
KEYPAD_IDLE_SECONDS = 45.0  # a keypad left half-typed goes back to the start
STAFF_IDLE_SECONDS = 60.0  # the staff screen left alone goes back to the shoppers' welcome
COUNTDOWN_TICK_SECONDS = 1.0  # the throttle's wait is counted down once a second
RETRY_SECONDS = 2.0
REMINDER_COLOUR = (1.0, 0.72, 0.15, 1)
ENTER_KEYS = (13, 271)  # Return, keypad Enter
SIZES = ("800x480", "1024x600")
KEYPAD_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "backspace", "0", "ok")
WORD_KEYS = ("backspace", "ok", "clear")  # keys labelled with a text, not a digit


def font() -> str | None:
    return next((f for f in CJK_FONTS if os.path.exists(f)), None)


def build_app(
    socket_path: str,
    lang: str = "zh",
    size: tuple[int, int] = (800, 480),
    fullscreen: bool = False,
) -> Any:
    """Create the Kivy app (Kivy is imported here: a headless daemon never loads it)."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    from kivy.config import Config

    Config.set("graphics", "width", str(size[0]))
    Config.set("graphics", "height", str(size[1]))
    if fullscreen:
        Config.set("graphics", "fullscreen", "auto")
        Config.set("graphics", "show_cursor", "0")
        Config.set("graphics", "allow_screensaver", "0")  # the cabinet's screen never blanks
    # A touch panel can reach Kivy twice (as a touch and as the mouse SDL emulates):
    # the mouse is ignored while a real touch is active, so no digit is typed twice.
    Config.set("input", "mouse", "mouse,disable_on_activity,disable_multitouch")
    Config.set("kivy", "exit_on_escape", "0")  # a scanner's stray Escape must not quit
    from kivy.app import App
    from kivy.clock import Clock
    from kivy.core.text import LabelBase
    from kivy.core.window import Window
    from kivy.uix.boxlayout import BoxLayout
    from kivy.uix.button import Button
    from kivy.uix.gridlayout import GridLayout
    from kivy.uix.label import Label
    from kivy.uix.screenmanager import NoTransition, Screen, ScreenManager
    from kivy.uix.widget import Widget

    from kiosk_ui.maintenance import MaintenanceScreen

    cjk = font()
    if cjk:
        LabelBase.register("Roboto", cjk)  # every label can show Chinese

    def centred(**kwargs: Any) -> Any:
        label = Label(halign="center", valign="middle", **kwargs)
        label.bind(size=lambda w, s: setattr(w, "text_size", s))
        return label

    class KioskApp(App):  # type: ignore[misc]
        def build(self) -> Any:
            self.title = "locker-kiosk"
            self.texts = Texts(lang)
            self.default_lang = self.texts.lang
            self.api = ApiClient(socket_path)
            self.code = ""
            self.mode = "shopper"  # what the keypad is for: shopper, staff or pin
            self.waiting_doors: set[int] = set()
            self.opened_seen: set[int] = set()
            self.fault_before: set[int] = set()  # waiting doors already in fault at the code
            self.doors: dict[int, str] = {}
            self.states: dict[int, str] = {}  # compartment -> state, from lockerd's stream
            self.wait_left = 0.0  # seconds of the throttle's wait still to count down
            self.wedge = WedgeBuffer()
            self.sm = ScreenManager(transition=NoTransition())
            self.widgets: dict[str, Any] = {}
            self._screen_welcome(Screen(name="welcome"))
            self._screen_staff(Screen(name="staff"))
            self._screen_keypad(Screen(name="keypad"))
            self._screen_result(Screen(name="result"))
            self._screen_offline(Screen(name="offline"))
            self.maintenance = MaintenanceScreen(self)
            self.sm.add_widget(self.maintenance)
            self.refresh_texts()
            self.stream = StreamListener(
                socket_path, lambda m: Clock.schedule_once(lambda _dt: self.on_stream(m))
            )
            self.stream.start()
            Window.bind(on_textinput=self.on_textinput, on_key_down=self.on_key_down)
            Clock.schedule_interval(self.check_daemon, RETRY_SECONDS)
            self.check_daemon(0)
            return self.sm

        def on_stop(self) -> None:
            Window.unbind(on_textinput=self.on_textinput, on_key_down=self.on_key_down)
            self.cancel_timers()
            Clock.unschedule(self.staff_idle)
            Clock.unschedule(self.check_daemon)
            Clock.unschedule(self.maintenance.refresh)
            self.stream.stop()
            self.api.close()

        # -- screens ---------------------------------------------------------------

        def _heading_screen(
            self, screen: Any, sizes: tuple[str, str, str], action: Any, aside: Any
        ) -> tuple[Any, ...]:
            """Title, hint and a row of a large action button beside a smaller one (the
            welcome and staff screens); returns the four widgets and the screen's box."""
            title_size, hint_size, action_size = sizes
            box = BoxLayout(orientation="vertical", padding=24, spacing=14)
            title = centred(font_size=title_size, bold=True, size_hint_y=0.26)
            hint = centred(font_size=hint_size, size_hint_y=0.3)
            row = BoxLayout(spacing=20, size_hint_y=0.34)
            main = Button(font_size=action_size, on_release=lambda *_: action())
            side = Button(font_size="24sp", size_hint_x=0.35, on_release=lambda *_: aside())
            row.add_widget(main)
            row.add_widget(side)
            for w in (title, hint, row):
                box.add_widget(w)
            screen.add_widget(box)
            self.sm.add_widget(screen)
            return title, hint, main, side, box

        def _screen_welcome(self, screen: Any) -> None:
            title, hint, type_code, language, box = self._heading_screen(
                screen,
                ("44sp", "26sp", "30sp"),
                lambda: self.keypad("shopper"),
                self.toggle_language,
            )
            # The doors for staff and technicians, small and out of the shopper's way.
            footer = BoxLayout(spacing=12, size_hint_y=0.18)
            staff = Button(
                font_size="18sp", size_hint_x=0.24, on_release=lambda *_: self.show("staff")
            )
            maintenance = Button(
                font_size="18sp", size_hint_x=0.24, on_release=lambda *_: self.keypad("pin")
            )
            footer.add_widget(staff)
            footer.add_widget(Widget())
            footer.add_widget(maintenance)
            box.add_widget(footer)
            self.widgets.update(
                title=title,
                hint=hint,
                type_code=type_code,
                language=language,
                staff=staff,
                maintenance=maintenance,
            )

        def _screen_staff(self, screen: Any) -> None:
            title, hint, type_code, back, box = self._heading_screen(
                screen,
                ("36sp", "22sp", "28sp"),
                lambda: self.keypad("staff"),
                lambda: self.show("welcome"),
            )
            footer = BoxLayout(spacing=12, size_hint_y=0.18)
            language = Button(
                font_size="18sp", size_hint_x=0.24, on_release=lambda *_: self.toggle_language()
            )
            footer.add_widget(Widget())
            footer.add_widget(language)
            box.add_widget(footer)
            self.widgets.update(
                staff_title=title,
                staff_hint=hint,
                staff_type=type_code,
                staff_back=back,
                staff_language=language,
            )

        def _screen_keypad(self, screen: Any) -> None:
            box = BoxLayout(orientation="vertical", padding=12, spacing=8)
            prompt = centred(font_size="24sp", size_hint_y=0.15)
            shown = centred(font_size="40sp", size_hint_y=0.2)
            grid = GridLayout(cols=3, spacing=8)
            keys: dict[str, Any] = {}
            for key in KEYPAD_KEYS:
                button = Button(font_size="26sp" if key in WORD_KEYS else "34sp")
                button.bind(on_release=lambda _b, k=key: self.press(k))
                grid.add_widget(button)
                keys[key] = button
            row = BoxLayout(spacing=8, size_hint_y=0.15)
            back = Button(font_size="22sp", on_release=lambda *_: self.home())
            keys["clear"] = Button(font_size="22sp", on_release=lambda *_: self.press("clear"))
            row.add_widget(back)
            row.add_widget(keys["clear"])
            for w in (prompt, shown, grid, row):
                box.add_widget(w)
            screen.add_widget(box)
            self.sm.add_widget(screen)
            self.widgets.update(prompt=prompt, shown=shown, back=back, keys=keys)

        def _screen_result(self, screen: Any) -> None:
            box = BoxLayout(orientation="vertical", padding=30, spacing=12)
            label = centred(font_size="32sp")
            note = centred(font_size="20sp", size_hint_y=0.3)
            done = Button(font_size="24sp", size_hint=(0.4, 0.22), pos_hint={"center_x": 0.5})
            done.bind(on_release=lambda *_: self.home())
            for w in (label, note, done):
                box.add_widget(w)
            screen.add_widget(box)
            self.sm.add_widget(screen)
            self.widgets.update(result=label, note=note, done=done)

        def _screen_offline(self, screen: Any) -> None:
            label = centred(font_size="32sp")
            screen.add_widget(label)
            self.sm.add_widget(screen)
            self.widgets["offline"] = label

        # -- navigation and texts --------------------------------------------------

        def refresh_texts(self) -> None:
            t, w = self.texts.t, self.widgets
            w["title"].text = t("welcome_title")
            w["hint"].text = t("welcome_hint")
            w["type_code"].text = t("type_code")
            w["language"].text = t("language")
            w["staff"].text = t("staff")
            w["maintenance"].text = t("maintenance")
            w["staff_title"].text = t("staff_title")
            w["staff_hint"].text = t("staff_hint")
            w["staff_type"].text = t("staff_type")
            w["staff_back"].text = t("back")
            w["staff_language"].text = t("language")
            self.prompt()
            w["back"].text = t("back")
            w["done"].text = t("done")
            for key, button in w["keys"].items():
                button.text = t(key) if key in WORD_KEYS else key
            w["offline"].text = t("offline")
            w["shown"].text = "•" * len(self.code)

        def prompt(self, key: str | None = None) -> None:
            """The keypad's prompt: what to type in this mode, or `key`'s text."""
            modes = {"shopper": "enter_code", "staff": "staff_prompt"}
            self.widgets["prompt"].text = self.texts.t(key or modes.get(self.mode, "pin_prompt"))

        def toggle_language(self) -> None:
            self.texts.toggle()
            self.refresh_texts()
            if self.sm.current == "staff":  # a touch: the staff screen's idle time restarts
                self.show("staff")

        def reset_language(self) -> None:
            if self.texts.lang != self.default_lang:
                self.texts.lang = self.default_lang
                self.refresh_texts()

        def show(self, name: str) -> None:
            self.code = ""
            self.widgets["shown"].text = ""
            Clock.unschedule(self.staff_idle)
            if name in ("welcome", "staff"):
                self.mode = "staff" if name == "staff" else "shopper"
                self.waiting_doors = set()
                self.cancel_timers(keep_keypad=True)
            if name == "staff":
                Clock.schedule_once(self.staff_idle, STAFF_IDLE_SECONDS)
            self.sm.current = name

        def cancel_timers(self, keep_keypad: bool = False) -> None:
            """Stop the result screen's timers (and the keypad's, unless kept)."""
            timers = [
                self.result_timeout,
                self.door_reminder,
                self.home_after_thanks,
                self.count_down,
            ]
            for fn in timers if keep_keypad else [*timers, self.walked_away]:
                Clock.unschedule(fn)

        def home(self) -> None:
            """Back to where this person started: the staff screen or the welcome screen."""
            self.show("staff" if self.mode == "staff" else "welcome")

        def keypad(self, mode: str) -> None:
            self.mode = mode
            self.refresh_texts()
            self.show("keypad")
            Clock.unschedule(self.walked_away)
            Clock.schedule_once(self.walked_away, KEYPAD_IDLE_SECONDS)

        def walked_away(self, _dt: float) -> None:
            """Nobody finished: the next person starts afresh, in the default language."""
            if self.sm.current in ("keypad", "result"):
                self.home()
            self.reset_language()

        def staff_idle(self, _dt: float) -> None:
            """Staff walked off: the screen is the shoppers' again, in the default language."""
            if self.sm.current == "staff":
                self.show("welcome")
                self.reset_language()

        def press(self, key: str) -> None:
            Clock.unschedule(self.walked_away)
            Clock.schedule_once(self.walked_away, KEYPAD_IDLE_SECONDS)
            self.prompt()
            if key == "clear":
                self.code = ""
            elif key == "backspace":
                self.code = self.code[:-1]
            elif key == "ok" and not self.code:
                self.prompt("empty_code")  # nothing to send: lockerd would call it no code
            elif key == "ok":
                code, self.code = self.code, ""
                if self.mode == "pin":
                    self.login(code)
                else:
                    self.submit(code)
                return
            elif len(self.code) < 16:
                self.code += key
            self.widgets["shown"].text = "•" * len(self.code)  # never the code on screen

        # -- codes -----------------------------------------------------------------

        def submit(self, text: str, method: str = "keypad") -> None:
            # Codes from the staff screen are judged by lockerd as a terminal of their own
            # (deposit codes only), so a flood at the shoppers' keypad never blocks loading.
            staff = {"staff": True} if self.mode == "staff" else {}
            try:
                result = self.api.request("code", text=text, method=method, **staff)
            except ApiUnavailable:
                self.show("offline")
                return
            except ValueError:  # a request lockerd refused: nothing a shopper can act on
                self.show_result({"outcome": "refused", "reason": None})
                return
            self.show_result(result)

        def show_result(self, r: dict[str, Any]) -> None:
            text, note = self.describe(r)
            self.widgets["result"].text = text
            self.widgets["note"].text = note
            self.widgets["note"].color, self.widgets["note"].font_size = (1, 1, 1, 1), "20sp"
            self.code = ""
            self.sm.current = "result"
            self.cancel_timers()
            if r["outcome"] == "opened":
                # The screen stays with the open door: a reminder if it stays open, thanks
                # once it is closed, the service desk if lockerd reports it jammed (all
                # seen on lockerd's stream).
                self.waiting_doors = set(r["compartments"])
                self.opened_seen = set()
                self.fault_before = {n for n in self.waiting_doors if self.states.get(n) == "fault"}
                Clock.schedule_once(self.door_reminder, REMINDER_SECONDS)
                Clock.schedule_once(self.result_timeout, DOOR_WAIT_SECONDS)
            elif r["outcome"] == "throttled":
                # The screen counts the wait down and stays until it is over (or Done).
                self.waiting_doors = set()
                self.wait_left = float(r["wait_s"])
                Clock.schedule_interval(self.count_down, COUNTDOWN_TICK_SECONDS)
            else:
                self.waiting_doors = set()
                Clock.schedule_once(self.result_timeout, RESULT_SECONDS)

        def describe(self, r: dict[str, Any]) -> tuple[str, str]:
            return describe(self.texts, r)

        def result_timeout(self, _dt: float) -> None:
            if self.sm.current == "result":
                self.walked_away(0)

        def count_down(self, dt: float) -> None:
            """One tick of the throttle's wait: `dt` is the time Kivy's clock says passed."""
            self.wait_left -= dt
            if self.sm.current != "result" or self.wait_left <= 0:
                Clock.unschedule(self.count_down)
                self.result_timeout(0)
                return
            seconds = math.ceil(self.wait_left)
            self.widgets["result"].text = self.texts.t("throttled", seconds=seconds)

        def door_reminder(self, _dt: float) -> None:
            still_open = sorted(n for n in self.waiting_doors if self.doors.get(n) == "open")
            if self.sm.current == "result" and still_open:
                numbers = ", ".join(map(str, still_open))
                note = self.widgets["note"]
                note.text = self.texts.t("close_reminder", numbers=numbers)
                note.color, note.font_size = REMINDER_COLOUR, "28sp"  # seen from a step away

        def doors_closed(self) -> None:
            self.waiting_doors = set()
            self.cancel_timers()
            self.widgets["result"].text = self.texts.t("thanks")
            self.widgets["note"].text = ""
            Clock.schedule_once(self.home_after_thanks, THANKS_SECONDS)

        def home_after_thanks(self, _dt: float) -> None:
            if self.sm.current == "result":
                self.walked_away(0)

        # -- lockerd's stream and the keyboard-mode scanner ------------------------

        def on_stream(self, message: dict[str, Any]) -> None:
            if message["stream"] == "state":
                compartments = message["state"]["compartments"]
                self.doors = {c["number"]: c["door"] for c in compartments}
                self.states = {c["number"]: c["state"] for c in compartments}
                # A door counts as closed again only once it was seen open after the code:
                # "closed" before that is the state from before the unlock.
                self.opened_seen |= {n for n in self.waiting_doors if self.doors.get(n) == "open"}
                if self.sm.current == "result" and self.door_failed(message["events"]):
                    self.show_result({"outcome": "door_failed"})
                elif (
                    self.sm.current == "result"
                    and self.waiting_doors
                    and self.waiting_doors <= self.opened_seen
                    and all(self.doors.get(n) == "closed" for n in self.waiting_doors)
                ):
                    self.doors_closed()
            elif message["stream"] == "entry" and self.accepts_codes():
                self.show_result(message)

        def door_failed(self, events: list[str]) -> bool:
            """Did lockerd give up on a door of the order before it was seen open? Then its
            compartment is in fault: jammed after the unlock retries, or its board gone. A
            compartment still in fault from an earlier jam counts once a new alarm comes."""
            failed = {
                n for n in self.waiting_doors - self.opened_seen if self.states.get(n) == "fault"
            }
            alarm = "door_alarm" in events or "fault" in events
            return bool(failed - self.fault_before or (failed and alarm))

        def accepts_codes(self) -> bool:
            """Codes from a scanner count on the shopper and staff screens only."""
            return self.sm.current in ("welcome", "staff", "result") or (
                self.sm.current == "keypad" and self.mode != "pin"
            )

        def on_textinput(self, _window: Any, text: str) -> bool:
            self.wedge.char(text, time.monotonic())
            return True

        def on_key_down(self, _window: Any, key: int, *_args: Any) -> bool:
            if key not in ENTER_KEYS:
                return False
            text = self.wedge.enter(time.monotonic())
            if text and self.accepts_codes():
                self.submit(text, method="scanner")
            return True

        # -- maintenance -----------------------------------------------------------

        def login(self, pin: str) -> None:
            try:
                session = self.api.request("login", pin=pin)
            except ApiUnavailable:
                self.show("offline")
                return
            except ValueError as exc:
                # Said from the reply's fields (attempts left, the wait), never its English.
                refusal = exc.reply.get("refusal") or {} if isinstance(exc, Refused) else {}
                self.mode = "shopper"
                self.show_result(
                    {
                        "outcome": refusal.get("outcome", "refused"),
                        "reason": "pin_refused",
                        "attempts_left": refusal.get("attempts_left"),
                        "wait_s": refusal.get("wait_s") or 0,
                    }
                )
                return
            self.show("maintenance")
            self.maintenance.enter(session["token"])

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


def describe(texts: Texts, r: dict[str, Any]) -> tuple[str, str]:
    """What the screen says about a code's result: the text and a second line. Only the
    reply's fields are read, never its English `message`."""
    t = texts.t
    compartments = r.get("compartments", [])
    numbers = ", ".join(str(n) for n in compartments)
    many = "_many" if len(compartments) > 1 else ""
    outcome, reason = r["outcome"], r.get("reason")
    if reason == "pin_refused" and outcome != "throttled":
        left = r.get("attempts_left")
        return t("pin_refused"), "" if left is None else texts.n("attempts_left", left, left=left)
    if outcome == "opened":
        purpose = r.get("purpose") or "pickup"
        if purpose in ("deposit", "retrieval"):
            key = "opened_deposit" if purpose == "deposit" else "opened_retrieval"
            order = t("order_line", order=r["order_id"]) if r.get("order_id") else ""
            return t(key + many, numbers=numbers), order
        return t("opened" + many, numbers=numbers), ""
    if outcome == "wrong":
        left = r["attempts_left"]
        if reason == "other_locker":
            return t("other_locker"), texts.n("attempts_left", left, left=left)
        return texts.n("wrong", left, left=left), t("service_desk_hint")
    if outcome == "throttled":
        return t("throttled", seconds=math.ceil(r["wait_s"])), ""
    if outcome == "door_failed":
        return t("door_failed"), ""
    if reason in ("not_a_code", "already_loaded", "not_now", "pin_refused"):
        return t(reason), ""
    return t("refused"), ""


class SettingsError(Exception):
    """The configuration cannot tell the kiosk where lockerd is or how to show itself."""


def screen_size(text: str) -> tuple[int, int]:
    """`--size`: one of the two screens the layout is made for."""
    if text not in SIZES:
        raise argparse.ArgumentTypeError(f"expected {' or '.join(SIZES)}, not {text!r}")
    width, height = text.split("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="locker-kiosk", description="Pickup locker kiosk")
    parser.add_argument(
        "--config",
        default="/etc/locker/locker.toml",
        help="lockerd's configuration (default: %(default)s)",
    )
    parser.add_argument(
        "--lang",
        choices=["zh", "en"],
        help="the default language (default: [kiosk] language, else zh)",
    )
    parser.add_argument(
        "--size",
        type=screen_size,
        metavar="WxH",
        help=f"{' or '.join(SIZES)} (default: [kiosk] size, else {SIZES[0]})",
    )
    parser.add_argument("--fullscreen", action="store_true", help="the cabinet's screen")
    parser.add_argument("--socket", help="lockerd's local API socket (default: [api] socket)")
    args = parser.parse_args(argv)
    try:
        settings = _settings(args.config)
    except SettingsError as exc:
        # A screen stuck on "out of service" would not say why: say it and stop.
        parser.exit(2, f"locker-kiosk: {exc}\n")
    socket_path = args.socket or settings["socket"]
    size = args.size or screen_size(settings["size"])
    lang = args.lang or settings["language"]
    build_app(socket_path, lang, size, args.fullscreen).run()
    return 0


def _settings(path: str) -> dict[str, str]:
    """[api] socket and [kiosk] language and size of the daemon's configuration (nothing
    else is read); SettingsError names the file and the key when one cannot be used."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError(f"{path}: configuration file not found") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    api, kiosk = data.get("api", {}), data.get("kiosk", {})
    if not isinstance(api, dict) or not isinstance(kiosk, dict):
        raise SettingsError(f"{path}: [api] and [kiosk] must be tables")
    socket_path = api.get("socket", "/run/locker/api.sock")
    if not isinstance(socket_path, str) or not socket_path:
        raise SettingsError(f"{path}: [api] socket: expected a path")
    if not socket_path.startswith("/"):
        socket_path = str(Path(path).parent / socket_path)
    choices = {"language": ("zh", "en"), "size": SIZES}
    settings = {"socket": socket_path, "language": "zh", "size": SIZES[0]}
    for key, allowed in choices.items():
        value = kiosk.get(key, settings[key])
        if value not in allowed:
            raise SettingsError(
                f"{path}: [kiosk] {key}: expected {' or '.join(allowed)}, not {value!r}"
            )
        settings[key] = value
    return settings


if __name__ == "__main__":
    sys.exit(main())
