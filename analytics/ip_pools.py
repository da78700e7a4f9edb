"""VIP / node / pod pool accounting and time-to-exhaustion (vip_, node_ and pod_pool_exhaustion).

Usage per pool and network, every ``pools.bucket``:

* **VIP pool** (and each configured MetalLB/custom LB range): distinct addresses inside the range
  held by anything (Services, API-server VIPs, HAProxy frontends, and misplaced nodes/NICs, which
  occupy an address just the same), but never less than the IP plan says: one VIP per cluster
  API server (management cluster included) plus one per LoadBalancer Service seen;
* **node pool**: distinct addresses held by node VMs, load-balancer (HAProxy) VMs and anything else
  inside the range;
* **MetalLB ranges** a cluster declares in its IPAddressPool CRDs join the configured ones at run
  time (:meth:`PoolDetector.add_range`); one with ``autoAssign: false`` keeps no reserve;
* **MetalLB / Calico pools** from their own gauges when scraped (``metallb.addresses_in_use`` /
  ``metallb.addresses_total`` per pool; ``calico.ipam.allocations_in_use`` summed over nodes /
  ``calico.ipam.ippool_size`` per ippool; addresses Calico reserves — ``calico.ipam.ippool_reserved``
  when scraped — count as used, they cannot be handed to pods). Calico IPAM pools hold pod
  addresses and are reported as ``pod_pool_exhaustion``.

The reserve is what the next upgrade or scale-out needs: node pools keep the IP plan's update IPs
(22H2: 2 for the management cluster + 5 per workload cluster; 23H2: 1 per cluster; or the
network's ``node_upgrade_reserve``); VIP pools keep ``vip_reserve`` (default 2: one more cluster's
API-server and load-balancer VIPs); Calico pools keep 0.

Usage is sampled only where it was observed: from the first full bucket after the first
inventory row, and never in a bucket without any inventory row within ``allocation_ttl``
(before the first poll, or while every inventory source is unreachable, "nothing seen" is not
"nothing held" — a history of invented empty buckets would flatten every trend).

Forecast (:mod:`analytics.trend`), over the usage history since the last large release, at most
``trend_window``, two estimators:

* a **Theil–Sen line** with Sen's interval widened for autocorrelation (and counting at most one
  independent point per usage change): slow growth under noise;
* the **growth run**: the usage changes as ±1 events of a fair walk, the most-rising recent
  stretch judged by the reflection principle, its rate (net addresses per hour after its first
  event) with a compound-Poisson interval. Catches a leak that began recently in a long flat
  window (which a line through "flat, then rising" never calls significant); a burst shorter
  than ``min_trend_span`` (one scale-out) is one operation, not a trend.

It fires when free addresses are already below the reserve, or when either estimator is
significant (Theil–Sen: the *lower* confidence bound of the slope is above zero; growth run:
p ≤ (1 − confidence)/2, spanning ``min_trend_span``, rate interval above zero) and its median
forecast crosses the reserve within ``horizon`` — the faster significant estimate is used, an
alert should not wait for the slower one. A flat pool — however full — never pages on the
forecast; a pool that churns (allocations and releases alike) does not make a significant run;
a scale-out that is released restarts the trend. Hysteresis: a firing forecast clears only when
the crossing moves beyond ``horizon × clear_horizon_factor`` or no estimator is significant any
more, and free addresses are back at or above the reserve.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from analytics.findings import Finding
from analytics.networks import NetworkIndex, NetworkPlan, PoolRange, metallb_pool_of
from analytics.observations import Holding, ObservationTracker
from analytics.pool_accounting import in_range, inferred_lb_vms, node_pool_wire_only, vip_range_used
from analytics.rates import in_set
from analytics.settings import AnalyticsSettings
from analytics.trend import GrowthRun, Trend, growth_run, usage_trend
from collector.schema import AlertKind, Severity, from_ms, iso

POOL_METRICS = (
    "metallb.addresses_in_use",
    "metallb.addresses_total",
    "calico.ipam.allocations_in_use",
    "calico.ipam.ippool_size",
    "calico.ipam.ippool_reserved",  # reserved addresses cannot be allocated: they count as used
)
POOL_EXPR = "coalesce(labels['pool'], labels['ippool'], '')"
SCOPE_EXPR = "coalesce(labels['cluster'], CAST(host AS VARCHAR))"

HOUR_MS = 3_600_000
LONG_LIVED = "long-lived-addresses"


def is_release(recent_peak: float, used: float, size: float) -> bool:
    """A drop below the last hour's peak big enough to restart the trend: what came before a
    released scale-out no longer predicts what comes next (shared with the report's forecast)."""
    return used <= recent_peak - max(3.0, 0.05 * size)


def trend_start(t_ms: npt.NDArray[np.int64], y: npt.NDArray[np.float64], size: float) -> int:
    """Index where the detector's usage history begins: just after the last release."""
    start = 0
    for i in range(1, t_ms.size):
        lo = int(np.searchsorted(t_ms, t_ms[i] - HOUR_MS, side="left"))
        peak = float(y[max(lo, start) : i].max()) if i > max(lo, start) else float(y[i - 1])
        if is_release(peak, float(y[i]), size):
            start = i
    return start


@dataclass(frozen=True, slots=True)
class PoolStat:
    """Latest state of one pool (exported as OTLP metrics and shown by the CLI)."""

    network: str
    pool: str
    pool_type: str  # vip, node, lb, metallb, calico
    ts: int
    size: int
    used: int
    free: int
    reserve: int
    slope_per_day: float  # NaN until there is a trend
    slope_per_day_low: float
    slope_per_day_high: float
    hours_to_reserve: float | None  # None: not forecast to cross (flat/falling/no trend)
    hours_to_reserve_low: float | None
    hours_to_reserve_high: float | None
    firing: bool
    method: str = "none"  # which estimator the forecast uses: theil-sen, growth-run or none


@dataclass(slots=True)
class _Pool:
    network: str
    pool: str
    pool_type: str
    kind: AlertKind
    size: int
    reserve: int
    history: deque[tuple[int, float]] = field(default_factory=deque)
    firing: bool = False
    fired_at: int | None = None
    cleared_at: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    stat: PoolStat | None = None
    last_fit: tuple[int, int, int] | None = None
    trend_reset_at: int | None = None
    trend: Trend | None = None
    long_history: deque[tuple[int, float]] = field(default_factory=deque)  # addresses held > churn_lifetime
    long_run: GrowthRun | None = None
    long_fit: tuple[int, int, int] | None = None
    held_since: dict[tuple[str, str, str, str | None], int] = field(default_factory=dict)


def _hours(headroom: float, slope_per_h: float) -> float | None:
    if slope_per_h <= 0 or not math.isfinite(slope_per_h):
        return None
    return max(0.0, headroom / slope_per_h)


K = TypeVar("K", str, tuple[str, str])


def _top(counts: Counter[K], n: int = 5) -> list[tuple[K, int]]:
    """The ``n`` largest counts, ties by name: the same list whatever order holdings were learnt
    in (``Counter.most_common`` breaks ties by insertion order)."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


class PoolDetector:
    def __init__(self, settings: AnalyticsSettings, plans: list[NetworkPlan], index: NetworkIndex) -> None:
        self.s = settings
        self.p = settings.pools
        self.plans = plans
        self.index = index
        self.bucket_ms = int(self.p.bucket.total_seconds() * 1000)
        self.ttl = int(self.p.allocation_ttl.total_seconds() * 1000)
        self.window = int(self.p.trend_window.total_seconds() * 1000)
        self.churn_ms = int(self.p.churn_lifetime.total_seconds() * 1000)
        self.long_window = int(self.p.long_lived_window.total_seconds() * 1000)
        self.pools: dict[tuple[str, str], _Pool] = {}
        for plan in plans:
            for r in plan.ranges:
                if r.kind == "node":
                    kind, reserve = AlertKind.NODE_POOL_EXHAUSTION, plan.node_reserve
                else:
                    kind, reserve = AlertKind.VIP_POOL_EXHAUSTION, plan.vip_reserve
                self.pools[(plan.name, r.pool)] = _Pool(plan.name, r.pool, r.kind, kind, r.size, reserve)

    def add_range(self, plan: NetworkPlan, r: PoolRange) -> None:
        """Start accounting a load-balancer range a cluster declared at run time (a MetalLB CRD)."""
        self.pools.setdefault(
            (plan.name, r.pool),
            _Pool(plan.name, r.pool, r.kind, AlertKind.VIP_POOL_EXHAUSTION, r.size, plan.vip_reserve),
        )
        self.sync_reserves(plan)

    def sync_reserves(self, plan: NetworkPlan) -> None:
        """A MetalLB range with autoAssign false keeps no reserve: MetalLB never allocates from it on
        its own, so no new Service, cluster or upgrade draws on its headroom; it still alerts when it
        is full or forecast to be (only Services that ask for one of its addresses take them)."""
        for name in plan.lb_manual:
            pool = self.pools.get((plan.name, name))
            if pool is not None:
                pool.reserve = 0

    def _gauge_pool(self, pool: _Pool) -> _Pool | None:
        """The MetalLB allocator-gauge pool of a declared MetalLB range (same cluster and pool name)."""
        owner = metallb_pool_of(pool.pool) if pool.pool_type == "lb" else None
        return None if owner is None else self.pools.get((pool.network, f"metallb:{owner[0]}/{owner[1]}"))

    def _declared(self, pool: _Pool) -> bool:
        """Whether a MetalLB gauge pool is also a configured or declared range of its network: then
        the range (every holder of every address in it, whichever cluster) is the one alert, and the
        gauges — which count only what this cluster's MetalLB allocated — are its evidence."""
        if pool.pool_type != "metallb":
            return False
        plan = self.index.by_name.get(pool.network)
        cluster_pool = tuple(pool.pool[len("metallb:") :].split("/", 1))
        return plan is not None and any(metallb_pool_of(r.pool) == cluster_pool for r in plan.lbs)

    # -- usage sampling --------------------------------------------------------------------------
    def sample_observed(self, obs: ObservationTracker, t_ms: int) -> None:
        """Record every configured pool's usage at t_ms from the current holdings — if the
        inventory was being observed then (see the module docstring)."""
        first = obs.first_holder_ms
        if first is None or t_ms - self.bucket_ms < first or not obs.observed(t_ms, self.ttl):
            return
        in_pool: dict[tuple[str, str], dict[str, list[Holding]]] = {
            k: {} for k in self.pools if not k[1].startswith(("metallb:", "calico:"))
        }
        for h in obs.holdings.values():
            if h.owner_kind == "pod" or not h.held_at(t_ms, self.ttl):
                continue
            _key, ranges, _net = self.index.lookup(h.ip)
            for r in ranges:
                slot = in_pool.get((r.network, r.pool))
                if slot is not None:
                    slot.setdefault(h.ip, []).append(h)
        neighbor_mac = {ip: (v[0], v[1]) for ip, v in obs.neighbor_latest.items()}
        for plan in self.plans:
            lb_vms: dict[str, str] = {}
            if plan.node is not None and neighbor_mac and obs.observed(t_ms, self.ttl):
                lb_vms = inferred_lb_vms(in_pool[(plan.name, "vip")], neighbor_mac, t_ms, self.ttl)
            for r in plan.ranges:
                held = in_pool[(plan.name, r.pool)]
                pool = self.pools[(plan.name, r.pool)]
                used, detail = self._usage(plan, r, held)
                if r.kind == "node":
                    # rule 22H2-LB: HAProxy VMs hold node-pool addresses Kubernetes does not list
                    extra = node_pool_wire_only(
                        partial(in_range, r, self.index),
                        held,
                        neighbor_mac,
                        lb_vms,
                        t_ms,
                        self.ttl,
                    )
                    used += len(extra)
                    detail["held_without_inventory"] = dict(sorted(extra.items()))
                pool.detail = detail
                self._append(pool, t_ms, float(used))
                if self.churn_ms > 0:
                    self._sample_long_lived(pool, held, t_ms)

    def _sample_long_lived(self, pool: _Pool, held: dict[str, list[Holding]], t_ms: int) -> None:
        """Count the addresses one holder has held, sample after sample, for longer than the churn
        lifetime. Continuity is per holder (a VIP handed from one short-lived Service to the next is
        not long-lived) and by consecutive samples (not by holding periods, which are pruned)."""
        prev = pool.held_since
        cur: dict[tuple[str, str, str, str | None], int] = {}
        cut = t_ms - self.churn_ms
        long = 0
        for ip, hs in held.items():
            first = t_ms
            for h in hs:
                key = (ip, h.owner_kind, h.owner, h.cluster)
                since = prev.get(key, t_ms)
                cur[key] = since
                first = min(first, since)
            long += first <= cut
        pool.held_since = cur
        pool.long_history.append((t_ms, float(long)))
        while pool.long_history and pool.long_history[0][0] < t_ms - self.long_window:
            pool.long_history.popleft()

    def _usage(self, plan: NetworkPlan, r: PoolRange, held: dict[str, list[Holding]]) -> tuple[int, dict[str, Any]]:
        by_kind: Counter[str] = Counter()
        for hs in held.values():
            by_kind[sorted({h.owner_kind for h in hs})[0]] += 1
        observed = len(held)
        detail: dict[str, Any] = {"observed_addresses": observed, "addresses_by_owner_kind": dict(by_kind)}
        used = observed
        if r.kind == "vip":
            service_ips = {ip for ip, hs in held.items() if any(h.owner_kind == "service" for h in hs)}
            # rule 22H2-VIP-API: every configured cluster's API VIP is used, seen or not
            used, planned_api = vip_range_used(plan.all_clusters, held)
            per_cluster: Counter[str] = Counter()
            per_ns: Counter[tuple[str, str]] = Counter()
            for ip in service_ips:
                for h in held[ip]:
                    if h.owner_kind == "service":
                        per_cluster[h.cluster or "?"] += 1
                        per_ns[(h.cluster or "?", h.owner.split("/", 1)[0] if "/" in h.owner else "")] += 1
                        break
            detail.update(
                {
                    "loadbalancer_service_vips": len(service_ips),
                    "api_server_vips_planned": len(plan.all_clusters),
                    "api_server_vips_not_observed": planned_api,
                    "top_vip_holders_by_cluster": [{"cluster": c, "vips": n} for c, n in _top(per_cluster)],
                    "top_vip_holders_by_namespace": [
                        {"cluster": c, "namespace": ns, "vips": n} for (c, ns), n in _top(per_ns)
                    ],
                }
            )
        elif r.kind == "node":
            vms: Counter[str] = Counter()
            for hs in held.values():
                for h in hs:
                    if h.owner_kind in ("node", "load-balancer"):
                        vms[f"{h.owner_kind}:{h.cluster or '?'}"] += 1
                        break
            detail["vms_by_cluster"] = dict(sorted(vms.items()))
        return used, detail

    def process_metrics(self, tbl: pa.Table) -> None:
        """Fold MetalLB / Calico pool gauges of a window table into pool histories.

        Per step the series of one (scope, pool) are summed (Calico reports allocations per node).
        """
        if not tbl.num_rows:
            return
        mask = in_set(tbl.column("metric"), POOL_METRICS)
        if not mask.any():
            return
        # the five columns first, then their rows (filtering the whole step table cost more than the rest)
        rows = tbl.select(["metric", "bucket", "mean", "pool", "scope"]).filter(pa.array(mask)).to_pylist()
        cur: dict[tuple[str, str, int], dict[str, float]] = {}
        for r in rows:
            if r["mean"] is None or not math.isfinite(r["mean"]):
                continue
            slot = cur.setdefault((r["scope"], r["pool"], int(r["bucket"])), {})
            slot[r["metric"]] = slot.get(r["metric"], 0.0) + float(r["mean"])
        for (scope, name, bucket), vals in sorted(cur.items(), key=lambda kv: kv[0][2]):
            if "metallb.addresses_in_use" in vals or "metallb.addresses_total" in vals:
                self._metric_point(
                    "metallb",
                    scope,
                    name,
                    bucket,
                    vals.get("metallb.addresses_in_use"),
                    vals.get("metallb.addresses_total"),
                )
            if "calico.ipam.allocations_in_use" in vals or "calico.ipam.ippool_size" in vals:
                in_use = vals.get("calico.ipam.allocations_in_use")
                reserved = vals.get("calico.ipam.ippool_reserved", 0.0)
                self._metric_point(
                    "calico",
                    scope,
                    name,
                    bucket,
                    None if in_use is None else in_use + reserved,
                    vals.get("calico.ipam.ippool_size"),
                )

    def _metric_point(
        self, typ: str, scope: str, name: str, bucket: int, used: float | None, size: float | None
    ) -> None:
        network = self.index.cluster_net.get(scope, scope)
        key = (network, f"{typ}:{scope}/{name}")
        pool = self.pools.get(key)
        if pool is None:
            if typ == "metallb":
                plan = self.index.by_name.get(network)
                reserve = plan.vip_reserve if plan else self.p.vip_reserve
                kind = AlertKind.VIP_POOL_EXHAUSTION
            else:
                reserve, kind = 0, AlertKind.POD_POOL_EXHAUSTION
            pool = _Pool(network, key[1], typ, kind, 0, reserve)
            self.pools[key] = pool
        if size is not None and size > 0:
            pool.size = int(size)
        if used is not None:
            t = -(-bucket // self.bucket_ms) * self.bucket_ms  # the usage history's resolution
            if pool.history and pool.history[-1][0] == t:
                pool.history.pop()
            pool.detail = {"source": f"{typ} gauges", "scope": scope, "pool_name": name}
            self._append(pool, t, used)

    def _append(self, pool: _Pool, t_ms: int, used: float) -> None:
        """Add a usage point; a large release restarts the trend (what was before no longer
        predicts what comes next — a scale-out that was released is not growth)."""
        if pool.history:
            recent = [v for ts, v in pool.history if ts >= t_ms - HOUR_MS] or [pool.history[-1][1]]
            if is_release(max(recent), used, pool.size):
                pool.history.clear()
                pool.trend_reset_at = t_ms
        pool.history.append((t_ms, used))
        self._trim(pool, t_ms)

    def _trim(self, pool: _Pool, t_ms: int) -> None:
        while pool.history and pool.history[0][0] < t_ms - self.window:
            pool.history.popleft()

    # -- forecasting -----------------------------------------------------------------------------
    def _forecast(self, pool: _Pool, now_ms: int) -> Trend | None:
        """Both estimators over the pool's history (the line is cached while the history stands)."""
        h = pool.history
        if len(h) < 2:
            return None
        key = (len(h), h[-1][0], now_ms)
        if pool.last_fit == key:
            return pool.trend
        t = np.fromiter((p[0] for p in h), np.int64, len(h))
        y = np.fromiter((p[1] for p in h), np.float64, len(h))
        same_history = pool.last_fit is not None and pool.last_fit[:2] == key[:2]
        trend = usage_trend(
            t,
            y,
            now_ms,
            confidence=self.p.confidence,
            min_span_ms=int(self.p.min_trend_span.total_seconds() * 1000),
            min_points=self.p.min_trend_points,
            line=pool.trend.theil_sen if same_history and pool.trend is not None else None,
        )
        pool.last_fit, pool.trend = key, trend
        return trend

    def _long_lived(self, pool: _Pool, now_ms: int) -> GrowthRun | None:
        """The growth run of the long-lived-address count (cached while its history stands)."""
        h = pool.long_history
        if len(h) < 2:
            return None
        key = (len(h), h[-1][0], now_ms)
        if pool.long_fit != key:
            t = np.fromiter((p[0] for p in h), np.int64, len(h))
            y = np.fromiter((p[1] for p in h), np.float64, len(h))
            pool.long_run = growth_run(
                t,
                y,
                now_ms,
                confidence=self.p.confidence,
                min_span_ms=int(self.p.min_trend_span.total_seconds() * 1000),
            )
            pool.long_fit = key
        return pool.long_run

    def evaluate(self, now_ms: int) -> list[Finding]:
        out = []
        horizon_h = self.p.horizon.total_seconds() / 3600
        for key in sorted(self.pools):
            pool = self.pools[key]
            if not pool.history or pool.size <= 0:
                continue
            t_last, used_f = pool.history[-1]
            used = round(used_f)
            free = pool.size - used
            headroom = free - pool.reserve
            below = free < pool.reserve or free <= 0
            trend = self._forecast(pool, now_ms)
            if trend is None:
                method, slope, lo, hi, rising = "none", math.nan, math.nan, math.nan, False
            else:
                method, slope, lo, hi, rising = trend.method, trend.slope_per_h, trend.low, trend.high, trend.rising
            long_run = self._long_lived(pool, now_ms)
            if long_run is not None and long_run.significant and (not rising or long_run.rate_per_h > slope):
                # the net allocation rate of addresses that outlive the churn: a leak under churn
                method, slope, lo, hi, rising = (
                    LONG_LIVED,
                    long_run.rate_per_h,
                    long_run.rate_low,
                    long_run.rate_high,
                    True,
                )
            tte = tte_lo = tte_hi = None
            if headroom > 0 and math.isfinite(slope):
                tte = _hours(headroom, slope)
                tte_lo = _hours(headroom, hi)
                tte_hi = _hours(headroom, lo) if lo > 0 else None
            soon = rising and tte is not None and tte <= horizon_h
            far = (not rising) or tte is None or tte > horizon_h * self.p.clear_horizon_factor
            was = pool.firing
            pool.firing = (below or soon) if not was else not (not below and far)
            if pool.firing and not was:
                pool.fired_at, pool.cleared_at = now_ms, None
            elif was and not pool.firing:
                pool.cleared_at = now_ms
            pool.stat = PoolStat(
                pool.network,
                pool.pool,
                pool.pool_type,
                t_last,
                pool.size,
                used,
                free,
                pool.reserve,
                slope * 24,
                lo * 24,
                hi * 24,
                tte,
                tte_lo,
                tte_hi,
                pool.firing,
                method,
            )
            # a cleared pool is still reported (inactive, final numbers) for an hour
            if not pool.firing and (pool.cleared_at is None or now_ms - pool.cleared_at > HOUR_MS):
                continue
            if self._declared(pool):
                continue  # reported by its range (see _declared)
            out.append(self._finding(pool, below, now_ms))
        return out

    def _finding(self, pool: _Pool, below: bool, now_ms: int) -> Finding:
        st = pool.stat
        assert st is not None
        plan = self.index.by_name.get(pool.network)
        what = {
            "vip": "VIP pool",
            "node": "node IP pool",
            "lb": "load-balancer range",
            "metallb": "MetalLB pool",
            "calico": "Calico IP pool",
        }[pool.pool_type]
        if st.free <= 0:
            severity = Severity.SEV0
        elif below or (st.hours_to_reserve is not None and st.hours_to_reserve <= 24):
            severity = Severity.SEV1
        else:
            severity = Severity.SEV2
        name = pool.pool if pool.pool_type not in ("vip", "node") else ""
        head = f"{what}{' ' + name if name else ''} of {pool.network}: {st.used}/{st.size} used, {st.free} free"
        if below:
            tail = f"; below the upgrade reserve of {st.reserve}"
        elif st.hours_to_reserve is not None:
            tail = (
                f"; forecast to fall below the reserve of {st.reserve} in "
                f"{_dur(st.hours_to_reserve)} ({_dur(st.hours_to_reserve_low)}–{_dur(st.hours_to_reserve_high)})"
            )
        else:
            tail = "; trend no longer forecasts exhaustion"
        hist = list(pool.history)
        estimated_from = self._estimated_from(pool, st.method, hist)
        if st.hours_to_reserve is not None and not below:
            tail += f" (net {st.slope_per_day:.1f}/day, from {estimated_from})"
        if not pool.firing:
            tail += " (cleared)"
        ev: dict[str, Any] = {
            "network": pool.network,
            "pool": pool.pool,
            "pool_type": pool.pool_type,
            "size": st.size,
            "used": st.used,
            "free": st.free,
            "reserve": st.reserve,
            "below_reserve": below,
            "trend": {
                "method": st.method,
                "rate_estimated_from": estimated_from,
                "confidence": self.p.confidence,
                "window_hours": round((hist[-1][0] - hist[0][0]) / HOUR_MS, 2) if hist else 0,
                "points": len(hist),
                "slope_per_day": st.slope_per_day,
                "slope_per_day_interval": [st.slope_per_day_low, st.slope_per_day_high],
                "theil_sen": _ts_evidence(pool.trend.theil_sen if pool.trend else None),
                "growth_run": _run_evidence(pool.trend.run if pool.trend else None),
                "long_lived": _run_evidence(pool.long_run),
                "churn_lifetime_hours": self.churn_ms / HOUR_MS,
            },
            "trend_restarted_after_release_at": iso(from_ms(pool.trend_reset_at)) if pool.trend_reset_at else None,
            "hours_to_reserve": st.hours_to_reserve,
            "hours_to_reserve_interval": [st.hours_to_reserve_low, st.hours_to_reserve_high],
            "hours_to_exhaustion": _hours(st.free, st.slope_per_day / 24) if st.free > 0 else 0.0,
            "horizon_hours": self.p.horizon.total_seconds() / 3600,
            "usage_history": [[iso(from_ms(t)), v] for t, v in hist[-12:]],
            **pool.detail,
        }
        gauge = self._gauge_pool(pool)
        if gauge is not None and gauge.history:
            ev["metallb_allocator"] = {
                "what": "this cluster's MetalLB controller's own count (blind to other clusters' allocations)",
                "addresses_in_use": gauge.history[-1][1],
                "addresses_total": gauge.size,
            }
        if plan is not None:
            ev["hciwatch_plan"] = _plan_says(pool.pool_type, st.free, plan)
            if pool.pool_type == "node":
                ev["next_upgrade_needs"] = {"node_ips": plan.node_reserve, "breakdown": plan.node_reserve_breakdown}
            elif pool.pool_type in ("vip", "lb", "metallb"):
                ev["next_upgrade_needs"] = {
                    "vips": plan.vip_reserve,
                    "why": "one more workload cluster takes an API-server VIP and a load-balancer VIP",
                }
            ev["clusters_sharing_network"] = plan.all_clusters
        if "hciwatch_plan" in ev:
            tail += f"; hciwatch plan: {ev['hciwatch_plan']['says']}"
        kind = pool.kind
        return Finding(
            kind, {"network": pool.network, "pool": pool.pool}, severity, head + tail, ev, active=pool.firing
        )

    def _estimated_from(self, pool: _Pool, method: str, hist: list[tuple[int, float]]) -> str:
        """How the net allocation rate was estimated, in words an operator can check."""
        span = (hist[-1][0] - hist[0][0]) / HOUR_MS if hist else 0.0
        if method == LONG_LIVED:
            lh = pool.long_history
            lspan = (lh[-1][0] - lh[0][0]) / HOUR_MS if lh else 0.0
            return (
                f"addresses held longer than {_dur(self.churn_ms / HOUR_MS)} (short-lived churn excluded), "
                f"their growth over the last {_dur(lspan)}"
            )
        if method == "growth-run":
            return f"the net allocations of the most-rising recent run of usage changes (window {_dur(span)})"
        if method == "theil-sen":
            return f"a Theil–Sen line through the usage of the last {_dur(span)}"
        return "no significant growth"

    def snapshot(self) -> list[PoolStat]:
        return [p.stat for _, p in sorted(self.pools.items()) if p.stat is not None]


def _plan_says(pool_type: str, free: int, plan: NetworkPlan) -> dict[str, Any]:
    """What ``hciwatch plan`` answers for the next upgrade of every cluster on this network, from the
    same rules (22H2-UPD-MGMT/22H2-UPD-WL or 23H2-UPG on the node pool; an upgrade takes no VIP, a
    new cluster takes one: 22H2-VIP-API / 23H2-CP)."""
    if pool_type == "node":
        need = plan.node_reserve
        verdict = "fits" if free >= need else "does not fit"
        return {
            "command": "hciwatch plan --upgrade all",
            "needed": need,
            "free": free,
            "verdict": verdict,
            "says": f"upgrading all clusters needs {need} node IPs, {free} free: {verdict}",
        }
    if pool_type in ("lb", "metallb"):
        # a load-balancer range serves Services only (22H2-VIP-SVC / 23H2-LB); API-server VIPs and
        # 23H2 control-plane IPs of new clusters come from the vip range
        verdict = "fits" if free >= 1 else "does not fit"
        return {
            "command": "hciwatch plan --upgrade all --add-services CLUSTER=1",
            "needed_by_upgrade": 0,
            "needed_by_new_service": 1,
            "free": free,
            "verdict_new_service": verdict,
            "says": (
                f"an upgrade takes no load-balancer IP; a new LoadBalancer Service takes 1 of {free} free: {verdict}"
            ),
        }
    if pool_type == "vip":
        verdict = "fits" if free >= 1 else "does not fit"
        return {
            "command": "hciwatch plan --upgrade all --create NEW=3",
            "needed_by_upgrade": 0,
            "needed_by_new_cluster": 1,
            "free": free,
            "verdict_new_cluster": verdict,
            "says": f"an upgrade takes no VIP; a new cluster takes 1 of {free} free: {verdict}",
        }
    return {"command": "", "says": "pod addresses are not part of an AKS upgrade plan"}


def _ts_evidence(fit: tuple[float, float, float] | None) -> dict[str, Any] | None:
    if fit is None:
        return None
    return {
        "what": "median pairwise slope over the window, Sen's interval widened for autocorrelation",
        "slope_per_day": fit[0] * 24,
        "slope_per_day_interval": [fit[1] * 24, fit[2] * 24],
        "significant": fit[1] > 0,
    }


def _run_evidence(run: GrowthRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "what": "usage changes as a fair ±1 walk; the most-rising recent stretch, reflection-principle p",
        "since": iso(from_ms(run.start_ms)),
        "last_change": iso(from_ms(run.last_ms)),
        "allocations": run.run_up,
        "releases": run.run_down,
        "net_addresses": run.growth,
        "changes_in_window": run.events,
        "p_value": run.p_value,
        "rate_per_day": run.rate_per_h * 24,
        "rate_per_day_interval": [run.rate_low * 24, run.rate_high * 24],
        "significant": run.significant,
    }


def _dur(hours: float | None) -> str:
    if hours is None:
        return "never"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"
