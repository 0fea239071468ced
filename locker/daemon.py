"""`lockerd`: the locker daemon. Wires configuration, storage, boards and the loop."""

from __future__ import annotations

import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from drivers.registry import CATALOGUE, make_board, make_scanner
from locker.api import LocalApi
from locker.boards import Board
from locker.clock import Clock, SystemClock
from locker.codes import CodeBook, load_or_create_key
from locker.config import Config, load_config
from locker.errors import Fenced, LockerError
from locker.events import Events, LoopTurn
from locker.health import Health
from locker.instance import InstanceLock
from locker.loop import Loop, call_on
from locker.model import Component, Method
from locker.recovery import check_database_at_start
from locker.replica_targets import Replicas
from locker.retention import Retention
from locker.scanners import Scanner, ScannerEvents, ScannerUnavailable
from locker.service import Service
from locker.service_cli import service_arguments
from locker.storage import Store
from locker.sysclock import clock_synchronised
from locker.version import VERSION
from mqtt.link import PlatformLink

log = logging.getLogger("lockerd")

T = TypeVar("T")
# The exit status of a controller a newer one replaced: systemd must not restart it
# (RestartPreventExitStatus=3 in systemd/lockerd.service).
FENCED_EXIT = 3


@dataclass
class Locker:
    """Everything a running locker is made of."""

    config: Config
    store: Store
    boards: Mapping[str, Board]
    service: Service
    loop: Loop
    scanner: Scanner | None = None
    link: PlatformLink | None = None
    api: LocalApi | None = None
    instance: InstanceLock | None = None
    replica: Replicas | None = None
    fenced_by: int | None = None  # the newer epoch that took over, once the link saw it

    def start_inputs(self) -> None:
        """Start the threads that feed the loop (local API, scanner, platform link).

        The API comes first: a socket another live lockerd serves stops this one
        (AlreadyRunning) before it touches the scanner or the broker."""
        try:
            self.api = LocalApi(
                self.service,
                self.config.api.socket,
                self.loop.post_urgent,  # a person at the screen or with lockerctl waits
                self.health,
                self.diagnostics,
            )
            subscribe_api(self.service.hub, self.api)
        except OSError as exc:
            # The locker serves the platform and the scanner without it; the kiosk waits.
            log.error("local API not available on %s: %s", self.config.api.socket, exc)
        if self.replica is not None:
            self.replica.start()
        if self.scanner is not None:
            self.scanner.start()
        if self.link is not None:
            self.link.start()

    def health(self) -> dict[str, Any]:
        return self._health.health()

    def diagnostics(self) -> dict[str, Any]:
        return self._health.diagnostics()

    def heartbeat_fields(self) -> dict[str, Any]:
        return self._health.heartbeat_fields()

    @functools.cached_property
    def _health(self) -> Health:
        return Health(
            self.service,
            self.loop,
            self.boards,
            lambda: bool(self.link and self.link.connected),
            lambda: None if self.scanner is None else self.scanner.online,
            None if self.replica is None else self.replica.status,
            Path(self.config.replica.directory) if self.config.replica.directory else None,
        )

    def close(self) -> None:
        """Stop every part, each whatever the others did: the database is always closed
        (its WAL checkpointed) and the data directory released."""
        steps: list[tuple[str, Callable[[], None] | None]] = [
            ("local API", self.api.close if self.api else None),
            ("platform link", self.link.stop if self.link else None),
            ("scanner", self.scanner.close if self.scanner else None),
            ("boards' I/O threads", self.loop.close),
            *((f"board {name}", board.close) for name, board in self.boards.items()),
            # Before the database closes: a clean stop leaves the replica current.
            ("replica", self.replica.close if self.replica else None),
            ("database", self.store.close),
            ("data directory lock", self.instance.release if self.instance else None),
        ]
        for what, step in steps:
            if step is None:
                continue
            try:
                step()
            except Exception:
                log.exception("stopping the %s failed; stopping the rest", what)


