"""`locker-kiosk`: the touchscreen. Not in this release: the daemon runs headless without it."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    sys.stderr.write(
        "locker-kiosk: the touchscreen kiosk is not part of this release yet;"
        " lockerd runs without it (codes come from the scanner path).\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
