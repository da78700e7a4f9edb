"""TailBank: each series' k-th largest value over a rolling window of data time."""

from __future__ import annotations

import math

import numpy as np

from analytics.tail_bar import TailBank

MIN = 60_000


def test_kth_largest_per_series_matches_a_plain_sort_over_the_window() -> None:
    rng = np.random.default_rng(5)
    bank = TailBank(k=3, window_ms=200 * MIN, blocks=20)  # 10-minute blocks
    history: list[tuple[int, np.ndarray]] = []
    for step in range(600):
        t = step * MIN
        vals = rng.standard_t(3, size=4)
        bank.add(np.arange(4), vals, t)
        history.append((t, vals))
        if step % 37 == 0 and step >= 250:
            # exact at block granularity: the window is the current block and the 19 before it
            first = (t // (10 * MIN) - 19) * 10 * MIN
            window = np.array([v for ts, v in history if ts >= first])
            want = np.sort(window, axis=0)[-3]
            np.testing.assert_allclose(bank.kth(np.arange(4), t), want)


def test_no_bar_until_k_values_and_old_values_age_out() -> None:
    bank = TailBank(k=3, window_ms=60 * MIN, blocks=6)
    ids = np.array([0])
    bank.add(ids, np.array([50.0]), 0)
    bank.add(ids, np.array([40.0]), MIN)
    assert math.isnan(bank.kth(ids, MIN)[0]), "two values: no k-th largest yet"
    bank.add(ids, np.array([30.0]), 2 * MIN)
    assert bank.kth(ids, 2 * MIN)[0] == 30.0
    bank.add(np.zeros(3, np.int64), np.array([1.0, 2.0, 3.0]), 70 * MIN)  # the old values left the window
    assert bank.kth(ids, 70 * MIN)[0] == 1.0
    assert math.isnan(bank.kth(np.array([7]), 70 * MIN)[0]), "a series never seen has no bar"


def test_an_id_given_twice_in_one_call_learns_both_values_and_nan_is_skipped() -> None:
    bank = TailBank(k=2, window_ms=60 * MIN, blocks=6)
    bank.add(np.array([3, 3, 3]), np.array([5.0, math.nan, 9.0]), 0)
    assert bank.kth(np.array([3]), 0)[0] == 5.0


def test_distinct_ids_in_any_order_learn_as_one_id_at_a_time() -> None:
    """One call with every id once (the congestion detector's usual call, hosts in any order)
    keeps exactly what adding the ids one by one keeps; ids past the bank's rows read NaN."""
    rng = np.random.default_rng(11)
    together = TailBank(k=3, window_ms=60 * MIN, blocks=6)
    apart = TailBank(k=3, window_ms=60 * MIN, blocks=6)
    for step in range(120):
        ids = rng.permutation(8)[: rng.integers(1, 9)]
        vals = rng.standard_t(3, size=ids.size)
        vals[rng.random(ids.size) < 0.1] = np.nan
        together.add(ids, vals, step * MIN)
        for i, v in zip(ids.tolist(), vals.tolist(), strict=True):
            apart.add(np.array([i]), np.array([v]), step * MIN)
        probe = np.array([7, 0, 3, 12])
        got, want = together.kth(probe, step * MIN), apart.kth(probe, step * MIN)
        assert got.tobytes() == want.tobytes()
        assert math.isnan(got[3]), "an id the bank never saw has no bar"
