"""The congestion forest's fast fit equals scikit-learn's ``IsolationForest.fit`` bit for bit.

:func:`analytics.iforest.fit_forest` re-implements the fit around sklearn's tree builder to skip
its per-tree overhead; the forest decides which single-signal violations page, so the trees, the
cut (``offset_``) and therefore every score must be identical, not close. Checked on the training
rows the detector collects from a synthetic site, and on feature rows shaped like them (z-scores on
the hosts' scales: mostly small, many exact zeros and ties, clipped at −10 and 50) at the sizes the
detector fits (``if_min_train`` rows up to ``if_train_max``; fewer than 256 rows means every row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from analytics import iforest
from analytics.baselines import CompiledForest
from analytics.iforest import TREE_ARRAYS, ForestFit, fit_forest, fit_forest_fast, fit_forest_sklearn
from tests.analytics.harness import HOUR, MIN, connect, replay, settings
from tests.analytics.synth import Effects, random_site, samples


def _features(seed: int, n: int) -> npt.NDArray[np.float64]:
    """Rows shaped like the detector's training features (see the module docstring)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(3, size=(n, 5))
    x[rng.random((n, 5)) < 0.35] = 0.0  # signals without a baseline yet / no events: nan_to_zero
    x[:, 1] = np.round(x[:, 1], 1)  # event counts: few distinct values, many ties
    x[rng.random(n) < 0.01] *= 30.0
    return np.clip(x, -10.0, 50.0)


def _assert_same(a: ForestFit, b: ForestFit, probe: npt.NDArray[np.float64]) -> None:
    assert a.offset == b.offset
    assert a.max_samples == b.max_samples
    assert len(a.trees) == len(b.trees)
    for ta, tb, fa, fb in zip(a.trees, b.trees, a.features, b.features, strict=True):
        assert np.array_equal(fa, fb)
        assert ta.node_count == tb.node_count and ta.max_depth == tb.max_depth
        for name in TREE_ARRAYS:
            assert np.array_equal(getattr(ta, name), getattr(tb, name)), name
    fa_, fb_ = CompiledForest(a), CompiledForest(b)
    sa, sb = fa_.score_samples(probe), fb_.score_samples(probe)
    assert np.array_equal(sa, sb)
    assert np.array_equal(fa_.outlier(probe), fb_.outlier(probe))


@pytest.mark.parametrize(
    ("n", "estimators", "contamination", "seed"),
    [
        (50, 100, 0.005, 0),  # fewer rows than 256: the subsample is every row
        (300, 100, 0.005, 0),
        (1200, 100, 0.005, 0),
        (4000, 10, 0.2, 7),
        (20_000, 100, 0.005, 0),
        (2500, 250, 0.01, 123_456),
    ],
)
def test_fast_fit_equals_sklearn(n: int, estimators: int, contamination: float, seed: int) -> None:
    x = _features(n + seed, n)
    fast = fit_forest_fast(x, n_estimators=estimators, contamination=contamination, max_samples=min(256, n), seed=seed)
    careful = fit_forest_sklearn(
        x, n_estimators=estimators, contamination=contamination, max_samples=min(256, n), seed=seed
    )
    probe = np.concatenate([x[:500], _features(99, 500) * 4.0])
    _assert_same(fast, careful, probe)


def test_fast_fit_equals_sklearn_on_the_detectors_training_rows() -> None:
    """The rows a congestion detector collected on a synthetic site, fitted both ways."""
    site = random_site(5, n_hosts=6, hours=5.0, scrape_s=60)
    t0 = site.start_ms + 3 * HOUR
    fx = Effects(congestion=[([site.hosts[0]], t0, t0 + 20 * MIN)])
    run = replay(connect(samples(site, fx)), site.start_ms, site.end_ms, settings=settings(), coarse=30 * MIN)
    assert run.engine is not None
    det = run.engine.congestion
    x = np.asarray(det.train)
    assert len(x) >= det.c.if_min_train and det.forest is not None, "the detector trained its forest"
    c = det.c
    for rows in (c.if_min_train, len(x)):
        part, sub = x[:rows], min(256, rows)
        fast = fit_forest_fast(
            part, n_estimators=c.if_estimators, contamination=c.if_contamination, max_samples=sub, seed=det.s.seed
        )
        careful = fit_forest_sklearn(
            part, n_estimators=c.if_estimators, contamination=c.if_contamination, max_samples=sub, seed=det.s.seed
        )
        _assert_same(fast, careful, x)


