"""A full data medium, one commit path at a time: the store, a door reading, the timer
sweep, a platform command, a code at the kiosk's local API.

The data directory is a real tmpfs of its own (mounted here: root, as in CI), filled
with a file until the kernel says ENOSPC, so every failure is SQLite's own
SQLITE_FULL on a real COMMIT, not an imitation.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Locker, RunningDaemon, start_locker
from test_api import Client

from drivers.sim import SimBoard
from locker import repo
from locker.codes import CodeBook
from locker.model import Component, EntryOutcome, ErrorCode, OrderState
from locker.service import STORAGE_PROBE_S
from locker.storage import RESERVE_BYTES, StorageFull, Store

BOOK = CodeBook.from_key(b"t" * 32)


class Medium:
    """A small tmpfs of its own, and a file that fills it."""

    def __init__(self, path: Path, size_mb: int = 16) -> None:
        path.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Take every free block (again, after space was freed)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        try:
            while True:  # the last partial block
                os.write(fd, b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink()

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=True)


@pytest.fixture
def medium(tmp_path: Path) -> Iterator[Medium]:
    m = Medium(tmp_path / "medium")
    yield m
    m.unmount()


@pytest.fixture
def full_locker(medium: Medium) -> Iterator[Locker]:
    lk = start_locker(medium.path)
    yield lk
    lk.store.close()


def orders(lk: Locker) -> list[tuple[str, str]]:
    rows = lk.store.db.execute("SELECT order_id, state FROM orders ORDER BY pk").fetchall()
    return [(r[0], r[1]) for r in rows]


def without_reserve(lk: Locker, medium: Medium) -> None:
    """The medium full, its reserve already given back and its space taken too."""
    medium.fill()
    with pytest.raises(StorageFull) as first, lk.store.transaction() as tx:
        tx.emit("probe", {}, 0.0)
    assert first.value.released
    medium.fill()


def recover(lk: Locker, medium: Medium) -> None:
    """Space comes back; the probe finds it on the tick after STORAGE_PROBE_S."""
    medium.free()
    lk.advance(STORAGE_PROBE_S)
    assert lk.store.fault is None


# -- the store -------------------------------------------------------------------------


def test_a_commit_the_full_medium_refuses_is_storage_full_and_gives_the_reserve_back(
    medium: Medium,
) -> None:
    store = Store(medium.path / "l.db", BOOK)
    assert store.keep_reserve() and store.reserve_path.stat().st_size == RESERVE_BYTES
    medium.fill()
    ran: list[str] = []
    with pytest.raises(StorageFull) as refused, store.transaction() as tx:
        tx.emit("lost", {}, 0.0)
        tx.after_commit(lambda: ran.append("unlock"))
    assert refused.value.code == ErrorCode.STORAGE_FULL and refused.value.released
    assert "full" in refused.value.message
    assert store.fault is not None and store.fault.kind == "full"
    assert not store.reserve_path.exists() and ran == [] and not store.db.in_transaction
    # The reserve's space takes the work in flight.
    with store.transaction() as tx:
        tx.emit("kept", {}, 0.0)
    medium.fill()
    with pytest.raises(StorageFull) as again, store.transaction() as tx:
        tx.emit("lost too", {}, 0.0)
    assert not again.value.released
    assert not store.probe() and store.fault is not None  # still full
    medium.free()
    assert store.probe() and store.fault is None
    assert store.reserve_path.stat().st_size == RESERVE_BYTES  # held again
    assert [e.type for e in store.events()] == ["kept"]
    store.close()


def test_an_error_that_is_not_the_medium_keeps_its_own_exception(tmp_path: Path) -> None:
    import sqlite3

    store = Store(tmp_path / "l.db", BOOK)
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as tx:
        tx.q("INSERT INTO meta (key, value) VALUES ('k', NULL)")
    assert store.fault is None
    store.close()


# -- a platform command ----------------------------------------------------------------


def test_a_command_on_a_full_medium_is_refused_with_its_command_id(
    full_locker: Locker, medium: Medium
) -> None:
    lk = full_locker
    assert lk.reserve("SO-1")["ok"]
    medium.fill()
    # The command in flight when the medium filled commits on the reserve...
    assert lk.reserve("SO-2")["ok"]
    # ...new work is refused while the fault lasts, answered under its own command_id.
    refused = lk.reserve("SO-3")
    assert refused["command_id"] == "c-3" and refused["ok"] is False
    assert refused["error"]["code"] == "STORAGE_FULL"
    assert lk.command("sync")["ok"]  # changes nothing: still answered
    assert lk.store.stored_reply("c-3") is None  # sent again later, it runs afresh
    assert orders(lk) == [("SO-1", "reserved"), ("SO-2", "reserved")]
    recover(lk, medium)
    assert lk.reserve("SO-3")["ok"]
    assert [e.fields["component"] for e in lk.events("fault")] == ["storage"]
    assert [e.fields["component"] for e in lk.events("fault_cleared")] == ["storage"]


# -- a door reading --------------------------------------------------------------------


def test_a_door_reading_that_cannot_commit_is_committed_once_commits_work(
    full_locker: Locker, medium: Medium
) -> None:
    lk = full_locker
    without_reserve(lk, medium)
    lk.board.open_door(5)  # forced while nothing can be written
    lk.poll()
    lk.poll()
    assert lk.events("door_alarm") == []
    with lk.store.read() as tx:
        assert repo.compartments(tx)[4].door.value == "closed"  # as last committed
    recover(lk, medium)
    lk.poll()
    [alarm] = lk.events("door_alarm")
    assert alarm.fields == {"compartment": 5, "kind": "forced"}
    with lk.store.read() as tx:
        assert repo.compartments(tx)[4].door.value == "open"


def test_a_pickup_opens_on_the_reserve_and_is_refused_without_a_committed_intent(
    full_locker: Locker, medium: Medium
) -> None:
    lk = full_locker
    _, code_1 = lk.deposit("SO-1")
    _, code_2 = lk.deposit("SO-2")
    medium.fill()
    # The medium filled under this pickup: the reserve lets its intent commit first.
    opened = lk.code(code_1)
    (first,) = opened.compartments
    assert opened.outcome == EntryOutcome.OPENED and lk.board.is_open(first)
    lk.open_close(first)  # the door's readings commit on the reserve too
    assert [e.fields["order_id"] for e in lk.events("picked_up")] == ["SO-1"]
    medium.fill()
    with lk.store.read() as tx:
        order = repo.order_by_id(tx, "SO-2")
        assert order is not None
        (second,) = [c.number for c in repo.order_compartments(tx, order.pk)]
    intents = lk.store.db.execute("SELECT COUNT(*) FROM openings").fetchone()[0]
    refused = lk.code(code_2)
    assert (refused.outcome, refused.reason) == (EntryOutcome.REFUSED, "storage")
    assert not lk.board.is_open(second)  # never an unlock without its committed intent
    with lk.store.read() as tx:
        order = repo.order_by_id(tx, "SO-2")
    assert order is not None and order.state == OrderState.LOADED
    assert lk.store.db.execute("SELECT COUNT(*) FROM openings").fetchone()[0] == intents
    recover(lk, medium)
    assert lk.code(code_2).outcome == EntryOutcome.OPENED and lk.board.is_open(second)


# -- the timer sweep -------------------------------------------------------------------


def test_a_deadline_that_cannot_commit_fires_once_commits_work(
    full_locker: Locker, medium: Medium
) -> None:
    lk = full_locker
    assert lk.reserve("SO-1")["ok"]
    without_reserve(lk, medium)
    lk.advance(lk.config.rules.reserve_hours * 3600 + 1)  # the tick fails: nothing raised
    assert orders(lk) == [("SO-1", "reserved")]
    assert lk.events("fault") == []  # not even the fault could be written
    recover(lk, medium)
    assert orders(lk) == [("SO-1", "lapsed")]
    assert [e.type for e in lk.events() if e.type.startswith("fault")] == [
        "fault",
        "fault_cleared",
    ]
    fault = lk.events("fault")[0].fields
    assert fault["component"] == Component.STORAGE.value and "full" in fault["detail"]


# -- the local API ---------------------------------------------------------------------


def test_the_local_api_refuses_a_code_clearly_when_nothing_can_be_committed(
    medium: Medium,
) -> None:
    (medium.path / "locker.toml").write_text(
        '[locker]\nid = "api-1"\ndata_dir = "data"\n[mqtt]\nenabled = false\n'
        '[api]\nsocket = "api.sock"\n[[boards]]\nname = "b0"\ndriver = "sim"\n'
        '[[compartments]]\nnumbers = "1-4"\nchannels = "1-4"\nboard = "b0"\nsize = "S"\n'
    )
    board = SimBoard("b0", 8, door_close_s=0.1)
    running = RunningDaemon(medium.path / "locker.toml", {"b0": board})
    c = Client(running.locker.config.api.socket)
    try:
        medium.fill()

        def audit() -> None:  # a commit on the loop: the first refused gives the reserve back
            for _ in range(100):
                running.locker.service.audit_action("test", "touch", "x" * 200)

        with pytest.raises(StorageFull):
            running.call(audit)

        def no_room_at_all() -> None:
            # On the loop, so no storage probe comes in between: a probe that found the
            # freed reserve's space would make a new reserve, and the code would be served
            # on it (rightly) instead of refused.
            running.locker.store.reserve_path.unlink(missing_ok=True)
            medium.fill()

        running.call(no_room_at_all)
        answer = c.ask(id=1, op="code", text="12345678", method="keypad")
        assert answer["ok"] and answer["result"]["outcome"] == "refused", answer
        assert answer["result"]["reason"] == "storage"
        health = c.ask(id=2, op="health")["result"]
        assert health["storage"] == "full"
        assert json.dumps(answer).count("12345678") == 0  # never a code in a reply
    finally:
        c.close()
        running.stop()
