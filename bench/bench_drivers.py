"""Driver figures over real ptys against the byte-level simulator (printed, never asserted).

- poll cycle of two CU48 boards (96 doors) at 19200 baud vs the wire-time floor;
- door-change detection: a door flips in the simulator -> the service's state shows it,
  with the real loop polling every poll_ms; p50/p99;
- software overhead from a code accepted to the first unlock byte on the wire, p50/p99
  over >= 1,000 unlocks (the time the sim device receives it minus the request's own
  wire time);
- one unlock costs one request on the bus;
- each driver's exchanges (read the doors, unlock) through the real driver over a pty,
  beside their wire floor (request and reply bytes at the bus rate, which the simulator
  takes as a real wire does).

Run: .venv/bin/python bench/bench_drivers.py
"""

from __future__ import annotations

import functools
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from figures import pct  # noqa: E402  (bench/, beside this script)

from drivers.bus import BusSettings, forget_bus  # noqa: E402
from drivers.kerong import make_cu48  # noqa: E402
from drivers.registry import board_config, make_board  # noqa: E402
from drivers.sim import SimBoard  # noqa: E402
from locker.clock import SystemClock, rfc3339  # noqa: E402
from locker.commands import CommandProcessor  # noqa: E402
from locker.config import load_config  # noqa: E402
from locker.daemon import build  # noqa: E402
from locker.model import Door, Method  # noqa: E402
from simulator.generic8a import Generic8aSim  # noqa: E402
from simulator.kerong import KerongSim  # noqa: E402
from simulator.modbus import ModbusRelaySim  # noqa: E402
from simulator.pty_device import PtyDevice  # noqa: E402


def ms(v: float) -> str:
    return f"{v * 1000:.2f} ms"


# driver, baud, channels, address, (request, reply) bytes of a door read, of an unlock
EXCHANGES = (
    ("kerong-cu48", 19200, 48, 0, (6, 12), (6, 0)),
    ("kerong-cu16", 19200, 16, 0, (5, 9), (5, 9)),
    ("modbus-relay", 9600, 8, 1, (8, 6), (8, 8)),
    ("generic-8a", 9600, 8, 1, (5, 7), (5, 0)),
)


def _device(driver: str, baud: int, sim: SimBoard, address: int) -> PtyDevice:
    if driver == "modbus-relay":
        return ModbusRelaySim({address: sim}, baud=baud)
    if driver == "generic-8a":
        return Generic8aSim({address: sim}, baud=baud)
    return KerongSim(driver.split("-")[1], {address: sim}, baud=baud)


def exchange_figures(rounds: int = 200) -> None:
    """Each driver's exchange time beside its wire floor; the silent interval before each
    exchange is waited out first, so only the exchange itself is timed."""
    print("exchange through the driver over a pty (p50 / p99) vs its wire floor:")
    for driver, baud, channels, address, read_bytes, unlock_bytes in EXCHANGES:
        sim = SimBoard("x", channels, door_close_s=0)
        device = _device(driver, baud, sim, address)
        cfg = board_config(
            "x", driver, channels, port=device.path, baud=baud, address=address, retries=0
        )
        board = make_board(cfg)
        gap = BusSettings(device.path, baud).gap_s
        try:
            board.read_doors()  # the port opened
            board.unlock(1)  # and what the board does after an unlock is known
            for what, sizes, action in (
                ("read doors", read_bytes, board.read_doors),
                ("unlock", unlock_bytes, functools.partial(board.unlock, 1)),
            ):
                times = []
                for _ in range(rounds):
                    time.sleep(gap + 0.001)
                    t = time.perf_counter()
                    action()
                    times.append(time.perf_counter() - t)
                floor = (sizes[0] + sizes[1]) * 10 / baud
                p50 = statistics.median(times)
                print(
                    f"  {driver:<13} {what:<10} {baud:>5} baud {sizes[0]:>2}+{sizes[1]:<2} bytes:"
                    f" p50 {ms(p50)}, p99 {ms(pct(times, 0.99))}; wire floor {ms(floor)}"
                    + (
                        f" (+{ms(p50 - floor)})"
                        if sizes[1]
                        else " (no reply: done once the request is handed to the port)"
                    )
                )
                for ch in range(1, channels + 1):
                    sim.close_door(ch)
        finally:
            board.close()
            device.close()


