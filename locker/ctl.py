"""`lockerctl`: the maintenance staff's command line.

Reads the locker's database directly (read-only use; WAL lets it run beside
the daemon). It never prints a code: fields that carry one are masked.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from locker.clock import rfc3339
from locker.codes import CodeBook, load_or_create_key
from locker.config import load_config
from locker.daemon import DEFAULT_CONFIG
from locker.errors import LockerError
from locker.storage import SECRET_FIELDS, Store


def _mask(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: ("****" if k in SECRET_FIELDS else v) for k, v in fields.items()}


def _open(config_path: str) -> tuple[Store, str]:
    config = load_config(config_path)
    db = config.locker.data_dir / "locker.db"
    if not db.exists():
        raise LockerError(f"{db}: no database yet; has lockerd been started with this config?")
    store = Store(db, CodeBook.from_key(load_or_create_key(config.key_path)))
    return store, config.locker.id


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
    print(f"# {store.outbox_depth()} events waiting in the outbox", file=sys.stderr)
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


def cmd_status(store: Store) -> int:
    rows = store.db.execute(
        "SELECT c.number, c.size, c.low, c.board, c.channel, c.in_service, c.jammed, c.door,"
        " o.state AS order_state FROM compartments c LEFT JOIN orders o ON o.pk = c.order_pk"
        " ORDER BY c.number"
    ).fetchall()
    print("no.  size  board:ch  door     order     flags")
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
            f"{r['door']:<8} {r['order_state'] or '-':<9} {flags}"
        )
    for b in store.db.execute("SELECT name, online, errors, detail FROM boards"):
        state = "online" if b["online"] else "OFFLINE"
        print(f"board {b['name']}: {state}, {b['errors']} errors {b['detail']}".rstrip())
    print(f"outbox: {store.outbox_depth()} events waiting")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lockerctl", description="Pickup locker maintenance")
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_hist = sub.add_parser("history", help="every stage of an order with its time")
    p_hist.add_argument("order_id")
    p_ev = sub.add_parser("events", help="events not yet acknowledged by the broker")
    p_ev.add_argument("--limit", type=int, default=50)
    p_audit = sub.add_parser("audit", help="who did what, when")
    p_audit.add_argument("--limit", type=int, default=50)
    sub.add_parser("status", help="compartments, boards and the outbox")
    args = parser.parse_args(argv)
    try:
        store, locker_id = _open(args.config)
    except LockerError as exc:
        print(f"lockerctl: {exc}", file=sys.stderr)
        return 2
    try:
        if args.cmd == "history":
            return cmd_history(store, args.order_id)
        if args.cmd == "events":
            return cmd_events(store, locker_id, args.limit)
        if args.cmd == "audit":
            return cmd_audit(store, args.limit)
        return cmd_status(store)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
