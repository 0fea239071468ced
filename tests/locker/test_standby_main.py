"""`locker-standby` as a process: a real TLS certificate, a real locker's database sent by
lockerd's replica writer, the data directory's lock shared with lockerd."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from conftest import Locker, start_locker, wait_for
from test_standby import LOCKER, SECRET, certs, make_server, make_target

from locker.dbfile import check_file, stamp_epoch
from locker.errors import LockerError
from locker.instance import AlreadyRunning, InstanceLock
from locker.replica import REPLICA_NAME, ReplicaWriter
from locker.replica_targets import Replicas
from locker.sdnotify import Notifier
from locker.standby import RECEIVED_NAME, standby_target
from locker.standby_main import Journal
from locker.standby_server import Received, read_received

__all__ = ["certs"]  # the module-scoped fixture of test_standby.py, used here too

ROOT = Path(__file__).resolve().parent.parent.parent
PROGRAM = [sys.executable, "-m", "locker.standby_main"]


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Spare:
    """The spare controller's folder: its configuration, data directory and secret."""

    folder: Path
    config: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def replica_dir(self) -> Path:
        return self.data_dir / "replica"


def write_config(folder: Path, certs: Path, standby: str | None) -> Path:
    """The same kind of file lockerd reads, with a [standby] table (`standby` is its body)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = f"""
[locker]
id = "{LOCKER}"
data_dir = "data"

[mqtt]
enabled = false

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
    if standby is not None:
        text += f"\n[standby]\n{standby}"
    path = folder / "locker.toml"
    path.write_text(text)
    return path


@pytest.fixture
def spare(tmp_path: Path, certs: Path) -> Spare:
    folder = tmp_path / "spare"
    folder.mkdir()
    (folder / "standby.secret").write_bytes(SECRET + b"\n")
    (folder / "standby.secret").chmod(0o600)
    port = free_port()
    standby = (
        f'listen = "127.0.0.1:{port}"\n'
        f'cert_file = "{certs / "server.crt"}"\n'
        f'key_file = "{certs / "server.key"}"\n'
        'secret_file = "standby.secret"\n'
    )
    return Spare(folder, write_config(folder, certs, standby), port)


