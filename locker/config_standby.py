"""The configuration of what keeps a locker's data alive: the replica, the standby, retention.

[replica] is read on the controller that serves (where copies go), [standby] on the
spare controller (where they arrive), [retention] wherever lockerd serves. One file
may hold all three: the same configuration serves on either controller, whichever
role it has today.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from locker.config_reader import Reader, names, resolve


@dataclass(frozen=True)
class ReplicaSection:
    directory: str = ""  # a directory on another medium (a USB stick); "" = none
    standby: str = ""  # host:port of the standby controller; "" = none
    ca_file: str = ""  # the CA that signed the standby's certificate (with `standby`)
    secret_file: str = ""  # the secret the standby shares (with `standby`)
    max_lag_s: float = 10.0  # behind by more than this: a `replica` fault until it catches up
    # How long an event waits to be on the replica before it goes to the platform anyway
    # (so a standby never reuses a seq the platform has seen); 0 = events never wait.
    events_wait_s: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.directory or self.standby)


@dataclass(frozen=True)
class StandbySection:
    listen: str = ""  # host:port this spare controller receives copies on; "" = none
    cert_file: str = ""
    key_file: str = ""
    secret_file: str = ""
    replica_dir: str = ""  # "" = {data_dir}/replica


@dataclass(frozen=True)
class RetentionSection:
    keep_days: float = 180.0  # finished orders, audit rows and stored replies older: deleted
    batch: int = 200  # rows deleted at most per step, so a step never holds the loop long
    every_s: float = 60.0  # a step at most this often, when the loop has nothing else to do


def host_port(r: Reader, key: str, value: str) -> tuple[str, int]:
    """ "host:port" (an IPv6 host in brackets) as a pair, or the key's error."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise r.fail(key, f'"{value}" must be host:port')
    return host, int(port)


def read_replica(r: Reader, base: Path) -> ReplicaSection:
    r.check_keys(names(ReplicaSection))
    d = ReplicaSection()
    section = ReplicaSection(
        directory=resolve(base, r.get_str("directory", d.directory)),
        standby=r.get_str("standby", d.standby),
        ca_file=resolve(base, r.get_str("ca_file", d.ca_file)),
        secret_file=resolve(base, r.get_str("secret_file", d.secret_file)),
        max_lag_s=r.get_float("max_lag_s", d.max_lag_s, positive=True, hi=86400),
        events_wait_s=r.get_float("events_wait_s", d.events_wait_s, lo=0, hi=86400),
    )
    if section.standby:
        host_port(r, "standby", section.standby)
        for key in ("ca_file", "secret_file"):
            if not getattr(section, key):
                raise r.fail(key, "required with standby (the standby is reached over TLS)")
    return section


def read_standby(r: Reader, base: Path) -> StandbySection:
    r.check_keys(names(StandbySection))
    d = StandbySection()
    section = StandbySection(
        listen=r.get_str("listen", d.listen),
        cert_file=resolve(base, r.get_str("cert_file", d.cert_file)),
        key_file=resolve(base, r.get_str("key_file", d.key_file)),
        secret_file=resolve(base, r.get_str("secret_file", d.secret_file)),
        replica_dir=resolve(base, r.get_str("replica_dir", d.replica_dir)),
    )
    if section.listen:
        host_port(r, "listen", section.listen)
        for key in ("cert_file", "key_file", "secret_file"):
            if not getattr(section, key):
                raise r.fail(key, "required with listen (copies arrive over TLS)")
    return section


def read_retention(r: Reader) -> RetentionSection:
    r.check_keys(names(RetentionSection))
    d = RetentionSection()
    return RetentionSection(
        keep_days=r.get_float("keep_days", d.keep_days, positive=True, hi=3650),
        batch=r.get_int("batch", d.batch, 1, 10_000),
        every_s=r.get_float("every_s", d.every_s, positive=True, hi=86400),
    )
