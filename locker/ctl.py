"""`lockerctl`: the maintenance staff's command line, a client of lockerd's local API.

Everything it reads and does goes through the running daemon's socket, so a member
of the locker group can use it without any access to the database, the code key or
the PIN hash, and nothing here can create or migrate the daemon's files. With lockerd not
running it says so and stops (exit 2): the database alone would show a past that looks
like the present. The local steps are `set-pin`, which writes the PIN file a daemon
needs before anyone can log in to it, and the work on database files that must be done
with lockerd stopped (`verify`, `restore`, `promote`: `locker/recovery.py`, run by root
or the locker user, who own the data directory). Every read takes `--json`
(the API's result, for scripts). It never prints a code: the daemon masks them —
except `lockerctl qr ORDER`, whose purpose is to hand a customer a new pickup code.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locker.clock import rfc3339
from locker.config import DEFAULT_CONFIG, Config, load_config
from locker.errors import LockerError
from locker.pin import write_pin
from locker.qr import save_png, terminal
from locker.recovery import (
    DB_NAME,
    START_HINT,
    Installed,
    NotInstalled,
    describe,
    promote,
    restore,
    verify,
)

BACKUP_WAIT_S = 3600.0  # a backup to a slow stick of a big database may take minutes


class DaemonUnreachable(LockerError):
    """Nothing answers on the local API socket (the message says why)."""


class Refused(LockerError):
    """lockerd answered and refused the request (a wrong PIN, no such compartment)."""


def _ask_api(socket_path: str, request: dict[str, Any], timeout: float = 30) -> Any:
    """One request to the running daemon over its local API; the result of a reply that
    is ok, Refused with the daemon's error, or DaemonUnreachable when none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonUnreachable(
                f"lockerd is not running (nothing listens on {socket_path})"
            ) from None
        except PermissionError:
            raise DaemonUnreachable(
                f"cannot reach lockerd: {socket_path}: permission denied"
                " (run as user locker or a member of its group)"
            ) from None
        except OSError as exc:
            raise DaemonUnreachable(f"lockerd is not answering on {socket_path} ({exc})") from None
        try:
            sock.sendall(json.dumps({"id": 1, **request}).encode() + b"\n")
            with sock.makefile("rb") as f:
                line = f.readline()
        except OSError as exc:  # a time-out too: a daemon that hangs is not answering
            raise DaemonUnreachable(f"lockerd is not answering on {socket_path} ({exc})") from None
    if not line:
        raise DaemonUnreachable("lockerd closed the connection without answering")
    reply: dict[str, Any] = json.loads(line)
    if not reply.get("ok"):
        raise Refused(str(reply.get("error")))
    return reply["result"]


def _print_json(result: Any) -> None:
    print(json.dumps(result, ensure_ascii=False, indent=2))


def cmd_history(args: argparse.Namespace, config: Config) -> int:
    stages: list[dict[str, Any]] = _ask_api(
        config.api.socket, {"op": "history", "order_id": args.order_id}
    )
    if args.json:
        _print_json(stages)
    if not stages:
        print(f"no order {args.order_id} in this locker", file=sys.stderr)
        return 1
    if not args.json:
        for h in stages:
            detail = f"  {h['detail']}" if h["detail"] else ""
            print(f"{h['at']}  {h['stage']}{detail}")
    return 0


def cmd_events(args: argparse.Namespace, config: Config) -> int:
    result = _ask_api(config.api.socket, {"op": "events", "limit": args.limit})
    if args.json:
        _print_json(result)
        return 0
    for ev in result["events"]:  # codes arrive masked: the daemon never sends one here
        print(json.dumps(ev, ensure_ascii=False))
    # The outbox is not a log: the link deletes an event on the broker's PUBACK, so
    # with the platform connected this is usually empty. Say so, or staff read
    # "0 events" as "nothing happened".
    print(
        f"# {result['waiting']} events waiting for the platform (the outbox holds only"
        f" events the broker has not acknowledged; {result['recorded']} events were recorded"
        " in all; see `lockerctl audit` for what happened)",
        file=sys.stderr,
    )
    return 0


