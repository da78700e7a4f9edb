"""Benchmark: every analytics detector over a synthetic 500-host site.

The site: 500 Azure Local hosts scraped every 30 s, each with its RDMA NICs (PFC counters for 8
priorities × rx/tx, RDMA error counters, bytes), NIC discards, SMB client shares and ~250 other
windows_exporter series (CPU, memory, disks …) that analytics must skip; 25 AKS clusters on 5
cluster networks (VIPs, node VMs, load-balancer VMs, Services) and every host's neighbour table.
Data lives in Parquet files laid out like the store (sorted by time), read through DuckDB views.

Printed:

* **full pass** — a fresh engine analysing the last hour (cold start: every step of the hour, every
  detector, baselines built from scratch) — seconds and share of one 30 s interval;
* **steady state** — one 30 s evaluation after that (what the service pays every interval) —
  median of 10, and its share of the interval (target < 10 %).

Run: ``.venv/bin/python bench/bench_analytics.py [--hosts 500] [--filler 250]`` (2 cores).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.engine import Engine
from analytics.settings import AnalyticsSettings
from collector.schema import IP_OBSERVATIONS_SCHEMA, TS_TYPE, from_ms
from tests.analytics.synth import Effects, Net, random_network, random_site, samples

MIN = 60_000
HOUR = 60 * MIN


def write_samples(out: Path, hosts: int, filler: int, minutes: int, batch: int) -> tuple[int, int, int]:
    """Write the site's samples in host batches; return (rows, start_ms, end_ms)."""
    rows = 0
    start = end = 0
    for b in range(0, hosts, batch):
        site = random_site(
            1000 + b, n_hosts=min(batch, hosts - b), hours=minutes / 60, scrape_s=30, start=from_ms(1_767_225_600_000)
        )
        site.hosts = [f"azl-{b + i:04d}" for i in range(len(site.hosts))]
        site.nics = {h: site.nics[o] for h, o in zip(site.hosts, list(site.nics), strict=True)}
        site.shares = {h: site.shares[o] for h, o in zip(site.hosts, list(site.shares), strict=True)}
        site.base = {h: site.base[o] for h, o in zip(site.hosts, list(site.base), strict=True)}
        tbl = samples(site, Effects(), filler_series=filler).sort_by("ts")
        pq.write_table(tbl, out / f"part-{b:05d}.parquet", row_group_size=100_000)
        rows += tbl.num_rows
        start, end = site.start_ms, site.end_ms
    return rows, start, end


