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
from typing import Any

from locker import orders, repo
from locker.boards import Board, BoardError
from locker.clock import Clock, rfc3339
from locker.codes import CodeBook, qr_text
from locker.config import Config, ConfigError
from locker.entry import CodeEntry
from locker.events import CodeEntered, CommandAnswered, Events, UnlockSent
from locker.lifecycle import Lifecycle
from locker.model import (
    SIZES,
    CodeKind,
    CodeResult,
    CommandError,
    Compartment,
    CompartmentState,
    Component,
    Door,
    EntryOutcome,
    ErrorCode,
    Method,
    OrderState,
    Purpose,
)
from locker.openings import CommandReply, Openings, OpenRequest, Outcome
from locker.orders import OrderEvent
from locker.rows import OrderRow
from locker.rules import RulesConfig, allocate, check_rules, parse_reserve
from locker.storage import RESERVE_BYTES, StorageFull, Store, Transaction
from locker.throttle import ThrottlePolicy

__all__ = ["CodeResult", "Service"]

log = logging.getLogger(__name__)

HOUR = 3600.0
# While commits fail, how often the medium is tried again (and the fault reported).
STORAGE_PROBE_S = 3.0


class Service:
    """All use cases of one locker."""

    def __init__(
        self, config: Config, store: Store, boards: Mapping[str, Board], clock: Clock
    ) -> None:
        self.config = config
        self.store = store
        self.codebook: CodeBook = store.codebook
        self.boards = boards
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
        self.compartments: dict[int, Compartment] = {
            c.number: Compartment(c.number, c.size, c.low, c.board, c.channel)
            for c in config.compartments
        }
        # The largest bay of the cabinet, for the rules (the configuration fixes it).
        self.largest_size = max(
            (c.size for c in config.compartments), key=SIZES.index, default=None
        )
        self.by_channel = {(c.board, c.channel): c.number for c in self.compartments.values()}
        self.online: dict[str, bool] = {b.name: True for b in config.boards}
        self.devices_down: set[str] = set()
        # The locker's one hub: what the service publishes, the composition root
        # subscribes to (the loop, the platform link, the local API).
        self.hub: Events = store.hub
        self.openings = Openings(
            clock=clock,
            settings=config.doors,
            compartments=self.compartments,
            boards=boards.keys(),
            online=self.online,
            # Here, in the calling thread; lockerd's composition root replaces it with
            # each board's own I/O thread (Loop.unlock_on_worker, locker/boardio.py).
            send_unlock=self._unlock_here,
            board_failed=self.board_failed,
            unlocked=lambda board: self.hub.unlock_sent.publish(UnlockSent(board)),
        )
        self.entry = CodeEntry(
            store=store,
            clock=clock,
            codebook=self.codebook,
            locker_id=self.locker_id,
            security=config.security,
            policy=self.policy,
            compartments=self.compartments,
            online=self.online,
            openings=self.openings,
        )
        self.lifecycle = Lifecycle(
            config.rules, self.locker_id, self.codebook, self.openings, clock=clock
        )
        self._next_prune = 0.0
        self._storage_reported = False  # a `fault` of the storage went out, no clear yet
        self._storage_next = 0.0  # monotonic time of the next probe while commits fail

    # -- start-up ----------------------------------------------------------------------

    def start(self) -> None:
        """Bring the database in line with the configuration and recover open intents."""
        self.store.keep_reserve(RESERVE_BYTES)
        try:
            self._start()
        except StorageFull as exc:
            if not exc.released:
                raise
            # Started on a full medium: the reserve's space lets it start and report.
            self._start()

    def _start(self) -> None:
        now = self.clock.now()
        with self.store.transaction() as tx:
            known = {r.number: r for r in repo.compartments(tx)}
            for c in self.compartments.values():
                repo.configure_compartment(tx, c, known=c.number in known)
            for number, row in known.items():
                if number in self.compartments:
                    continue
                if row.order_pk is not None:
                    raise ConfigError(
                        f"{self.config.path}: compartment {number} holds an order but is no"
                        " longer configured; put it back until the order is collected or retrieved"
                    )
                repo.delete_compartment(tx, number)
            for b in self.config.boards:
                repo.add_board(tx, b.name)
            tx.audit(now, "system", "start", detail=f"compartments={len(self.compartments)}")
            self.openings.recover(tx)

    def now(self) -> float:
        return self.clock.now()

    def _settle(self, tx: Transaction, outcomes: list[Outcome]) -> None:
        """Act on what the doors did: a completed phase moves its order, a pending
        command gets its reply (stored now, delivered once committed)."""
        for outcome in outcomes:
            if isinstance(outcome, CommandReply):
                tx.store_reply(outcome.command_id, "open", outcome.reply, self.now())
                answered = CommandAnswered(outcome.command_id, outcome.reply)
                tx.after_commit(functools.partial(self.hub.command_answered.publish, answered))
            else:
                # The screen thanks on lockerd's word, once it is durable, instead of
                # working it out from door readings.
                done = self.lifecycle.phase_complete(tx, outcome, self.now())
                tx.after_commit(functools.partial(self.hub.phase_done.publish, done))

    # -- snapshot ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The contract's `state` payload: no codes, no customer data."""
        with self.store.read() as tx:
            rows = repo.compartments(tx)
        free = {s: 0 for s in SIZES if any(c.size == s for c in self.compartments.values())}
        out = []
        for row in rows:
            state = row.state(self.online.get(row.board, True))
            if state == CompartmentState.FREE:
                free[row.size] += 1
            out.append(
                {
                    "number": row.number,
                    "size": row.size,
                    "state": state.value,
                    "door": row.door.value,
                    "in_service": row.in_service,
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
            check_rules(req, self.rules, self.largest_size)
            existing = repo.active_order(tx, req.order_id)
            if existing is not None:
                raise CommandError(
                    ErrorCode.ORDER_EXISTS,
                    f"order {req.order_id} already holds an active reservation",
                    result=self._reservation_view(tx, existing),
                )
            offline = [name for name, up in self.online.items() if not up]
            free = repo.free_slots(tx, offline, per_kind=len(req.parcels))
            chosen = allocate(req.parcels, free, req.accessible)
            if chosen is None:
                raise CommandError(
                    ErrorCode.NO_COMPARTMENT_AVAILABLE,
                    "no free compartment of a fitting size; pick up at the service desk",
                )
            order_pk = repo.insert_order(
                tx,
                req.order_id,
                req.accessible,
                sum(it.qty for it in req.items),
                req.pickup_hours or self.config.rules.hold_hours,
                now,
                now + self.config.rules.reserve_hours * HOUR,
            )
            for slot in sorted(chosen, key=lambda s: s.number):
                repo.assign_compartment(tx, order_pk, slot)
            repo.add_stage(tx, order_pk, OrderState.RESERVED.value, now)
            deposit_code = repo.issue_code(
                tx, self.codebook, order_pk, CodeKind.DEPOSIT, self.config.rules.deposit_code_digits
            )
            numbers = ",".join(str(s.number) for s in chosen)
            tx.audit(now, actor, "reserve", req.order_id, detail=f"compartments={numbers}")
            order = repo.order(tx, order_pk)
            assert order is not None
            result = self._reservation_view(tx, order)
            result["deposit_code"] = deposit_code
            return result

    def _reservation_view(self, tx: Transaction, order: OrderRow) -> dict[str, Any]:
        return {
            "order_id": order.order_id,
            "compartments": [c.as_dict() for c in repo.order_compartments(tx, order.pk)],
            "reserved_until": rfc3339(order.reserved_until),
            "state": order.state.value,
        }

    def _order_or_fail(self, tx: Transaction, order_id: str) -> OrderRow:
        order = repo.order_by_id(tx, order_id)
        if order is None:
            raise CommandError(ErrorCode.UNKNOWN_ORDER, f"no order {order_id} in this locker")
        if order.state == OrderState.COLLECTED:
            raise CommandError(
                ErrorCode.ALREADY_COLLECTED, f"order {order_id} was already collected"
            )
        return order

    def cancel(self, order_id: str, reason: str, actor: str = "platform") -> dict[str, Any]:
        now = self.now()
        with self.store.transaction() as tx:
            order = self._order_or_fail(tx, order_id)
            pk, state = order.pk, order.state
            if state in (OrderState.RESERVED, OrderState.LOADED):
                # Goods may be inside once a door of it opened: staff must then take them
                # out with the deposit code.
                empty = state == OrderState.RESERVED and not repo.any_door_opened(tx, pk)
                event = OrderEvent.CANCELLED_EMPTY if empty else OrderEvent.CANCELLED_WITH_GOODS
                orders.apply(tx, pk, event, now, self.openings)
                repo.set_end_reason(tx, pk, reason)
            tx.audit(now, actor, "cancel", order_id, detail=reason[:200])
            after = repo.order(tx, pk)
            assert after is not None
            return {"order_id": order_id, "state": after.state.value}

    def extend(self, order_id: str, pickup_until: float, actor: str = "platform") -> dict[str, Any]:
        now = self.now()
        if pickup_until <= now:
            raise CommandError(ErrorCode.INVALID_PAYLOAD, "pickup_until: must be in the future")
        with self.store.transaction() as tx:
            order = self._order_or_fail(tx, order_id)
            if order.state != OrderState.LOADED:
                raise CommandError(
                    ErrorCode.ORDER_NOT_LOADED,
                    f"order {order_id} is {order.state}; only a loaded order can be extended",
                )
            reminder_at = pickup_until - self.config.rules.reminder_before_hours * HOUR
            repo.set_pickup_until(tx, order.pk, pickup_until, reminder_at <= now)
            repo.add_stage(tx, order.pk, "extended", now, rfc3339(pickup_until))
            tx.audit(now, actor, "extend", order_id, detail=rfc3339(pickup_until))
            return {"order_id": order_id, "pickup_until": rfc3339(pickup_until)}

    def reissue_code(self, order_id: str, actor: str = "platform") -> dict[str, Any]:
        now = self.now()
        with self.store.transaction() as tx:
            order = self._order_or_fail(tx, order_id)
            if order.state != OrderState.LOADED:
                raise CommandError(
                    ErrorCode.ORDER_NOT_LOADED,
                    f"order {order_id} is {order.state}; a pickup code exists only once"
                    " the order is loaded",
                )
            repo.kill_codes(tx, order.pk, CodeKind.PICKUP)
            code = repo.issue_code(
                tx, self.codebook, order.pk, CodeKind.PICKUP, self.config.rules.pickup_code_digits
            )
            qr = qr_text(self.locker_id, "pickup", code)
            repo.add_stage(tx, order.pk, "code_reissued", now)
            tx.audit(now, actor, "reissue_code", order_id)
            fields = {"order_id": order_id, "pickup_code": code, "pickup_qr": qr}
            tx.emit("code_issued", fields, now)
            return dict(fields)

    def set_service(
        self, number: int, in_service: bool, reason: str, actor: str = "platform"
    ) -> dict[str, Any]:
        self._known_compartment(number)
        now = self.now()
        with self.store.transaction() as tx:
            repo.set_in_service(tx, number, in_service)
            action = "in_service" if in_service else "out_of_service"
            tx.audit(now, actor, action, compartment=number, detail=reason[:200])
        return {"compartment": number, "in_service": in_service}

    def _known_compartment(self, number: int) -> Compartment:
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
            limit = self.config.security.remote_open_per_hour
            if repo.audited_since(tx, "remote_open", now - HOUR) >= limit:
                raise CommandError(
                    ErrorCode.RATE_LIMITED,
                    f"more than {limit} remote opens in the last hour; open at the locker",
                )
            actor = f"platform:{operator[:64]}"
            order_id = repo.order_id_in(tx, number)
            tx.audit(now, actor, "remote_open", order_id, number, reason[:200])
            tx.mark_pending(command_id, "open", now)
            request = OpenRequest(
                Purpose.REMOTE, (number,), Method.REMOTE.value, actor, command_id=command_id
            )
            self.openings.open(tx, request)

    def audit_action(self, actor: str, action: str, detail: str = "") -> None:
        """Log one action of a person at the locker (a maintenance login, …)."""
        with self.store.transaction() as tx:
            tx.audit(self.now(), actor, action, detail=detail[:200])

    def maintenance_open(self, number: int, actor: str) -> None:
        """A technician opens one compartment (test-open). Logged; never rate-limited."""
        self._known_compartment(number)
        with self.store.transaction() as tx:
            tx.audit(self.now(), actor, "maintenance_open", compartment=number)
            self.openings.open(tx, OpenRequest(Purpose.MAINTENANCE, (number,), "technician", actor))

    def enter_code(
        self, text: str, method: Method, notify: bool = True, staff: bool = False
    ) -> CodeResult:
        """A code typed, scanned or seen by the camera at this terminal.

        `notify=False` when the caller shows the result itself (the kiosk's own request);
        `staff=True` for the staff screen, judged by its own throttle (deposit codes only)."""
        try:
            result = self._enter_code(text, method, staff)
        except StorageFull as exc:
            # Never an unlock without its committed intent: the code is refused, and
            # nothing of it (a throttle count, an intent) happened.
            log.warning("a code could not be served: %s", exc.message)
            result = CodeResult(
                EntryOutcome.REFUSED,
                "the locker cannot store anything now; please try again later",
                reason="storage",
            )
        if notify:
            # The screen shows the shopper the result of a scan it did not submit itself.
            self.hub.code_entered.publish(CodeEntered(method, result))
        return result

    def _enter_code(self, text: str, method: Method, staff: bool) -> CodeResult:
        try:
            return self.entry.enter_code(text, method, staff=staff)
        except StorageFull as exc:
            if not exc.released:
                raise
            # The medium filled under this code: the reserve given back lets it commit.
            return self.entry.enter_code(text, method, staff=staff)

    def tick(self) -> None:
        """Fire every deadline that has passed: lapse, reminder, expiry, doors; report
        and probe a storage fault."""
        now = self.now()
        try:
            with self.store.transaction() as tx:
                self.lifecycle.tick(tx, now)
                self._settle(tx, self.openings.tick(tx, now))
            if now >= self._next_prune:
                # Past the broker's session expiry a command cannot be delivered again.
                self._next_prune = now + HOUR
                mqtt = self.config.mqtt
                self.store.prune_replies(now - max(mqtt.session_expiry_s, mqtt.command_max_age_s))
        except StorageFull:
            # Nothing of it committed; every deadline is still due and fires on a later
            # turn, once a commit works (the fault is the store's, reported below).
            pass
        self._watch_storage()

    def _watch_storage(self) -> None:
        """While commits fail: the `fault` (component storage) as soon as it commits, a
        probe every STORAGE_PROBE_S, `fault_cleared` once the probe finds room again."""
        store = self.store
        if store.fault is None and not self._storage_reported:
            return
        mono = self.clock.monotonic()
        if mono < self._storage_next:
            return
        self._storage_next = mono + STORAGE_PROBE_S
        fault = store.fault
        if fault is not None and not self._storage_reported:
            detail = f"data medium {fault.kind.replace('_', ' ')}: {fault.detail}"
            try:
                with store.transaction() as tx:
                    tx.audit(self.now(), "system", "storage_fault", detail=detail[:200])
                    self._fault(tx, "fault", Component.STORAGE, detail)
                self._storage_reported = True
            except StorageFull:
                return  # read-only or still failing: tried again at the next probe
        if not store.probe():
            return
        try:
            with store.transaction() as tx:
                tx.audit(self.now(), "system", "storage_ok")
                self._fault(tx, "fault_cleared", Component.STORAGE, "commits work again")
            self._storage_reported = False
        except StorageFull:
            pass  # failed again at once: the store holds the fault anew

    @property
    def storage_fault(self) -> str | None:
        """Why commits fail now ("full", "read_only", "io_error"), None while they work."""
        return None if self.store.fault is None else self.store.fault.kind

    # -- boards ------------------------------------------------------------------------

    def _unlock_here(self, board: str, channel: int, failed: Callable[[BoardError], None]) -> bool:
        """Send the pulse now; False (after `failed`) when the board refused it."""
        try:
            self.boards[board].unlock(channel)
        except BoardError as exc:
            failed(exc)
            return False
        return True

    def _fault(
        self, tx: Transaction, type_: str, component: Component, detail: str, board: str = ""
    ) -> None:
        """A `fault` or `fault_cleared` event of a board (named) or a device."""
        numbers = sorted(c.number for c in self.compartments.values() if board and c.board == board)
        fields: dict[str, Any] = {
            "component": component.value,
            "detail": detail[:200],
            "compartments": numbers,
        }
        if board:
            fields["board"] = board
        tx.emit(type_, fields, self.now())

    def board_failed(self, board: str, error: BoardError) -> None:
        """A board stopped answering: its compartments go to `fault`, once."""
        was_online = self.online.get(board, True)
        try:
            with self.store.transaction() as tx:
                repo.count_board_error(tx, board, error.detail)
                if not was_online:
                    return
                self.online[board] = False
                repo.set_board_online(tx, board, False)
                detail = f"{board}: {error.detail}"[:200]
                tx.audit(self.now(), "system", "board_offline", detail=detail)
                self._fault(tx, "fault", Component.BOARD, error.detail, board)
        except StorageFull:
            # Not recorded: the board still counts as offline for new work (no unlock
            # goes to it), and the `fault` is recorded on its next failed read.
            if was_online:
                self.online[board] = True

    def board_ok(self, board: str) -> None:
        """A board answered again after a failure."""
        if self.online.get(board, True):
            return
        try:
            with self.store.transaction() as tx:
                self.online[board] = True
                repo.set_board_online(tx, board, True)
                tx.audit(self.now(), "system", "board_online", detail=board)
                self._fault(tx, "fault_cleared", Component.BOARD, "board answering again", board)
        except StorageFull:
            self.online[board] = False  # recorded on a later good read, once commits work

    def device_failed(self, component: str, detail: str) -> None:
        """A device other than a board (the scanner, the camera) stopped working: once."""
        if component in self.devices_down:
            return
        try:
            with self.store.transaction() as tx:
                tx.audit(
                    self.now(), "system", "device_offline", detail=f"{component}: {detail}"[:200]
                )
                self._fault(tx, "fault", Component(component), detail)
        except StorageFull:
            return  # recorded when the device is found failing again, once commits work
        self.devices_down.add(component)

    def device_ok(self, component: str) -> None:
        """The device works again."""
        if component not in self.devices_down:
            return
        try:
            with self.store.transaction() as tx:
                tx.audit(self.now(), "system", "device_online", detail=component)
                self._fault(tx, "fault_cleared", Component(component), "working again")
        except StorageFull:
            return
        self.devices_down.discard(component)

    def doors_unread(self, board: str, error: BoardError) -> None:
        """A poll of one board failed: its doors went unseen for a while."""
        self.openings.read_failed(board)
        self.board_failed(board, error)

    def doors_read(self, board: str, doors: Mapping[int, bool]) -> None:
        """A poll of one board succeeded: each changed door in a transaction of its own,
        with what it completes (a pickup, a deposit) or answers (a remote open)."""
        self.board_ok(board)
        for channel, is_open in doors.items():
            number = self.by_channel.get((board, channel))
            if number is None:
                continue
            door = Door.OPEN if is_open else Door.CLOSED
            prev = self.openings.reading(number, door)
            if prev is None:
                continue
            try:
                self._observe(number, door, prev)
            except StorageFull:
                # Not durable: the door's last committed state is taken back in memory,
                # so a later poll finds the change again and commits it (its pickup,
                # alarm or reply with it) once a commit works.
                self.openings.door[number] = prev

    def _observe(self, number: int, door: Door, prev: Door) -> None:
        for attempt in (1, 2):
            try:
                with self.store.transaction() as tx:
                    self._settle(tx, self.openings.observe(tx, number, door, prev))
                return
            except StorageFull as exc:
                if attempt == 2 or not exc.released:
                    raise

    # -- reading -----------------------------------------------------------------------

    def history(self, order_id: str) -> list[dict[str, Any]]:
        """Every stage of every order with this id, oldest first (for `lockerctl history`)."""
        with self.store.read() as tx:
            rows = repo.stages(tx, order_id)
        return [{"stage": r.stage, "at": rfc3339(r.at), "detail": r.detail} for r in rows]
