"""End-to-end figures, each beside its wire floor (printed only, nothing asserted).

- scanned code -> unlock frame: the real `lockerd` process on a simulated cabinet (a
  Kerong CU48 on a pty at 19200 baud, a Modbus relay board on a pty at 9600 baud, a
  serial scanner on a pty, a real Mosquitto). A code line is typed on the scanner's pty
  and the clock stops when the simulated CU48 has taken in the whole unlock frame (the
  simulator records each unlock after the frame's own wire time). Deposit codes come
  from `reserve` commands over MQTT, pickup codes from the `deposited` events; each code
  opens one compartment once.
  Scans that met a board exchange on the wire (the loop reads the boards itself, so a
  code waits for a poll in flight) are also shown apart from those that met none.
- the scanner's own hand-over, driver level: a line typed on the pty -> `on_code`.
- one Modbus input read (FC02, 8 inputs), driver level: `ModbusRelayBoard.read_doors`
  against the simulated relay board on a pty at 9600 baud.
- remote open round trip through Mosquitto and the running daemon on the Modbus board:
  command published -> reply received (the flash pulse, then the door seen open), beside
  two floors: the bytes of the two exchanges, and those bytes with the RTU silent interval
  the master keeps between them. The opens that found a poll on the wire are also shown
  apart, and each open is cut in three legs at the frames the simulated bus took in.

Run: .venv/bin/python bench/bench_e2e.py [--only scans|remote-open|drivers]
"""

from __future__ import annotations

import argparse
import queue
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from figures import pct  # noqa: E402  (bench/, beside this script)

from drivers.modbus_relay import make_modbus_relay  # noqa: E402
from drivers.registry import board_config  # noqa: E402
from drivers.scanner import SerialScanner  # noqa: E402
from drivers.sim import SimBoard  # noqa: E402
from simulator.broker import Broker  # noqa: E402
from simulator.console import Cabinet  # noqa: E402
from simulator.modbus import ModbusRelaySim  # noqa: E402
from simulator.platform import PlatformSim  # noqa: E402
from simulator.pty_device import PtyDevice  # noqa: E402
from simulator.scanner import SimScanner  # noqa: E402

LOCKER = "bench-e2e"
BIN = Path(sys.executable).parent
ROUNDS = 3  # each round: 48 deposit codes, then their 48 pickup codes
OPENS = 60


def wire_ms(nbytes: int, baud: int) -> float:
    return nbytes * 10 / baud * 1000  # 8N1: ten bits a character


def row(name: str, values: list[float], floor: float) -> None:
    print(
        f"{name:<62} p50 {pct(values, 0.5):6.1f} ms  p99 {pct(values, 0.99):6.1f} ms"
        f"  max {max(values):6.1f} ms  (n={len(values)})  wire floor {floor:.2f} ms"
        + (f"  p50/floor {pct(values, 0.5) / floor:.2f}x" if floor else "")
    )


def scan_and_time(cabinet: Cabinet, sim: SimBoard, text: str) -> tuple[float, float]:
    """Type one code on the scanner; when, and when the CU48 had the whole unlock frame."""
    assert cabinet.scanner is not None
    before = len(sim.unlocks)
    t0 = time.monotonic()
    cabinet.scanner.scan(text)
    deadline = t0 + 5
    while len(sim.unlocks) == before:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no unlock frame for {text!r}")
        time.sleep(0.0005)
    return t0, sim.unlocks[before][0]


def wait_events(platform: PlatformSim, kind: str, orders: set[str]) -> dict[str, dict[str, Any]]:
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while set(got) != orders:
        ev = platform.events.get(timeout=max(0.01, deadline - time.monotonic()))
        if ev.get("type") == kind and ev.get("order_id") in orders:
            got[ev["order_id"]] = ev
    return got


def settle() -> None:
    # Doors are polled every 100 ms: let the daemon see each door move before the next step.
    time.sleep(0.4)


def record_requests(device: PtyDevice, arrivals: list[float]) -> None:
    """Note when each request is taken in by a simulated bus (after its wire time)."""
    respond = device._respond  # the simulator's own responder, wrapped for the bench

    def timed(buffer: bytes) -> tuple[int, list[bytes]]:
        consumed, replies = respond(buffer)
        if consumed:
            arrivals.append(time.monotonic())
        return consumed, replies

    device._respond = timed


def met_an_exchange(arrivals: list[float], t0: float, unlocked: float) -> bool:
    # A Modbus exchange keeps the loop busy ~6 ms after its request is in (the reply):
    # look a little before the scan too. The unlock frame itself is taken in at `unlocked`.
    return any(t0 - 0.008 < at < unlocked for at in arrivals)


