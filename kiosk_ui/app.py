"""`locker-kiosk`: the locker's touchscreen (Kivy), a client of lockerd's local API only.

This module is the command line: it reads the configuration, sets Kivy's window
up and starts the app. What the screens do is in `kiosk.py` (the app),
`screens.py` (their layout), `maintenance.py` (the technician's screen) and
`results.py` (what a code's result says); lockerd is asked through `worker.py`,
off the UI thread, and its stream is read by `stream.py`.

Screens: welcome (scan or type), a numeric keypad with large targets, the
result of a code (door open until it is closed again, with a reminder while it
stays open; wrong code with attempts left; the wait when throttled, counted
down; door failed: service desk, as soon as lockerd reports a door of the order
jammed; thank you), the staff screen (deposit and retrieval codes; back to the
welcome screen when left idle), the maintenance diagnostic screen behind the
technician PIN, "please wait" while lockerd is slow to answer, and "out of
service" while lockerd is away — the kiosk reconnects by itself. Chinese and
English, switched on screen. A USB scanner in keyboard mode types into the code
field; results of the serial scanner and the camera (read by lockerd) arrive on
lockerd's stream and are shown the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from locker.config_kiosk import SIZES, KioskSection, read_kiosk
from locker.config_reader import ConfigError, Reader

if TYPE_CHECKING:
    from kiosk_ui.kiosk import KioskApp

CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)


def font() -> str | None:
    return next((f for f in CJK_FONTS if os.path.exists(f)), None)


def build_app(
    socket_path: str,
    lang: str = "zh",
    size: tuple[int, int] = (800, 480),
    fullscreen: bool = False,
    kiosk: KioskSection | None = None,
) -> KioskApp:
    """Configure Kivy's window, then create the app. Kivy is imported here, once its
    settings are made (the window reads them when it is created), and never by a
    headless daemon."""
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
    from kivy.core.text import LabelBase

    from kiosk_ui.kiosk import KioskApp

    cjk = font()
    if cjk:
        LabelBase.register("Roboto", cjk)  # every label can show Chinese
    return KioskApp(socket_path, lang, kiosk or KioskSection())


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
        settings = kiosk_settings(args.config)
    except SettingsError as exc:
        # A screen stuck on "out of service" would not say why: say it and stop.
        parser.exit(2, f"locker-kiosk: {exc}\n")
    socket_path, kiosk = settings
    size = args.size or kiosk.width_height
    lang = args.lang or kiosk.language
    build_app(socket_path, lang, size, args.fullscreen, kiosk).run()
    return 0


def _settings(path: str) -> dict[str, str]:
    """The socket, language and size of `kiosk_settings(path)` as text."""
    socket_path, kiosk = kiosk_settings(path)
    return {"socket": socket_path, "language": kiosk.language, "size": kiosk.size}


def kiosk_settings(path: str) -> tuple[str, KioskSection]:
    """[api] socket and the [kiosk] table (read with lockerd's own checks) of the
    configuration (nothing else is read); SettingsError names the file and the key when
    one cannot be used."""
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
    try:
        section = read_kiosk(Reader(Path(path), "[kiosk]", kiosk), Path(path).parent)
    except ConfigError as exc:
        raise SettingsError(str(exc)) from None
    if section.logo and not os.path.isfile(section.logo):
        raise SettingsError(f"{path}: [kiosk] logo: {section.logo} not found")
    return socket_path, section


if __name__ == "__main__":
    sys.exit(main())
