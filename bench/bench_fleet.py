"""The fleet bench: a simulated fleet (``lab.fleet``, default 200 sites / 5,000 HCI hosts) written into
a lake by one store per site, then queried fleet-wide.

Reports, per lake backend (local disk, Azurite; moto S3 on request):

* **ingest per instance** — every site is written by its own :class:`collector.store.Store` (its own
  writer id, one flush per ``--slice-minutes``), as a per-site instance would; rows/s and samples/s
  are per instance (store time only: append + flush; generation excluded), as median and range
  over the sites, plus the whole fleet's rows over the sum of store time;
* **lake size** — bytes and files under the lake root (data, empty-partition markers, site records);
* **fleet query times** — DuckDB over Arrow datasets of the lake, in the same sandbox as
  ``hciwatch sql --lake`` (:func:`hciwatch.query.run_query` with :func:`hciwatch.fleet.fleet_views`),
  each query listing the lake and reading every site record afresh; Spark (pyspark local mode) on
  the local lake when pyspark is importable, otherwise the line says it was not measured;
* **takeover time** — measured by the domain-ownership bench when it exists: ``--takeover-hook
  module:function`` is called with the lake URL and its settings and returns seconds; without it
  the column says ``n/a``.

Memory stays bounded whatever the fleet's size: one slice of one site is in memory at a time
(peak RSS is printed). Emulators run on this machine, so object-store figures are the client path
plus the emulator.

    python bench/bench_fleet.py [--sites 200] [--hosts 5000] [--hours 1] [--interval 30]
                                [--slice-minutes 15] [--backends local,azurite] [--no-spark]
                                [--takeover-hook module:function]

Ends with ``RESULT fleet ...`` for ``bench/run_all.py``.
"""

from __future__ import annotations

import argparse
import importlib
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pyarrow.fs as pafs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collector.lake import Lake, LakeSettings  # noqa: E402
from hciwatch.fleet import fleet_views  # noqa: E402
from hciwatch.query import QueryLimits, run_query  # noqa: E402
from lab.fleet import FleetSite, SiteIngest, fleet_plan, write_site  # noqa: E402

QUERIES = {
    "count": "SELECT count(*) FROM samples",
    "per-site aggregate": "SELECT site, count(DISTINCT host), sum(value) FROM samples GROUP BY site",
    "counter_rates": (
        "SELECT site, host, max(rate_per_sec) FROM counter_rates "
        "WHERE base = 'pfc.rx_pause_frames' GROUP BY ALL HAVING max(rate_per_sec) > 1000"
    ),
    "ip_conflicts": "SELECT DISTINCT site, ip FROM ip_conflicts",
    "pool_usage": "SELECT site, pool, max(used) FROM pool_usage GROUP BY ALL",
    "congestion_signals": ("SELECT DISTINCT site, host FROM congestion_signals WHERE pfc_pause_frames_per_sec > 1000"),
}
LIMITS = QueryLimits(timeout_s=900.0, max_memory="2GB", max_rows=100_000)


@contextmanager
def _backend(name: str, work: Path) -> Iterator[tuple[str, LakeSettings]]:
    """The lake URL and settings of one backend (emulators started here, stopped on exit)."""
    if name == "local":
        yield str(work / "lake"), LakeSettings()
        return
    from tests.fixtures.object_stores import running_azurite, running_moto

    start = running_azurite if name == "azurite" else running_moto
    with start(work / name) as server:
        url = server.url(server.new_bucket())
        yield url, LakeSettings.model_validate({"url": url, **server.lake_settings()})


def _lake_size(lake: Lake) -> tuple[int, int]:
    infos = lake.fs.get_file_info(pafs.FileSelector(lake.root, recursive=True, allow_not_found=True))
    files = [i for i in infos if i.type == pafs.FileType.File]
    return sum(int(i.size or 0) for i in files), len(files)


def _ingest(lake: Lake, plan: list[FleetSite], work: Path, args: argparse.Namespace) -> list[SiteIngest]:
    from tests.lake.fleet_synth import record_site

    out = []
    for site in plan:
        out.append(
            write_site(
                lake,
                site,
                work,
                hours=args.hours,
                interval_s=args.interval,
                slice_minutes=args.slice_minutes,
            )
        )
        record_site(lake, site.name, site.networks())
        shutil.rmtree(work / site.name, ignore_errors=True)  # the instance's local data dir (catalog only)
    return out