def scanned_codes(
    cabinet: Cabinet, platform: PlatformSim, arrivals: list[float]
) -> tuple[list[float], list[float]]:
    sim = cabinet.sims["cu48-0"]
    item = [{"sku": "1", "qty": 1, "size": "S"}]
    spans: list[tuple[float, float]] = []
    for r in range(ROUNDS):
        deposit: dict[str, tuple[int, str]] = {}
        for i in range(48):
            order = f"E{r}-{i}"
            reply = platform.command(LOCKER, "reserve", order_id=order, items=item)
            assert reply["ok"], reply
            res = reply["result"]
            deposit[order] = (res["compartments"][0]["number"], res["deposit_code"])
        for _, code in deposit.values():
            spans.append(scan_and_time(cabinet, sim, f"locker:{LOCKER}:deposit:{code}"))
            time.sleep(random.uniform(0.01, 0.05))  # codes land at any phase of the poll
        settle()
        for number, _ in deposit.values():
            cabinet.run(f"close {number}")
        deposited = wait_events(platform, "deposited", set(deposit))
        settle()
        for ev in deposited.values():
            spans.append(scan_and_time(cabinet, sim, ev["pickup_qr"]))
            time.sleep(random.uniform(0.01, 0.05))
        settle()
        for number, _ in deposit.values():
            cabinet.run(f"close {number}")
        wait_events(platform, "picked_up", set(deposit))
        settle()
    alone = [(u - t0) * 1000 for t0, u in spans if not met_an_exchange(arrivals, t0, u)]
    return [(u - t0) * 1000 for t0, u in spans], alone


def scanner_handover(tmp: Path, rounds: int = 300) -> list[float]:
    sim = SimScanner(tmp, "handover")
    got: queue.Queue[float] = queue.Queue()
    reader = SerialScanner(sim.path, 9600, lambda code: got.put(time.monotonic()))
    reader.start()
    times: list[float] = []
    try:
        while not reader.online:
            time.sleep(0.01)
        for i in range(rounds):
            t0 = time.monotonic()
            sim.scan(f"locker:{LOCKER}:pickup:{i:08d}")
            times.append((got.get(timeout=5) - t0) * 1000)
            time.sleep(random.uniform(0.005, 0.02))
    finally:
        reader.stop()
        sim.close()
    return times


# A read's reply (6 bytes) and the silent interval after it keep the bus from the flash
# for this long after the read's request was taken in.
READ_TAIL_S = (6 * 10 + 3.5 * 11) / 9600


@dataclass
class RemoteOpens:
    """Remote open round trips, and where their time went as the simulated bus saw it."""

    times: list[float] = field(default_factory=list)
    alone: list[float] = field(default_factory=list)  # no poll on the wire when it came
    legs: dict[str, list[float]] = field(
        default_factory=lambda: {"to flash": [], "flash to read": [], "read to reply": []}
    )


def remote_opens(cabinet: Cabinet, platform: PlatformSim, arrivals: list[float]) -> RemoteOpens:
    """Remote opens on the Modbus board. `arrivals`: when the board's bus took in each
    request (after its wire time). Legs: command -> flash frame taken in, flash -> the
    next request taken in (the read that sees the door open), that read -> reply."""
    numbers = [n for n, c in cabinet.compartments.items() if c.board.startswith("relay")]
    sim = cabinet.sims[cabinet.compartments[numbers[0]].board]
    out = RemoteOpens()
    for i in range(OPENS):
        number = numbers[i % len(numbers)]
        before = len(sim.unlocks)
        t0 = time.monotonic()
        reply = platform.command(LOCKER, "open", compartment=number, reason="bench", operator="b")
        t1 = time.monotonic()
        assert reply["ok"], reply
        ms = (t1 - t0) * 1000
        out.times.append(ms)
        flashed = sim.unlocks[before][0]
        if not any(t0 - READ_TAIL_S < at < flashed - 0.001 for at in arrivals):
            out.alone.append(ms)
        read = min((at for at in arrivals if at > flashed + 0.001), default=t1)
        out.legs["to flash"].append((flashed - t0) * 1000)
        out.legs["flash to read"].append((read - flashed) * 1000)
        out.legs["read to reply"].append((t1 - read) * 1000)
        cabinet.run(f"close {number}")
        time.sleep(random.uniform(0.15, 0.25))
    return out


def modbus_driver(rounds: int = 200) -> tuple[list[float], list[float]]:
    sim = SimBoard("m1", 8, door_close_s=0)
    device = ModbusRelaySim({1: sim}, baud=9600)
    cfg = board_config(
        "m1",
        "modbus-relay",
        port=device.path,
        baud=9600,
        address=1,
        timeout_ms=200,
        retries=2,
        pulse_ms=500,
    )
    board = make_modbus_relay(cfg)
    reads: list[float] = []
    flashes: list[float] = []
    try:
        board.read_doors()
        for i in range(rounds):
            time.sleep(0.01)  # past the silent interval: only the exchange is timed
            t0 = time.perf_counter()
            board.read_doors()
            reads.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.01)
            t0 = time.perf_counter()
            board.unlock(1 + i % 8)
            flashes.append((time.perf_counter() - t0) * 1000)
    finally:
        board.close()  # the only board on the bus: the port closes with it
        device.close()
    return reads, flashes


