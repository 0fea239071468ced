"""`locker-standby`: the spare controller receiving the serving controller's copies.

It reads the same configuration file as lockerd ([locker] id and data_dir, [standby])
and runs `StandbyServer` until SIGTERM or SIGINT. Each stored copy is described in
`{replica_dir}/received.json` (time, sender, seq, epoch) for the operator and for
`lockerctl promote`.

A controller that serves must never also receive: two controllers would then each
believe they hold the locker's data. So locker-standby holds the same data-directory
lock as lockerd (`locker/instance.py`) for as long as it runs: it refuses to start
while a lockerd holds it, and a lockerd refuses to start while it runs. Promotion
therefore starts with stopping locker-standby.
"""

from __future__ import annotations

import logging
import signal
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from locker.clock import rfc3339
from locker.config import Config, load_config
from locker.config_reader import Reader
from locker.config_standby import host_port
from locker.errors import LockerError
from locker.instance import AlreadyRunning, InstanceLock
from locker.sdnotify import Notifier, watchdog_interval_s
from locker.service_cli import service_arguments
from locker.standby import read_secret
from locker.standby_server import Received, StandbyServer, write_received
from locker.version import VERSION

log = logging.getLogger("locker-standby")

# Copies come only after commits: a quiet locker sends none for hours. A copy after a
# silence this long is worth a line at INFO (the operator sees copies resumed).
GAP_S = 300.0
IDLE_WAKE_S = 3600.0  # the main thread's wait when there is no watchdog to ping


class CannotListen(LockerError):
    """The address is taken or not (yet) this host's: worth a restart, unlike a refusal."""


@dataclass(frozen=True)
class Settings:
    """What the receiver needs, read and checked from the configuration."""

    locker_id: str
    host: str
    port: int
    secret: bytes
    cert_file: Path
    key_file: Path
    data_dir: Path
    replica_dir: Path


def settings(config: Config) -> Settings:
    """The receiver's settings, or a LockerError naming the key that stops it."""
    section = config.standby
    if not section.listen:
        raise LockerError(
            f"{config.path}: [standby] listen is empty: this controller is not a standby"
            " (set listen to the host:port the serving controller's [replica] standby names)"
        )
    host, port = host_port(Reader(config.path, "[standby]", {}), "listen", section.listen)
    cert_file, key_file = Path(section.cert_file), Path(section.key_file)
    for key, path in (("cert_file", cert_file), ("key_file", key_file)):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise LockerError(f"[standby] {key} {path}: cannot read it: {exc.strerror}") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        raise LockerError(
            f"[standby] cert_file {cert_file} and key_file {key_file}: not a certificate"
            f" and its private key: {exc.reason or exc}"
        ) from None
    secret = read_secret(Path(section.secret_file), "[standby] secret_file")
    return Settings(
        config.locker.id,
        host,
        port,
        secret,
        cert_file,
        key_file,
        config.locker.data_dir,
        config.standby_replica_dir,
    )


def hold_data_dir(data_dir: Path) -> InstanceLock:
    """lockerd's own lock on the data directory, or a LockerError when someone holds it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return InstanceLock(data_dir, holder="locker-standby")
    except AlreadyRunning as exc:
        raise LockerError(
            f"{exc}. A controller that serves must not also receive copies: this one is"
            " the standby only once its lockerd is stopped (and disabled)"
        ) from None
    except OSError as exc:
        raise LockerError(
            f"data directory {data_dir}: {exc.strerror or exc}; create it for the daemon's"
            " user (deploy/install.sh does) or set [locker] data_dir"
        ) from None


class Journal:
    """What the operator learns of received copies: the log, received.json, systemd's
    status line. Called from the connection's thread."""

    def __init__(self, replica_dir: Path, notifier: Notifier) -> None:
        self.replica_dir = replica_dir
        self.notifier = notifier
        self._last: Received | None = None

    def __call__(self, received: Received) -> None:
        last, self._last = self._last, received
        what = f"seq {received.seq}, epoch {received.epoch}, {received.raw_length} bytes"
        if last is None:
            log.info("first copy from %s: %s", received.sender, what)
        elif last.sender != received.sender:
            log.info(
                "copies now come from %s (were from %s): %s", received.sender, last.sender, what
            )
        elif received.at - last.at > GAP_S:
            log.info("a copy after %.0f s without one: %s", received.at - last.at, what)
        else:
            log.debug("copy from %s stored: %s", received.sender, what)
        if last is not None and received.seq < last.seq:
            log.warning(
                "the copy from %s holds seq %d, below the previous copy's %d: was the serving"
                " controller's database restored from an older copy?",
                received.sender,
                received.seq,
                last.seq,
            )
        try:
            write_received(self.replica_dir, received)
        except OSError as exc:
            # The copy itself is stored; only its description is missing.
            log.warning("cannot write %s/received.json: %s", self.replica_dir, exc)
        self.notifier.notify(
            f"STATUS=last copy {rfc3339(received.at)} from {received.sender}: {what}"
        )


def serve(config: Config, stop: threading.Event, notifier: Notifier) -> None:
    """Receive copies until `stop` is set; a LockerError when it cannot start."""
    s = settings(config)
    instance = hold_data_dir(s.data_dir)
    try:
        journal = Journal(s.replica_dir, notifier)
        try:
            server = StandbyServer(
                s.host,
                s.port,
                s.locker_id,
                s.secret,
                s.cert_file,
                s.key_file,
                s.replica_dir,
                on_received=journal,
            )
        except OSError as exc:
            raise CannotListen(
                f"[standby] listen {config.standby.listen}: cannot listen: {exc.strerror or exc}"
            ) from None
        server.start()
        log.info(
            "standby for locker %s listening on %s, copies in %s, version %s",
            s.locker_id,
            config.standby.listen,
            s.replica_dir,
            VERSION,
        )
        notifier.notify("READY=1")
        interval = watchdog_interval_s()
        try:
            while not stop.wait(interval or IDLE_WAKE_S):
                if interval is not None and server.alive:
                    notifier.notify("WATCHDOG=1")
        finally:
            notifier.notify("STOPPING=1")
            server.close()
    finally:
        instance.release()


def main(argv: list[str] | None = None) -> int:
    args = service_arguments(
        "locker-standby",
        "Receive the serving controller's copies of the database on the spare"
        " controller ([standby] of the configuration)",
        "check the configuration, the certificate, its key and the secret, and exit",
        argv,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    notifier = Notifier()
    try:
        config = load_config(Path(args.config))
        if args.check:
            settings(config)
            print(f"{args.config}: standby configuration OK")  # noqa: T201 - the operator's answer
            return 0
        serve(config, stop, notifier)
    except CannotListen as exc:
        print(f"locker-standby: {exc}", file=sys.stderr)  # noqa: T201 - why it did not start
        return 1
    except LockerError as exc:
        print(f"locker-standby: {exc}", file=sys.stderr)  # noqa: T201 - why it did not start
        return 2
    finally:
        notifier.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
