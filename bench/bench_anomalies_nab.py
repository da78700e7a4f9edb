"""Benchmark: the offline anomaly scorer (``hciwatch anomalies``) on labelled NAB series.

Data: the Numenta Anomaly Benchmark (https://github.com/numenta/NAB, AGPL-3.0). It is *not* vendored
in this repository; get it with ``git clone https://github.com/numenta/NAB`` and pass the checkout
(the directory holding ``data/`` and ``labels/combined_windows.json``) as ``--nab-dir``.

Each series goes through :func:`analytics.offline.anomalies_csv` — the function the CLI calls —
with default settings and the chosen sensitivity; it flags the first row of each anomalous episode.
Scoring is a simplified window-hit scheme, **not the official NAB score** (no sigmoid weighting,
no application profiles, no normalisation against the null detector):

* the first 15 % of each series is NAB's *probationary period* (``min(floor(0.15 × rows), 750)``
  rows, as NAB computes it): flags there are not counted either way, and a window that ends inside
  it is left out;
* a labelled window is **detected** when a flagged episode starts inside it (timestamps inclusive);
  the first such start gives the detection delay from the window start, in rows and as a fraction
  of the window's length in rows (an episode that opened before the window and is still running
  does not count);
* a flagged episode that starts outside every window is a **false positive**; FP/1k is per 1,000
  rows after the probationary period;
* rows/s is the scorer's throughput (CSV parse, scoring and CSV output, one run per series).

Run::

    .venv/bin/python bench/bench_anomalies_nab.py --nab-dir ~/src/NAB [--sensitivity medium]
    make bench-nab NAB_DIR=~/src/NAB        # low, medium and high
    .venv/bin/python bench/bench_anomalies_nab.py --nab-dir ~/src/NAB --files realTraffic/speed_7578.csv

``--files`` takes paths under ``DIR/data`` (``category/name.csv``; a bare ``name.csv`` is looked up
in every category). Without it, four ~4,000-row operations series are used (see ``DEFAULT_FILES``).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import io
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.offline import anomalies_csv
from analytics.settings import Sensitivity

DEFAULT_FILES = (
    "realKnownCause/ec2_request_latency_system_failure.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
    "realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv",
    "realAWSCloudwatch/ec2_disk_write_bytes_1ef3de.csv",
)
PROBATION_PERCENT = 0.15  # NAB's probationPercent
PROBATION_CAP_ROWS = 5000  # NAB caps the probationary period at probationPercent × 5000 rows


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    first_row: int  # first row inside the window (inclusive)
    last_row: int  # last row inside the window (inclusive)
    delay_rows: int | None  # rows from the window start to the first episode start in it; None = missed

    @property
    def rows(self) -> int:
        return self.last_row - self.first_row + 1

    @property
    def delay_frac(self) -> float | None:
        return None if self.delay_rows is None else self.delay_rows / self.rows


@dataclass(slots=True)
class SeriesResult:
    name: str
    rows: int
    probation: int
    episodes: int  # all flagged episode starts, probation included
    seconds: float
    windows: list[Window] = field(default_factory=list)
    false_positives: int = 0
    skipped_windows: int = 0  # windows that end inside the probationary period

    @property
    def detected(self) -> int:
        return sum(w.delay_rows is not None for w in self.windows)

    @property
    def fp_per_1k(self) -> float:
        return 1000 * self.false_positives / max(1, self.rows - self.probation)

    @property
    def delay_fracs(self) -> list[float]:
        return [f for w in self.windows if (f := w.delay_frac) is not None]

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.inf


def probation_rows(n: int) -> int:
    """NAB's probationary period: ``min(floor(0.15 × n), 0.15 × 5000)`` rows."""
    return int(min(math.floor(PROBATION_PERCENT * n), PROBATION_PERCENT * PROBATION_CAP_ROWS))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def resolve(nab_dir: Path, name: str) -> tuple[str, Path]:
    """``category/name.csv`` (or a bare ``name.csv``) → (labels key, path); raises FileNotFoundError."""
    data = nab_dir / "data"
    path = data / name
    if path.is_file():
        return path.relative_to(data).as_posix(), path
    if "/" not in name:
        hits = sorted(data.glob(f"*/{name}"))
        if len(hits) == 1:
            return hits[0].relative_to(data).as_posix(), hits[0]
    raise FileNotFoundError(f"no series {name!r} under {data}")


def score_series(key: str, path: Path, windows: list[list[str]], sensitivity: str) -> SeriesResult:
    out = io.StringIO()
    t = time.perf_counter()
    anomalies_csv(path, out, sensitivity=sensitivity)
    seconds = time.perf_counter() - t
    out.seek(0)
    reader = csv.reader(out)
    next(reader)
    stamps: list[datetime] = []
    starts: list[int] = []
    for i, row in enumerate(reader):
        stamps.append(parse_time(row[0]))
        if row[3] == "true":
            starts.append(i)
    n = len(stamps)
    prob = probation_rows(n)
    res = SeriesResult(key, n, prob, len(starts), seconds)
    counted = [s for s in starts if s >= prob]
    claimed: set[int] = set()
    for w_start, w_end in windows:
        start, end = parse_time(w_start), parse_time(w_end)
        first, last = bisect.bisect_left(stamps, start), bisect.bisect_right(stamps, end) - 1
        if last < first or last < prob:
            res.skipped_windows += 1
            continue
        inside = [s for s in counted if first <= s <= last]
        claimed.update(inside)
        res.windows.append(Window(start, end, first, last, inside[0] - first if inside else None))
    res.false_positives = sum(s not in claimed for s in counted)
    return res


