"""The congestion detector's IsolationForest, fitted without scikit-learn's per-tree overhead.

Why: ``IsolationForest.fit`` on a few hundred to 20,000 host-steps of five features spends almost
all of its ~0.2 s around the trees, not in them: every one of the 100 trees is made by
``clone`` + ``set_params`` (``inspect.signature`` of the estimator, twice), gets its seed through
``_set_random_states`` (``get_params`` again), builds two fresh ``RandomState`` objects, validates a
sample-weight vector as long as the training set, enters a configuration context and goes through
joblib. Building one tree of ≤ 256 rows takes a few dozen microseconds.

:func:`fit_forest` does exactly what ``IsolationForest(n_estimators, contamination, max_samples,
random_state=seed).fit(x)`` does for the detector's inputs (dense float rows, an integer
``max_samples``, a float ``contamination``, all features, no bootstrap, no sample weights) and
hands the trees to the same Cython tree builder, with the same random streams:

* the targets ``y``: ``RandomState(seed).uniform(size=n)``;
* the per-tree seeds: ``RandomState(seed).randint(2**31 - 1, size=n_estimators)``;
* per tree ``s``: the tree's own ``random_state`` is ``RandomState(s).randint(2**31 - 1)`` (what
  ``_set_random_states`` draws), its feature permutation and its ``max_samples`` rows are
  ``sample_without_replacement`` from another ``RandomState(s)``, and the rows enter the builder as
  0/1 sample weights over the whole training set (bagging's path for trees that take weights);
* the splitter draws its ``rand_r`` state from ``RandomState(tree seed)``.

One ``RandomState`` is re-seeded for all of these (``seed()`` sets the same state a new object
gets). The cut ``offset`` is ``np.percentile`` of the training rows' ``score_samples``, computed
with sklearn's own arithmetic (tree by tree, in tree order). A test fits both ways on real
training sets and asserts identical trees, offsets and scores (tests/analytics/test_iforest_fit.py);
:func:`fit_forest_sklearn` is that careful path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)
MAX_INT = int(np.iinfo(np.int32).max)  # sklearn's bagging seeds and _set_random_states draw below this


@dataclass(frozen=True, slots=True)
class ForestFit:
    """What scoring needs of a fitted forest: per tree its ``sklearn.tree._tree.Tree`` and the
    training columns its features refer to, the subsample size and the outlier cut."""

    trees: list[Any]
    features: list[npt.NDArray[np.int64]]
    max_samples: int
    offset: float


def average_path_length(n: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """c(n), the average path length of an unsuccessful BST search among n points (Liu et al.):
    sklearn's ``_average_path_length``, same operations, so the same doubles (the scorer in
    analytics.baselines uses it too)."""
    n = np.asarray(n).reshape((1, -1))
    out = np.zeros(n.shape)
    mask_1 = n <= 1
    mask_2 = n == 2
    not_mask = ~np.logical_or(mask_1, mask_2)
    out[mask_1] = 0.0
    out[mask_2] = 1.0
    out[not_mask] = 2.0 * (np.log(n[not_mask] - 1.0) + np.euler_gamma) - 2.0 * (n[not_mask] - 1.0) / n[not_mask]
    return out.reshape(-1)


def fit_forest(x: npt.ArrayLike, *, n_estimators: int, contamination: float, max_samples: int, seed: int) -> ForestFit:
    """``IsolationForest(...).fit(x)`` for the detector's inputs, without the per-tree overhead
    (module docstring). ``x``: rows × features, finite floats; ``max_samples`` ≤ rows.

    The fast path drives scikit-learn's private Cython tree classes; a release that renames or
    re-signs them must not stop the detector, so their failure falls back (logged once) to the
    careful path, which gives the same forest; and the first fit of a process is checked against
    the careful one, so a change of meaning cannot build other forests. The check fits the first
    :data:`VERIFY_TREES` trees both ways on the same rows (:func:`verify_fit_kwargs`): the same
    code path, at a few percent of a 100-tree ``IsolationForest.fit``."""
    global _fast_state
    kw: dict[str, Any] = {
        "n_estimators": n_estimators,
        "contamination": contamination,
        "max_samples": max_samples,
        "seed": seed,
    }
    if _fast_state != "broken":
        # the first fit of a process is also made the careful way (on fewer trees): a release
        # whose private classes keep their signatures but change a meaning must not build other
        # forests silently
        first = _fast_state != "verified"
        try:
            fast = fit_forest_fast(x, **(verify_fit_kwargs(kw) if first else kw))
        except (ImportError, AttributeError, TypeError) as exc:
            _fast_state = "broken"
            log.warning(
                "IsolationForest fast fit unavailable with this scikit-learn (%s); using IsolationForest.fit", exc
            )
        else:
            if not first:
                return fast
            check = verify_fit_kwargs(kw)
            if same_forest(fast, fit_forest_sklearn(x, **check)):
                _fast_state = "verified"
                # the whole forest through the calls the check just ran (no second fit of a forest
                # the check already built whole)
                return fast if check == kw else fit_forest_fast(x, **kw)
            _fast_state = "broken"
            log.warning(
                "IsolationForest fast fit differs from IsolationForest.fit with this scikit-learn; using the latter"
            )
    return fit_forest_sklearn(x, **kw)


VERIFY_TREES = 4


def verify_fit_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """The arguments of the first-fit check: the same rows, cut and seed, the first
    :data:`VERIFY_TREES` trees. Why fewer trees still check the real forest: ``IsolationForest``
    draws its targets from a fresh ``RandomState(seed)`` whatever the number of trees, and its
    per-tree seeds with one ``randint(2**31 - 1, size=n_estimators)`` call on another fresh
    ``RandomState(seed)``, whose first k draws are those of ``size=k`` (sklearn's own warm start
    relies on it), so a k-tree fit builds exactly the first k trees of the full one
    (tests/analytics/test_iforest_fit.py checks this). Every tree goes through the same builder
    calls, and the cut through the same scoring, as in the full fit."""
    return {**kw, "n_estimators": min(int(kw["n_estimators"]), VERIFY_TREES)}


TREE_ARRAYS = (
    "children_left",
    "children_right",
    "feature",
    "threshold",
    "n_node_samples",
    "weighted_n_node_samples",
    "impurity",
    "value",
)


def same_forest(a: ForestFit, b: ForestFit) -> bool:
    """Whether two fits are the same forest: cut, subsample size, features and every tree array."""
    if a.offset != b.offset or a.max_samples != b.max_samples or len(a.trees) != len(b.trees):
        return False
    for ta, tb, fa, fb in zip(a.trees, b.trees, a.features, b.features, strict=True):
        if not np.array_equal(fa, fb) or ta.node_count != tb.node_count:
            return False
        if not all(np.array_equal(getattr(ta, n), getattr(tb, n)) for n in TREE_ARRAYS):
            return False
    return True


_fast_state = "unverified"  # → "verified" after the first fit equals sklearn's, or "broken"


def fit_forest_fast(
    x: npt.ArrayLike, *, n_estimators: int, contamination: float, max_samples: int, seed: int
) -> ForestFit:
    # sklearn imports cost ~1.5 s: only once a forest is trained (see analytics.congestion)
    from sklearn.tree._criterion import MSE
    from sklearn.tree._splitter import RandomSplitter
    from sklearn.tree._tree import DepthFirstTreeBuilder, Tree
    from sklearn.utils.random import sample_without_replacement

    xf = np.asarray(x, dtype=np.float32)  # IsolationForest.fit's validate_data(dtype=float32)
    n, n_features = xf.shape
    if not 1 <= max_samples <= n:
        raise ValueError(f"max_samples must be in [1, {n}], got {max_samples}")
    rs = np.random.RandomState(seed)
    y = np.asarray(rs.uniform(size=n), np.float64).reshape((-1, 1))  # as the tree's _fit reshapes it (C order)
    rs.seed(seed)
    seeds = rs.randint(MAX_INT, size=n_estimators)
    max_depth = int(np.ceil(np.log2(max(max_samples, 2))))
    outputs = np.array([1], dtype=np.intp)
    trees: list[Any] = []
    features: list[npt.NDArray[np.int64]] = []
    for s in seeds:
        rs.seed(s)
        tree_seed = rs.randint(MAX_INT)  # _set_random_states
        rs.seed(s)  # _generate_bagging_indices
        feats = sample_without_replacement(n_features, n_features, random_state=rs)
        rows = sample_without_replacement(n, max_samples, random_state=rs)
        weight = np.bincount(rows, minlength=n).astype(np.float64)  # _check_sample_weight's float64
        rs.seed(tree_seed)  # the tree's check_random_state: the splitter draws its rand_r state
        splitter = RandomSplitter(MSE(1, n), 1, 1, 0.0, rs, None)
        tree = Tree(n_features, outputs, 1)
        DepthFirstTreeBuilder(splitter, 2, 1, 0.0, max_depth, 0.0).build(tree, xf, y, weight, None)
        trees.append(tree)
        features.append(np.asarray(feats, np.int64))
    # offset_: the contamination percentile of the training rows' score_samples, as sklearn
    # computes them (IsolationForest._compute_score_samples, one chunk)
    depths = np.zeros(n, np.float64, order="F")
    for tree in trees:
        leaves = tree.apply(xf)
        # sklearn adds depth[leaf] + c(n_leaf) − 1.0 per row: the same sum made once per node,
        # then gathered (the same doubles, without two gathers and two temporaries per row)
        per_node = tree.compute_node_depths() + average_path_length(tree.n_node_samples) - 1.0
        depths += per_node[leaves]
    denominator = len(trees) * average_path_length(np.array([max_samples]))
    scores = 2 ** (-np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0))
    offset = float(np.percentile(-scores, 100.0 * contamination))
    return ForestFit(trees, features, max_samples, offset)


def fit_forest_sklearn(
    x: npt.ArrayLike, *, n_estimators: int, contamination: float, max_samples: int, seed: int
) -> ForestFit:
    """The careful path: scikit-learn's ``IsolationForest.fit`` (what :func:`fit_forest` must equal)."""
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(
        n_estimators=n_estimators, contamination=contamination, max_samples=max_samples, random_state=seed
    ).fit(np.asarray(x))
    return ForestFit(
        [e.tree_ for e in model.estimators_],
        [np.asarray(f, np.int64) for f in model.estimators_features_],
        int(model.max_samples_),
        float(model.offset_),
    )
