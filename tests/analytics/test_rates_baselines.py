"""Shared machinery: per-step rates (resets, gaps, both forms) and robust baselines."""

from __future__ import annotations

import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.baselines import BaselineBank, _nan_med_mad, median_mad, poisson_floor, robust_z
from analytics.rates import SeriesRegistry, StepAccumulator, is_counter, metric_forms, query_table, window_sql
from analytics.settings import BaselineSettings
from collector.schema import Sample, from_ms, samples_table
from tests.analytics.harness import connect

T0 = 1_767_225_600_000
STEP = 60_000


def _steps(rows: list[tuple[str, int, float]], cuts: int = 1, gap: int = 300_000) -> list[dict[str, object]]:
    """Run rows (series label, ms, value) through DuckDB + StepAccumulator in ``cuts`` calls."""
    con = connect(samples_table(Sample(from_ms(t), "windows", "h", "m_total", v, (("s", s),)) for s, t, v in rows))
    acc = StepAccumulator(STEP, gap, SeriesRegistry(["m_total"], {"s": "labels['s']"}))
    times = sorted({t for _, t, _ in rows})
    bounds = [times[0] - 1] + [times[min(len(times) - 1, (i + 1) * len(times) // cuts - 1)] for i in range(cuts)]
    out: list[dict[str, object]] = []
    for lo, hi in itertools.pairwise(bounds):
        if hi <= lo:
            continue
        raw = query_table(con, window_sql(["m_total"]), {"lo_us": lo * 1000, "hi_us": hi * 1000})
        out += acc.process(con, raw, lo * 1000, hi * 1000).to_pylist()
    return out


def _num(v: object) -> float:
    return math.nan if v is None else float(v)  # type: ignore[arg-type]


def test_counter_rates_handle_resets_gaps_and_late_rows() -> None:
    a = [("a", T0 + k * 15_000, 100.0 + 10 * k) for k in range(1, 9)]  # 10 per 15 s = 0.667/s
    # then a reboot (value drops → reset, that interval skipped) and a 10-minute gap
    b = [("a", T0 + 135_000, 3.0), ("a", T0 + 150_000, 13.0), ("a", T0 + 750_000, 400.0), ("a", T0 + 795_000, 410.0)]
    out = {r["bucket"]: r for r in _steps(a + b, cuts=2)}
    assert math.isclose(out[T0 + 2 * STEP]["rate"], 10 / 15, rel_tol=1e-9)  # type: ignore[arg-type]
    assert math.isclose(out[T0 + 3 * STEP]["rate"], 10 / 15), "the reset interval is dropped, not negative"  # type: ignore[arg-type]
    assert math.isnan(out[T0 + 13 * STEP]["rate"]), "no rate across a 10-minute scrape gap"  # type: ignore[arg-type]
    assert math.isclose(out[T0 + 13 * STEP]["mean"], 400.0)  # type: ignore[arg-type]
    assert math.isclose(out[T0 + 14 * STEP]["rate"], 10 / 45)  # type: ignore[arg-type]
    assert {r["s"] for r in out.values()} == {"a"}


@settings(max_examples=12)
@given(st.lists(st.tuples(st.integers(1, 120), st.floats(0, 1e6)), min_size=2, max_size=40), st.integers(1, 4))
def test_rates_are_never_negative_and_split_calls_agree(steps: list[tuple[int, float]], cuts: int) -> None:
    t, v, rows = T0, 0.0, []
    for dt, dv in steps:
        t += dt * 1000
        v = v + dv if dv < 5e5 else dv / 10  # sometimes a reset
        rows.append(("s", t, v))
    whole = _steps(rows)
    split = _steps(rows, cuts=cuts)
    rates = [_num(r["rate"]) for r in whole]
    assert all(math.isnan(x) or x >= 0 for x in rates)

    def total(rs: list[dict[str, object]]) -> float:
        return sum(x for x in (_num(r["inc"]) for r in rs) if not math.isnan(x))

    assert math.isclose(total(whole), total(split), rel_tol=1e-9, abs_tol=1e-6)


def test_window_sql_reads_both_forms_from_duckdb() -> None:
    rows = []
    for k in range(10):
        ts = from_ms(T0 + k * 30_000)
        rows.append(Sample(ts, "windows", "h1", "smb.client.requests_total", 100.0 * k, (("share", "a"),)))
        rows.append(Sample(ts, "telegraf", "h2", "smb.client.requests_per_sec", 3.5, (("share", "a"),)))
    con = connect(samples_table(rows))
    forms = metric_forms("smb.client.requests")
    assert forms == ["smb.client.requests_total", "smb.client.requests_per_sec"]
    raw = query_table(con, window_sql(forms), {"lo_us": 0, "hi_us": (T0 + 10 * STEP) * 1000})
    acc = StepAccumulator(STEP, 300_000, SeriesRegistry(forms, {"share": "labels['share']"}))
    out = acc.process(con, raw, 0, (T0 + 10 * STEP) * 1000).to_pylist()
    h1 = [r for r in out if r["host"] == "h1" and r["rate"] is not None and not math.isnan(r["rate"])]
    assert h1 and all(math.isclose(r["rate"], 100 / 30) for r in h1)
    assert all(math.isclose(r["mean"], 3.5) and r["share"] == "a" for r in out if r["host"] == "h2")
    assert is_counter("smb.client.requests_total") and not is_counter("smb.client.requests_per_sec")


def test_bank_statistics_are_each_rows_median_mad() -> None:
    """The vectorised statistics (one sort of the float32 ring, zero-MAD rows read after their
    zeros) equal :func:`median_mad` of each row: rings of rates that are mostly 0 with bursts,
    constant, partly filled (NaN), empty, and with repeated values."""
    rng = np.random.default_rng(7)
    rows = rng.exponential(2.0, size=(40, 90))
    rows[rng.random(rows.shape) < 0.6] = 0.0  # an idle counter's rate: mostly 0
    rows[5:10] = np.round(rows[5:10])  # ties
    rows[10:13] = 0.0
    rows[10, 3] = 4.0  # one burst in a quiet ring: MAD 0, spread from the burst
    rows[11] = 2.5  # constant: spread 0
    rows[13:20, 40:] = np.nan  # ring not yet wrapped
    rows[20] = np.nan  # no values
    block = rows.astype(np.float32)
    med, sig, n = _nan_med_mad(block)
    for i, row in enumerate(block.astype(np.float64)):
        want_med, want_sig = median_mad(row)
        assert n[i] == np.isfinite(row).sum()
        assert (med[i], sig[i]) == (want_med, want_sig) or (math.isnan(want_med) and math.isnan(med[i])), i


def test_median_mad_and_floors() -> None:
    med, sig = median_mad([1, 2, 3, 4, 100, float("nan")])
    assert med == 3 and math.isclose(sig, 1.4826 * 1)
    assert math.isnan(median_mad([])[0])
    # a counter that is normally zero: one event per step is the spread, not zero
    assert math.isclose(float(poisson_floor(np.array([0.0]), 60.0)[0]), 1 / 60)
    z = robust_z(np.array([5 / 60, np.nan]), np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([1 / 60, 0.1]))
    assert math.isclose(float(z[0]), 5.0) and math.isnan(float(z[1]))


def test_baseline_bank_uses_time_of_day_once_it_has_two_days() -> None:
    cfg = BaselineSettings.model_validate(
        {"window": "2h", "min_points": 10, "tod_min_points": 10, "tod_min_days": 2, "refresh": "1m"}
    )
    bank = BaselineBank(cfg, STEP)
    ids = bank.ids(["x"])
    rng = np.random.default_rng(1)
    hour_ms = 3_600_000
    # a series that is 10 at 03:00-04:00 and 100 otherwise, for three days
    for k in range(3 * 24 * 60):
        t = T0 + k * STEP
        level = 10.0 if (t // hour_ms) % 24 == 3 else 100.0
        if k < 2 * 24 * 60 or (t // hour_ms) % 24 != 3:
            bank.add(ids, np.array([level + rng.normal(0, 1)]), t)
    at_3 = T0 + 2 * 86_400_000 + 3 * hour_ms + 30 * STEP
    bank.refresh(at_3, force=True)
    med, _sig, src = bank.baseline(ids)
    assert src[0] == 2 and abs(med[0] - 10) < 1, "the 03:00 slot knows its own level"
    at_5 = at_3 + 2 * hour_ms
    bank.refresh(at_5, force=True)
    med, _, _ = bank.baseline(ids)
    assert abs(med[0] - 100) < 1
    cold = bank.ids(["new"])
    bank.refresh(at_5, force=True)
    assert bank.baseline(cold)[2][0] == 0, "no baseline before min_points (cold start)"


def test_compiled_forest_scores_exactly_like_sklearn() -> None:
    from sklearn.ensemble import IsolationForest

    from analytics.baselines import CompiledForest

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 5))
    x[:20] *= 6
    model = IsolationForest(n_estimators=60, max_samples=128, contamination=0.01, random_state=0).fit(x)
    fast = CompiledForest(model)
    probe = rng.normal(size=(200, 5)) * 3
    assert np.allclose(fast.score_samples(probe), model.score_samples(probe), atol=1e-12)
    assert (fast.outlier(probe) == (model.predict(probe) == -1)).all()


def test_bank_version_moves_when_baselines_may_change() -> None:
    """Callers keep what :meth:`BaselineBank.baseline` gave until ``version`` moves: new series,
    recomputed statistics and renumbering move it; learning values alone does not (statistics
    change only at a refresh), and neither does a refresh that is not due."""
    cfg = BaselineSettings.model_validate({"window": "1h", "min_points": 5, "refresh": "10m", "time_of_day": False})
    bank = BaselineBank(cfg, STEP)
    v0 = bank.version
    ids = bank.ids(["a", "b"])
    assert bank.version > v0
    bank.refresh(T0)
    v1 = bank.version
    assert v1 > v0
    for k in range(6):
        bank.add(ids, np.array([1.0, 2.0]) + k, T0 + k * STEP)
        assert bank.version == v1
        bank.refresh(T0 + k * STEP)  # not due (10 min)
        assert bank.version == v1
    before = bank.baseline(ids)
    bank.refresh(T0 + 10 * STEP)
    assert bank.version > v1
    assert bank.baseline(ids)[0].tolist() != before[0].tolist()
    v2 = bank.version
    bank.retain(np.array([1]))
    assert bank.version > v2


def test_distinct_ids_in_any_order_learn_as_sorted_ids() -> None:
    """Values for distinct ids in any order are learned as for the same ids in order; of an id
    given twice the first value is learned."""
    cfg = BaselineSettings.model_validate({"window": "1h", "min_points": 5, "refresh": "10m", "tod_min_points": 5})
    a, b = BaselineBank(cfg, STEP), BaselineBank(cfg, STEP)
    ids_a, ids_b = a.ids(list("wxyz")), b.ids(list("wxyz"))
    rng = np.random.default_rng(3)
    for k in range(40):
        order = rng.permutation(4)
        vals = rng.normal(size=4)
        a.add(ids_a[order], vals[order], T0 + k * STEP)
        b.add(np.concatenate([ids_b, ids_b[:1]]), np.concatenate([vals, [99.0]]), T0 + k * STEP)
    for bank in (a, b):
        bank.refresh(T0 + 40 * STEP, force=True)
    for x, y in zip(a.baseline(ids_a), b.baseline(ids_b), strict=True):
        assert x.tobytes() == y.tobytes()
    assert a.g.tobytes() == b.g.tobytes() and a.t_days.tobytes() == b.t_days.tobytes()
