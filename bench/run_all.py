"""``make bench``: run every ``bench/bench_*.py``, then print ONE summary table.

Each benchmark's own output streams through as it runs. Benchmarks that feed the table end with a
machine-readable line ``RESULT <name> key=value ...`` (``bench_eval_pass.py``:
``RESULT eval_ms_per_pass hosts=4 x hosts=50 y hosts=500 z``); this script collects those lines
and prints, at the very end: ingest CPU per million samples and peak RSS against Prometheus (same
run, side by side), bytes per active series in the service and in replay against Prometheus's,
replay samples/s, evaluation ms per pass at 4/50/500 hosts, the parse ratio against
prometheus_client, and the capacity line (HCI hosts plus their clusters one instance sustains on
two cores with 50 % headroom). A benchmark that is absent or fails leaves its cells as ``n/a``
(and the exit status 1 for a failure); the table is printed regardless.

    .venv/bin/python bench/run_all.py [--only bench_prom_parse.py ...] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CORES = 2
HEADROOM = 0.5  # half of the two cores stays free
BUDGET_MS_PER_S = CORES * 1000 * (1 - HEADROOM)
EVAL_INTERVAL_S = 60.0  # analytics.evaluation_interval default: one pass per minute

# smaller inputs for --quick (a smoke run of the whole table in a few minutes)
# the full run's arguments where a script's defaults do not fit the machine: the 500-host lab site
# (10.6 M samples a minute) costs far more to generate and parse than to evaluate, so the
# evaluation bench runs 3 warm-up + 3 measured passes (its memory is bounded now: the lab renders
# bodies in budgeted blocks; it once held 24 GB and was OOM-killed)
FULL_ARGS: dict[str, list[str]] = {
    "bench_eval_pass.py": ["--warmup", "3", "--passes", "3"],
}

QUICK_ARGS: dict[str, list[str]] = {
    "bench_scrape_vs_prometheus.py": ["--seconds", "20"],
    "bench_replay.py": ["--hours", "2"],
    "bench_prom_parse.py": ["--repeat", "3"],
    "bench_eval_pass.py": ["--warmup", "3", "--passes", "3"],
    "bench_fleet.py": ["--sites", "20", "--hosts", "400", "--hours", "0.5"],
}

Results = dict[str, dict[str, str]]


def parse_result(line: str) -> tuple[str, dict[str, str]] | None:
    """``RESULT name k=v k=v`` → (name, {k: v}); ``hosts=4 12.5`` pairs become {"hosts=4": "12.5"}."""
    parts = line.split()
    if len(parts) < 2 or parts[0] != "RESULT":
        return None
    name, fields = parts[1], parts[2:]
    out: dict[str, str] = {}
    i = 0
    while i < len(fields):
        k, sep, v = fields[i].partition("=")
        if sep and v and k == "hosts" and i + 1 < len(fields) and "=" not in fields[i + 1]:
            out[fields[i]] = fields[i + 1]
            i += 2
            continue
        if sep:
            out[k] = v
        i += 1
    return name, out


def _num(d: Mapping[str, str], key: str) -> float:
    try:
        return float(d[key])
    except (KeyError, ValueError):
        return math.nan


def _fmt(x: float, spec: str, unit: str = "") -> str:
    return "n/a" if math.isnan(x) else f"{x:{spec}}{unit}"


def capacity(res: Results) -> tuple[float, str]:
    """Hosts (with their share of clusters) one instance sustains in :data:`BUDGET_MS_PER_S`."""
    cap = res.get("capacity", {})
    host, cluster, hpc = (_num(cap, k) for k in ("host_cpu_ms_per_s", "cluster_cpu_ms_per_s", "hosts_per_cluster"))
    if any(math.isnan(x) for x in (host, cluster, hpc)) or hpc <= 0:
        return math.nan, "capacity: n/a (bench_capacity.py did not report)"
    per_host = host + cluster / hpc
    ev = res.get("eval_ms_per_pass", {})
    e50, e500 = _num(ev, "hosts=50"), _num(ev, "hosts=500")
    how = "ingest + detectors"
    fixed = 0.0
    if math.isnan(e50) or math.isnan(e500):
        how = "ingest only: bench_eval_pass.py did not report"
    else:
        slope = max(e500 - e50, 0.0) / 450  # ms per pass per extra host, between 50 and 500 hosts
        fixed = max(e50 - slope * 50, 0.0) / EVAL_INTERVAL_S
        per_host += slope / EVAL_INTERVAL_S
    hosts = (BUDGET_MS_PER_S - fixed) / per_host
    text = (
        f"capacity: ~{hosts:,.0f} HCI hosts (windows_exporter every 30 s, ~270 samples) plus their clusters "
        f"(1 per {hpc:.2f} hosts: Kubernetes lists, HAProxy VMs) on {CORES} cores with {HEADROOM:.0%} headroom "
        f"({how}; {per_host:.3f} CPU-ms per host per second)"
    )
    return hosts, text


def fleet_line(res: Results) -> str:
    """One line from ``RESULT fleet`` (bench_fleet.py): ingest per instance, lake size, fleet query times."""
    f = res.get("fleet", {})
    if not f:
        return "fleet: n/a (bench_fleet.py did not report)"
    parts = []
    for backend in ("local", "azurite", "s3"):
        rate = _num(f, f"{backend}_rows_per_s_instance")
        if math.isnan(rate):
            continue
        parts.append(
            f"{backend} {rate:,.0f} rows/s per instance, {_fmt(_num(f, f'{backend}_lake_mb'), '.0f')} MB, "
            f"pool_usage {_fmt(_num(f, f'{backend}_q_pool_usage_s'), '.2f', ' s')}, "
            f"congestion_signals {_fmt(_num(f, f'{backend}_q_congestion_signals_s'), '.2f', ' s')}"
        )
    return f"fleet ({f.get('sites', '?')} sites, {f.get('hosts', '?')} HCI hosts, DuckDB): " + "; ".join(parts)


def table(res: Results, load: tuple[str, str]) -> list[str]:
    """The summary table's lines."""
    ing, rep, parse = res.get("ingest", {}), res.get("replay", {}), res.get("parse", {})
    hap = res.get("haproxy_parse", {})  # a 300-row LB VM's stats; repeat = the next read, new numbers
    ev = res.get("eval_ms_per_pass", {})
    cpu_h, cpu_p = _num(ing, "cpu_per_m_hciwatch"), _num(ing, "cpu_per_m_prometheus")
    rss_h, rss_p = _num(ing, "rss_mib_hciwatch"), _num(ing, "rss_mib_prometheus")
    bps_h, bps_p = _num(ing, "bytes_per_series_hciwatch"), _num(ing, "bytes_per_series_prometheus")
    bps_r, bps_ri = _num(rep, "bytes_per_series"), _num(rep, "bytes_per_series_incr")
    rate, cpu_r, n_r = _num(rep, "samples_per_s"), _num(rep, "cpu_s"), _num(rep, "samples")
    cpu_bound = n_r / cpu_r * CORES if cpu_r > 0 else math.nan
    evals = [_num(ev, f"hosts={h}") for h in (4, 50, 500)]
    rows = [
        ("ingest CPU-s per million samples, WAL on", _fmt(cpu_h, ".2f"), _fmt(cpu_p, ".2f"), cpu_h / cpu_p, "<= 0.75"),
        ("ingest peak RSS (176k-sample target), MiB", _fmt(rss_h, ".0f"), _fmt(rss_p, ".0f"), rss_h / rss_p, "<= 1.00"),
        ("bytes per active series, service", _fmt(bps_h, ",.0f"), _fmt(bps_p, ",.0f"), bps_h / bps_p, "<= 1.00"),
        ("bytes per active series, replay (3 processes)", _fmt(bps_r, ",.0f"), _fmt(bps_p, ",.0f"), bps_r / bps_p, ""),
        ("  replay, above the idle process", _fmt(bps_ri, ",.0f"), _fmt(bps_p, ",.0f"), bps_ri / bps_p, ""),
        ("replay parse+store, samples/s (wall)", _fmt(rate, ",.0f"), "", math.nan, ">= 1,000,000"),
        ("  same, CPU-bound on 2 idle cores", _fmt(cpu_bound, ",.0f"), "", math.nan, ">= 1,000,000"),
        ("evaluation ms/pass, 4 / 50 / 500 hosts", " / ".join(_fmt(e, ".1f") for e in evals), "", math.nan, ""),
        (
            "parse vs prometheus_client (CPU), cold",
            _fmt(_num(parse, "ratio_cpu_cold"), ".1f", "x"),
            "",
            math.nan,
            ">= 30x",
        ),
        ("  same target, new values (reuse)", _fmt(_num(parse, "ratio_cpu_repeat"), ".1f", "x"), "", math.nan, ""),
        (
            "HAProxy CSV parse, M samples/CPU-s, cold / repeat",
            " / ".join(_fmt(_num(hap, k) / 1e6, ".2f") for k in ("synthetic_cold", "synthetic_repeat")),
            "",
            math.nan,
            "",
        ),
    ]
    w = max(len(r[0]) for r in rows)
    lines = [
        "=" * (w + 60),
        f"hciwatch performance summary (one run on this machine; load average at start {load[0]}, at end {load[1]})",
        f"{'':{w}s}  {'hciwatch':>16s}  {'Prometheus':>12s}  {'ratio':>6s}  goal",
    ]
    for label, ours, theirs, ratio, goal in rows:
        shown = "" if math.isnan(ratio) and not theirs else _fmt(ratio, ".2f")
        lines.append(f"{label:{w}s}  {ours:>16s}  {theirs:>12s}  {shown:>6s}  {goal}".rstrip())
    lines.append(capacity(res)[1])
    lines.append(fleet_line(res))
    if ev == {}:
        lines.append("evaluation: bench/bench_eval_pass.py absent or failed (it comes with the incremental detectors)")
    lines.append(
        "caveat: figures from a shared, loaded machine are noisy; the ratios are measured side by side in one run"
    )
    lines.append("=" * (w + 60))
    return lines


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run every benchmark and print one summary table")
    ap.add_argument("--only", nargs="+", help="run only these scripts (names under bench/)")
    ap.add_argument("--quick", action="store_true", help="smaller inputs (a smoke run of the table)")
    args = ap.parse_args(argv)
    scripts = sorted(p.name for p in BENCH.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s in set(args.only)]
    load_start = _load()
    results: Results = {}
    failed: list[str] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in scripts:
        extra = QUICK_ARGS.get(name, []) if args.quick else FULL_ARGS.get(name, [])
        print(f"== bench/{name} {' '.join(extra)}".rstrip(), flush=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, str(BENCH / name), *extra],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=BENCH.parent,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            got = parse_result(line)
            if got is not None:
                results[got[0]] = got[1]
        if proc.wait() != 0:
            failed.append(name)
            print(f"!! bench/{name} exited {proc.returncode}", flush=True)
        print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    print()
    for line in table(results, (load_start, _load())):
        print(line)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
