"""What the locker's two services (`lockerd`, `locker-standby`) share on their command
line: the configuration file, `--check`, the log level, and the log's format."""

from __future__ import annotations

import argparse
import logging
import os

from locker.config import DEFAULT_CONFIG

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def service_arguments(
    prog: str, description: str, check_help: str, argv: list[str] | None
) -> argparse.Namespace:
    """`--config`, `--check` and `--log-level` read, and the log started at that level."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="TOML configuration file")
    parser.add_argument("--check", action="store_true", help=check_help)
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LOCKER_LOG", "INFO").upper(),
        type=str.upper,
        choices=LOG_LEVELS,
        help="how much to log (environment: LOCKER_LOG)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return args
