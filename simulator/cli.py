"""`locker-sim`: the technicians' simulator console."""

from __future__ import annotations

import argparse
import sys

from simulator import demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="locker-sim", description="Pickup locker simulator")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_demo = sub.add_parser(
        "demo", help="run the real locker service on a simulated board through a whole order"
    )
    p_demo.add_argument("--config", default="config/example.toml")
    p_demo.add_argument(
        "--keep-data",
        action="store_true",
        help="use the config's data_dir instead of a fresh temporary one",
    )
    p_boards = sub.add_parser(
        "boards",
        help="simulated lock boards and scanner on ptys, with a console to act on them",
    )
    p_boards.add_argument("--dir", default="var/sim", help="where the config and ptys' links go")
    p_boards.add_argument("--cu48", type=int, default=1, help="Kerong CU48 boards on one bus")
    p_boards.add_argument("--cu16", type=int, default=0, help="Kerong CU16 boards on one bus")
    p_boards.add_argument("--modbus", type=int, default=0, help="Modbus relay boards on one bus")
    p_boards.add_argument("--no-scanner", action="store_true")
    p_boards.add_argument(
        "--door-close-s",
        type=float,
        default=0.0,
        help="an unlocked door closes by itself after this (0: close it with 'close N')",
    )
    p_boards.add_argument("--scenario", help="a file of console commands to run instead")
    args = parser.parse_args(argv)
    if args.cmd == "demo":
        return demo.run(args.config, keep_data=args.keep_data)
    if args.cmd == "boards":
        # Imported here: the demo needs none of the byte-level simulators.
        from simulator.console import main_boards  # noqa: PLC0415

        return main_boards(
            args.dir,
            args.cu48,
            args.cu16,
            args.modbus,
            not args.no_scanner,
            args.door_close_s,
            args.scenario,
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())