def daemon_figures(only: str | None) -> tuple[list[float], list[float], RemoteOpens]:
    """The figures through the running lockerd (scans, remote opens), as `only` asks."""
    tmp = Path(tempfile.mkdtemp(prefix="locker-bench-e2e-"))
    (tmp / "broker").mkdir()
    broker = Broker(tmp / "broker")
    cabinet = Cabinet(
        tmp / "cab", cu48=1, modbus=1, scanner=True, locker_id=LOCKER, mqtt_port=broker.port
    )
    # A technician's rate limit on remote opens would refuse the bench's opens.
    with cabinet.config_path.open("a") as config:
        config.write("\n[security]\nremote_open_per_hour = 3600\n")
    proc = subprocess.Popen(
        [BIN / "lockerd", "--config", str(cabinet.config_path), "--log-level", "WARNING"]
    )
    arrivals: list[float] = []
    for bus in cabinet.buses:
        record_requests(bus.device, arrivals)
    relay_bus = next(b.device for b in cabinet.buses if isinstance(b.device, ModbusRelaySim))
    platform = PlatformSim(port=broker.port, out=lambda line: None)
    scans: list[float] = []
    alone: list[float] = []
    opens = RemoteOpens()
    try:
        deadline = time.monotonic() + 30
        while True:  # the daemon answers once it is up and linked
            try:
                platform.command(LOCKER, "sync", timeout=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
        if only in (None, "scans"):
            scans, alone = scanned_codes(cabinet, platform, arrivals)
        if only in (None, "remote-open"):
            assert isinstance(relay_bus, ModbusRelaySim)
            opens = remote_opens(cabinet, platform, relay_bus.arrivals)
    finally:
        platform.close()
        proc.terminate()
        proc.wait(30)
        cabinet.close()
        broker.stop()
    return scans, alone, opens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=("scans", "remote-open", "drivers"), help="run one part only"
    )
    only = parser.parse_args().only
    scans: list[float] = []
    alone: list[float] = []
    opens = RemoteOpens()
    if only != "drivers":
        scans, alone, opens = daemon_figures(only)
    reads: list[float] = []
    flashes: list[float] = []
    handover: list[float] = []
    if only in (None, "drivers"):
        reads, flashes = modbus_driver()
        handover = scanner_handover(Path(tempfile.mkdtemp(prefix="locker-bench-e2e-")))

    print("lockerd on a simulated cabinet: CU48 at 19200 baud, Modbus relay at 9600 baud")
    if scans:
        row("lockerd: scanned code (pty) -> CU48 unlock frame taken in", scans, wire_ms(6, 19200))
    if alone:
        row("  of which no board exchange on the wire meanwhile", alone, wire_ms(6, 19200))
    if scans:
        print(
            f"{'':<62} (a poll in flight first: up to {wire_ms(6 + 12, 19200):.1f} ms of wire"
            f" on the CU48, {wire_ms(8 + 6, 9600):.1f} ms on the Modbus board)"
        )
    if handover:
        row("driver: scanner pty line -> on_code", handover, 0.0)
    if reads:
        row("driver: Modbus input read, FC02 8 inputs (8 + 6 bytes)", reads, wire_ms(14, 9600))
        row("driver: Modbus flash unlock, FC05 echoed (8 + 8 bytes)", flashes, wire_ms(16, 9600))
    if opens.times:
        floor = wire_ms(16 + 14, 9600)
        # The master must keep the RTU silent interval (3.5 characters of 11 bits) between
        # the flash's echo and the read's request: on the wire, not in the software.
        rtu_floor = floor + 3.5 * 11 / 9600 * 1000
        name = "lockerd: remote open via Mosquitto, Modbus board, door seen"
        row(name, opens.times, floor)
        print(
            f"{'':<62} (floor: flash + input read, {floor:.2f} ms; with the 3.5-character"
            f" silent interval between them {rtu_floor:.2f} ms: p50/that"
            f" {pct(opens.times, 0.5) / rtu_floor:.2f}x)"
        )
        if opens.alone:
            row("  of which no poll on the wire when the command came", opens.alone, floor)
        floors = {
            "to flash": wire_ms(8, 9600),
            "flash to read": wire_ms(8 + 8, 9600) + 3.5 * 11 / 9600 * 1000,
            "read to reply": wire_ms(6, 9600),
        }
        for leg, values in opens.legs.items():
            row(f"  {leg} (as the simulated bus saw it)", values, floors[leg])


if __name__ == "__main__":
    main()
