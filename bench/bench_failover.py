"""Failover times, machine time, printed (never asserted).

Runs the end-to-end failover tests (`tests/test_failover.py`: two lockerd processes,
locker-standby over TLS, the cabinet's boards and scanner on ptys, a real Mosquitto)
`--runs` times and prints what they measure:

- promote -> first pickup served: from `lockerctl promote` starting on the spare
  controller (its receiver already stopped) to the first loaded order's `picked_up`
  reaching the platform: promote, lockerd's start, its connection and status check,
  the scan of the pickup code on the scanner's pty, the door opened and closed on
  the simulated board (it closes by itself after 0.3 s), the event through Mosquitto.
- restore -> first pickup served: the same from `lockerctl restore` of the USB
  stick's copy onto a fresh controller.
- old controller back as the standby, first copy received: from locker-standby's
  start on the fenced controller, through the serving controller's restart with the
  new [replica] standby, to the copy (epoch 2) on the old controller's disk.

Run: .venv/bin/python bench/bench_failover.py [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABELS = (
    "promote -> first pickup served",
    "restore -> first pickup served",
    "old controller back as the standby, first copy received",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    found: dict[str, list[float]] = {label: [] for label in LABELS}
    for run in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
             str(ROOT / "tests" / "test_failover.py")],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            print(out.stdout[-3000:] + out.stderr[-2000:])
            print(f"run {run + 1}: the failover tests failed")
            return 1
        for label in LABELS:
            for value in re.findall(re.escape(label) + r": ([0-9.]+) s", out.stdout):
                found[label].append(float(value))
    for label, values in found.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"{label}: {shown} s (max {max(values):.2f} s; target <= 10 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
