"""What the log says while the broker cannot be reached, and a clean stop with it gone."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.sim import SimBoard
from locker.clock import SystemClock
from locker.config import load_config
from locker.daemon import build
from mqtt.outage import OutageLog
from simulator.broker import Broker, free_port

LOG = logging.getLogger("test.outage")


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_outage_log_says_the_first_failure_each_change_and_then_a_reminder(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    out = OutageLog(LOG, "broker.lan:1883", lambda: now[0], repeat_s=300)
    caplog.set_level(logging.INFO, logger="test.outage")
    for _ in range(20):  # paho retrying every few seconds
        out.failed("[Errno 111] Connection refused")
        now[0] += 5
    assert warnings(caplog, "cannot reach") == [
        "cannot reach the platform's broker at broker.lan:1883:"
        " [Errno 111] Connection refused (retrying)"
    ]
    out.failed("[Errno -2] Name or service not known")  # a change is said at once
    now[0] += 400
    out.failed("[Errno -2] Name or service not known")  # the same, long after: a reminder
    lines = warnings(caplog, "broker.lan")
    assert len(lines) == 3
    assert "Name or service not known" in lines[1]
    assert lines[2].startswith("still cannot reach") and "22 attempts in 500 s" in lines[2]
    out.connected()
    assert warnings(caplog, "reached the broker") == [
        "reached the broker at broker.lan:1883 after 22 failed attempts in 500 s"
    ]
    out.connected()  # an ordinary reconnect after that says nothing more
    assert len(warnings(caplog, "reached the broker")) == 1


def locker_toml(folder: Path, host: str, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "locker.toml"
    path.write_text(
        f'[locker]\nid = "mq-1"\ndata_dir = "{folder / "data"}"\n'
        f'[mqtt]\nhost = "{host}"\nport = {port}\n'
        f'[api]\nsocket = "{folder / "api.sock"}"\n'
        '[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
    )
    return path


def wait_for(what: str, done: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("host", "reason"),
    [("127.0.0.1", "Connection refused"), ("broker.invalid", "")],
    ids=["nothing-listening", "host-does-not-resolve"],
)
def test_a_locker_that_cannot_reach_its_broker_says_why_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, host: str, reason: str
) -> None:
    caplog.set_level(logging.INFO, logger="mqtt.link")
    port = free_port()  # nothing listens there
    locker = build(
        load_config(locker_toml(tmp_path, host, port)), SystemClock(), {"b0": SimBoard("b0")}
    )
    assert locker.link is not None
    link = locker.link
    try:
        link.start()
        wait_for("two connection attempts", lambda: link.outage.attempts >= 2)
    finally:
        link.stop()
        locker.close()
    lines = warnings(caplog, "cannot reach the platform's broker")
    assert len(lines) == 1, lines
    assert f"{host}:{port}: " in lines[0] and reason in lines[0]
    assert not lines[0].endswith(": (retrying)")  # a reason is named


def test_stopping_with_the_broker_just_gone_still_closes_everything(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    locker = build(
        load_config(locker_toml(tmp_path / "l", "127.0.0.1", broker.port)),
        SystemClock(),
        {"b0": SimBoard("b0")},
    )
    link = locker.link
    assert link is not None
    posted: list[Callable[[], None]] = []
    link.post = posted.append  # the loop is stopping: nothing posted to it runs any more
    link.start()
    wait_for("connected", link.client.is_connected)

    def turn() -> bool:  # what the loop did before the stop began: the link is up
        while posted:
            posted.pop(0)()
        link.tick()  # the status check settles (no retained status on a new broker)
        return link.connected

    wait_for("the link serves", turn)
    assert broker.proc is not None
    broker.proc.kill()
    wait_for("paho noticed", lambda: not link.client.is_connected())
    locker.close()  # used to raise "The client is not currently connected" and skip the rest
    with pytest.raises(Exception, match="closed database"):
        locker.store.db.execute("SELECT 1")
    assert not (tmp_path / "l" / "data" / "locker.db-wal").exists()  # checkpointed on close
    broker.stop()


def test_one_part_failing_to_stop_does_not_keep_the_database_open(tmp_path: Path) -> None:
    class Stubborn(SimBoard):
        def close(self) -> None:
            raise OSError("the port vanished")

    locker = build(
        load_config(locker_toml(tmp_path, "127.0.0.1", free_port())),
        SystemClock(),
        {"b0": Stubborn("b0")},
    )
    locker.close()
    with pytest.raises(Exception, match="closed database"):
        locker.store.db.execute("SELECT 1")
    # and the data directory is free for the next lockerd
    build(load_config(tmp_path / "locker.toml"), SystemClock(), {"b0": SimBoard("b0")}).close()
