"""`lockerctl` as maintenance staff run it: a real process beside a real lockerd (or none)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from locker.codes import CodeBook, load_or_create_key
from locker.storage import Store
from simulator.broker import Broker

BIN = Path(sys.executable).parent
PIN = "24681357"

CONFIG = """
[locker]
id = "ctl-1"
data_dir = "data"

[mqtt]
{mqtt}

[api]
socket = "api.sock"

[[boards]]
name = "b0"
driver = "sim"
door_close_s = 0.2

[[compartments]]
numbers = "1-4"
channels = "1-4"
board = "b0"
size = "S"
"""


def ctl(
    config: Path, *args: str, stdin: str | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lockerctl"), "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        **kw,
    )


def ask(path: Path, **request: Any) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(json.dumps({"id": 1, **request}).encode() + b"\n")
        with sock.makefile("rb") as f:
            reply: dict[str, Any] = json.loads(f.readline())
    return reply


class Lockerd:
    """A real `lockerd` process on a simulated board, its config and socket in `folder`."""

    def __init__(self, folder: Path, mqtt: str) -> None:
        folder.mkdir()
        self.config = folder / "locker.toml"
        self.config.write_text(CONFIG.format(mqtt=mqtt))
        self.socket = folder / "api.sock"
        self.proc = subprocess.Popen(
            [str(BIN / "lockerd"), "--config", str(self.config)], stderr=subprocess.DEVNULL
        )

    def health(self, until: Any = lambda h: True, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                result: dict[str, Any] = ask(self.socket, op="health")["result"]
                if until(result):
                    return result
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "lockerd did not become ready"
            assert self.proc.poll() is None, "lockerd exited"
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    yield b
    b.stop()


@pytest.fixture
def linked(tmp_path: Path, broker: Broker) -> Iterator[Lockerd]:
    """lockerd connected to a broker: the platform link is up."""
    d = Lockerd(tmp_path / "cabinet", f"port = {broker.port}")
    d.health(until=lambda h: h["mqtt_connected"])
    yield d
    d.kill()


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[Lockerd]:
    """lockerd without the platform ([mqtt] enabled = false)."""
    d = Lockerd(tmp_path / "cabinet", "enabled = false")
    d.health()
    yield d
    d.kill()


def test_events_with_the_broker_up_says_the_outbox_holds_only_unacknowledged_events(
    linked: Lockerd,
) -> None:
    out = ctl(linked.config, "events")
    assert out.returncode == 0, out.stderr
    assert "0 events waiting for the platform" in out.stderr
    assert "only events the broker has not acknowledged" in out.stderr
    assert "lockerctl audit" in out.stderr


def test_status_of_a_running_daemon_comes_from_its_health(linked: Lockerd) -> None:
    out = ctl(linked.config, "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("lockerd 0.1.0 is running")
    assert lines[1].split() == ["no.", "size", "board:ch", "door", "order", "state", "flags"]
    assert "board b0: online, 0 errors" in lines
    assert any(line.startswith("platform link: connected to 127.0.0.1:") for line in lines)
    assert "outbox: 0 events waiting for the platform" in lines
    assert "last known" not in out.stdout


def test_status_with_lockerd_stopped_says_so_and_the_link_is_unknown(linked: Lockerd) -> None:
    linked.stop()
    out = ctl(linked.config, "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == (
        f"lockerd is not running (nothing listens on {linked.socket}):"
        " last known state, as lockerd last wrote it"
    )
    # The boards table still says online: it is shown as the past, not as the present.
    assert "board b0: online, 0 errors (last known)" in lines
    assert "platform link: unknown (lockerd not running)" in lines
    assert "platform link: connected" not in out.stdout


def test_maintenance_actions_answer_in_sentences(offline: Lockerd) -> None:
    assert ctl(offline.config, "set-pin", "--pin-stdin", stdin=PIN + "\n").returncode == 0
    opened = ctl(offline.config, "open", "2", "--pin-stdin", stdin=PIN + "\n")
    assert (opened.returncode, opened.stdout) == (0, "compartment 2 unlocked\n"), opened.stderr
    off = ctl(offline.config, "service", "3", "off", "--pin-stdin", stdin=PIN + "\n")
    assert (off.returncode, off.stdout) == (0, "compartment 3 out of service\n"), off.stderr
    status = ctl(offline.config, "status").stdout
    assert next(line for line in status.splitlines() if line.startswith("  3 ")).endswith(
        "out_of_service"
    )
    assert "platform link: off ([mqtt] enabled = false)" in status
    on = ctl(offline.config, "service", "3", "on", "--pin-stdin", stdin=PIN + "\n")
    assert (on.returncode, on.stdout) == (0, "compartment 3 back in service\n"), on.stderr
    every = ctl(offline.config, "open-all", "--pin-stdin", stdin=PIN + "\n")
    assert (every.returncode, every.stdout) == (0, "compartments 1, 2, 3, 4 unlocked\n")
    wrong = ctl(offline.config, "open", "2", "--pin-stdin", stdin="11111111\n")
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert wrong.stderr.startswith("lockerctl: wrong PIN")


@pytest.mark.parametrize("command", [["set-pin"], ["open", "2"], ["service", "2", "off"]])
def test_a_pin_without_a_terminal_is_a_one_line_error(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "locker.toml"
    config.write_text(CONFIG.format(mqtt="enabled = false"))
    # A new session has no controlling terminal: as under cron, ssh without -t or a unit.
    out = ctl(config, *command, stdin="", start_new_session=True)
    assert out.returncode == 2
    assert out.stderr == (
        "lockerctl: no terminal to type the PIN in: run lockerctl in a terminal,"
        " or give the PIN on standard input with --pin-stdin\n"
    )
    assert not (tmp_path / "data" / "technician.pin").exists()


def test_key_file_hint_names_the_absolute_path(tmp_path: Path) -> None:
    cabinet = tmp_path / "cabinet"
    (cabinet / "data").mkdir(parents=True)
    (cabinet / "locker.toml").write_text(CONFIG.format(mqtt="enabled = false"))
    key = cabinet / "data" / "locker.key"
    Store(cabinet / "data" / "locker.db", CodeBook.from_key(load_or_create_key(key))).close()
    key.chmod(0o644)
    # Run from the configuration's parent: data_dir resolves to cabinet/data, which the
    # hint must not give as a relative path.
    out = ctl(Path("cabinet") / "locker.toml", "status", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.rstrip().endswith(f"run chmod 600 {key}")


def test_help_shows_the_default_configuration() -> None:
    out = subprocess.run(
        [str(BIN / "lockerctl"), "--help"], capture_output=True, text=True, check=True, timeout=30
    )
    assert "(default: /etc/locker/locker.toml)" in " ".join(out.stdout.split())


def test_set_pin_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    """The locker user owns the PIN's folder; lockerctl may run as root."""
    config = tmp_path / "locker.toml"
    config.write_text(CONFIG.format(mqtt="enabled = false"))
    data = tmp_path / "data"
    data.mkdir()
    victim = tmp_path / "shadow"
    victim.write_text("root's file\n")
    # the temporary name an older lockerctl used, planted in advance
    (data / "technician.new").symlink_to(victim)
    out = ctl(config, "set-pin", "--pin-stdin", stdin=PIN + "\n")
    assert out.returncode == 0, out.stderr
    assert victim.read_text() == "root's file\n"
    pin = data / "technician.pin"
    assert not pin.is_symlink() and pin.read_text().startswith("pbkdf2_sha256$")
    assert sorted(p.name for p in data.iterdir()) == ["technician.new", "technician.pin"]

    # the PIN path itself a link: refused, nothing written anywhere
    pin.unlink()
    pin.symlink_to(victim)
    out = ctl(config, "set-pin", "--pin-stdin", stdin=PIN + "\n")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (f"lockerctl: {pin} is a symbolic link; remove it and set the PIN again\n")
    assert victim.read_text() == "root's file\n" and pin.is_symlink()
    assert sorted(p.name for p in data.iterdir()) == ["technician.new", "technician.pin"]
