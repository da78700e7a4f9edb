"""Is a pool's usage growing, how fast, and how sure are we? Two estimators over one usage history.

Pool usage is a *step process*: it stays put for long stretches and moves when something is
allocated or released. Two questions, two estimators:

* :func:`theil_sen` — the robust straight line through the whole trailing window (median of
  pairwise slopes, the estimator of scikit-learn's ``TheilSenRegressor``, computed exactly because
  the interval is needed), its interval counting at most one independent point per usage change.
  Good at slow growth under noise (e.g. a gauge that moves every bucket); blind to a leak that
  started recently in a long flat window, because a line through "flat, then rising" is not a
  line at all.
* :func:`growth_run` — the usage *changes* as events. Under "no trend" (a pool that churns, or
  stands still) allocations and releases are equally likely, so the signs of the changes form a
  fair ±1 random walk; a leak is a walk that keeps going up. Scanning back from now for the
  suffix with the most net up-moves and judging it with the reflection principle (the exact law
  of a fair walk's maximum) gives a p-value that accounts for having picked the best suffix — a
  run of five allocations in a quiet pool is strong evidence, the same run in a pool that churns
  fifty times a day is not. Each bucket's change counts as one event whatever its size, so one
  operation that takes several addresses at once (a scale-out) is one event, and the run must
  itself span ``min_span`` (a burst of allocations over a few minutes is one operation, not a
  trend). The rate is the run's net growth per hour after its first event, with a compound-
  Poisson interval.

:func:`usage_trend` runs both and picks the forecast (the faster significant estimate); the pool
detector and anything that wants to show the same forecast (a report) call it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
HOUR_MS = 3_600_000


def _z_two_sided(confidence: float) -> float:
    """The normal quantile of a two-sided ``confidence`` interval (scipy's, imported on first use
    so that importing the detectors does not import ``scipy.stats``)."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def theil_sen(x: F64, y: F64, confidence: float, max_effective: float | None = None) -> tuple[float, float, float]:
    """Theil–Sen slope with Sen's confidence interval, widened for autocorrelation.

    Consecutive usage points are far from independent, and the textbook interval (which assumes
    independence) would call a random excursion of a churning pool a trend. The variance of
    Kendall's S is inflated by n / n*, n* being the effective number of independent points
    (the Hamed & Rao correction): n* = n (1 − ρ) / (1 + ρ) for a lag-1 autocorrelation ρ of the
    residuals, and at most ``max_effective`` — a step process carries no more independent
    information than it has steps, however finely it is sampled. Ties are not corrected for,
    which only widens the interval. Returns (slope, low, high) per unit of x.
    """
    n = x.size
    if n < 3 or np.all(y == y[0]):
        return 0.0, 0.0, 0.0
    i, j = np.triu_indices(n, k=1)
    dx = x[j] - x[i]
    ok = dx != 0
    slopes = np.sort((y[j] - y[i])[ok] / dx[ok])
    if slopes.size == 0:
        return 0.0, 0.0, 0.0
    b = float(np.median(slopes))
    resid = y - (float(np.median(y - b * x)) + b * x)
    r0 = resid - resid.mean()
    den = float(np.dot(r0, r0))
    rho = float(np.dot(r0[1:], r0[:-1]) / den) if den > 0 else 0.0
    rho = min(max(rho, 0.0), 0.95)
    n_eff = n * (1 - rho) / (1 + rho)
    if max_effective is not None:
        n_eff = max(1.0, min(n_eff, max_effective))
    var_s = n * (n - 1) * (2 * n + 5) / 18.0 * n / n_eff
    z = _z_two_sided(confidence)
    m = slopes.size
    lo_rank = int(np.floor((m - z * np.sqrt(var_s)) / 2))
    hi_rank = int(np.ceil((m + z * np.sqrt(var_s)) / 2))
    lo = float(slopes[max(0, lo_rank)]) if lo_rank >= 0 else -math.inf
    hi = float(slopes[min(m - 1, hi_rank)]) if hi_rank < m else math.inf
    return b, lo, hi


@dataclass(frozen=True, slots=True)
class GrowthRun:
    """The most-rising recent stretch of a usage history, judged as a fair-walk excursion."""

    events: int  # usage changes in the whole history (the walk's length)
    run_events: int  # changes in the run (from its first up-move to now)
    run_up: int
    run_down: int
    net_moves: int  # up − down moves in the run (the walk's excursion)
    start_ms: int  # when the run's first change was observed
    last_ms: int  # its last change
    growth: float  # net addresses taken in the run
    p_value: float  # P(a fair walk of `events` steps reaches `net_moves` above some earlier point)
    rate_per_h: float  # net addresses per hour after the first event (NaN without a run)
    rate_low: float
    rate_high: float
    significant: bool  # p ≤ alpha, the run spans min_span and its rate is positive


