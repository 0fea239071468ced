"""The touchscreen's app: which screen shows, what a touch, a scan or a reply does.

Every request to lockerd goes through the request worker (`worker.py`) and its
reply comes back a frame later on Kivy's clock, so the screen keeps drawing and
taking touches whatever lockerd takes to answer. A code or a PIN whose reply
takes more than a moment shows "please wait"; one code is in flight at a time.

Imported only once Kivy's window is configured (see `app.build_app`).
"""

from __future__ import annotations

import math
import time
from typing import Any

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.uix.screenmanager import FadeTransition, ScreenManager

from kiosk_ui.client import ApiClient, ApiUnavailable, Refused
from kiosk_ui.i18n import Texts
from kiosk_ui.maintenance import MaintenanceScreen
from kiosk_ui.results import describe, picture_for
from kiosk_ui.screens import WORD_KEYS, Widgets, build_screens
from kiosk_ui.stream import StreamListener
from kiosk_ui.voice import Voice
from kiosk_ui.wedge import WedgeBuffer
from kiosk_ui.worker import Failure, RequestWorker, Result
from locker.config_kiosk import KioskSection

RESULT_SECONDS = 8.0  # a result goes back to the start screen after this
DOOR_WAIT_SECONDS = 120.0  # an open door keeps its screen at most this long
REMINDER_SECONDS = 20.0  # then "please close the door"
THANKS_SECONDS = 3.0
KEYPAD_IDLE_SECONDS = 45.0  # a keypad left half-typed goes back to the start
STAFF_IDLE_SECONDS = 60.0  # the staff screen left alone goes back to the shoppers' welcome
COUNTDOWN_TICK_SECONDS = 1.0  # the throttle's wait is counted down once a second
WAIT_SCREEN_SECONDS = 0.4  # a reply slower than this shows "please wait"
RETRY_SECONDS = 2.0
TRANSITION_SECONDS = 0.15  # a calm fade between screens, short enough not to wait on
ENTER_KEYS = (13, 271)  # Return, keypad Enter


