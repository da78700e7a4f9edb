"""Benchmark: the HAProxy ``show stat`` CSV parser on load-balancer-VM sized payloads.

Payloads: the real 2.6.12 capture (15 rows x 120 columns) and a deterministic synthetic one built
from the capture's own rows (frontend, socket listener, servers, backend per proxy, as an AKS-HCI
LB VM with many LoadBalancer services prints them), with counters, addresses and names varied so
no two rows are alike. Numbers are printed as HAProxy prints them (plain decimal, ``-1`` for
"never", empty where a column does not apply to the row type).

Run::

    .venv/bin/python bench/bench_haproxy_parse.py                 # capture + 300-row payload
    .venv/bin/python bench/bench_haproxy_parse.py --rows 2000 --repeat 5
    .venv/bin/python bench/bench_haproxy_parse.py --compare /tmp/old_parse.py   # before/after

``--compare`` loads another version of ``collector/sources/haproxy/parse.py`` from a file (e.g.
``git show main:collector/sources/haproxy/parse.py > /tmp/old_parse.py``), checks both give equal
results on every payload and prints both rates and the speed-up.

Two workloads per payload: ``cold`` parses the same payload again and again with skeleton reuse
off (``HCIWATCH_PARSE_REUSE=0``), every read in full; ``repeat`` is what a collector or a replay
sees, the same target read again with every counter moved (two alternating reads), with reuse on
(see ``collector/sources/haproxy/_reuse.py``). Rates are samples per second of wall time and of
CPU time (one core: the parser is single-threaded).
"""

from __future__ import annotations

import argparse
import csv
import gc
import importlib.util
import io
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector.catalog import DEFAULT_CATALOG, Catalog  # noqa: E402
from collector.schema import ParseResult, RawRecord  # noqa: E402
from collector.sources.haproxy.parse import ID_COLUMNS, TEXT_COLUMNS, parse_record  # noqa: E402

CAPTURE = ROOT / "collector" / "sources" / "haproxy" / "testdata" / "show_stat_2.6.12.csv"
Parser = Callable[[RawRecord, Catalog], ParseResult]


def synthetic_payload(rows: int, seed: int = 20261120) -> bytes:
    """``rows`` data rows in the capture's 2.6.12 layout, grouped by proxy like HAProxy prints them."""
    text = CAPTURE.read_text()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0][2:].split(",")
    table = [next(csv.reader([ln])) for ln in lines[1:]]
    col = {name: i for i, name in enumerate(header)}
    by_kind = {
        "frontend": next(r for r in table if r[col["svname"]] == "FRONTEND" and r[0] != "stats"),
        "listener": next(r for r in table if r[col["type"]] == "3"),
        "server_up": next(r for r in table if r[col["svname"]] == "control-plane-1"),
        "server_down": next(r for r in table if r[col["svname"]] == "control-plane-3"),
        "backend": next(r for r in table if r[col["svname"]] == "BACKEND" and r[0] != "stats"),
    }
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    out.write(lines[0] + "\n")
    written = 0
    proxy = 0
    while written < rows:
        proxy += 1
        name = f"svc-ns{proxy % 17}-app{proxy}-{rng.choice([80, 443, 8080, 6443])}"
        servers = rng.randint(2, 6)
        plan: list[tuple[str, str, str]] = [("frontend", name, "FRONTEND"), ("listener", name, "sock-1")]
        plan += [
            ("server_down" if rng.random() < 0.1 else "server_up", f"{name}-nodes", f"worker-{i}")
            for i in range(1, servers + 1)
        ]
        plan.append(("backend", f"{name}-nodes", "BACKEND"))
        for kind, px, sv in plan[: rows - written]:
            row = list(by_kind[kind])
            row[col["pxname"]], row[col["svname"]] = px, sv
            for i, name_ in enumerate(header):
                cell = row[i]
                if name_ in ("pid", "iid", "sid", "type") or not cell or cell == "-1":
                    continue
                if cell.isdigit():
                    row[i] = str(rng.randint(0, 10 ** rng.randint(1, 12)))
            if kind == "listener":
                row[col["addr"]] = f"10.0.{proxy % 250}.{proxy % 200 + 10}:{rng.choice([80, 443])}"
            elif kind.startswith("server"):
                port = rng.randint(30000, 32767)
                row[col["addr"]] = f"10.1.{rng.randint(0, 3)}.{rng.randint(10, 250)}:{port}"
            writer.writerow(row)
            written += 1
    return out.getvalue().encode()