def walk_max_p(steps: int, height: int) -> float:
    """P(max over suffixes of a fair ±1 walk of ``steps`` steps ≥ ``height``), by reflection.

    The best suffix of the walk read backwards from now is the maximum of a walk that starts now;
    for a simple symmetric walk P(M ≥ a) = P(S ≥ a) + P(S > a) (André's reflection principle).
    """
    if height <= 0:
        return 1.0
    if height > steps:
        return 0.0

    def tail(a: int) -> float:  # P(S_steps ≥ a), S = 2K − steps, K ~ Bin(steps, 1/2)
        k = math.ceil((steps + a) / 2)
        from scipy.stats import binom  # lazy: importing scipy.stats costs ~0.5 s at startup

        return float(binom.sf(k - 1, steps, 0.5))

    return min(1.0, tail(height) + tail(height + 1))


def growth_run(
    t_ms: npt.NDArray[np.int64], y: F64, now_ms: int, *, confidence: float, min_span_ms: int
) -> GrowthRun | None:
    """Find and judge the recent run of allocations in a bucketed usage history.

    ``y`` is rounded to whole addresses first (bucket means of a gauge carry fractions that are
    not allocations). The one-sided level is (1 − confidence) / 2, the same as the lower bound of
    the two-sided slope interval the Theil–Sen path uses.
    """
    if t_ms.size < 2:
        return None
    yr = np.rint(y)
    d = np.diff(yr)
    ev = np.nonzero(d)[0]
    if ev.size == 0:
        return None
    sign = np.sign(d[ev]).astype(np.int64)
    # suffix sums of the signs, read from now backwards; the earliest index reaching the max wins
    suffix = np.cumsum(sign[::-1])[::-1]
    best = int(suffix.max())
    if best <= 0:
        return None
    j = int(np.argmax(suffix == best))
    run = ev[j:]
    steps = d[run]
    start = int(t_ms[run[0] + 1])
    last = int(t_ms[run[-1] + 1])
    growth = float(steps.sum())
    after = steps[1:]
    elapsed_h = max(now_ms - start, 1) / HOUR_MS
    rate = float(after.sum()) / elapsed_h
    sd = math.sqrt(float(np.dot(after, after))) / elapsed_h
    z = _z_two_sided(confidence)
    p = walk_max_p(int(ev.size), best)
    alpha = (1.0 - confidence) / 2
    up = int((steps > 0).sum())
    return GrowthRun(
        events=int(ev.size),
        run_events=int(run.size),
        run_up=up,
        run_down=int(run.size) - up,
        net_moves=best,
        start_ms=start,
        last_ms=last,
        growth=growth,
        p_value=p,
        rate_per_h=rate,
        rate_low=rate - z * sd,
        rate_high=rate + z * sd,
        significant=p <= alpha and last - start >= min_span_ms and rate - z * sd > 0,
    )


@dataclass(frozen=True, slots=True)
class Trend:
    """Both estimators over one usage history and the one the forecast uses."""

    method: str  # "theil-sen", "growth-run", or "none" (nothing significant: the line, if any)
    slope_per_h: float  # NaN when there is no estimate
    low: float
    high: float
    rising: bool  # some estimator is significant
    theil_sen: tuple[float, float, float] | None  # per hour; None below min points/span
    run: GrowthRun | None


def step_line(t_ms: npt.NDArray[np.int64], y: F64, confidence: float) -> tuple[float, float, float]:
    """Theil–Sen per hour over a usage history, counting one independent point per change."""
    changes = int(np.count_nonzero(np.diff(np.rint(y))))
    return theil_sen((t_ms - t_ms[-1]).astype(np.float64) / HOUR_MS, y, confidence, max_effective=changes + 1)


def usage_trend(
    t_ms: npt.NDArray[np.int64],
    y: F64,
    now_ms: int,
    *,
    confidence: float,
    min_span_ms: int,
    min_points: int,
    line: tuple[float, float, float] | None = None,
) -> Trend:
    """The growth verdict of a usage history (``line``: a Theil–Sen fit already computed for it).

    The line needs ``min_points`` points over ``min_span_ms``; either estimator may call growth
    (Theil–Sen: lower bound above zero; growth run: see :func:`growth_run`), and the faster
    significant one sets the forecast — an alert should not wait for the slower one.
    """
    fit = line
    if fit is None and t_ms.size >= max(min_points, 3) and int(t_ms[-1] - t_ms[0]) >= min_span_ms:
        fit = step_line(t_ms, y, confidence)
    run = growth_run(t_ms, y, now_ms, confidence=confidence, min_span_ms=min_span_ms)
    cands: list[tuple[str, float, float, float]] = []
    if fit is not None and fit[1] > 0:
        cands.append(("theil-sen", *fit))
    if run is not None and run.significant:
        cands.append(("growth-run", run.rate_per_h, run.rate_low, run.rate_high))
    if cands:
        method, slope, lo, hi = max(cands, key=lambda c: c[1])
    elif fit is not None:
        method, (slope, lo, hi) = "none", fit
    else:
        method, slope, lo, hi = "none", math.nan, math.nan, math.nan
    return Trend(method, slope, lo, hi, bool(cands), fit, run)