class LoopThread:
    """A locker's loop in a thread of its own, for what drives a locker in-process (the
    benches, the tests); `lockerd` itself runs the loop in its main thread. Work from other
    threads goes through `call()`, since all state belongs to the loop."""

    def __init__(self, locker: Locker, turn_s: float = 0.01, inputs: bool = True) -> None:
        self.locker = locker
        self.turn_s = turn_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop")
        self._thread.start()
        if inputs:
            locker.start_inputs()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.locker.loop.run_once(self.turn_s)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run `fn` on the loop thread and return its result."""
        return call_on(self.locker.loop.post, fn, timeout)

    def stop(self) -> None:
        """Stop the loop, then close the locker (inputs, boards, database)."""
        self._stop.set()
        self._thread.join(5)
        self.locker.close()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _scanner(config: Config, service: Service, loop: Loop) -> Scanner | None:
    """The configured scanner, through the registry; a device that is not there (or whose
    library is missing) is a device fault, and the locker runs on the keypad."""
    method = Method.CAMERA if config.scanner.driver == "camera" else Method.SCANNER
    device = "camera" if method is Method.CAMERA else "scanner"

    def code(text: str) -> None:
        result = service.enter_code(text, method)
        log.info("%s: %s", device, result.summary())

    events = ScannerEvents(
        on_code=lambda text: loop.post_urgent(lambda: code(text)),
        on_offline=lambda detail: loop.post(lambda: service.device_failed(device, detail)),
        on_online=lambda: loop.post(lambda: service.device_ok(device)),
    )
    try:
        return make_scanner(config.scanner, events, config.path)
    except ScannerUnavailable as exc:
        log.error("%s: %s", exc.device, exc.detail)
        service.device_failed(exc.device, exc.detail)
        return None


def subscribe_link(hub: Events, link: PlatformLink) -> None:
    """The platform link hears of commits (state, outbox), late replies and loop turns."""
    hub.committed.subscribe(link.committed)
    hub.command_answered.subscribe(link.late_reply)
    hub.loop_turn.subscribe(link.on_turn)


def subscribe_api(hub: Events, api: LocalApi) -> None:
    """The local API's streams hear of commits, scanned codes and completed phases."""
    hub.committed.subscribe(api.changed)
    hub.code_entered.subscribe(api.code_entered)
    hub.phase_done.subscribe(api.phase_done)


def _replica(config: Config, store: Store, service: Service, hub: Events) -> Replicas | None:
    """The copies on a second medium and on the standby, told of every commit; a copy that
    fails or falls more than `max_lag_s` behind is a `replica` fault until it is current."""
    writer = Replicas.from_config(config, store.path, lambda: store.commits)
    if writer is None:
        return None
    hub.committed.subscribe(lambda commit: writer.committed())
    limit = config.replica.max_lag_s
    next_look = [0.0]

    def watch(turn: LoopTurn) -> None:
        # Once a second is enough against a limit of seconds: not on every loop turn.
        if turn.monotonic < next_look[0]:
            return
        next_look[0] = turn.monotonic + 1.0
        status = writer.status()
        if not status.ok or status.lag_s > limit:
            why = status.detail or (
                f"{status.target}: {status.lag_s:.0f} s behind (at most {limit:g} s)"
            )
            service.device_failed(Component.REPLICA.value, why)
        elif status.lag_s == 0:
            service.device_ok(Component.REPLICA.value)

    hub.loop_turn.subscribe(watch)
    return writer


def replica_limits(
    replica: Replicas | None, wait_s: float
) -> tuple[Callable[[], int | None], Callable[[], int | None]]:
    """What the platform may see: the events (by seq) and the replies (by the store's
    commit count) every replica already holds.

    A standby promoted from its copy then never numbers a new event with a seq the
    platform has seen under another event_id, and knows every reservation and code the
    platform was answered. A replica failing for longer than `wait_s` stops holding
    them back (the platform hears of pickups; the `replica` fault says the standby is
    behind)."""
    if replica is None or wait_s <= 0:
        return (lambda: None), (lambda: None)
    writer = replica

    def events() -> int | None:
        status = writer.status()
        return None if status.lag_s > wait_s else status.seq

    def replies() -> int | None:
        status = writer.status()
        return None if status.lag_s > wait_s else status.commits

    return events, replies


def _fenced(store: Store, locker_id: str) -> None:
    """A controller a newer one replaced refuses to serve, every time it is started."""
    newer = store.fenced_by()
    # Compared, not only present: a database promoted later (a higher epoch) may carry
    # the mark of an older takeover.
    if newer is not None and newer > store.epoch:
        raise Fenced(
            f"locker {locker_id} is served by a newer controller (epoch {newer}; this"
            f" database is epoch {store.epoch}), so this one does not serve. To make it"
            " the new standby, see docs/operations.md",
            newer,
        )


