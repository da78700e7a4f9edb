"""The live state ``hciwatch plan`` judges against, read from a data directory.

* **used now**: the distinct addresses held in each configured range during the last
  ``allocation_ttl`` before the newest inventory row (the pool detector's holdings: every
  non-neighbour, non-pod observation), plus the API-server VIPs the IP plan says exist
  (:mod:`analytics.pool_accounting`, rule ``22H2-VIP-API``);
* **trend**: the ``pool_usage`` history over the trailing ``trend_window``, restarted after the
  last release (:func:`analytics.ip_pools.trend_start`) and judged by the detector's own
  :func:`analytics.trend.usage_trend`; only a *significant* rise sets "until when";
* **holders**: every holder of every pool address (kind, owner, cluster, first and last seen) for
  ``hciwatch reclaim`` and the plan's evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from analytics.ip_pools import trend_start
from analytics.networks import NetworkIndex, NetworkPlan, compile_networks, declare_metallb_range
from analytics.plan import Operation, PlanResult, PoolNow, evaluate_plan
from analytics.pool_accounting import in_range, inferred_lb_vms, node_pool_wire_only, vip_range_used
from analytics.settings import PoolSettings
from analytics.trend import usage_trend
from collector.schema import from_ms
from hciwatch.report.source import connect

HOLDERS_SQL = """
SELECT ip, CAST(owner_kind AS VARCHAR) AS owner_kind, owner, CAST(cluster AS VARCHAR) AS cluster,
       epoch_ms(min(ts)) AS first_ms, epoch_ms(max(ts)) AS last_ms, count(*) AS sightings
FROM ip_observations
WHERE CAST(owner_kind AS VARCHAR) NOT IN ('neighbor', 'pod')
GROUP BY ALL
"""


@dataclass(frozen=True, slots=True)
class Holder:
    """One owner's hold on one address over the whole stored history."""

    ip: str
    owner_kind: str
    owner: str
    cluster: str | None
    first_ms: int
    last_ms: int
    sightings: int


@dataclass(frozen=True, slots=True)
class SiteState:
    plans: list[NetworkPlan]
    pools: dict[tuple[str, str], PoolNow]
    holders: dict[tuple[str, str], dict[str, list[Holder]]]  # (network, pool) → ip → current holders
    all_holders: list[Holder]
    now_ms: int
    details: dict[tuple[str, str], dict[str, Any]]
    lb_vms: dict[tuple[str, str], dict[str, str]]  # node pool → address → who (seen on the wire, not inventoried)


DECLARED_SQL = """
SELECT DISTINCT labels['cluster'], labels['network'], labels['pool'], labels['addresses'], labels['auto_assign']
FROM samples WHERE metric = 'k8s.metallb_pool_range_info'
"""


def _declare_stored_ranges(con: Any, plans: list[NetworkPlan]) -> None:
    """The MetalLB ranges the clusters' IPAddressPool CRDs declared (as the engine adds them live)."""
    by_name = {p.name: p for p in plans}
    cluster_net = {c: p.name for p in plans for c in p.all_clusters}
    for cluster, network, pool, addresses, auto in sorted(con.execute(DECLARED_SQL).fetchall(), key=str):
        plan = by_name.get(network or cluster_net.get(cluster or "", ""))
        if plan is None or not cluster or not pool or not addresses:
            continue
        try:
            declare_metallb_range(plan, str(cluster), str(pool), str(addresses), auto_assign=auto != "false")
        except ValueError:
            continue


