"""One year of a busy cabinet with retention on: does the database stay the same size,
and do reservations and code entries stay as fast as on the first day? (printed only)

A cabinet of 24 compartments on an in-process simulated board (`sim`), the real
`Service`, `CommandProcessor` and SQLite file, [retention] as shipped (keep_days 180,
batch 200, every_s 60). The clock is a fake one moved from event to event, so a year
takes minutes. Each day: `orders` orders between 07:00 and 22:00, each reserved
(a platform command), loaded five minutes later (deposit code typed, door opened and
closed), collected 20 minutes to 2 hours after that (pickup code typed, door opened and
closed); 2 % are never loaded and lapse after 12 hours, 0.5 % are never collected,
expire after 72 hours and are retrieved by staff an hour later. The platform's
acknowledgements are emulated: the outbox is emptied as the MQTT link would on PUBACK.

The loop's turn (door reading, timers, `loop_turn` and so retention) runs after every
action, and once before an action that follows a quiet spell (the night), not every
poll interval: a retention step comes on the first turn `every_s` after the last one.

What is measured, in process (no MQTT, no socket, no kiosk):
- "reserve": `CommandProcessor.handle("reserve", payload)` until it returns, the
  reservation and its stored reply committed with synchronous=FULL;
- "code entry": `Service.enter_code(code, KEYPAD)` of a deposit or pickup code until it
  returns, the unlock intent committed (FULL) and the unlock handed to the board;
- "retention step": one `Retention.step()`, its one transaction (monthly lines: the
  steps since the line before, mostly with synchronous=OFF, see below).
Latencies are taken over two simulated days of traffic at the start and at the end of
the year with synchronous=FULL, as shipped. Between those windows the store runs with
synchronous=OFF so that the year fits in a few minutes: the file's content and size do
not depend on it, only the time of a commit does.

Run: .venv/bin/python bench/bench_retention.py [days [orders a day]]   (365, 100)
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from figures import pct  # noqa: E402  (bench/, beside this script)

from drivers.sim import SimBoard  # noqa: E402
from locker import repo  # noqa: E402
from locker.clock import FakeClock, rfc3339  # noqa: E402
from locker.codes import CodeBook, load_or_create_key  # noqa: E402
from locker.commands import CommandProcessor  # noqa: E402
from locker.config import parse_config  # noqa: E402
from locker.events import LoopTurn  # noqa: E402
from locker.loop import Loop  # noqa: E402
from locker.model import Method  # noqa: E402
from locker.retention import Retention  # noqa: E402
from locker.rows import Purged  # noqa: E402
from locker.service import Service  # noqa: E402
from locker.storage import Store  # noqa: E402

DAY = 86400.0
# 100 a day so that the year takes about three minutes on two cores; 150 (a busy
# cabinet) takes about five: `bench_retention.py 365 150`.
ORDERS_A_DAY = 100
WINDOW_DAYS = 2
ITEM = [{"sku": "1", "qty": 1, "fresh": False, "size": "S"}]
TABLES = ("orders", "order_stages", "openings", "opening_doors", "audit", "commands", "outbox")


def ms(values: list[float]) -> str:
    if not values:
        return "-"
    return f"p50 {statistics.median(values) * 1000:.2f} ms, p99 {pct(values, 0.99) * 1000:.2f} ms"


class TimedRetention(Retention):
    """Retention as shipped, each step timed."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.steps: list[float] = []
        self.purged = Purged()

    def step(self) -> Purged:
        t = time.perf_counter()
        purged = super().step()
        self.steps.append(time.perf_counter() - t)
        self.purged += purged
        return purged


