"""Benchmark: ingest CPU per HCI host and per cluster, for the capacity line of ``make bench``.

The lab's demo site (``lab.compact_scenario``: windows_exporter on every host every 30 s, each
host's neighbour table and events; per cluster its Kubernetes lists and HAProxy load-balancer
VMs) is generated for ``--hours`` (not timed), then every record goes through the service's
ingest path in this process: write-ahead log append + fsync (one per record: the group commit's
worst case), ``parse_one``, ``Store.append``, and the checkpointed flush at the service's
``batch_rows``. CPU is timed per record and split into host-scoped and cluster-scoped records
(flushes are shared out by rows). An HTTP scrape's own client CPU is measured separately against
a local server and added per pulled record.

Reported per simulated second: CPU milliseconds one host costs and one cluster costs, the site's
hosts per cluster, and the mean windows_exporter samples per host scrape (the host figure is
scaled to the issue's ~270 samples per scrape when the lab's payload is smaller). ``make bench``
combines this with the detectors' ms per pass into the capacity line.

    .venv/bin/python bench/bench_capacity.py [--hours 1]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_SAMPLES = 270  # a windows_exporter scrape of an HCI host with the operator's collectors (issue 17)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch_cpu_ms(body: bytes, n: int) -> float:
    """Client CPU of one HTTP scrape (aiohttp, as the service scrapes) of ``body``, in ms."""
    from collector.sources.prometheus.source import PrometheusScraper, PrometheusSettings

    tmp = Path(tempfile.mkdtemp(prefix="hciwatch-bench-fetch-"))
    (tmp / "metrics").write_bytes(body)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        settings = PrometheusSettings(type="prometheus", targets=[f"127.0.0.1:{port}"], timeout=5.0)
        scraper = PrometheusScraper(settings)
        target = scraper.targets()[0]

        async def run() -> float:
            for _ in range(100):  # the server needs a moment to listen
                try:
                    await scraper.fetch(target)
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            c0 = time.process_time()
            for _ in range(n):
                await scraper.fetch(target)
            cpu = time.process_time() - c0
            await scraper.close()
            return cpu

        return asyncio.run(run()) / n * 1000
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ingest CPU per HCI host and per cluster")
    ap.add_argument("--hours", type=float, default=1.0, help="simulated span (default 1 h)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--fetches", type=int, default=200, help="HTTP scrapes timed for the client's CPU")
    args = ap.parse_args(argv)

    import lab
    from collector.catalog import DEFAULT_CATALOG
    from collector.config import StoreSettings
    from collector.store import Store
    from hciwatch.ingest import DurableIngest
    from hciwatch.parse_pool import parse_one

    scenario = lab.compact_scenario(seed=args.seed, hours=max(args.hours, 1.0))
    hosts = set(scenario.site.hosts)
    n_hosts, n_clusters = len(hosts), len(scenario.site.clusters)
    records = list(lab.generate(scenario))
    span_s = scenario.duration.total_seconds()
    st = StoreSettings()
    tmp = Path(tempfile.mkdtemp(prefix="hciwatch-bench-capacity-"))
    cpu: defaultdict[str, float] = defaultdict(float)  # CPU seconds per scope
    rows: Counter[str] = Counter()
    win_samples: list[int] = []
    flush_cpu = 0.0
    try:
        store = Store(tmp, batch_rows=st.batch_rows, auto_flush=False)
        ing = DurableIngest.from_settings(tmp, store, st)
        for rec in records:
            scope = "host" if rec.host in hosts else "cluster"
            c0 = time.process_time()
            seq = ing.wal.append(rec)
            ing.wal.sync()
            out = parse_one(rec, DEFAULT_CATALOG)
            for name, table in (("samples", out.samples), ("ip_observations", out.ip_observations)):
                if table.num_rows:
                    store.append(name, table)
            ing.ingested_seq = seq
            cpu[scope] += time.process_time() - c0
            n = out.samples.num_rows + out.ip_observations.num_rows
            rows[scope] += n
            if rec.kind == "prometheus":
                win_samples.append(out.samples.num_rows)
                cpu["windows"] += time.process_time() - c0
            if store.buffered_rows() >= st.batch_rows:
                c0 = time.process_time()
                ing.flush()
                flush_cpu += time.process_time() - c0
        c0 = time.process_time()
        ing.flush()
        flush_cpu += time.process_time() - c0
        ing.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total_rows = rows["host"] + rows["cluster"] or 1
    for scope in ("host", "cluster"):
        cpu[scope] += flush_cpu * rows[scope] / total_rows
    pulled = Counter(("host" if r.host in hosts else "cluster") for r in records if r.kind != "event")
    sample_body = next(r.body for r in records if r.kind == "prometheus")
    fetch_ms = fetch_cpu_ms(sample_body, args.fetches)
    mean_win = sum(win_samples) / len(win_samples) if win_samples else float(TARGET_SAMPLES)
    # the windows_exporter part of a host's cost scales with its samples (conservatively all of it)
    scale = max(1.0, TARGET_SAMPLES / mean_win)
    host_ms = (cpu["host"] + cpu["windows"] * (scale - 1) + pulled["host"] * fetch_ms / 1000) / n_hosts / span_s * 1000
    cluster_ms = (cpu["cluster"] + pulled["cluster"] * fetch_ms / 1000) / n_clusters / span_s * 1000
    print(
        f"site: {n_hosts} hosts, {n_clusters} clusters, {len(records):,} records over {span_s / 3600:g} h; "
        f"windows_exporter {mean_win:.0f} samples per scrape (host cost scaled x{scale:.2f} to {TARGET_SAMPLES})"
    )
    print(f"HTTP scrape client CPU: {fetch_ms:.2f} ms per scrape ({len(sample_body) / 1e3:.0f} kB body)")
    print(
        f"ingest CPU per simulated second: {host_ms:.3f} ms per host, {cluster_ms:.3f} ms per cluster "
        f"(rows: {rows['host']:,} host, {rows['cluster']:,} cluster; flushes {flush_cpu:.2f} s)"
    )
    print(
        f"RESULT capacity host_cpu_ms_per_s={host_ms:.4f} cluster_cpu_ms_per_s={cluster_ms:.4f} "
        f"hosts_per_cluster={n_hosts / n_clusters:.3f} windows_samples={mean_win:.0f} fetch_ms={fetch_ms:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
