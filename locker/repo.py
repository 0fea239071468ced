"""The repository: every SQL statement of the domain, each behind a typed function.

Orders, compartments, codes, openings, boards, the throttle and the order history are
read and written here, inside a `Transaction` the caller opened; rows come back as the
frozen records of `locker.rows`. The store's own machinery (schema, transactions, the
outbox, stored replies, the audit) stays in `locker.storage`.
"""

from __future__ import annotations

from collections.abc import Collection

from locker.codes import CodeBook, new_code
from locker.model import (
    SIZES,
    UNOPENED,
    CodeKind,
    Compartment,
    Door,
    DoorOutcome,
    OpeningState,
    OrderState,
    Purpose,
)
from locker.rows import (
    AgedOrder,
    BoardRow,
    CodeRow,
    CompartmentRow,
    OpeningDoorRow,
    OrderCompartment,
    OrderRow,
    PhaseTimes,
    Purged,
    StageRow,
)
from locker.rules import Slot
from locker.storage import Transaction
from locker.throttle import ThrottleState

# -- orders ------------------------------------------------------------------------------


def order_by_id(tx: Transaction, order_id: str) -> OrderRow | None:
    """The newest order with this id (an id comes back once its last order ended)."""
    r = tx.one("SELECT * FROM orders WHERE order_id=? ORDER BY pk DESC LIMIT 1", (order_id,))
    return None if r is None else OrderRow.of(r)


def order(tx: Transaction, order_pk: int) -> OrderRow | None:
    r = tx.one("SELECT * FROM orders WHERE pk=?", (order_pk,))
    return None if r is None else OrderRow.of(r)


def active_order(tx: Transaction, order_id: str) -> OrderRow | None:
    """The order with this id that holds a reservation (reserved or loaded), if any."""
    r = tx.one(
        "SELECT * FROM orders WHERE order_id=? AND state IN (?,?)",
        (order_id, OrderState.RESERVED.value, OrderState.LOADED.value),
    )
    return None if r is None else OrderRow.of(r)


def orders_in(tx: Transaction, state: OrderState, due_column: str, now: float) -> list[OrderRow]:
    """Orders in `state` whose `due_column` (reserved_until, pickup_until) has passed."""
    assert due_column in ("reserved_until", "pickup_until")
    rows = tx.q(f"SELECT * FROM orders WHERE state=? AND {due_column} <= ?", (state.value, now))
    return [OrderRow.of(r) for r in rows.fetchall()]


def orders_to_remind(tx: Transaction, before_s: float, now: float) -> list[OrderRow]:
    """Loaded orders within `before_s` of their pickup deadline, not yet reminded."""
    rows = tx.q(
        "SELECT * FROM orders WHERE state=? AND reminder_sent=0"
        " AND pickup_until - ? <= ? AND pickup_until > ?",
        (OrderState.LOADED.value, before_s, now, now),
    )
    return [OrderRow.of(r) for r in rows.fetchall()]