def load_parser(path: Path) -> Parser:
    spec = importlib.util.spec_from_file_location("haproxy_parse_compare", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser: Parser = module.parse_record
    return parser


def next_read(body: bytes, k: int) -> bytes:
    """The same payload ``k`` reads later: every metric counter moved, rows and text unchanged."""
    if k == 0:
        return body
    out: list[bytes] = []
    header: list[str] = []
    for line in body.split(b"\n"):
        if line.startswith(b"#"):
            header = line[1:].lstrip(b" ").decode().split(",")
        elif line.strip() and b'"' not in line:
            cells = line.split(b",")
            for i, cell in enumerate(cells[: len(header)]):
                name = header[i].strip()
                if name and name not in ID_COLUMNS and name not in TEXT_COLUMNS and cell.isdigit():
                    cells[i] = str(int(cell) + k * (1 + int(cell) // 1000)).encode()
            line = b",".join(cells)
        out.append(line)
    return b"\n".join(out)


def rate(parser: Parser, records: list[RawRecord], repeat: int) -> tuple[float, float, int]:
    """Median samples/s of wall and of CPU time over ``repeat`` timed runs (each ~0.2 s or more).

    The records are parsed in turn (a repeated read alternates between two of them).
    """
    samples = parser(records[0], DEFAULT_CATALOG).samples.num_rows
    start = time.perf_counter()
    parser(records[-1], DEFAULT_CATALOG)
    once = max(time.perf_counter() - start, 1e-6)
    loops = max(len(records), int(0.2 / once))
    walls, cpus = [], []
    gc.collect()
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(loops):
            parser(records[i % len(records)], DEFAULT_CATALOG)
        walls.append(samples * loops / (time.perf_counter() - w0))
        cpus.append(samples * loops / max(time.process_time() - c0, 1e-9))
    return statistics.median(walls), statistics.median(cpus), samples


def same(a: ParseResult, b: ParseResult) -> bool:
    return bool(
        a.samples.equals(b.samples)
        and a.ip_observations.equals(b.ip_observations)
        and [str(e) for e in a.errors] == [str(e) for e in b.errors]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300, help="rows of the synthetic payload (default 300)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--compare", type=Path, help="another parse.py to measure against (the 'before')")
    args = ap.parse_args()
    ts = datetime(2026, 11, 20, tzinfo=UTC)
    payloads = {
        CAPTURE.name: CAPTURE.read_bytes(),
        f"synthetic-{args.rows}-rows": synthetic_payload(args.rows),
    }
    other = load_parser(args.compare) if args.compare else None
    print(f"{'payload':<28} {'size':>11} {'samples':>15}  {'workload':<7} {'now wall/s':>12} {'now CPU/s':>12}", end="")
    print(f"  {'before CPU/s':>12} {'x':>6}" if other else "")
    summary: list[str] = []
    for name, body in payloads.items():

        def record(k: int, body: bytes = body) -> RawRecord:
            return RawRecord(
                ts=ts + timedelta(seconds=30 * k),
                kind="haproxy-csv",
                target="unix:///run/haproxy/admin.sock",
                body=next_read(body, k),
                host="lb-vm-1",
                labels={"cluster": "hci-1", "network": "vnet-1"},
            )

        for workload, reuse, records in (
            ("cold", "0", [record(0)]),
            ("repeat", "1", [record(1), record(2)]),
        ):
            os.environ["HCIWATCH_PARSE_REUSE"] = reuse
            parse_record(record(0), DEFAULT_CATALOG)  # the target's previous read
            wall, cpu, samples = rate(parse_record, records, args.repeat)
            line = (
                f"{name:<28} {len(body) / 1024:7.1f} KiB {samples:7d} samples  {workload:<7} {wall:12,.0f} {cpu:12,.0f}"
            )
            if other is not None:
                for rec in records:
                    if not same(parse_record(rec, DEFAULT_CATALOG), other(rec, DEFAULT_CATALOG)):
                        raise SystemExit(f"{name}: results differ from {args.compare}")
                _, before, _ = rate(other, records, args.repeat)
                line += f"  {before:12,.0f} x{cpu / before:5.1f}"
            print(line, flush=True)
            kind = "capture" if name == CAPTURE.name else "synthetic"
            summary.append(f"{kind}_{workload}={cpu:.0f}")
    os.environ.pop("HCIWATCH_PARSE_REUSE", None)
    print(f"RESULT haproxy_parse rows={args.rows} " + " ".join(summary) + " (samples per CPU-second)")


if __name__ == "__main__":
    main()
