"""A bounded profile of every benchmark under ``bench/``: each script runs end to end on a tiny
input and prints its throughput line, so a benchmark cannot rot unnoticed between ``make bench``
runs. Nothing here asserts on a timing — only that the script finished and reported.

``bench/run_all.py`` (``make bench``'s summary table) runs end to end on its smoke profile (the
demo on a 1 h site, replay of its capture with and without the detectors, the capacity bench on
6 simulated minutes: ``test_run_all_smoke.py``), and its table is checked on RESULT lines of the
shapes the benchmarks print (an absent benchmark leaves n/a cells).

``bench_scrape_vs_prometheus.py`` is not in the profile: its peer is Debian's Prometheus server,
which the test environment does not install (``make bench`` installs and runs it).
``bench_anomalies_nab.py`` runs on a tiny NAB-layout directory written here and on the three-series
NAB fixture (``tests/fixtures/nab``); the real figures come from ``make bench-nab NAB_DIR=…``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.report.synth import write_site

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600  # bounds a hang; not a timing assertion


def run_bench(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / name), *args], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.parametrize(
    ("name", "args", "reports"),
    [
        ("bench_store.py", ("--samples", "200000", "--batch", "50000", "--hosts", "20"), "samples/s"),
        (
            "bench_lake.py",
            ("--backends", "local", "--rows", "20000", "--batch", "10000", "--sites", "2", "--minutes", "5"),
            "fleet local pool_usage",
        ),
        (
            "bench_fleet.py",
            ("--backends", "local", "--sites", "3", "--hosts", "12", "--hours", "0.25", "--no-spark"),
            "RESULT fleet sites=3 hosts=12",
        ),
        ("bench_prom_parse.py", ("--samples", "5000", "--repeat", "1"), "/s"),
        ("bench_haproxy_parse.py", ("--rows", "40", "--repeat", "1"), "RESULT haproxy_parse rows=40 capture_cold="),
        ("bench_inventory_parse.py", ("--hours", "1", "--repeat", "1"), "RESULT inventory_parse k8s_careful="),
        ("bench_analytics.py", ("--hosts", "12", "--filler", "5"), "full pass"),
        ("bench_import.py", ("--rows", "300", "--files", "2"), "rows/s"),
        ("bench_wal_ingest.py", ("--series", "200", "--scrapes", "5"), "CPU per million samples"),
    ],
)
def test_bench_runs_on_a_small_profile(name: str, args: tuple[str, ...], reports: str) -> None:
    assert reports in run_bench(name, *args)


def test_bench_report_on_a_small_site(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", hours=3, hosts=2, incidents=10)
    out = run_bench("bench_report.py", "--data-dir", str(site.data_dir), "--runs", "1")
    assert "report:" in out and "MB" in out


def test_bench_nab_scores_windows_on_a_nab_layout(tmp_path: Path) -> None:
    """A series with one labelled level shift and nothing else: detected, no false positive."""
    rng = np.random.default_rng(3)
    t0 = datetime(2014, 2, 14, 14, 30)
    n = 2000
    v = 40 + rng.normal(0, 1.5, n)
    v[1500:1560] += 25
    (tmp_path / "data" / "realKnownCause").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    rows = ["timestamp,value"] + [f"{t0 + timedelta(minutes=5 * i):%Y-%m-%d %H:%M:%S},{x:.3f}" for i, x in enumerate(v)]
    (tmp_path / "data" / "realKnownCause" / "synthetic.csv").write_text("\n".join(rows) + "\n")
    window = [f"{t0 + timedelta(minutes=5 * i):%Y-%m-%d %H:%M:%S}.000000" for i in (1450, 1550)]
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps({"realKnownCause/synthetic.csv": [window]}))
    out = run_bench(
        "bench_anomalies_nab.py", "--nab-dir", str(tmp_path), "--files", "synthetic.csv", "--sensitivity", "medium"
    )
    total = next(line for line in out.splitlines() if line.startswith("all "))
    files, windows, detected, fps, standard = total.split()[1:6]
    assert (files, windows, detected, fps) == ("1", "1", "1", "0"), out
    assert 90 < float(standard) <= 100, out  # detected early in its window, nothing else
    assert "rows/s" in out


def test_bench_nab_on_the_vendored_fixture() -> None:
    out = run_bench("bench_anomalies_nab.py", "--sensitivity", "low")
    assert "realTraffic" in out and "held out or not selected" in out and "rows/s" in out
