"""Benchmark: ingest CPU per HCI host and per cluster, for the capacity line of ``make bench``.

The lab's demo site (``lab.compact_scenario``: windows_exporter on every host every 30 s, each
host's neighbour table and events; per cluster its Kubernetes lists (services, nodes) and HAProxy
load-balancer VMs, or MetalLB for an Arc cluster) is generated for ``--hours`` (not timed). The
lab has no kube-proxy or CNI payloads, so every cluster node (control plane and workers) also gets
a kube-proxy scrape and a calico-node (Felix) scrape every ``--node-interval`` seconds, and every
cluster one calico-kube-controllers scrape, with the real-format payloads of the sources' testdata
(``collector/sources/{kube_proxy,calico}/testdata``; reconstructed, smaller than a live node's).

Every record goes through the service's ingest path in this process: write-ahead log append +
fsync (one per record: the group commit's worst case), ``parse_one``, ``Store.append``, and the
checkpointed flush at the service's ``batch_rows``. CPU is timed per record and split into
host-scoped and cluster-scoped records (flushes are shared out by rows). An HTTP scrape's own
client CPU is measured separately against a local server and added per pulled record.

Reported per simulated second: CPU milliseconds one host costs and one cluster costs (with the
cluster's share broken down by source), the site's hosts per cluster, and the mean
windows_exporter samples per host scrape (the host figure is scaled to the issue's ~270 samples
per scrape when the lab's payload is smaller). ``make bench`` adds the detectors' CPU per pass
(``bench_eval_pass.py``) and prints the capacity line with its arithmetic.

    .venv/bin/python bench/bench_capacity.py [--hours 1] [--node-interval 30]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from collector.schema import RawRecord
    from lab import ClusterSpec

TARGET_SAMPLES = 270  # a windows_exporter scrape of an HCI host with the operator's collectors (issue 17)
KUBE_PROXY_BODY = REPO / "collector/sources/kube_proxy/testdata/kube_proxy.prom"
FELIX_BODY = REPO / "collector/sources/calico/testdata/felix.prom"
KUBE_CONTROLLERS_BODY = REPO / "collector/sources/calico/testdata/kube_controllers.prom"


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


def source_of(rec: RawRecord, hosts: set[str]) -> str:
    """The source a record stands for, for the per-source breakdown of the cost."""
    if rec.kind == "prometheus":
        if rec.labels.get("source"):
            return rec.labels["source"]
        if rec.host in hosts:
            return "windows_exporter"
        return "metallb" if "metallb" in rec.target else "prometheus"
    return {"haproxy-csv": "haproxy", "k8s": "k8s_inventory", "neighbors": "neighbours", "event": "events"}.get(
        rec.kind, rec.kind
    )


def node_records(
    clusters: Iterable[ClusterSpec], start: datetime, span: timedelta, every: timedelta
) -> Iterator[RawRecord]:
    """kube-proxy and calico-node scrapes of every cluster node and one calico-kube-controllers
    scrape per cluster, every ``every``: the cluster-side Prometheus sources the lab does not simulate.

    The bodies are the sources' real-format testdata, sent unchanged at every scrape (the values of
    a quiet node barely move; the parser's skeleton reuse applies as it would in the service).
    """
    from collector.schema import RawRecord

    proxy, felix, kc = (p.read_bytes() for p in (KUBE_PROXY_BODY, FELIX_BODY, KUBE_CONTROLLERS_BODY))
    targets: list[tuple[str, str, str, str, bytes]] = []  # (cluster, target, host, source, body)
    for cl in clusters:
        for n in range(cl.control_plane_nodes + cl.worker_nodes):
            node = f"{cl.name}-node-{n + 1}"
            targets.append((cl.name, f"{node}:10249", node, "kube-proxy", proxy))
            targets.append((cl.name, f"{node}:9091", node, "calico", felix))
        kc_host = f"{cl.name}-calico-kube-controllers"
        targets.append((cl.name, f"{kc_host}:9094", kc_host, "calico", kc))
    for i in itertools.count():
        ts = start + every * i + timedelta(seconds=7)  # off the lab's own scrape phase
        if ts >= start + span:
            return
        for cluster, target, host, source, body in targets:
            labels = {"cluster": cluster, "source": source}
            yield RawRecord(ts=ts, kind="prometheus", target=target, host=host, labels=labels, body=body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ingest CPU per HCI host and per cluster")
    ap.add_argument("--hours", type=float, default=1.0, help="simulated span (default 1 h; less cuts the lab's 1 h)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--fetches", type=int, default=200, help="HTTP scrapes timed for the client's CPU")
    ap.add_argument(
        "--node-interval", type=float, default=30.0, help="kube-proxy / calico scrape interval per cluster node (s)"
    )
    args = ap.parse_args(argv)
    if args.hours <= 0 or args.node_interval <= 0:
        ap.error("--hours and --node-interval must be positive")

    import lab
    from collector.catalog import DEFAULT_CATALOG
    from collector.config import StoreSettings
    from collector.store import Store
    from hciwatch.ingest import DurableIngest
    from hciwatch.parse_pool import parse_one

    scenario = lab.compact_scenario(seed=args.seed, hours=max(args.hours, 1.0))
    span = timedelta(hours=args.hours)
    hosts = set(scenario.site.hosts)
    n_hosts, n_clusters = len(hosts), len(scenario.site.clusters)
    end = scenario.start + span
    lab_records = itertools.takewhile(lambda r: r.ts < end, lab.generate(scenario))
    nodes = node_records(scenario.site.clusters, scenario.start, span, timedelta(seconds=args.node_interval))
    records = list(heapq.merge(lab_records, nodes, key=lambda r: r.ts))
    span_s = span.total_seconds()
    st = StoreSettings()
    tmp = Path(tempfile.mkdtemp(prefix="hciwatch-bench-capacity-"))
    cpu: defaultdict[str, float] = defaultdict(float)  # CPU seconds per source
    rows: Counter[str] = Counter()  # rows stored per source
    scope_of: dict[str, str] = {}
    win_samples: list[int] = []
    flush_cpu = 0.0
    try:
        store = Store(tmp, batch_rows=st.batch_rows, auto_flush=False)
        ing = DurableIngest.from_settings(tmp, store, st)
        for rec in records:
            src = source_of(rec, hosts)
            scope_of[src] = "host" if rec.host in hosts else "cluster"
            c0 = time.process_time()
            seq = ing.wal.append(rec)
            ing.wal.sync()
            out = parse_one(rec, DEFAULT_CATALOG)
            for name, table in (("samples", out.samples), ("ip_observations", out.ip_observations)):
                if table.num_rows:
                    store.append(name, table)
            ing.ingested_seq = seq
            cpu[src] += time.process_time() - c0
            rows[src] += out.samples.num_rows + out.ip_observations.num_rows
            if src == "windows_exporter":
                win_samples.append(out.samples.num_rows)
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
    total_rows = sum(rows.values()) or 1
    pulled = Counter(source_of(r, hosts) for r in records if r.kind != "event")
    sample_body = next(r.body for r in records if r.kind == "prometheus" and r.host in hosts)
    fetch_ms = fetch_cpu_ms(sample_body, args.fetches)
    mean_win = sum(win_samples) / len(win_samples) if win_samples else float(TARGET_SAMPLES)
    # the windows_exporter part of a host's cost scales with its samples (conservatively all of it)
    scale = max(1.0, TARGET_SAMPLES / mean_win)
    ms_per_s: dict[str, float] = {}  # CPU-ms per simulated second, whole site, per source
    for src in sorted(scope_of):
        total = cpu[src] + flush_cpu * rows[src] / total_rows + pulled[src] * fetch_ms / 1000
        if src == "windows_exporter":
            total *= scale
        ms_per_s[src] = total / span_s * 1000
    host_ms = sum(v for k, v in ms_per_s.items() if scope_of[k] == "host") / n_hosts
    cluster_ms = sum(v for k, v in ms_per_s.items() if scope_of[k] == "cluster") / n_clusters
    n_nodes = sum(c.control_plane_nodes + c.worker_nodes for c in scenario.site.clusters)
    print(
        f"site: {n_hosts} hosts, {n_clusters} clusters ({n_nodes} nodes), {len(records):,} records over "
        f"{span_s / 3600:g} h; windows_exporter {mean_win:.0f} samples per scrape (host cost scaled x{scale:.2f} to "
        f"{TARGET_SAMPLES}); kube-proxy and calico-node on every node every {args.node_interval:g} s (testdata bodies)"
    )
    print(f"HTTP scrape client CPU: {fetch_ms:.2f} ms per scrape ({len(sample_body) / 1e3:.0f} kB body)")
    print(
        f"ingest CPU per simulated second: {host_ms:.3f} ms per host, {cluster_ms:.3f} ms per cluster "
        f"(flushes {flush_cpu:.2f} s, shared out by rows)"
    )
    for src, v in ms_per_s.items():
        print(
            f"  {src:<18} {scope_of[src]:<7} {pulled[src]:>7,} records {rows[src]:>10,} rows "
            f"{v / n_hosts:8.4f} CPU-ms per host per second"
        )
    shares = " ".join(f"share_{k.replace('-', '_')}={v / n_hosts:.4f}" for k, v in ms_per_s.items())
    print(
        f"RESULT capacity host_cpu_ms_per_s={host_ms:.4f} cluster_cpu_ms_per_s={cluster_ms:.4f} "
        f"hosts_per_cluster={n_hosts / n_clusters:.3f} windows_samples={mean_win:.0f} fetch_ms={fetch_ms:.3f} "
        f"nodes_per_cluster={n_nodes / n_clusters:.3f} node_interval_s={args.node_interval:g} {shares}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
