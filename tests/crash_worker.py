"""A locker that keeps doing use cases until it is killed (driven by test_crash.py).

Run as `python tests/crash_worker.py CONFIG JOURNAL SEED [power-cut]`. It builds the real
service on an in-process simulated board whose doors close by themselves,
and loops forever through reservations, deposits, pickups, reissues and
cancellations with the real clock. The simulated board appends every unlock
it receives to JOURNAL, so the test can compare what reached the "wire" with
the intents committed in the database. With `power-cut` it kills itself right
after its first pickup code opened a door (the intent committed, the pulse handed to the
board or about to be): the door closes again while no process runs, as in a power cut
during a pickup, and the next run must still report the pickup.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

from drivers.sim import SimBoard
from locker.clock import rfc3339
from locker.commands import CommandProcessor
from locker.config import load_config
from locker.daemon import build
from locker.entry import ALREADY_OPEN
from locker.model import Method


def main() -> None:
    config = load_config(sys.argv[1])
    journal = Path(sys.argv[2])
    rng = random.Random(int(sys.argv[3]))
    power_cut = sys.argv[4:] == ["power-cut"]
    board = SimBoard("b0", channels=48, door_close_s=0.15, journal=journal)
    locker = build(config, boards={"b0": board})
    service, store = locker.service, locker.store
    commands = CommandProcessor(service)
    deposit_codes: dict[str, str] = {}
    for (command_id,) in store.db.execute("SELECT command_id FROM commands WHERE name='reserve'"):
        stored = store.stored_reply(command_id)
        if stored and stored[1] and stored[1]["ok"]:
            deposit_codes[stored[1]["result"]["order_id"]] = stored[1]["result"]["deposit_code"]
    n = 0
    while True:
        n += 1
        action = rng.random()
        db = store.db
        if action < 0.15:
            items = [
                {"sku": str(i), "qty": rng.randint(1, 2), "fresh": False, "size": rng.choice("SML")}
                for i in range(rng.randint(1, 2))
            ]
            payload = {
                "command_id": f"{sys.argv[3]}-{n}",
                "sent_at": rfc3339(time.time()),
                "order_id": f"W{sys.argv[3]}-{n}",
                "items": items,
            }
            reply = commands.handle("reserve", json.dumps(payload))
            if reply and reply["ok"]:
                deposit_codes[reply["result"]["order_id"]] = reply["result"]["deposit_code"]
        elif action < 0.5:
            # the deposit code of an order still waiting to be loaded or retrieved
            # the deposit code of an order waiting to be loaded or retrieved
            waiting = [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT o.order_id FROM orders o JOIN compartments c"
                    " ON c.order_pk = o.pk WHERE o.state IN ('reserved','expired','cancelled')"
                )
            ]
            known = [o for o in waiting if o in deposit_codes]
            if known:
                service.enter_code(deposit_codes[rng.choice(known)], Method.KEYPAD)
        elif action < 0.85:
            latest: dict[str, str] = {}
            for e in store.events(after_seq=max(0, store.last_seq() - 200), limit=200):
                if "pickup_code" in e.fields:
                    latest[e.fields["order_id"]] = e.fields["pickup_code"]
            loaded = {r[0] for r in db.execute("SELECT order_id FROM orders WHERE state='loaded'")}
            codes = [code for order_id, code in latest.items() if order_id in loaded]
            if codes:
                result = service.enter_code(
                    rng.choice(codes), rng.choice([Method.KEYPAD, Method.SCANNER])
                )
                if power_cut and result.outcome == "opened" and result.message != ALREADY_OPEN:
                    os.kill(os.getpid(), signal.SIGKILL)
        elif action < 0.95:
            row = db.execute(
                "SELECT order_id FROM orders WHERE state='loaded' ORDER BY random() LIMIT 1"
            ).fetchone()
            if row:
                commands.handle(
                    "reissue_code",
                    json.dumps(
                        {
                            "command_id": f"{sys.argv[3]}-{n}",
                            "sent_at": rfc3339(time.time()),
                            "order_id": row[0],
                        }
                    ),
                )
        else:
            row = db.execute(
                "SELECT order_id FROM orders WHERE state IN ('reserved','loaded')"
                " ORDER BY random() LIMIT 1"
            ).fetchone()
            if row:
                commands.handle(
                    "cancel",
                    json.dumps(
                        {
                            "command_id": f"{sys.argv[3]}-{n}",
                            "sent_at": rfc3339(time.time()),
                            "order_id": row[0],
                            "reason": "test",
                        }
                    ),
                )
        locker.loop.run_once(0.0)
        if n % 50 == 0:
            print(n, flush=True)


if __name__ == "__main__":
    main()
