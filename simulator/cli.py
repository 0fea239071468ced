"""`locker-sim`: the technicians' simulator console."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator import demo

D = " (default: %(default)s)"  # every option with a default shows it in --help


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="locker-sim", description="Pickup locker simulator")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_demo = sub.add_parser(
        "demo", help="run the real locker service on a simulated board through a whole order"
    )
    p_demo.add_argument("--config", default="config/example.toml", help="the configuration" + D)
    p_demo.add_argument(
        "--keep-data",
        action="store_true",
        help="use the config's data_dir instead of a fresh temporary one",
    )
    p_stack = sub.add_parser(
        "stack",
        help="a local Mosquitto, simulated boards, lockerd and the platform: one whole order",
    )
    p_stack.add_argument(
        "--dir", help="where to keep the files (default: a temporary folder, removed at the end)"
    )
    p_stack.add_argument(
        "--stay",
        action="store_true",
        help="with a screen: then leave the kiosk running with orders to try, until Ctrl-C",
    )
    p_platform = sub.add_parser("platform", help="the platform simulator (reserve orders)")
    p_platform.add_argument("--host", default="127.0.0.1", help="the MQTT broker's host" + D)
    p_platform.add_argument(
        "--port",
        type=int,
        default=1883,
        help="the MQTT broker's port (locker-sim boards prints the one to use)" + D,
    )
    p_platform.add_argument("--prefix", default="lockers", help="the topic prefix" + D)
    p_platform.add_argument("--locker", required=True, help="locker id to reserve at")
    p_platform.add_argument("--orders", type=int, default=1, help="orders to reserve" + D)
    p_platform.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the locker's reply to each command" + D,
    )
    p_platform.add_argument(
        "--follow", action="store_true", help="then keep printing events and confirming receipts"
    )
    p_platform.add_argument(
        "--qr-dir", default="var/qr", help="where the shoppers' pickup QR codes go (PNG)" + D
    )
    p_boards = sub.add_parser(
        "boards",
        help="simulated lock boards and scanner on ptys, with a console to act on them",
    )
    p_boards.add_argument("--dir", default="var/sim", help="where the config and data go" + D)
    p_boards.add_argument(
        "--cu48",
        type=int,
        help="Kerong CU48 boards on one bus (default: 1 if no board option is given, else 0)",
    )
    p_boards.add_argument("--cu16", type=int, help="Kerong CU16 boards on one bus (default: 0)")
    p_boards.add_argument("--modbus", type=int, help="Modbus relay boards on one bus (default: 0)")
    p_boards.add_argument(
        "--generic8a", type=int, help="generic 8A boards (8 channels) on one bus (default: 0)"
    )
    p_boards.add_argument("--no-scanner", action="store_true", help="no serial scanner")
    p_boards.add_argument(
        "--door-close-s",
        type=float,
        default=0.0,
        help="an unlocked door closes by itself after this (0: close it with 'close N')" + D,
    )
    p_boards.add_argument("--scenario", help="a file of console commands to run instead")
    p_boards.add_argument(
        "--camera",
        action="store_true",
        help="a camera (a folder of frames, `show TEXT`) instead of the serial scanner",
    )
    p_boards.add_argument(
        "--locker-id", default="store-001-a", help="the simulated locker's id" + D
    )
    mqtt = p_boards.add_mutually_exclusive_group()
    mqtt.add_argument(
        "--mqtt-port",
        type=int,
        help="use the MQTT broker already listening on 127.0.0.1 at this port"
        " (default: start a private Mosquitto on a free port)",
    )
    mqtt.add_argument(
        "--no-mqtt", action="store_true", help="no broker: lockerd runs without the platform"
    )
    args = parser.parse_args(argv)
    if args.cmd == "demo":
        return demo.run(args.config, keep_data=args.keep_data)
    if args.cmd == "stack":
        from simulator.stack import run_stack  # noqa: PLC0415

        return run_stack(args.dir, stay=args.stay)
    if args.cmd == "platform":
        return _platform(args)
    if args.cmd == "boards":
        # Imported here: the demo needs none of the byte-level simulators.
        from simulator.console import main_boards  # noqa: PLC0415

        counts = (args.cu48, args.cu16, args.modbus, args.generic8a)
        # One CU48 only when no board is asked for: `--cu16 1` means a CU16 cabinet.
        none_asked = all(c is None for c in counts)
        cu48, cu16, modbus, generic8a = (1, 0, 0, 0) if none_asked else (c or 0 for c in counts)
        return main_boards(
            args.dir,
            cu48=cu48,
            cu16=cu16,
            modbus=modbus,
            generic8a=generic8a,
            scanner=not args.no_scanner,
            door_close_s=args.door_close_s,
            scenario=args.scenario,
            camera=args.camera,
            locker_id=args.locker_id,
            broker=args.mqtt_port is None and not args.no_mqtt,
            mqtt_port=args.mqtt_port,
        )
    return 2


def _platform(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415

    from simulator.platform import NoBroker, NoReply, PlatformSim  # noqa: PLC0415

    try:
        sim = PlatformSim(args.host, args.port, args.prefix, qr_dir=Path(args.qr_dir))
    except NoBroker as exc:
        print(
            f"locker-sim platform: {exc}; is `locker-sim boards` running? it prints the port",
            file=sys.stderr,
        )
        return 1
    try:
        for i in range(args.orders):
            order_id = f"SO-{time.strftime('%Y%m%d-%H%M%S')}-{i:03d}"
            sim.reserve(
                args.locker,
                order_id,
                [{"sku": "6901234567890", "name": "Tea", "qty": 1, "fresh": False, "size": "S"}],
                timeout=args.timeout,
            )
        while args.follow:
            time.sleep(1)
    except NoReply as exc:
        print(
            f"locker-sim platform: {exc}; is lockerd running with the configuration"
            f" `locker-sim boards` wrote (locker id {args.locker}, MQTT port {args.port})?",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        sim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
