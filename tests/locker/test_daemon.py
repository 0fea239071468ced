"""`lockerd`, `lockerctl` and `locker-sim demo` as a user runs them: real processes."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent

CONFIG = """
[locker]
id = "t-1"
data_dir = "data"

[api]
socket = "api.sock"

[[boards]]
name = "b0"
driver = "sim"

[[compartments]]
numbers = "1-4"
channels = "1-4"
board = "b0"
size = "S"
"""


def test_lockerd_starts_notifies_systemd_and_stops_cleanly(tmp_path: Path) -> None:
    (tmp_path / "locker.toml").write_text(CONFIG)
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(20)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen(
        [BIN / "lockerd", "--config", str(tmp_path / "locker.toml")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sock.recv(100) == b"READY=1"
        assert sock.recv(100) == b"WATCHDOG=1"
        key = tmp_path / "data" / "locker.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert (tmp_path / "data" / "locker.db").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        sock.close()
    assert proc.stderr is not None
    assert "locker t-1 started: 4 compartments on 1 board," in proc.stderr.read()


def test_lockerd_refuses_a_bad_config_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "locker.toml"
    path.write_text(CONFIG.replace('size = "S"', 'size = "S"\ncolour = "red"'))
    proc = subprocess.run(
        [BIN / "lockerd", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "colour" in proc.stderr and "unknown key" in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing was started


def test_lockerd_check_names_a_driver_key_and_opens_nothing(tmp_path: Path) -> None:
    """`lockerd --check` reads every board's own keys through its driver, before any port
    is opened: a technician checks a cabinet's file on a laptop with no bus attached."""
    path = tmp_path / "locker.toml"
    board = 'driver = "kerong-cu48"\nport = "/dev/ttyUSB7"\nhook_sense = "upside-down"'
    path.write_text(CONFIG.replace('driver = "sim"', board))

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN / "lockerd", "--config", str(path), "--check"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )

    bad = check()
    assert bad.returncode == 2
    assert "b0" in bad.stderr and "hook_sense" in bad.stderr, bad.stderr
    path.write_text(path.read_text().replace("upside-down", "inverted"))
    good = check()
    assert good.returncode == 0 and "configuration OK" in good.stdout, good.stderr
    # /dev/ttyUSB7 does not exist here: a check that opened the port would have failed.
    assert not (tmp_path / "data").exists()


def test_demo_then_lockerctl_shows_the_history(tmp_path: Path) -> None:
    example = (ROOT / "config" / "example.toml").read_text()
    config = tmp_path / "locker.toml"
    # No platform: a broker on this machine would take the demo's events off the outbox.
    config.write_text(
        example.replace('"./var/demo', '"./state')
        .replace("door_close_s = 1.5", "door_close_s = 0.2")
        .replace("enabled = true ", "enabled = false")
    )
    demo = subprocess.run(
        [BIN / "locker-sim", "demo", "--config", str(config), "--keep-data"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert "FRESH_NOT_ALLOWED" in out
    assert out.index("event/deposited") < out.index("event/picked_up")
    assert "wrong code" in out
    ctl = [BIN / "lockerctl", "--config", str(config)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ctl, *args], capture_output=True, text=True, check=False, timeout=30
        )

    # lockerctl is a client of lockerd: with none running on the demo's data it says so.
    absent = run("history", "SO-DEMO-1")
    assert absent.returncode == 2 and "lockerd is not running" in absent.stderr
    daemon = subprocess.Popen([BIN / "lockerd", "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # until it serves its socket
            if (status := run("status")).returncode == 0:
                break
            assert daemon.poll() is None, "lockerd exited"
            time.sleep(0.05)
        assert "board b0: online" in status.stdout
        hist = run("history", "SO-DEMO-1")
        stages = [line.split()[1] for line in hist.stdout.splitlines()]
        assert stages == [
            "reserved",
            "deposit_opened",
            "deposit_closed",
            "deposited",
            "opened",
            "closed",
            "collected",
        ]
        events = run("events")
        assert '"type": "picked_up"' in events.stdout
        assert '"pickup_code": "****"' in events.stdout  # never a code on the terminal
        audit = run("audit")
        assert "picked_up" in audit.stdout and "scanner" in audit.stdout
        missing = run("history", "NOPE")
        assert missing.returncode == 1 and "no order NOPE" in missing.stderr
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    finally:
        daemon.kill()
        daemon.wait(timeout=10)
