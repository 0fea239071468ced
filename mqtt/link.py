"""The platform link: paho-mqtt (MQTT 5) as a thin adapter around the service.

paho's network thread only receives; everything that reads or changes state
is posted to the daemon's loop. The outbox pump publishes stored events in
`seq` order with QoS 1, a bounded number in flight, and deletes an event only
when the broker's PUBACK for it arrives — so an event survives disconnects,
restarts and power cuts until the broker has it.

The same holds the other way: a command is acknowledged to the broker
(`manual_ack`) only once its transaction and stored reply have committed, so a
command the locker received but had not yet handled when it died is delivered
again; its `command_id` keeps it from acting twice. The broker keeps at most
`RECEIVE_MAXIMUM` unacknowledged commands in flight to us, which is the
back-pressure that keeps a flood out of memory.

Commands that arrive together share one commit (group commit): each runs in a
savepoint of its own, and the replies and acknowledgements of all of them go
out after the one fsync. A durable reservation costs a flush of the medium;
sharing it is what lets a busy platform reserve faster than the card flushes.

Fencing (contract v1.1, standby). Every message carries this database's epoch;
a standby that takes over serves one higher. Both controllers of a locker
connect with the same client id (`locker-{id}`, the broker's ACL allows no
other), so an old controller that comes back takes the session over from the
one serving — for a moment the broker hands *it* the queued commands. Hence,
on every connect, before anything is published or any command run, the link
reads the locker's own retained `status`: an epoch higher than ours means
another controller took over, and this one leaves at once — without
acknowledging a command (they stay in the session for the real controller),
without a goodbye (a clean DISCONNECT: no Last Will, the newer retained status
stays), and never serves again.

Events may be held back (`publish_limit`) until the replica holds them, so a
standby promoted from the replica never reuses a `seq` the platform has seen.
Replies likewise (`reply_limit`): a reservation, a new code or an open answered
to the platform is on the replica first, so the standby knows every answer the
platform holds.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sqlite3
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from locker import repo
from locker.clock import rfc3339
from locker.commands import (
    MAX_COMMAND_ID,
    MAX_PAYLOAD,
    CommandProcessor,
    Reply,
    error_reply,
)
from locker.config import MqttSection
from locker.errors import LockerError
from locker.events import CommandAnswered, Committed, LoopTurn
from locker.model import ErrorCode
from locker.service import Service
from locker.storage import StorageError, StorageFull
from locker.version import VERSION
from mqtt.outage import OutageLog
from mqtt.schemas import command_problem
from mqtt.topics import Topics

log = logging.getLogger(__name__)

WINDOW = 100  # events in flight at once
RECEIVE_MAXIMUM = 50  # commands the broker may have in flight to us, unacknowledged
# The broker must not send us anything larger (MQTT 5 Maximum Packet Size: it drops such a
# message instead); between MAX_PAYLOAD and this, a command is refused unread.
MAX_PACKET = 4 * MAX_PAYLOAD
STATE_DEBOUNCE_S = 1.0
# Commands answered under one commit at most; a batch holds the loop for about this many
# commands' work (well under a millisecond each) plus one flush.
MAX_BATCH = 32
# After the SUBACK of the locker's own status topic, how long to wait for its retained
# message before taking it that there is none. Mosquitto sends the retained message
# right behind the SUBACK, so this only runs out on a broker with no retained status.
SETTLE_S = 1.5

Post = Callable[[Callable[[], None]], None]


class LinkError(LockerError):
    """The MQTT settings cannot be used (a missing password or CA file)."""


def _read_password(path: Path) -> str:
    # Like the code key: a password others can read is a locker others can pose as
    # (the kiosk's user shares lockerd's group), so it is refused before first use.
    # The mode is read from the open file, so the file checked is the file read.
    try:
        with path.open(encoding="utf-8") as f:
            mode = os.fstat(f.fileno()).st_mode & 0o777
            if mode & 0o077:
                raise LinkError(
                    f"[mqtt] password_file: {path} is readable or writable by others"
                    f" (mode {mode:o}); run chmod 600 {path.absolute()}"
                    " (its owner the user lockerd runs as)"
                )
            return f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise LinkError(f"[mqtt] password_file: {exc}") from exc


@dataclass(frozen=True)
class _Inbound:
    """A command as received, waiting for the loop."""

    name: str
    payload: bytes
    response: str | None
    correlation: bytes | None
    ack: Callable[[], None]
    oversized: bool = False  # refused unread (its payload is not kept)


@dataclass(frozen=True)
class _Outbound:
    """A reply waiting for the link to serve (connected, and not fenced)."""

    topic: str
    payload: bytes
    properties: Properties | None = None


def _epoch_of(payload: bytes) -> int:
    """The epoch a status message names (1 when it names none: a v1.0 controller)."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return 1
    epoch = data.get("epoch") if isinstance(data, dict) else None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 1


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class PlatformLink:
    """Connects the locker to the platform's broker, to the letter of contract v1."""

    def __init__(
        self,
        service: Service,
        settings: MqttSection,
        post: Post,
        tcp_nodelay: bool = True,
        *,
        publish_limit: Callable[[], int | None] | None = None,
        health_fields: Callable[[], Mapping[str, Any]] | None = None,
        on_fenced: Callable[[int], None] | None = None,
        reply_limit: Callable[[], int | None] | None = None,
    ) -> None:
        """`publish_limit`: the highest event seq that may be published (None: any), asked
        on every loop turn, so it must be cheap; `health_fields`: added to each heartbeat;
        `on_fenced`: called on the loop with the newer epoch when another controller has
        taken this locker over (the link has left the broker by then); `reply_limit`: how
        many of the store's commits the replica holds (None: any), a reply written by a
        later commit waits for it."""
        self.svc = service
        self.epoch = service.store.epoch
        self.publish_limit = publish_limit
        self.reply_limit = reply_limit
        # Replies (with their command's acknowledgement) waiting for the replica to hold
        # the commit that wrote them: (that commit's number, what sends them), in order.
        self._for_replica: deque[tuple[int, Callable[[], None]]] = deque()
        self.health_fields = health_fields
        self.on_fenced = on_fenced
        self.fenced_by: int | None = None
        self.tcp_nodelay = tcp_nodelay
        self.settings = settings
        self.post = post
        self.topics = Topics(settings.topic_prefix, service.locker_id)
        self.commands = CommandProcessor(service)
        self.started = time.monotonic()
        self.connected = False
        self._inflight: dict[int, int] = {}  # paho mid -> seq
        self._acked_seqs: list[int] = []
        self._cursor = 0  # highest seq handed to paho in this connection
        self._looked_to = 0.0  # the publish limit up to which the store was last read
        self._clearing: int | None = None  # the connection waiting for its status check
        self._settle_at: float | None = None
        self._status_mid: int | None = None  # the status SUBSCRIBE's packet id (paho's thread)
        self._held_out: list[_Outbound] = []  # replies waiting for the link to serve
        self._state_dirty = True
        self._state_at = 0.0
        self._state_last: str = ""
        self._heartbeat_at = 0.0
        self._responses: dict[str, tuple[str, bytes | None]] = {}
        self._connection = 0  # counts connections (paho's thread writes, the loop reads)
        # Commands received and not yet run: paho's thread appends, the loop drains.
        self._inbox: deque[_Inbound] = deque()
        self._inbox_lock = threading.Lock()
        self._drain_posted = False
        self.outage = OutageLog(log, f"{settings.host}:{settings.port}", time.monotonic)
        self.client = self._make_client()

    # -- the client ------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"locker-{self.svc.locker_id}",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if s.username:
            password = None
            if s.password_file:
                password = _read_password(Path(s.password_file))
            client.username_pw_set(s.username, password)
        if s.tls:
            try:
                client.tls_set(ca_certs=s.ca_file or None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ssl.SSLError) as exc:
                raise LinkError(f"[mqtt] ca_file: {exc}") from exc
        client.will_set(self.topics.status, _json(self.offline()), qos=1, retain=True)
        client.max_inflight_messages_set(WINDOW)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_connect_fail = self._on_connect_fail
        return client

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        props.MaximumPacketSize = MAX_PACKET
        self.client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=30,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def stop(self) -> None:
        """A clean goodbye: the retained status says offline (no Last Will on a clean stop).
        A fenced link says nothing: the retained status is the newer controller's."""
        if self.connected and self.fenced_by is None and self.client.is_connected():
            info = self.client.publish(
                self.topics.status, _json(self.offline()), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError) as exc:
                # The broker went away meanwhile: the Last Will says offline for us.
                log.info("no goodbye to the broker: %s", exc)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # A request/reply over MQTT stalls ~40 ms on Nagle + delayed ACK without this
        # (the flag exists so the benchmark can show the difference).
        if self.tcp_nodelay and isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- paho's thread: hand everything to the loop ----------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            self.outage.failed(f"the broker refused the connection ({reason})")
            return
        if self.fenced_by is not None:
            client.disconnect()  # a reconnect already under way when the link was fenced
            return
        self.outage.connected()
        # Before any message of this connection is handed over: an acknowledgement meant
        # for the last connection's packet id must not acknowledge this one's.
        self._connection += 1
        connection = self._connection
        # paho would resend what it still holds as soon as this returns, before we know
        # whether another controller serves this locker: take it back first.
        held = _take_queued(client, self._is_reply)
        # QoS 0: nothing to acknowledge, and nothing queued for us while away (only the
        # retained message matters). Asked first, so its answer comes first.
        self._status_mid = client.subscribe(self.topics.status, qos=0)[1]
        client.subscribe(self.topics.commands, qos=1)
        self.post(lambda: self._connected(connection, held))

    def _is_reply(self, topic: str) -> bool:
        """A reply (on `reply` or a response topic): none of the locker's other topics."""
        t = self.topics
        return topic not in (t.status, t.state, t.heartbeat) and not topic.startswith(t.event(""))

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        if mid == self._status_mid:
            connection = self._connection
            self.post(lambda: self._subscribed(connection))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this inside its `except OSError` around the connect: the error in
        # flight is the reason (refused, does not resolve, unreachable, TLS).
        exc = sys.exc_info()[1]
        self.outage.failed(str(exc) if exc is not None else "connection failed")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self.post(lambda: self._disconnected(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        ack = functools.partial(self._ack, msg.mid, msg.qos, self._connection)
        if msg.topic == self.topics.status:
            # Never a command. Our own echo names our epoch, so it fences nothing.
            epoch, connection = _epoch_of(bytes(msg.payload)), self._connection
            self.post(lambda: self._status_seen(epoch, connection))
            if msg.qos:
                self.post(ack)
            return
        name = self.topics.command_name(msg.topic)
        if name is None:
            self.post(ack)
            return
        props = getattr(msg, "properties", None)
        response = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        if len(msg.payload) > MAX_PAYLOAD:
            # Refused unread: parsing megabytes of JSON is the attack.
            self._receive(_Inbound(name, b"", response, correlation, ack, oversized=True))
            return
        self._receive(_Inbound(name, bytes(msg.payload), response, correlation, ack))

    def _receive(self, item: _Inbound) -> None:
        with self._inbox_lock:
            self._inbox.append(item)
            if self._drain_posted:
                return  # the drain already on the loop's queue takes this one too
            self._drain_posted = True
        self.post(self._drain)

    def _ack(self, mid: int, qos: int, connection: int) -> None:
        """Acknowledge a command to the broker, once what it did has committed."""
        if qos and connection == self._connection and self.fenced_by is None:
            self.client.ack(mid, qos)
        # Otherwise the connection it came on is gone: the broker delivers it again (and
        # its command_id answers it from the stored reply).

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        self.post(lambda: self._acked(mid))

    # -- the loop's side -------------------------------------------------------------

    def _connected(self, connection: int, held: list[_Outbound]) -> None:
        """Connected: nothing goes out until the locker's retained status is read."""
        self._held_out.extend(held)
        if self.fenced_by is not None or connection != self._connection:
            return
        log.info("connected to %s:%d", self.settings.host, self.settings.port)
        self.connected = False
        self._clearing = connection
        self._settle_at = None  # set by the SUBACK

    def _subscribed(self, connection: int) -> None:
        if connection == self._clearing:
            self._settle_at = time.monotonic() + SETTLE_S

    def _status_seen(self, epoch: int, connection: int) -> None:
        """A status of this locker, retained or live: a newer controller fences us."""
        if self.fenced_by is not None or connection != self._connection:
            return
        if epoch > self.epoch:
            self._fence(epoch)
        elif connection == self._clearing:
            self._serve()

    def _serve(self) -> None:
        """No newer controller serves this locker: announce ourselves and start serving."""
        self._clearing = self._settle_at = None
        self.connected = True
        self._publish(self.topics.status, self.birth(), retain=True)
        held, self._held_out = self._held_out, []
        for out in held:
            self._send(out)
        # Anything not acknowledged goes again, in seq order; duplicates are harmless
        # (the platform de-duplicates by event_id), losses are not.
        self._inflight.clear()
        self._cursor = 0
        self._looked_to = 0
        self._state_dirty = True
        self._state_last = ""  # the retained state is published again on every connect
        self.pump()
        with self._inbox_lock:  # the commands that came meanwhile
            if not self._inbox or self._drain_posted:
                return
            self._drain_posted = True
        self.post(self._drain)

    def _fence(self, epoch: int) -> None:
        """Another controller serves this locker: leave the broker, and never serve again."""
        self.fenced_by = epoch
        self.connected = False
        self._clearing = self._settle_at = None
        with self._inbox_lock:
            # Never acknowledged: the broker keeps them for the controller that serves.
            self._inbox.clear()
        self._held_out.clear()
        self._responses.clear()
        # DISCONNECT with reason 0: the broker drops our Last Will, so the retained
        # status stays the newer controller's.
        self.client.disconnect()
        log.error(
            "controller epoch %d took over this locker (we are epoch %d): this controller"
            " stops serving; see docs/operations.md",
            epoch,
            self.epoch,
        )
        try:
            self.svc.store.mark_fenced(epoch, self.svc.now())
        except (StorageError, StorageFull, sqlite3.Error) as exc:
            log.error("could not record in the database that epoch %d took over: %s", epoch, exc)
        if self.on_fenced is not None:
            self.on_fenced(epoch)

    def _disconnected(self, reason: ReasonCode) -> None:
        if self.connected:
            log.warning("disconnected from the broker (%s); reconnecting", reason)
        self.connected = False
        self._clearing = self._settle_at = None

    def _drain(self) -> None:
        """Answer the commands received so far, up to MAX_BATCH of them under one commit."""
        with self._inbox_lock:
            if not self.connected:  # held until the status check clears the link
                self._drain_posted = False
                return
            batch = [self._inbox.popleft() for _ in range(min(MAX_BATCH, len(self._inbox)))]
            more = bool(self._inbox)
            self._drain_posted = more
        if more:
            self.post(self._drain)  # behind whatever else waits: the doors keep their turn
        if len(batch) == 1:
            self._command(batch[0], lambda fn: fn())
            return
        try:
            with self.svc.store.transaction() as tx:
                for item in batch:
                    self._command(item, tx.after_commit)
        except Exception as exc:
            # The shared commit failed, so none of it happened and no reply went out:
            # each command runs again alone, as if it had come by itself.
            log.warning("a commit shared by %d commands failed (%s); one by one", len(batch), exc)
            for item in batch:
                self._command(item, lambda fn: fn())

    def _command(self, item: _Inbound, then: Callable[[Callable[[], None]], None]) -> None:
        """Answer one command; `then` runs its reply and acknowledgement once it commits."""
        # answer() records the command's effect and its stored (or pending) reply; the
        # reply goes out before the acknowledgement, so a locker that dies in between has
        # the command delivered again and answers it from the stored reply.
        if item.oversized:
            reply: Reply | None = error_reply(
                None, ErrorCode.INVALID_PAYLOAD, f"payload is larger than {MAX_PAYLOAD // 1024} KiB"
            )
        else:
            reply = self.answer(item.name, item.payload)
        if reply is None:  # answered later (a remote open waits for the door)
            try:
                command_id = json.loads(item.payload)["command_id"]
            except (ValueError, KeyError, TypeError):
                then(item.ack)
                return
            if item.response:
                self._responses[command_id] = (item.response, item.correlation)
            then(item.ack)
            return

        def answered() -> None:
            self._send_reply(reply, item.response, item.correlation)
            item.ack()

        then(lambda: self._once_replicated(answered))

    def answer(self, name: str, payload: bytes) -> Reply | None:
        """The reply to one command as received (None: it comes when the door moves)."""
        try:
            return self._schema_refusal(name, payload) or self.commands.handle(name, payload)
        except Exception as exc:  # a bug must still get an answer, and not kill the loop
            log.exception("command %s failed", name)
            return error_reply(_command_id(payload), ErrorCode.INTERNAL_ERROR, str(exc)[:200])

    @staticmethod
    def _schema_refusal(name: str, payload: bytes) -> Reply | None:
        """INVALID_PAYLOAD naming the field, for a command its schema refuses."""
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None  # the command processor answers unreadable payloads
        if not isinstance(data, dict) or len(payload) > MAX_PAYLOAD:
            return None
        problem = command_problem(name, data)
        if problem is None:
            return None
        command_id = data.get("command_id")
        if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_COMMAND_ID:
            command_id = None
        return error_reply(command_id, ErrorCode.INVALID_PAYLOAD, problem)

    def late_reply(self, answered: CommandAnswered) -> None:
        """The reply of a command answered when its door moved (a remote open)."""
        response, correlation = self._responses.pop(answered.command_id, (None, None))
        self._once_replicated(lambda: self._send_reply(answered.reply, response, correlation))

    def _replica_holds(self) -> float:
        limit = None if self.reply_limit is None else self.reply_limit()
        return float("inf") if limit is None else limit

    def _once_replicated(self, send: Callable[[], None]) -> None:
        """Send a reply once the replica holds what the store has committed so far (the
        commit that wrote it among them); at once without a replica to wait for."""
        needed = self.svc.store.commits
        if not self._for_replica and self._replica_holds() >= needed:
            send()
            return
        self._for_replica.append((needed, send))

    def _release_replies(self) -> None:
        if not self._for_replica:
            return
        holds = self._replica_holds()
        while self._for_replica and self._for_replica[0][0] <= holds:
            _, send = self._for_replica.popleft()
            send()

    def _send_reply(self, reply: Reply, response: str | None, correlation: bytes | None) -> None:
        self._send(_Outbound(self.topics.reply, _json(reply)))
        if response:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if correlation is not None:
                props.CorrelationData = correlation
            self._send(_Outbound(response, _json(reply), props))

    def _send(self, out: _Outbound) -> None:
        """A reply: now while serving, else once the link serves (never once fenced)."""
        if self.fenced_by is not None:
            return
        if not self.connected:
            self._held_out.append(out)
            return
        self.client.publish(out.topic, out.payload, qos=1, properties=out.properties)

    def _publish(self, topic: str, payload: Any, retain: bool = False, qos: int = 1) -> None:
        if self.connected and self.fenced_by is None:
            self.client.publish(topic, _json(payload), qos=qos, retain=retain)

    def _acked(self, mid: int) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is not None:
            self._acked_seqs.append(seq)

    def _flush_acks(self) -> None:
        # One transaction for every PUBACK of a loop turn: a drain after an outage is
        # bounded by the broker, not by one fsync per event.
        if self._acked_seqs and self.svc.store.fault is None:
            # (While commits fail they wait: a delete frees no space on the medium, and
            # the reserve is kept for the doors. The broker has them; resent after a
            # reconnect they are duplicates the platform drops by event_id.)
            seqs, self._acked_seqs = self._acked_seqs, []
            try:
                self.svc.store.delete_events(seqs)
            except StorageFull:
                self._acked_seqs[:0] = seqs
                return
            self.pump()

    def committed(self, commit: Committed) -> None:
        """A change committed: the state is due again, new events go out."""
        self._state_dirty = True
        if commit.event_types:
            self.pump()

    def _limit(self) -> float:
        limit = None if self.publish_limit is None else self.publish_limit()
        return float("inf") if limit is None else limit

    def pump(self) -> None:
        """Hand the next stored events to paho, in seq order, within the window, up to the
        publish limit."""
        if not self.connected:
            return
        room = WINDOW - len(self._inflight)
        limit = self._limit()
        if room <= 0 or limit <= self._cursor:
            return
        events = self.svc.store.events(after_seq=self._cursor, limit=room)
        for ev in events:
            if ev.seq > limit:
                break  # held until the replica has it
            payload = {**ev.payload(self.svc.locker_id), "epoch": self.epoch}
            info = self.client.publish(self.topics.event(ev.type), _json(payload), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # the connection dropped: the next connect starts over
            self._inflight[info.mid] = ev.seq
            self._cursor = ev.seq
        else:
            if len(events) == room:
                return  # the window is full: PUBACKs pump again
        self._looked_to = limit

    def on_turn(self, turn: LoopTurn) -> None:
        """The loop's turn ended: the link's periodic work."""
        self.tick()

    def tick(self) -> None:
        """Called every loop turn: acknowledged events, the status check, debounced state,
        held events the limit now releases, heartbeat."""
        self._flush_acks()
        self._release_replies()
        now = time.monotonic()
        if self._clearing is not None and self._settle_at is not None and now >= self._settle_at:
            self._serve()  # no retained status came: no other controller has served
        if not self.connected:
            return
        if self.publish_limit is not None and self._limit() > self._looked_to:
            self.pump()  # the replica caught up: held events go out without a new commit
        if self._state_dirty and now - self._state_at >= STATE_DEBOUNCE_S:
            self._state_dirty = False
            snapshot = self.svc.snapshot()
            content = json.dumps(snapshot["compartments"]) + json.dumps(snapshot["free"])
            if content != self._state_last:  # a commit that changed no compartment
                self._state_last = content
                self._state_at = now
                self._publish(self.topics.state, snapshot, retain=True)
        if now - self._heartbeat_at >= self.settings.heartbeat_s:
            self._heartbeat_at = now
            self._publish(self.topics.heartbeat, self.heartbeat(), qos=0)

    def birth(self) -> dict[str, Any]:
        """The retained `status` while online (the Last Will replaces it)."""
        return {
            "online": True,
            "version": VERSION,
            "since": rfc3339(self.svc.now()),
            "epoch": self.epoch,
        }

    def offline(self) -> dict[str, Any]:
        """The retained `status` once gone: the Last Will and the clean goodbye."""
        return {"online": False, "epoch": self.epoch}

    def heartbeat(self) -> dict[str, Any]:
        with self.svc.store.read() as tx:
            boards = [
                {"name": r.name, "online": r.online, "errors": r.errors} for r in repo.boards(tx)
            ]
        beat = {
            "at": rfc3339(self.svc.now()),
            "uptime_s": int(time.monotonic() - self.started),
            "boards": boards,
            "outbox": self.svc.store.outbox_depth(),
            "version": VERSION,
            "epoch": self.epoch,
        }
        if self.health_fields is not None:
            # Added, never replacing a field of contract v1.
            beat.update({k: v for k, v in self.health_fields().items() if k not in beat})
        return beat


def _command_id(payload: bytes) -> str | None:
    """The command's `command_id` when it can be read (for a reply to an unexpected
    failure), else None."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    command_id = data.get("command_id") if isinstance(data, dict) else None
    if isinstance(command_id, str) and 0 < len(command_id) <= MAX_COMMAND_ID:
        try:
            command_id.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return command_id
    return None


def _take_queued(client: mqtt.Client, keep: Callable[[str], bool]) -> list[_Outbound]:
    """Take back what paho holds to resend on the new connection; return the replies.

    paho 2.2 (pinned) resends its queued and unacknowledged publishes right after
    `on_connect`, which would put them on the wire before the status check. Events need
    no resend (the outbox pump starts over from the store), status, state and heartbeat
    are published afresh; replies are kept and sent once the link serves.
    """
    with client._out_message_mutex:
        queued = list(client._out_messages.values())
        client._out_messages.clear()
        client._inflight_messages = 0
    return [
        _Outbound(m.topic, bytes(m.payload), getattr(m, "properties", None))
        for m in queued
        if m.qos and keep(m.topic)
    ]
