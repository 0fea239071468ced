"""The camera scanner: frames in, QR codes out (pyzbar), fed to the same code path.

Frames come from a `FrameSource`: a live camera through OpenCV (`opencv:0`, a
USB camera) or picamera2 (`picamera2`, the Raspberry Pi camera) when that
library is installed on the machine, or a folder of image files
(`folder:PATH`: the tests, and a bench without a camera). A code seen
in consecutive frames is handed over once, not again until it has been out of
sight for `repeat_after_s` — a phone held in front of the lens must not count
as a row of wrong attempts.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from drivers.options import OptionError, Options, ScannerDriver, option
from locker.config import ScannerSection
from locker.config_reader import resolve
from locker.scanners import ScannerEvents, ScannerUnavailable

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class FrameSource(Protocol):
    def frames(self) -> Iterator[Image.Image | None]:
        """Frames as they come; None when no new frame is ready."""
        ...

    def close(self) -> None: ...


class FolderSource:
    """Every image file dropped into a folder is one frame (then it is removed)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def frames(self) -> Iterator[Image.Image | None]:
        while True:
            files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                yield None
                continue
            from PIL import Image  # noqa: PLC0415 - Pillow only when a camera is configured

            for path in files:
                try:
                    with Image.open(path) as img:
                        frame = img.convert("L")
                except OSError as exc:
                    log.warning("camera: unreadable frame %s: %s", path.name, exc)
                    frame = None
                path.unlink(missing_ok=True)
                yield frame

    def close(self) -> None:
        """Nothing to release."""


class CameraUnavailable(ScannerUnavailable):
    """The configured camera library or device is not there."""

    def __init__(self, detail: str) -> None:
        super().__init__("camera", detail)


class OpenCVSource:
    """A V4L2 camera through OpenCV (`opencv-python-headless`, installed by the site)."""

    def __init__(self, device: int | str) -> None:
        try:
            # Optional, only on kiosks with a USB camera: imported when configured.
            import cv2  # type: ignore[import-not-found]  # noqa: PLC0415
        except ImportError as exc:
            raise CameraUnavailable("OpenCV (python3-opencv) is not installed") from exc
        self._cv2 = cv2
        self._capture = cv2.VideoCapture(device)
        if not self._capture.isOpened():
            raise CameraUnavailable(f"camera {device!r} cannot be opened")

    def frames(self) -> Iterator[Image.Image | None]:
        while True:
            ok, frame = self._capture.read()
            if not ok:
                yield None
                continue
            from PIL import Image  # noqa: PLC0415 - Pillow only when a camera is configured

            gray = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2GRAY)
            yield Image.fromarray(gray)

    def close(self) -> None:
        self._capture.release()


class Picamera2Source:
    """The Raspberry Pi camera module through picamera2 (Raspberry Pi OS package)."""

    def __init__(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]  # noqa: PLC0415
        except ImportError as exc:
            raise CameraUnavailable("picamera2 (python3-picamera2) is not installed") from exc
        try:
            self._camera = Picamera2()
            # A small grey-level frame is plenty for a QR held 10-30 cm from the lens.
            config = self._camera.create_video_configuration(main={"size": (640, 480)})
            self._camera.configure(config)
            self._camera.start()
        except Exception as exc:  # the library raises plain RuntimeErrors for a missing camera
            raise CameraUnavailable(f"Raspberry Pi camera: {exc}") from exc

    def frames(self) -> Iterator[Image.Image | None]:
        from PIL import Image  # noqa: PLC0415 - Pillow only when a camera is configured

        while True:
            yield Image.fromarray(self._camera.capture_array("main")).convert("L")

    def close(self) -> None:
        self._camera.stop()
        self._camera.close()


def open_source(port: str) -> FrameSource:
    """The frame source that `[scanner] port` names: folder:PATH, opencv:N, picamera2.
    CameraUnavailable when the source or the QR decoder cannot be used."""
    load_decoder()
    kind, _, arg = port.partition(":")
    if kind == "folder" and arg:
        return FolderSource(Path(arg))
    if kind == "opencv":
        return OpenCVSource(int(arg) if arg.isdigit() else (arg or 0))
    if kind == "picamera2":
        return Picamera2Source()
    raise CameraUnavailable(
        f"camera source {port!r}: expected folder:PATH, opencv:DEVICE or picamera2"
    )


