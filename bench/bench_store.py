"""Store throughput: samples/s written to Parquet, and rows/s scanned by a DuckDB aggregate.

Builds 10 M samples shaped like a site's (hosts × NICs × metrics, dictionary-encoded strings,
label maps), appends them through :class:`collector.store.Store` in scrape-sized tables, then
runs a typical analyst aggregate (per-host hourly rate of one counter) over the Parquet files.

    .venv/bin/python bench/bench_store.py [--samples 10000000] [--batch 250000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.schema import SAMPLES_SCHEMA
from collector.store import Store

METRICS = [
    "net.bytes_received_total",
    "net.bytes_sent_total",
    "rdma.inbound_bytes_total",
    "rdma.outbound_bytes_total",
    "rdma.cq_errors_total",
    "pfc.rx_pause_frames_total",
    "pfc.tx_pause_frames_total",
    "smb.client.request_seconds_total",
    "smb.client.requests_total",
    "net.packets_received_discarded_total",
]


def scrape_table(rng: np.random.Generator, t_ms: int, hosts: int, series_per_host: int) -> pa.Table:
    """One scrape of every host: ``hosts × series_per_host`` rows at the same timestamp."""
    n = hosts * series_per_host
    host_idx = np.repeat(np.arange(hosts, dtype=np.int32), series_per_host)
    metric_idx = np.tile(np.arange(series_per_host, dtype=np.int32) % len(METRICS), hosts)
    nic = np.tile(np.arange(series_per_host, dtype=np.int32) // len(METRICS), hosts)
    host_dict = pa.array([f"hci-node-{i:03d}" for i in range(hosts)])
    labels = pa.MapArray.from_arrays(
        pa.array(np.arange(0, n + 1, dtype=np.int32)),
        pa.array(["nic"] * n),
        pa.array([f"Mellanox ConnectX-6 Dx Adapter #{k}" for k in nic]),
    )
    return pa.table(
        {
            "ts": pa.array(np.full(n, t_ms, dtype=np.int64)).cast(pa.timestamp("ms", tz="UTC")),
            "source": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array(["windows"])),
            "host": pa.DictionaryArray.from_arrays(pa.array(host_idx), host_dict),
            "metric": pa.DictionaryArray.from_arrays(pa.array(metric_idx), pa.array(METRICS)),
            "labels": labels,
            "value": pa.array(rng.random(n) * 1e9),
        },
        schema=SAMPLES_SCHEMA,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=250_000)
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--series-per-host", type=int, default=40)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    tmp = Path(tempfile.mkdtemp(prefix="hciwatch-bench-store-"))
    try:
        per_scrape = args.hosts * args.series_per_host
        scrapes = max(1, args.samples // per_scrape)
        tables = [
            scrape_table(rng, 1_795_000_000_000 + i * 30_000, args.hosts, args.series_per_host)
            for i in range(min(scrapes, 20))
        ]  # reuse 20 distinct scrapes (timestamps shifted below)
        store = Store(tmp, batch_rows=args.batch)
        t0 = time.perf_counter()
        written = 0
        for i in range(scrapes):
            tb = tables[i % len(tables)]
            if i >= len(tables):
                ts = pa.array(np.full(tb.num_rows, 1_795_000_000_000 + i * 30_000, dtype=np.int64))
                tb = tb.set_column(0, "ts", ts.cast(pa.timestamp("ms", tz="UTC")))
            store.append("samples", tb)
            written += tb.num_rows
        store.flush()
        dt_write = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in tmp.rglob("*.parquet"))
        print(
            f"write: {written:,} samples in {dt_write:.2f} s = {written / dt_write:,.0f} samples/s "
            f"({size / written:.2f} bytes/sample on disk, {store.stats.files_written} files)"
        )

        con = store.connect()
        con.execute("SET threads TO 2")
        query = """
            SELECT host, date_trunc('hour', ts) AS hour,
                   (max(value) - min(value)) / 3600 AS approx_rate
            FROM samples WHERE metric = 'rdma.inbound_bytes_total'
            GROUP BY ALL
        """
        full = "SELECT metric, count(*), avg(value), max(value) FROM samples GROUP BY metric"
        for name, q in (("filtered aggregate (one metric, per host-hour)", query), ("full-scan aggregate", full)):
            t0 = time.perf_counter()
            con.execute(q).fetchall()
            dt = time.perf_counter() - t0
            print(f"scan: {name}: {written:,} rows in {dt:.2f} s = {written / dt:,.0f} rows/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