def _spark(root: str) -> dict[str, float] | str:
    """Spark local-mode times over the local lake, or why they were not measured."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return "pyspark not installed in this venv (make spark installs it): DuckDB only"
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("hciwatch-bench-fleet")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        times: dict[str, float] = {}
        t = time.perf_counter()
        df = spark.read.parquet(f"{root}/samples")
        df.count()
        times["count"] = time.perf_counter() - t
        t = time.perf_counter()
        df.groupBy("site").agg({"host": "approx_count_distinct", "value": "sum"}).collect()
        times["per-site aggregate"] = time.perf_counter() - t
        return times
    finally:
        spark.stop()


def _hook(spec: str | None) -> Callable[[str, LakeSettings], float] | None:
    if not spec:
        return None
    module, _, func = spec.partition(":")
    fn: Callable[[str, LakeSettings], float] = getattr(importlib.import_module(module), func)
    return fn


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", type=int, default=200)
    ap.add_argument("--hosts", type=int, default=5000, help="HCI hosts in the whole fleet")
    ap.add_argument("--hours", type=float, default=1.0, help="hours of data per site")
    ap.add_argument("--interval", type=float, default=30.0, help="scrape interval, seconds")
    ap.add_argument("--slice-minutes", type=float, default=15.0, help="minutes of rows per flush (one file each)")
    ap.add_argument("--backends", default="local,azurite", help="local, azurite, s3 (comma-separated)")
    ap.add_argument("--no-spark", action="store_true", help="skip the Spark line even if pyspark is there")
    ap.add_argument("--takeover-hook", default=None, help="module:function(lake_url, settings) -> seconds")
    args = ap.parse_args()

    plan = fleet_plan(args.sites, args.hosts, hours=args.hours)
    incidents = sum(len(s.incidents) for s in plan)
    print(
        f"fleet: {len(plan)} sites, {sum(s.hosts for s in plan)} HCI hosts "
        f"({min(s.hosts for s in plan)}-{max(s.hosts for s in plan)} per site), {args.hours:g} h at "
        f"{args.interval:g} s, {incidents} incidents"
    )
    hook = _hook(args.takeover_hook)
    result: dict[str, str] = {"sites": str(len(plan)), "hosts": str(sum(s.hosts for s in plan))}
    table: list[tuple[str, ...]] = []
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        for backend in args.backends.split(","):
            with ExitStack() as stack:
                url, settings = stack.enter_context(_backend(backend, work))
                lake = Lake.open(url, settings)
                t = time.perf_counter()
                ingests = _ingest(lake, plan, work / f"inst-{backend}", args)
                wall = time.perf_counter() - t
                store_s = sum(i.write_s for i in ingests)
                per_inst = [i.rows / i.write_s for i in ingests if i.write_s > 0]
                per_inst_samples = [i.samples / i.write_s for i in ingests if i.write_s > 0]
                rows = sum(i.rows for i in ingests)
                samples = sum(i.samples for i in ingests)
                size, files = _lake_size(lake)
                print(
                    f"ingest {backend}: {rows:,} rows ({samples:,} samples) in {wall:.1f} s wall; store time "
                    f"{store_s:.1f} s = {rows / store_s:,.0f} rows/s; per instance median "
                    f"{statistics.median(per_inst):,.0f} rows/s ({statistics.median(per_inst_samples):,.0f} "
                    f"samples/s), range {min(per_inst):,.0f}-{max(per_inst):,.0f}; store open median "
                    f"{statistics.median(i.open_s for i in ingests) * 1000:.0f} ms"
                )
                print(
                    f"lake {backend}: {size / 1e6:,.1f} MB in {files:,} files ({size / max(samples, 1):.1f} B/sample)"
                )
                ingest_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(f"peak RSS after {backend} ingest (before any query): {ingest_rss:,.0f} MiB")
                result[f"{backend}_ingest_rss_mib"] = f"{ingest_rss:.0f}"
                q_times: dict[str, float] = {}
                for name, sql in QUERIES.items():
                    t = time.perf_counter()
                    res = run_query(Path("."), sql, extra_views=fleet_views(lake), lake=lake, limits=LIMITS)
                    q_times[name] = time.perf_counter() - t
                    print(f"query duckdb {backend} {name}: {q_times[name]:.2f} s ({res.table.num_rows} rows)")
                spark: dict[str, float] | str = "not run (--no-spark)" if args.no_spark else ""
                if backend == "local" and not args.no_spark:
                    spark = _spark(url)
                if isinstance(spark, dict):
                    for name, s in spark.items():
                        print(f"query spark {backend} {name}: {s:.2f} s")
                elif backend == "local":
                    print(f"query spark {backend}: not measured: {spark}")
                takeover = hook(url, settings) if hook is not None else None
                print(
                    f"takeover {backend}: "
                    + (f"{takeover:.2f} s" if takeover is not None else "n/a (no --takeover-hook: domain ownership)")
                )
                table.append(
                    (
                        backend,
                        f"{statistics.median(per_inst):,.0f}",
                        f"{statistics.median(per_inst_samples):,.0f}",
                        f"{rows / store_s:,.0f}",
                        f"{size / 1e6:,.1f} MB / {files:,}",
                        *(f"{q_times[n]:.2f}" for n in QUERIES),
                        f"{spark['count']:.2f}" if isinstance(spark, dict) else "n/a",
                        f"{takeover:.2f}" if takeover is not None else "n/a",
                    )
                )
                result[f"{backend}_rows_per_s_instance"] = f"{statistics.median(per_inst):.0f}"
                result[f"{backend}_lake_mb"] = f"{size / 1e6:.1f}"
                result[f"{backend}_files"] = str(files)
                for n, s in q_times.items():
                    result[f"{backend}_q_{n.replace(' ', '_').replace('-', '_')}_s"] = f"{s:.2f}"
                shutil.rmtree(work / f"inst-{backend}", ignore_errors=True)
                if backend == "local":
                    shutil.rmtree(url, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the bench process (queries included; DuckDB max_memory {LIMITS.max_memory}): {rss:,.0f} MiB")
    head = (
        "backend",
        "rows/s per instance",
        "samples/s per instance",
        "rows/s fleet (store time)",
        "lake size / files",
        *(f"{n} s" for n in QUERIES),
        "Spark count s",
        "takeover s",
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in table:
        print("| " + " | ".join(row) + " |")
    result["peak_rss_mib"] = f"{rss:.0f}"
    print("RESULT fleet " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
