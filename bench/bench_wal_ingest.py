"""What the write-ahead log costs: ingest CPU per million samples without and with it.

Both paths parse real Prometheus-exposition scrapes (``parse_one``, as the service does) and
buffer the rows in the store, flushing Parquet every ``batch_rows``. The WAL path also writes
each raw scrape to the log (checksum + write), fsyncs it before "acknowledging" (one fsync per
scrape: the worst case of the group commit, which shares one fsync among every scrape waiting)
and commits a checkpoint after each flush. CPU is process time (all threads); wall time is
printed too. Bounded: a few million samples, well under a minute.

    python bench/bench_wal_ingest.py [--series 10000] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.catalog import Catalog
from collector.schema import RawRecord
from collector.store import Store
from hciwatch.ingest import DurableIngest
from hciwatch.parse_pool import parse_one


def scrapes(series: int, n: int) -> list[RawRecord]:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    body = "".join(
        f'windows_net_bytes_received_total{{nic="eth{i % 4}",host_series="{i}"}} {i * 1.5}\n' for i in range(series)
    ).encode()
    return [
        RawRecord(ts=t0 + timedelta(seconds=15 * k), kind="prometheus", target=f"h{k % 50}:9182", body=body, host="h")
        for k in range(n)
    ]


def run(mode: str, recs: list[RawRecord], work: Path) -> tuple[float, float, int]:
    catalog = Catalog(())
    store = Store(work, batch_rows=250_000, auto_flush=False)
    samples = 0

    def apply(rec: RawRecord) -> None:
        nonlocal samples
        out = parse_one(rec, catalog)
        store.append("samples", out.samples)
        samples += out.samples.num_rows

    ing: DurableIngest | None = None
    if mode == "wal":
        ing = DurableIngest(
            work,
            store,
            queue_max_bytes=1 << 30,
            queue_max_records=10_000,
            buffer_max_bytes=1 << 30,
            wal_max_bytes=8 << 30,
            wal_segment_bytes=64 << 20,
        )
    flush: Callable[[], object] = ing.flush if ing is not None else store.flush
    c0, w0 = time.process_time(), time.perf_counter()
    for rec in recs:
        if ing is not None:
            seq = ing.wal.append(rec)
            ing.wal.sync()
            ing.ingest([(seq, rec)], apply)
        else:
            apply(rec)
        if store.buffered_rows() >= store.batch_rows:
            flush()
    flush()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    if ing is not None:
        ing.close()
    return cpu, wall, samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", type=int, default=10_000, help="series per scrape")
    p.add_argument("--scrapes", type=int, default=200)
    a = p.parse_args()
    recs = scrapes(a.series, a.scrapes)
    body_mb = len(recs[0].body) / 1e6
    print(f"{a.scrapes} scrapes x {a.series} series ({body_mb:.2f} MB each)")
    results = {}
    for mode in ("direct", "wal"):
        work = Path(tempfile.mkdtemp(prefix=f"bench-wal-{mode}-"))
        try:
            cpu, wall, n = run(mode, recs, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results[mode] = cpu / n * 1e6
        print(
            f"{mode:>6}: {n} samples, CPU {cpu:.2f} s ({results[mode]:.3f} CPU-s per million samples), "
            f"wall {wall:.2f} s ({n / wall / 1e6:.2f} M samples/s)"
        )
    print(f"WAL overhead: {100 * (results['wal'] / results['direct'] - 1):+.1f}% CPU per million samples")


if __name__ == "__main__":
    main()
