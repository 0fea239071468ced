"""`make demo`'s stack and the platform simulator's shared subscription, for real."""

from __future__ import annotations

import json
import subprocess
import sys
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