def main() -> None:
    exchange_figures()
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-"))
    sims = {0: SimBoard("a0", 48, door_close_s=0), 1: SimBoard("a1", 48, door_close_s=0)}
    device = KerongSim("cu48", sims, baud=19200)
    config_path = tmp / "locker.toml"
    config_path.write_text(
        f'[locker]\nid = "bench"\ndata_dir = "{tmp / "data"}"\n'
        f'[[boards]]\nname = "a0"\ndriver = "kerong-cu48"\nport = "{device.path}"\naddress = 0\n'
        f'[[boards]]\nname = "a1"\ndriver = "kerong-cu48"\nport = "{device.path}"\naddress = 1\n'
        '[[compartments]]\nnumbers = "1-48"\nchannels = "1-48"\nboard = "a0"\nsize = "S"\n'
        '[[compartments]]\nnumbers = "49-96"\nchannels = "1-48"\nboard = "a1"\nsize = "S"\n'
    )
    config = load_config(config_path)
    try:
        # 1. poll cycle
        boards = [make_cu48(config.board("a0")), make_cu48(config.board("a1"))]
        cycles = []
        for _ in range(300):
            t = time.perf_counter()
            for b in boards:
                b.read_doors()
            cycles.append(time.perf_counter() - t)
        floor = 2 * (6 + 12) * 10 / 19200
        print(
            f"poll cycle, 2 x CU48 (96 doors) at 19200 baud: p50 {ms(statistics.median(cycles))},"
            f" p99 {ms(pct(cycles, 0.99))}; wire-time floor {ms(floor)}"
            f" ({statistics.median(cycles) / floor:.2f}x)"
        )

        # 2 + 3. the real service and loop on these boards
        locker = build(config, SystemClock())
        loop = locker.loop
        stop = threading.Event()

        def run_loop() -> None:
            while not stop.is_set():
                loop.run_once(0.005)

        # detection latency: flip a door, wait until the service's state shows it
        runner = threading.Thread(target=run_loop)
        runner.start()
        lat = []
        for i in range(200):
            ch = 1 + (i // 2) % 48  # open, then close the same door
            time.sleep(0.013 * (i % 8))  # land at different points of the poll cycle
            t = time.perf_counter()
            sims[0].open_door(ch) if i % 2 == 0 else sims[0].close_door(ch)
            want = "open" if i % 2 == 0 else "closed"
            while (
                locker.service.openings.door.get(ch, None) is None
                or locker.service.openings.door[ch].value != want
            ):
                time.sleep(0.0005)
            lat.append(time.perf_counter() - t)
            if i % 2 == 1:
                time.sleep(0.001)
        print(
            f"door change -> state in the daemon (poll_ms {config.doors.poll_ms}):"
            f" p50 {ms(statistics.median(lat))}, p99 {ms(pct(lat, 0.99))}"
        )
        stop.set()
        runner.join()
        for ch in range(1, 49):
            sims[0].close_door(ch)

        # code accepted -> unlock frame received by the board
        commands = CommandProcessor(locker.service)
        item = [{"sku": "1", "qty": 1, "fresh": False, "size": "S"}]
        overhead, per_unlock = [], []
        wire = 6 * 10 / 19200

        def seen(number: int, door: Door) -> None:
            """Turn the loop (here, between the timed steps) until it has read the door:
            each board's reads come back from its I/O worker."""
            loop.poll_boards(force=True)
            while locker.service.openings.door.get(number) != door:
                loop.run_once(0.01)

        def timed_unlock(code: str) -> None:
            before = len(device.received)
            t = time.perf_counter()
            result = locker.service.enter_code(code, Method.KEYPAD)
            assert result.outcome == "opened", result
            while len(device.received) == before:
                time.sleep(0.00005)
            overhead.append(time.perf_counter() - t - wire)
            number = result.compartments[0]
            seen(number, Door.OPEN)  # the door is seen open ...
            # frames on the wire for this use case, the polls' status reads left out
            per_unlock.append(sum(1 for f in device.received[before:] if f[3] != 0x50))
            sims[0 if number <= 48 else 1].close_door(1 + (number - 1) % 48)
            seen(number, Door.CLOSED)  # ... and closed again

        n = 0
        while len(overhead) < 1000:
            n += 1
            payload = {
                "command_id": f"b{n}",
                "sent_at": rfc3339(time.time()),
                "order_id": f"B{n}",
                "items": item,
            }
            reply = commands.handle("reserve", json.dumps(payload))
            assert reply is not None and reply["ok"], reply
            timed_unlock(reply["result"]["deposit_code"])  # staff load it
            # The newest `deposited` (other events, a fault of a board the bench starved,
            # may come after it).
            recent = locker.store.events(after_seq=locker.store.last_seq() - 20, limit=20)
            deposited = [e for e in recent if e.type == "deposited"][-1]
            assert deposited.fields["order_id"] == f"B{n}", deposited
            timed_unlock(deposited.fields["pickup_code"])  # the shopper collects it
        print(
            f"code accepted -> unlock frame at the board, {len(overhead)} unlocks:"
            f" p50 {ms(statistics.median(overhead))}, p99 {ms(pct(overhead, 0.99))}"
            f" (software; the frame's own {ms(wire)} of wire time removed)"
        )
        print(
            f"requests on the bus per unlock (besides the regular polls):"
            f" {statistics.mean(per_unlock):.2f}"
        )
        locker.close()
    finally:
        forget_bus(device.path)
        device.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # the figures, not the alarms the bench provokes
    main()
