"""`locker-sim boards`: simulated lock boards and a scanner on ptys, for technicians.

Starts byte-level simulated boards (Kerong CU48, CU16, Modbus relay, generic 8A) and a
simulated serial scanner (or a camera: a folder of frames), writes a
ready-to-run daemon configuration that points at their ptys, and then takes
commands — typed, or from a scenario file — to act as the world around the
cabinet: people opening and closing doors, a jammed lock, a forced door, a
board unplugged, a code scanned, a QR shown to the camera.
"""

from __future__ import annotations

import json
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
from simulator.broker import Broker
from simulator.kerong import KerongSim
from simulator.pty_device import PtyDevice
from simulator.scanner import SimScanner

HELP = """commands (N = compartment number, B = board name):
  status                      doors of every compartment
  open N | close N            a person opens / closes a door
  force N                     a door pulled open without an unlock
  jam N | unjam N             the lock does not / does release again
  stick N open|closed|off     the door sensor is stuck (off = works again)
  unplug B | plug B           board B leaves / rejoins the bus (the others carry on)
  unplug-bus B | plug-bus B   the whole bus of board B goes silent / comes back (a cut cable)
  fault B no-reply|bad-checksum [COUNT] | fault B split on|off
  scan TEXT                   the scanner reads TEXT (a code or a QR text)
  unplug-scanner | plug-scanner
  show TEXT | show FILE.png   (--camera) a QR of TEXT, or an image, held to the camera
  sleep SECONDS               (scenario files) wait
  help | quit"""


@dataclass(frozen=True)
class Syntax:
    """How a command is written: checked before it runs, so that a scenario file with a
    mistake on its last line is refused before its first line acts on the cabinet."""

    usage: str
    args: tuple[int, int | None]  # fewest and most words after the command (None: any)
    number: bool = False  # the first word is a compartment number
    board: bool = False  # the first word is a board name
    choices: tuple[str, ...] = ()  # what the second word may be


_N = "N (a compartment number)"
SYNTAX: dict[str, Syntax] = {
    "help": Syntax("help", (0, 0)),
    "status": Syntax("status", (0, 0)),
    "quit": Syntax("quit", (0, 0)),
    "exit": Syntax("exit", (0, 0)),
    "open": Syntax(f"open {_N}", (1, 1), number=True),
    "close": Syntax(f"close {_N}", (1, 1), number=True),
    "force": Syntax(f"force {_N}", (1, 1), number=True),
    "jam": Syntax(f"jam {_N}", (1, 1), number=True),
    "unjam": Syntax(f"unjam {_N}", (1, 1), number=True),
    "stick": Syntax(
        f"stick {_N} open|closed|off", (2, 2), number=True, choices=("open", "closed", "off")
    ),
    "unplug": Syntax("unplug B (a board name)", (1, 1), board=True),
    "plug": Syntax("plug B (a board name)", (1, 1), board=True),
    "unplug-bus": Syntax("unplug-bus B (any board on that bus)", (1, 1), board=True),
    "plug-bus": Syntax("plug-bus B (any board on that bus)", (1, 1), board=True),
    "fault": Syntax(
        "fault B no-reply|bad-checksum [COUNT] | fault B split on|off",
        (2, 3),
        board=True,
        choices=("no-reply", "bad-checksum", "split"),
    ),
    "scan": Syntax("scan TEXT", (1, None)),
    "show": Syntax("show TEXT | show FILE.png", (1, None)),
    "unplug-scanner": Syntax("unplug-scanner", (0, 0)),
    "plug-scanner": Syntax("plug-scanner", (0, 0)),
    "sleep": Syntax("sleep SECONDS", (1, 1)),
}


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


QUIT = ("quit", "exit")
BIN = Path(sys.executable).parent  # lockerd and locker-sim sit beside this interpreter


def _q(value: object) -> str:
    """A TOML string (JSON's escapes are TOML's): a path with a quote stays one value."""
    return json.dumps(str(value))


