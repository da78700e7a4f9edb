"""``make chaos``: run every chaos scenario against the real service and print the table.

Usage: ``python -m tests.chaos.run [--quick] [--only NAME ...] [--work DIR]``. Needs root for the
full-disk row (a small tmpfs is mounted) and prlimit(1) for the descriptor row; a row that cannot
run here is listed as skipped with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from tests.chaos.harness import print_table
from tests.chaos.scenarios import FULL, QUICK, run_all


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="the short profile the test suite runs")
    p.add_argument("--only", nargs="*", help="scenario function names")
    p.add_argument("--work", type=Path, help="keep the data and logs here (default: a temporary directory)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="hciwatch-chaos-") as tmp:
        work = args.work or Path(tmp)
        rows, skipped = asyncio.run(run_all(work, QUICK if args.quick else FULL, args.only))
    print_table(rows)
    for s in skipped:
        print(f"skipped: {s}")
    bad = [r for r in rows if r.lost or r.alerts_lost]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
