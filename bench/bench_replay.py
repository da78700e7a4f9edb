"""Benchmark: replay throughput (samples per second on this machine), parse + store and end to end.

A capture of the demo site (``lab.compact_scenario``, 60 s scrapes like ``make demo``) is
generated first (not timed), then replayed through :func:`hciwatch.pipeline.replay_records` —
the code ``hciwatch replay`` runs: ``read_capture`` → :class:`~hciwatch.parse_pool.ParsePool`
(worker processes, Arrow IPC hand-off) → ``Store`` with write-behind Parquet batches. By default
without the detectors (``evaluate=False``, what ``hciwatch replay --no-eval`` does: the parse +
store share); ``--eval`` replays end to end (the detectors' share is also measured per pass by
``bench_eval_pass.py``). With ``--code`` naming a checkout whose ``replay_records`` has no
``evaluate`` switch, the former loop (pool → ``Store.append`` per record) is timed instead.

Reported: wall seconds, samples/s (wall), CPU seconds of this process and its workers, peak RSS
of this process and of the largest worker, and peak RSS per distinct series of the capture (the
"bytes per active series" of replay; series counted afterwards with DuckDB over the Parquet).

    .venv/bin/python bench/bench_replay.py [--hours 8] [--workers 2] [--eval] [--code OTHER_CHECKOUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


BYTES_PER_SERIES_BUDGET = 100_000
"""Replay's memory budget: peak RSS of all its processes per distinct series of the demo capture.

Set from the first correct measurement (before: ~108 kB; after the shared-memory hand-off and the
per-pass batching: ~90 kB at 7,655 series). At this size the fixed part dominates (the main
process is ~160 MiB of imports before it reads a record, a worker ~110 MiB), so the figure falls
as sites grow; the growth of the main process above its idle state (~22 kB a series here) is the
part the store batch and parse-ahead set, independent of the number of series.

It had grown to ~110 kB (same capture and machine: 106.6 kB at the commit that set it, then the
HAProxy skeleton caches, +13-17 MiB per worker): the store-only main process imported the
detectors (scikit-learn and SciPy, ~90 MiB) and read the capture itself (zstd in 1 MiB steps came
back as ~25 MB pieces, plus their split copies). The main process now builds the detectors only
when a pass runs and leaves the lines to the workers: ~87 kB (main ~317 MiB, workers ~150 MiB).

