"""A bounded profile of every benchmark under ``bench/``: each script runs end to end on a tiny
input and prints its throughput line, so a benchmark cannot rot unnoticed between ``make bench``
runs. Nothing here asserts on a timing — only that the script finished and reported.

``bench/run_all.py`` (``make bench``'s summary table) is checked on RESULT lines of the shapes the
benchmarks print, including ``bench_eval_pass.py``'s (it may be absent: the cells say n/a).

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
        ("bench_replay.py", ("--hours", "1", "--workers", "0"), "RESULT replay samples_per_s="),
        ("bench_replay.py", ("--hours", "1", "--workers", "2", "--eval"), " eval=1"),
        ("bench_capacity.py", ("--hours", "1", "--fetches", "3"), "RESULT capacity host_cpu_ms_per_s="),
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


RESULTS = """\
RESULT ingest cpu_per_m_hciwatch=0.770 cpu_per_m_prometheus=1.541 rss_mib_hciwatch=346 rss_mib_prometheus=536 \
bytes_per_series_hciwatch=2057 bytes_per_series_prometheus=3420 wal=1 missed_ticks=16
RESULT replay samples_per_s=500000 wall_s=10 samples=5000000 cpu_s=8 rss_mib_main=300 rss_mib_worker=200 workers=2 \
series=7655 bytes_per_series=100000
RESULT eval_ms_per_pass hosts=4 2.5 hosts=50 10.0 hosts=500 100.0
RESULT parse ratio_cpu_cold=25.10 ratio_cpu_repeat=110.00 samples=176325
RESULT haproxy_parse rows=300 capture_cold=900000 capture_repeat=4000000 synthetic_cold=1800000 \
synthetic_repeat=7500000 (samples per CPU-second)
RESULT capacity host_cpu_ms_per_s=0.1 cluster_cpu_ms_per_s=0.2 hosts_per_cluster=1.333 windows_samples=190 fetch_ms=0.4
RESULT fleet sites=200 hosts=5000 local_rows_per_s_instance=250000 local_lake_mb=61.5 local_files=1800 \
local_q_pool_usage_s=1.25 local_q_congestion_signals_s=4.50 azurite_rows_per_s_instance=90000 azurite_lake_mb=61.5
"""


def _results(text: str) -> dict[str, dict[str, str]]:
    from bench.run_all import parse_result

    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        got = parse_result(line)
        if got is not None:
            out[got[0]] = got[1]
    return out


def test_summary_table_reads_every_result_line() -> None:
    from bench.run_all import capacity, table

    res = _results(RESULTS)
    assert res["eval_ms_per_pass"] == {"hosts=4": "2.5", "hosts=50": "10.0", "hosts=500": "100.0"}
    text = "\n".join(table(res, ("1.0", "2.0")))
    assert "0.50" in text and "0.65" in text  # CPU and RSS ratios against Prometheus
    assert "2.5 / 10.0 / 100.0" in text and "25.1x" in text and "500,000" in text
    assert "1.80 / 7.50" in text  # HAProxy CSV, cold and repeated reads
    # 1000 ms/s budget; per host 0.1 + 0.2/1.333 + 0.2/60 ms/s; the 50-host intercept is 0
    hosts, line = capacity(res)
    assert round(hosts) == round(1000 / (0.1 + 0.2 / 1.333 + 0.2 / 60))
    assert "HCI hosts" in line and "ingest + detectors" in line
    assert "fleet (200 sites, 5000 HCI hosts, DuckDB): local 250,000 rows/s per instance, 62 MB" in text
    assert "pool_usage 1.25 s, congestion_signals 4.50 s; azurite 90,000 rows/s per instance" in text


def test_summary_table_without_the_eval_benchmark() -> None:
    from bench.run_all import capacity, table

    res = _results(RESULTS)
    del res["eval_ms_per_pass"]
    text = "\n".join(table(res, ("1.0", "2.0")))
    assert "n/a / n/a / n/a" in text and "bench_eval_pass.py absent" in text
    assert "ingest only" in capacity(res)[1]
    assert "n/a" in "\n".join(table({}, ("n/a", "n/a")))
    assert "fleet: n/a (bench_fleet.py did not report)" in "\n".join(table({}, ("n/a", "n/a")))
