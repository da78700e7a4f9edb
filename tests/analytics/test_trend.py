"""Growth evidence for step processes: the fair-walk run test and the Theil–Sen interval."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.trend import growth_run, theil_sen, walk_max_p

B = 300_000  # 5-minute buckets
H = 3_600_000


def _history(levels: list[float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(len(levels), dtype=np.int64) * B
    return t, np.asarray(levels, np.float64)


def _staircase(flat_buckets: int, steps: int, every: int, start: float = 8.0) -> list[float]:
    """Flat for ``flat_buckets``, then one allocation every ``every`` buckets, ``steps`` times."""
    y = [start] * max(flat_buckets, 1)
    for _ in range(steps):
        y += [y[-1] + 1] * every
    return y


def test_reflection_principle_matches_simulated_walks() -> None:
    assert walk_max_p(5, 5) == pytest.approx(1 / 32)
    assert walk_max_p(4, 4) == pytest.approx(1 / 16)
    assert walk_max_p(10, 0) == 1.0 and walk_max_p(3, 4) == 0.0
    rng = np.random.default_rng(0)
    walks = rng.choice([-1, 1], size=(100_000, 20))
    # the best suffix of a walk read from now backwards = the running maximum of the reversed walk
    best = np.cumsum(walks[:, ::-1], axis=1).max(axis=1)
    for a in (3, 6, 9):
        assert walk_max_p(20, a) == pytest.approx(float((best >= a).mean()), abs=0.006)


def test_recent_leak_in_a_long_flat_window_is_significant_where_a_line_is_not() -> None:
    """12 h flat, then one address every 20 minutes: five unopposed allocations over 80 minutes
    are strong evidence; the straight line through "flat, then rising" is not."""
    y = _staircase(144, 5, 4)
    t, v = _history(y)
    now = int(t[-1])
    run = growth_run(t, v, now, confidence=0.9, min_span_ms=H)
    assert run is not None and run.significant
    assert (run.run_up, run.run_down, run.growth) == (5, 0, 5.0)
    assert run.p_value == pytest.approx(1 / 32)
    assert 1.5 < run.rate_per_h < 4.0 and run.rate_low > 0
    _b, lo, _hi = theil_sen((t - t[-1]) / H, v, 0.9, max_effective=6)
    assert lo <= 0
    four = growth_run(*_history(_staircase(144, 4, 4)), now, confidence=0.9, min_span_ms=H)
    assert four is not None and not four.significant, "four allocations are not enough yet"


@pytest.mark.parametrize("seed", range(6))
def test_a_pool_that_churns_does_not_make_a_significant_run(seed: int) -> None:
    """Services created and deleted alike (a balanced, mean-reverting walk) for 12 hours."""
    rng = np.random.default_rng(seed)
    y = [20.0]
    for _ in range(143):
        u = rng.random()
        step = 1 if u < 0.12 else -1 if u < 0.24 else 0
        y.append(min(max(y[-1] + step - 0.05 * (y[-1] - 20) * (rng.random() < 0.3), 10), 30))
    t, v = _history(y)
    run = growth_run(t, v, int(t[-1]), confidence=0.9, min_span_ms=H)
    assert run is None or not run.significant, run


def test_a_burst_is_one_operation_not_a_trend() -> None:
    """Six node VMs added in six consecutive buckets (a scale-out over 25 minutes) or ten in one."""
    y = [20.0] * 100 + [21.0, 22.0, 23.0, 24.0, 25.0, 26.0] + [26.0] * 6
    t, v = _history(y)
    run = growth_run(t, v, int(t[-1]), confidence=0.9, min_span_ms=H)
    assert run is not None and run.p_value < 0.05 and not run.significant  # too short to be a trend
    y = [20.0] * 100 + [30.0] * 12
    run = growth_run(*_history(y), int(t[-1]), confidence=0.9, min_span_ms=H)
    assert run is not None and run.run_events == 1 and not run.significant


def test_theil_sen_interval_counts_steps_not_samples() -> None:
    """Three steps sampled 32 times are three pieces of evidence, not 32."""
    t, v = _history(_staircase(6, 3, 12)[:32])
    x = (t - t[-1]) / H
    assert theil_sen(x, v, 0.9)[1] > 0  # the AR(1) correction alone calls it a trend
    assert theil_sen(x, v, 0.9, max_effective=4)[1] <= 0
    t, v = _history(_staircase(0, 15, 4))
    assert theil_sen((t - t[-1]) / H, v, 0.9, max_effective=16)[1] > 0
