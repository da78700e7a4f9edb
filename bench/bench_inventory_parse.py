"""Benchmark: the Kubernetes-inventory (``k8s``) and neighbour-table (``neighbors``) parsers.

Records: the ``k8s`` and ``neighbors`` records of a capture, in capture order — by default a
capture of the demo site generated in memory (``lab.compact_scenario``, 60 s scrapes, like
``make demo``), or ``--capture`` (e.g. the 8 h demo capture). Three workloads per kind, each
timed as CPU time (the parsers are single-threaded) over all records of the kind:

* ``careful``  reuse off (``HCIWATCH_PARSE_REUSE=0``): every record parsed from scratch;
* ``cold``     reuse on, the per-target cache emptied before every record (each record is a
               miss: what a first scrape, or a target seen once, costs);
* ``replay``   reuse on, cache emptied once: what a collector or a replay sees, the same targets
               again and again (see ``collector/sources/k8s_inventory/_reuse.py`` and
               ``collector/sources/neighbors/_reuse.py``).

Rates are output rows (samples + IP observations) per CPU second, also printed as one line
``RESULT inventory_parse k8s_careful=… k8s_cold=… k8s_replay=… neighbors_careful=… …``. Before
the timing, every record's ``replay`` result is checked against the ``careful`` one (IPC bytes of
both tables, error texts, rejections): the run stops at the first difference.

Run::

    .venv/bin/python bench/bench_inventory_parse.py                       # 2 h demo capture
    .venv/bin/python bench/bench_inventory_parse.py --capture cap8.jsonl.zst --repeat 5
    .venv/bin/python bench/bench_inventory_parse.py --code /tmp/base       # another checkout

``--code`` runs another checkout's parsers (the 'before'; an old checkout has no reuse, so all
three workloads are its careful parser).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("k8s", "neighbors")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", type=Path, help="read the records from this capture instead of generating one")
    ap.add_argument("--hours", type=float, default=2.0, help="length of the generated capture (default 2)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per workload; the median is shown")
    ap.add_argument("--code", type=Path, help="import the parsers from this checkout instead")
    args = ap.parse_args()
    sys.path.insert(0, str((args.code or ROOT).resolve()))

    from collector.catalog import Catalog
    from collector.registry import get_parser

    records = load_records(args.capture, args.hours, args.seed)
    catalog = Catalog([])
    caches = reuse_caches()
    print(f"code: {sys.modules['collector'].__file__}")
    print(f"{'kind':<10} {'records':>8} {'rows':>9}  {'workload':<8} {'CPU s':>8} {'rows/CPU s':>12}")
    result: list[str] = []
    for kind in KINDS:
        recs = [r for r in records if r.kind == kind]
        if not recs:
            continue
        parser = get_parser(kind)
        careful = [outcome(parser, r, catalog, "0") for r in recs]  # also warms imports up
        for cache in caches:
            cache.clear()
        replay = [outcome(parser, r, catalog, "1") for r in recs]
        bad = [i for i, (a, b) in enumerate(zip(careful, replay, strict=True)) if a != b]
        if bad:
            raise SystemExit(f"{kind}: record {bad[0]} of {len(recs)} differs between replay and careful")
        rows = sum(o[1] + o[2] for o in careful)

        def careful_run(recs: list[Any] = recs, parser: Callable[..., Any] = parser) -> None:
            os.environ["HCIWATCH_PARSE_REUSE"] = "0"
            for r in recs:
                call(parser, r, catalog)

        def cold_run(recs: list[Any] = recs, parser: Callable[..., Any] = parser) -> None:
            os.environ["HCIWATCH_PARSE_REUSE"] = "1"
            for r in recs:
                for cache in caches:
                    cache.clear()
                call(parser, r, catalog)

        def replay_run(recs: list[Any] = recs, parser: Callable[..., Any] = parser) -> None:
            os.environ["HCIWATCH_PARSE_REUSE"] = "1"
            for cache in caches:
                cache.clear()
            for r in recs:
                call(parser, r, catalog)

        for workload, run in (("careful", careful_run), ("cold", cold_run), ("replay", replay_run)):
            cpu = statistics.median(cpu_time(run) for _ in range(args.repeat))
            print(f"{kind:<10} {len(recs):8d} {rows:9d}  {workload:<8} {cpu:8.3f} {rows / cpu:12,.0f}")
            result.append(f"{kind}_{workload}={rows / cpu:.0f}")
    print("RESULT inventory_parse " + " ".join(result) + " (output rows per CPU-second)")


def load_records(capture: Path | None, hours: float, seed: int) -> list[Any]:
    """The k8s and neighbors records of the capture (or of a generated demo capture)."""
    if capture is not None:
        from collector.capture import read_capture

        return [it.record for it in read_capture(capture) if it.record is not None and it.record.kind in KINDS]
    sys.path.insert(1, str(ROOT))  # lab lives in this checkout
    import lab

    scenario = dataclasses.replace(lab.compact_scenario(seed=seed, hours=hours), interval=timedelta(seconds=60))
    return [r for r in lab.generate(scenario) if r.kind in KINDS]


def reuse_caches() -> list[Any]:
    """The parsers' per-target caches (none in a checkout without them)."""
    caches = []
    for module in ("collector.sources.k8s_inventory._reuse", "collector.sources.neighbors._reuse"):
        with contextlib.suppress(ImportError):
            caches.append(__import__(module, fromlist=["CACHE"]).CACHE)
    return caches


def call(parser: Callable[..., Any], record: Any, catalog: Any) -> Any:
    from collector.errors import ParseError

    try:
        return parser(record, catalog)
    except ParseError as exc:
        return exc


def outcome(parser: Callable[..., Any], record: Any, catalog: Any, reuse: str) -> tuple[Any, ...]:
    """What a record parses to, comparable with ``==``: IPC bytes of both tables, error texts."""
    import pyarrow as pa

    os.environ["HCIWATCH_PARSE_REUSE"] = reuse
    result = call(parser, record, catalog)
    if isinstance(result, Exception):
        return ("rejected", 0, 0, str(result))

    def ipc(table: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return bytes(sink.getvalue().to_pybytes())

    return (
        "ok",
        result.samples.num_rows,
        result.ip_observations.num_rows,
        ipc(result.samples),
        ipc(result.ip_observations),
        [str(e) for e in result.errors],
    )


def cpu_time(run: Callable[[], None]) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


if __name__ == "__main__":
    main()