def load_decoder() -> Callable[[Image.Image], list[Any]]:
    """pyzbar's decoder; it loads the zbar C library, so it is imported only when a camera
    is configured, and its absence is a camera fault, not a daemon that cannot start."""
    try:
        from pyzbar import pyzbar  # noqa: PLC0415
    except (ImportError, OSError) as exc:
        raise CameraUnavailable(
            f"the QR decoder cannot load ({exc}); install libzbar0 (apt install libzbar0)"
        ) from exc
    decoder: Callable[[Image.Image], list[Any]] = pyzbar.decode
    return decoder


def decode(frame: Image.Image) -> list[str]:
    """The text of every QR or barcode in the frame (ASCII only; anything else is noise)."""
    out = []
    for symbol in load_decoder()(frame.convert("L")):
        try:
            out.append(symbol.data.decode("ascii"))
        except UnicodeDecodeError:
            log.warning("camera: a code that is not ASCII text was ignored")
    return out


class CameraScanner:
    """Reads frames in a thread of its own and hands each new code to `on_code` once."""

    def __init__(
        self,
        source: FrameSource,
        on_code: Callable[[str], None],
        repeat_after_s: float = 3.0,
        idle_s: float = 0.05,
    ) -> None:
        self.source = source
        self.on_code = on_code
        self.repeat_after_s = repeat_after_s
        self.idle_s = idle_s
        self._last_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)

    @property
    def name(self) -> str:
        return "camera"

    @property
    def online(self) -> bool | None:
        return None  # a camera that fails shows in the devices down, not here

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.source.close()

    def close(self) -> None:
        self.stop()

    def _run(self) -> None:
        for frame in self.source.frames():
            if self._stop.is_set():
                return
            if frame is None:
                self._stop.wait(self.idle_s)
                continue
            self.feed(frame, time.monotonic())

    def feed(self, frame: Image.Image, now: float) -> list[str]:
        """Decode one frame; returns (and hands over) the codes that are new."""
        fresh = []
        if len(self._last_seen) > MAX_REMEMBERED:
            # A stream of ever new codes (an attack, or a busy day) must not grow this for
            # ever: only what is still within repeat_after_s matters.
            self._last_seen = {
                t: s for t, s in self._last_seen.items() if now - s < self.repeat_after_s
            }
        for text in decode(frame):
            last = self._last_seen.get(text)
            self._last_seen[text] = now
            if last is not None and now - last < self.repeat_after_s:
                continue  # the same code still in front of the lens
            fresh.append(text)
            try:
                self.on_code(text)
            except Exception:  # the consumer's bug must not stop the camera
                log.exception("camera: handing over a code failed")
        return fresh


SOURCE_KINDS = "folder:PATH, opencv:DEVICE or picamera2"
# Codes remembered at most before those out of sight are forgotten.
MAX_REMEMBERED = 256


@dataclass(frozen=True)
class CameraOptions(Options):
    port: str = option("", required=True)  # the frame source: folder:PATH, opencv:N, picamera2

    def __post_init__(self) -> None:
        p = self.port
        if not (
            (p.startswith("folder:") and len(p) > 7) or p.startswith("opencv:") or p == "picamera2"
        ):
            raise OptionError("port", f'"{p}": the camera is {SOURCE_KINDS}')


def _resolve(options: CameraOptions, base: Path) -> CameraOptions:
    if not options.port.startswith("folder:"):
        return options
    folder = resolve(base, options.port.removeprefix("folder:"))
    return dataclasses.replace(options, port=f"folder:{folder}")


def _make(cfg: ScannerSection, options: CameraOptions, events: ScannerEvents) -> CameraScanner:
    return CameraScanner(open_source(options.port), events.on_code)


DRIVER = ScannerDriver(CameraOptions, _make, _resolve)