def write_ip_observations(out: Path, hosts: int, start: int, end: int, seed: int = 7) -> tuple[int, list[Net]]:
    """Inventory polls (60 s) of 25 clusters on 5 networks plus every host's neighbour table."""
    rng = np.random.default_rng(seed)
    nets = []
    ips: list[tuple[str, str, str, str, str, str | None]] = []  # ip, kind, owner, cluster, network, mac
    mac: str | None
    for n in range(5):
        clusters = [f"c{n}-{k}" for k in range(5)]
        net = random_network(
            rng, f"net{n}", clusters, vip_size=120, node_size=100, management=None, subnet=f"10.{40 + n}.0.0/24"
        )
        nets.append(net)
        vip0 = int(net.vip_pool_start.split(".")[-1])
        node0 = int(str(net.k8s_node_ip_pool_start).split(".")[-1])
        v = n_ = 0
        for c in clusters:
            ips.append((f"10.{40 + n}.0.{vip0 + v}", "control-plane", c, c, net.name, None))
            v += 1
            for k in range(12):
                ips.append((f"10.{40 + n}.0.{vip0 + v}", "service", f"ns{k % 4}/svc{k}", c, net.name, None))
                v += 1
            for k in range(8):
                mac = "00:15:5d:" + ":".join(f"{int(x):02x}" for x in rng.integers(0, 256, 3))
                kind = "load-balancer" if k == 0 else "node"
                ips.append((f"10.{40 + n}.0.{node0 + n_}", kind, f"{c}-vm{k}", c, net.name, mac))
                n_ += 1
    polls = np.arange(start, end, MIN)
    cols: dict[str, list[object]] = {k: [] for k in IP_OBSERVATIONS_SCHEMA.names}
    for t in polls:
        for ip, kind, owner, cluster, network, mac in ips:
            cols["ts"].append(int(t) + 500)
            cols["ip"].append(ip)
            cols["mac"].append(mac)
            cols["owner_kind"].append(kind)
            cols["owner"].append(owner)
            cols["cluster"].append(cluster)
            cols["network"].append(network)
            cols["source"].append("k8s")
    # neighbour tables: every host sees 40 addresses (node VMs of its network) every minute
    vm = [(ip, mac) for ip, kind, _o, _c, _n, mac in ips if mac]
    picks = rng.integers(0, len(vm), size=(hosts, 40))
    n_nb = len(polls) * hosts * 40
    nb_ts = np.repeat(polls, hosts * 40) + 900
    nb_host = np.tile(np.repeat(np.arange(hosts), 40), len(polls))
    nb_pick = np.tile(picks.reshape(-1), len(polls))
    host_names = np.array([f"azl-{i:04d}" for i in range(hosts)], dtype=object)
    vm_ip = np.array([x[0] for x in vm], dtype=object)
    vm_mac = np.array([x[1] for x in vm], dtype=object)

    def dict_arr(values: list[object] | np.ndarray) -> pa.Array:
        return pa.array(list(values), pa.string()).dictionary_encode()

    inv = pa.table(
        {
            "ts": pa.array(np.array(cols["ts"], np.int64)).cast(TS_TYPE),
            "ip": pa.array(cols["ip"], pa.string()),
            "mac": pa.array(cols["mac"], pa.string()),
            "owner_kind": dict_arr(cols["owner_kind"]),
            "owner": pa.array(cols["owner"], pa.string()),
            "cluster": dict_arr(cols["cluster"]),
            "network": dict_arr(cols["network"]),
            "source": dict_arr(cols["source"]),
        },
        schema=IP_OBSERVATIONS_SCHEMA,
    )
    nb = pa.table(
        {
            "ts": pa.array(nb_ts.astype(np.int64)).cast(TS_TYPE),
            "ip": pa.array(vm_ip[nb_pick], pa.string()),
            "mac": pa.array(vm_mac[nb_pick], pa.string()),
            "owner_kind": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n_nb, np.int32)), pa.array(["neighbor"])),
            "owner": pa.array(host_names[nb_host], pa.string()),
            "cluster": pa.DictionaryArray.from_arrays(pa.nulls(n_nb, pa.int32()), pa.array([], pa.string())),
            "network": pa.DictionaryArray.from_arrays(pa.nulls(n_nb, pa.int32()), pa.array([], pa.string())),
            "source": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n_nb, np.int32)), pa.array(["neighbors"])),
        },
        schema=IP_OBSERVATIONS_SCHEMA,
    )
    tbl = pa.concat_tables([inv, nb]).sort_by("ts")
    pq.write_table(tbl, out / "part-00000.parquet", row_group_size=100_000)
    return tbl.num_rows, nets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--filler", type=int, default=250, help="non-analytics series per host")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hciwatch-bench-"))
    try:
        (tmp / "samples").mkdir()
        (tmp / "ip_observations").mkdir()
        t = time.perf_counter()
        minutes = 66  # the hour analysed + 6 minutes of steady-state evaluations
        n_samples, start, end = write_samples(tmp / "samples", args.hosts, args.filler, minutes, batch=50)
        n_ip, nets = write_ip_observations(tmp / "ip_observations", args.hosts, start, end)
        print(
            f"site: {args.hosts} hosts, {n_samples:,} samples, {n_ip:,} ip observations over {minutes} min "
            f"(generated in {time.perf_counter() - t:.1f} s)"
        )
        con = duckdb.connect()
        con.execute(f"SET threads = {args.threads}")
        for name in ("samples", "ip_observations"):
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{tmp / name}/*.parquet')")
        settings = AnalyticsSettings.model_validate({"evaluation_interval": "30s", "bootstrap_window": "1h"})
        interval = settings.evaluation_interval.total_seconds()
        t_full = start + HOUR
        eng = Engine(settings, nets)
        t = time.perf_counter()
        eng.evaluate(con, from_ms(t_full))
        full = time.perf_counter() - t
        print(
            f"full pass (last hour, cold): {full:.2f} s = {100 * full / interval:.0f} % of a {interval:.0f} s "
            f"interval; by part: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(eng.timings.items()))
        )
        steady = []
        parts: dict[str, list[float]] = {}
        for k in range(1, 11):
            t = time.perf_counter()
            eng.evaluate(con, from_ms(t_full + int(k * interval * 1000)))
            steady.append(time.perf_counter() - t)
            for name, v in eng.timings.items():
                parts.setdefault(name, []).append(v)
        med = statistics.median(steady)
        print(
            f"steady state (one {interval:.0f} s interval): median {med:.3f} s = {100 * med / interval:.1f} % "
            f"of the interval (max {max(steady):.3f} s); by part: "
            + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in sorted(parts.items()))
        )
        print(f"hosts scored: {len(eng.congestion_scores())}, pools: {len(eng.pool_stats())}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
