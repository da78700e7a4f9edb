"""Robust, time-of-day aware baselines for many series at once (congestion and metric anomaly).

Every series (a host's PFC pause rate, a user-listed metric of one host, …) keeps two bounded
rings of its per-step values:

* a trailing ring (``baselines.window`` of steps) — the fallback baseline;
* 24 hour-of-day rings (``baselines.tod_days`` days of that hour) — used once the slot spans at
  least ``tod_min_days`` distinct days and ``tod_min_points`` values, so a nightly backup or a
  business-hours ramp is normal *at that hour* and not otherwise.

The centre is the median and the spread 1.4826 × MAD (≈ σ for Gaussian noise, unmoved by the
outliers we are looking for). When more than half the values sit on one value (an idle disk's
write rate: mostly 0 with bursts) the MAD is 0 and says nothing about how the rest vary; the
spread is then how far the *other* values typically sit from it (1.4826 × the median of the
non-zero deviations), so a routine burst is judged against routine bursts rather than against
zero, while a series that never moved still flags its first move (spread 0, the caller's floor).

Callers add only the values they judge normal, so a long incident does not teach the baseline
that the incident is normal (when a withheld value is learned is the caller's policy: congestion
never, metric anomaly once the anomaly closes). Memory is fixed per series (float32 rings);
statistics are recomputed every ``baselines.refresh`` of data time, vectorised over all series,
so the per-step cost is one array write per series.

Cold start: a series without ``min_points`` values has no baseline of its own (NaN); callers may
fall back to peers (the same signal on other hosts) and otherwise do not judge it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.iforest import ForestFit, average_path_length
from analytics.settings import BaselineSettings
from analytics.tail_bar import first_of_each

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MAD_TO_SIGMA = 1.4826
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# Where a baseline came from (reported in evidence).
SOURCE_NONE = 0
SOURCE_TRAILING = 1
SOURCE_TOD = 2
SOURCE_NAMES = {SOURCE_NONE: "none", SOURCE_TRAILING: "trailing", SOURCE_TOD: "time_of_day"}


def median_mad(values: npt.ArrayLike) -> tuple[float, float]:
    """Median and robust σ of the finite values (NaN, NaN when there are none); see the module
    docstring for the spread when the MAD is 0."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return math.nan, math.nan
    med = float(np.median(a))
    dev = np.abs(a - med)
    sig = MAD_TO_SIGMA * float(np.median(dev))
    if sig == 0:
        off = dev[dev > 0]
        sig = MAD_TO_SIGMA * float(np.median(off)) if off.size else 0.0
    return med, sig