def load_state(data_dir: Path, networks: Any, settings: PoolSettings) -> SiteState:
    """Read holders and usage history; raises ``ValueError`` when the data dir holds no inventory."""
    plans = compile_networks(networks, settings)
    ttl_ms = int(settings.allocation_ttl.total_seconds() * 1000)
    con = connect(Path(data_dir))
    try:
        _declare_stored_ranges(con, plans)
    except Exception:
        con.close()
        raise
    index = NetworkIndex(plans)
    try:
        rows = con.execute(HOLDERS_SQL).fetchall()
        holders = [Holder(str(r[0]), str(r[1]), str(r[2]), r[3], int(r[4]), int(r[5]), int(r[6])) for r in rows]
        if not holders:
            raise ValueError(f"{data_dir}: no inventory observations stored (nothing to plan against)")
        now_ms = max(h.last_ms for h in holders if h.owner_kind != "event")
        window_start = from_ms(now_ms - int(settings.trend_window.total_seconds() * 1000))
        neighbor_mac = {
            str(ip): (str(mac), int(ts))
            for ip, mac, ts in con.execute(
                "SELECT ip, arg_max(mac, ts), epoch_ms(max(ts)) FROM ip_observations "
                "WHERE owner_kind = 'neighbor' AND mac IS NOT NULL AND ts > $since GROUP BY ip",
                {"since": from_ms(now_ms - ttl_ms)},
            ).fetchall()
        }
        hist = con.execute(
            "SELECT network, pool, epoch_ms(bucket) AS t, max(used) FROM pool_usage "
            "WHERE bucket >= $start AND network IS NOT NULL GROUP BY ALL ORDER BY network, pool, t",
            {"start": window_start},
        ).fetchall()
    finally:
        con.close()
    history: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for net, pool, t, used in hist:
        history.setdefault((str(net), str(pool)), []).append((int(t), float(used)))

    in_pool: dict[tuple[str, str], dict[str, list[Holder]]] = {(p.name, r.pool): {} for p in plans for r in p.ranges}
    for h in holders:
        if h.owner_kind == "event" or h.last_ms <= now_ms - ttl_ms:
            continue
        for r in index.lookup(h.ip)[1]:
            in_pool[(r.network, r.pool)].setdefault(h.ip, []).append(h)

    pools: dict[tuple[str, str], PoolNow] = {}
    details: dict[tuple[str, str], dict[str, Any]] = {}
    lb_vms: dict[tuple[str, str], dict[str, str]] = {}
    for plan in plans:
        inferred = inferred_lb_vms(in_pool[(plan.name, "vip")], neighbor_mac, now_ms, ttl_ms)
        for r in plan.ranges:
            key = (plan.name, r.pool)
            held = in_pool[key]
            if r.kind == "vip":
                used, missing = vip_range_used(plan.all_clusters, held)  # rule 22H2-VIP-API
            else:
                used, missing = len(held), []
            if r.kind == "node":  # rule 22H2-LB: HAProxy VMs Kubernetes does not list, found via ARP
                lb_vms[key] = node_pool_wire_only(
                    partial(in_range, r, index),
                    held,
                    neighbor_mac,
                    inferred,
                    now_ms,
                    ttl_ms,
                )
                used += len(lb_vms[key])
            reserve = plan.node_reserve if r.kind == "node" else plan.vip_reserve  # rule RESERVE
            if r.pool in plan.lb_manual:
                reserve = 0  # MetalLB autoAssign false: nothing draws on it unasked (as the pool detector)
            slope, method = _trend(history.get(key, []), r.size, now_ms, settings)
            pools[key] = PoolNow(plan.name, r.pool, r.kind, r.size, used, reserve, slope, method, now_ms)
            details[key] = {"observed_addresses": len(held), "api_server_vips_not_observed": missing}
    return SiteState(plans, pools, in_pool, holders, now_ms, details, lb_vms)


def _trend(points: list[tuple[int, float]], size: int, now_ms: int, p: PoolSettings) -> tuple[float, str]:
    """Significant growth rate (addresses/h) of a usage history, or NaN."""
    if len(points) < 2:
        return math.nan, "none"
    t = np.array([x[0] for x in points], np.int64)
    y = np.array([x[1] for x in points], np.float64)
    start = trend_start(t, y, float(size))
    t, y = t[start:], y[start:]
    if t.size < 2:
        return math.nan, "none"
    tr = usage_trend(
        t,
        y,
        now_ms,
        confidence=p.confidence,
        min_span_ms=int(p.min_trend_span.total_seconds() * 1000),
        min_points=p.min_trend_points,
    )
    if not tr.rising or not math.isfinite(tr.slope_per_h):
        return math.nan, "none"
    return tr.slope_per_h, tr.method


def run_plan(data_dir: Path, networks: Any, settings: PoolSettings, ops: list[Operation]) -> PlanResult:
    """Load the state and judge the operations (raises ``PlanError``/``ValueError`` on bad input)."""
    state = load_state(data_dir, networks, settings)
    return evaluate_plan(
        ops,
        state.plans,
        state.pools,
        ip_plan=settings.ip_plan,
        management_update_ips=settings.management_update_ips,
        workload_update_ips=settings.workload_update_ips,
        arc_upgrade_ips_per_cluster=settings.arc_upgrade_ips_per_cluster,
    )
