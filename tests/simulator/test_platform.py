"""`locker-sim platform` when something is missing: one line saying what, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from simulator.broker import Broker, free_port

BIN = Path(sys.executable).parent


def platform(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "locker-sim", "platform", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_no_broker_is_one_line_and_a_non_zero_exit() -> None:
    port = free_port()  # nothing listens there
    out = platform("--port", str(port), "--locker", "store-001-a")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(
        f"locker-sim platform: cannot connect to the MQTT broker at 127.0.0.1:{port}"
    )
    assert "locker-sim boards" in out.stderr  # where the right port comes from


def test_a_locker_that_never_answers_is_said_without_a_traceback(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    try:
        out = platform("--port", str(broker.port), "--locker", "nobody", "--timeout", "0.5")
    finally:
        broker.stop()
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert "locker nobody did not answer reserve within 0.5 s" in out.stderr
    assert f"locker id nobody, MQTT port {broker.port}" in out.stderr
