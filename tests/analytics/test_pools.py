"""VIP / node pool exhaustion: trend + reserve, not level; the AKS IP plan; releases resolve."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pytest

from analytics.networks import compile_network
from analytics.settings import PoolSettings
from collector.schema import Sample, Severity, from_ms, samples_table
from tests.analytics.harness import HOUR, MIN, connect, replay, settings
from tests.analytics.synth import (
    Holder,
    IpWorld,
    Net,
    add_services,
    lb_mac_of,
    populate_clusters,
    random_mac,
    random_network,
)

START = 1_767_225_600_000


def _world(
    seed: int, *, vip_size: int, node_size: int, hours: float, services: int = 2, nodes: int = 2
) -> tuple[IpWorld, Net, dict[str, list[Holder]]]:
    rng = np.random.default_rng(seed)
    net = random_network(
        rng,
        f"net{seed}",
        [f"wl{seed}a", f"wl{seed}b"],
        vip_size=vip_size,
        node_size=node_size,
        management=f"mgmt{seed}",
    )
    world = IpWorld(rng, START, START + int(hours * HOUR), poll_s=120, observers=[])
    hs = populate_clusters(
        world, net, services={c: services for c in net.clusters}, nodes={c: nodes for c in net.clusters}
    )
    return world, net, hs


def test_ip_plan_reserves_follow_the_reference() -> None:
    net = Net("n", "10.0.0.10", "10.0.0.40", "10.0.0.50", "10.0.0.80", "10.0.0.0/24", ("w1", "w2", "w3"), "mgmt")
    p22 = compile_network(net, PoolSettings())
    assert p22.node_reserve == 2 + 5 * 3 and p22.vip_reserve == 2
    assert p22.vip.size == 31 and p22.node is not None and p22.node.size == 31
    p23 = compile_network(net, PoolSettings(ip_plan="23h2"))
    assert p23.node_reserve == 4  # one per cluster, management included
    own = Net("n", "10.0.0.10", "10.0.0.40", None, None, None, ("w1",), None, ("10.0.1.0/28",), 5, 9)
    p = compile_network(own, PoolSettings())
    assert (p.node_reserve, p.vip_reserve, p.node, p.lbs[0].size) == (9, 5, None, 16)
    with pytest.raises(ValueError, match=r"network 'n'.*not an IP"):
        compile_network(Net("n", "10.0.0.x", "10.0.0.4", None, None, None, ()), PoolSettings())


@pytest.mark.parametrize("seed", [1, 2])
def test_vip_pool_filling_up_fires_with_forecast_then_releases_resolve(seed: int) -> None:
    world, net, hs = _world(seed, vip_size=48, node_size=30, hours=16)
    a = net.clusters[0]
    # LoadBalancer Services arrive at a steady rate for 9 hours …
    growing = add_services(world, net, a, 28, START + 2 * HOUR, START + 11 * HOUR, lb_mac=lb_mac_of(hs[a]))
    # … then the team deletes most of them
    for h in growing[:20]:
        h.t1 = START + 12 * HOUR
    run = replay(connect(None, world.table()), START, world.end_ms, networks=[net], coarse=20 * MIN)
    fired = run.firing("vip_pool_exhaustion")
    assert fired, "a steadily filling pool pages before it is full"
    _t_fire, alert = fired[0]
    assert alert.resource == {"network": net.name, "pool": "vip"}
    ev = alert.evidence
    assert ev["size"] == 48 and ev["reserve"] == 2
    assert ev["trend"]["slope_per_day"] > 0 and ev["trend"]["slope_per_day_interval"][0] > 0
    lo, hi = ev["hours_to_reserve_interval"]
    assert ev["hours_to_reserve"] is not None and lo <= ev["hours_to_reserve"] <= (hi or float("inf"))
    assert ev["hours_to_reserve"] < 7 * 24
    assert ev["top_vip_holders_by_cluster"][0]["cluster"] == a
    assert ev["next_upgrade_needs"]["vips"] == 2
    assert "kubectl get svc" in alert.runbook
    resolved = run.resolved("vip_pool_exhaustion")
    assert resolved and resolved[0][0] > START + 12 * HOUR, "releasing the Services resolves it"


def test_flat_pool_at_90_percent_does_not_page() -> None:
    world, net, _hs = _world(3, vip_size=60, node_size=30, hours=14, services=24)
    a, _b = net.clusters
    # churn in steady state: Services come and go around a flat level (~90 % used, above the reserve)
    add_services(world, net, a, 34, START - 2 * HOUR, world.end_ms, lifetime=(30 * MIN, 90 * MIN))
    run = replay(connect(None, world.table()), START, world.end_ms, networks=[net], coarse=30 * MIN)
    stats = {p.pool: p for p in run.engine.pool_stats()}  # type: ignore[union-attr]
    assert stats["vip"].used / stats["vip"].size >= 0.85
    assert not run.firing(), [x.summary for _, x in run.firing()]


def test_node_pool_scale_out_then_release_is_quiet_but_below_reserve_pages() -> None:
    world, net, _hs = _world(4, vip_size=30, node_size=40, hours=12, nodes=3)
    a = net.clusters[0]
    free = world.free[(net.name, "node")]
    t0 = START + 7 * HOUR
    for k in range(6):  # scale-out by 6 node VMs for an hour, then scale back in
        world.holders.append(
            Holder(
                free.pop(),
                "node",
                f"{a}-np-x{k}",
                a,
                net.name,
                t0 + k * 5 * MIN,
                t0 + 60 * MIN,
                mac=random_mac(world.rng),
            )
        )
    run = replay(connect(None, world.table()), START, world.end_ms, networks=[net], coarse=20 * MIN)
    assert not run.firing(), [x.summary for _, x in run.firing()]

    # a small node pool whose free addresses no longer cover the next upgrade (22H2: 2 + 5 per cluster)
    world2, net2, _ = _world(5, vip_size=30, node_size=16, hours=3, nodes=3)
    run2 = replay(connect(None, world2.table()), START, world2.end_ms, networks=[net2], coarse=10 * MIN)
    fired = run2.firing("node_pool_exhaustion")
    assert fired and fired[0][1].severity is Severity.SEV1
    ev = fired[0][1].evidence
    assert ev["below_reserve"] and ev["free"] < ev["reserve"] == 12
    assert ev["next_upgrade_needs"]["breakdown"] == {
        "management_cluster_update_ips": 2,
        "workload_cluster_update_ips (2 x 5)": 10,
    }
    assert "upgrade" in fired[0][1].runbook


def test_metallb_pool_from_gauges() -> None:
    rng = np.random.default_rng(9)
    t = np.arange(START, START + 14 * HOUR, 60_000)
    used = np.minimum(64, np.floor(10 + 40 * (t - START) / (12 * HOUR) + rng.normal(0, 0.4, t.size)))
    rows = []
    for ts, u in zip(t.tolist(), used.tolist(), strict=True):
        labels = (("pool", "default-pool"), ("cluster", "edge-1"))
        rows.append(
            Sample(
                ts=_dt(ts),
                source="metallb",
                host="metallb-controller",
                metric="metallb.addresses_in_use",
                value=float(u),
                labels=labels,
            )
        )
        rows.append(
            Sample(
                ts=_dt(ts),
                source="metallb",
                host="metallb-controller",
                metric="metallb.addresses_total",
                value=64.0,
                labels=labels,
            )
        )
    tbl = samples_table(rows)
    assert isinstance(tbl, pa.Table)
    run = replay(connect(tbl), START, START + 14 * HOUR, coarse=20 * MIN)
    fired = run.firing("vip_pool_exhaustion")
    assert fired and fired[0][1].resource["pool"] == "metallb:edge-1/default-pool"
    assert fired[0][1].evidence["size"] == 64


def _dt(ms: int) -> datetime:
    return from_ms(int(ms))


def test_settings_knobs_move_the_forecast() -> None:
    """A longer horizon makes a slower-filling pool page; the pool is the same."""
    world, net, _hs = _world(6, vip_size=80, node_size=30, hours=12)
    add_services(world, net, net.clusters[0], 20, START + 1 * HOUR, START + 12 * HOUR)
    con = connect(None, world.table())
    short = replay(
        con, START, world.end_ms, networks=[net], coarse=30 * MIN, settings=settings(pools={"horizon": "6h"})
    )
    long = replay(
        con, START, world.end_ms, networks=[net], coarse=30 * MIN, settings=settings(pools={"horizon": "30d"})
    )
    assert not short.firing("vip_pool_exhaustion")
    assert long.firing("vip_pool_exhaustion")


def test_the_config_model_satisfies_the_network_protocol() -> None:
    from collector.config import NetworkSettings

    net = NetworkSettings(
        name="akshci-vnet",
        vip_pool_start="10.40.0.200",
        vip_pool_end="10.40.0.231",
        k8s_node_ip_pool_start="10.40.0.100",
        k8s_node_ip_pool_end="10.40.0.150",
        ip_address_prefix="10.40.0.0/24",
        clusters=["mgmt", "wl-a", "wl-b"],
        management_cluster="mgmt",
        lb_ranges=["10.40.1.0/28"],
    )
    plan = compile_network(net, PoolSettings())
    assert plan.all_clusters == ["mgmt", "wl-a", "wl-b"] and plan.workload_clusters == ["wl-a", "wl-b"]
    assert plan.node_reserve == 2 + 2 * 5 and plan.vip.size == 32 and plan.lbs[0].size == 16


def test_leak_after_a_long_flat_history_pages_on_the_growth_run() -> None:
    """12 quiet hours, then CI previews that nobody deletes: the straight line over the window
    stays insignificant for hours, the run of unopposed allocations does not."""
    world, net, hs = _world(7, vip_size=40, node_size=30, hours=16, services=3)
    a = net.clusters[0]
    t_leak = START + 12 * HOUR
    add_services(world, net, a, 10, t_leak, START + 15 * HOUR, lb_mac=lb_mac_of(hs[a]))
    run = replay(connect(None, world.table()), START, world.end_ms, networks=[net], coarse=10 * MIN)
    fired = run.firing("vip_pool_exhaustion")
    assert fired, "a leak of ~3 VIPs/h into a 40-address pool pages"
    t_fire, alert = fired[0]
    assert t_leak < t_fire <= START + 15 * HOUR
    trend = alert.evidence["trend"]
    assert trend["method"] == "growth-run" and trend["growth_run"]["significant"]
    assert trend["growth_run"]["releases"] == 0 and trend["growth_run"]["p_value"] <= 0.05
    assert not trend["theil_sen"]["significant"]
    lo, hi = alert.evidence["hours_to_reserve_interval"]
    assert lo is not None and lo <= alert.evidence["hours_to_reserve"] <= (hi or float("inf"))


def test_usage_is_sampled_only_where_the_inventory_was_observed() -> None:
    """Before the first poll and while every inventory source is unreachable nothing is known:
    no invented empty buckets (they would flatten every trend), and an outage is no release."""
    world, net, _hs = _world(8, vip_size=40, node_size=30, hours=7, services=6)
    tbl = world.table()
    ts = tbl.column("ts").cast(pa.int64()).to_numpy()
    outage = (ts >= START + 3 * HOUR) & (ts < START + 4 * HOUR)
    tbl = tbl.filter(pa.array(~outage))
    run = replay(
        connect(None, tbl),
        START,
        world.end_ms,
        networks=[net],
        coarse=30 * MIN,
        settings=settings(bootstrap_window="24h"),
    )
    assert run.engine is not None
    pool = run.engine.pools.pools[(net.name, "vip")]
    times = [t for t, _ in pool.history]
    assert times[0] >= START, "no usage before the first observation"
    assert not [t for t in times if START + 3 * HOUR + 10 * MIN < t <= START + 4 * HOUR]
    assert pool.trend_reset_at is None, "an outage of the inventory is not a release"
    assert len({v for _, v in pool.history}) == 1
