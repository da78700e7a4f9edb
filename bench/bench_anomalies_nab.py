"""Benchmark: ``hciwatch anomalies`` on labelled NAB series, with NAB's official scoring.

Data: a Numenta Anomaly Benchmark layout (``data/<category>/*.csv`` and
``labels/combined_windows.json``): a NAB checkout (``git clone https://github.com/numenta/NAB``, MIT
since 2024), the 41-series development subset, or the three-series fixture vendored in
``tests/fixtures/nab`` (the default). Each series goes through :func:`analytics.offline.anomalies_csv`
— the function the CLI calls — and its ``is_anomaly`` rows are the detections. Scoring is NAB's own
(:mod:`analytics.nab_score`: windows, probationary 15 %, scaled sigmoid, the standard /
reward_low_FP_rate / reward_low_FN_rate profiles, normalised null = 0, perfect = 100), per category
and in total. Our detections are binary (one row per episode), so no threshold is optimised:
the number is what a user of ``--sensitivity`` gets.

``--published DETECTOR`` instead scores NAB's own result files (``results/DETECTOR/...``) at the
thresholds in NAB's ``config/thresholds.json`` — on a full checkout that reproduces NAB's
published table, which validates the scorer.

Throughput: rows/s of the detector alone and of the whole CLI path (parse, score, CSV out), CPU
time of this process (one core).

Run::

    .venv/bin/python bench/bench_anomalies_nab.py --nab-dir ~/src/NAB [--sensitivity all]
    .venv/bin/python bench/bench_anomalies_nab.py --nab-dir ~/src/NAB --published randomCutForest
    .venv/bin/python bench/bench_anomalies_nab.py --memory 50   # live memory per series, steady state
    make bench-nab NAB_DIR=~/src/NAB
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.detector import StreamDetector
from analytics.nab_score import PROFILES, Layout, layout, normalise, score_detections
from analytics.offline import anomalies_csv, season_rows, usual_step
from analytics.settings import Sensitivity

REPO = Path(__file__).resolve().parents[1]
NAB_CATEGORIES = (
    "artificialNoAnomaly",
    "artificialWithAnomaly",
    "realAWSCloudwatch",
    "realAdExchange",
    "realKnownCause",
    "realTraffic",
    "realTweets",
)
PUBLISHED = (  # NAB's final_results.json (standard, reward_low_FP_rate, reward_low_FN_rate), whole corpus
    ("ARTime", 74.9, 65.2, 80.4),
    ("Numenta HTM", 70.5, 62.6, 75.2),
    ("CAD OSE", 69.9, 67.0, 73.2),
    ("Skyline", 58.2, 46.2, 63.8),
    ("Random Cut Forest", 51.7, 38.4, 59.7),
    ("null", 0.0, 0.0, 0.0),
)
PROFILE_ORDER = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


@dataclass(slots=True)
class Tally:
    """Raw NAB score parts of a group of files, per profile."""

    files: int = 0
    windows: int = 0
    detected: int = 0
    false_positives: int = 0
    raw: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PROFILE_ORDER, 0.0))

    def add(self, lay: Layout, detections: list[bool]) -> None:
        self.files += 1
        for name in PROFILE_ORDER:
            fs = score_detections(lay, detections, PROFILES[name])
            self.raw[name] += fs.score
        self.windows += fs.windows
        self.detected += fs.detected
        self.false_positives += fs.false_positives

    def merge(self, other: Tally) -> None:
        self.files += other.files
        self.windows += other.windows
        self.detected += other.detected
        self.false_positives += other.false_positives
        for name in PROFILE_ORDER:
            self.raw[name] += other.raw[name]

    def scores(self) -> list[float]:
        return [normalise(self.raw[n], self.windows, PROFILES[n]) for n in PROFILE_ORDER]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def read_series(path: Path) -> tuple[list[datetime], list[float]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return [parse_time(r[0]) for r in rows], [float(r[1]) for r in rows]


def series_keys(nab_dir: Path, labels: dict[str, list[list[str]]], files: list[str] | None) -> list[str]:
    keys = sorted(k for k in labels if (nab_dir / "data" / k).is_file())
    if files:
        wanted = []
        for f in files:
            hits = [k for k in keys if k == f or k.endswith("/" + f)]
            if len(hits) != 1:
                raise FileNotFoundError(f"no single labelled series {f!r} under {nab_dir / 'data'}")
            wanted.append(hits[0])
        keys = wanted
    return keys


def file_layout(stamps: list[datetime], windows: list[list[str]]) -> Layout:
    return layout(stamps, [(parse_time(a), parse_time(b)) for a, b in windows])


def fmt(x: float) -> str:
    return "—" if x != x else f"{x:.1f}"  # NaN: a category without windows (only false positives count)


def print_table(title: str, tallies: dict[str, Tally]) -> None:
    print(f"\n{title}")
    head = f"{'category':<24} {'files':>5} {'windows':>7} {'hit':>4} {'FP':>5} "
    head += f"{'standard':>9} {'low FP':>7} {'low FN':>7}"
    print(head)
    print("-" * len(head))
    total = Tally()
    for cat in sorted(tallies):
        t = tallies[cat]
        total.merge(t)
        s = t.scores()
        print(
            f"{cat:<24} {t.files:>5} {t.windows:>7} {t.detected:>4} {t.false_positives:>5} "
            f"{fmt(s[0]):>9} {fmt(s[1]):>7} {fmt(s[2]):>7}"
        )
    print("-" * len(head))
    s = total.scores()
    print(
        f"{'all':<24} {total.files:>5} {total.windows:>7} {total.detected:>4} {total.false_positives:>5} "
        f"{fmt(s[0]):>9} {fmt(s[1]):>7} {fmt(s[2]):>7}"
    )


def run_ours(nab_dir: Path, labels: dict[str, list[list[str]]], keys: list[str], sensitivity: str) -> None:
    tallies: dict[str, Tally] = defaultdict(Tally)
    rows = 0
    cli_s = det_s = 0.0
    for key in keys:
        path = nab_dir / "data" / key
        out = io.StringIO()
        t = time.process_time()
        anomalies_csv(path, out, sensitivity=sensitivity)
        cli_s += time.process_time() - t
        out.seek(0)
        flags = [r["is_anomaly"] == "true" for r in csv.DictReader(out)]
        stamps, values = read_series(path)
        det = StreamDetector(sensitivity, season=season_rows(usual_step(stamps[:25])))
        t = time.process_time()
        for v in values:
            det.update(v)
        det_s += time.process_time() - t
        rows += len(values)
        tallies[key.split("/")[0]].add(file_layout(stamps, labels[key]), flags)
    print_table(f"hciwatch anomalies --sensitivity {sensitivity} (NAB official scoring, binary detections)", tallies)
    print(
        f"throughput: detector {rows / max(det_s, 1e-9):,.0f} rows/s, CLI path {rows / max(cli_s, 1e-9):,.0f} rows/s "
        f"({rows:,} rows, CPU time, one core)"
    )


def run_published(nab_dir: Path, labels: dict[str, list[list[str]]], keys: list[str], detector: str) -> int:
    th_path = nab_dir / "config" / "thresholds.json"
    if not th_path.is_file():
        print(f"error: {th_path} is missing (needs a NAB checkout)", file=sys.stderr)
        return 2
    thresholds = json.loads(th_path.read_text(encoding="utf-8"))[detector]
    files: list[tuple[str, Layout, list[float]]] = []
    for key in keys:
        cat, name = key.split("/")
        path = nab_dir / "results" / detector / cat / f"{detector}_{name}"
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        stamps = [parse_time(r["timestamp"]) for r in rows]
        files.append((cat, file_layout(stamps, labels[key]), [float(r["anomaly_score"]) for r in rows]))
    for name in PROFILE_ORDER:
        th = float(thresholds[name]["threshold"])
        tallies: dict[str, Tally] = defaultdict(Tally)
        for cat, lay, scores in files:
            tally = tallies[cat]
            fs = score_detections(lay, [s >= th for s in scores], PROFILES[name])
            tally.files += 1
            tally.windows += fs.windows
            tally.raw[name] += fs.score
        total = sum(t.raw[name] for t in tallies.values())
        n = sum(t.windows for t in tallies.values())
        per_cat = ", ".join(
            f"{c} {normalise(t.raw[name], t.windows, PROFILES[name]):.1f}" for c, t in sorted(tallies.items())
        )
        print(
            f"{detector} {name} at threshold {th:.6f}: raw {total:.4f} (NAB: {thresholds[name]['score']:.4f}), "
            f"normalised {normalise(total, n, PROFILES[name]):.2f}  [{per_cat}]"
        )
    return 0


def run_memory(series: int, rows: int, season: int) -> None:
    """Live memory per series at steady state: ``series`` detectors each fed ``rows`` rows (enough to
    fill every trailing window and the calibration history), measured with tracemalloc."""
    import random
    import tracemalloc

    rng = random.Random(16)
    values = [100.0 + 10.0 * math.sin(2 * math.pi * i / max(season, 1)) + rng.gauss(0, 2) for i in range(rows)]
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    dets = [StreamDetector("medium", season=season) for _ in range(series)]
    t = time.process_time()
    for det in dets:
        for i, v in enumerate(values):
            det.update(v, float(i))
    cpu = time.process_time() - t
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    per = used / series
    print(
        f"memory: {series} series x {rows} rows, season {season}: {per / 1024:.1f} KiB per series at steady state "
        f"(tracemalloc), {per * 10_000 / 2**20:.0f} MiB for 10,000 series; "
        f"{series * rows / max(cpu, 1e-9):,.0f} rows/s under tracemalloc"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--nab-dir",
        default=os.environ.get("NAB_DIR") or str(REPO / "tests" / "fixtures" / "nab"),
        help="NAB layout: data/ and labels/combined_windows.json (default: $NAB_DIR, else the vendored fixture)",
    )
    ap.add_argument("--sensitivity", choices=[*(s.value for s in Sensitivity), "all"], default="all")
    ap.add_argument("--files", nargs="+", metavar="CSV", help="series under DIR/data (category/name.csv or name.csv)")
    ap.add_argument("--categories", nargs="+", metavar="CATEGORY", help="only series of these categories")
    ap.add_argument("--published", metavar="DETECTOR", help="score NAB's result files of DETECTOR instead")
    ap.add_argument(
        "--memory",
        type=int,
        metavar="SERIES",
        help="measure live memory per series instead: SERIES detectors fed to steady state (5-min, 1-min, 10-s rows)",
    )
    args = ap.parse_args()
    if args.memory:
        if args.memory < 1:
            print("error: --memory needs at least 1 series", file=sys.stderr)
            return 2
        for season in (288, 1440, 8640):
            run_memory(args.memory, 2_100, season)
        return 0
    nab_dir = Path(args.nab_dir).expanduser()
    labels_path = nab_dir / "labels" / "combined_windows.json"
    if not (nab_dir / "data").is_dir() or not labels_path.is_file():
        print(f"error: {nab_dir} is not a NAB layout (needs data/ and labels/combined_windows.json)", file=sys.stderr)
        return 2
    labels: dict[str, list[list[str]]] = json.loads(labels_path.read_text(encoding="utf-8"))
    try:
        keys = series_keys(nab_dir, labels, args.files)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.categories:
        keys = [k for k in keys if k.split("/")[0] in args.categories]
    present = sorted({k.split("/")[0] for k in keys})
    absent = [c for c in NAB_CATEGORIES if c not in present]
    print(f"NAB data: {nab_dir} — {len(keys)} series in {', '.join(present)}")
    if absent:
        print(f"categories not in this data (held out or not selected): {', '.join(absent)}")
    if args.published:
        return run_published(nab_dir, labels, keys, args.published)
    sens = [s.value for s in Sensitivity] if args.sensitivity == "all" else [args.sensitivity]
    for s in sens:
        run_ours(nab_dir, labels, keys, s)
    print("\npublished (whole corpus, NAB's per-profile optimised thresholds): standard / low FP / low FN")
    for name, *scores in PUBLISHED:
        print(f"  {name:<18} {scores[0]:>5.1f} {scores[1]:>5.1f} {scores[2]:>5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
