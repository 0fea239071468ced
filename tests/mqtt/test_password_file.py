"""The broker password is refused at start when others can read its file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.sim import SimBoard
from locker.config import load_config
from locker.daemon import build

BIN = Path(sys.executable).parent
CONFIG = """
[locker]
id = "pw-1"
data_dir = "{folder}/data"
[mqtt]
host = "127.0.0.1"
port = 1
username = "pw-1"
password_file = "{secret}"
[api]
socket = "{folder}/api.sock"
[[boards]]
name = "b0"
driver = "sim"
[[compartments]]
numbers = "1-4"
channels = "1-4"
board = "b0"
size = "S"
"""


def write_config(tmp_path: Path, mode: int) -> tuple[Path, Path]:
    secret = tmp_path / "mqtt-password"
    secret.write_text("pw-locker\n")
    secret.chmod(mode)
    config = tmp_path / "locker.toml"
    config.write_text(CONFIG.format(folder=tmp_path, secret=secret))
    return config, secret


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_lockerd_refuses_a_password_file_others_can_read(tmp_path: Path, mode: int) -> None:
    config, secret = write_config(tmp_path, mode)
    out = subprocess.run(
        [str(BIN / "lockerd"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.splitlines()[-1] == (
        f"lockerd: [mqtt] password_file: {secret} is readable or writable by others"
        f" (mode {mode:o}); run chmod 600 {secret} (its owner the user lockerd runs as)"
    )


def test_a_private_password_file_is_used(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path, 0o600)
    locker = build(load_config(config), boards={"b0": SimBoard("b0", 8, door_close_s=0)})
    try:
        assert locker.link is not None
        assert locker.link.client.password == "pw-locker"
    finally:
        locker.close()
