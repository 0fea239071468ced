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
    args = parser.parse_args(argv)
    if args.cmd == "demo":
        return demo.run(args.config, keep_data=args.keep_data)
    return 2


if __name__ == "__main__":
    sys.exit(main())