def fmt_frac(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def print_series(r: SeriesResult) -> None:
    print(
        f"\n{r.name}: {r.rows:,} rows, probation {r.probation} rows, {r.episodes} episode(s) flagged, "
        f"{r.rows_per_s:,.0f} rows/s"
    )
    print(f"  {'window':<36} {'rows':>5} {'detected':>9} {'delay rows':>11} {'delay frac':>11}")
    for w in r.windows:
        span = f"{w.start:%Y-%m-%d %H:%M} .. {w.end:%Y-%m-%d %H:%M}"
        hit = w.delay_rows is not None
        print(
            f"  {span:<36} {w.rows:>5} {'yes' if hit else 'no':>9} "
            f"{'—' if w.delay_rows is None else w.delay_rows:>11} {fmt_frac(w.delay_frac):>11}"
        )
    if r.skipped_windows:
        print(f"  ({r.skipped_windows} window(s) inside the probationary period left out)")
    print(f"  false positives: {r.false_positives} ({r.fp_per_1k:.2f} per 1k rows after probation)")


def print_totals(results: list[SeriesResult]) -> None:
    width = max(len("all"), *(len(r.name) for r in results))
    head = (
        f"{'series':<{width}} {'windows':>7} {'detected':>8} {'recall':>6} {'FP':>4} {'FP/1k':>6} "
        f"{'med delay frac':>14} {'rows/s':>9}"
    )
    print("\n" + head)
    print("-" * len(head))

    def line(
        name: str, windows: int, detected: int, fp: int, scored: int, fracs: list[float], rows: int, seconds: float
    ) -> None:
        recall = f"{detected / windows:.2f}" if windows else "—"
        med = fmt_frac(statistics.median(fracs) if fracs else None)
        rate = f"{rows / seconds:,.0f}" if seconds > 0 else "—"
        print(
            f"{name:<{width}} {windows:>7} {detected:>8} {recall:>6} {fp:>4} "
            f"{1000 * fp / max(1, scored):>6.2f} {med:>14} {rate:>9}"
        )

    for r in results:
        line(
            r.name,
            len(r.windows),
            r.detected,
            r.false_positives,
            r.rows - r.probation,
            r.delay_fracs,
            r.rows,
            r.seconds,
        )
    print("-" * len(head))
    line(
        "all",
        sum(len(r.windows) for r in results),
        sum(r.detected for r in results),
        sum(r.false_positives for r in results),
        sum(r.rows - r.probation for r in results),
        [f for r in results for f in r.delay_fracs],
        sum(r.rows for r in results),
        sum(r.seconds for r in results),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--nab-dir",
        default=os.environ.get("NAB_DIR"),
        help="NAB checkout: holds data/ and labels/combined_windows.json (default: $NAB_DIR)",
    )
    ap.add_argument("--sensitivity", choices=[s.value for s in Sensitivity], default="medium")
    ap.add_argument(
        "--files",
        nargs="+",
        metavar="CSV",
        default=list(DEFAULT_FILES),
        help="series under DIR/data (category/name.csv); default: the four in DEFAULT_FILES",
    )
    args = ap.parse_args()
    hint = "get the data with: git clone https://github.com/numenta/NAB (AGPL-3.0, not vendored here)"
    if not args.nab_dir:
        print(f"error: --nab-dir (or NAB_DIR) is required; {hint}", file=sys.stderr)
        return 2
    nab_dir = Path(args.nab_dir).expanduser()
    labels_path = nab_dir / "labels" / "combined_windows.json"
    if not nab_dir.is_dir() or not (nab_dir / "data").is_dir() or not labels_path.is_file():
        print(
            f"error: {nab_dir} is not a NAB checkout (needs data/ and labels/combined_windows.json); {hint}",
            file=sys.stderr,
        )
        return 2
    labels: dict[str, list[list[str]]] = json.loads(labels_path.read_text(encoding="utf-8"))
    series: list[tuple[str, Path]] = []
    for name in args.files:
        try:
            key, path = resolve(nab_dir, name)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if key not in labels:
            print(f"error: {key} has no entry in {labels_path}", file=sys.stderr)
            return 2
        series.append((key, path))

    print(
        f"hciwatch anomalies on NAB ({nab_dir}), sensitivity {args.sensitivity}: simplified window-hit "
        f"scoring, not the official NAB score"
    )
    results = [score_series(key, path, labels[key], args.sensitivity) for key, path in series]
    for r in results:
        print_series(r)
    print_totals(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
