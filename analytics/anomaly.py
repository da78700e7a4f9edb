"""Metric anomaly (metric_anomaly): dynamic thresholds for any canonical metric a user lists.

Each ``[[analytics.metric_anomaly]]`` rule selects series (metric + label filter); every series
gets its own causal detector (:mod:`analytics.detector`, the one ``hciwatch anomalies`` and the
NAB bench use): robust level, jump, shift and daily-seasonal surprise against the series' own
past, with an alert bar calibrated on the surprises the series has shown so far. As in Azure
Monitor's dynamic thresholds, ``sensitivity`` scales that bar (low fewer alerts, high more),
``direction`` says which side counts, and ``min_failing_periods`` of ``of_periods`` how many of the
last observed steps must be over the bar before the series is anomalous. Hysteresis: an anomalous
series clears after ``of_periods`` consecutive steps under 0.6 × the bar. Violating steps, and
every step of an anomalous series, are withheld from its baselines while the anomaly is open and
learned once it clears (a rare incident does not move the baseline, while behaviour that recurs
often, like routine write bursts, becomes normal) — or once it has lasted ``relearn_after``: a
lasting level shift is then the new normal and clears instead of firing forever. Violations that
never make an anomaly are learned after ``of_periods`` quiet steps.

Counters (``*_total``) are judged by their per-second rate (resets and gaps handled by
:mod:`analytics.rates`); formatted rates and gauges by their value. Cold start: a series is judged
once it has ``baselines.min_points`` steps; ``baselines.window`` is its trailing window,
``baselines.relative_floor`` the smallest spread relative to its level, and
``baselines.time_of_day`` turns the daily-seasonal feature on.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, TypeVar

import pyarrow as pa

from analytics.detector import DetectorParams, StreamDetector
from analytics.findings import Finding
from analytics.rates import in_set, is_counter, metric_forms
from analytics.settings import AnalyticsSettings, MetricAnomalyRule
from collector.schema import AlertKind, from_ms, iso

SERIES_EXPR = "CAST(to_json(map_from_entries(list_sort(map_entries(labels)))) AS VARCHAR)"
CLEAR_RATIO = 0.6
T = TypeVar("T")
MAX_SEASON = 20_000  # steps per day above which the daily-seasonal feature is off
HELD_MAX = 4096  # withheld steps kept per series (a trailing baseline never holds more)


def label_match(want: dict[str, str], host: str, labels: dict[str, str]) -> bool:
    """Every filter key present and equal (``*``/``?``/``[]`` globs allowed); ``host`` is the host."""
    for k, pattern in want.items():
        v = host if k == "host" else labels.get(k)
        if v is None or not fnmatchcase(v, pattern):
            return False
    return True


def _pretty(series_json: str) -> str:
    """``{"a":"1","b":"2"}`` → ``a=1,b=2`` (stable: keys are sorted in the query)."""
    try:
        d = json.loads(series_json or "{}")
    except ValueError:
        return series_json
    return ",".join(f"{k}={v}" for k, v in d.items())


def to_learn(
    held: deque[tuple[T, float]], t: T, value: float, *, bad: bool, active: bool, relearn: bool, settled: bool
) -> list[tuple[T, float]]:
    """The values that enter the baseline after this step, oldest first (module docstring):
    a violating value, or any value of an open anomaly not yet ``relearn``-old, goes to ``held``;
    ``held`` is released once the anomaly is relearned or the series has ``settled`` (inactive and
    quiet for ``of_periods`` steps). Shared by the live detector and offline scoring."""
    withhold = bad or (active and not relearn)
    if withhold:
        held.append((t, value))
    out: list[tuple[T, float]] = []
    if held and (relearn or settled):
        out.extend(held)
        held.clear()
    if not withhold:
        out.append((t, value))
    return out


@dataclass(slots=True)
class _Series:
    flags: deque[bool]
    quiet: int = 0
    active: bool = False
    onset: int = 0
    last: int = 0
    cleared: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=12))
    held: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=HELD_MAX))  # (bucket, value)
    det: StreamDetector | None = None


class _Rule:
    def __init__(self, rule: MetricAnomalyRule, settings: AnalyticsSettings) -> None:
        self.rule = rule
        self.forms = metric_forms(rule.metric)
        self.sensitivity = rule.sensitivity or settings.sensitivity
        self.relearn_ms = int(rule.relearn_after.total_seconds() * 1000)
        self.series: dict[tuple[str, str], _Series] = {}


class MetricAnomalyDetector:
    def __init__(self, settings: AnalyticsSettings) -> None:
        self.s = settings
        self.step_ms = settings.step_ms
        b = settings.baselines
        self.params = DetectorParams(
            window=max(b.min_points, int(b.window.total_seconds() * 1000) // self.step_ms),
            min_points=b.min_points,
            relative_floor=b.relative_floor,
        )
        per_day = 86_400_000 // self.step_ms
        self.season = per_day if b.time_of_day and 2 <= per_day <= MAX_SEASON else 0
        self.rules = [_Rule(r, settings) for r in settings.metric_anomaly]
        self._match_cache: dict[tuple[str, str, str], bool] = {}
        self.forgotten = 0  # series whose state was dropped after baselines.forget_after of silence

    @property
    def metrics(self) -> list[str]:
        """Stored metric names the rules need from the window query."""
        return sorted({m for r in self.rules for m in r.forms})

    def _matches(self, rule: _Rule, host: str, series: str) -> bool:
        key = (rule.rule.rule_name, host, series)
        hit = self._match_cache.get(key)
        if hit is None:
            try:
                labels = {str(k): str(v) for k, v in json.loads(series or "{}").items()}
            except ValueError:
                labels = {}
            hit = label_match(rule.rule.labels, host, labels)
            if len(self._match_cache) > 100_000:
                self._match_cache.clear()
            self._match_cache[key] = hit
        return hit

    def process(self, tbl: pa.Table, hi_ms: int) -> None:
        """Judge every step of the rules' series in a window table."""
        if self.rules and tbl.num_rows:
            mask = in_set(tbl.column("metric"), self.metrics)
            if mask.any():
                cols = ["host", "metric", "bucket", "rate", "mean", "series"]
                rows = tbl.filter(pa.array(mask)).select(cols).to_pylist()
                for rule in self.rules:
                    forms = set(rule.forms)
                    by_bucket: dict[int, dict[tuple[str, str], tuple[float, bool]]] = {}
                    for r in rows:
                        if r["metric"] not in forms or not self._matches(rule, r["host"], r["series"] or ""):
                            continue
                        counter = is_counter(r["metric"])
                        v = r["rate"] if counter else r["mean"]
                        if v is None or not math.isfinite(v):
                            continue
                        key = (r["host"], _pretty(r["series"] or ""))
                        slot = by_bucket.setdefault(int(r["bucket"]), {})
                        if key in slot and slot[key][1] and not counter:
                            continue  # the raw counter form wins over the formatted one
                        slot[key] = (float(v), counter)
                    for b in sorted(by_bucket):
                        self._step(rule, b, by_bucket[b])
        self._expire(hi_ms)

    def _step(self, rule: _Rule, bucket: int, vals: dict[tuple[str, str], tuple[float, bool]]) -> None:
        m = rule.rule.of_periods
        direction = rule.rule.direction
        for key in sorted(vals):
            value, counter = vals[key]
            st = rule.series.get(key)
            if st is None:
                st = _Series(deque(maxlen=m))
                rule.series[key] = st
            if st.det is None:
                st.det = StreamDetector(rule.sensitivity, self.params, self.season, direction)
            det = st.det
            j = det.judge(value, bucket / self.step_ms)
            side = det.side(value, j.baseline)
            bad = j.over and side
            near = side and j.score >= CLEAR_RATIO * j.bar  # False while cold (NaN)
            st.flags.append(bad)
            st.last = bucket
            st.recent.append(value)
            st.quiet = 0 if near else st.quiet + 1
            relearn = rule.relearn_ms > 0 and st.active and bucket - st.onset >= rule.relearn_ms
            was_active = st.active
            if not st.active and sum(st.flags) >= rule.rule.min_failing_periods:
                st.active, st.onset, st.cleared = True, bucket, None
            elif st.active and st.quiet >= m:
                st.active, st.cleared = False, bucket
            settled = not st.active and st.quiet >= m
            for b, v in to_learn(st.held, bucket, value, bad=bad, active=was_active, relearn=relearn, settled=settled):
                det.learn(v, b / self.step_ms)
            if st.active or st.cleared == bucket:
                st.evidence = {
                    "metric": rule.rule.metric,
                    "stored_as": rule.forms,
                    "host": key[0],
                    "labels": key[1],
                    "value": value,
                    "judged_as": "per-second rate" if counter else "value",
                    "baseline": j.baseline,
                    "spread": j.spread,
                    "z": (1.0 if value >= j.baseline else -1.0) * j.z,
                    "score": j.score,
                    "bar": j.bar,
                    "band": [j.baseline - j.level_bar * j.spread, j.baseline + j.level_bar * j.spread],
                    "baseline_source": "seasonal+trailing" if self.season else "trailing",
                    "sensitivity": rule.sensitivity.value,
                    "direction": direction,
                    "failing_periods": f"{sum(st.flags)}/{len(st.flags)}",
                    "required": f"{rule.rule.min_failing_periods}/{m}",
                    "recent_values": list(st.recent),
                    "step_end": iso(from_ms(bucket)),
                    "onset": iso(from_ms(st.onset)),
                    "relearning": relearn,
                }

    def _expire(self, now_ms: int) -> None:
        """Clear anomalies of series that stopped reporting, and forget series silent for
        ``baselines.forget_after`` (once nothing about them is reported any more)."""
        gap = self.s.max_rate_gap.total_seconds() * 1000
        forget = self.s.baselines.forget_after.total_seconds() * 1000
        for rule in self.rules:
            for key in list(rule.series):
                st = rule.series[key]
                if st.active and now_ms - st.last > max(gap, rule.rule.of_periods * self.step_ms):
                    st.active, st.cleared = False, now_ms
                    st.evidence = {**st.evidence, "cleared_because": "series stopped reporting"}
                if not st.active and st.cleared is not None and now_ms - st.cleared > 3_600_000:
                    st.cleared = None
                if not st.active and st.cleared is None and now_ms - st.last > forget:
                    del rule.series[key]
                    self.forgotten += 1

    @property
    def series_count(self) -> int:
        """Series with state (detector, flags, withheld values) over all rules."""
        return sum(len(r.series) for r in self.rules)

    def findings(self) -> list[Finding]:
        out = []
        for rule in self.rules:
            r = rule.rule
            for (host, labels), st in sorted(rule.series.items()):
                if not st.active and st.cleared is None:
                    continue
                ev = st.evidence
                lab = f" {{{labels}}}" if labels else ""
                state = "" if st.active else " (cleared)"
                summary = (
                    f"{r.metric} on {host}{lab}{state}: {ev.get('value', math.nan):.4g} vs baseline "
                    f"{ev.get('baseline', math.nan):.4g} (z {ev.get('z', math.nan):+.1f}, "
                    f"{ev.get('failing_periods', '?')} periods)"
                )
                out.append(
                    Finding(
                        AlertKind.METRIC_ANOMALY,
                        {"rule": r.rule_name, "metric": r.metric, "host": host, "labels": labels},
                        r.severity,
                        summary,
                        dict(ev),
                        active=st.active,
                    )
                )
        return out
