"""The camera path: QR images made as `lockerctl qr` makes them (qrcode), decoded by pyzbar,
each code handed over once."""

from __future__ import annotations

import queue
import random
import time
from pathlib import Path

import pytest
from PIL import Image

from drivers.camera import CameraScanner, CameraUnavailable, FolderSource, decode, open_source
from locker.qr import image

TEXT = "locker:store-001-a:pickup:12345678"


def qr_image(text: str) -> Image.Image:
    """The QR as lockerctl and the platform simulator render it."""
    return image(text)


def test_a_qr_made_by_qrcode_decodes_to_its_text() -> None:
    assert decode(qr_image(TEXT)) == [TEXT]
    noise = Image.frombytes(
        "L", (200, 200), bytes(random.Random(1).randrange(256) for _ in range(40000))
    )
    assert decode(noise) == []


class _Never:
    """A camera that never has a frame (the test feeds frames itself)."""

    def frames(self):  # type: ignore[no-untyped-def]
        while True:
            yield None

    def close(self) -> None:
        pass


def test_the_same_code_is_not_submitted_twice_within_a_few_seconds() -> None:
    got: list[str] = []
    cam = CameraScanner(
        FolderSource(Path("/nonexistent-unused")) if False else _Never(),
        got.append,
        repeat_after_s=3.0,
    )
    frame = qr_image(TEXT)
    assert cam.feed(frame, 100.0) == [TEXT]
    assert cam.feed(frame, 101.0) == []  # still in front of the lens
    assert cam.feed(frame, 103.5) == []  # seen at 101: the window restarts
    assert cam.feed(frame, 107.0) == [TEXT]  # away for more than 3 s
    other = "locker:store-001-a:pickup:87654321"
    assert cam.feed(qr_image(other), 107.1) == [other]
    assert got == [TEXT, TEXT, other]


def test_frames_from_a_folder_reach_the_code_path(tmp_path: Path) -> None:
    codes: queue.Queue[str] = queue.Queue()
    cam = CameraScanner(FolderSource(tmp_path / "frames"), codes.put)
    cam.start()
    try:
        (tmp_path / "frames" / "broken.png").write_bytes(b"not an image")
        qr_image(TEXT).save(tmp_path / "frames" / "f1.png")
        assert codes.get(timeout=5) == TEXT
        time.sleep(0.2)
        assert not list((tmp_path / "frames").iterdir())  # every frame consumed
    finally:
        cam.stop()


def test_a_qr_shown_to_the_daemons_camera_opens_the_compartment(tmp_path: Path) -> None:
    import json

    from drivers.sim import SimBoard
    from locker.clock import SystemClock, rfc3339
    from locker.commands import CommandProcessor
    from locker.config import load_config
    from locker.daemon import LoopThread, build

    frames = tmp_path / "frames"
    (tmp_path / "locker.toml").write_text(
        '[locker]\nid = "cam-1"\ndata_dir = "data"\n[mqtt]\nenabled = false\n'
        f'[scanner]\ndriver = "camera"\nport = "folder:{frames}"\n[api]\nsocket = "api.sock"\n'
        '[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
    )
    board = SimBoard("b0", 8, door_close_s=0)
    locker = build(load_config(tmp_path / "locker.toml"), SystemClock(), {"b0": board})
    reply = CommandProcessor(locker.service).handle(
        "reserve",
        json.dumps(
            {
                "command_id": "c1",
                "sent_at": rfc3339(time.time()),
                "order_id": "SO-CAM",
                "items": [{"sku": "1", "qty": 1, "size": "S"}],
            }
        ),
    )
    assert reply is not None and reply["ok"]
    running = LoopThread(locker)
    try:
        qr_image(f"locker:cam-1:deposit:{reply['result']['deposit_code']}").save(frames / "a.png")
        deadline = time.monotonic() + 5
        while not board.is_open(1):
            assert time.monotonic() < deadline, "the camera's code did not open the door"
            time.sleep(0.02)
        audit = running.call(
            lambda: locker.store.db.execute(
                "SELECT actor FROM audit WHERE action='deposit_code'"
            ).fetchone()
        )
        assert audit["actor"] == "camera"
    finally:
        running.stop()


def test_a_live_camera_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    # OpenCV and picamera2 are optional: absent, the error names the package; present,
    # the missing device. Either way the daemon is told, never a crash.
    with pytest.raises(CameraUnavailable, match=r"OpenCV|cannot be opened"):
        open_source("opencv:/dev/no-such-camera")
    with pytest.raises(CameraUnavailable, match=r"picamera2|Raspberry Pi camera"):
        open_source("picamera2")
    with pytest.raises(CameraUnavailable, match="expected folder:PATH, opencv:DEVICE"):
        open_source("webcam")
    assert isinstance(open_source(f"folder:{tmp_path}"), FolderSource)


def test_the_daemon_starts_without_its_camera_and_reports_a_fault(tmp_path: Path) -> None:
    from drivers.sim import SimBoard
    from locker.clock import SystemClock
    from locker.config import load_config
    from locker.daemon import build

    (tmp_path / "locker.toml").write_text(
        '[locker]\nid = "cam-2"\ndata_dir = "data"\n[mqtt]\nenabled = false\n'
        '[scanner]\ndriver = "camera"\nport = "opencv:/dev/no-such-camera"\n'
        '[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-2"\nchannels = "1-2"\nboard = "b0"\nsize = "S"\n'
    )
    locker = build(load_config(tmp_path / "locker.toml"), SystemClock(), {"b0": SimBoard("b0")})
    try:
        assert locker.scanner is None
        faults = [e.fields for e in locker.store.events(0, 10) if e.type == "fault"]
        assert faults and faults[0]["component"] == "camera"
        assert "camera" in locker.service.devices_down
    finally:
        locker.close()


def test_a_missing_zbar_library_is_a_camera_fault_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from drivers.camera import CameraUnavailable, open_source

    # As on a cabinet without libzbar0: pyzbar cannot be imported.
    monkeypatch.setitem(sys.modules, "pyzbar", None)
    with pytest.raises(CameraUnavailable, match="apt install libzbar0"):
        open_source(f"folder:{tmp_path}")
