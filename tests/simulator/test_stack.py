"""`make demo`'s stack and the platform simulator's shared subscription, for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulator.broker import Broker
from simulator.platform import PlatformSim

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_the_whole_stack_confirms_receipt_of_one_order(tmp_path: Path) -> None:
    out = subprocess.run(
        [BIN / "locker-sim", "stack", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "FRESH_NOT_ALLOWED" in text
    assert text.index("loaded in locker") < text.index("receipt of the order CONFIRMED")
    assert "receipt confirmed by the platform: yes" in text
    # The platform rendered the shopper's QR (PNG and terminal) from the contract's text.
    from PIL import Image

    from drivers.camera import decode

    (png,) = (tmp_path / "qr").glob("*-pickup-qr.png")
    (qr_text,) = decode(Image.open(png))
    assert qr_text.startswith("locker:store-001-a:pickup:")
    assert f"(show it to the camera): {png}" in text and "█" in text


def test_instances_share_the_events_and_confirm_only_on_picked_up(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    seen: list[str] = []
    a = PlatformSim(port=broker.port, out=seen.append)
    b = PlatformSim(port=broker.port, out=seen.append)
    locker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="locker-x", protocol=mqtt.MQTTv5)
    try:
        locker.connect("127.0.0.1", broker.port)
        locker.loop_start()
        kinds = ["expired", "door_alarm", "picked_up", "deposited"]
        for i in range(20):
            kind = kinds[i % 4]
            ev = {
                "event_id": str(i),
                "seq": i + 1,
                "type": kind,
                "locker_id": "x",
                "occurred_at": "2026-11-25T08:00:00Z",
                "order_id": f"O{i}",
                "method": "keypad",
                "closed_at": "2026-11-25T08:00:00Z",
                "compartments": [{"number": 1}],
                "pickup_code": "12345678",
                "pickup_qr": "q",
                "pickup_until": "t",
            }
            locker.publish(f"lockers/x/event/{kind}", json.dumps(ev), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while a.events.qsize() + b.events.qsize() < 20:
            assert time.monotonic() < deadline, (a.events.qsize(), b.events.qsize())
            time.sleep(0.05)
        time.sleep(0.3)
        assert a.events.qsize() + b.events.qsize() == 20  # each event to one instance only
        assert a.events.qsize() and b.events.qsize()  # and both got a share
        assert sorted(a.confirmed + b.confirmed) == sorted(f"O{i}" for i in range(2, 20, 4))
    finally:
        locker.disconnect()
        locker.loop_stop()
        a.close()
        b.close()
        broker.stop()


def run_until(argv: list[str | Path], env: dict[str, str], line: str) -> subprocess.Popen[str]:
    """Start `argv` and return once it has printed `line` (its output is unbuffered)."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    for printed in proc.stdout:
        if line in printed:
            return proc
    proc.wait(60)
    raise AssertionError(f"{argv} ended (exit {proc.returncode}) before printing {line!r}")


def private_tmp() -> dict[str, str]:
    """An environment whose temporary folder is new and empty, without a screen."""
    # Short on purpose: lockerd's socket lies below it, and a Unix socket path is short.
    tmp = tempfile.mkdtemp(prefix="st-")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    return {**env, "TMPDIR": tmp, "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_the_stack_leaves_no_files_behind_and_says_the_kiosk_was_skipped() -> None:
    env = private_tmp()
    try:
        out = subprocess.run(
            [BIN / "locker-sim", "stack"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env=env,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "receipt confirmed by the platform: yes" in out.stdout
        assert "no screen (DISPLAY is not set): the kiosk part was skipped" in out.stdout
        assert os.listdir(env["TMPDIR"]) == []
    finally:
        shutil.rmtree(env["TMPDIR"])


@pytest.mark.slow
def test_ctrl_c_stops_the_stack_and_leaves_no_files_behind() -> None:
    env = private_tmp()
    try:
        stack = run_until([BIN / "locker-sim", "stack"], env, "the platform reserves a compartment")
        stack.send_signal(signal.SIGINT)
        _, err = stack.communicate(timeout=60)
        assert "Traceback" not in err
        assert stack.returncode in (0, 130)  # 0: it had just finished
        assert os.listdir(env["TMPDIR"]) == []
    finally:
        shutil.rmtree(env["TMPDIR"])


def test_ctrl_c_stops_the_demo_without_a_traceback_and_leaves_no_files(tmp_path: Path) -> None:
    # The example's doors, closing by themselves only after 20 s: the Ctrl-C comes while
    # the demo waits for the first one.
    config = tmp_path / "slow-doors.toml"
    example = (Path(__file__).parents[2] / "config" / "example.toml").read_text()
    slow, changed = re.subn(r"(?m)^door_close_s = [0-9.]+", "door_close_s = 20", example)
    assert changed == 1
    config.write_text(slow)
    env = private_tmp()
    try:
        demo = run_until(
            [BIN / "locker-sim", "demo", "--config", str(config)], env, "the simulated door opens"
        )
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=60)
        assert "Traceback" not in err
        assert demo.returncode == 130
        assert os.listdir(env["TMPDIR"]) == []
    finally:
        shutil.rmtree(env["TMPDIR"])