def cmd_audit(args: argparse.Namespace, config: Config) -> int:
    result = _ask_api(config.api.socket, {"op": "audit", "limit": args.limit})
    if args.json:
        _print_json(result)
        return 0
    for e in result["entries"]:
        where = " ".join(
            x
            for x in (e["order_id"] or "", f"#{e['compartment']}" if e["compartment"] else "")
            if x
        )
        print(f"{e['at']}  {e['actor']:<12} {e['action']:<22} {where} {e['detail']}".rstrip())
    return 0


def cmd_status(args: argparse.Namespace, config: Config) -> int:
    health = _ask_api(config.api.socket, {"op": "health"}, timeout=5)
    state = _ask_api(config.api.socket, {"op": "snapshot"}, timeout=5)
    if args.json:
        _print_json({"health": health, "state": state})
        return 0
    print(f"lockerd {health.get('version', '')} is running, locker time {health['time']}")
    # Where each compartment is wired and whether it is low is the configuration's; its
    # door and state are the daemon's, as the kiosk sees them.
    wiring = {c.number: c for c in config.compartments}
    print("no.  size  board:ch  door     state           flags")
    for c in state["compartments"]:
        conf = wiring.get(c["number"])
        where = f"{conf.board}:{conf.channel}" if conf else "?"
        flags = ",".join(
            f
            for f, on in (
                ("low", conf is not None and conf.low),
                ("out_of_service", not c["in_service"] and c["state"] != "out_of_service"),
            )
            if on
        )
        print(
            f"{c['number']:>3}  {c['size']:<4}  {where:<9} {c['door']:<8} {c['state']:<15} "
            f"{flags}".rstrip()
        )
    for b in health["boards"]:
        online = "online" if b["online"] else "OFFLINE"
        print(f"board {b['name']}: {online}, {b['errors']} errors {b['detail']}".rstrip())
    if not config.mqtt.enabled:
        link = "off ([mqtt] enabled = false)"
    elif health.get("mqtt_connected"):
        link = f"connected to {config.mqtt.host}:{config.mqtt.port}"
    else:
        link = f"NOT connected (broker {config.mqtt.host}:{config.mqtt.port}; lockerd retries)"
    print(f"platform link: {link}")
    print(f"outbox: {health['outbox']} events waiting for the platform")
    return 0


NO_TERMINAL = (
    "no terminal to type the PIN in: run lockerctl in a terminal,"
    " or give the PIN on standard input with --pin-stdin"
)


def _read_pin(from_stdin: bool, prompt: str = "technician PIN: ") -> str:
    if from_stdin:
        return sys.stdin.readline().strip()
    # getpass falls back to echoing stdin when there is no terminal (a script, a
    # systemd unit): a PIN must never be echoed, and a closed stdin gave a traceback.
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        raise LockerError(NO_TERMINAL) from None
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise LockerError(NO_TERMINAL) from None


def cmd_set_pin(args: argparse.Namespace, config: Config) -> int:
    """The one local step: a technician (root or the locker user, who own the data
    directory) sets the PIN before the daemon has one, so there is no session to ask."""
    pin = _read_pin(args.pin_stdin, "new technician PIN: ")
    if not args.pin_stdin and _read_pin(False, "again: ") != pin:
        print("lockerctl: the two PINs differ", file=sys.stderr)
        return 1
    write_pin(config.pin_path, pin)
    print(f"technician PIN stored (hashed) in {config.pin_path}")
    return 0


def cmd_maintenance(args: argparse.Namespace, config: Config) -> int:
    request: dict[str, Any] = {"pin": _read_pin(args.pin_stdin)}
    if args.cmd == "open":
        request.update(op="test_open", compartment=args.compartment)
    elif args.cmd == "open-all":
        request.update(op="open_all")
    else:
        request.update(
            op="set_service",
            compartment=args.compartment,
            in_service=args.state == "on",
            reason=args.reason,
        )
    print(_done(args.cmd, _ask_api(config.api.socket, request)))
    return 0


def _done(cmd: str, result: dict[str, Any]) -> str:
    """The daemon's reply to a maintenance request, as a sentence for the technician."""
    if cmd == "open-all":
        numbers = ", ".join(str(n) for n in result["compartments"])
        return f"compartments {numbers} unlocked"
    if cmd == "open":
        # The reply means the unlock was sent; whether the door opened is the sensor's
        # to say (a jammed lock raises door_alarm later), so do not claim it.
        return f"compartment {result['compartment']} unlocked"
    if result["in_service"]:
        return f"compartment {result['compartment']} back in service"
    return f"compartment {result['compartment']} out of service"