class Cabinet:
    """The simulated hardware of one cabinet and the config that drives it.

    Every path written in the config is absolute: lockerd resolves a relative path
    against the config's folder and the simulator against its working directory, so
    `--dir var/sim` would otherwise put the database in var/sim/var/sim and the camera's
    frames where lockerd never looks.
    """

    def __init__(
        self,
        folder: Path,
        cu48: int = 1,
        cu16: int = 0,
        modbus: int = 0,
        scanner: bool = True,
        door_close_s: float = 0.0,
        baud: int = 19200,
        locker_id: str = "store-001-a",
        camera: bool = False,
        mqtt_port: int | None = None,
        generic8a: int = 0,
    ) -> None:
        folder = folder.resolve()
        self.folder = folder
        self.locker_id = locker_id
        folder.mkdir(parents=True, exist_ok=True)
        self.compartments: dict[int, SimCompartment] = {}
        self.buses: list[SimBus] = []
        self.sims: dict[str, SimBoard] = {}
        self.scanner: SimScanner | None = None
        self._frames = 0
        boards_toml: list[str] = []
        comps_toml: list[str] = []
        number = 1
        plan = [
            ("kerong-cu48", cu48, 48),
            ("kerong-cu16", cu16, 16),
            ("modbus-relay", modbus, 8),
            ("generic-8a", generic8a, 8),  # the 8-channel board of the worked example
        ]
        for driver, count, channels in plan:
            if not count:
                continue
            boards: dict[int, SimBoard] = {}
            # Relay and 8A boards leave the factory at 9600; 8A DIP addresses start at 1.
            bus_baud = 9600 if driver in ("modbus-relay", "generic-8a") else baud
            names: dict[str, int] = {}
            for i in range(count):
                address = i + 1 if driver in ("modbus-relay", "generic-8a") else i
                name = f"{driver.split('-')[-1]}-{address}"
                sim = SimBoard(name, channels=channels, door_close_s=door_close_s)
                boards[address] = sim
                self.sims[name] = sim
                names[name] = address
            device: PtyDevice
            if driver == "modbus-relay":
                from simulator.modbus import ModbusRelaySim  # noqa: PLC0415 - only when asked

                device = ModbusRelaySim(boards, baud=bus_baud)
            elif driver == "generic-8a":
                from simulator.generic8a import Generic8aSim  # noqa: PLC0415 - only when asked

                device = Generic8aSim(boards, baud=bus_baud)
            else:
                device = KerongSim(driver.split("-")[-1], boards, baud=bus_baud)
            self.buses.append(SimBus(device, driver, names))
            for name, address in names.items():
                boards_toml.append(
                    f"[[boards]]\nname = {_q(name)}\ndriver = {_q(driver)}\n"
                    f"port = {_q(device.path)}\nbaud = {bus_baud}\naddress = {address}\n"
                    f"channels = {channels}\n"
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
                    f'channels = "1-{channels}"\nboard = {_q(name)}\nsize = "{size}"\n'
                )
        scanner_toml = '[scanner]\ndriver = "none"\n'
        # The camera: a folder whose image files lockerd reads as frames (`show`).
        self.camera: Path | None = folder / "camera" if camera else None
        if self.camera is not None:
            self.camera.mkdir(exist_ok=True)
            scanner_toml = f'[scanner]\ndriver = "camera"\nport = {_q(f"folder:{self.camera}")}\n'
        elif scanner:
            self.scanner = SimScanner(folder)
            scanner_toml = f'[scanner]\ndriver = "serial"\nport = {_q(self.scanner.path)}\n'
        # Without a broker the daemon is told so, rather than left knocking at port 1883,
        # where a real platform's broker may be listening.
        mqtt_toml = (
            f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\n'
            if mqtt_port is not None
            else "[mqtt]\nenabled = false\n"
        )
        self.config_path = folder / "locker.toml"
        self.config_path.write_text(
            "# Written by locker-sim boards: the daemon configuration for these simulated ptys.\n"
            f"[locker]\nid = {_q(locker_id)}\ndata_dir = {_q(folder / 'data')}\n\n"
            + mqtt_toml
            + "\n"
            + "\n".join(boards_toml)
            + "\n"
            + "\n".join(comps_toml)
            + "\n"
            + scanner_toml
            + f"\n[api]\nsocket = {_q(folder / 'api.sock')}\n"
        )

    def close(self) -> None:
        for bus in self.buses:
            bus.device.close()
        if self.scanner is not None:
            self.scanner.close()

    def _show(self, what: str) -> str:
        """Hold a QR (made from the text, as the platform makes it) or an image to the camera."""
        assert self.camera is not None  # check() refused `show` without a camera
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
        raise ConsoleError(f"no board {board!r} (boards: {', '.join(self.sims) or 'none'})")

    def _compartment(self, text: str) -> SimCompartment:
        comp = self.compartments.get(int(text)) if text.isdigit() else None
        if comp is None:
            raise ConsoleError(f"no compartment {text} (1-{len(self.compartments)})")
        return comp

    def status(self) -> str:
        lines = []
        for name, sim in self.sims.items():
            bus = self._bus_of(name)
            if bus.device.faults.offline:
                state = "OFF THE BUS (the whole bus is cut)"
            elif bus.boards[name] in bus.device.faults.unplugged:
                state = "OFF THE BUS"
            else:
                state = "on the bus"
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
        if self.camera is not None:
            lines.append(f"camera: {self.camera}")
        return "\n".join(lines)

    @staticmethod
    def parse(line: str) -> list[str]:
        """The words of a console line ([] for a blank line or a comment)."""
        if line.strip().startswith("#"):
            return []
        try:
            return shlex.split(line)
        except ValueError as exc:  # an unclosed quote
            raise ConsoleError(f"cannot read the line: {exc}") from exc

    def check(self, words: list[str]) -> None:
        """Refuse a command that is misspelt, lacks a word or names nothing in this cabinet."""
        cmd, args = words[0], words[1:]
        syntax = SYNTAX.get(cmd)
        if syntax is None:
            raise ConsoleError(f"unknown command {cmd!r}; type help")
        usage = ConsoleError(f"usage: {syntax.usage}")
        fewest, most = syntax.args
        if len(args) < fewest or (most is not None and len(args) > most):
            raise usage
        if syntax.number:
            self._compartment(args[0])
        if syntax.board:
            self._bus_of(args[0])
        if syntax.choices and args[1] not in syntax.choices:
            raise usage
        if cmd == "fault":
            if args[1] == "split":
                if args[2:] not in (["on"], ["off"]):
                    raise usage
            elif args[2:] and not args[2].isdigit():
                raise usage
        if cmd == "sleep":
            try:
                seconds = float(args[0])
            except ValueError:
                raise usage from None
            if not 0 <= seconds < float("inf"):
                raise usage
        if cmd in ("scan", "unplug-scanner", "plug-scanner") and self.scanner is None:
            raise ConsoleError(
                "no serial scanner in this cabinet (it was started with --camera or --no-scanner)"
            )
        if cmd == "show" and self.camera is None:
            raise ConsoleError("no camera in this cabinet (locker-sim boards --camera)")

    def run(self, line: str) -> str:
        """Carry out one console command; returns what to show."""
        words = self.parse(line)
        if not words:
            return ""
        self.check(words)
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
                return f"compartment {c.number} sensor working again"
            c.sim.stuck[c.channel] = args[1] == "open"
            return f"compartment {c.number} sensor stuck {args[1]}"
        if cmd in ("unplug", "plug"):
            bus = self._bus_of(args[0])
            address = bus.boards[args[0]]
            if cmd == "unplug":
                bus.device.faults.unplugged.add(address)
                return f"board {args[0]} unplugged: address {address} no longer answers"
            bus.device.faults.unplugged.discard(address)
            return f"board {args[0]} back on the bus"
        if cmd in ("unplug-bus", "plug-bus"):
            bus = self._bus_of(args[0])
            bus.device.faults.offline = cmd == "unplug-bus"
            boards = ", ".join(bus.boards)
            if cmd == "unplug-bus":
                return f"bus {bus.device.path} cut: {boards} no longer answer"
            return f"bus {bus.device.path} back: {boards} answer again"
        if cmd == "fault":
            return self._fault(args[0], args[1], args[2:])
        if cmd == "scan":
            assert self.scanner is not None  # check() refused `scan` without a scanner
            self.scanner.scan(" ".join(args))
            return "scanned"
        if cmd == "show":
            return self._show(" ".join(args))
        if cmd in ("unplug-scanner", "plug-scanner"):
            assert self.scanner is not None
            (self.scanner.unplug if cmd == "unplug-scanner" else self.scanner.plug)()
            return f"scanner {'unplugged' if cmd == 'unplug-scanner' else 'back'}"
        if cmd == "sleep":
            time.sleep(float(args[0]))
            return ""
        return ""  # quit and exit: the caller stops reading

    def _fault(self, board: str, kind: str, rest: list[str]) -> str:
        faults = self._bus_of(board).device.faults
        if kind == "split":
            faults.split = rest == ["on"]
            if faults.split:
                return f"replies on the bus of {board} now come in two pieces with a pause"
            return f"replies on the bus of {board} come whole again"
        count = int(rest[0]) if rest else 1
        if kind == "no-reply":
            faults.no_reply = count
            return f"the bus of {board} drops the next {count} replies"
        faults.bad_checksum = count
        return f"the bus of {board} corrupts the checksum of the next {count} replies"


