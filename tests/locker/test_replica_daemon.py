"""The replica inside a running locker: each commit reaches the USB stick's copy, a stick
that goes away is a `replica` fault, and its return clears it (real SQLite, real files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import wait_for

from locker.clock import SystemClock
from locker.config import load_config
from locker.daemon import LoopThread, build
from locker.dbfile import check_file
from locker.errors import LockerError

CONFIG = """
[locker]
id = "r-1"
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
[replica]
directory = "usb/locker"
max_lag_s = 0.5
"""
ITEMS = [{"sku": "1", "qty": 1, "size": "S"}]


def test_commits_reach_the_stick_and_a_missing_stick_is_a_replica_fault(tmp_path: Path) -> None:
    (tmp_path / "locker.toml").write_text(CONFIG)
    locker = build(load_config(tmp_path / "locker.toml"), SystemClock())
    running = LoopThread(locker, turn_s=0.01)
    copy = tmp_path / "usb" / "locker" / "locker.db"
    try:
        running.call(lambda: locker.service.reserve({"order_id": "SO-1", "items": ITEMS}))
        wait_for(lambda: copy.exists() and check_file(copy).newest_change is not None, "copy")
        facts = check_file(copy)
        assert facts.ok and facts.locker_id == "r-1" and facts.epoch == 1
        health = running.call(locker.health)
        assert health["replica"]["ok"] and health["epoch"] == 1 and health["disk_free_mb"] >= 0

        # The stick is pulled: its mount point is no directory any more.
        (tmp_path / "usb" / "locker").rename(tmp_path / "usb" / "pulled")
        (tmp_path / "usb" / "locker").write_text("not mounted")
        running.call(lambda: locker.service.reserve({"order_id": "SO-2", "items": ITEMS}))

        def events(kind: str) -> list[dict[str, object]]:
            found = running.call(lambda: locker.store.events(limit=1000))
            return [e.fields for e in found if e.type == kind]

        wait_for(lambda: any(f["component"] == "replica" for f in events("fault")), "fault")
        assert not running.call(locker.health)["replica"]["ok"]

        (tmp_path / "usb" / "locker").unlink()
        (tmp_path / "usb" / "pulled").rename(tmp_path / "usb" / "locker")
        wait_for(
            lambda: any(f["component"] == "replica" for f in events("fault_cleared")),
            "fault cleared",
            timeout=90,
        )
        # (the fault_cleared commit itself is the next copy's work: ok, not yet lag 0)
        assert running.call(locker.health)["replica"]["ok"]
    finally:
        running.stop()
    # A clean stop leaves the copy current: both orders are in it.
    assert check_file(copy).ok


def test_a_standby_whose_secret_cannot_be_read_stops_the_start_naming_the_key(
    tmp_path: Path,
) -> None:
    (tmp_path / "locker.toml").write_text(
        CONFIG.replace(
            'directory = "usb/locker"',
            'standby = "10.0.0.2:7443"\nca_file = "ca.crt"\nsecret_file = "s"',
        )
    )
    with pytest.raises(
        LockerError, match=r"\[replica\] secret_file .*cannot read the shared secret"
    ):
        build(load_config(tmp_path / "locker.toml"), SystemClock())