class Cabinet:
    """The locker under test and the world around it (shoppers, staff, the platform)."""

    def __init__(self, tmp: Path) -> None:
        self.config = parse_config(
            {
                "locker": {"id": "bench-retention", "data_dir": str(tmp)},
                "boards": [{"name": "b0", "driver": "sim", "door_close_s": 0}],
                "compartments": [
                    {"numbers": "1-16", "channels": "1-16", "board": "b0", "size": "S"},
                    {"numbers": "17-22", "channels": "17-22", "board": "b0", "size": "M"},
                    {"numbers": "23-24", "channels": "23-24", "board": "b0", "size": "L"},
                ],
            },
            tmp / "locker.toml",
        )
        self.clock = FakeClock()
        self.path = tmp / "locker.db"
        codebook = CodeBook.from_key(load_or_create_key(self.config.key_path))
        self.store = Store(self.path, codebook)
        self.board = SimBoard("b0", channels=24, door_close_s=0, monotonic=self.clock.monotonic)
        self.service = Service(self.config, self.store, {"b0": self.board}, self.clock)
        self.service.start()
        self.loop = Loop(self.service, {"b0": self.board})
        self.commands = CommandProcessor(self.service)
        self.retention = TimedRetention(
            self.store,
            self.config.retention,
            self.service.now,
            self.config.mqtt.command_max_age_s,
        )
        self.service.hub.loop_turn.subscribe(self.retention.on_turn)
        # (day, seconds) of the calls made while synchronous=FULL
        self.reserve_lat: list[tuple[int, float]] = []
        self.code_lat: list[tuple[int, float]] = []
        self.measuring = False
        self.day = 0
        self.refused = 0
        self._cmd = 0
        self._acked = 0

    def sync(self, full: bool) -> None:
        self.store.db.execute(f"PRAGMA synchronous={'FULL' if full else 'OFF'}")
        self.measuring = full

    def turn(self) -> None:
        """What the loop does in one turn: read the board, fire timers, `loop_turn`."""
        self.loop.poll_boards(force=True)
        self.service.tick()
        self.service.hub.loop_turn.publish(LoopTurn(self.clock.monotonic()))

    def timed(self, into: list[tuple[int, float]], fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        if self.measuring:
            into.append((self.day, time.perf_counter() - t))
        return out

    def reserve(self, order_id: str) -> str | None:
        """The platform reserves; returns the deposit code (None: no compartment free)."""
        self._cmd += 1
        payload = json.dumps(
            {
                "command_id": f"cmd-{self._cmd}",
                "sent_at": rfc3339(self.clock.now()),
                "order_id": order_id,
                "items": ITEM,
            }
        )
        reply = self.timed(self.reserve_lat, lambda: self.commands.handle("reserve", payload))
        self.turn()
        if not reply["ok"]:
            self.refused += 1
            return None
        return str(reply["result"]["deposit_code"])

    def use_code(self, code: str) -> None:
        """A person types the code, opens the door and closes it again."""
        result = self.timed(
            self.code_lat, lambda: self.service.enter_code(code, Method.KEYPAD, notify=False)
        )
        assert result.outcome == "opened", result
        self.turn()  # seen open
        for number in result.compartments:
            self.board.close_door(self.config.compartment(number).channel)
        self.turn()  # seen closed: the phase completes

    def pickup_codes(self) -> dict[str, str]:
        """The platform receives the new events (and acknowledges them: the outbox empties)."""
        codes = {}
        events = self.store.events(after_seq=self._acked, limit=10_000)
        for ev in events:
            if ev.type == "deposited":
                codes[ev.fields["order_id"]] = ev.fields["pickup_code"]
        if events:
            self._acked = events[-1].seq
            self.store.delete_events([ev.seq for ev in events])
        return codes

    def figures(self) -> tuple[int, int, int, int, dict[str, int]]:
        db = self.store.db
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
        wal = self.path.with_name(self.path.name + "-wal")
        with self.store.read() as tx:
            rows = repo.table_rows(tx)
        size = self.path.stat().st_size
        return size, wal.stat().st_size if wal.exists() else 0, pages, free, rows


def main(days: int, orders: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-retention-"))
    cab = Cabinet(tmp)
    rng = random.Random(20261201)
    start = cab.clock.now()
    start -= start % DAY  # midnight of the first day
    cab.clock.advance(start + DAY - cab.clock.now())
    day0 = cab.clock.now()

    print(
        f"{days} days of {orders} orders a day on 24 compartments, in process"
        f" (Service + CommandProcessor + SQLite file, fake clock); retention keep_days"
        f" {cab.config.retention.keep_days:g}, batch {cab.config.retention.batch},"
        f" every_s {cab.config.retention.every_s:g}"
    )
    print(f"database: {cab.path}")
    header = (
        f"{'day':>4} {'db KiB':>8} {'wal KiB':>8} {'pages':>6} {'free':>5}  "
        + " ".join(f"{t:>13}" for t in TABLES)
        + "  retention steps since the last line (count, p50/p99/max ms, rows deleted)"
    )
    print(header)

    wall = time.perf_counter()

    def report(day: int) -> None:
        size, wal, pages, free, rows = cab.figures()
        steps = cab.retention.steps
        step_s = "0"
        if steps:
            step_s = (
                f"{len(steps)}, {statistics.median(steps) * 1000:.2f}/{pct(steps, 0.99) * 1000:.2f}"
                f"/{max(steps) * 1000:.1f}, {cab.retention.purged.total}"
            )
        cab.retention.steps = []
        cab.retention.purged = Purged()
        print(
            f"{day:>4} {size / 1024:>8.0f} {wal / 1024:>8.0f} {pages:>6} {free:>5}  "
            + " ".join(f"{rows.get(t, 0):>13}" for t in TABLES)
            + f"  {step_s}  ({time.perf_counter() - wall:.0f} s)",
            flush=True,
        )

    # (time, seq, action, order id); actions: reserve, deposit, pickup, retrieve.
    plan: list[tuple[float, int, str, str]] = []
    seq = 0
    for d in range(days):
        opening = day0 + d * DAY + 7 * 3600
        for i in range(orders):
            at = opening + (i + rng.random()) * (15 * 3600 / orders)
            seq += 1
            plan.append((at, seq, "reserve", f"SO-{d}-{i}"))
    heapq.heapify(plan)
    deposit_codes: dict[str, str] = {}
    pickup_codes: dict[str, str] = {}
    report(0)
    while plan:
        at, _, action, order_id = heapq.heappop(plan)
        today = int((at - day0) // DAY)
        if today != cab.day:
            cab.day = today
            if today % 30 == 0:
                report(today)
            cab.sync(today < WINDOW_DAYS or today >= days - WINDOW_DAYS)
        elif today == 0 and not cab.measuring:
            cab.sync(True)
        if at - cab.clock.now() > 60:
            cab.clock.advance(at - cab.clock.now() - 1)
            cab.turn()  # the timers that fell due meanwhile (the loop turns all night)
        cab.clock.advance(max(0.0, at - cab.clock.now()))
        seq += 1
        if action == "reserve":
            code = cab.reserve(order_id)
            if code is None:
                continue
            deposit_codes[order_id] = code
            if rng.random() < 0.02:
                continue  # never loaded: lapses after 12 hours
            heapq.heappush(plan, (at + 300, seq, "deposit", order_id))
        elif action == "deposit":
            cab.use_code(deposit_codes[order_id])
            pickup_codes.update(cab.pickup_codes())
            if rng.random() < 0.005:
                # never collected: expires after 72 hours, retrieved by staff an hour later
                heapq.heappush(plan, (at + 73 * 3600, seq, "retrieve", order_id))
            else:
                heapq.heappush(plan, (at + rng.uniform(1200, 7200), seq, "pickup", order_id))
        elif action == "pickup":
            cab.use_code(pickup_codes.pop(order_id))
            del deposit_codes[order_id]
        else:  # retrieve
            cab.use_code(deposit_codes.pop(order_id))
            pickup_codes.pop(order_id, None)
        cab.pickup_codes()
    cab.clock.advance(max(0.0, day0 + days * DAY - cab.clock.now()))
    cab.turn()
    report(days)
    print(
        f"simulated in {time.perf_counter() - wall:.0f} s; reservations refused (cabinet full):"
        f" {cab.refused}"
    )
    for name, first in (("start", 0), ("end", days - WINDOW_DAYS)):
        reserve_lat = [v for d, v in cab.reserve_lat if first <= d < first + WINDOW_DAYS]
        code_lat = [v for d, v in cab.code_lat if first <= d < first + WINDOW_DAYS]
        print(
            f"{name} (days {first}-{first + WINDOW_DAYS - 1}, synchronous=FULL):"
            f" reserve (CommandProcessor.handle, in process) n={len(reserve_lat)}"
            f" {ms(reserve_lat)}; code entry (Service.enter_code, in process)"
            f" n={len(code_lat)} {ms(code_lat)}"
        )
    cab.store.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # the figures, not the alarms or the purges
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 365,
        int(sys.argv[2]) if len(sys.argv) > 2 else ORDERS_A_DAY,
    )