Since the parse workers are forked from a forkserver that imported the parsers once, the sum
counts that forkserver (~100 MiB of imports) as well as each worker's own peak (a forked worker's
RSS counts the imported pages it touches, which it shares with the forkserver): an upper bound,
as before; the workers' peaks fell from ~150 to ~105 MiB each. End to end (detectors on) the
8 h demo capture measures ~95 kB (main ~390 MiB: its layout and mask memos no longer hold slices
that pinned ~75 MiB of workers' shared-memory chunks); the 48 h capture ~106 kB (main ~465 MiB),
over budget: the budget is set at the demo's size. Since the workers cut the detectors' samples
and capture blocks reach them through reused shared-memory files: ~91 kB on 8 h (main ~365 MiB),
~101-103 kB on 48 h (main ~440 MiB).
"""


def _rusage_cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class ChildPeaks:
    """Peak RSS (``VmHWM``) of this process's descendants, polled from ``/proc`` while they run.

    ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is no measure of a spawned worker: it counts the
    forked copy of the parent before ``exec`` (so it reports the parent's size at spawn time),
    and only children already waited for. ``VmHWM`` restarts at ``exec``; the last reading of each
    process is kept (one that exits between polls may have grown a little after it). Descendants,
    not only children: replay's parse workers are children of its forkserver (itself a child).
    """

    def __init__(self, every: float = 0.25) -> None:
        self.peak_kib: dict[int, int] = {}
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        family = {me}  # this process and every descendant seen so far
        while not self._stop.wait(self._every):
            for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):  # parents first, mostly
                try:
                    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
                        status = fh.read()
                except OSError:
                    continue
                ppid = hwm = None
                for line in status.splitlines():
                    if line.startswith("PPid:"):
                        ppid = int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm = int(line.split()[1])
                if pid not in family:
                    if ppid not in family:
                        continue
                    family.add(pid)
                elif pid == me:
                    continue
                if hwm is not None:
                    # the latest reading, not the largest: between fork and exec a child
                    # shows the parent's high-water mark; after exec VmHWM restarts and only grows
                    self.peak_kib[pid] = hwm

    def largest_mib(self) -> float:
        return max(self.peak_kib.values(), default=0) / 1024

    def total_mib(self) -> float:
        """Sum of the children's peaks (an upper bound of their peak together)."""
        return sum(self.peak_kib.values()) / 1024


def _stop_forkserver() -> None:
    """Stop and wait for this process's forkserver, if one runs (replay's parse workers are its
    children): ``RUSAGE_CHILDREN`` counts a process, and the children it waited for, only once
    it has been waited for itself."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if callable(stop):
        stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="replay throughput of parse + store")
    ap.add_argument("--hours", type=float, default=8.0, help="capture length (default 8, the demo's)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, help="parse worker processes (default: as replay chooses)")
    ap.add_argument("--capture", type=Path, help="replay this capture instead of generating one")
    ap.add_argument("--code", type=Path, help="import hciwatch from this checkout (a before/after run)")
    ap.add_argument("--eval", action="store_true", help="end to end: run the detectors as replay does")
    args = ap.parse_args(argv)
    if args.code:
        code = str(args.code.resolve())
        sys.path.insert(0, code)
        # the parse workers fork from a forkserver, a fresh interpreter that imports from its own
        # sys.path (Python 3.11 does not pass it this one's), whose first entry is the working
        # directory: without both they ran the code of the checkout the bench was started in
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (code, os.environ.get("PYTHONPATH")) if p)
        for key, value in vars(args).items():  # every path argument, before it would move
            if isinstance(value, Path):
                setattr(args, key, value.resolve())
        os.chdir(code)

    import duckdb

    import lab
    from collector.capture import read_capture
    from collector.store import Store
    from hciwatch.config import default_config
    from hciwatch.parse_pool import ParsePool, default_workers
    from hciwatch.pipeline import replay_records

    imports_s = 0.0
    if args.eval:
        # The detectors' libraries are imported on first use (scikit-learn when the first forest
        # is trained, SciPy for the first forecast): a one-off ~1 CPU-s per process, whatever the
        # capture's size. Imported and timed here, before the clock, and printed on their own
        # line, so the rate is the replay's and comparable with code that imported them at load.
        t_imp = time.process_time()
        import scipy.stats  # noqa: F401
        import sklearn.ensemble  # noqa: F401

        import analytics.engine  # noqa: F401

        imports_s = time.process_time() - t_imp

    tmp = Path(tempfile.mkdtemp(prefix="hciwatch-bench-replay-"))
    try:
        capture = args.capture
        if capture is None:
            capture = tmp / "capture.jsonl.zst"
            scenario = dataclasses.replace(
                lab.compact_scenario(seed=args.seed, hours=args.hours), interval=timedelta(seconds=60)
            )
            t0 = time.perf_counter()
            stats = lab.write_capture(scenario, capture)
            print(
                f"capture: {args.hours:g} h of the demo site, {stats.records:,} records, "
                f"{stats.body_bytes / 1e6:.0f} MB of bodies ({time.perf_counter() - t0:.1f} s to generate, not timed)"
            )
        workers = default_workers() if args.workers is None else args.workers
        rss_start = _rss_mib()
        samples = ips = records = 0
        c_self0, c_kids0 = _rusage_cpu(resource.RUSAGE_SELF), _rusage_cpu(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        with ChildPeaks() as peaks:
            if "evaluate" in inspect.signature(replay_records).parameters:
                # the code `hciwatch replay [--no-eval]` runs
                os.environ["HCIWATCH_PARSE_WORKERS"] = str(workers)
                res = replay_records(
                    read_capture(capture), default_config(tmp / "store"), tmp / "store", evaluate=args.eval
                )
                records, samples = res.stats.records_read, res.stats.samples_stored
                ips = res.stats.ip_observations_stored
            else:  # an older checkout: its pool → store loop (detectors never ran in it)
                if args.eval:
                    ap.error("--eval needs replay_records(evaluate=...) in the code measured")
                store = Store(tmp / "store", write_behind=True)
                with ParsePool((), workers=workers) as pool:
                    items = ((it.record, None) for it in read_capture(capture))
                    for _rec, _, out in pool.parse(items):
                        records += 1
                        if out is None or out.rejected is not None:
                            continue
                        if out.samples.num_rows:
                            store.append("samples", out.samples)
                            samples += out.samples.num_rows
                        if out.ip_observations.num_rows:
                            store.append("ip_observations", out.ip_observations)
                            ips += out.ip_observations.num_rows
                store.close()
        wall = time.perf_counter() - t0
        for child in multiprocessing.active_children():  # parse workers still exiting: count their CPU
            child.join()
        _stop_forkserver()  # its CPU and that of the workers it forked (and reaped) count once it is waited for
        cpu_self = _rusage_cpu(resource.RUSAGE_SELF) - c_self0
        cpu_kids = _rusage_cpu(resource.RUSAGE_CHILDREN) - c_kids0
        rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rss_kid = peaks.largest_mib()  # not ru_maxrss of RUSAGE_CHILDREN: see ChildPeaks
        rss_kids = peaks.total_mib()
        con = duckdb.connect()
        glob = str(tmp / "store" / "samples" / "**" / "*.parquet")
        row = con.execute(
            f"SELECT count(*) FROM (SELECT DISTINCT host, metric, labels FROM read_parquet('{glob}'))"
        ).fetchone()
        series = int(row[0]) if row else 0
        con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rate = samples / wall if wall else float("nan")
    bps = (rss_self + rss_kids) * 2**20 / series if series else float("nan")
    # what the replay itself adds in the main process (imports and the idle store excluded)
    bps_incr = (rss_self - rss_start) * 2**20 / series if series else float("nan")
    what = "end to end (detectors on)" if args.eval else "parse + store (detectors off)"
    if args.eval:
        print(f"detector imports (scikit-learn, SciPy): {imports_s:.2f} CPU-s once per process, outside the rate")
    print(
        f"replayed {records:,} records, {samples:,} samples, {ips:,} IP observations with {workers} parse workers, "
        f"{what}"
    )
    print(f"wall {wall:.1f} s: {rate:,.0f} samples/s | CPU {cpu_self:.1f} s main + {cpu_kids:.1f} s workers")
    print(
        f"peak RSS {rss_self:.0f} MiB main, {rss_kid:.0f} MiB largest worker; {series:,} distinct series, "
        f"{bps:,.0f} B per series (main + workers; budget {BYTES_PER_SERIES_BUDGET:,}: "
        f"{'met' if bps <= BYTES_PER_SERIES_BUDGET else 'NOT met'}), "
        f"{bps_incr:,.0f} B per series above the idle main process"
    )
    print(
        f"RESULT replay samples_per_s={rate:.0f} wall_s={wall:.2f} samples={samples} cpu_s={cpu_self + cpu_kids:.2f} "
        f"rss_mib_main={rss_self:.0f} rss_mib_worker={rss_kid:.0f} workers={workers} series={series} "
        f"bytes_per_series={bps:.0f} bytes_per_series_incr={bps_incr:.0f} eval={int(args.eval)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