def cmd_qr(args: argparse.Namespace) -> int:
    """Render a pickup QR: from `--text`, or for an order by issuing it a new pickup code.

    Codes are kept only as keyed hashes, so an order's existing code cannot be shown
    again: `lockerctl qr ORDER` replaces it (technician PIN, logged; the old code stops
    working and the platform receives `code_issued` to update the customer).
    """
    if args.text:
        text, label = args.text, "QR"
    elif args.order_id:
        config = load_config(args.config)
        request = {"op": "reissue_code", "order_id": args.order_id}
        result = _ask_api(config.api.socket, {**request, "pin": _read_pin(args.pin_stdin)})
        text = result["pickup_qr"]
        label = (
            f"new pickup code {result['pickup_code']} for order {args.order_id}"
            " (the old one no longer works; the platform is told)"
        )
    else:
        print("lockerctl: qr needs an ORDER or --text", file=sys.stderr)
        return 2
    png = Path(args.png or f"{args.order_id or 'qr'}-pickup-qr.png")
    save_png(text, png)
    print(terminal(text))
    print(f"{label}\nQR text: {text}\nPNG: {png}")
    return 0


def cmd_backup(args: argparse.Namespace, config: Config) -> int:
    """An online backup, made by the running lockerd (it owns the database; the copy runs
    off its loop) and checked whole once written."""
    dest = Path(args.path).absolute()
    request = {"op": "backup", "path": str(dest), "pin": _read_pin(args.pin_stdin)}
    token = _ask_api(config.api.socket, request)["backup"]
    deadline = time.monotonic() + BACKUP_WAIT_S
    while True:
        result: dict[str, Any] = _ask_api(
            config.api.socket, {"op": "backup_status", "backup": token}
        )
        if result["done"]:
            break
        if time.monotonic() > deadline:
            raise LockerError(
                f"the backup to {dest} is still running in lockerd; once written it is"
                " listed in the data directory's backups.log"
            )
        time.sleep(0.2)
    if args.json:
        _print_json(result)
        return 0
    print(
        f"backup written to {result['path']} ({result['size']} bytes), checked whole:\n"
        f"locker {result['locker_id']}, epoch {result['epoch']}, last event seq"
        f" {result['last_seq']}, newest change {result['newest_change'] or 'none'}"
    )
    return 0


def cmd_verify(args: argparse.Namespace, config: Config) -> int:
    """A database file checked whole, with lockerd running or not (read-only)."""
    if args.data_dir == bool(args.path):
        print("lockerctl: verify needs a PATH or --data-dir (one of them)", file=sys.stderr)
        return 2
    path = config.locker.data_dir / DB_NAME if args.data_dir else Path(args.path)
    verdict = verify(path)
    if args.json:
        _print_json(verdict.as_dict())
    else:
        print(describe(verdict))
    return 0 if verdict.ok else 1


def _installed(args: argparse.Namespace, done: Installed, what: str) -> None:
    if args.json:
        _print_json(done.as_dict())
        return
    f = done.facts
    epoch = (
        f"epoch {done.old_epoch} -> {f.epoch}" if done.old_epoch != f.epoch else f"epoch {f.epoch}"
    )
    loaded = "" if done.loaded is None else f", {done.loaded} orders loaded in compartments"
    print(f"{what} {done.source} as {done.database}")
    print(
        f"locker {f.locker_id}, {epoch}, last event seq {f.last_seq}, newest change"
        f" {rfc3339(f.newest_change) if f.newest_change else 'none'}{loaded}"
    )
    if done.kept is not None:
        print(f"the database it replaced is kept as {done.kept}")
    print(f"next: {START_HINT}")


def cmd_restore(args: argparse.Namespace, config: Config) -> int:
    done = restore(config, Path(args.path).absolute(), args.force, time.time())
    _installed(args, done, "restored")
    return 0


