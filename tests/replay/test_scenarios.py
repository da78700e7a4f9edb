"""Replay scenarios: one folder under ``scenarios/`` = one test, scored by ``hciwatch eval``'s rules.

Every scenario gates, the two 24 h clean baselines included (a new folder gates as soon as it
exists); the whole file takes about two minutes on two cores. ``EVAL_ONLY`` lists folders that
run with ``make eval`` only, should one ever be too slow for ``make test``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hciwatch.evaluate import run_scenario

SCENARIOS = Path(__file__).parent / "scenarios"
EVAL_ONLY: set[str] = set()
GATING = sorted(p.name for p in SCENARIOS.iterdir() if p.is_dir() and p.name not in EVAL_ONLY)


@pytest.mark.slow
@pytest.mark.parametrize("name", GATING)
def test_scenario_detects_every_incident_and_nothing_else(name: str) -> None:
    score, _ = run_scenario(SCENARIOS / name)
    assert not score.missed, f"missed: {score.missed}"
    assert not score.false_alerts, f"false alerts: {score.false_alerts}"
    assert score.detected == score.expected


def test_every_scenario_folder_is_complete() -> None:
    folders = sorted(p for p in SCENARIOS.iterdir() if p.is_dir())
    assert len(folders) >= 9 and {f.name for f in folders} >= EVAL_ONLY | {"clean_baseline_a", "clean_baseline_b"}
    for f in folders:
        assert (f / "config.toml").exists() and (f / "expected.json").exists(), f
        assert (f / "capture.jsonl.zst").exists(), f
