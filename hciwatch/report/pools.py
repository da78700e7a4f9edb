"""Per network and pool: addresses used, size and upgrade-reserve line over time, with the trend,
its forecast band and when it crosses the reserve.

Usage comes from the analyst view ``pool_usage`` (the same accounting an analyst sees in
``catalog.duckdb``), downsampled to the window's step by the *peak* of each bucket: exhaustion is
about the highest point, and a mean would hide a short-lived allocation that already hit the wall.

The forecast is the alerting detector's own verdict (:func:`analytics.trend.usage_trend`: the
Theil–Sen line or the growth-run rate, whichever is significant and faster; same ``trend_window``,
``confidence`` and minimum history as ``[analytics.pools]``, restarted after a release exactly as
:func:`analytics.ip_pools.trend_start` says), fitted on the 5-minute points of the trailing window
and anchored at the last observed usage as the detector does, so the date on the chart and the
hours in a pool alert tell the same story.
"""

from __future__ import annotations

import math
from typing import Any

import duckdb
import numpy as np

from analytics.ip_pools import trend_start
from analytics.settings import PoolSettings
from analytics.trend import Trend, usage_trend
from hciwatch.report.numbers import num
from hciwatch.report.window import Window

HOUR_S = 3600.0


def _crossing(headroom: float, slope_per_h: float, t_last: float) -> float | None:
    """When a line rising at ``slope_per_h`` from ``t_last`` uses up ``headroom`` (None: never)."""
    if headroom <= 0:
        return t_last
    if not math.isfinite(slope_per_h) or slope_per_h <= 0:
        return None
    return t_last + headroom / slope_per_h * HOUR_S


def _forecast(t_ms: np.ndarray, y: np.ndarray, settings: PoolSettings) -> Trend | None:
    if t_ms.size < 2:
        return None
    trend = usage_trend(
        t_ms,
        y,
        int(t_ms[-1]),
        confidence=settings.confidence,
        min_span_ms=int(settings.min_trend_span.total_seconds() * 1000),
        min_points=settings.min_trend_points,
    )
    return trend if math.isfinite(trend.slope_per_h) else None


def pool_views(
    con: duckdb.DuckDBPyConnection, win: Window, settings: PoolSettings | None = None
) -> list[dict[str, Any]]:
    """One entry per (network, pool) seen in the window; see the module docstring."""
    p = settings or PoolSettings()
    rows = con.execute(
        """
        SELECT network, pool, any_value(pool_type), epoch(bucket) AS t,
               max(used)::DOUBLE, max(size)::DOUBLE, max(reserve)::DOUBLE
        FROM pool_usage
        WHERE bucket <= to_timestamp($end) AND network IS NOT NULL AND pool IS NOT NULL
        GROUP BY ALL ORDER BY network, pool, t
    """,
        {"end": win.end_s},
    ).fetchall()
    by_pool: dict[tuple[str, str], list[tuple[str, float, float, float, float]]] = {}
    for network, pool, ptype, t, used, size, reserve in rows:
        by_pool.setdefault((str(network), str(pool)), []).append(
            (str(ptype), float(t), float(used or 0), float(size or 0), float(reserve or 0))
        )
    out = []
    for (network, pool), pts in by_pool.items():
        view = _pool_view(network, pool, pts, win, p)
        if view is not None:
            out.append(view)
    return out


def _pool_view(
    network: str, pool: str, pts: list[tuple[str, float, float, float, float]], win: Window, p: PoolSettings
) -> dict[str, Any] | None:
    shown = [r for r in pts if r[1] >= win.start_s]
    if not shown:
        return None
    step = win.step_s
    buckets: dict[float, list[float]] = {}
    for _, t, used, size, reserve in shown:
        b = math.floor(t / step) * step
        cur = buckets.get(b)
        if cur is None:
            buckets[b] = [used, size, reserve]
        else:
            cur[0], cur[1], cur[2] = max(cur[0], used), max(cur[1], size), max(cur[2], reserve)
    ts = sorted(buckets)
    used_s = [buckets[b][0] for b in ts]
    size_s = [buckets[b][1] for b in ts]
    limit_s = [buckets[b][1] - buckets[b][2] for b in ts]

    ptype, t_last, used_last, size_last, reserve_last = pts[-1]
    trail = [r for r in pts if r[1] >= t_last - p.trend_window.total_seconds()]
    x = np.array([r[1] for r in trail], np.float64)
    y = np.array([r[2] for r in trail], np.float64)
    t_ms = np.rint(x * 1000).astype(np.int64)
    first = trend_start(t_ms, y, size_last)
    x, y = x[first:], y[first:]
    fit = _forecast(t_ms[first:], y, p)
    free = size_last - used_last
    headroom = free - reserve_last
    view: dict[str, Any] = {
        "network": network,
        "pool": pool,
        "pool_type": ptype,
        "size": num(size_last),
        "reserve": num(reserve_last),
        "used": num(used_last),
        "free": num(free),
        "last_t": t_last,
        "below_reserve": bool(free < reserve_last),
        "t": ts,
        "used_s": [num(v) for v in used_s],
        "size_s": [num(v) for v in size_s],
        "limit_s": [num(v) for v in limit_s],
        "trend": None,
        "forecast": None,
        "reserve_crossing": None,
        "exhaustion": None,
        "confidence": p.confidence,
    }
    if free < reserve_last:
        since = t_last
        for _, t, used, size, reserve in reversed(pts):
            if size - used >= reserve:
                break
            since = t
        view["below_reserve_since"] = since
    if fit is None:
        view["trend_note"] = f"no trend yet: needs {p.min_trend_points} points over {p.min_trend_span} of history"
        return view
    slope, lo, hi = fit.slope_per_h, fit.low, fit.high
    intercept = float(np.median(y - slope * (x - x[-1]) / HOUR_S))
    view["trend"] = {
        "t0": float(x[0]),
        "y0": num(intercept + slope * (x[0] - x[-1]) / HOUR_S),
        "t1": float(x[-1]),
        "y1": num(intercept),
        "slope_per_day": num(slope * 24),
        "slope_per_day_low": num(lo * 24),
        "slope_per_day_high": num(hi * 24),
        "window_hours": num((x[-1] - x[0]) / HOUR_S),
        "points": int(x.size),
        "method": fit.method,
        "rising": fit.rising,
    }
    # half the window ahead, stretched to show the reserve crossing when it is within one window
    span = win.end_s - win.start_s
    horizon = max(span * 0.5, HOUR_S)
    if headroom > 0 and slope > 0 and headroom / slope * HOUR_S <= span:
        horizon = max(horizon, headroom / slope * HOUR_S * 1.1)
    n = max(2, min(300, int(horizon // step) + 1))
    ft = [t_last + i * horizon / (n - 1) for i in range(n)]

    def line(rate: float) -> list[float | None]:
        if not math.isfinite(rate):
            return [None] * n
        return [num(min(max(used_last + rate * (t - t_last) / HOUR_S, 0.0), size_last)) for t in ft]

    view["forecast"] = {"t": ft, "mid": line(slope), "lo": line(lo), "hi": line(hi)}
    view["reserve_crossing"] = {
        "at": _crossing(headroom, slope, t_last),
        "earliest": _crossing(headroom, hi, t_last),
        "latest": _crossing(headroom, lo, t_last) if lo > 0 else None,
    }
    view["exhaustion"] = {
        "at": _crossing(free, slope, t_last),
        "earliest": _crossing(free, hi, t_last),
        "latest": _crossing(free, lo, t_last) if lo > 0 else None,
    }
    return view