class KioskApp(App):  # type: ignore[misc]  # Kivy ships no types
    """The shoppers', staff's and technician's screens, a client of lockerd's local API."""

    def __init__(
        self,
        socket_path: str,
        lang: str = "zh",
        settings: KioskSection | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.socket_path = socket_path
        self.settings = settings or KioskSection()
        self.texts = Texts(lang)
        self.voice = Voice.from_config(self.settings)  # the prompts on the cabinet's speaker
        self.default_lang = self.texts.lang
        self.api = ApiClient(socket_path)
        self.worker = RequestWorker(self.api, lambda call: Clock.schedule_once(lambda _: call()))
        self.code = ""
        self.mode = "shopper"  # what the keypad is for: shopper, staff or pin
        self.busy = False  # a code or a PIN is with lockerd: the next waits for its reply
        self.checking = False  # a health check is with lockerd: the next one is not sent
        self.waiting_doors: set[int] = set()
        self.opened_seen: set[int] = set()
        # The stream's lines are counted, and for each door the last line showing it open
        # and the last line in which lockerd said its phase was done: a reply comes off
        # the UI thread, and the door may open, close and be done on the stream before
        # the reply that asked for it is shown.
        self.stream_seq = 0
        self.last_open: dict[int, int] = {}
        self.last_done: dict[int, int] = {}
        self.sent_seq = 0
        self.fault_before: set[int] = set()  # waiting doors already in fault at the code
        self.doors: dict[int, str] = {}
        self.states: dict[int, str] = {}  # compartment -> state, from lockerd's stream
        self.wait_left = 0.0  # seconds of the throttle's wait still to count down
        # What the result screen says, kept so a language touch says it again: the reply,
        # and whether the doors got their reminder (the numbers) or were closed (thanks).
        self.last_result: dict[str, Any] | None = None
        self.reminded = ""
        self.thanked = False
        self.wedge = WedgeBuffer()
        self.accessible = False  # the accessible mode: controls low, large text, slow time-outs
        self.sm = ScreenManager(transition=FadeTransition(duration=TRANSITION_SECONDS))
        self.widgets: Widgets = build_screens(self, self.sm)
        self.maintenance = MaintenanceScreen(self)
        self.sm.add_widget(self.maintenance)
        self.stream = StreamListener(
            socket_path, lambda m: Clock.schedule_once(lambda _dt: self.on_stream(m))
        )

    def build(self) -> ScreenManager:
        self.title = "locker-kiosk"
        self.refresh_texts()
        self.worker.start()
        self.stream.start()
        Window.bind(on_textinput=self.on_textinput, on_key_down=self.on_key_down)
        Clock.schedule_interval(self.check_daemon, RETRY_SECONDS)
        self.check_daemon(0)
        return self.sm

    def on_stop(self) -> None:
        Window.unbind(on_textinput=self.on_textinput, on_key_down=self.on_key_down)
        self.cancel_timers()
        for timer in (self.staff_idle, self.check_daemon, self.show_wait):
            Clock.unschedule(timer)
        Clock.unschedule(self.maintenance.refresh)
        self.stream.stop()
        self.voice.close()
        self.worker.stop()  # closes the connection on its own thread, never waited for here

    # -- navigation and texts ------------------------------------------------------

    def refresh_texts(self) -> None:
        t, w = self.texts.t, self.widgets
        w.title.text = t("welcome_title")
        w.hint.text = t("welcome_hint")
        w.type_code.text = t("type_code")
        w.scan_here.text = t("scan_here") if self.settings.scanner_side != "none" else ""
        w.accessible.text = t("accessible")
        w.language.text = t("language")
        w.staff.text = t("staff")
        w.maintenance.text = t("maintenance")
        w.staff_title.text = t("staff_title")
        w.staff_hint.text = t("staff_hint")
        w.staff_type.text = t("staff_type")
        w.staff_back.text = t("back")
        w.staff_language.text = t("language")
        self.prompt()
        w.back.text = t("back")
        w.done.text = t("done")
        for key, button in w.keys.items():
            button.text = t(key) if key in WORD_KEYS else key
        w.wait.text = t("please_wait")
        w.offline.text = t("offline")
        w.shown.text = "•" * len(self.code)
        self.describe_result()

    def describe_result(self) -> None:
        """The result screen's words, in the language now chosen."""
        r, t = self.last_result, self.texts.t
        if r is None:
            return
        text, note = describe(self.texts, r)
        if r["outcome"] == "throttled":  # the wait counted down so far, not the reply's
            text = t("throttled", seconds=math.ceil(self.wait_left))
        if self.thanked:
            text, note = t("thanks"), ""
        elif self.reminded:
            note = t("close_reminder", numbers=self.reminded)
        self.widgets.result.text = text
        self.widgets.note.text = note

    def prompt(self, key: str | None = None) -> None:
        """The keypad's prompt: what to type in this mode, or `key`'s text."""
        modes = {"shopper": "enter_code", "staff": "staff_prompt"}
        self.widgets.prompt.text = self.texts.t(key or modes.get(self.mode, "pin_prompt"))

    def toggle_language(self) -> None:
        self.texts.toggle()
        self.refresh_texts()
        if self.sm.current == "staff":  # a touch: the staff screen's idle time restarts
            self.show("staff")

    def reset_language(self) -> None:
        if self.texts.lang != self.default_lang:
            self.texts.lang = self.default_lang
            self.refresh_texts()

    def timeout(self, seconds: float) -> float:
        """A shopper's time-out, longer in the accessible mode."""
        return seconds * (self.settings.accessible_timeout_factor if self.accessible else 1.0)

    def toggle_accessible(self) -> None:
        self.set_accessible(not self.accessible)

    def set_accessible(self, on: bool) -> None:
        if on != self.accessible:
            self.accessible = on
            self.widgets.arrange(on)

    def countdown(self, screen: str, seconds: float | None) -> None:
        """The bar that empties on `screen` while its time runs out (None: no time-out)."""
        bar = self.widgets.countdowns[screen]
        if seconds is None:
            bar.stop()
        else:
            bar.start(seconds)

    def show(self, name: str) -> None:
        if name == "welcome" and self.sm.current != "welcome":
            self.set_accessible(False)  # the next shopper starts with the standard screen
        self.code = ""
        self.widgets.shown.text = ""
        Clock.unschedule(self.staff_idle)
        if name in ("welcome", "staff"):
            self.mode = "staff" if name == "staff" else "shopper"
            self.waiting_doors = set()
            self.cancel_timers(keep_keypad=True)
        if name == "staff":
            Clock.schedule_once(self.staff_idle, STAFF_IDLE_SECONDS)
            self.countdown("staff", STAFF_IDLE_SECONDS)
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
        self.keypad_timer()

    def keypad_timer(self) -> None:
        Clock.unschedule(self.walked_away)
        Clock.schedule_once(self.walked_away, self.timeout(KEYPAD_IDLE_SECONDS))
        self.countdown("keypad", self.timeout(KEYPAD_IDLE_SECONDS))

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
        self.keypad_timer()
        self.prompt()
        if key == "clear":
            self.code = ""
        elif key == "backspace":
            self.code = self.code[:-1]
        elif key == "ok" and not self.code:
            self.prompt("empty_code")  # nothing to send: lockerd would call it no code
        elif key == "ok" and self.busy:
            return  # the last code's reply is still to come: this one stays typed
        elif key == "ok":
            code, self.code = self.code, ""
            if self.mode == "pin":
                self.login(code)
            else:
                self.submit(code)
        elif len(self.code) < 16:
            self.code += key
        self.widgets.shown.text = "•" * len(self.code)  # never the code on screen

    # -- requests a person waits for -------------------------------------------------

    def _begin(self) -> bool:
        """Start a request a person waits for; False while one is still with lockerd (a
        second OK or scan is not queued behind it)."""
        if self.busy:
            return False
        self.busy = True
        Clock.schedule_once(self.show_wait, WAIT_SCREEN_SECONDS)
        return True

    def _end(self) -> None:
        self.busy = False
        Clock.unschedule(self.show_wait)

    def show_wait(self, _dt: float) -> None:
        """lockerd is slow to answer: say so instead of a screen that seems to ignore the
        touch (the reply, or the client's timeout, moves on from here)."""
        if self.busy:
            self.sm.current = "wait"

    # -- codes ---------------------------------------------------------------------

    def submit(self, text: str, method: str = "keypad") -> None:
        if not self._begin():
            return
        # Codes from the staff screen are judged by lockerd as a terminal of their own
        # (deposit codes only), so a flood at the shoppers' keypad never blocks loading.
        staff = {"staff": True} if self.mode == "staff" else {}
        self.sent_seq = self.stream_seq
        self.worker.request(
            "code", self._code_result, self._code_failed, text=text, method=method, **staff
        )

    def _code_result(self, result: Result) -> None:
        self._end()
        self.show_result(result, since=self.sent_seq)

    def _code_failed(self, exc: Failure) -> None:
        self._end()
        if isinstance(exc, ApiUnavailable):
            self.show("offline")
        else:  # a request lockerd refused: nothing a shopper can act on
            self.show_result({"outcome": "refused", "reason": None})

    def show_result(self, r: dict[str, Any], since: int | None = None) -> None:
        """Show a code's result; `since`: the stream line the request was sent after (the
        doors it opened may have moved since)."""
        self.last_result, self.reminded, self.thanked = r, "", False
        self.wait_left = float(r.get("wait_s") or 0)
        self.describe_result()
        look = self.widgets.look
        self.widgets.note.color = look.theme.fg("page_muted")
        self.widgets.note.font_size = look.theme.sizes.body * look.scale
        self.widgets.picture.kind = picture_for(r)
        self.voice.say(r, self.texts.lang)
        self.widgets.door_map.update(r["compartments"] if r["outcome"] == "opened" else ())
        self.code = ""
        self.sm.current = "result"
        self.cancel_timers()
        if r["outcome"] == "opened":
            # The screen stays with the open door: a reminder if it stays open, thanks
            # once it is closed, the service desk if lockerd reports it jammed (all
            # seen on lockerd's stream).
            self.waiting_doors = set(r["compartments"])
            mark = self.stream_seq if since is None else since
            self.opened_seen = {n for n in self.waiting_doors if self.last_open.get(n, -1) > mark}
            self.fault_before = {n for n in self.waiting_doors if self.states.get(n) == "fault"}
            Clock.schedule_once(self.door_reminder, self.timeout(REMINDER_SECONDS))
            Clock.schedule_once(self.result_timeout, self.timeout(DOOR_WAIT_SECONDS))
            self.countdown("result", self.timeout(DOOR_WAIT_SECONDS))
            if all(self.last_done.get(n, -1) > mark for n in self.waiting_doors):
                self.doors_closed()
        elif r["outcome"] == "throttled":
            # The screen counts the wait down and stays until it is over (or Done).
            self.waiting_doors = set()
            Clock.schedule_interval(self.count_down, COUNTDOWN_TICK_SECONDS)
            self.countdown("result", self.wait_left)
        else:
            self.waiting_doors = set()
            Clock.schedule_once(self.result_timeout, self.timeout(RESULT_SECONDS))
            self.countdown("result", self.timeout(RESULT_SECONDS))

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
        self.describe_result()

    def door_reminder(self, _dt: float) -> None:
        still_open = sorted(n for n in self.waiting_doors if self.doors.get(n) == "open")
        if self.sm.current == "result" and still_open:
            self.reminded = ", ".join(map(str, still_open))
            self.describe_result()
            note = self.widgets.note
            look = self.widgets.look
            note.color = look.theme.fg("page_danger")
            note.font_size = look.theme.sizes.heading * look.scale  # seen from a step away
            self.widgets.picture.kind = "close_door"
            self.voice.play("close_reminder", self.texts.lang)

    def doors_closed(self) -> None:
        self.waiting_doors = set()
        self.cancel_timers()
        self.thanked = True
        self.describe_result()
        self.voice.play("thanks", self.texts.lang)
        self.widgets.door_map.update(())  # the doors are shut: nothing left to find
        self.widgets.picture.kind = "thanks"
        Clock.schedule_once(self.home_after_thanks, THANKS_SECONDS)
        self.countdown("result", THANKS_SECONDS)

    def home_after_thanks(self, _dt: float) -> None:
        if self.sm.current == "result":
            self.walked_away(0)

    # -- lockerd's stream and the keyboard-mode scanner ----------------------------

    def on_stream(self, message: dict[str, Any]) -> None:
        if message["stream"] == "state":
            compartments = message["state"]["compartments"]
            self.doors = {c["number"]: c["door"] for c in compartments}
            self.states = {c["number"]: c["state"] for c in compartments}
            self.stream_seq += 1
            for number, door in self.doors.items():
                if door == "open":
                    self.last_open[number] = self.stream_seq
            # A door seen open is no longer one that may have failed to open.
            self.opened_seen |= {n for n in self.waiting_doors if self.doors.get(n) == "open"}
            if self.sm.current == "result" and self.door_failed(message["events"]):
                self.show_result({"outcome": "door_failed"})
        elif message["stream"] == "done":
            # lockerd's word: every door of the order's phase was seen open, then closed.
            self.stream_seq += 1
            done = set(message["compartments"])
            self.last_done.update(dict.fromkeys(done, self.stream_seq))
            if self.sm.current == "result" and self.waiting_doors and self.waiting_doors <= done:
                self.doors_closed()
        elif message["stream"] == "entry" and self.accepts_codes():
            self.show_result(message)

    def door_failed(self, events: list[str]) -> bool:
        """Did lockerd give up on a door of the order before it was seen open? Then its
        compartment is in fault: jammed after the unlock retries, or its board gone. A
        compartment still in fault from an earlier jam counts once a new alarm comes."""
        failed = {n for n in self.waiting_doors - self.opened_seen if self.states.get(n) == "fault"}
        alarm = "door_alarm" in events or "fault" in events
        return bool(failed - self.fault_before or (failed and alarm))

    def accepts_codes(self) -> bool:
        """Codes from a scanner count on the shopper and staff screens only."""
        return self.sm.current in ("welcome", "staff", "result") or (
            self.sm.current == "keypad" and self.mode != "pin"
        )

    def on_textinput(self, _window: object, text: str) -> bool:
        self.wedge.char(text, time.monotonic())
        return True

    def on_key_down(self, _window: object, key: int, *_args: object) -> bool:
        if key not in ENTER_KEYS:
            return False
        text = self.wedge.enter(time.monotonic())
        if text and self.accepts_codes():
            self.submit(text, method="scanner")
        return True

    # -- maintenance and lockerd's health -------------------------------------------

    def login(self, pin: str) -> None:
        if self._begin():
            self.worker.request("login", self._logged_in, self._login_failed, pin=pin)

    def _logged_in(self, session: Result) -> None:
        self._end()
        self.show("maintenance")
        self.maintenance.enter(session["token"])

    def _login_failed(self, exc: Failure) -> None:
        self._end()
        if isinstance(exc, ApiUnavailable):
            self.show("offline")
            return
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

    def check_daemon(self, _dt: float) -> None:
        """Out of service while lockerd is away, back to the welcome once it answers. A
        check still with lockerd (a slow or hung daemon) is not joined by another."""
        if not self.checking:
            self.checking = True
            self.worker.request("health", self._daemon_up, self._daemon_down)

    def _daemon_up(self, _health: Result) -> None:
        self.checking = False
        if self.sm.current == "offline":
            self.show("welcome")

    def _daemon_down(self, _exc: Failure) -> None:
        self.checking = False
        if self.sm.current != "offline":
            self.show("offline")
