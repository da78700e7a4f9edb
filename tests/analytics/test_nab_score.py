"""NAB's official scoring (analytics.nab_score): a hand-computed file and NAB's own published score
of its Random Cut Forest detector on a vendored series (tests/fixtures/nab, MIT, see PROVENANCE.md)."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from analytics.nab_score import PROFILES, layout, normalise, probation_rows, scaled_sigmoid, score_detections

NAB = Path(__file__).resolve().parents[1] / "fixtures" / "nab"
T0 = datetime(2020, 1, 1)


def _stamps(n: int) -> list[datetime]:
    return [T0 + timedelta(minutes=5 * i) for i in range(n)]


def test_hand_computed_file() -> None:
    """100 rows (probation 15), windows rows 40..49 and 70..79; detections at row 10 (probationary,
    ignored), 20 (FP, no window before: −A_FP), 45 (6th row of window 1), 47 (later in the same
    window: ignored), 55 (FP 6 rows after window 1's right edge 49, width 10) — window 2 missed."""
    ts = _stamps(100)
    lay = layout(ts, [(ts[40], ts[49]), (ts[70], ts[79])])
    assert probation_rows(100) == 15 and lay.windows == 2
    det = [i in (10, 20, 45, 47, 55) for i in range(100)]
    max_tp = 2 / (1 + math.exp(-5)) - 1  # σ at the window's left edge
    tp = (2 / (1 + math.exp(5 * -(49 - 45 + 1) / 10)) - 1) / max_tp  # position −0.5 → 0.848 / 0.987
    fp_after = 2 / (1 + math.exp(5 * (6 / 9))) - 1  # 6 rows past the edge over (width − 1)
    for name, prof in PROFILES.items():
        fs = score_detections(lay, det, prof)
        want = prof.a_tp * tp - prof.a_fp + prof.a_fp * fp_after - prof.a_fn
        assert fs.score == pytest.approx(want, abs=1e-12), name
        assert (fs.detected, fs.false_positives) == (1, 2)
    assert tp == pytest.approx(0.85979, abs=1e-5) and fp_after == pytest.approx(-0.93111, abs=1e-5)
    assert score_detections(lay, det, PROFILES["standard"]).score == pytest.approx(-0.35263, abs=1e-5)
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5) and scaled_sigmoid(3.5) == -1.0
    # null = 0, perfect = 100, per profile
    std, low_fn = PROFILES["standard"], PROFILES["reward_low_FN_rate"]
    assert normalise(score_detections(lay, [False] * 100, std).score, 2, std) == 0.0
    perfect = [i in (40, 70) for i in range(100)]
    assert normalise(score_detections(lay, perfect, low_fn).score, 2, low_fn) == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("profile", "threshold", "published"),
    [
        ("standard", 0.453918457031, 1.47082197457),
        ("reward_low_FP_rate", 0.575195503235, -2.12839579367),
        ("reward_low_FN_rate", 0.448048400879, 0.360821974574),
    ],
)
def test_reproduces_nabs_published_random_cut_forest_score(profile: str, threshold: float, published: float) -> None:
    key = "realTraffic/speed_7578.csv"
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())[key]
    with (NAB / "results" / "randomCutForest" / "realTraffic" / "randomCutForest_speed_7578.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    ts = [datetime.fromisoformat(r["timestamp"]) for r in rows]
    lay = layout(ts, [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in windows])
    fs = score_detections(lay, [float(r["anomaly_score"]) >= threshold for r in rows], PROFILES[profile])
    assert fs.score == pytest.approx(published, abs=1e-9)
