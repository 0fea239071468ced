"""The first thing a newcomer sees working: one order through the real service.

Loads the configuration, starts the real service on the in-process simulated
board, and plays the platform (reserve), the store's staff (deposit code) and
the shopper (pickup QR through the scanner path), printing every event as the
service commits it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from locker.clock import rfc3339
from locker.commands import CommandProcessor
from locker.config import Config, load_config
from locker.daemon import build
from locker.errors import LockerError
from locker.events import Committed
from locker.model import Method

_TTY = sys.stdout.isatty()
BOLD = "\033[1m" if _TTY else ""
DIM = "\033[2m" if _TTY else ""
RESET = "\033[0m" if _TTY else ""


def _say(step: str) -> None:
    print(f"\n{BOLD}== {step}{RESET}")


def run(config_path: str, keep_data: bool = False) -> int:
    try:
        config = load_config(config_path)
    except LockerError as exc:
        print(f"locker-sim: {exc}")
        return 2
    # A fresh key and database per run, removed when it ends, Ctrl-C included.
    tmp = None if keep_data else tempfile.TemporaryDirectory(prefix="locker-demo-")
    try:
        return _walk(config, config_path, tmp)
    except KeyboardInterrupt:
        print("\nstopped (Ctrl-C)")
        return 130
    finally:
        if tmp is not None:
            tmp.cleanup()


def _walk(config: Config, config_path: str, tmp: tempfile.TemporaryDirectory[str] | None) -> int:
    if tmp is not None:
        locker_section = dataclasses.replace(config.locker, data_dir=Path(tmp.name))
        config = dataclasses.replace(
            config,
            locker=locker_section,
            security=dataclasses.replace(
                config.security, key_file=str(Path(tmp.name) / "locker.key")
            ),
        )
    sizes: dict[str, int] = {}
    for c in config.compartments:
        sizes[c.size] = sizes.get(c.size, 0) + 1
    _say(f"configuration {config_path}")
    print(
        f"locker {config.locker.id}: {len(config.compartments)} compartments "
        f"({', '.join(f'{n} x {s}' for s, n in sizes.items())}) on "
        + ", ".join(f"{b.name} ({b.driver})" for b in config.boards)
    )
    print(f"data in {config.locker.data_dir}")
    locker = build(config)
    service, store = locker.service, locker.store
    seen = [store.last_seq()]

    def print_events(_commit: Committed) -> None:
        for ev in store.events(after_seq=seen[0]):
            seen[0] = ev.seq
            payload = json.dumps(ev.payload(config.locker.id), ensure_ascii=False)
            print(f"  {BOLD}event/{ev.type}{RESET} {DIM}{payload}{RESET}")

    store.hub.committed.subscribe(print_events)
    commands = CommandProcessor(service)

    def until(done: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError("the simulated doors did not finish in time")
            locker.loop.run_once(0.05)

    def command(name: str, **fields: object) -> dict[str, object]:
        payload = {
            "command_id": f"demo-{name}-{time.time_ns()}",
            "sent_at": rfc3339(time.time()),
            **fields,
        }
        print(f"  platform -> cmd/{name} {json.dumps(fields, ensure_ascii=False)}")
        reply = commands.handle(name, json.dumps(payload))
        print(f"  locker   -> reply {json.dumps(reply, ensure_ascii=False)}")
        assert reply is not None
        return reply

    try:
        _say("the platform sends an order with fresh milk: refused, it goes to the service desk")
        command(
            "reserve",
            order_id="SO-DEMO-0",
            items=[
                {"sku": "6900000000001", "name": "Milk 1L", "qty": 1, "fresh": True, "size": "S"}
            ],
        )

        _say("the platform reserves a compartment for a small order")
        reply = command(
            "reserve",
            order_id="SO-DEMO-1",
            items=[
                {"sku": "6901234567890", "name": "Tea 250g", "qty": 2, "fresh": False, "size": "S"},
                {"sku": "6909876543210", "name": "Towel", "qty": 1, "fresh": False, "size": "M"},
            ],
            customer={"phone_tail": "1234", "accessible": False},
        )
        result = reply["result"]
        assert isinstance(result, dict)
        deposit_code = str(result["deposit_code"])

        _say("store staff type the deposit code at the keypad")
        outcome = service.enter_code(deposit_code, Method.KEYPAD)
        print(f"  screen: {outcome.message}")
        close_s = config.boards[0].options["door_close_s"]
        print(f"  (the simulated door opens, and closes by itself after {close_s} s)")
        until(
            lambda: (
                bool(store.events(after_seq=0, limit=1000))
                and any(e.type == "deposited" for e in store.events(limit=1000))
            )
        )
        deposited = [e for e in store.events(limit=1000) if e.type == "deposited"][-1]
        pickup_qr = str(deposited.fields["pickup_qr"])

        _say("the shopper scans the QR code from their phone")
        print(f"  scanner reads: {pickup_qr}")
        outcome = service.enter_code(pickup_qr, Method.SCANNER)
        print(f"  screen: {outcome.message}")
        until(lambda: any(e.type == "picked_up" for e in store.events(limit=1000)))

        _say("someone tries the same code again: it is dead")
        outcome = service.enter_code(pickup_qr, Method.SCANNER)
        print(f"  screen: {outcome.message}")

        _say("the order's history (every stage with its time)")
        for stage in service.history("SO-DEMO-1"):
            print(f"  {stage['at']}  {stage['stage']}")
        snap = service.snapshot()
        print(f"\nfree compartments now: {snap['free']}")
        print(f"{BOLD}The platform confirms receipt of SO-DEMO-1 on its picked_up event.{RESET}")
        print(f"(demo finished at {datetime.now(UTC):%H:%M:%S} UTC)")
    finally:
        locker.close()
    return 0