class Running:
    """locker-standby started as systemd starts it, with a notify socket to hear READY on."""

    def __init__(self, spare: Spare, log_level: str = "DEBUG") -> None:
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(spare.folder / "notify.sock"))
        self.notify.settimeout(20)
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(spare.folder / "notify.sock"),
            "WATCHDOG_USEC": "400000",
            "LOCKER_LOG": log_level,
        }
        self.proc = subprocess.Popen(
            [*PROGRAM, "--config", str(spare.config)],
            env=env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = ""

    def heard(self) -> str:
        """The next datagram to systemd (a socket timeout fails the test)."""
        return self.notify.recv(200).decode()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.notify.close()


@pytest.fixture
def running(spare: Spare) -> Iterator[Running]:
    standby = Running(spare)
    try:
        assert standby.heard() == "READY=1"
        yield standby
    finally:
        standby.close()


def primary(tmp_path: Path, certs: Path, port: int) -> Locker:
    """A started locker whose [replica] standby is the spare, with one loaded order."""
    (tmp_path / "primary.secret").write_bytes(SECRET)
    replica = {
        "standby": f"127.0.0.1:{port}",
        "ca_file": str(certs / "ca.crt"),
        "secret_file": str(tmp_path / "primary.secret"),
    }
    locker = start_locker(tmp_path / "primary", replica=replica)
    locker.deposit("SO-1")
    return locker


def test_a_locker_database_sent_by_the_replica_writer_lands_on_the_standby_process(
    tmp_path: Path, certs: Path, spare: Spare, running: Running
) -> None:
    locker = primary(tmp_path, certs, spare.port)
    target = standby_target(locker.config, workdir=tmp_path / "work")
    writer = ReplicaWriter(locker.store.path, target, min_interval_s=0.05)
    writer.start()
    try:
        sent = locker.events()[-1].seq
        assert sent > 0
        wait_for(lambda: writer.status().seq == sent, "the first copy acknowledged")
        # received.json is written once the copy is stored, just after the acknowledgement.
        wait_for(lambda: getattr(read_received(spare.replica_dir), "seq", None) == sent, "received")
        first = read_received(spare.replica_dir)
        assert first is not None

        locker.deposit("SO-2")  # more commits: the copy follows
        writer.committed()
        newer = locker.events()[-1].seq
        assert newer > sent
        wait_for(lambda: writer.status().seq == newer, "the newer copy acknowledged")
        wait_for(lambda: (read_received(spare.replica_dir) or first).seq == newer, "received.json")
    finally:
        writer.close()
        target.close()
        locker.store.close()

    copy = spare.replica_dir / REPLICA_NAME
    facts = check_file(copy)
    assert facts.ok and facts.last_seq == newer and facts.epoch == 1
    status = json.loads((spare.replica_dir / RECEIVED_NAME).read_text())
    assert status == {
        "at": status["at"],
        "sender": "127.0.0.1",
        "locker_id": LOCKER,
        "seq": newer,
        "epoch": 1,
        "raw_length": copy.stat().st_size,
        "newest_change": facts.newest_change,
    }
    assert status["at"] >= first.at
    assert (spare.replica_dir / RECEIVED_NAME).stat().st_mode & 0o777 == 0o600

    assert running.stop() == 0
    log = running.stderr
    assert f"standby for locker {LOCKER} listening on 127.0.0.1:{spare.port}" in log
    assert re.search(
        rf"INFO locker-standby: first copy from 127\.0\.0\.1: seq {sent}, epoch 1", log
    )
    assert re.search(rf"DEBUG locker-standby: copy from 127\.0\.0\.1 stored: seq {newer},", log)
    assert "signal 15: stopping" in log and log.rstrip().endswith("stopped")
    assert SECRET.decode() not in log
    InstanceLock(spare.data_dir).release()  # the data directory is free again


def test_the_standby_pings_the_watchdog_and_reports_its_last_copy_to_systemd(
    tmp_path: Path, certs: Path, spare: Spare, running: Running
) -> None:
    assert running.heard() == "WATCHDOG=1"
    locker = start_locker(tmp_path / "primary")
    locker.deposit("SO-1")
    target = make_target(tmp_path, certs, spare.port)
    try:
        seq = target.put(locker.store.path)
    finally:
        target.close()
        locker.store.close()

    def status_heard() -> bool:
        return running.heard().startswith("STATUS=last copy ")

    wait_for(status_heard, "a STATUS line after the copy")
    assert running.stop() == 0
    assert f"seq {seq}, epoch 1" in running.stderr


def test_lockerd_refuses_to_start_while_the_standby_runs(spare: Spare, running: Running) -> None:
    """The other half of "one role a controller": the standby holds lockerd's lock."""
    lockerd = subprocess.run(
        [Path(sys.executable).parent / "lockerd", "--config", str(spare.config)],
        cwd=spare.folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lockerd.returncode == 2
    assert f"(pid {running.proc.pid})" in lockerd.stderr
    assert not (spare.data_dir / "locker.db").exists()  # it opened no database
    with pytest.raises(AlreadyRunning):
        InstanceLock(spare.data_dir)


def refusal(spare: Spare, *args: str) -> str:
    """Run the program expecting a refusal: exit 2 and one line on stderr, which it returns."""
    run = subprocess.run(
        [*PROGRAM, "--config", str(spare.config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("locker-standby: "), run.stderr
    assert not (spare.replica_dir / REPLICA_NAME).exists()
    return lines[0]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no [standby] listen", "[standby] listen is empty: this controller is not a standby"),
        ("no secret file", "[standby] secret_file {folder}/standby.secret: cannot read"),
        ("an empty secret", "[standby] secret_file {folder}/standby.secret: the shared secret is"),
        ("an unreadable key", "[standby] key_file {folder}/server.key: cannot read it"),
        ("a key of another cert", "[standby] cert_file {certs}/server.crt and key_file"),
    ],
)
def test_a_standby_that_cannot_receive_refuses_to_start_with_one_line(
    certs: Path, spare: Spare, case: str, expected: str
) -> None:
    config = spare.config.read_text()
    if case == "no [standby] listen":
        spare.config.write_text(config.split("[standby]")[0])
    elif case == "no secret file":
        (spare.folder / "standby.secret").unlink()
    elif case == "an empty secret":
        (spare.folder / "standby.secret").write_text(" \n")
    elif case == "an unreadable key":
        (spare.folder / "server.key").mkdir()  # unreadable as a file, even by root
        spare.config.write_text(config.replace(str(certs / "server.key"), "server.key"))
    elif case == "a key of another cert":
        spare.config.write_text(
            config.replace(str(certs / "server.key"), str(certs / "elsewhere.key"))
        )
    line = refusal(spare)
    assert expected.format(folder=spare.folder, certs=certs) in line
    assert SECRET.decode() not in line
    assert refusal(spare, "--check") == line  # --check finds the same


def test_a_standby_on_a_controller_whose_lockerd_holds_the_data_directory_refuses(
    spare: Spare,
) -> None:
    spare.data_dir.mkdir()
    held = InstanceLock(spare.data_dir)  # as a running lockerd holds it
    try:
        line = refusal(spare)
    finally:
        held.release()
    assert f"{spare.data_dir} is in use by lockerd (pid {os.getpid()})" in line
    assert "A controller that serves must not also receive copies" in line


def test_check_says_the_configuration_is_good_and_starts_nothing(spare: Spare) -> None:
    run = subprocess.run(
        [*PROGRAM, "--config", str(spare.config), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert run.stdout == f"{spare.config}: standby configuration OK\n"
    assert not spare.data_dir.exists()  # no lock taken, no directory made


def test_help_shows_the_defaults() -> None:
    run = subprocess.run(
        [*PROGRAM, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    text = " ".join(run.stdout.split())  # as argparse wraps it to the terminal's width
    assert "TOML configuration file (default: /etc/locker/locker.toml)" in text
    assert "how much to log (environment: LOCKER_LOG) (default: INFO)" in text


def test_the_program_is_installed_as_locker_standby() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["locker-standby"] == "locker.standby_main:main"


def received(at: float, sender: str = "10.0.0.5", seq: int = 10) -> Received:
    return Received(at, sender, LOCKER, seq, 1, 4096, None)


def test_the_log_says_at_info_the_first_copy_a_new_sender_and_copies_after_a_gap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="locker-standby")
    journal = Journal(tmp_path, Notifier())
    journal(received(1000.0))
    journal(received(1001.0, seq=11))
    journal(received(1002.0, sender="10.0.0.6", seq=12))
    journal(received(2000.0, sender="10.0.0.6", seq=13))
    journal(received(2001.0, sender="10.0.0.6", seq=5))
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["INFO", "DEBUG", "INFO", "INFO", "DEBUG", "WARNING"]
    assert lines[0][1].startswith("first copy from 10.0.0.5: seq 10, epoch 1")
    assert lines[2][1].startswith("copies now come from 10.0.0.6 (were from 10.0.0.5)")
    assert lines[3][1].startswith("a copy after 998 s without one")
    assert "holds seq 5, below the previous copy's 13" in lines[5][1]
    assert read_received(tmp_path) == received(2001.0, sender="10.0.0.6", seq=5)


def test_a_copy_of_an_older_epoch_or_of_another_locker_is_refused(
    tmp_path: Path, certs: Path
) -> None:
    """A controller replaced by a promotion that still believes it serves must not
    overwrite the newer generation's copy."""
    newer = start_locker(tmp_path / "newer")
    newer.deposit("SO-1")
    newer.store.close()
    stamp_epoch(newer.store.path, 2)
    server = make_server(certs, tmp_path / "standby")
    try:
        target = make_target(tmp_path, certs, server.port)
        try:
            target.put(newer.store.path)
            old = start_locker(tmp_path / "old")
            old.store.close()
            with pytest.raises(OSError, match="epoch 1 is older than the copy held"):
                target.put(old.store.path)
        finally:
            target.close()
        assert check_file(server.replica_dir / REPLICA_NAME).epoch == 2
    finally:
        server.close()
    # A standby restarted knows the epoch it holds from its copy.
    server = make_server(certs, tmp_path / "standby")
    try:
        target = make_target(tmp_path, certs, server.port)
        try:
            with pytest.raises(OSError, match="epoch 1 is older"):
                target.put(old.store.path)
        finally:
            target.close()
    finally:
        server.close()


def test_the_primary_target_names_an_unreadable_secret_or_ca(tmp_path: Path, certs: Path) -> None:
    locker = primary(tmp_path, certs, 7443)
    locker.store.close()
    (tmp_path / "primary.secret").unlink()
    with pytest.raises(LockerError, match=r"\[replica\] secret_file .*: cannot read"):
        standby_target(locker.config)
    (tmp_path / "primary.secret").write_bytes(SECRET)
    (tmp_path / "ca.crt").write_text("not a certificate")
    broken = start_locker(
        tmp_path / "broken",
        replica={
            "standby": "127.0.0.1:7443",
            "ca_file": str(tmp_path / "ca.crt"),
            "secret_file": str(tmp_path / "primary.secret"),
        },
    )
    broken.store.close()
    with pytest.raises(LockerError, match=r"\[replica\] ca_file .*ca.crt: cannot load"):
        standby_target(broken.config)
    target = standby_target(locker.config, workdir=tmp_path / "work")
    assert str(target) == "standby 127.0.0.1:7443" and target.locker_id == LOCKER


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_standby_unit_verifies_clean_is_confined_and_excludes_lockerd(
    tmp_path: Path,
) -> None:
    text = (ROOT / "systemd" / "locker-standby.service").read_text()
    assert "Conflicts=lockerd.service" in text.splitlines()
    assert "ExecStart=/opt/locker/.venv/bin/locker-standby --config /etc/locker/locker.toml" in text
    unit = tmp_path / "locker-standby.service"
    unit.write_text(text.replace("/opt/locker/.venv/bin/locker-standby", "/bin/true"))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in security.stderr:
        pytest.skip("this systemd-analyze has no offline security check")
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", security.stdout)
    assert level is not None, security.stdout + security.stderr
    assert float(level.group(1)) <= 2.0 and level.group(2) == "OK", security.stdout


def test_a_standby_that_is_down_holds_back_neither_the_directory_copy_nor_lockerd(
    tmp_path: Path, certs: Path
) -> None:
    """[replica] directory and standby both: one writer each, seen as one status."""
    server = make_server(certs, tmp_path / "standby")
    port = server.port
    locker = primary(tmp_path, certs, port)
    stick = tmp_path / "stick"
    config = replace(locker.config, replica=replace(locker.config.replica, directory=str(stick)))
    replicas = Replicas.from_config(config, locker.store.path)
    assert replicas is not None and len(replicas.writers) == 2
    locker.store.hub.committed.subscribe(lambda commit: replicas.committed())
    replicas.start()
    try:
        first = locker.events()[-1].seq
        wait_for(lambda: replicas.status().seq == first and replicas.status().lag_s == 0, "both")
        assert replicas.status().ok
        assert replicas.status().target == f"{stick}, standby 127.0.0.1:{port}"

        server.close()  # the standby is down for maintenance
        locker.deposit("SO-2")
        newer = locker.events()[-1].seq
        wait_for(lambda: not replicas.status().ok, "the standby's outage reported")
        status = replicas.status()
        assert status.detail.startswith(f"standby 127.0.0.1:{port}: ")
        assert status.seq == first and status.lag_s > 0  # what every copy holds
        wait_for(lambda: check_file(stick / REPLICA_NAME).last_seq == newer, "the stick's copy")
        assert replicas.writers[0].status().ok and replicas.writers[0].status().seq == newer
    finally:
        replicas.close()
        server.close()
        locker.store.close()
