"""The streaming detector (analytics.detector) and the real-export policy of ``hciwatch anomalies``:
causality, determinism, one alert per episode (and one more if it escalates), novelty, messy rows
flagged (or refused with --strict)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analytics.detector import StreamDetector
from analytics.offline import anomalies_csv

REPO = Path(__file__).resolve().parents[2]
NAB = REPO / "tests" / "fixtures" / "nab" / "data"


def _values(seed: int, n: int = 3000) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = 100 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 2, n)
    v[2000:2030] += 40  # an incident
    return [float(x) for x in v]


def _run(values: list[float], sensitivity: str = "medium") -> list[tuple[float, bool]]:
    det = StreamDetector(sensitivity, season=288)
    return [(s.score, s.alert) for s in map(det.update, values)]


@pytest.mark.parametrize("seed", [1, 2])
def test_appending_future_rows_never_changes_past_scores(seed: int) -> None:
    v = _values(seed)
    short = _run(v[:1500])
    longer = _run([*v[:1500], 1e6, -1e6, *v[1500:]])
    assert longer[:1500] == short  # bit for bit, NaN-free after the cold start
    fixture = [float(r["value"]) for r in csv.DictReader((NAB / "realTraffic" / "speed_7578.csv").open())]
    assert _run(fixture + [0.0] * 50)[: len(fixture)] == _run(fixture)


def test_deterministic_and_one_alert_per_incident() -> None:
    v = _values(3)
    a, b = _run(v), _run(v)
    assert repr(a) == repr(b)
    alerts = [i for i, (_, hit) in enumerate(a) if hit]
    assert [i for i in alerts if 2000 <= i < 2030] == [2000], alerts
    assert len(alerts) <= 2, alerts  # the incident, at most one more in 3,000 rows of noise


def test_sensitivity_orders_the_alert_count() -> None:
    v = _values(4)
    counts = [sum(hit for _, hit in _run(v, s)) for s in ("low", "medium", "high")]
    assert counts[0] <= counts[1] <= counts[2] and counts[0] >= 1


def test_direction_up_ignores_drops() -> None:
    v = _values(5)
    v[2500:2530] = [x - 40 for x in v[2500:2530]]
    det = StreamDetector("medium", season=288, direction="up")
    alerts = [i for i, x in enumerate(v) if det.update(x).alert]
    assert any(2000 <= i < 2030 for i in alerts) and not any(2500 <= i < 2530 for i in alerts), alerts


def test_a_routinely_large_feature_raises_only_its_own_bar() -> None:
    """A series whose steps are routinely wild (a spiky gauge: 3 % of rows jump by 25 spreads) still alerts
    on a level shift: the level and jump bars rise to cover the spikes, the slow shift keeps a low one."""
    rng = np.random.default_rng(6)
    v = [100 + float(rng.normal(0, 1)) + (25.0 if rng.random() < 0.03 else 0.0) for i in range(3000)]
    v[2500:] = [x + 8 for x in v[2500:]]
    det = StreamDetector("medium")
    alerts = [i for i, x in enumerate(v) if det.update(x).alert]
    assert any(2500 <= i < 2530 for i in alerts), alerts
    spikes = sum(x > 115 for x in v[600:2500])
    # the routine spikes are learned: at most one in ten still alerts (clusters of them, which the
    # shift features rightly find rarer)
    assert len([i for i in alerts if 600 <= i < 2500]) <= spikes / 10, (alerts, spikes)


def test_a_broken_rhythm_alerts_though_every_value_is_ordinary() -> None:
    """A series that alternates low/high every row: one high repeated is no outlier in level, step
    size or mean, but the transition high → high was never seen, so the novelty feature flags it
    (and nothing else in 3,000 rows); without that feature the break goes unnoticed."""
    from analytics.detector import DetectorParams

    rng = np.random.default_rng(11)
    v = [(100.0 if i % 2 else 0.0) + float(rng.normal(0, 2)) for i in range(3000)]
    v[2500] = v[2499]
    v[2501] = 100.0 + float(rng.normal(0, 2))
    det = StreamDetector("medium")
    assert [i for i, x in enumerate(v) if det.update(x).alert] == [2500]
    blind = StreamDetector("medium", DetectorParams(novelty_bins=0))
    assert not any(blind.update(x).alert for x in v)


def test_an_incident_inside_an_open_episode_alerts_again() -> None:
    """A modest rise opens an episode; ten rows later, still inside it, the value jumps by 30 spreads.
    One alert per episode would stay silent about the real incident; the escalation alerts on it."""
    from analytics.detector import DetectorParams

    rng = np.random.default_rng(12)
    v = [100 + float(rng.normal(0, 2)) for _ in range(3000)]
    v[2000:2040] = [x + 12 for x in v[2000:2040]]
    v[2010:2040] = [x + 60 for x in v[2010:2040]]
    det = StreamDetector("medium")
    alerts = [i for i, x in enumerate(v) if det.update(x).alert]
    assert [i for i in alerts if 2000 <= i < 2040] == [2000, 2010], alerts
    once = StreamDetector("medium", DetectorParams(escalate=0))
    assert [i for i, x in enumerate(v) if once.update(x).alert and 2000 <= i < 2040] == [2000]


def test_tail_is_exact_for_a_block_aligned_window() -> None:
    from analytics.detector import _Tail

    tail = _Tail(3, 100, 10)  # 10 blocks of 10 rows; the window keeps the last 9 full blocks + the current
    vals = [float((i * 37) % 101) for i in range(250)]
    for x in vals:
        tail.add(x)
    assert tail.kth() == sorted(vals[-len(tail) :], reverse=True)[2]


def test_memory_per_series_stays_within_budget() -> None:
    """Budget (5-minute rows, every window and the calibration history full): 80 KiB per series,
    i.e. under 0.8 GiB for 10,000 live series. ``bench_anomalies_nab.py --memory`` prints the figures."""
    import tracemalloc

    values = _values(8, 2100)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    dets = [StreamDetector("medium", season=288) for _ in range(3)]
    for det in dets:
        for i, x in enumerate(values):
            det.update(x, float(i))
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert used / len(dets) < 80 * 1024, used / len(dets)


MESSY = """timestamp,host,value
{rows}2026-01-02T00:00:00Z,hv1,50
2026-01-01T23:00:00Z,hv1,51
2026-01-02T00:00:00Z,hv1,51
2026-01-02T00:05:00Z,hv1,n/a
2026-01-02T00:10:00Z,hv1,12,5
2026-01-02T00:15:00Z,hv1,twelve
yesterday,hv1,50
2026-01-02T03:00:00Z,hv1,52
"""


def _messy(tmp: Path) -> Path:
    rng = np.random.default_rng(9)
    rows = "".join(
        f"2026-01-01T{h:02d}:{m:02d}:00Z,hv1,{50 + rng.normal(0, 1):.2f}\n" for h in range(24) for m in range(0, 60, 5)
    )
    p = tmp / "export.csv"
    p.write_text(MESSY.format(rows=rows))
    return p


def test_real_export_policy_flags_counts_and_scores_in_arrival_order(tmp_path: Path) -> None:
    p = _messy(tmp_path)
    out = io.StringIO()
    run = anomalies_csv(p, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == run.rows == 24 * 12 + 8  # every input row, in input order
    notes = [r["note"] for r in rows[-8:]]
    assert notes == ["", "out_of_order", "duplicate", "missing", "", "not_numeric", "bad_timestamp", "after_gap"]
    assert rows[-7]["score"] != "" and rows[-6]["score"] == "" and rows[-1]["score"] != ""
    assert {k: v[0] for k, v in run.notes.items()} == {
        "out_of_order": 1,
        "duplicate": 1,
        "missing": 1,
        "not_numeric": 1,
        "bad_timestamp": 1,
        "after_gap": 1,
    }
    assert run.notes["out_of_order"][1] == 24 * 12 + 3  # the line number (header is line 1)


def test_cli_warns_on_stderr_and_strict_refuses_without_output(tmp_path: Path) -> None:
    p = _messy(tmp_path)
    cmd = [sys.executable, "-m", "hciwatch.cli", "anomalies", str(p)]
    ok = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "1 row(s) earlier than a previous row, scored in arrival order (first at line 291)" in ok.stderr
    assert "value that is not a number" in ok.stderr and "Traceback" not in ok.stderr
    assert ok.stdout.startswith("timestamp,value,score,is_anomaly,note\n")
    strict = subprocess.run([*cmd, "--strict"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert strict.returncode == 1 and strict.stdout == ""  # never a half-written output
    assert "earlier than a previous row" in strict.stderr and "line 291" in strict.stderr
