"""`locker-sim stack` (what `make demo` runs): the whole system on one machine.

A private Mosquitto, a simulated cabinet (Kerong CU48 board and a serial
scanner on ptys), the real `lockerd` process, and the platform simulator;
then one order from reservation to confirmed receipt: the platform reserves,
the staff scan the deposit QR, the door opens and closes, the platform hears
`deposited` and sends the shopper a pickup code, the shopper scans it, the
door opens and closes, and the platform confirms receipt on `picked_up`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simulator.broker import Broker
from simulator.console import Cabinet
from simulator.platform import NoReply, PlatformSim

BIN = Path(sys.executable).parent


def _try_the_kiosk(
    platform: PlatformSim,
    cabinet: Cabinet,
    locker_id: str,
    kiosk: subprocess.Popen[bytes],
    base: Path,
) -> None:
    """Leave the stack running with an order to collect, one to load and a PIN to try."""
    from locker.config import load_config  # noqa: PLC0415
    from locker.pin import write_pin  # noqa: PLC0415

    write_pin(load_config(cabinet.config_path).pin_path, DEMO_PIN)
    loaded = platform.reserve(locker_id, "SO-TRY-1", TEA)["result"]["deposit_code"]
    cabinet.run(f"scan locker:{locker_id}:deposit:{loaded}")
    pickup = platform.wait_event("deposited", "SO-TRY-1")["pickup_code"]
    to_load = platform.reserve(locker_id, "SO-TRY-2", TEA)["result"]["deposit_code"]
    _say("the kiosk is yours (Ctrl-C to stop)")
    print(
        f"  shopper: type pickup code {pickup} (order SO-TRY-1; its QR is in {base / 'qr'})\n"
        f"  staff:   Staff, then deposit code {to_load} (order SO-TRY-2)\n"
        f"  maintenance: Maintenance, then the demo PIN {DEMO_PIN}\n"
        "  voice:   heard on ALSA's default device (USB or HDMI speaker); volume in Maintenance\n"
        "  doors close by themselves after a moment; events print below",
        flush=True,
    )
    try:
        while kiosk.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print()


def _say(text: str) -> None:
    bold, reset = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}== {text}{reset}", flush=True)


DEMO_PIN = "246813"  # the demo cabinet's technician PIN (a real one is set with lockerctl)
TEA = [{"sku": "6901234567890", "name": "Tea 250g", "qty": 1, "fresh": False, "size": "S"}]


NO_SCREEN = (
    "no screen (DISPLAY is not set): the kiosk part was skipped; run `make demo` in a"
    " desktop session (or over `ssh -X`) to try the touchscreen too"
)


def run_stack(folder: str | None = None, door_close_s: float = 1.5, stay: bool = False) -> int:
    """The whole system for one order; without `folder` every file lives in a temporary
    folder that is removed when it ends, by Ctrl-C or SIGTERM too (each run makes a new
    key and database, and nobody would ever clean them up)."""

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # a `kill` or a timeout stops it as Ctrl-C does

    signal.signal(signal.SIGTERM, terminated)
    try:
        with contextlib.ExitStack() as cleanup:
            if folder:
                base = Path(folder)
                base.mkdir(parents=True, exist_ok=True)
            else:
                temporary = tempfile.TemporaryDirectory(prefix="locker-stack-")
                base = Path(cleanup.enter_context(temporary))
            return _run(base, cleanup, door_close_s, stay, keep_log=bool(folder))
    except KeyboardInterrupt:
        print("\nstopped (Ctrl-C)", flush=True)
        return 130


def _run(
    base: Path, cleanup: contextlib.ExitStack, door_close_s: float, stay: bool, keep_log: bool
) -> int:
    """Start everything, registering each part's stop on `cleanup` (undone in reverse)."""
    _say(f"a local Mosquitto, a simulated cabinet and lockerd (files in {base})")
    broker = Broker(base)
    cleanup.callback(broker.stop)
    locker_id = "store-001-a"
    cabinet = Cabinet(
        base / "cabinet",
        cu48=1,
        scanner=True,
        door_close_s=door_close_s,
        locker_id=locker_id,
        mqtt_port=broker.port,
    )
    cleanup.callback(cabinet.close)
    log_path = base / "lockerd.log"
    log = cleanup.enter_context(log_path.open("w"))
    daemon = subprocess.Popen(
        [BIN / "lockerd", "--config", str(cabinet.config_path)], stderr=log, stdout=log
    )
    cleanup.callback(_stop, daemon)
    kiosk = None
    if os.environ.get("DISPLAY"):  # a screen: show the shopper's side too
        kiosk = subprocess.Popen(
            [BIN / "locker-kiosk", "--config", str(cabinet.config_path)], stderr=log, stdout=log
        )
        cleanup.callback(_stop, kiosk)
    print(f"mosquitto on 127.0.0.1:{broker.port}; lockerd --config {cabinet.config_path}")
    platform = PlatformSim(
        port=broker.port, out=lambda s: print(f"  {s}", flush=True), qr_dir=base / "qr"
    )
    cleanup.callback(platform.close)
    deadline = time.monotonic() + 20
    while True:  # the daemon is up when it answers
        try:
            if platform.command(locker_id, "sync", timeout=1)["ok"]:
                break
        except NoReply:  # no reply yet: the daemon is still starting
            if time.monotonic() > deadline or daemon.poll() is not None:
                print("lockerd did not come up; its log:", flush=True)
                log.flush()
                # The log goes with the temporary folder: show it while it is there.
                print(log_path.read_text() if not keep_log else log_path, flush=True)
                return 1

    _say("the platform sends an order with fresh milk: it goes to the service desk")
    platform.reserve(
        locker_id,
        "SO-STACK-0",
        [{"sku": "6900000000001", "name": "Milk 1L", "qty": 1, "fresh": True, "size": "S"}],
    )

    _say("the platform reserves a compartment for a small order")
    reply = platform.reserve(
        locker_id,
        "SO-STACK-1",
        [{"sku": "6901234567890", "name": "Tea 250g", "qty": 2, "fresh": False, "size": "S"}],
    )
    deposit = reply["result"]["deposit_code"]

    _say("store staff scan the deposit QR at the locker; the door opens, they load and close")
    cabinet.run(f"scan locker:{locker_id}:deposit:{deposit}")
    deposited = platform.wait_event("deposited", "SO-STACK-1")

    _say("the shopper scans the pickup QR from their phone; the door opens, then closes")
    cabinet.run(f"scan {deposited['pickup_qr']}")
    platform.wait_event("picked_up", "SO-STACK-1")

    _say("the order's history in the locker (lockerctl history SO-STACK-1)")
    subprocess.run(
        [BIN / "lockerctl", "--config", str(cabinet.config_path), "history", "SO-STACK-1"],
        check=False,
    )
    confirmed = "SO-STACK-1" in platform.confirmed
    print(f"\nreceipt confirmed by the platform: {'yes' if confirmed else 'NO'}")
    if kiosk is None:
        print(NO_SCREEN, flush=True)
    elif stay:
        _try_the_kiosk(platform, cabinet, locker_id, kiosk, base)
    return 0 if confirmed else 1


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(20)