def test_compiled_forest_of_a_fast_fit_scores_like_sklearn() -> None:
    """A control on the scorer: the compiled fast fit scores as sklearn's own model does."""
    from sklearn.ensemble import IsolationForest

    x = _features(1, 1500)
    model = IsolationForest(n_estimators=100, contamination=0.005, max_samples=256, random_state=0).fit(x)
    fast = CompiledForest(fit_forest_fast(x, n_estimators=100, contamination=0.005, max_samples=256, seed=0))
    probe = np.concatenate([x[:300], _features(2, 300) * 5.0])
    assert fast.offset == model.offset_
    assert np.allclose(fast.score_samples(probe), model.score_samples(probe), atol=1e-12)
    assert (fast.outlier(probe) == (model.predict(probe) == -1)).all()


def test_max_samples_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="max_samples"):
        fit_forest_fast(_features(0, 10), n_estimators=10, contamination=0.1, max_samples=11, seed=0)


SMALL_FIT: dict[str, Any] = {"n_estimators": 20, "contamination": 0.01, "max_samples": 256, "seed": 5}


def _fits_with(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fast: Any, seed: int) -> str:
    """Two fits of one small set with ``fast`` as the fast path in an unverified process; both
    must equal sklearn's forest. Returns the warnings logged."""
    monkeypatch.setattr(iforest, "fit_forest_fast", fast)
    monkeypatch.setattr(iforest, "_fast_state", "unverified")
    x = _features(seed, 400)
    with caplog.at_level("WARNING", logger="analytics.iforest"):
        got = [fit_forest(x, **SMALL_FIT) for _ in range(2)]
    want = fit_forest_sklearn(x, **SMALL_FIT)
    for g in got:
        _assert_same(g, want, x)
    return "\n".join(r.getMessage() for r in caplog.records)


def test_a_scikit_learn_without_the_private_tree_classes_falls_back_to_isolation_forest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The fast path drives private classes: a release that re-signs them degrades to the careful
    fit (same forest), logged once, instead of stopping the congestion detector."""

    def broken(*_a: object, **_k: object) -> ForestFit:
        raise TypeError("__cinit__() takes exactly 6 positional arguments (5 given)")

    assert _fits_with(monkeypatch, caplog, broken, 3).count("fast fit unavailable") == 1


def test_a_fast_fit_that_differs_from_isolation_forest_is_caught_at_the_first_fit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Private classes that keep their signatures but change a meaning: the first fit of the
    process is compared with the careful one, and the careful path is used from then on."""
    real = iforest.fit_forest_fast

    def shifted(x: npt.ArrayLike, **kw: Any) -> ForestFit:
        fit = real(x, **kw)
        return ForestFit(fit.trees, fit.features, fit.max_samples, fit.offset + 1e-9)

    assert _fits_with(monkeypatch, caplog, shifted, 4).count("differs") == 1
    assert iforest._fast_state == "broken"


def test_the_first_fit_is_verified_and_later_fits_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(iforest, "_fast_state", "unverified")
    x = _features(5, 400)
    _assert_same(fit_forest(x, **SMALL_FIT), fit_forest_sklearn(x, **SMALL_FIT), x)
    assert iforest._fast_state == "verified"


def test_a_fit_of_fewer_trees_is_the_first_trees_of_the_full_fit() -> None:
    """Why the first-fit check may fit only :data:`analytics.iforest.VERIFY_TREES` trees:
    scikit-learn's k-tree forest is the first k trees of its n-tree forest (same targets, same
    per-tree seeds), so checking the small fit checks the builder calls of the full one."""
    x = _features(11, 3000)
    full = fit_forest_sklearn(x, n_estimators=100, contamination=0.005, max_samples=256, seed=0)
    for k in (1, iforest.VERIFY_TREES, 30):
        part = fit_forest_sklearn(x, n_estimators=k, contamination=0.005, max_samples=256, seed=0)
        head = ForestFit(full.trees[:k], full.features[:k], part.max_samples, part.offset)
        assert iforest.same_forest(part, head)
        fast = fit_forest_fast(x, n_estimators=k, contamination=0.005, max_samples=256, seed=0)
        _assert_same(fast, part, x)


def test_the_first_fit_checks_few_trees_and_returns_the_full_forest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check fits :data:`analytics.iforest.VERIFY_TREES` trees the careful way, never the full
    forest; what the first fit returns is still the full forest sklearn would build."""
    monkeypatch.setattr(iforest, "_fast_state", "unverified")
    careful_sizes: list[int] = []
    real = iforest.fit_forest_sklearn

    def spy(x: npt.ArrayLike, **kw: Any) -> ForestFit:
        careful_sizes.append(kw["n_estimators"])
        return real(x, **kw)

    monkeypatch.setattr(iforest, "fit_forest_sklearn", spy)
    x = _features(6, 900)
    kw = {**SMALL_FIT, "n_estimators": 100}
    got = fit_forest(x, **kw)
    assert careful_sizes == [iforest.VERIFY_TREES]
    assert iforest._fast_state == "verified"
    _assert_same(got, real(x, **kw), x)
    fit_forest(x, **kw)
    assert careful_sizes == [iforest.VERIFY_TREES], "a verified process fits the fast way only"
