"""``hciwatch import`` throughput, and what a gap between files costs.

Writes typeperf CSVs (one host, a few NIC/RDMA/SMB counters, one row per second) in two groups
``--gap-days`` apart, imports them through the whole flow (store and detectors) and prints rows/s
and the number of detector passes. The passes must follow the data: with the gap skipped, files
eight months apart cost about what two adjacent files cost.

    .venv/bin/python bench/bench_import.py [--rows 20000] [--files 4] [--gap-days 240]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hciwatch.config import default_config
from hciwatch.importer import run_import

COUNTERS = [
    "Network Interface(Mellanox ConnectX-6 Dx Adapter)\\Bytes Received/sec",
    "Network Interface(Mellanox ConnectX-6 Dx Adapter)\\Packets Received Discarded",
    "RDMA Activity(Mellanox ConnectX-6 Dx Adapter)\\RDMA Inbound Bytes/sec",
    "SMB Client Shares(\\\\sofs\\vms)\\Avg. sec/Data Request",
]


def write_file(path: Path, start: datetime, rows: int) -> None:
    header = ['"(PDH-CSV 4.0) (Coordinated Universal Time)(0)"'] + [f'"\\\\NODE1\\{c}"' for c in COUNTERS]
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(header) + "\r\n")
        for i in range(rows):
            t = start + timedelta(seconds=i)
            fh.write(f'"{t:%m/%d/%Y %H:%M:%S}.000","{1e6 + i}","{i // 100}","{2e6 + i}","0.0012"\r\n')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000, help="rows per file")
    ap.add_argument("--files", type=int, default=4, help="files, in two groups --gap-days apart")
    ap.add_argument("--gap-days", type=float, default=240.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        t0 = datetime(2024, 11, 1, tzinfo=UTC)
        paths = []
        for k in range(args.files):
            group = t0 + (timedelta(days=args.gap_days) if k >= args.files // 2 else timedelta(0))
            p = tmp / f"node1-{k}.csv"
            write_file(p, group + timedelta(seconds=k * args.rows), args.rows)
            paths.append(p)
        data = tmp / "data"
        started = time.perf_counter()
        result = run_import(reversed(paths), default_config(data), data)
        took = time.perf_counter() - started
        s = result.summary
        rows = args.rows * args.files
        print(
            f"import: {rows} rows in {args.files} files {args.gap_days:g} days apart: {took:.2f} s, "
            f"{rows / took:,.0f} rows/s, {s['samples_stored']} samples, {s['evaluations']} detector passes"
        )
        return 0 if result.exit_code == 0 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
