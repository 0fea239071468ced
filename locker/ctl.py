"""`lockerctl`: the maintenance staff's command line.

Reads the locker's database directly (read-only use; WAL lets it run beside
the daemon). What only the running daemon knows (boards answering now, the
platform link) `status` asks it over the local API, and says so when it is not
running. It never prints a code: fields that carry one are masked — except
`lockerctl qr ORDER`, whose purpose is to hand a customer a new pickup code.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from locker.clock import rfc3339
from locker.codes import CodeBook, load_or_create_key
from locker.config import DEFAULT_CONFIG, Config, load_config
from locker.errors import LockerError
from locker.pin import write_pin
from locker.qr import save_png, terminal
from locker.storage import SECRET_FIELDS, Store


class DaemonUnreachable(LockerError):
    """Nothing answers on the local API socket (the message says why); `short` is the
    same in a few words, for a line that cannot be filled in without the daemon."""

    def __init__(self, message: str, short: str = "lockerd not reachable") -> None:
        super().__init__(message)
        self.short = short


def _mask(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("****" if k in SECRET_FIELDS else v) for k, v in fields.items()}


def _open(config: Config) -> Store:
    db = config.locker.data_dir / "locker.db"
    if not db.exists():
        raise LockerError(f"{db}: no database yet; has lockerd been started with this config?")
    return Store(db, CodeBook.from_key(load_or_create_key(config.key_path)))


def cmd_history(store: Store, order_id: str) -> int:
    rows = store.db.execute(
        "SELECT o.pk, s.stage, s.at, s.detail FROM order_stages s JOIN orders o"
        " ON o.pk = s.order_pk WHERE o.order_id=? ORDER BY s.id",
        (order_id,),
    ).fetchall()
    if not rows:
        print(f"no order {order_id} in this locker", file=sys.stderr)
        return 1
    for row in rows:
        detail = f"  {row['detail']}" if row["detail"] else ""
        print(f"{rfc3339(row['at'])}  {row['stage']}{detail}")
    return 0


def cmd_events(store: Store, locker_id: str, limit: int) -> int:
    events = store.events(after_seq=max(0, store.last_seq() - limit), limit=limit)
    for ev in events:
        print(json.dumps(_mask(ev.payload(locker_id)), ensure_ascii=False))
    # The outbox is not a log: the link deletes an event on the broker's PUBACK, so
    # with the platform connected this is usually empty. Say so, or staff read
    # "0 events" as "nothing happened".
    print(
        f"# {store.outbox_depth()} events waiting for the platform (the outbox holds only"
        f" events the broker has not acknowledged; {store.last_seq()} events were recorded"
        " in all; see `lockerctl audit` for what happened)",
        file=sys.stderr,
    )
    return 0


def cmd_audit(store: Store, limit: int) -> int:
    rows = store.db.execute(
        "SELECT at, actor, action, order_id, compartment, detail FROM audit"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    for row in reversed(rows):
        where = " ".join(
            x
            for x in (row["order_id"] or "", f"#{row['compartment']}" if row["compartment"] else "")
            if x
        )
        print(
            f"{rfc3339(row['at'])}  {row['actor']:<12} {row['action']:<22} {where} "
            f"{row['detail']}".rstrip()
        )
    return 0


def cmd_status(store: Store, config: Config) -> int:
    absent: DaemonUnreachable | None = None
    try:
        health = _ask_api(config.api.socket, {"op": "health"}, timeout=5)
    except DaemonUnreachable as exc:
        absent, health = exc, {}
    if absent is not None:
        # The database holds what lockerd last wrote: a board it saw online an hour
        # ago is not online now, so never present it as the present.
        print(f"{absent}: last known state, as lockerd last wrote it")
    else:
        print(f"lockerd {health.get('version', '')} is running, locker time {health['time']}")
    rows = store.db.execute(
        "SELECT c.number, c.size, c.low, c.board, c.channel, c.in_service, c.jammed, c.door,"
        " o.state AS order_state FROM compartments c LEFT JOIN orders o ON o.pk = c.order_pk"
        " ORDER BY c.number"
    ).fetchall()
    print("no.  size  board:ch  door     order state  flags")
    for r in rows:
        flags = ",".join(
            f
            for f, on in (
                ("low", r["low"]),
                ("out_of_service", not r["in_service"]),
                ("jammed", r["jammed"]),
            )
            if on
        )
        print(
            f"{r['number']:>3}  {r['size']:<4}  {r['board']}:{r['channel']:<5} "
            f"{r['door']:<8} {r['order_state'] or '-':<12} {flags}".rstrip()
        )
    if absent is not None:
        for b in store.db.execute("SELECT name, online, errors, detail FROM boards"):
            state = "online" if b["online"] else "OFFLINE"
            print(
                f"board {b['name']}: {state}, {b['errors']} errors {b['detail']}".rstrip()
                + " (last known)"
            )
        print(f"platform link: unknown ({absent.short})")
        print(f"outbox: {store.outbox_depth()} events waiting for the platform")
        return 0
    for b in health["boards"]:
        state = "online" if b["online"] else "OFFLINE"
        print(f"board {b['name']}: {state}, {b['errors']} errors {b['detail']}".rstrip())
    if not config.mqtt.enabled:
        link = "off ([mqtt] enabled = false)"
    elif health.get("mqtt_connected"):
        link = f"connected to {config.mqtt.host}:{config.mqtt.port}"
    else:
        link = f"NOT connected (broker {config.mqtt.host}:{config.mqtt.port}; lockerd retries)"
    print(f"platform link: {link}")
    print(f"outbox: {health['outbox']} events waiting for the platform")
    return 0


def _ask_api(socket_path: str, request: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """One request to the running daemon over its local API; the result of a reply that
    is ok, or LockerError with the daemon's error (DaemonUnreachable when none answers)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonUnreachable(
                f"lockerd is not running (nothing listens on {socket_path})",
                "lockerd not running",
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
        raise LockerError(str(reply.get("error")))
    result: dict[str, Any] = reply["result"]
    return result


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