def build(
    config: Config, clock: Clock | None = None, boards: Mapping[str, Board] | None = None
) -> Locker:
    """Open the database and the boards and start the service (no thread is started)."""
    data_dir = config.locker.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        instance = InstanceLock(data_dir)
    except OSError as exc:
        raise LockerError(
            f"data directory {data_dir}: {exc.strerror or exc}; create it for the daemon's"
            " user (deploy/install.sh does) or set [locker] data_dir"
        ) from exc
    store: Store | None = None
    loop: Loop | None = None
    try:
        codebook = CodeBook.from_key(load_or_create_key(config.key_path))
        hub = Events()
        # A torn database is refused here, naming the newest good copy to restore.
        check_database_at_start(config)
        store = Store(data_dir / "locker.db", codebook, hub, locker_id=config.locker.id)
        _fenced(store, config.locker.id)
        if boards is None:
            boards = {b.name: make_board(b) for b in config.boards}
        service = Service(config, store, boards, clock or SystemClock())
        service.start()
        loop = Loop(service, boards, workers=True)
        # Pulses go out from each board's own I/O thread, and the board pulsed is read next.
        service.openings.send_unlock = loop.unlock_on_worker
        hub.unlock_sent.subscribe(loop.expedite)
        replica = _replica(config, store, service, hub)
        retention = Retention(store, config.retention, service.now, config.mqtt.command_max_age_s)
        hub.loop_turn.subscribe(retention.on_turn)
        link = None
        locker: Locker | None = None  # the closures below run once it is built
        if config.mqtt.enabled:

            def on_fenced(epoch: int) -> None:
                # The link has left the broker; the loop stops and lockerd exits FENCED_EXIT.
                assert locker is not None
                locker.fenced_by = epoch
                locker.loop.stop()

            def heartbeat() -> dict[str, Any]:
                return {} if locker is None else locker.heartbeat_fields()

            events, replies = replica_limits(replica, config.replica.events_wait_s)
            link = PlatformLink(
                service,
                config.mqtt,
                loop.post,
                publish_limit=events,
                health_fields=heartbeat,
                on_fenced=on_fenced,
                reply_limit=replies,
            )
            subscribe_link(hub, link)
        locker = Locker(
            config,
            store,
            boards,
            service,
            loop,
            _scanner(config, service, loop),
            link,
            instance=instance,
            replica=replica,
        )
        return locker
    except BaseException:
        # Nothing half-built stays behind holding the data directory or a board's thread.
        if loop is not None:
            loop.close()
        if store is not None:
            store.close()
        instance.release()
        raise


def main(argv: list[str] | None = None) -> int:
    args = service_arguments(
        "lockerd",
        "Pickup locker daemon",
        "check the configuration (every board's and the scanner's options too) and exit",
        argv,
    )
    try:
        # The registry checks each driver's own keys now, before any port is opened.
        config = load_config(Path(args.config), CATALOGUE)
        if args.check:
            print(f"{args.config}: configuration OK")  # noqa: T201 - the operator's answer
            return 0
        locker = build(config)
    except Fenced as exc:
        print(f"lockerd: {exc}", file=sys.stderr)  # noqa: T201 - why it does not serve
        return FENCED_EXIT
    except LockerError as exc:
        print(f"lockerd: {exc}", file=sys.stderr)  # noqa: T201 - start-up failure for the operator
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        locker.loop.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "locker %s started: %s on %s, version %s",
        config.locker.id,
        plural(len(config.compartments), "compartment"),
        plural(len(config.boards), "board"),
        VERSION,
    )
    if clock_synchronised() is False:
        log.warning(
            "the system clock is not synchronised: deadlines and the age of platform"
            " commands depend on it (check NTP / systemd-timesyncd)"
        )
    try:
        locker.start_inputs()
        locker.loop.run_forever()
    except LockerError as exc:
        log.error("%s", exc)
        return 2
    finally:
        locker.close()
        log.info("stopped (deepest work queue: %d)", locker.loop.max_backlog)
    return 0 if locker.fenced_by is None else FENCED_EXIT


if __name__ == "__main__":
    sys.exit(main())
