"""What the maintenance screen, lockerctl and the platform's heartbeat read of a running
locker: `health` (boards, platform link, outbox, loop, clock, version) and, behind the
technician PIN, `diagnostics` (every compartment with its fault, each board's last
frames, recent events and alarms). No code is in any of it: the audit log never holds
one.

The parts it reads that live outside the domain (the platform link, the serial scanner)
come in as plain callables from the composition root, so this module imports neither.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from locker import repo
from locker.boards import Board
from locker.clock import rfc3339
from locker.loop import Loop
from locker.model import ALARM_ACTIONS
from locker.replica import ReplicaStatus
from locker.service import Service
from locker.sysclock import clock_synchronised
from locker.sysinfo import SysInfo
from locker.version import VERSION

HOUR_S = 3600.0


class ErrorHistory:
    """Each board's error count as it was read over the last hour, so the maintenance
    screen can say how many errors came in that hour (the stored count runs from the
    board's first day). Only changes are kept: a board that never fails holds one
    reading. Before the first reading nothing is known: a young history counts from it."""

    def __init__(self, window_s: float = HOUR_S) -> None:
        self.window_s = window_s
        self.readings: dict[str, deque[tuple[float, int]]] = {}

    def recent(self, name: str, errors: int, now: float) -> int:
        """Errors of board `name` (its count `errors`, read at monotonic `now`) within
        the window."""
        readings = self.readings.setdefault(name, deque())
        if not readings or readings[-1][1] != errors:
            readings.append((now, errors))
        # The count at the window's start: the newest reading taken at or before it.
        while len(readings) > 1 and readings[1][0] <= now - self.window_s:
            readings.popleft()
        return max(0, errors - readings[0][1])


def last_frames(board: Board | None, count: int = 8) -> list[str]:
    """The last frames on a board's wire (none for a board not configured)."""
    return [] if board is None else board.last_frames()[-count:]


class Health:
    """Reads a running locker for the screens and tools (on the loop's thread)."""

    def __init__(
        self,
        service: Service,
        loop: Loop,
        boards: Mapping[str, Board],
        link_connected: Callable[[], bool],
        scanner_online: Callable[[], bool | None],
        replica: Callable[[], ReplicaStatus] | None = None,
        replica_dir: Path | None = None,
    ) -> None:
        self.service = service
        self.loop = loop
        self.boards = boards
        self.link_connected = link_connected
        self.scanner_online = scanner_online
        self.replica = replica
        self.replica_dir = replica_dir  # the second medium's copy, when there is one
        self.sysinfo = SysInfo()
        self.errors = ErrorHistory()

    def health(self) -> dict[str, Any]:
        """What the maintenance screen shows: boards, platform link, outbox, version."""
        store = self.service.store
        with store.read() as tx:
            boards = [asdict(r) for r in repo.boards(tx)]
        now = self.service.clock.monotonic()
        errors_hour = {b["name"]: self.errors.recent(b["name"], b["errors"], now) for b in boards}
        return {
            "boards": boards,
            # Each board's errors within the last hour (by name; the count in `boards`
            # runs from the board's first day).
            "errors_hour": errors_hour,
            "time": rfc3339(self.service.now()),
            "clock_synchronised": clock_synchronised(),
            "mqtt_connected": self.link_connected(),
            "outbox": store.outbox_depth(),
            # Work waiting for the loop now, and the most it has been since the start:
            # every producer is bounded at its source, so a growing figure is a defect.
            "loop_backlog": self.loop.backlog,
            "loop_backlog_max": self.loop.max_backlog,
            # None: no serial scanner to be online (keypad only, or the camera, whose
            # failure shows in devices_down).
            "scanner_online": self.scanner_online(),
            # "ok", or why commits fail now ("full", "read_only", "io_error"): new work is
            # refused with STORAGE_FULL until a probe commits again (docs/operations.md).
            "storage": self.service.storage_fault or "ok",
            "version": VERSION,
            "epoch": store.epoch,
            **self._machine(),
        }

    def _machine(self) -> dict[str, Any]:
        """The replica and the machine itself; a reading this hardware lacks is omitted."""
        out: dict[str, Any] = {}
        if self.replica is not None:
            status = self.replica()
            out["replica"] = {
                "target": status.target,
                "ok": status.ok,
                "lag_s": status.lag_s,
                "copied_at": None if status.copied_at is None else rfc3339(status.copied_at),
                "detail": status.detail,
            }
            if self.replica_dir is not None:
                out["replica_disk_free_mb"] = self.sysinfo.disk_free_mb(self.replica_dir)
        readings = {
            "disk_free_mb": self.sysinfo.disk_free_mb(self.service.store.path.parent),
            "cpu_temp_c": self.sysinfo.cpu_temp_c(),
            "uptime_s": self.sysinfo.uptime_s(),
        }
        power = self.sysinfo.power()
        if power is not None:
            readings["undervoltage"] = power.undervoltage
            readings["throttled"] = power.throttled
            readings["undervoltage_since_boot"] = power.undervoltage_since_boot
            readings["throttled_since_boot"] = power.throttled_since_boot
        out.update({k: v for k, v in readings.items() if v is not None})
        return out

    def heartbeat_fields(self) -> dict[str, Any]:
        """The machine's health under the names contract v1.1 gives them in `heartbeat`."""
        machine = self._machine()
        names = ("disk_free_mb", "cpu_temp_c", "undervoltage")
        out: dict[str, Any] = {k: machine[k] for k in names if k in machine}
        if "replica" in machine:
            out["replica_lag_s"] = machine["replica"]["lag_s"]
        return out

    def diagnostics(self) -> dict[str, Any]:
        """The maintenance screen's whole picture (behind the technician PIN)."""
        health = self.health()
        online = {b["name"]: b["online"] for b in health["boards"]}
        for b in health["boards"]:
            b["frames"] = last_frames(self.boards.get(b["name"]))
        snap = self.service.snapshot()
        store = self.service.store
        with store.read() as tx:
            jammed = repo.jammed_numbers(tx)
            recent = [e.as_dict() for e in store.audit_entries(20)]
            alarms = [e.as_dict() for e in store.audit_entries(10, ALARM_ACTIONS)]
        for c in snap["compartments"]:
            board = self.service.compartments[c["number"]].board
            c["board"] = board
            c["fault"] = (
                "jammed"
                if c["number"] in jammed
                else "board offline"
                if not online.get(board, True)
                else None
            )
        return {
            **health,
            "locker_id": self.service.config.locker.id,
            "compartments": snap["compartments"],
            "recent": recent,
            "alarms": alarms,
            "devices_down": sorted(self.service.devices_down),
        }