def _maintenance(args: argparse.Namespace, config: Config) -> int:
    if args.cmd == "set-pin":
        pin = _read_pin(args.pin_stdin, "new technician PIN: ")
        if not args.pin_stdin and _read_pin(False, "again: ") != pin:
            print("lockerctl: the two PINs differ", file=sys.stderr)
            return 1
        write_pin(config.pin_path, pin)
        print(f"technician PIN stored (hashed) in {config.pin_path}")
        return 0
    pin = _read_pin(args.pin_stdin)
    request: dict[str, Any] = {"pin": pin}
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
    try:
        result = _ask_api(config.api.socket, request)
    except DaemonUnreachable:
        raise
    except LockerError as exc:  # the daemon refused: a wrong PIN, no such compartment
        print(f"lockerctl: {exc}", file=sys.stderr)
        return 1
    print(_done(args.cmd, result))
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
        try:
            result = _ask_api(config.api.socket, {**request, "pin": _read_pin(args.pin_stdin)})
        except DaemonUnreachable:
            raise
        except LockerError as exc:
            print(f"lockerctl: {exc}", file=sys.stderr)
            return 1
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lockerctl", description="Pickup locker maintenance")
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
    sub.add_parser("status", help="compartments, boards, the platform link and the outbox")
    p_pin = sub.add_parser("set-pin", help="set the technician PIN (stored hashed)")
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
    args = parser.parse_args(argv)
    if args.cmd == "qr":
        try:
            return cmd_qr(args)
        except LockerError as exc:
            print(f"lockerctl: {exc}", file=sys.stderr)
            return 2
    try:
        config = load_config(args.config)
        if args.cmd in ("set-pin", "open", "open-all", "service"):
            return _maintenance(args, config)
        store = _open(config)
    except LockerError as exc:
        print(f"lockerctl: {exc}", file=sys.stderr)
        return 2
    try:
        if args.cmd == "history":
            return cmd_history(store, args.order_id)
        if args.cmd == "events":
            return cmd_events(store, config.locker.id, args.limit)
        if args.cmd == "audit":
            return cmd_audit(store, args.limit)
        return cmd_status(store, config)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
