"""One lockerd per data directory and per API socket, and the operator's start-up errors:
real `lockerd` processes, as a technician starting one by hand beside the service would."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

CONFIG = """
[locker]
id = "t-1"
data_dir = "{data}"

[api]
socket = "{socket}"

[[boards]]
name = "b0"
driver = "sim"

[[compartments]]
numbers = "1-4"
channels = "1-4"
board = "b0"
size = "S"
"""


def write_config(path: Path, data: str = "data", sock: str = "api.sock") -> Path:
    path.write_text(CONFIG.format(data=data, socket=sock))
    return path


def ask(sock_path: Path, op: str) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock_path))
        s.sendall(json.dumps({"id": 1, "op": op}).encode() + b"\n")
        reply: dict[str, object] = json.loads(s.makefile().readline())
        return reply


def serving(sock_path: Path) -> bool:
    try:
        return ask(sock_path, "health")["ok"] is True
    except OSError:
        return False


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [BIN / "lockerd", "--config", str(config)], stderr=subprocess.PIPE, text=True
    )


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "lockerd", *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def first(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A lockerd serving tmp_path/api.sock from tmp_path/data."""
    proc = start(write_config(tmp_path / "locker.toml"))
    deadline = time.monotonic() + 30
    while not serving(tmp_path / "api.sock"):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "lockerd did not start serving"
        time.sleep(0.05)
    yield proc
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert proc.stderr is not None
    proc.stderr.close()


def test_a_second_lockerd_on_the_same_data_directory_refuses_and_names_the_first(
    tmp_path: Path, first: subprocess.Popen[str]
) -> None:
    second = run("--config", tmp_path / "locker.toml")
    assert second.returncode == 2
    assert f"is in use by another lockerd (pid {first.pid})" in second.stderr
    assert "Traceback" not in second.stderr
    # The first one still serves its kiosk: its socket was neither taken nor deleted.
    assert serving(tmp_path / "api.sock")


def test_a_second_lockerd_with_its_own_data_refuses_a_socket_the_first_serves(
    tmp_path: Path, first: subprocess.Popen[str]
) -> None:
    other = write_config(tmp_path / "other.toml", data="other-data", sock="api.sock")
    second = run("--config", other)
    assert second.returncode == 2
    assert "api.sock is served by another running lockerd" in second.stderr
    assert serving(tmp_path / "api.sock")
    # and it let go of its own data directory on the way out
    third = start(other)
    third.send_signal(signal.SIGTERM)
    third.wait(timeout=20)
    assert third.stderr is not None
    assert "in use by another lockerd" not in third.stderr.read()


def test_a_lockerd_killed_outright_leaves_nothing_that_blocks_the_next(tmp_path: Path) -> None:
    config = write_config(tmp_path / "locker.toml")
    proc = start(config)
    deadline = time.monotonic() + 30
    while not serving(tmp_path / "api.sock"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()  # as a power cut would: the socket file and the lock file stay behind
    proc.wait(timeout=10)
    assert proc.stderr is not None
    proc.stderr.close()
    assert (tmp_path / "api.sock").exists()
    again = start(config)
    try:
        deadline = time.monotonic() + 30
        while not serving(tmp_path / "api.sock"):
            assert again.poll() is None, again.stderr.read() if again.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=20) == 0
        assert again.stderr is not None
        again.stderr.close()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--log-level", "LOUD"], "invalid choice: 'LOUD'"),
        (["--config", "/nonexistent/locker.toml"], "/nonexistent/locker.toml"),
    ],
)
def test_operator_mistakes_get_one_clear_line(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    proc = run(*args)
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr


def test_a_data_directory_that_cannot_be_made_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("")
    config = write_config(tmp_path / "locker.toml", data=str(tmp_path / "plain-file" / "data"))
    proc = run("--config", config)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"data directory {tmp_path / 'plain-file' / 'data'}" in proc.stderr


def test_help_shows_the_defaults() -> None:
    out = run("--help").stdout
    assert "/etc/locker/locker.toml" in out and "INFO" in out


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    proc = run("--log-level", "debug", "--config", "/nonexistent/locker.toml")
    assert proc.returncode == 2 and "invalid choice" not in proc.stderr