def cmd_promote(args: argparse.Namespace, config: Config) -> int:
    done, others = promote(config, args.force, time.time())
    for why in others:  # what was passed over, and why: a damaged, older or foreign copy
        print(f"passed over: {why}", file=sys.stderr)
    _installed(args, done, "promoted")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Config], int]] = {
    "history": cmd_history,
    "events": cmd_events,
    "audit": cmd_audit,
    "status": cmd_status,
    "set-pin": cmd_set_pin,
    "open": cmd_maintenance,
    "open-all": cmd_maintenance,
    "service": cmd_maintenance,
    "backup": cmd_backup,
    "verify": cmd_verify,
    "restore": cmd_restore,
    "promote": cmd_promote,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lockerctl",
        description="Pickup locker maintenance, through the running lockerd's local API",
    )
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="the locker's TOML configuration (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_hist = sub.add_parser("history", help="every stage of an order with its time")
    p_hist.add_argument("order_id")
    p_ev = sub.add_parser(
        "events", help="events waiting for the platform (not yet acknowledged by the broker)"
    )
    p_ev.add_argument("--limit", type=int, default=50, help="at most this many (default: 50)")
    p_audit = sub.add_parser("audit", help="who did what, when")
    p_audit.add_argument("--limit", type=int, default=50, help="the last this many (default: 50)")
    p_status = sub.add_parser(
        "status", help="compartments, boards, the platform link and the outbox"
    )
    for p in (p_hist, p_ev, p_audit, p_status):
        p.add_argument("--json", action="store_true", help="the daemon's answer as JSON")
    p_pin = sub.add_parser(
        "set-pin", help="set the technician PIN (stored hashed; run as root or the locker user)"
    )
    p_open = sub.add_parser("open", help="test-open one compartment (technician PIN)")
    p_open.add_argument("compartment", type=int)
    p_all = sub.add_parser("open-all", help="open every compartment (technician PIN; logged)")
    p_svc = sub.add_parser("service", help="take a compartment out of service or back in")
    p_svc.add_argument("compartment", type=int)
    p_svc.add_argument("state", choices=["on", "off"])
    p_svc.add_argument("--reason", default="maintenance")
    p_qr = sub.add_parser(
        "qr", help="issue an order a new pickup code and render its QR (PNG and terminal)"
    )
    p_qr.add_argument("order_id", nargs="?", help="a loaded order (its code is replaced)")
    p_qr.add_argument("--text", help="render this QR text instead (nothing is changed)")
    p_qr.add_argument("--png", help="PNG file to write (default: ORDER-pickup-qr.png)")
    for p in (p_pin, p_open, p_all, p_svc, p_qr):
        p.add_argument("--pin-stdin", action="store_true", help="read the PIN from stdin")
    p_backup = sub.add_parser(
        "backup", help="an online backup of the running lockerd's database (technician PIN)"
    )
    p_backup.add_argument("path", help="a directory (a file named for the time) or a new file")
    p_verify = sub.add_parser("verify", help="check a database file whole and show its facts")
    p_verify.add_argument("path", nargs="?", help="a backup or replica")
    p_verify.add_argument(
        "--data-dir", action="store_true", help="the database in [locker] data_dir"
    )
    p_restore = sub.add_parser(
        "restore", help="put a backup in service (lockerd stopped; the old database is kept)"
    )
    p_restore.add_argument("path")
    p_promote = sub.add_parser(
        "promote",
        help="on the spare controller: serve the newest good replica, one epoch higher",
    )
    for p in (p_restore, p_promote):
        p.add_argument(
            "--force", action="store_true", help="even over a newer database (it is kept aside)"
        )
    for p in (p_backup, p_verify, p_restore, p_promote):
        p.add_argument("--json", action="store_true", help="the result as JSON")
    p_backup.add_argument("--pin-stdin", action="store_true", help="read the PIN from stdin")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "qr":  # `qr --text` needs no configuration
            return cmd_qr(args)
        return COMMANDS[args.cmd](args, load_config(args.config))
    except (Refused, NotInstalled) as exc:  # a wrong PIN; a copy of another locker
        print(f"lockerctl: {exc}", file=sys.stderr)
        return 1
    except LockerError as exc:  # no daemon, no configuration, no terminal for the PIN
        print(f"lockerctl: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