def _sorted_median(sorted_block: npt.NDArray[np.float64], n: I64, start: I64 | None = None) -> F64:
    """Median per row of an ascending-sorted block whose NaNs are at the end (n valid values), or
    of the n values from column ``start`` on."""
    lo = np.clip((n - 1) // 2, 0, None)
    hi = np.clip(n // 2, 0, None)
    if start is not None:  # (a row without values may start past its end: its median is NaN anyway)
        last = sorted_block.shape[-1] - 1
        lo, hi = np.minimum(lo + start, last), np.minimum(hi + start, last)
    if sorted_block.ndim == 2:  # the banks' blocks: plain fancy indexing (take_along_axis builds it)
        r = np.arange(sorted_block.shape[0])
        a, b = sorted_block[r, lo], sorted_block[r, hi]
    else:
        a = np.take_along_axis(sorted_block, lo[..., None], axis=-1)[..., 0]
        b = np.take_along_axis(sorted_block, hi[..., None], axis=-1)[..., 0]
    return np.asarray(np.where(n > 0, (a + b) / 2, np.nan), np.float64)


def _nan_med_mad(block: npt.NDArray[np.float32] | npt.NDArray[np.float64]) -> tuple[F64, F64, I64]:
    """Row-wise median, MAD-σ and count over the last axis, ignoring NaN.

    Vectorised with two sorts (``np.nanmedian`` falls back to a Python loop per row for wide
    arrays, which is far too slow for thousands of series). The values are sorted in their own
    type (float32 rings sort faster; widening keeps the order), and the deviations are taken of
    the sorted values (the same values per row, so the same sorted deviations).
    """
    b = np.sort(block, axis=-1).astype(np.float64)
    n = np.sum(np.isfinite(b), axis=-1).astype(np.int64)
    # + 0.0: -0.0 and 0.0 tie, and which one a sort puts first depends on the type sorted; one
    # sign for a zero median keeps evidence ("baseline: 0.0") the same whatever the ring's type
    med = _sorted_median(b, n) + 0.0
    dev = np.sort(np.abs(b - med[..., None]), axis=-1)
    sig = _sorted_median(dev, n) * MAD_TO_SIGMA
    flat = sig == 0
    if flat.any():  # only rows whose MAD is 0 pay for the fallback (module docstring)
        # the non-zero deviations of a sorted row are the run after its zeros
        d = dev[flat]
        zero = np.sum(d == 0, axis=-1).astype(np.int64)
        sig[flat] = _sorted_median(d, np.sum(d > 0, axis=-1).astype(np.int64), zero) * MAD_TO_SIGMA
        sig[flat] = np.nan_to_num(sig[flat], nan=0.0)
    return med, sig, n


def nan_to_zero(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``np.nan_to_num(x)`` (NaN → 0, ±inf → the largest finite values) at half its cost for the
    small arrays of one step: the detectors call it a dozen times per step."""
    out = np.where(np.isnan(x), 0.0, x)
    return out if np.isfinite(out).all() else np.nan_to_num(out)


def poisson_floor(median_rate: F64, step_seconds: float) -> F64:
    """Smallest credible spread of an event rate measured over one step.

    Counts of independent events are at least Poisson-noisy: the σ of a rate λ over ``dt`` seconds
    is sqrt(λ/dt). A series that is normally zero gets the σ of one event per step, so a handful of
    errors in one step is noticed but a single one does not make an infinite z-score.
    """
    lam = np.maximum(nan_to_zero(median_rate), 1.0 / step_seconds)
    return np.asarray(np.sqrt(lam / step_seconds), dtype=np.float64)


class BaselineBank:
    """Baselines for a growing set of series keyed by any hashable."""

    def __init__(self, cfg: BaselineSettings, step_ms: int) -> None:
        self.cfg = cfg
        self.step_ms = step_ms
        self.g_cap = max(cfg.min_points, int(cfg.window.total_seconds() * 1000 // step_ms))
        per_hour = max(1, HOUR_MS // step_ms)
        self.t_cap = max(cfg.tod_min_points, cfg.tod_days * per_hour)
        self.day_cap = cfg.tod_days + 1
        self.index: dict[Hashable, int] = {}
        self.keys: list[Hashable] = []
        n = 0
        self.g = np.full((n, self.g_cap), np.nan, np.float32)
        self.g_pos = np.zeros(n, np.int64)
        # one ring block per hour-of-day slot, allocated when that hour first gets a value (a
        # cold start pays for one slot, not 24)
        self.tod: list[npt.NDArray[np.float32] | None] | None = [None] * 24 if cfg.time_of_day else None
        self.t_pos = np.zeros((n, 24), np.int64)
        self.t_days = np.full((n, 24, self.day_cap), -1, np.int64)
        self.t_dpos = np.zeros((n, 24), np.int64)
        # cached statistics
        self.g_med = np.zeros(0)
        self.g_sig = np.zeros(0)
        self.g_n = np.zeros(0, np.int64)
        self.t_med = np.zeros(0)
        self.t_sig = np.zeros(0)
        self.t_ok = np.zeros(0, bool)
        self._stats_hour = -1
        self._last_refresh = -(1 << 62)
        self._dirty = True
        # bumped whenever :meth:`baseline` may answer differently for some id (statistics
        # recomputed, series added or renumbered): a caller that asks for the same ids every step
        # keeps the answer, and what it derives from it, until this moves
        self.version = 0

    # -- series management ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keys)

    def ids(self, keys: Sequence[Hashable]) -> I64:
        """Row ids of the keys, creating rows for new ones."""
        out = np.empty(len(keys), np.int64)
        new = 0
        for i, k in enumerate(keys):
            j = self.index.get(k)
            if j is None:
                j = len(self.keys)
                self.index[k] = j
                self.keys.append(k)
                new += 1
            out[i] = j
        if new:
            self._grow(new)
        return out

    def _grow(self, new: int) -> None:
        """Make room for ``new`` more series (capacity doubles, so growth is amortised)."""
        need = len(self.keys)
        cap = self.g.shape[0]
        if need > cap:
            cap2 = max(need, 2 * cap, 64)

            def grow(a: npt.NDArray[Any], fill: Any) -> npt.NDArray[Any]:
                out = np.full((cap2, *a.shape[1:]), fill, a.dtype)
                out[: a.shape[0]] = a
                return out

            self.g = grow(self.g, np.nan)
            self.g_pos = grow(self.g_pos, 0)
            if self.tod is not None:
                self.tod = [None if slot is None else grow(slot, np.nan) for slot in self.tod]
            self.t_pos = grow(self.t_pos, 0)
            self.t_days = grow(self.t_days, -1)
            self.t_dpos = grow(self.t_dpos, 0)
            self.g_med = grow(self.g_med, np.nan)
            self.g_sig = grow(self.g_sig, np.nan)
            self.g_n = grow(self.g_n, 0)
            self.t_med = grow(self.t_med, np.nan)
            self.t_sig = grow(self.t_sig, np.nan)
            self.t_ok = grow(self.t_ok, False)
        self._dirty = True
        self.version += 1

    def retain(self, rows: I64) -> None:
        """Keep only these series (renumbered 0..n−1 in the given order) and forget the rest.

        Why: a caller whose series come and go (hosts leave a site) would otherwise carry every
        series it ever saw. Statistics are row-wise, so the kept series' baselines are unchanged.
        """
        rows = np.asarray(rows, np.int64)
        self.keys = [self.keys[int(i)] for i in rows.tolist()]
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.g, self.g_pos = self.g[rows], self.g_pos[rows]
        if self.tod is not None:
            self.tod = [None if slot is None else slot[rows] for slot in self.tod]
        self.t_pos, self.t_days, self.t_dpos = self.t_pos[rows], self.t_days[rows], self.t_dpos[rows]
        self.g_med, self.g_sig, self.g_n = self.g_med[rows], self.g_sig[rows], self.g_n[rows]
        self.t_med, self.t_sig, self.t_ok = self.t_med[rows], self.t_sig[rows], self.t_ok[rows]
        self.version += 1

    # -- learning ---------------------------------------------------------------------------
    def add(self, ids: I64, values: F64, bucket_ms: int) -> None:
        """Append one step value per series (NaN values and duplicate ids are skipped)."""
        ok = np.isfinite(values)
        if not ok.any():
            return
        ids = ids[ok]
        vals = values[ok].astype(np.float32)
        ids, vals, _ = first_of_each(ids, vals)  # an id given twice: its first value
        pos = self.g_pos[ids] % self.g_cap
        self.g[ids, pos] = vals
        self.g_pos[ids] += 1
        if self.tod is not None:
            hour = int((bucket_ms // HOUR_MS) % 24)
            day = int(bucket_ms // DAY_MS)
            slot = self.tod[hour]
            if slot is None:
                slot = np.full((self.g.shape[0], self.t_cap), np.nan, np.float32)
                self.tod[hour] = slot
            tpos = self.t_pos[ids, hour] % self.t_cap
            slot[ids, tpos] = vals
            self.t_pos[ids, hour] += 1
            last_day = self.t_days[ids, hour, (self.t_dpos[ids, hour] - 1) % self.day_cap]
            newday = ids[last_day != day]
            if newday.size:
                dpos = self.t_dpos[newday, hour] % self.day_cap
                self.t_days[newday, hour, dpos] = day
                self.t_dpos[newday, hour] += 1
        self._dirty = True

    def refresh(self, bucket_ms: int, *, force: bool = False) -> None:
        """Recompute statistics if the refresh interval passed or the hour slot changed."""
        hour = int((bucket_ms // HOUR_MS) % 24)
        due = bucket_ms - self._last_refresh >= self.cfg.refresh.total_seconds() * 1000
        if not (force or due or hour != self._stats_hour) or not self.keys:
            return
        if not (self._dirty or hour != self._stats_hour or force):
            return
        rows = len(self.keys)
        # ring slots are filled from position 0: until a ring wraps, only its first columns hold
        # values (the rest is NaN and would only be sorted to the end)
        filled = min(int(self.g_pos[:rows].max()), self.g_cap)
        self.g_med[:rows], self.g_sig[:rows], self.g_n[:rows] = _nan_med_mad(self.g[:rows, : max(filled, 1)])
        if self.tod is not None:
            slot = self.tod[hour]
            if slot is None:
                med, sig, n = np.full(rows, np.nan), np.full(rows, np.nan), np.zeros(rows, np.int64)
            else:
                filled = min(int(self.t_pos[:rows, hour].max()), self.t_cap)
                med, sig, n = _nan_med_mad(slot[:rows, : max(filled, 1)])
            day = int(bucket_ms // DAY_MS)
            days = self.t_days[:rows, hour, :]
            cov = np.sum((days >= 0) & (days > day - self.cfg.tod_days - 1) & (days <= day), axis=1)
            self.t_ok[:rows] = (n >= self.cfg.tod_min_points) & (cov >= self.cfg.tod_min_days)
            self.t_med[:rows], self.t_sig[:rows] = med, sig
        self._stats_hour = hour
        self._last_refresh = bucket_ms
        self._dirty = False
        self.version += 1

    # -- querying ---------------------------------------------------------------------------
    def baseline(self, ids: I64) -> tuple[F64, F64, I64]:
        """(median, MAD-σ, source) per id under the current hour's statistics."""
        if ids.size and int(ids.max()) < self.g_med.size:  # every id known (the common case): no masking
            kid = ids
            g_ok = self.g_n[kid] >= self.cfg.min_points
            t_ok = self.t_ok[kid]
            med = np.where(t_ok, self.t_med[kid], np.where(g_ok, self.g_med[kid], np.nan))
            sig = np.where(t_ok, self.t_sig[kid], np.where(g_ok, self.g_sig[kid], np.nan))
            src = np.where(t_ok, SOURCE_TOD, np.where(g_ok, SOURCE_TRAILING, SOURCE_NONE))
            return med, sig, src
        med = np.full(ids.size, np.nan)
        sig = np.full(ids.size, np.nan)
        src = np.zeros(ids.size, np.int64)
        if ids.size == 0 or self.g_med.size == 0:
            return med, sig, src
        known = ids < self.g_med.size
        kid = ids[known]
        g_ok = self.g_n[kid] >= self.cfg.min_points
        t_ok = self.t_ok[kid] if self.t_ok.size else np.zeros(kid.size, bool)
        m = np.where(t_ok, self.t_med[kid] if self.t_med.size else np.nan, np.where(g_ok, self.g_med[kid], np.nan))
        s = np.where(t_ok, self.t_sig[kid] if self.t_sig.size else np.nan, np.where(g_ok, self.g_sig[kid], np.nan))
        med[known] = m
        sig[known] = s
        src[known] = np.where(t_ok, SOURCE_TOD, np.where(g_ok, SOURCE_TRAILING, SOURCE_NONE))
        return med, sig, src

    def history_points(self, ids: I64) -> I64:
        """How many trailing values each series has (cold-start reporting)."""
        out = np.zeros(ids.size, np.int64)
        known = ids < self.g_n.size
        out[known] = self.g_n[ids[known]]
        return out


def robust_z(value: F64, med: F64, sigma: F64, floor: F64) -> F64:
    """(value − median) / max(σ, floor); NaN where there is no baseline."""
    return z_scaled(value, med, np.fmax(nan_to_zero(sigma), floor))


def z_scaled(value: F64, med: F64, scale: F64) -> F64:
    """(value − median) / scale, NaN where the scale is not positive: :func:`robust_z` for a
    caller that already has ``max(σ, floor)`` (it reports it as well)."""
    scale = np.where(scale > 0, scale, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((value - med) / scale, dtype=np.float64)


class CompiledForest:
    """A fitted isolation forest flattened for fast scoring of a few rows.

    ``IsolationForest.predict`` walks its trees one by one in Python (≈ 10 ms per call even for
    one row); the engine asks about a handful of host-steps per evaluation, so the trees are
    packed into flat arrays once after training and all are walked together with numpy. The
    scores equal ``score_samples`` (tests assert it) and outliers are ``score < offset_``.
    ``model``: a fitted scikit-learn ``IsolationForest`` or an :class:`analytics.iforest.ForestFit`.
    """

    def __init__(self, model: Any) -> None:
        if isinstance(model, ForestFit):
            fit = model
        else:
            fit = ForestFit(
                [e.tree_ for e in model.estimators_],
                list(model.estimators_features_),
                int(model.max_samples_),
                float(model.offset_),
            )
        feats, thr, left, right, adj, roots, depth_max = [], [], [], [], [], [], 0
        base = 0
        for t, cols in zip(fit.trees, fit.features, strict=True):
            n = t.node_count
            cl, cr = t.children_left, t.children_right
            # the depth of every node, root 0 (sklearn counts the root as 1): integers, so exact
            depth = np.asarray(t.compute_node_depths(), np.int64) - 1
            leaf = cl == -1
            f = np.where(leaf, 0, np.asarray(cols)[np.maximum(t.feature, 0)])
            feats.append(f)
            thr.append(np.where(leaf, np.inf, t.threshold))
            left.append(np.where(leaf, np.arange(n), cl) + base)
            right.append(np.where(leaf, np.arange(n), cr) + base)
            adj.append(np.where(leaf, depth + average_path_length(t.n_node_samples.astype(np.float64)), 0.0))
            roots.append(base)
            depth_max = max(depth_max, int(depth.max()))
            base += n
        self.feature = np.concatenate(feats)
        self.threshold = np.concatenate(thr)
        self.left = np.concatenate(left)
        self.right = np.concatenate(right)
        self.leaf_depth = np.concatenate(adj)
        self.roots = np.asarray(roots, np.int64)
        self.steps = depth_max
        self.norm = float(average_path_length(np.array([float(fit.max_samples)]))[0]) * len(roots)
        self.offset = float(fit.offset)

    def score_samples(self, x: F64) -> F64:
        """sklearn's ``score_samples`` (the lower, the more abnormal)."""
        x = np.asarray(x, np.float64)
        node = np.repeat(self.roots[None, :], x.shape[0], axis=0)
        rows = np.arange(x.shape[0])[:, None]
        for _ in range(self.steps):
            go_left = x[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        depth = self.leaf_depth[node].sum(axis=1)
        return np.asarray(-(2.0 ** (-depth / self.norm)), np.float64)

    def outlier(self, x: F64) -> npt.NDArray[np.bool_]:
        return np.asarray(self.score_samples(x) < self.offset)
