"""Runs every detector over the store, incrementally, on a fixed step grid.

``Engine.evaluate(con, now)`` is called every ``evaluation_interval`` of (virtual or wall) time.
It analyses the complete steps between its cursor and ``now − settle`` — reading only rows with
``ts`` in that window (plus ``max_rate_gap`` before it, so counters find their predecessor) — and
returns the findings of all detectors. Baselines, holdings and usage histories live in memory and
are updated from the new rows only, which keeps a call cheap however long the store's history.

Calling less often is fine: a call catches up over every step since the last one, exactly as if
it had been called at each step. The first call after a (re)start reads ``bootstrap_window`` of
history to rebuild baselines and trends (in chunks, so memory stays bounded); alert state itself
is restored by :class:`analytics.lifecycle.AlertManager`.

``con`` is any DuckDB connection with ``samples`` and ``ip_observations`` views or tables in the
hciwatch schemas; the engine never writes to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from analytics.anomaly import SERIES_EXPR, MetricAnomalyDetector
from analytics.congestion import CONGESTION_METRICS, PRIORITY_EXPR, SUB_EXPR, CongestionDetector, CongestionScore
from analytics.duplicate_ip import LB_INFO_EXPR, LB_INFO_METRIC, DuplicateIpDetector
from analytics.findings import Finding
from analytics.ip_pools import POOL_EXPR, POOL_METRICS, SCOPE_EXPR, PoolDetector, PoolStat
from analytics.networks import NetworkIndex, NetworkLike, NetworkPlan, compile_networks, declare_metallb_range
from analytics.observations import ObservationTracker
from analytics.overlap import OverlapDetector
from analytics.rates import SeriesRegistry, StepAccumulator, query_table, sql_str, window_sql
from analytics.settings import AnalyticsSettings
from collector.schema import to_ms

# Samples are read and stepped in pieces of about this much data time (a whole number of steps):
# a catch-up over an hour of a large site then works on arrays of a few MB that the allocator
# reuses, instead of touching fresh memory for one huge array per column.
SAMPLE_CHUNK_MS = 600_000

# MetalLB ranges the clusters declare (IPAddressPool CRDs read by the Kubernetes inventory)
DECLARED_RANGES_SQL = """
SELECT DISTINCT labels['cluster'] AS cluster, labels['network'] AS network, labels['pool'] AS pool,
       labels['addresses'] AS addresses,
       labels['auto_assign'] AS auto_assign
FROM samples
WHERE ts > make_timestamptz($lo_us) AND ts <= make_timestamptz($hi_us)
  AND metric = 'k8s.metallb_pool_range_info'
