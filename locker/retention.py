"""Retention: what is finished and older than [retention] keep_days is deleted.

A locker runs for years on one SQLite file. Finished orders (with their history,
compartments and door openings), audit entries, and stored command ids with their
replies are deleted once older than `keep_days`, so under steady traffic the file stops
growing: SQLite reuses the pages the deletes free.

Never deleted: an order that holds a compartment, has a working code or an opening
waiting for its doors (reserved, loaded, expired or cancelled with goods, of any age);
an event of the outbox (it goes once the broker acknowledged it, elsewhere); a stored
command younger than the command freshness window ([mqtt] command_max_age_s), since
its stored reply is what answers a re-delivery without acting twice. Past that window
a re-delivered command is refused as COMMAND_EXPIRED anyway.

The work comes in steps, one short transaction each, from the loop's turns: at most
`batch` rows of each table and `ORDERS_A_STEP` orders a step, a step every `every_s`,
or every second while a backlog remains. Purges change nothing a screen or the platform
shows, so commit subscribers are not told (the replica takes them with the next commit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from locker import repo
from locker.config_standby import RetentionSection
from locker.events import LoopTurn
from locker.model import OrderState
from locker.rows import AgedOrder, Purged
from locker.storage import Store, Transaction

log = logging.getLogger(__name__)

DAY = 86400.0
# While a backlog remains (a first run on a years-old file), the next step comes this soon.
BACKLOG_S = 1.0
# Orders deleted at most a step. Deleting an order checks the foreign key of `openings`
# through its index on order_pk (schema 5; before it, a walk of that table per order,
# 2-3 ms each at a busy cabinet's half year, capped this at 5).
ORDERS_A_STEP = 50
# Finished orders: the ends of the state machine, and a cancelled order once it holds
# nothing (cancelled empty, or its goods retrieved: then it is `retrieved`).
FINISHED = frozenset(
    {OrderState.COLLECTED, OrderState.LAPSED, OrderState.RETRIEVED, OrderState.CANCELLED}
)


def purgeable(order: AgedOrder, before: float) -> bool:
    """A finished order that nothing needs any more, ended before `before`."""
    return (
        order.state in FINISHED
        and not order.needed
        and order.ended_at < before
        and order.reserved_at < before
    )


class Retention:
    """Deletes what is older than `keep_days`, a bounded step at a time."""

    def __init__(
        self,
        store: Store,
        settings: RetentionSection,
        now: Callable[[], float],
        command_max_age_s: float,
    ) -> None:
        """`now`: the locker's wall clock (`Service.now`); `command_max_age_s`: how long
        a command may be executed after it was sent ([mqtt] command_max_age_s)."""
        self.store = store
        self.settings = settings
        self.now = now
        self.keep_s = settings.keep_days * DAY
        self.command_keep_s = max(self.keep_s, float(command_max_age_s))
        self._due: float | None = None  # monotonic time of the next step
        # Where the walk over the orders goes on: orders are weighed oldest first, at most
        # `batch` a step, past the ones still needed (which may be older than any due).
        self._after_pk = 0
        self.backlog = False

    def on_turn(self, turn: LoopTurn) -> None:
        """A loop turn: run a step when one is due (the first comes `every_s` after start)."""
        if self._due is None:
            self._due = turn.monotonic + self.settings.every_s
            return
        if turn.monotonic < self._due:
            return
        if self.store.fault is not None:
            # The medium is full or read-only: deleting needs a commit too, and the little
            # space there is belongs to doors and pickups. The next step comes as usual.
            self._due = turn.monotonic + self.settings.every_s
            return
        self.step()
        self._due = turn.monotonic + (BACKLOG_S if self.backlog else self.settings.every_s)

    def step(self) -> Purged:
        """Delete one batch of each kind, in one transaction; `backlog` tells whether more
        is due right away."""
        now = self.now()
        before = now - self.keep_s
        batch = self.settings.batch
        with self.store.transaction(notify=False) as tx:
            orders, orders_left = self._orders(tx, before, batch)
            loose = repo.loose_openings(tx, before, batch)
            ids = _within(loose, batch)
            openings = repo.purge_openings(tx, ids)
            audit = repo.purge_audit(tx, before, batch)
            commands = repo.purge_commands(tx, now - self.command_keep_s, batch)
        purged = orders + openings + Purged(audit=audit, commands=commands)
        self.backlog = (
            orders_left
            or len(ids) < len(loose)
            or len(loose) == batch
            or batch in (audit, commands)
        )
        if purged.total:
            log.info(
                "retention: deleted %d finished orders (%d stages, %d compartment rows,"
                " %d openings, %d door rows), %d audit entries, %d stored commands,"
                " older than %g days%s",
                purged.orders,
                purged.stages,
                purged.compartments,
                purged.openings,
                purged.doors,
                purged.audit,
                purged.commands,
                self.settings.keep_days,
                "; more to come" if self.backlog else "",
            )
        return purged

    def _orders(self, tx: Transaction, before: float, batch: int) -> tuple[Purged, bool]:
        """Purge finished old orders among the next `batch` from the walk's position; True
        when the walk stopped short of what is due (the next step goes on from there)."""
        window = repo.order_window(tx, self._after_pk, batch)
        # Only an order reserved before `before` can have ended before it: the rest of
        # the window is not weighed (on most steps, all of it).
        old = [pk for pk, reserved_at in window if reserved_at < before]
        all_due = [o for o in repo.aged_orders(tx, old) if purgeable(o, before)]
        due = all_due[:ORDERS_A_STEP]
        openings = repo.order_openings(tx, [o.pk for o in due])
        taken: list[int] = []
        ids: list[int] = []
        used = [0, 0, 0, 0, 0]  # orders, stages, compartment rows, openings, doors
        stop_pk: int | None = None
        for o in due:
            its = openings.get(o.pk, [])
            need = [1, o.stages, o.compartments, len(its), sum(doors for _, doors in its)]
            fits = all(u + n <= batch for u, n in zip(used, need, strict=True))
            if taken and not fits:
                stop_pk = o.pk
                break
            # One order alone above `batch` rows still goes, by itself, or the walk stalls.
            taken.append(o.pk)
            ids.extend(opening_id for opening_id, _ in its)
            used = [u + n for u, n in zip(used, need, strict=True)]
        if stop_pk is None and len(all_due) > len(taken):
            stop_pk = all_due[len(taken)].pk
        purged = repo.purge_orders(tx, taken, ids)
        reached_young = len(old) < len(window)
        if stop_pk is not None:
            self._after_pk = stop_pk - 1
            return purged, True
        if reached_young or len(window) < batch:
            self._after_pk = 0  # the walk starts again from the oldest next time
            return purged, False
        self._after_pk = window[-1][0]
        return purged, True


def _within(openings: list[tuple[int, int]], batch: int) -> list[int]:
    """The ids of the first openings whose doors fit in `batch` rows."""
    ids: list[int] = []
    doors = 0
    for opening_id, n in openings:
        if ids and doors + n > batch:
            break
        ids.append(opening_id)
        doors += n
    return ids
