"""The locker service: the one owner of all state, running every use case.

Callers (the MQTT link, the local API, the scanner, the door poller) each call
a method here from the daemon's single loop; none of them holds state of its
own. Each method commits its change and the events it causes in one
transaction; bytes go to a board only after the intent to send them is
committed (`Transaction.after_commit`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from locker import orders
from locker.boards import Board, BoardError
from locker.clock import Clock, rfc3339
from locker.codes import CodeBook, new_code, qr_text
from locker.config import Config, ConfigError
from locker.doors import DoorTracker
from locker.entry import CodeEntry, CodeResult
from locker.lifecycle import Lifecycle
from locker.model import (
    ACTIVE_STATES,
    SIZES,
    CommandError,
    CompartmentState,
    Door,
    ErrorCode,
    Method,
    OrderState,
    Purpose,
)
from locker.orders import OrderEvent
from locker.rules import RulesConfig, Slot, allocate, check_rules, parse_reserve
from locker.storage import Store, Transaction
from locker.throttle import (
    ThrottlePolicy,
)

log = logging.getLogger(__name__)

# (board, channel, what to do if it fails) -> False when it already failed.
SendUnlock = Callable[[str, int, Callable[[BoardError], None]], bool]

HOUR = 3600.0

ReplyListener = Callable[[str, dict[str, Any]], None]


@dataclass
class _Compartment:
    """Static facts of a compartment, from the configuration."""

    number: int
    size: str
    low: bool
    board: str
    channel: int


class Service:
    """All use cases of one locker."""

    def __init__(
        self, config: Config, store: Store, boards: Mapping[str, Board], clock: Clock
    ) -> None:
        self.config = config
        self.store = store
        self.codebook: CodeBook = store.codebook
        self.boards = boards
        # How an unlock pulse reaches a board: here, in the calling thread; the daemon's
        # loop replaces it with the board's own I/O thread (locker/boardio.py).
        self.send_unlock: SendUnlock = self._unlock_here
        self.clock = clock
        self.locker_id = config.locker.id
        self.rules = RulesConfig(
            max_items=config.rules.max_items,
            allow_fresh=config.rules.allow_fresh,
            max_compartments_per_order=config.rules.max_compartments_per_order,
        )
        self.policy = ThrottlePolicy(
            free_attempts=config.security.free_attempts,
            base_s=config.security.throttle_base_s,
            max_s=config.security.throttle_max_s,
            reset_s=config.security.throttle_reset_s,
        )
        self.compartments: dict[int, _Compartment] = {
            c.number: _Compartment(c.number, c.size, c.low, c.board, c.channel)
            for c in config.compartments
        }
        self.by_channel = {(c.board, c.channel): c.number for c in self.compartments.values()}
        self.online: dict[str, bool] = {b.name: True for b in config.boards}
        self.reply_listeners: list[ReplyListener] = []
        self.devices_down: set[str] = set()
        # Told the board name after each unlock pulse (the loop reads that board next).
        self.unlock_listeners: list[Callable[[str], None]] = []
        # Told of every code the scanner or camera handed in, so the screen can show
        # the shopper the result of a scan it did not submit itself.
        self.entry_listeners: list[Callable[[Method, CodeResult], None]] = []
        # Told, once it committed, that every door of an order's phase was seen open and
        # then closed (order id, purpose, compartments): the screen thanks on lockerd's
        # word instead of working it out from door readings.
        self.phase_listeners: list[Callable[[str, str, tuple[int, ...]], None]] = []
        self.doors = DoorTracker(self)
        self.entry = CodeEntry(self)
        self.lifecycle = Lifecycle(self)

    # -- start-up ----------------------------------------------------------------------

    def start(self) -> None:
        """Bring the database in line with the configuration and recover open intents."""
        now = self.clock.now()
        with self.store.transaction() as tx:
            known = {r["number"]: r for r in tx.q("SELECT * FROM compartments")}
            for c in self.compartments.values():
                if c.number in known:
                    tx.q(
                        "UPDATE compartments SET size=?, low=?, board=?, channel=?, door='unknown',"
                        " door_since=NULL, left_open_alarmed=0 WHERE number=?",
                        (c.size, int(c.low), c.board, c.channel, c.number),
                    )
                else:
                    tx.q(
                        "INSERT INTO compartments (number, size, low, board, channel)"
                        " VALUES (?,?,?,?,?)",
                        (c.number, c.size, int(c.low), c.board, c.channel),
                    )
            for number, row in known.items():
                if number in self.compartments:
                    continue
                if row["order_pk"] is not None:
                    raise ConfigError(
                        f"{self.config.path}: compartment {number} holds an order but is no"
                        " longer configured; put it back until the order is collected or retrieved"
                    )
                tx.q("DELETE FROM compartments WHERE number=?", (number,))
            for b in self.config.boards:
                tx.q("INSERT OR IGNORE INTO boards (name) VALUES (?)", (b.name,))
                tx.q("UPDATE boards SET online=1, detail='' WHERE name=?", (b.name,))
            tx.audit(now, "system", "start", detail=f"compartments={len(self.compartments)}")
            self.doors.recover(tx)

    # -- small helpers -----------------------------------------------------------------

    def now(self) -> float:
        return self.clock.now()

    def order_row(self, tx: Transaction, order_id: str) -> Any:
        return tx.one("SELECT * FROM orders WHERE order_id=? ORDER BY pk DESC LIMIT 1", (order_id,))

    def order_compartments(self, tx: Transaction, order_pk: int) -> list[dict[str, Any]]:
        rows = tx.q(
            "SELECT number, size FROM order_compartments WHERE order_pk=? ORDER BY number",
            (order_pk,),
        )
        return [{"number": r["number"], "size": r["size"]} for r in rows]

    def new_code(self, tx: Transaction, order_pk: int, kind: str, digits: int) -> str:
        """A fresh code, unique among live codes, stored only as its keyed hash."""
        while True:
            code = new_code(digits)
            digest = self.codebook.digest(code)
            if tx.one("SELECT 1 FROM codes WHERE digest=?", (digest,)) is None:
                tx.q(
                    "INSERT INTO codes (digest, order_pk, kind) VALUES (?,?,?)",
                    (digest, order_pk, kind),
                )
                return code

    def kill_codes(self, tx: Transaction, order_pk: int, kind: str | None = None) -> None:
        if kind is None:
            tx.q("DELETE FROM codes WHERE order_pk=?", (order_pk,))
        else:
            tx.q("DELETE FROM codes WHERE order_pk=? AND kind=?", (order_pk, kind))

    def emit(self, tx: Transaction, type_: str, fields: Mapping[str, Any], at: float) -> None:
        tx.emit(type_, fields, at)

    def compartment_state(self, row: Any, order_state: str | None) -> CompartmentState:
        if row["jammed"] or not self.online.get(row["board"], True):
            return CompartmentState.FAULT
        if order_state == OrderState.RESERVED:
            return CompartmentState.RESERVED
        if order_state == OrderState.LOADED:
            return CompartmentState.LOADED
        if order_state in (OrderState.EXPIRED, OrderState.CANCELLED):
            return CompartmentState.RETRIEVAL
        if not row["in_service"]:
            return CompartmentState.OUT_OF_SERVICE
        return CompartmentState.FREE

    def _compartment_rows(self, tx: Transaction) -> list[tuple[Any, str | None]]:
        rows = tx.q(
            "SELECT c.*, o.state AS order_state FROM compartments c"
            " LEFT JOIN orders o ON o.pk = c.order_pk ORDER BY c.number"
        ).fetchall()
        return [(r, r["order_state"]) for r in rows]

    # -- snapshot ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The contract's `state` payload: no codes, no customer data."""
        with self.store.read() as tx:
            rows = self._compartment_rows(tx)
        free = {s: 0 for s in SIZES if any(c.size == s for c in self.compartments.values())}
        out = []
        for row, order_state in rows:
            state = self.compartment_state(row, order_state)
            if state == CompartmentState.FREE:
                free[row["size"]] += 1
            out.append(
                {
                    "number": row["number"],
                    "size": row["size"],
                    "state": state.value,
                    "door": row["door"],
                    "in_service": bool(row["in_service"]),
                }
            )
        return {
            "locker_id": self.locker_id,
            "at": rfc3339(self.now()),
            "free": free,
            "compartments": out,
        }

    # -- platform use cases ------------------------------------------------------------

    def reserve(self, data: Mapping[str, Any], actor: str = "platform") -> dict[str, Any]:
        req = parse_reserve(data)
        now = self.now()
        with self.store.transaction() as tx:
            sizes = [c.size for c in self.compartments.values()]
            largest = max(sizes, key=SIZES.index) if sizes else None
            check_rules(req, self.rules, largest)
            existing = tx.one(
                "SELECT * FROM orders WHERE order_id=? AND state IN (?,?)",
                (req.order_id, *ACTIVE_STATES),
            )
            if existing is not None:
                raise CommandError(
                    ErrorCode.ORDER_EXISTS,
                    f"order {req.order_id} already holds an active reservation",
                    result=self._reservation_view(tx, existing),
                )
            # The same test as compartment_state() == FREE, done by SQLite.
            offline = [name for name, up in self.online.items() if not up]
            free = [
                Slot(row["number"], row["size"], bool(row["low"]))
                for row in tx.q(
                    "SELECT number, size, low FROM compartments WHERE order_pk IS NULL"
                    " AND in_service=1 AND jammed=0 AND board NOT IN"
                    f" ({','.join('?' * len(offline))})",
                    tuple(offline),
                )
            ]
            chosen = allocate(req.parcels, free, req.accessible)
            if chosen is None:
                raise CommandError(
                    ErrorCode.NO_COMPARTMENT_AVAILABLE,
                    "no free compartment of a fitting size; pick up at the service desk",
                )
            pickup_hours = req.pickup_hours or self.config.rules.hold_hours
            reserved_until = now + self.config.rules.reserve_hours * HOUR
            cur = tx.q(
                "INSERT INTO orders (order_id, state, accessible, item_count, pickup_hours,"
                " reserved_at, reserved_until) VALUES (?,?,?,?,?,?,?)",
                (
                    req.order_id,
                    OrderState.RESERVED.value,
                    int(req.accessible),
                    sum(it.qty for it in req.items),
                    pickup_hours,
                    now,
                    reserved_until,
                ),
            )
            order_pk = cur.lastrowid
            assert order_pk is not None
            for slot in sorted(chosen, key=lambda s: s.number):
                tx.q("UPDATE compartments SET order_pk=? WHERE number=?", (order_pk, slot.number))
                tx.q(
                    "INSERT INTO order_compartments (order_pk, number, size) VALUES (?,?,?)",
                    (order_pk, slot.number, slot.size),
                )
            tx.stage(order_pk, OrderState.RESERVED.value, now)
            deposit_code = self.new_code(
                tx, order_pk, "deposit", self.config.rules.deposit_code_digits
            )
            numbers = ",".join(str(s.number) for s in chosen)
            tx.audit(now, actor, "reserve", req.order_id, detail=f"compartments={numbers}")
            result = self._reservation_view(
                tx, tx.one("SELECT * FROM orders WHERE pk=?", (order_pk,))
            )
            result["deposit_code"] = deposit_code
            return result

    def _reservation_view(self, tx: Transaction, order: Any) -> dict[str, Any]:
        return {
            "order_id": order["order_id"],
            "compartments": self.order_compartments(tx, order["pk"]),
            "reserved_until": rfc3339(order["reserved_until"]),
            "state": order["state"],
        }

    def order_or_fail(self, tx: Transaction, order_id: str) -> Any:
        order = self.order_row(tx, order_id)
        if order is None:
            raise CommandError(ErrorCode.UNKNOWN_ORDER, f"no order {order_id} in this locker")
        if order["state"] == OrderState.COLLECTED:
            raise CommandError(
                ErrorCode.ALREADY_COLLECTED, f"order {order_id} was already collected"
            )
        return order

    def cancel(self, order_id: str, reason: str, actor: str = "platform") -> dict[str, Any]:
        now = self.now()
        with self.store.transaction() as tx:
            order = self.order_or_fail(tx, order_id)
            pk, state = order["pk"], order["state"]
            if state in (OrderState.RESERVED, OrderState.LOADED):
                # Goods may be inside once a door of it opened: staff must then take them
                # out with the deposit code.
                empty = state == OrderState.RESERVED and not self.doors.any_door_opened(tx, pk)
                event = OrderEvent.CANCELLED_EMPTY if empty else OrderEvent.CANCELLED_WITH_GOODS
                orders.apply(tx, pk, event, now, self.doors)
                tx.q("UPDATE orders SET end_reason=? WHERE pk=?", (reason, pk))
            tx.audit(now, actor, "cancel", order_id, detail=reason[:200])
            new_state = tx.one("SELECT state FROM orders WHERE pk=?", (pk,))
            assert new_state is not None
            return {"order_id": order_id, "state": new_state["state"]}

    def extend(self, order_id: str, pickup_until: float, actor: str = "platform") -> dict[str, Any]:
        now = self.now()
        if pickup_until <= now:
            raise CommandError(ErrorCode.INVALID_PAYLOAD, "pickup_until: must be in the future")
        with self.store.transaction() as tx:
            order = self.order_or_fail(tx, order_id)
            if order["state"] != OrderState.LOADED:
                raise CommandError(
                    ErrorCode.ORDER_NOT_LOADED,
                    f"order {order_id} is {order['state']}; only a loaded order can be extended",
                )
            reminder_at = pickup_until - self.config.rules.reminder_before_hours * HOUR
            tx.q(
                "UPDATE orders SET pickup_until=?, reminder_sent=? WHERE pk=?",
                (pickup_until, int(reminder_at <= now), order["pk"]),
            )
            tx.stage(order["pk"], "extended", now, rfc3339(pickup_until))
            tx.audit(now, actor, "extend", order_id, detail=rfc3339(pickup_until))
            return {"order_id": order_id, "pickup_until": rfc3339(pickup_until)}

    def reissue_code(self, order_id: str, actor: str = "platform") -> dict[str, Any]:
        now = self.now()
        with self.store.transaction() as tx:
            order = self.order_or_fail(tx, order_id)
            if order["state"] != OrderState.LOADED:
                raise CommandError(
                    ErrorCode.ORDER_NOT_LOADED,
                    f"order {order_id} is {order['state']}; a pickup code exists only once"
                    " the order is loaded",
                )
            self.kill_codes(tx, order["pk"], "pickup")
            code = self.new_code(tx, order["pk"], "pickup", self.config.rules.pickup_code_digits)
            qr = qr_text(self.locker_id, "pickup", code)
            tx.stage(order["pk"], "code_reissued", now)
            tx.audit(now, actor, "reissue_code", order_id)
            self.emit(
                tx,
                "code_issued",
                {"order_id": order_id, "pickup_code": code, "pickup_qr": qr},
                now,
            )
            return {"order_id": order_id, "pickup_code": code, "pickup_qr": qr}

    def set_service(
        self, number: int, in_service: bool, reason: str, actor: str = "platform"
    ) -> dict[str, Any]:
        self._known_compartment(number)
        now = self.now()
        with self.store.transaction() as tx:
            tx.q("UPDATE compartments SET in_service=? WHERE number=?", (int(in_service), number))
            action = "in_service" if in_service else "out_of_service"
            tx.audit(now, actor, action, compartment=number, detail=reason[:200])
        return {"compartment": number, "in_service": in_service}

    def _known_compartment(self, number: int) -> _Compartment:
        comp = self.compartments.get(number)
        if comp is None:
            raise CommandError(
                ErrorCode.UNKNOWN_COMPARTMENT, f"this locker has no compartment {number}"
            )
        return comp

    def remote_open(self, number: int, reason: str, operator: str, command_id: str) -> None:
        """Open one compartment for customer service; the reply follows the door."""
        comp = self._known_compartment(number)
        now = self.now()
        if not self.online.get(comp.board, True):
            raise CommandError(
                ErrorCode.BOARD_OFFLINE, f"board {comp.board} of compartment {number} is offline"
            )
        with self.store.transaction() as tx:
            row = tx.one(
                "SELECT COUNT(*) AS n FROM audit WHERE action='remote_open' AND at > ?",
                (now - HOUR,),
            )
            limit = self.config.security.remote_open_per_hour
            if row is not None and row["n"] >= limit:
                raise CommandError(
                    ErrorCode.RATE_LIMITED,
                    f"more than {limit} remote opens in the last hour; open at the locker",
                )
            order_row = tx.one(
                "SELECT o.order_id FROM compartments c JOIN orders o ON o.pk=c.order_pk"
                " WHERE c.number=?",
                (number,),
            )
            order_id = order_row["order_id"] if order_row else None
            tx.audit(
                now, f"platform:{operator[:64]}", "remote_open", order_id, number, reason[:200]
            )
            tx.mark_pending(command_id, "open", now)
            self.doors.open(
                tx,
                Purpose.REMOTE,
                None,
                [number],
                Method.REMOTE.value,
                f"platform:{operator[:64]}",
                command_id,
            )

    def audit_action(self, actor: str, action: str, detail: str = "") -> None:
        """Log one action of a person at the locker (a maintenance login, …)."""
        with self.store.transaction() as tx:
            tx.audit(self.now(), actor, action, detail=detail[:200])

    def maintenance_open(self, number: int, actor: str) -> None:
        """A technician opens one compartment (test-open). Logged; never rate-limited."""
        self._known_compartment(number)
        with self.store.transaction() as tx:
            tx.audit(self.now(), actor, "maintenance_open", compartment=number)
            self.doors.open(tx, Purpose.MAINTENANCE, None, [number], "technician", actor, None)

    def finish_command(self, tx: Transaction, command_id: str, reply: dict[str, Any]) -> None:
        """Store and deliver the late reply of a pending command."""
        tx.store_reply(command_id, "open", reply, self.now())
        for listener in self.reply_listeners:
            tx.after_commit(functools.partial(listener, command_id, reply))

    def enter_code(
        self, text: str, method: Method, notify: bool = True, staff: bool = False
    ) -> CodeResult:
        """A code typed, scanned or seen by the camera at this terminal.

        `notify=False` when the caller shows the result itself (the kiosk's own request);
        `staff=True` for the staff screen, judged by its own throttle (deposit codes only)."""
        result = self.entry.enter_code(text, method, staff=staff)
        if notify:
            for listener in self.entry_listeners:
                listener(method, result)
        return result

    def phase_complete(self, tx: Transaction, order_pk: int, purpose: str, method: str) -> None:
        """Every compartment of the order was seen open and then closed."""
        self.lifecycle.phase_complete(tx, order_pk, purpose, method)

    def tick(self) -> None:
        """Fire every deadline that has passed: lapse, reminder, expiry, doors."""
        self.lifecycle.tick()

    # -- boards ------------------------------------------------------------------------

    def _unlock_here(self, board: str, channel: int, failed: Callable[[BoardError], None]) -> bool:
        """Send the pulse now; False (after `failed`) when the board refused it."""
        try:
            self.boards[board].unlock(channel)
        except BoardError as exc:
            failed(exc)
            return False
        return True

    def board_failed(self, board: str, error: BoardError) -> None:
        """A board stopped answering: its compartments go to `fault`, once."""
        now = self.now()
        with self.store.transaction() as tx:
            tx.q(
                "UPDATE boards SET errors=errors+1, detail=? WHERE name=?",
                (error.detail[:200], board),
            )
            if not self.online.get(board, True):
                return
            self.online[board] = False
            tx.q("UPDATE boards SET online=0 WHERE name=?", (board,))
            numbers = sorted(c.number for c in self.compartments.values() if c.board == board)
            tx.audit(now, "system", "board_offline", detail=f"{board}: {error.detail}"[:200])
            self.emit(
                tx,
                "fault",
                {
                    "component": f"board:{board}",
                    "detail": error.detail[:200],
                    "compartments": numbers,
                },
                now,
            )

    def board_ok(self, board: str) -> None:
        """A board answered again after a failure."""
        if self.online.get(board, True):
            return
        now = self.now()
        with self.store.transaction() as tx:
            self.online[board] = True
            tx.q("UPDATE boards SET online=1, detail='' WHERE name=?", (board,))
            numbers = sorted(c.number for c in self.compartments.values() if c.board == board)
            tx.audit(now, "system", "board_online", detail=board)
            self.emit(
                tx,
                "fault_cleared",
                {
                    "component": f"board:{board}",
                    "detail": "board answering again",
                    "compartments": numbers,
                },
                now,
            )

    def device_failed(self, component: str, detail: str) -> None:
        """A device other than a board (the scanner, the camera) stopped working: once."""
        if component in self.devices_down:
            return
        now = self.now()
        with self.store.transaction() as tx:
            tx.audit(now, "system", "device_offline", detail=f"{component}: {detail}"[:200])
            self.emit(
                tx,
                "fault",
                {"component": component, "detail": detail[:200], "compartments": []},
                now,
            )
        self.devices_down.add(component)

    def device_ok(self, component: str) -> None:
        """The device works again."""
        if component not in self.devices_down:
            return
        now = self.now()
        with self.store.transaction() as tx:
            tx.audit(now, "system", "device_online", detail=component)
            self.emit(
                tx,
                "fault_cleared",
                {"component": component, "detail": "working again", "compartments": []},
                now,
            )
        self.devices_down.discard(component)

    def doors_read(self, board: str, doors: Mapping[int, bool]) -> None:
        """A poll of one board succeeded: hand every changed door to the tracker."""
        self.board_ok(board)
        for channel, is_open in doors.items():
            number = self.by_channel.get((board, channel))
            if number is not None:
                self.doors.observe(number, Door.OPEN if is_open else Door.CLOSED)

    # -- reading -----------------------------------------------------------------------

    def history(self, order_id: str) -> list[dict[str, Any]]:
        """Every stage of every order with this id, oldest first (for `lockerctl history`)."""
        with self.store.read() as tx:
            rows = tx.q(
                "SELECT s.order_pk, s.stage, s.at, s.detail FROM order_stages s"
                " JOIN orders o ON o.pk = s.order_pk WHERE o.order_id=? ORDER BY s.id",
                (order_id,),
            ).fetchall()
        return [{"stage": r["stage"], "at": rfc3339(r["at"]), "detail": r["detail"]} for r in rows]
