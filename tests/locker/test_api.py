"""The local API over its real Unix socket, with the daemon's loop running."""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RunningDaemon, reserve_on_loop

from drivers.sim import SimBoard
from locker.clock import parse_rfc3339
from locker.daemon import Locker


class Client:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")

    def raw(self, data: bytes) -> dict[str, Any]:
        self.sock.sendall(data)
        return self.read()

    def read(self) -> dict[str, Any]:
        line = self.file.readline()
        assert line, "connection closed"
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, **req: Any) -> dict[str, Any]:
        return self.raw(json.dumps(req).encode() + b"\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Locker]:
    (tmp_path / "locker.toml").write_text(
        '[locker]\nid = "api-1"\ndata_dir = "data"\n[mqtt]\nenabled = false\n'
        '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
    )
    running = RunningDaemon(tmp_path / "locker.toml", {"b0": SimBoard("b0", 8, door_close_s=0.1)})
    yield running.locker
    running.stop()


def test_socket_mode_and_garbage_then_requests(daemon: Locker) -> None:
    path = daemon.config.api.socket
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o660
    c = Client(path)
    try:
        assert c.raw(b"\xff\xfe garbage\n") == {
            "id": None,
            "ok": False,
            "error": "not a JSON request line",
        }
        assert c.raw(b"[1,2]\n")["error"] == "a request is a JSON object"
        bad = c.ask(id=1, op="explode")
        assert bad["id"] == 1 and "unknown op 'explode'" in bad["error"]
        # the same connection carries on
        wrong = c.ask(id=2, op="code", text="12345678", method="keypad")
        assert wrong["ok"] and wrong["result"]["outcome"] == "wrong"
        assert wrong["result"]["attempts_left"] == 4
        assert c.ask(id=3, op="code", text=5)["error"].startswith("text:")
        health = c.ask(id=4, op="health")["result"]
        assert health["boards"][0]["name"] == "b0" and health["mqtt_connected"] is False
        assert health["scanner_online"] is None  # no scanner configured: neither up nor down
        snap = c.ask(id=5, op="snapshot")["result"]
        assert snap["free"] == {"S": 4}
    finally:
        c.close()


def test_subscribers_get_a_stream_of_state_changes(daemon: Locker) -> None:
    watcher, kiosk = Client(daemon.config.api.socket), Client(daemon.config.api.socket)
    try:
        first = watcher.ask(id="w", op="subscribe")
        assert first["ok"] and first["result"]["locker_id"] == "api-1"
        code = reserve_on_loop(daemon, "SO-A")
        opened = kiosk.ask(id=1, op="code", text=code, method="keypad")["result"]
        assert opened["outcome"] == "opened" and opened["compartments"] == [1]
        doors, kinds = set(), []
        for _ in range(20):  # the door opens, then closes by itself: the stream shows both
            msg = watcher.read()
            kinds.append(msg["stream"])
            if msg["stream"] == "done":  # lockerd's word that the phase is complete
                continue
            assert msg["stream"] == "state"
            doors.add(msg["state"]["compartments"][0]["door"])
            if "deposited" in msg["events"]:
                break
        assert {"open", "closed"} <= doors
        assert kinds.count("done") == 1
        history = kiosk.ask(id=2, op="history", order_id="SO-A")["result"]
        assert [h["stage"] for h in history][-1] == "deposited"
    finally:
        watcher.close()
        kiosk.close()


def test_maintenance_needs_the_technician_pin(daemon: Locker) -> None:
    import subprocess
    import sys

    c = Client(daemon.config.api.socket)
    try:
        assert (
            "pin: the technician PIN is required"
            in c.ask(id=1, op="test_open", compartment=2)["error"]
        )
        assert (
            "no technician PIN is set"
            in c.ask(id=2, op="test_open", compartment=2, pin="000000")["error"]
        )
        ctl = [str(Path(sys.executable).parent / "lockerctl"), "--config", str(daemon.config.path)]
        subprocess.run(
            [*ctl, "set-pin", "--pin-stdin"],
            input="24681357\n",
            text=True,
            check=True,
            capture_output=True,
        )
        for i in range(6):  # five free tries, then the terminal waits
            wrong = c.ask(id=10 + i, op="test_open", compartment=2, pin="11111111")
            assert "wrong PIN" in wrong["error"]
        assert "try again in 30 s" in wrong["error"]
        throttled = c.ask(id=20, op="test_open", compartment=2, pin="24681357")
        assert "try again in" in throttled["error"]  # even the right PIN waits now
        daemon.store.db.execute("DELETE FROM throttle WHERE terminal='technician'")
        out = subprocess.run(
            [*ctl, "open", "2", "--pin-stdin"],
            input="24681357\n",
            text=True,
            check=False,
            capture_output=True,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout == "compartment 2 unlocked\n"
        svc = subprocess.run(
            [*ctl, "service", "3", "off", "--pin-stdin"],
            input="24681357\n",
            text=True,
            check=False,
            capture_output=True,
        )
        assert svc.stdout == "compartment 3 out of service\n"
        actors = {
            r[0]
            for r in daemon.store.db.execute(
                "SELECT actor FROM audit WHERE action IN ('maintenance_open', 'out_of_service')"
            )
        }
        assert actors == {"technician"}
    finally:
        c.close()


def test_a_maintenance_session_shows_diagnostics_and_reissues_a_code(daemon: Locker) -> None:
    from locker.pin import write_pin

    write_pin(daemon.config.pin_path, "24681357")
    c = Client(daemon.config.api.socket)
    try:
        assert "wrong PIN" in c.ask(id=1, op="login", pin="11111111")["error"]
        assert "session has ended" in c.ask(id=2, op="diagnostics", token="0" * 32)["error"]
        assert "pin: the technician PIN" in c.ask(id=3, op="diagnostics")["error"]
        token = c.ask(id=4, op="login", pin="24681357")["result"]["token"]
        board = daemon.boards["b0"]
        assert isinstance(board, SimBoard)
        board.jammed.add(3)
        deposit = reserve_on_loop(daemon, "SO-D")
        assert c.ask(id=5, op="code", text=deposit)["result"]["outcome"] == "opened"
        for _ in range(100):  # the door closes by itself: the order is loaded
            if c.ask(id=0, op="history", order_id="SO-D")["result"][-1]["stage"] == "deposited":
                break
            threading.Event().wait(0.05)
        assert c.ask(id=6, op="test_open", compartment=3, token=token)["ok"]
        diag: dict[str, Any] = {}
        for _ in range(100):  # the jammed door is retried, then declared a fault
            diag = c.ask(id=7, op="diagnostics", token=token)["result"]
            if diag["compartments"][2]["fault"]:
                break
            threading.Event().wait(0.1)
        assert diag["compartments"][2]["fault"] == "jammed"
        assert diag["compartments"][0]["state"] == "loaded"
        assert diag["compartments"][0]["fault"] is None
        assert diag["boards"][0] | {"frames": []} == {
            "name": "b0",
            "online": True,
            "errors": 0,
            "detail": "",
            "frames": [],  # the in-memory board has no wire
        }
        assert diag["version"] and diag["outbox"] >= 1 and diag["mqtt_connected"] is False
        assert diag["clock_synchronised"] in (True, False, None)
        assert abs(parse_rfc3339(diag["time"]) - time.time()) < 5
        alarm = diag["alarms"][0]
        assert (alarm["action"], alarm["compartment"]) == ("door_jammed", 3)
        actions = [r["action"] for r in diag["recent"]]  # newest first
        assert actions.index("door_jammed") < actions.index("reserve") < actions.index("start")
        assert "maintenance_login" in actions
        # No code anywhere in what the screen shows.
        assert deposit not in json.dumps(diag)

        reissued = c.ask(id=8, op="reissue_code", order_id="SO-D", token=token)["result"]
        assert reissued["pickup_qr"] == f"locker:api-1:pickup:{reissued['pickup_code']}"
        assert "UNKNOWN_ORDER" in c.ask(id=9, op="reissue_code", order_id="X", token=token)["error"]
        assert c.ask(id=10, op="logout", token=token)["result"] == {"ended": True}
        assert "session has ended" in c.ask(id=11, op="diagnostics", token=token)["error"]
        opened = c.ask(id=12, op="code", text=reissued["pickup_code"])["result"]
        assert opened["outcome"] == "opened" and opened["purpose"] == "pickup"
    finally:
        c.close()


def test_codes_from_the_scanner_reach_the_screen_on_the_stream(daemon: Locker) -> None:
    from locker.model import Method

    watcher, kiosk = Client(daemon.config.api.socket), Client(daemon.config.api.socket)
    try:
        watcher.ask(id="w", op="subscribe")
        # The kiosk's own request is answered to it alone: no stream line for it.
        assert kiosk.ask(id=1, op="code", text="11112222")["result"]["outcome"] == "wrong"
        daemon.loop.post(lambda: daemon.service.enter_code("33334444", Method.CAMERA))
        entries = []
        for _ in range(10):
            msg = watcher.read()
            if msg["stream"] == "entry":
                entries.append(msg)
                break
        assert entries == [
            {
                "stream": "entry",
                "method": "camera",
                "outcome": "wrong",
                "message": "wrong code; 4 attempts left",
                "purpose": None,
                "compartments": [],
                "attempts_left": 4,  # the camera is a terminal of its own
                "wait_s": 0.0,
                "reason": None,
                "order_id": None,
            }
        ]
    finally:
        watcher.close()
        kiosk.close()


def test_lockerctl_qr_issues_a_new_code_and_renders_it(daemon: Locker, tmp_path: Path) -> None:
    import subprocess
    import sys

    from PIL import Image

    from drivers.camera import decode
    from locker.pin import write_pin

    write_pin(daemon.config.pin_path, "24681357")
    ctl = [str(Path(sys.executable).parent / "lockerctl"), "--config", str(daemon.config.path)]
    c = Client(daemon.config.api.socket)
    try:
        deposit = reserve_on_loop(daemon, "SO-Q")
        assert c.ask(id=1, op="code", text=deposit)["result"]["outcome"] == "opened"
        for _ in range(100):
            if c.ask(id=0, op="history", order_id="SO-Q")["result"][-1]["stage"] == "deposited":
                break
            threading.Event().wait(0.05)
        png = tmp_path / "out" / "q.png"
        out = subprocess.run(
            [*ctl, "qr", "SO-Q", "--pin-stdin", "--png", str(png)],
            input="24681357\n",
            text=True,
            capture_output=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        (text,) = decode(Image.open(png))
        code = text.rsplit(":", 1)[1]
        assert text == f"locker:api-1:pickup:{code}"
        assert f"new pickup code {code} for order SO-Q" in out.stdout and "█" in out.stdout
        # The QR from lockerctl opens the compartment, as the customer's phone would.
        opened = c.ask(id=2, op="code", text=text, method="scanner")["result"]
        assert opened["outcome"] == "opened" and opened["compartments"] == [1]
        refused = subprocess.run(
            [*ctl, "qr", "SO-NONE", "--pin-stdin"],
            input="24681357\n",
            text=True,
            capture_output=True,
            check=False,
            cwd=tmp_path,
        )
        assert refused.returncode == 1 and "UNKNOWN_ORDER" in refused.stderr
        plain = subprocess.run(
            [*ctl, "qr", "--text", "locker:api-1:pickup:123", "--png", str(tmp_path / "t.png")],
            text=True,
            capture_output=True,
            check=True,
        )
        assert decode(Image.open(tmp_path / "t.png")) == ["locker:api-1:pickup:123"]
        assert "QR text: locker:api-1:pickup:123" in plain.stdout
    finally:
        c.close()


def test_a_maintenance_session_ends_after_five_idle_minutes(tmp_path: Path) -> None:
    from locker.clock import FakeClock
    from locker.pin import write_pin

    (tmp_path / "locker.toml").write_text(
        '[locker]\nid = "api-2"\ndata_dir = "data"\n[mqtt]\nenabled = false\n'
        '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-2"\nchannels = "1-2"\nboard = "b0"\nsize = "S"\n'
    )
    clock = FakeClock()
    running = RunningDaemon(tmp_path / "locker.toml", {"b0": SimBoard("b0", 2)}, clock)
    write_pin(running.locker.config.pin_path, "24681357")
    c = Client(running.locker.config.api.socket)
    try:
        token = c.ask(id=1, op="login", pin="24681357")["result"]["token"]
        running.call(lambda: clock.advance(299))
        assert c.ask(id=2, op="diagnostics", token=token)["ok"]  # and the five minutes restart
        running.call(lambda: clock.advance(299))
        assert c.ask(id=3, op="diagnostics", token=token)["ok"]
        running.call(lambda: clock.advance(301))
        assert "session has ended" in c.ask(id=4, op="diagnostics", token=token)["error"]
    finally:
        c.close()
        running.stop()


def test_the_staff_screens_codes_go_through_while_the_keypad_waits(daemon: Locker) -> None:
    deposit = reserve_on_loop(daemon, "SO-ST")
    c = Client(daemon.config.api.socket)
    try:
        for i in range(8):  # a shopper hammering the keypad until it waits
            c.ask(id=i, op="code", text=f"{50_000_000 + i}", method="keypad")
        assert c.ask(id=9, op="code", text=deposit, method="keypad")["result"]["outcome"] == (
            "throttled"
        )
        staff = c.ask(id=10, op="code", text=deposit, method="keypad", staff=True)["result"]
        assert staff["outcome"] == "opened" and staff["purpose"] == "deposit"
        bad = c.ask(id=11, op="code", text=deposit, method="keypad", staff="yes")
        assert bad["ok"] is False and bad["error"].startswith("staff:")
    finally:
        c.close()


def test_events_lists_the_waiting_events_with_their_codes_masked(daemon: Locker) -> None:
    deposit = reserve_on_loop(daemon, "SO-EV")
    c = Client(daemon.config.api.socket)
    try:
        assert c.ask(id=1, op="code", text=deposit)["result"]["outcome"] == "opened"
        result: dict[str, Any] = {}
        for _ in range(100):  # the door closes by itself: `deposited` carries the pickup code
            result = c.ask(id=2, op="events")["result"]
            if any(e["type"] == "deposited" for e in result["events"]):
                break
            threading.Event().wait(0.05)
        deposited = next(e for e in result["events"] if e["type"] == "deposited")
        assert deposited["order_id"] == "SO-EV" and deposited["locker_id"] == "api-1"
        assert deposited["pickup_code"] == "****" and deposited["pickup_qr"] == "****"
        assert deposit not in json.dumps(result)
        # No broker here: nothing was acknowledged, so every recorded event still waits.
        assert result["waiting"] == result["recorded"] == len(result["events"])
        newest = c.ask(id=3, op="events", limit=1)["result"]
        assert [e["seq"] for e in newest["events"]] == [result["recorded"]]
        for bad in (0, 1001, "5", True):
            assert c.ask(id=4, op="events", limit=bad)["error"].startswith("limit:")
    finally:
        c.close()


def test_audit_returns_the_last_entries_oldest_first_without_a_pin(daemon: Locker) -> None:
    reserve_on_loop(daemon, "SO-AU")
    c = Client(daemon.config.api.socket)
    try:
        entries = c.ask(id=1, op="audit")["result"]["entries"]
        assert [e["action"] for e in entries][:1] == ["start"]
        last = entries[-1]
        assert (last["actor"], last["action"], last["order_id"]) == ("platform", "reserve", "SO-AU")
        assert abs(parse_rfc3339(last["at"]) - time.time()) < 5
        assert set(last) == {"at", "actor", "action", "order_id", "compartment", "detail"}
        assert c.ask(id=2, op="audit", limit=1)["result"]["entries"] == [last]
        assert c.ask(id=3, op="audit", limit=-1)["error"].startswith("limit:")
    finally:
        c.close()


def test_the_stream_says_when_every_door_of_a_phase_was_open_and_closed(daemon: Locker) -> None:
    deposit = reserve_on_loop(daemon, "SO-DONE")
    stream = Client(daemon.config.api.socket)
    c = Client(daemon.config.api.socket)
    try:
        assert stream.ask(id=1, op="subscribe")["ok"]
        opened = c.ask(id=2, op="code", text=deposit, method="keypad")["result"]
        assert opened["outcome"] == "opened"
        while True:  # the simulated door opens on the pulse and closes 0.1 s later
            line = stream.read()
            if line.get("stream") == "done":
                break
        assert line == {
            "stream": "done",
            "purpose": "deposit",
            "order_id": "SO-DONE",
            "compartments": opened["compartments"],
        }
    finally:
        stream.close()
        c.close()
