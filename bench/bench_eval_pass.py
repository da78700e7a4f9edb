"""Benchmark: what one detector evaluation pass costs, at 4, 50 and 500 HCI hosts.

A lab site (``lab``: windows_exporter on every host every 30 s, the HAProxy VMs, the Kubernetes
lists and every host's neighbour table — the same real formats ``make demo`` replays) is generated
for ``--warmup`` + ``--passes`` minutes and pushed through :class:`hciwatch.pipeline.Pipeline`
exactly as replay and the service do: records are parsed and applied, and the detectors run at
every ``evaluation_interval`` (60 s) boundary. Only :meth:`Pipeline.evaluate` is timed; the
passes of the warm-up (baselines learning, series metadata first seen) are not counted.

Printed: one line per site size (median and p90 ms per pass, samples per pass), then a
machine-readable last line for ``make bench``'s table::

    RESULT eval_ms_per_pass hosts=4 x.x hosts=50 y.y hosts=500 z.z

The machine-readable value is the median over the measured passes. The store writes into a
temporary directory (write-behind, as in replay), so the figure excludes Parquet I/O.

``--compare`` also measures the former path (the window of recent rows re-queried in DuckDB at
every pass) on the same site in the same run, so the ratio survives a loaded machine.

Run: ``.venv/bin/python bench/bench_eval_pass.py [--hosts 4 50 500] [--warmup 10] [--passes 10] [--compare]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lab
from collector.store import Store
from hciwatch.config import parse_config
from hciwatch.demo import demo_config_text
from hciwatch.parse_pool import parse_one
from hciwatch.pipeline import Pipeline


def site_scenario(hosts: int, minutes: int) -> lab.Scenario:
    """A lab site with ``hosts`` HCI hosts (the demo's clusters and pools), no incidents.

    Past 8 hosts (the demo layout has room for 9) the hosts and storage subnets get a /21 each, so 500 hosts fit.
    """
    names = tuple(f"hci-node-{i + 1:03d}" for i in range(hosts))
    kwargs: dict[str, object] = {"hosts": names}
    if hosts > 8:
        kwargs.update(
            network=lab.NetworkSpec(ip_address_prefix="10.40.0.0/21"),
            host_ip_start="10.40.2.0",
            storage_subnets=("10.71.0.0/21", "10.72.0.0/21"),
        )
    site = lab.SiteSpec(**kwargs)  # type: ignore[arg-type]
    return lab.Scenario(
        site=site,
        start=datetime(2026, 11, 16, 8, tzinfo=UTC),
        duration=timedelta(minutes=minutes),
        interval=timedelta(seconds=30),
        seed=11,
    )


def measure(hosts: int, warmup: int, passes: int, *, incremental: bool = True) -> tuple[list[float], list[float], int]:
    """Wall ms and CPU ms (this process, all threads) of every measured evaluation pass, and the
    samples stored per measured pass. The CPU figure is what a loaded machine distorts least.

    ``incremental=False`` measures the former path (the window re-queried in DuckDB every pass).
    """
    import tomllib

    scenario = site_scenario(hosts, warmup + passes + 1)
    text = demo_config_text(scenario)
    with tempfile.TemporaryDirectory(prefix="hciwatch-bench-eval-") as tmp:
        cfg = parse_config(tomllib.loads(text), text, file="bench.toml", path=Path(tmp) / "bench.toml")
        store = Store(Path(tmp), batch_rows=cfg.collector.store.batch_rows, write_behind=True)
        pipe = Pipeline(cfg, store, store_alerts=False, incremental=incremental)
        step = cfg.analytics.evaluation_interval
        first = scenario.start
        next_eval = first + step
        timings: list[float] = []
        cpu: list[float] = []
        samples_before = 0
        measured_samples = 0
        try:
            for rec in lab.generate(scenario):
                while rec.ts >= next_eval:
                    t0, c0 = time.perf_counter(), time.process_time()
                    pipe.evaluate(next_eval)
                    ms = (time.perf_counter() - t0) * 1000
                    cpu_ms = (time.process_time() - c0) * 1000
                    if next_eval - first > timedelta(minutes=warmup):
                        timings.append(ms)
                        cpu.append(cpu_ms)
                        measured_samples += pipe.stats.samples_stored - samples_before
                    samples_before = pipe.stats.samples_stored
                    next_eval += step
                    if len(timings) >= passes:
                        break
                if len(timings) >= passes:
                    break
                pipe.apply(rec, parse_one(rec, pipe.catalog))
        finally:
            pipe.close()
    return timings, cpu, measured_samples // max(1, len(timings))


def _max_rss_mib() -> float:
    """This process's peak resident memory (the lab site is generated in this process)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, nargs="+", default=[4, 50, 500], help="site sizes (HCI hosts)")
    ap.add_argument("--warmup", type=int, default=10, help="minutes of data before passes are counted")
    ap.add_argument("--passes", type=int, default=10, help="measured passes (one per simulated minute)")
    ap.add_argument(
        "--compare", action="store_true", help="also measure the former full re-query path (same run, for a ratio)"
    )
    args = ap.parse_args()
    if any(h < 2 for h in args.hosts) or args.warmup < 1 or args.passes < 1:
        ap.error("--hosts must be >= 2, --warmup and --passes >= 1")
    results: list[tuple[int, float]] = []
    for hosts in args.hosts:
        ms, cpu, per_pass = measure(hosts, args.warmup, args.passes)
        med, cmed = statistics.median(ms), statistics.median(cpu)
        p90 = sorted(ms)[min(len(ms) - 1, int(0.9 * len(ms)))]
        print(
            f"hosts={hosts:>4}: {med:8.1f} ms/pass median, {p90:8.1f} ms p90 over {len(ms)} passes, "
            f"{cmed:8.1f} CPU-ms/pass ({per_pass:,} samples arrive per pass; "
            f"{cmed / hosts:.2f} CPU-ms per host)",
            flush=True,
        )
        results.append((hosts, med))
        if args.compare:
            full, fcpu, _ = measure(hosts, args.warmup, args.passes, incremental=False)
            fmed, fcmed = statistics.median(full), statistics.median(fcpu)
            print(
                f"hosts={hosts:>4}: {fmed:8.1f} ms/pass median, {fcmed:8.1f} CPU-ms/pass with the former "
                f"full re-query path ({fmed / max(med, 1e-9):.1f}x the incremental pass by wall time, "
                f"{fcmed / max(cmed, 1e-9):.1f}x by CPU)",
                flush=True,
            )
        print(f"hosts={hosts:>4}: max RSS so far {_max_rss_mib():,.0f} MiB", flush=True)
    print("RESULT eval_ms_per_pass " + " ".join(f"hosts={h} {m:.1f}" for h, m in results))


if __name__ == "__main__":
    main()