"""


def _chunks(lo: int, hi: int, size: int) -> Iterator[tuple[int, int]]:
    """(a, b] pieces of (lo, hi] whose ends fall on multiples of size (except the last)."""
    a = lo
    while a < hi:
        b = min(hi, (a // size + 1) * size)
        yield a, b
        a = b


class Engine:
    """All detectors, one cursor. Not thread-safe: one caller evaluates at a time."""

    def __init__(self, settings: AnalyticsSettings, networks: Sequence[NetworkLike]) -> None:
        self.settings = settings
        self.plans: list[NetworkPlan] = compile_networks(networks, settings.pools)
        self.index = NetworkIndex(self.plans)
        self.obs = ObservationTracker(settings)
        self.pools = PoolDetector(settings, self.plans, self.index)
        self.overlap = OverlapDetector(settings, self.plans, self.index)
        self.duplicates = DuplicateIpDetector(settings, self.index)
        self.congestion = CongestionDetector(settings)
        self.anomaly = MetricAnomalyDetector(settings)
        metrics = sorted(set(CONGESTION_METRICS) | set(POOL_METRICS) | set(self.anomaly.metrics) | {LB_INFO_METRIC})
        series = (
            (f"CASE WHEN metric IN ({', '.join(sql_str(m) for m in self.anomaly.metrics)}) THEN {SERIES_EXPR} END")
            if self.anomaly.metrics
            else "NULL::VARCHAR"
        )
        self.registry = SeriesRegistry(
            metrics,
            {
                "sub": SUB_EXPR,
                "priority": PRIORITY_EXPR,
                "pool": POOL_EXPR,
                "scope": SCOPE_EXPR,
                "series": series,
                "lbinfo": LB_INFO_EXPR,
            },
        )
        self.steps = StepAccumulator(settings.step_ms, int(settings.max_rate_gap.total_seconds() * 1000), self.registry)
        self.window_sql = window_sql(metrics)
        self.cursor: int | None = None
        self.last_eval_seconds = 0.0
        self.timings: dict[str, float] = {}

    def evaluate(self, con: Any, now: datetime) -> list[Finding]:
        """Analyse every complete step up to ``now`` and return the current findings."""
        t0 = time.perf_counter()
        s = self.settings
        step = s.step_ms
        hi = ((to_ms(now) - int(s.settle.total_seconds() * 1000)) // step) * step
        if self.cursor is None:
            boot = int(s.bootstrap_window.total_seconds() * 1000)
            self.cursor = ((hi - boot) // step) * step
        if hi < self.cursor:
            raise ValueError(
                f"evaluate() called with now={now.isoformat()} before the last evaluated step; "
                "use a new Engine to analyse an earlier time range"
            )
        timings: dict[str, float] = {}
        if hi > self.cursor:
            cur = self.cursor
            for a, b in _chunks(cur, hi, max(1, SAMPLE_CHUNK_MS // step) * step):
                raw = self._timed(
                    timings, "samples_query", query_table, con, self.window_sql, {"lo_us": a * 1000, "hi_us": b * 1000}
                )
                self._timed(timings, "declared_ranges", self._declared_ranges, con, a, b)
                tbl = self._timed(timings, "steps", self.steps.process, con, raw, a * 1000, b * 1000)
                self._timed(timings, "congestion", self.congestion.process, tbl, b)
                self._timed(timings, "metric_anomaly", self.anomaly.process, tbl, b)
                self._timed(timings, "pool_metrics", self.pools.process_metrics, tbl)
                self._timed(timings, "lb_ports", self.duplicates.process_samples, tbl, b)
            self._timed(timings, "ip_observations", self.obs.ingest, con, cur, hi, prune=False)
            bucket = self.pools.bucket_ms
            t = (cur // bucket + 1) * bucket
            while t <= hi:  # usage at every pool-bucket end in the window (past states included)
                self._timed(timings, "pool_usage", self.pools.sample_observed, self.obs, t)
                t += bucket
            self.obs.prune(hi)
            self.cursor = hi
        findings: list[Finding] = []
        findings += self._timed(timings, "pool_forecast", self.pools.evaluate, hi)
        findings += self._timed(timings, "overlap", self.overlap.evaluate, self.obs, hi)
        findings += self._timed(timings, "duplicate_ip", self.duplicates.evaluate, self.obs, hi)
        findings += self.congestion.findings()
        findings += self.anomaly.findings()
        self.timings = timings
        self.last_eval_seconds = time.perf_counter() - t0
        return findings

    def _declared_ranges(self, con: Any, lo_ms: int, hi_ms: int) -> None:
        """Add the MetalLB ranges clusters declared in (lo, hi] to their network's plan, the pool
        detector and the overlap checks (AKS Arc: Microsoft says nothing else checks them). A range
        stays once declared: a deleted IPAddressPool keeps being accounted until a restart."""
        rows = con.execute(DECLARED_RANGES_SQL, {"lo_us": lo_ms * 1000, "hi_us": hi_ms * 1000}).fetchall()
        added = False
        for cluster, network, pool, addresses, auto in sorted(rows, key=lambda r: tuple(str(x) for x in r)):
            if not cluster or not pool or not addresses:
                continue
            plan = self.index.by_name.get(network or self.index.cluster_net.get(cluster, ""))
            if plan is None:
                continue  # a cluster on no configured network: nothing to account it against
            try:
                r = declare_metallb_range(plan, str(cluster), str(pool), str(addresses), auto_assign=auto != "false")
            except ValueError:
                continue  # the parser already reported the entry
            if r is not None:
                self.pools.add_range(plan, r)
                added = True
            self.pools.sync_reserves(plan)  # a configured pool the CRD says is autoAssign false
        if added:
            self.index.invalidate()
            self.overlap.refresh_config()

    def skip_idle(self, now: datetime) -> None:
        """Move the cursor to ``now`` without stepping through the time before it.

        For a span the caller knows holds no rows (a replay's gap between files months apart):
        stepping through it would cost one pass per step and find nothing. Baselines and
        histories are kept; rates never bridge the gap anyway (``max_rate_gap``).
        """
        s = self.settings
        hi = ((to_ms(now) - int(s.settle.total_seconds() * 1000)) // s.step_ms) * s.step_ms
        if self.cursor is not None and hi > self.cursor:
            self.obs.prune(hi)
            self.cursor = hi

    @staticmethod
    def _timed(timings: dict[str, float], name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t

    def pool_stats(self) -> list[PoolStat]:
        """Latest usage and forecast of every pool (for OTLP metrics / the API)."""
        return self.pools.snapshot()

    def congestion_scores(self) -> list[CongestionScore]:
        """Latest per-host congestion signals, baselines and scores (for OTLP metrics / the API)."""
        return self.congestion.snapshot()