def run_console(cabinet: Cabinet, lines: Iterable[str], out: TextIO, prompt: bool) -> None:
    """Typed commands: a mistake is shown and the technician carries on."""
    if prompt:
        out.write("locker-sim> ")
        out.flush()
    for line in lines:
        try:
            words = cabinet.parse(line)
            if words[:1] and words[0] in QUIT:
                break
            shown = cabinet.run(line)
        except (ConsoleError, OSError) as exc:
            shown = f"error: {exc}"
        if shown:
            out.write(shown + "\n")
        if prompt:
            out.write("locker-sim> ")
        out.flush()


def run_scenario(cabinet: Cabinet, path: str, out: TextIO, err: TextIO) -> int:
    """A scenario file: every line is checked before the first one runs, and the first
    failing line stops it; either way the exit status says so (0 only if all ran)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        err.write(f"error: scenario {path}: {exc.strerror or exc}\n")
        return 2
    todo: list[tuple[int, str]] = []
    for n, line in enumerate(lines, 1):
        try:
            words = cabinet.parse(line)
            if words[:1] and words[0] in QUIT:
                break
            if words:
                cabinet.check(words)
                todo.append((n, line))
        except ConsoleError as exc:
            err.write(f"error: {path} line {n}: {exc} (nothing was run)\n")
            return 1
    for n, line in todo:
        try:
            shown = cabinet.run(line)
        except (ConsoleError, OSError) as exc:
            err.write(f"error: {path} line {n}: {exc} (the scenario stopped there)\n")
            return 1
        if shown:
            out.write(shown + "\n")
            out.flush()
    return 0


def _shown(path: Path) -> str:
    """A path as the technician would type it: relative to here when it lies below."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main_boards(
    folder: str,
    *,
    cu48: int,
    cu16: int,
    modbus: int,
    generic8a: int = 0,
    scanner: bool,
    door_close_s: float,
    scenario: str | None,
    camera: bool,
    locker_id: str,
    broker: bool,
    mqtt_port: int | None,
) -> int:
    """`locker-sim boards`: with `broker`, a private Mosquitto for lockerd and the platform
    simulator (`mqtt_port` names a broker already running instead; neither: no MQTT)."""
    out, err = sys.stdout, sys.stderr
    base = Path(folder).resolve()
    mosquitto: Broker | None = None
    if broker:
        try:
            (base / "broker").mkdir(parents=True, exist_ok=True)
            mosquitto = Broker(base / "broker")
        except (OSError, RuntimeError) as exc:
            err.write(
                f"locker-sim boards: cannot start a private Mosquitto ({exc}); install it"
                " (apt-get install mosquitto), or run with --mqtt-port PORT or --no-mqtt\n"
            )
            return 2
        mqtt_port = mosquitto.port
    cabinet = Cabinet(
        base,
        cu48,
        cu16,
        modbus,
        scanner and not camera,
        door_close_s,
        locker_id=locker_id,
        camera=camera,
        mqtt_port=mqtt_port,
        generic8a=generic8a,
    )
    try:
        out.write(
            f"simulated cabinet ready: locker {locker_id};"
            f" daemon configuration: {cabinet.config_path}\n"
        )
        if mosquitto is not None:
            out.write(
                f"MQTT: a private Mosquitto on 127.0.0.1:{mqtt_port} (stops with this console)\n"
            )
        elif mqtt_port is not None:
            out.write(f"MQTT: the broker at 127.0.0.1:{mqtt_port}\n")
        else:
            out.write("MQTT: off ([mqtt] enabled = false): lockerd runs without the platform\n")
        lockerd = [_shown(BIN / "lockerd"), "--config", _shown(cabinet.config_path)]
        out.write(f"run the daemon:     {shlex.join(lockerd)}\n")
        if mqtt_port is not None:
            platform = [_shown(BIN / "locker-sim"), "platform", "--port", str(mqtt_port)]
            platform += ["--locker", locker_id, "--orders", "3", "--follow"]
            out.write(f"play the platform:  {shlex.join(platform)}\n")
        out.write(cabinet.status() + "\n")
        out.flush()
        if scenario:
            return run_scenario(cabinet, scenario, out, err)
        out.write("type help for the commands\n")
        run_console(cabinet, sys.stdin, out, prompt=sys.stdin.isatty())
    except KeyboardInterrupt:
        pass
    finally:
        cabinet.close()
        if mosquitto is not None:
            mosquitto.stop()
    return 0
