"""A locker that keeps doing use cases until it is killed (driven by test_crash.py).

Run as `python tests/crash_worker.py CONFIG JOURNAL SEED`. It builds the real
service on an in-process simulated board whose doors close by themselves,
and loops forever through reservations, deposits, pickups, reissues and
cancellations with the real clock. The simulated board appends every unlock
it receives to JOURNAL, so the test can compare what reached the "wire" with
the intents committed in the database.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

from drivers.sim import SimBoard
from locker.clock import rfc3339
from locker.commands import CommandProcessor
from locker.config import load_config
from locker.daemon import build
from locker.model import Method


def main() -> None:
    config = load_config(sys.argv[1])
    journal = Path(sys.argv[2])
    rng = random.Random(int(sys.argv[3]))
    board = SimBoard("b0", channels=48, door_close_s=0.02, journal=journal)
    locker = build(config, boards={"b0": board})
    service, store = locker.service, locker.store
    commands = CommandProcessor(service)
    n = 0
    while True:
        n += 1
        action = rng.random()
        db = store.db
        if action < 0.3:
            items = [{"sku": str(i), "qty": rng.randint(1, 2), "fresh": False,
                      "size": rng.choice("SML")} for i in range(rng.randint(1, 2))]
            payload = {"command_id": f"{sys.argv[3]}-{n}", "sent_at": rfc3339(time.time()),
                       "order_id": f"W{sys.argv[3]}-{n}", "items": items}
            commands.handle("reserve", json.dumps(payload))
        elif action < 0.55:
            # the deposit code of an order still waiting to be loaded or retrieved
            waiting = {r[0] for r in db.execute(
                "SELECT order_id FROM orders WHERE state IN ('reserved','expired','cancelled')"
            )}
            rows = db.execute(
                "SELECT command_id FROM commands WHERE name='reserve' ORDER BY random() LIMIT 20"
            ).fetchall()
            for row in rows:
                stored = store.stored_reply(row[0])
                reply = stored[1] if stored else None
                if reply and reply.get("ok") and reply["result"]["order_id"] in waiting:
                    service.enter_code(reply["result"]["deposit_code"], Method.KEYPAD)
                    break
        elif action < 0.85:
            latest: dict[str, str] = {}
            for e in store.events(after_seq=max(0, store.last_seq() - 200), limit=200):
                if "pickup_code" in e.fields:
                    latest[e.fields["order_id"]] = e.fields["pickup_code"]
            loaded = {r[0] for r in db.execute("SELECT order_id FROM orders WHERE state='loaded'")}
            codes = [code for order_id, code in latest.items() if order_id in loaded]
            if codes:
                service.enter_code(rng.choice(codes), rng.choice([Method.KEYPAD, Method.SCANNER]))
        elif action < 0.92:
            row = db.execute(
                "SELECT order_id FROM orders WHERE state='loaded' ORDER BY random() LIMIT 1"
            ).fetchone()
            if row:
                commands.handle("reissue_code", json.dumps({
                    "command_id": f"{sys.argv[3]}-{n}", "sent_at": rfc3339(time.time()),
                    "order_id": row[0]}))
        else:
            row = db.execute(
                "SELECT order_id FROM orders WHERE state IN ('reserved','loaded')"
                " ORDER BY random() LIMIT 1"
            ).fetchone()
            if row:
                commands.handle("cancel", json.dumps({
                    "command_id": f"{sys.argv[3]}-{n}", "sent_at": rfc3339(time.time()),
                    "order_id": row[0], "reason": "test"}))
        locker.loop.run_once(0.0)
        if n % 50 == 0:
            print(n, flush=True)


if __name__ == "__main__":
    main()
