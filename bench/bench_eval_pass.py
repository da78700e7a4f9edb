"""Benchmark: what one detector evaluation pass costs, at 4, 50 and 500 HCI hosts, in time and memory.

A lab site (``lab``: windows_exporter on every host every 30 s, the HAProxy VMs, the Kubernetes
lists and every host's neighbour table — the same real formats ``make demo`` replays) is generated
for ``--warmup`` + ``--passes`` minutes and pushed through :class:`hciwatch.pipeline.Pipeline`
exactly as replay and the service do: records are parsed and applied, and the detectors run at
every ``evaluation_interval`` (60 s) boundary. Only :meth:`Pipeline.evaluate` is timed; the
passes of the warm-up (baselines learning, series metadata first seen) are not counted.

Past 16 hosts the site is many Azure Local clusters of at most 16 nodes (``SiteSpec``'s
``cluster_nodes``), storage traffic inside each cluster, as a real 500-host site is laid out.

Printed: one line per site size (median and p90 ms per pass, CPU ms per pass and per host,
samples per pass), one line of peak resident memory per phase, then a machine-readable last line
for ``make bench``'s table::

    RESULT eval_ms_per_pass hosts=4 x.x hosts=50 y.y hosts=500 z.z

The machine-readable value is the median over the measured passes. The store writes into a
temporary directory (write-behind, as in replay), so the figure excludes Parquet I/O.

Every measurement runs in its own child process, so its memory figures are its own: the
kernel's high-water mark of resident memory (``VmHWM``) is reset before each phase call and read
after it, giving the peak of each phase over the run, and the net RSS each phase added is summed
— ``setup`` (store and pipeline), ``lab`` (building the simulated site), ``render`` (the lab
making each record's body), ``ingest`` (parsing and applying a record), ``warm-up`` and ``pass``
(evaluations). ``MiB/host`` is the run's peak above the resident memory after ``setup``, per host;
it includes the lab's bodies waiting to be handed out (at most about ``lab.hosts.RENDER_BUDGET``,
whatever the size), so it falls as sites grow, and the ``per host added`` line (the peak's growth
from the previous size, per added host) is the cost of one more host. ``--trace`` adds, after the
last pass, the live Python and NumPy memory by source file (tracemalloc; slow, diagnosis only)
and the Arrow pool's live and peak bytes.

``--compare`` also measures the former path (the window of recent rows re-queried in DuckDB at
every pass) on the same site in the same run, so the ratio survives a loaded machine.

Run: ``.venv/bin/python bench/bench_eval_pass.py [--hosts 4 50 500] [--warmup 10] [--passes 10] [--compare] [--trace]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lab
from collector.schema import RawRecord
from collector.store import Store
from hciwatch.config import AppConfig, parse_config
from hciwatch.demo import demo_config_text
from hciwatch.parse_pool import parse_one
from hciwatch.pipeline import Pipeline

T = TypeVar("T")
PHASES = ("setup", "lab", "render", "ingest", "warm-up", "pass")


def site_scenario(hosts: int, minutes: int) -> lab.Scenario:
    """A lab site with ``hosts`` HCI hosts (the demo's AKS clusters and pools), no incidents.

    Past 8 hosts (the demo layout has room for 9) the hosts and storage subnets get a /21 each, so
    500 hosts fit; the hosts form Azure Local clusters of at most 16 nodes (the lab's default).
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


class PeakRss:
    """Peak resident memory per phase, and how much each phase added, from the kernel's counters.

    Why not ``ru_maxrss``: it only ever rises, so the phase that set it hides every later one.
    Writing ``5`` to ``/proc/self/clear_refs`` resets ``VmHWM`` to the current RSS (Linux ≥ 4.0),
    so resetting before a call and reading after it gives that call's peak. A peak includes what
    earlier phases left resident, so ``grew_kib`` also sums each phase's net change of ``VmRSS``
    over its calls: where the memory accumulated. Without procfs every peak is ``ru_maxrss``.
    """

    def __init__(self) -> None:
        self.peak_kib: dict[str, int] = {}
        self.grew_kib: dict[str, int] = {}
        try:
            self._clear: int | None = os.open("/proc/self/clear_refs", os.O_WRONLY)
            self._status: int | None = os.open("/proc/self/status", os.O_RDONLY)
        except OSError:
            self._clear = self._status = None

    def read_kib(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) now."""
        if self._status is None:
            import resource

            peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            return peak, peak
        text = os.pread(self._status, 8192, 0).decode()
        rss, hwm = (re.search(key + r":\s+(\d+)", text) for key in ("VmRSS", "VmHWM"))
        return (int(rss.group(1)) if rss else 0), (int(hwm.group(1)) if hwm else 0)

    def run(self, phase: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, its peak and its net change of RSS counted for ``phase``."""
        if self._clear is not None:
            os.write(self._clear, b"5")
        before, _ = self.read_kib()
        out = fn(*args)
        after, hwm = self.read_kib()
        self.peak_kib[phase] = max(self.peak_kib.get(phase, 0), hwm)
        self.grew_kib[phase] = self.grew_kib.get(phase, 0) + after - before
        return out

    def close(self) -> None:
        for fd in (self._clear, self._status):
            if fd is not None:
                os.close(fd)


@dataclass
class Measurement:
    """One site size on one path: per measured pass wall and CPU ms, samples per pass, memory (MiB)."""

    hosts: int
    incremental: bool
    ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    samples_per_pass: int = 0
    records: int = 0
    start_mib: float = 0.0
    peak_mib: dict[str, float] = field(default_factory=dict)
    grew_mib: dict[str, float] = field(default_factory=dict)
    trace: list[tuple[str, float]] = field(default_factory=list)


def measure(hosts: int, warmup: int, passes: int, *, incremental: bool = True, trace: bool = False) -> Measurement:
    """Wall ms and CPU ms (this process, all threads) of every measured evaluation pass, the
    samples stored per measured pass and the peak RSS of each phase. The CPU figure is what a
    loaded machine distorts least.

    ``incremental=False`` measures the former path (the window re-queried in DuckDB every pass).
    """
    import tomllib

    rss = PeakRss()
    out = Measurement(hosts, incremental, start_mib=rss.read_kib()[0] / 1024)
    if trace:
        import tracemalloc

        tracemalloc.start()
    scenario = site_scenario(hosts, warmup + passes + 1)
    text = demo_config_text(scenario)
    with tempfile.TemporaryDirectory(prefix="hciwatch-bench-eval-") as tmp:
        cfg = parse_config(tomllib.loads(text), text, file="bench.toml", path=Path(tmp) / "bench.toml")
        pipe = rss.run("setup", _pipeline, cfg, Path(tmp), incremental)
        step = cfg.analytics.evaluation_interval
        first = scenario.start
        next_eval = first + step
        samples_before = 0
        measured_samples = 0
        records = iter(lab.generate(scenario))
        phase = "lab"  # the first record builds the simulated site
        try:
            while True:
                rec = rss.run(phase, next, records, None)
                phase = "render"
                if rec is None:
                    break
                while rec.ts >= next_eval:
                    counted = next_eval - first > timedelta(minutes=warmup)
                    t0, c0 = time.perf_counter(), time.process_time()
                    rss.run("pass" if counted else "warm-up", pipe.evaluate, next_eval)
                    ms = (time.perf_counter() - t0) * 1000
                    cpu_ms = (time.process_time() - c0) * 1000
                    if counted:
                        out.ms.append(ms)
                        out.cpu_ms.append(cpu_ms)
                        measured_samples += pipe.stats.samples_stored - samples_before
                    samples_before = pipe.stats.samples_stored
                    next_eval += step
                    if len(out.ms) >= passes:
                        break
                if len(out.ms) >= passes:
                    break
                out.records += 1
                rss.run("ingest", _ingest, pipe, rec)
            if trace:
                out.trace = _trace_by_file()
        finally:
            pipe.close()
            rss.close()
    out.samples_per_pass = measured_samples // max(1, len(out.ms))
    out.peak_mib = {k: v / 1024 for k, v in rss.peak_kib.items()}
    out.grew_mib = {k: v / 1024 for k, v in rss.grew_kib.items()}
    return out


def _pipeline(cfg: AppConfig, tmp: Path, incremental: bool) -> Pipeline:
    """The store (write-behind, as in replay) and the pipeline, as the service builds them."""
    store = Store(tmp, batch_rows=cfg.collector.store.batch_rows, write_behind=True)
    return Pipeline(cfg, store, store_alerts=False, incremental=incremental)


def _ingest(pipe: Pipeline, rec: RawRecord) -> None:
    pipe.apply(rec, parse_one(rec, pipe.catalog))


def _trace_by_file(top: int = 12) -> list[tuple[str, float]]:
    """Live traced memory (MiB) by source file, largest first (paths shortened to the repo or package),
    then the Arrow memory pool's live and peak bytes."""
    import tracemalloc

    stats = tracemalloc.take_snapshot().statistics("filename")
    tracemalloc.stop()
    out = []
    for s in stats[:top]:
        name = s.traceback[0].filename
        for marker in ("/site-packages/", str(Path(__file__).resolve().parents[1]) + "/"):
            if marker in name:
                name = name.split(marker, 1)[1]
        out.append((name, s.size / 2**20))
    # Arrow buffers (fed rows, the store's batches) are not Python allocations: tracemalloc misses them
    import pyarrow as pa

    pool = pa.default_memory_pool()
    out.append((f"Arrow buffers now ({pool.backend_name} pool)", pa.total_allocated_bytes() / 2**20))
    out.append((f"Arrow buffers at most ({pool.backend_name} pool)", (pool.max_memory() or 0) / 2**20))
    return out


def measure_in_child(hosts: int, warmup: int, passes: int, *, incremental: bool, trace: bool) -> Measurement:
    """:func:`measure` in a fresh interpreter, so one size's memory does not colour the next's."""
    cmd = [sys.executable, __file__, "--child", str(hosts), "--warmup", str(warmup), "--passes", str(passes)]
    if not incremental:
        cmd.append("--full")
    if trace:
        cmd.append("--trace")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measurement of {hosts} hosts failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data["trace"] = [tuple(x) for x in data["trace"]]
    return Measurement(**data)


def _memory_line(m: Measurement) -> str:
    peak = max(m.peak_mib.values(), default=0.0)
    phases = ", ".join(f"{p} {m.peak_mib[p]:,.0f} ({m.grew_mib.get(p, 0.0):+,.0f})" for p in PHASES if p in m.peak_mib)
    base = m.start_mib + m.grew_mib.get("setup", 0.0)
    per_host = (peak - base) / m.hosts
    return (
        f"hosts={m.hosts:>4}: peak RSS {peak:,.0f} MiB ({'incremental' if m.incremental else 'full re-query'}; "
        f"peak by phase (+ net growth), MiB: {phases}); "
        f"{per_host:.2f} MiB/host above the {base:,.0f} MiB before the site"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, nargs="+", default=[4, 50, 500], help="site sizes (HCI hosts)")
    ap.add_argument("--warmup", type=int, default=10, help="minutes of data before passes are counted")
    ap.add_argument("--passes", type=int, default=10, help="measured passes (one per simulated minute)")
    ap.add_argument(
        "--compare", action="store_true", help="also measure the former full re-query path (same run, for a ratio)"
    )
    ap.add_argument("--trace", action="store_true", help="print live memory by source file after the last pass")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if any(h < 2 for h in args.hosts) or args.warmup < 1 or args.passes < 1:
        ap.error("--hosts must be >= 2, --warmup and --passes >= 1")
    if args.child is not None:
        m = measure(args.child, args.warmup, args.passes, incremental=not args.full, trace=args.trace)
        print(json.dumps(asdict(m)))
        return
    results: list[tuple[int, float]] = []
    prev: Measurement | None = None
    for hosts in args.hosts:
        m = measure_in_child(hosts, args.warmup, args.passes, incremental=True, trace=args.trace)
        med, cmed = statistics.median(m.ms), statistics.median(m.cpu_ms)
        p90 = sorted(m.ms)[min(len(m.ms) - 1, int(0.9 * len(m.ms)))]
        print(
            f"hosts={hosts:>4}: {med:8.1f} ms/pass median, {p90:8.1f} ms p90 over {len(m.ms)} passes, "
            f"{cmed:8.1f} CPU-ms/pass ({m.samples_per_pass:,} samples arrive per pass; "
            f"{cmed / hosts:.2f} CPU-ms per host)",
            flush=True,
        )
        print(_memory_line(m), flush=True)
        if prev is not None and hosts != prev.hosts:
            grow = max(m.peak_mib.values(), default=0.0) - max(prev.peak_mib.values(), default=0.0)
            added = grow / (hosts - prev.hosts)
            print(f"hosts={hosts:>4}: {added:+.2f} MiB peak RSS per host added since hosts={prev.hosts}", flush=True)
        prev = m
        for name, mib in m.trace:
            print(f"hosts={hosts:>4}:   live {mib:9.1f} MiB  {name}", flush=True)
        results.append((hosts, med))
        if args.compare:
            f = measure_in_child(hosts, args.warmup, args.passes, incremental=False, trace=args.trace)
            fmed, fcmed = statistics.median(f.ms), statistics.median(f.cpu_ms)
            print(
                f"hosts={hosts:>4}: {fmed:8.1f} ms/pass median, {fcmed:8.1f} CPU-ms/pass with the former "
                f"full re-query path ({fmed / max(med, 1e-9):.1f}x the incremental pass by wall time, "
                f"{fcmed / max(cmed, 1e-9):.1f}x by CPU; {fcmed / hosts:.2f} CPU-ms per host)",
                flush=True,
            )
            print(_memory_line(f), flush=True)
            for name, mib in f.trace:
                print(f"hosts={hosts:>4}:   live {mib:9.1f} MiB  {name}", flush=True)
    print("RESULT eval_ms_per_pass " + " ".join(f"hosts={h} {m:.1f}" for h, m in results))


if __name__ == "__main__":
    main()