def insert_order(
    tx: Transaction,
    order_id: str,
    accessible: bool,
    item_count: int,
    pickup_hours: float,
    now: float,
    reserved_until: float,
) -> int:
    cur = tx.q(
        "INSERT INTO orders (order_id, state, accessible, item_count, pickup_hours,"
        " reserved_at, reserved_until) VALUES (?,?,?,?,?,?,?)",
        (
            order_id,
            OrderState.RESERVED.value,
            int(accessible),
            item_count,
            pickup_hours,
            now,
            reserved_until,
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def set_order_state(tx: Transaction, order_pk: int, state: OrderState) -> None:
    """Only `orders.apply()` calls this: it is the one writer of an order's state."""
    tx.q("UPDATE orders SET state=? WHERE pk=?", (state.value, order_pk))


def set_end_reason(tx: Transaction, order_pk: int, reason: str) -> None:
    tx.q("UPDATE orders SET end_reason=? WHERE pk=?", (reason, order_pk))


def set_pickup_until(
    tx: Transaction, order_pk: int, pickup_until: float, reminder_sent: bool
) -> None:
    tx.q(
        "UPDATE orders SET pickup_until=?, reminder_sent=? WHERE pk=?",
        (pickup_until, int(reminder_sent), order_pk),
    )


def set_deposited(
    tx: Transaction, order_pk: int, at: float, pickup_until: float, reminder_sent: bool
) -> None:
    tx.q(
        "UPDATE orders SET deposited_at=?, pickup_until=?, reminder_sent=? WHERE pk=?",
        (at, pickup_until, int(reminder_sent), order_pk),
    )


def set_collected(tx: Transaction, order_pk: int, times: PhaseTimes, method: str) -> None:
    tx.q(
        "UPDATE orders SET opened_at=?, closed_at=?, method=? WHERE pk=?",
        (times.opened_at, times.closed_at, method, order_pk),
    )


def set_reminded(tx: Transaction, order_pk: int) -> None:
    tx.q("UPDATE orders SET reminder_sent=1 WHERE pk=?", (order_pk,))


def add_stage(tx: Transaction, order_pk: int, stage: str, at: float, detail: str = "") -> None:
    """One line of the order's history (`lockerctl history`)."""
    tx.q(
        "INSERT INTO order_stages (order_pk, stage, at, detail) VALUES (?,?,?,?)",
        (order_pk, stage, at, detail),
    )


def stages(tx: Transaction, order_id: str) -> list[StageRow]:
    """Every stage of every order with this id, oldest first."""
    rows = tx.q(
        "SELECT s.stage, s.at, s.detail FROM order_stages s"
        " JOIN orders o ON o.pk = s.order_pk WHERE o.order_id=? ORDER BY s.id",
        (order_id,),
    )
    return [StageRow(r["stage"], float(r["at"]), r["detail"]) for r in rows.fetchall()]


# -- an order's compartments ------------------------------------------------------------


def order_compartments(tx: Transaction, order_pk: int) -> list[OrderCompartment]:
    rows = tx.q(
        "SELECT number, size FROM order_compartments WHERE order_pk=? ORDER BY number",
        (order_pk,),
    )
    return [OrderCompartment(r["number"], r["size"]) for r in rows]


def assign_compartment(tx: Transaction, order_pk: int, slot: Slot) -> None:
    tx.q("UPDATE compartments SET order_pk=? WHERE number=?", (order_pk, slot.number))
    tx.q(
        "INSERT INTO order_compartments (order_pk, number, size) VALUES (?,?,?)",
        (order_pk, slot.number, slot.size),
    )


def free_compartments(tx: Transaction, order_pk: int) -> None:
    tx.q("UPDATE compartments SET order_pk=NULL WHERE order_pk=?", (order_pk,))


def unclosed_numbers(tx: Transaction, order_pk: int) -> list[int]:
    """The order's compartments not yet seen closed in its current phase."""
    rows = tx.q(
        "SELECT number FROM order_compartments WHERE order_pk=? AND closed_at IS NULL"
        " ORDER BY number",
        (order_pk,),
    )
    return [r["number"] for r in rows]


def any_door_opened(tx: Transaction, order_pk: int) -> bool:
    """Has any compartment of the order been opened in its current phase?"""
    return (
        tx.one(
            "SELECT 1 FROM order_compartments WHERE order_pk=? AND opened_at IS NOT NULL",
            (order_pk,),
        )
        is not None
    )


def door_open_now(tx: Transaction, order_pk: int) -> bool:
    """Is a compartment of the order open right now (opened, not yet closed)?"""
    return (
        tx.one(
            "SELECT 1 FROM order_compartments WHERE order_pk=? AND opened_at IS NOT NULL"
            " AND closed_at IS NULL",
            (order_pk,),
        )
        is not None
    )


def mark_order_door(tx: Transaction, order_pk: int, number: int, door: Door, at: float) -> None:
    """The order's compartment seen open (the first time) or closed (once it was open)."""
    if door == Door.OPEN:
        tx.q(
            "UPDATE order_compartments SET opened_at=COALESCE(opened_at, ?)"
            " WHERE order_pk=? AND number=?",
            (at, order_pk, number),
        )
    else:
        tx.q(
            "UPDATE order_compartments SET closed_at=? WHERE order_pk=? AND number=?"
            " AND opened_at IS NOT NULL",
            (at, order_pk, number),
        )


def reset_phase(tx: Transaction, order_pk: int) -> None:
    tx.q(
        "UPDATE order_compartments SET opened_at=NULL, closed_at=NULL WHERE order_pk=?",
        (order_pk,),
    )


def phase_times(tx: Transaction, order_pk: int) -> PhaseTimes:
    r = tx.one(
        "SELECT MIN(opened_at) AS o, MAX(closed_at) AS c FROM order_compartments WHERE order_pk=?",
        (order_pk,),
    )
    assert r is not None
    return PhaseTimes(float(r["o"]), float(r["c"]))


# -- codes ------------------------------------------------------------------------------


def issue_code(
    tx: Transaction, codebook: CodeBook, order_pk: int, kind: CodeKind, digits: int
) -> str:
    """A fresh code, unique among live codes, stored only as its keyed hash."""
    while True:
        code = new_code(digits)
        digest = codebook.digest(code)
        if tx.one("SELECT 1 FROM codes WHERE digest=?", (digest,)) is None:
            tx.q(
                "INSERT INTO codes (digest, order_pk, kind) VALUES (?,?,?)",
                (digest, order_pk, kind.value),
            )
            return code


def kill_codes(tx: Transaction, order_pk: int, kind: CodeKind | None = None) -> None:
    """The order's codes (or those of one kind) stop working."""
    if kind is None:
        tx.q("DELETE FROM codes WHERE order_pk=?", (order_pk,))
    else:
        tx.q("DELETE FROM codes WHERE order_pk=? AND kind=?", (order_pk, kind.value))


def code(tx: Transaction, digest: str) -> CodeRow | None:
    r = tx.one("SELECT digest, order_pk, kind FROM codes WHERE digest=?", (digest,))
    return None if r is None else CodeRow(r["digest"], r["order_pk"], CodeKind(r["kind"]))


# -- compartments -----------------------------------------------------------------------


def compartments(tx: Transaction) -> list[CompartmentRow]:
    """Every stored compartment with the state of the order it holds, by number."""
    rows = tx.q(
        "SELECT c.*, o.state AS order_state FROM compartments c"
        " LEFT JOIN orders o ON o.pk = c.order_pk ORDER BY c.number"
    )
    return [CompartmentRow.of(r) for r in rows.fetchall()]


def configure_compartment(tx: Transaction, c: Compartment, known: bool) -> None:
    """Store the configured facts of a compartment; its door is unknown until read."""
    if known:
        tx.q(
            "UPDATE compartments SET size=?, low=?, board=?, channel=?, door='unknown',"
            " door_since=NULL, left_open_alarmed=0 WHERE number=?",
            (c.size, int(c.low), c.board, c.channel, c.number),
        )
    else:
        tx.q(
            "INSERT INTO compartments (number, size, low, board, channel) VALUES (?,?,?,?,?)",
            (c.number, c.size, int(c.low), c.board, c.channel),
        )


def delete_compartment(tx: Transaction, number: int) -> None:
    tx.q("DELETE FROM compartments WHERE number=?", (number,))


def free_slots(tx: Transaction, offline_boards: Collection[str], per_kind: int) -> list[Slot]:
    """Compartments a reservation may take (the rule of `CompartmentRow.state` == FREE):
    the `per_kind` lowest-numbered of each size and height. An order of n parcels takes
    at most n of one kind, and the allocation prefers lower numbers within a kind, so
    it chooses from these exactly as from them all; a big cabinet costs no more."""
    # One short walk of the index `compartments_free` per kind.
    kind = (
        "SELECT * FROM (SELECT number, size, low FROM compartments WHERE size=? AND low=?"
        " AND order_pk IS NULL AND in_service=1 AND jammed=0 AND board NOT IN"
        f" ({','.join('?' * len(offline_boards))}) ORDER BY number LIMIT ?)"
    )
    kinds = [(size, low) for size in SIZES for low in (0, 1)]
    params = [p for size, low in kinds for p in (size, low, *offline_boards, per_kind)]
    rows = tx.q(" UNION ALL ".join([kind] * len(kinds)), tuple(params))
    return [Slot(r["number"], r["size"], bool(r["low"])) for r in rows]


def set_in_service(tx: Transaction, number: int, in_service: bool) -> None:
    tx.q("UPDATE compartments SET in_service=? WHERE number=?", (int(in_service), number))


def order_id_in(tx: Transaction, number: int) -> str | None:
    """The id of the order the compartment holds, if any."""
    r = tx.one(
        "SELECT o.order_id FROM compartments c JOIN orders o ON o.pk = c.order_pk WHERE c.number=?",
        (number,),
    )
    return None if r is None else str(r["order_id"])


def set_door(tx: Transaction, number: int, door: Door, at: float) -> None:
    tx.q(
        "UPDATE compartments SET door=?, door_since=?, left_open_alarmed=0 WHERE number=?",
        (door.value, at, number),
    )


def set_jammed(tx: Transaction, number: int, jammed: bool) -> bool:
    """Set the jam flag; True when this changed it."""
    cur = tx.q(
        "UPDATE compartments SET jammed=? WHERE number=? AND jammed<>?",
        (int(jammed), number, int(jammed)),
    )
    return cur.rowcount > 0


def jammed_numbers(tx: Transaction) -> set[int]:
    return {r["number"] for r in tx.q("SELECT number FROM compartments WHERE jammed=1")}


def doors_left_open(tx: Transaction, since: float) -> list[int]:
    """Doors open since `since` or longer, not yet alarmed; marks them alarmed."""
    numbers = [
        r["number"]
        for r in tx.q(
            "SELECT number FROM compartments WHERE door='open' AND left_open_alarmed=0"
            " AND door_since <= ?",
            (since,),
        ).fetchall()
    ]
    for number in numbers:
        tx.q("UPDATE compartments SET left_open_alarmed=1 WHERE number=?", (number,))
    return numbers


# -- openings: unlock intents and their doors -------------------------------------------

_OPENING_DOOR = (
    "SELECT d.opening_id, d.number, d.attempts, d.seen_open_at, d.seen_closed_at, d.outcome,"
    " d.confirm_by, o.purpose, o.method, o.order_pk, o.command_id, o.state, o.created_at,"
    " r.order_id"
    " FROM opening_doors d JOIN openings o ON o.id = d.opening_id"
    " LEFT JOIN orders r ON r.pk = o.order_pk"
)


def insert_opening(
    tx: Transaction,
    purpose: Purpose,
    order_pk: int | None,
    numbers: Collection[int],
    method: str,
    actor: str,
    command_id: str | None,
    now: float,
    confirm_by: float,
) -> int:
    """The intent "open `numbers`", each door counted as a first attempt that must be seen
    open by `confirm_by` (steady time)."""
    cur = tx.q(
        "INSERT INTO openings (purpose, order_pk, method, actor, command_id, created_at)"
        " VALUES (?,?,?,?,?,?)",
        (purpose.value, order_pk, method, actor, command_id, now),
    )
    opening_id = cur.lastrowid
    assert opening_id is not None
    for number in numbers:
        tx.q(
            "INSERT INTO opening_doors (opening_id, number, attempts, last_attempt_at,"
            " confirm_by) VALUES (?,?,1,?,?)",
            (opening_id, number, now, confirm_by),
        )
    return opening_id


def opening_door(tx: Transaction, opening_id: int, number: int) -> OpeningDoorRow | None:
    r = tx.one(f"{_OPENING_DOOR} WHERE d.opening_id=? AND d.number=?", (opening_id, number))
    return None if r is None else OpeningDoorRow.of(r)


def door_awaited(tx: Transaction, number: int, door: Door) -> OpeningDoorRow | None:
    """The newest active opening's door waiting to be seen `door` (open, or closed once
    it was seen open)."""
    waiting = (
        "d.seen_open_at IS NULL"
        if door == Door.OPEN
        else "d.seen_open_at IS NOT NULL AND d.seen_closed_at IS NULL"
    )
    r = tx.one(
        f"{_OPENING_DOOR} WHERE o.state='active' AND d.number=? AND {waiting}"
        " ORDER BY d.opening_id DESC LIMIT 1",
        (number,),
    )
    return None if r is None else OpeningDoorRow.of(r)


def unconfirmed_doors(tx: Transaction) -> list[OpeningDoorRow]:
    """Doors of active openings never seen open and not settled (after a restart)."""
    rows = tx.q(
        f"{_OPENING_DOOR} WHERE o.state='active' AND d.seen_open_at IS NULL AND d.outcome IS NULL"
    )
    return [OpeningDoorRow.of(r) for r in rows.fetchall()]


def active_opening_numbers(tx: Transaction, order_pk: int) -> list[int] | None:
    """The compartments of the order's newest active opening (None: there is none)."""
    r = tx.one(
        "SELECT id FROM openings WHERE order_pk=? AND state='active' ORDER BY id DESC",
        (order_pk,),
    )
    if r is None:
        return None
    rows = tx.q("SELECT number FROM opening_doors WHERE opening_id=? ORDER BY number", (r["id"],))
    return [row["number"] for row in rows]


def abandon_openings(tx: Transaction, order_pk: int, now: float) -> list[int]:
    """End the order's active openings as abandoned; returns their ids."""
    ids = [
        r["id"]
        for r in tx.q(
            "SELECT id FROM openings WHERE order_pk=? AND state='active'", (order_pk,)
        ).fetchall()
    ]
    for opening_id in ids:
        end_opening(tx, opening_id, OpeningState.ABANDONED, now)
    return ids


def end_opening(tx: Transaction, opening_id: int, state: OpeningState, now: float) -> None:
    tx.q("UPDATE openings SET state=?, ended_at=? WHERE id=?", (state.value, now, opening_id))


def mark_seen(tx: Transaction, opening_id: int, number: int, door: Door, at: float) -> None:
    """The opening's door seen open (its outcome: opened) or closed."""
    if door == Door.OPEN:
        tx.q(
            "UPDATE opening_doors SET seen_open_at=?, outcome=? WHERE opening_id=? AND number=?",
            (at, DoorOutcome.OPENED.value, opening_id, number),
        )
    else:
        tx.q(
            "UPDATE opening_doors SET seen_closed_at=? WHERE opening_id=? AND number=?",
            (at, opening_id, number),
        )


def count_attempt(
    tx: Transaction, opening_id: int, number: int, at: float, confirm_by: float
) -> None:
    tx.q(
        "UPDATE opening_doors SET attempts=attempts+1, last_attempt_at=?, confirm_by=?"
        " WHERE opening_id=? AND number=?",
        (at, confirm_by, opening_id, number),
    )


def set_confirm_by(tx: Transaction, opening_id: int, number: int, confirm_by: float) -> None:
    tx.q(
        "UPDATE opening_doors SET confirm_by=? WHERE opening_id=? AND number=?",
        (confirm_by, opening_id, number),
    )


def opening_doors_seen(tx: Transaction, opening_id: int) -> bool:
    """Was every door of the opening seen open by its sensor?"""
    r = tx.one(
        "SELECT 1 FROM opening_doors WHERE opening_id=? AND seen_open_at IS NULL",
        (opening_id,),
    )
    return r is None


def settle_door(tx: Transaction, opening_id: int, number: int, outcome: DoorOutcome) -> None:
    tx.q(
        "UPDATE opening_doors SET outcome=? WHERE opening_id=? AND number=?",
        (outcome.value, opening_id, number),
    )


def opening_settled(tx: Transaction, opening_id: int) -> OpeningState | None:
    """DONE when every door was seen closed, FAILED when the rest never opened, None
    while a door is still awaited."""
    rows = tx.q(
        "SELECT seen_closed_at, outcome FROM opening_doors WHERE opening_id=?", (opening_id,)
    ).fetchall()
    unopened = {o.value for o in UNOPENED}
    if not all(r["seen_closed_at"] is not None or r["outcome"] in unopened for r in rows):
        return None
    done = all(r["seen_closed_at"] is not None for r in rows)
    return OpeningState.DONE if done else OpeningState.FAILED


# -- boards -----------------------------------------------------------------------------


def add_board(tx: Transaction, name: str) -> None:
    """A configured board, online until it fails (a start counts as a fresh look)."""
    tx.q("INSERT OR IGNORE INTO boards (name) VALUES (?)", (name,))
    set_board_online(tx, name, True)


def set_board_online(tx: Transaction, name: str, online: bool) -> None:
    if online:
        tx.q("UPDATE boards SET online=1, detail='' WHERE name=?", (name,))
    else:
        tx.q("UPDATE boards SET online=0 WHERE name=?", (name,))


def count_board_error(tx: Transaction, name: str, detail: str) -> None:
    tx.q("UPDATE boards SET errors=errors+1, detail=? WHERE name=?", (detail[:200], name))


def boards(tx: Transaction) -> list[BoardRow]:
    rows = tx.q("SELECT name, online, errors, detail FROM boards ORDER BY name")
    return [BoardRow(r["name"], bool(r["online"]), r["errors"], r["detail"]) for r in rows]


# -- the throttle and the audit's counts ------------------------------------------------


def throttle(tx: Transaction, terminal: str) -> ThrottleState:
    r = tx.one("SELECT * FROM throttle WHERE terminal=?", (terminal,))
    if r is None:
        return ThrottleState()
    return ThrottleState(r["failures"], r["locked_until"], r["last_failure_at"])


def save_throttle(tx: Transaction, terminal: str, state: ThrottleState) -> None:
    tx.q(
        "INSERT INTO throttle (terminal, failures, locked_until, last_failure_at)"
        " VALUES (?,?,?,?) ON CONFLICT(terminal) DO UPDATE SET failures=excluded.failures,"
        " locked_until=excluded.locked_until, last_failure_at=excluded.last_failure_at",
        (terminal, state.failures, state.locked_until, state.last_failure_at),
    )


def audited_since(tx: Transaction, action: str, since: float, actor: str | None = None) -> int:
    """How many audit entries of `action` (by `actor`, if given) came after `since`."""
    if actor is None:
        r = tx.one("SELECT COUNT(*) AS n FROM audit WHERE action=? AND at > ?", (action, since))
    else:
        r = tx.one(
            "SELECT COUNT(*) AS n FROM audit WHERE action=? AND at > ? AND actor=?",
            (action, since, actor),
        )
    assert r is not None
    return int(r["n"])


# -- retention: what is finished and old enough goes, a bounded batch at a time --------
# Each function reads or deletes at most about `limit` rows, so one step of
# `locker.retention` stays short however large the tables have grown.


def _marks(values: Collection[object]) -> str:
    return ",".join("?" * len(values))


def order_window(tx: Transaction, after_pk: int, limit: int) -> list[tuple[int, float]]:
    """(pk, reserved_at) of the `limit` oldest orders after `after_pk`: a short walk of the
    table, however large it is."""
    rows = tx.q(
        "SELECT pk, reserved_at FROM orders WHERE pk > ? ORDER BY pk LIMIT ?", (after_pk, limit)
    )
    return [(r["pk"], float(r["reserved_at"])) for r in rows]


def aged_orders(tx: Transaction, order_pks: Collection[int]) -> list[AgedOrder]:
    """These orders, weighed for retention, by pk."""
    if not order_pks:
        return []
    held = {
        r["order_pk"] for r in tx.q("SELECT order_pk FROM compartments WHERE order_pk IS NOT NULL")
    }
    waiting = {
        r["order_pk"]
        for r in tx.q("SELECT order_pk FROM openings WHERE state='active' AND order_pk IS NOT NULL")
    }
    pks = tuple(order_pks)
    rows = tx.q(
        "SELECT o.pk, o.state, o.reserved_at,"
        " (SELECT MAX(s.at) FROM order_stages s WHERE s.order_pk = o.pk) AS ended_at,"
        " (SELECT COUNT(*) FROM order_stages s WHERE s.order_pk = o.pk) AS stages,"
        " (SELECT COUNT(*) FROM order_compartments c WHERE c.order_pk = o.pk) AS compartments,"
        " EXISTS (SELECT 1 FROM codes k WHERE k.order_pk = o.pk) AS coded"
        f" FROM orders o WHERE o.pk IN ({_marks(pks)}) ORDER BY o.pk",
        pks,
    ).fetchall()
    return [
        AgedOrder(
            pk=r["pk"],
            state=OrderState(r["state"]),
            reserved_at=float(r["reserved_at"]),
            ended_at=float(r["reserved_at"] if r["ended_at"] is None else r["ended_at"]),
            needed=bool(r["coded"]) or r["pk"] in held or r["pk"] in waiting,
            stages=r["stages"],
            compartments=r["compartments"],
        )
        for r in rows
    ]


def order_openings(tx: Transaction, order_pks: Collection[int]) -> dict[int, list[tuple[int, int]]]:
    """Per order: (id, door rows) of each of its openings (orders with none absent)."""
    if not order_pks:
        return {}
    pks = tuple(order_pks)
    # One walk of the openings: the table has no index on order_pk.
    rows = tx.q(
        "SELECT p.id, p.order_pk,"
        " (SELECT COUNT(*) FROM opening_doors d WHERE d.opening_id = p.id) AS doors"
        f" FROM openings p WHERE p.order_pk IN ({_marks(pks)}) ORDER BY p.id",
        pks,
    )
    out: dict[int, list[tuple[int, int]]] = {}
    for r in rows:
        out.setdefault(r["order_pk"], []).append((r["id"], r["doors"]))
    return out


def purge_orders(
    tx: Transaction, order_pks: Collection[int], opening_ids: Collection[int]
) -> Purged:
    """Delete these orders with their history, compartments and codes, and these openings
    (all of theirs: `order_openings`)."""
    if not order_pks:
        return Purged()
    pks = tuple(order_pks)
    opened = purge_openings(tx, opening_ids)
    stages = tx.q(f"DELETE FROM order_stages WHERE order_pk IN ({_marks(pks)})", pks).rowcount
    compartments = tx.q(
        f"DELETE FROM order_compartments WHERE order_pk IN ({_marks(pks)})", pks
    ).rowcount
    tx.q(f"DELETE FROM codes WHERE order_pk IN ({_marks(pks)})", pks)
    orders = tx.q(f"DELETE FROM orders WHERE pk IN ({_marks(pks)})", pks).rowcount
    return opened + Purged(orders=orders, stages=stages, compartments=compartments)


def loose_openings(tx: Transaction, before: float, limit: int) -> list[tuple[int, int]]:
    """(id, doors) of ended openings of no order (maintenance, remote opens) that ended
    before `before`, among the `limit` oldest openings."""
    rows = tx.q(
        "SELECT p.id, (SELECT COUNT(*) FROM opening_doors d WHERE d.opening_id = p.id) AS doors"
        " FROM (SELECT id, order_pk, state, created_at, ended_at FROM openings"
        " ORDER BY id LIMIT ?) p"
        " WHERE p.order_pk IS NULL AND p.state <> 'active'"
        " AND COALESCE(p.ended_at, p.created_at) < ? ORDER BY p.id",
        (limit, before),
    )
    return [(r["id"], r["doors"]) for r in rows]


def purge_openings(tx: Transaction, ids: Collection[int]) -> Purged:
    """Delete these openings with their doors."""
    if not ids:
        return Purged()
    t = tuple(ids)
    doors = tx.q(f"DELETE FROM opening_doors WHERE opening_id IN ({_marks(t)})", t).rowcount
    openings = tx.q(f"DELETE FROM openings WHERE id IN ({_marks(t)})", t).rowcount
    return Purged(openings=openings, doors=doors)


def purge_audit(tx: Transaction, before: float, limit: int) -> int:
    """Delete audit entries stamped before `before` among the `limit` oldest: the log is
    appended in time order, so the oldest rows are the ones due, and a step reads no more
    than `limit` rows even when nothing is due."""
    cur = tx.q(
        "DELETE FROM audit WHERE id IN (SELECT id FROM"
        " (SELECT id, at FROM audit ORDER BY id LIMIT ?) WHERE at < ?)",
        (limit, before),
    )
    return cur.rowcount


def purge_commands(tx: Transaction, before: float, limit: int) -> int:
    """Forget at most `limit` commands received before `before` (their ids and stored
    replies), except one whose remote open still waits for its door."""
    cur = tx.q(
        "DELETE FROM commands WHERE command_id IN (SELECT c.command_id FROM commands c"
        " WHERE c.received_at < ? AND NOT EXISTS (SELECT 1 FROM openings p"
        " WHERE p.state = 'active' AND p.command_id = c.command_id)"
        " ORDER BY c.received_at LIMIT ?)",
        (before, limit),
    )
    return cur.rowcount


def table_rows(tx: Transaction) -> dict[str, int]:
    """Rows per table of the schema (figures for tools and benchmarks)."""
    names = [
        r["name"]
        for r in tx.q(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    return {n: int(tx.q(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0]) for n in names}
