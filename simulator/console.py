"""`locker-sim boards`: simulated lock boards and a scanner on ptys, for technicians.

Starts byte-level simulated boards (Kerong CU48, CU16, Modbus relay) and a
simulated serial scanner (or a camera: a folder of frames), writes a
ready-to-run daemon configuration that points at their ptys, and then takes
commands — typed, or from a scenario file — to act as the world around the
cabinet: people opening and closing doors, a jammed lock, a forced door, a
board unplugged, a code scanned, a QR shown to the camera.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from drivers.sim import SimBoard
from locker.qr import save_png
from simulator.kerong import KerongSim
from simulator.pty_device import PtyDevice
from simulator.scanner import SimScanner

HELP = """commands (N = compartment number, B = board name):
  status                      doors of every compartment
  open N | close N            a person opens / closes a door
  force N                     a door pulled open without an unlock
  jam N | unjam N             the lock does not / does release again
  stick N open|closed|off     the door sensor is stuck (off = works again)
  unplug B | plug B           the board leaves / rejoins the bus
  fault B no-reply|bad-checksum [COUNT] | fault B split on|off
  scan TEXT                   the scanner reads TEXT (a code or a QR text)
  unplug-scanner | plug-scanner
  show TEXT | show FILE.png   (--camera) a QR of TEXT, or an image, held to the camera
  sleep SECONDS               (scenario files) wait
  help | quit"""


class ConsoleError(Exception):
    """A command the console cannot carry out (shown to the technician, who carries on)."""


@dataclass
class SimCompartment:
    number: int
    board: str
    sim: SimBoard
    channel: int


@dataclass
class SimBus:
    device: PtyDevice
    driver: str
    boards: dict[str, int] = field(default_factory=dict)  # board name -> address


class Cabinet:
    """The simulated hardware of one cabinet and the config that drives it."""

    def __init__(
        self,
        folder: Path,
        cu48: int = 1,
        cu16: int = 0,
        modbus: int = 0,
        scanner: bool = True,
        door_close_s: float = 0.0,
        baud: int = 19200,
        locker_id: str = "sim-locker",
        camera: bool = False,
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.compartments: dict[int, SimCompartment] = {}
        self.buses: list[SimBus] = []
        self.sims: dict[str, SimBoard] = {}
        self.scanner: SimScanner | None = None
        self._frames = 0
        boards_toml: list[str] = []
        comps_toml: list[str] = []
        number = 1
        plan = [("kerong-cu48", cu48, 48), ("kerong-cu16", cu16, 16), ("modbus-relay", modbus, 8)]
        for driver, count, channels in plan:
            if not count:
                continue
            boards: dict[int, SimBoard] = {}
            bus_baud = 9600 if driver == "modbus-relay" else baud
            names: dict[str, int] = {}
            for i in range(count):
                address = i + 1 if driver == "modbus-relay" else i
                name = f"{driver.split('-')[-1]}-{address}"
                sim = SimBoard(name, channels=channels, door_close_s=door_close_s)
                boards[address] = sim
                self.sims[name] = sim
                names[name] = address
            device: PtyDevice
            if driver == "modbus-relay":
                from simulator.modbus import ModbusRelaySim  # noqa: PLC0415 - only when asked

                device = ModbusRelaySim(boards, baud=bus_baud)
            else:
                device = KerongSim(driver.split("-")[-1], boards, baud=bus_baud)
            self.buses.append(SimBus(device, driver, names))
            for name, address in names.items():
                boards_toml.append(
                    f'[[boards]]\nname = "{name}"\ndriver = "{driver}"\nport = "{device.path}"\n'
                    f"baud = {bus_baud}\naddress = {address}\nchannels = {channels}\n"
                )
                first = number
                for channel in range(1, channels + 1):
                    self.compartments[number] = SimCompartment(
                        number, name, self.sims[name], channel
                    )
                    number += 1
                size = "S" if driver != "modbus-relay" else "M"
                comps_toml.append(
                    f'[[compartments]]\nnumbers = "{first}-{number - 1}"\n'
                    f'channels = "1-{channels}"\nboard = "{name}"\nsize = "{size}"\n'
                )
        scanner_toml = '[scanner]\ndriver = "none"\n'
        # The camera: a folder whose image files lockerd reads as frames (`show`).
        self.camera: Path | None = folder / "camera" if camera else None
        if self.camera is not None:
            self.camera.mkdir(exist_ok=True)
            scanner_toml = f'[scanner]\ndriver = "camera"\nport = "folder:{self.camera}"\n'
        elif scanner:
            self.scanner = SimScanner(folder)
            scanner_toml = f'[scanner]\ndriver = "serial"\nport = "{self.scanner.path}"\n'
        self.config_path = folder / "locker.toml"
        self.config_path.write_text(
            "# Written by locker-sim boards: the daemon configuration for these simulated ptys.\n"
            f'[locker]\nid = "{locker_id}"\ndata_dir = "{folder / "data"}"\n\n'
            + "\n".join(boards_toml)
            + "\n"
            + "\n".join(comps_toml)
            + "\n"
            + scanner_toml
            + f'\n[api]\nsocket = "{folder / "api.sock"}"\n'
        )

    def close(self) -> None:
        for bus in self.buses:
            bus.device.close()
        if self.scanner is not None:
            self.scanner.close()

    def _show(self, what: str) -> str:
        """Hold a QR (made from the text, as the platform makes it) or an image to the camera."""
        if self.camera is None:
            raise ConsoleError("no camera in this cabinet (locker-sim boards --camera)")
        if not what:
            raise ConsoleError("show TEXT or show FILE.png")
        self._frames += 1
        part = self.camera / f"frame-{self._frames:05d}.part"
        source = Path(what)
        if source.suffix.lower() in (".png", ".jpg", ".jpeg") and source.is_file():
            shutil.copyfile(source, part)
        else:
            save_png(what, part)
        # Renamed once whole: the daemon never reads half a frame.
        part.replace(part.with_suffix(".png"))
        return f"shown to the camera: {source.name if source.is_file() else 'QR of the text'}"

    def _bus_of(self, board: str) -> SimBus:
        for bus in self.buses:
            if board in bus.boards:
                return bus
        raise ConsoleError(f"no board {board} (boards: {', '.join(self.sims)})")

    def _compartment(self, text: str) -> SimCompartment:
        comp = self.compartments.get(int(text))
        if comp is None:
            raise ConsoleError(f"no compartment {text} (1-{len(self.compartments)})")
        return comp

    def status(self) -> str:
        lines = []
        for name, sim in self.sims.items():
            bus = self._bus_of(name)
            state = "OFF THE BUS" if bus.device.faults.offline else "on the bus"
            doors = sim.read_doors()
            opened = [
                str(c.number)
                for c in self.compartments.values()
                if c.board == name and doors[c.channel]
            ]
            jammed = [
                str(c.number)
                for c in self.compartments.values()
                if c.board == name and c.channel in sim.jammed
            ]
            lines.append(
                f"{name} ({bus.driver}, {bus.device.path}): {state};"
                f" open: {', '.join(opened) or 'none'}; jammed: {', '.join(jammed) or 'none'}"
            )
        if self.scanner is not None:
            lines.append(f"scanner: {self.scanner.path}")
        return "\n".join(lines)

    def run(self, line: str) -> str:
        """Carry out one console command; returns what to show."""
        if line.strip().startswith("#"):
            return ""
        words = shlex.split(line)
        if not words:
            return ""
        cmd, args = words[0], words[1:]
        if cmd == "help":
            return HELP
        if cmd == "status":
            return self.status()
        if cmd in ("open", "force"):
            c = self._compartment(args[0])
            c.sim.open_door(c.channel)
            return f"compartment {c.number} door open"
        if cmd == "close":
            c = self._compartment(args[0])
            c.sim.close_door(c.channel)
            return f"compartment {c.number} door closed"
        if cmd in ("jam", "unjam"):
            c = self._compartment(args[0])
            (c.sim.jammed.add if cmd == "jam" else c.sim.jammed.discard)(c.channel)
            return f"compartment {c.number} lock {'jammed' if cmd == 'jam' else 'working'}"
        if cmd == "stick":
            c = self._compartment(args[0])
            if args[1] == "off":
                c.sim.stuck.pop(c.channel, None)
            else:
                c.sim.stuck[c.channel] = args[1] == "open"
            return f"compartment {c.number} sensor stuck {args[1]}"
        if cmd in ("unplug", "plug"):
            bus = self._bus_of(args[0])
            bus.device.faults.offline = cmd == "unplug"
            return f"bus of {args[0]} {'off' if cmd == 'unplug' else 'back on'} the wire"
        if cmd == "fault":
            faults = self._bus_of(args[0]).device.faults
            kind = args[1]
            if kind == "split":
                faults.split = args[2:] != ["off"]
            elif kind == "no-reply":
                faults.no_reply = int(args[2]) if len(args) > 2 else 1
            elif kind == "bad-checksum":
                faults.bad_checksum = int(args[2]) if len(args) > 2 else 1
            else:
                raise ConsoleError(f"unknown fault {kind}")
            return f"fault {kind} on the bus of {args[0]}"
        if cmd == "scan":
            if self.scanner is None:
                raise ConsoleError("no scanner in this cabinet")
            self.scanner.scan(" ".join(args))
            return "scanned"
        if cmd == "show":
            return self._show(" ".join(args))
        if cmd in ("unplug-scanner", "plug-scanner"):
            if self.scanner is None:
                raise ConsoleError("no scanner in this cabinet")
            (self.scanner.unplug if cmd == "unplug-scanner" else self.scanner.plug)()
            return f"scanner {'unplugged' if cmd == 'unplug-scanner' else 'back'}"
        if cmd == "sleep":
            time.sleep(float(args[0]))
            return ""
        raise ConsoleError(f"unknown command {cmd!r}; type help")


def run_console(cabinet: Cabinet, lines: Iterable[str], out: TextIO, prompt: bool) -> None:
    if prompt:
        out.write("locker-sim> ")
        out.flush()
    for line in lines:
        if line.strip() in ("quit", "exit"):
            break
        try:
            shown = cabinet.run(line)
        except (ConsoleError, IndexError, ValueError) as exc:
            shown = f"error: {exc}"
        if shown:
            out.write(shown + "\n")
        if prompt:
            out.write("locker-sim> ")
        out.flush()


def main_boards(
    folder: str,
    cu48: int,
    cu16: int,
    modbus: int,
    scanner: bool,
    door_close_s: float,
    scenario: str | None,
    camera: bool = False,
) -> int:
    cabinet = Cabinet(
        Path(folder), cu48, cu16, modbus, scanner and not camera, door_close_s, camera=camera
    )
    out = sys.stdout
    out.write(f"simulated cabinet ready; daemon configuration: {cabinet.config_path}\n")
    out.write(f"run:  lockerd --config {cabinet.config_path}\n")
    out.write(cabinet.status() + "\n")
    out.flush()
    try:
        if scenario:
            with open(scenario, encoding="utf-8") as f:
                run_console(cabinet, f, out, prompt=False)
        else:
            out.write("type help for the commands\n")
            run_console(cabinet, sys.stdin, out, prompt=sys.stdin.isatty())
    except KeyboardInterrupt:
        pass
    finally:
        cabinet.close()
    return 0
