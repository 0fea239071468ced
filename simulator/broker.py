"""A local Mosquitto on a free port (the demo and the tests): started, stopped, restarted."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Broker:
    """A private Mosquitto, its config and persistence in `folder`."""

    def __init__(self, folder: Path, extra: str = "") -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.exe = exe
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nset_tcp_nodelay true\n"
            # Started as root (CI), mosquitto would drop to its own user, which cannot
            # read the test's private temporary folder; as anyone else this is a no-op.
            f"user {getpass.getuser()}\n{extra}"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
