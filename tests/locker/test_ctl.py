"""`lockerctl` as maintenance staff run it: a real process beside a real lockerd (or none).

lockerctl is a client of lockerd's local API: with no daemon it says so and stops, and
it never needs (or touches) the database, the code key or the PIN hash."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
    as_json = ctl(linked.config, "events", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"events": [], "waiting": 0, "recorded": 0}


def test_status_of_a_running_daemon_comes_from_its_health(linked: Lockerd) -> None:
    out = ctl(linked.config, "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("lockerd 0.1.0 is running")
    assert lines[1].split() == ["no.", "size", "board:ch", "door", "state", "flags"]
    assert lines[2].split() == ["1", "S", "b0:1", "closed", "free"]
    assert "board b0: online, 0 errors" in lines
    assert any(line.startswith("platform link: connected to 127.0.0.1:") for line in lines)
    assert "outbox: 0 events waiting for the platform" in lines
    as_json = json.loads(ctl(linked.config, "status", "--json").stdout)
    assert as_json["health"]["mqtt_connected"] is True
    assert as_json["state"]["locker_id"] == "ctl-1"
    assert [c["number"] for c in as_json["state"]["compartments"]] == [1, 2, 3, 4]


READS = [["history", "SO-1"], ["events"], ["audit"], ["status"], ["status", "--json"]]


@pytest.mark.parametrize("command", READS)
def test_reads_with_lockerd_stopped_say_so_and_touch_no_file(
    linked: Lockerd, command: list[str]
) -> None:
    linked.stop()
    data = linked.config.parent / "data"
    before = {p.name: p.stat().st_mtime_ns for p in data.iterdir()}
    out = ctl(linked.config, *command)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == f"lockerctl: lockerd is not running (nothing listens on {linked.socket})\n"
    # The database as lockerd left it would show a past that looks like the present.
    assert {p.name: p.stat().st_mtime_ns for p in data.iterdir()} == before


@pytest.mark.parametrize("command", READS)
def test_reads_never_create_a_data_directory_key_or_database(
    tmp_path: Path, command: list[str]
) -> None:
    config = tmp_path / "locker.toml"
    config.write_text(CONFIG.format(mqtt="enabled = false"))
    out = ctl(config, *command)
    assert out.returncode == 2 and "lockerd is not running" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locker.toml"]


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


def test_lockerctl_works_with_a_data_directory_it_cannot_find(offline: Lockerd) -> None:
    """Another configuration for the same socket, its data_dir missing: lockerctl needs
    only the socket (and the wiring of the compartments, for `status`)."""
    assert ctl(offline.config, "set-pin", "--pin-stdin", stdin=PIN + "\n").returncode == 0
    elsewhere = offline.config.parent.parent / "elsewhere"
    elsewhere.mkdir()
    config = elsewhere / "locker.toml"
    config.write_text(
        CONFIG.format(mqtt="enabled = false")
        .replace('data_dir = "data"', 'data_dir = "missing"')
        .replace('socket = "api.sock"', f"socket = {str(offline.socket)!r}")
    )
    off = ctl(config, "service", "4", "off", "--pin-stdin", stdin=PIN + "\n")
    assert (off.returncode, off.stdout) == (0, "compartment 4 out of service\n"), off.stderr
    status = ctl(config, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[5].split() == ["4", "S", "b0:4", "closed", "out_of_service"]
    audit = ctl(config, "audit", "--limit", "1")
    assert (audit.returncode, audit.stdout.split()[1:4]) == (
        0,
        ["technician", "out_of_service", "#4"],
    )
    assert ctl(config, "events").returncode == 0
    assert ctl(config, "history", "SO-NONE").returncode == 1
    assert sorted(p.name for p in elsewhere.iterdir()) == ["locker.toml"]


NOBODY = 65534  # nobody:nogroup on Debian


def _others_can_run(program: Path) -> bool:
    """Whether a user other than the owner can reach and execute `program` (a Python
    built under /root, as some workstations have, cannot be run as nobody)."""
    path = program.resolve()
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run lockerctl as another user")
@pytest.mark.skipif(
    not _others_can_run(Path(sys.executable)), reason="nobody cannot run this Python"
)
def test_a_member_of_the_locker_group_works_without_access_to_the_database() -> None:
    """lockerd runs as root with its data directory 0700; lockerctl runs as nobody, in the
    group that owns the socket (as maintenance staff are in the locker group)."""
    # Not under tmp_path: pytest's own folder is 0700, so nobody could not reach the socket.
    base = Path(tempfile.mkdtemp(prefix="lockerctl-group-"))
    base.chmod(0o755)
    daemon = Lockerd(base / "cabinet", "enabled = false")
    try:
        daemon.health()
        data = base / "cabinet" / "data"
        assert data.stat().st_mode & 0o777 == 0o700
        assert ctl(daemon.config, "set-pin", "--pin-stdin", stdin=PIN + "\n").returncode == 0
        os.chown(daemon.socket, -1, NOBODY)
        as_member: dict[str, Any] = {
            "user": NOBODY,
            "group": NOBODY,
            "extra_groups": [],
            "cwd": base,
            "env": {"PATH": os.environ.get("PATH", ""), "HOME": str(base)},
        }
        # The premise: this user cannot read what lockerd keeps.
        peek = subprocess.run(
            [sys.executable, "-c", f"open({str(data / 'locker.db')!r}, 'rb')"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            **as_member,
        )
        assert peek.returncode != 0 and "PermissionError" in peek.stderr

        status = ctl(daemon.config, "status", **as_member)
        assert status.returncode == 0, status.stderr
        assert "board b0: online, 0 errors" in status.stdout
        opened = ctl(daemon.config, "open", "2", "--pin-stdin", stdin=PIN + "\n", **as_member)
        assert (opened.returncode, opened.stdout) == (0, "compartment 2 unlocked\n"), opened.stderr
        audit = ctl(daemon.config, "audit", **as_member)
        assert audit.returncode == 0, audit.stderr
        assert audit.stdout.splitlines()[-1].split()[1:4] == [
            "technician",
            "maintenance_open",
            "#2",
        ]
        entries = json.loads(ctl(daemon.config, "audit", "--json", **as_member).stdout)["entries"]
        assert entries[-1]["action"] == "maintenance_open"
        events = ctl(daemon.config, "events", "--json", **as_member)
        assert events.returncode == 0 and set(json.loads(events.stdout)) == {
            "events",
            "waiting",
            "recorded",
        }
        missing = ctl(daemon.config, "history", "SO-NONE", **as_member)
        assert (missing.returncode, missing.stderr) == (1, "no order SO-NONE in this locker\n")
        # Without the socket's group, a plain user is told why, not shown a traceback.
        outsider = ctl(daemon.config, "status", **{**as_member, "group": 1})
        assert outsider.returncode == 2
        assert outsider.stderr.endswith(
            "permission denied (run as user locker or a member of its group)\n"
        )
        daemon.stop()
    finally:
        daemon.kill()
        shutil.rmtree(base)
