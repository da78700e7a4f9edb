"""A slow leak under create/delete churn (CI preview Services living 20–30 minutes) must become
significant: the net allocation rate is estimated from addresses held longer than the churn
lifetime, and the alert says so. Also: configured API-server VIPs count on top of observed holders."""

from __future__ import annotations

import numpy as np

from analytics.settings import PoolSettings
from collector.schema import Sample, from_ms, samples_table
from tests.analytics.harness import HOUR, MIN, connect, replay, settings
from tests.analytics.synth import Holder, IpWorld, add_services, lb_mac_of, populate_clusters, random_network

START = 1_767_225_600_000
DAY = 24 * HOUR


def test_slow_leak_under_churn_fires_with_the_long_lived_rate() -> None:
    rng = np.random.default_rng(42)
    net = random_network(rng, "churn", ["wl-a", "wl-b"], vip_size=40, node_size=20, management="mgmt")
    world = IpWorld(rng, START, START + 4 * DAY, poll_s=300, observers=[])
    hs = populate_clusters(world, net, services={"wl-a": 2, "wl-b": 2}, nodes={"wl-a": 2, "wl-b": 2})
    lb = lb_mac_of(hs["wl-a"])
    # CI previews: one every ~15 min, each deleted after 20-30 min
    add_services(world, net, "wl-a", 4 * 96, START, world.end_ms - HOUR, lb_mac=lb, lifetime=(20 * MIN, 30 * MIN))
    # the leak: 3 addresses a day that nobody deletes
    leaked = add_services(world, net, "wl-b", 12, START + 2 * HOUR, world.end_ms - 2 * HOUR, lb_mac=lb)
    assert len(leaked) == 12
    run = replay(
        connect(None, world.table()),
        START,
        world.end_ms,
        networks=[net],
        settings=settings(pools={"bucket": "5m"}),
        coarse=2 * HOUR,
    )
    fired = run.firing("vip_pool_exhaustion")
    assert fired, "a pool days from its reserve under a steady leak pages, churn or not"
    _t, alert = fired[0]
    trend = alert.evidence["trend"]
    assert trend["method"] == "long-lived-addresses"
    assert "held longer than" in trend["rate_estimated_from"]
    assert 1.0 <= trend["slope_per_day"] <= 6.0  # the leak is 3/day
    assert "addresses held longer than" in alert.summary
    # the alert says what `hciwatch plan` answers (VIP pool: an upgrade takes none, a new cluster one)
    assert alert.evidence["hciwatch_plan"]["verdict_new_cluster"] == "fits"
    assert "hciwatch plan: an upgrade takes no VIP" in alert.summary
    assert "hciwatch plan" in alert.runbook and "hciwatch reclaim" in alert.runbook


def test_churn_alone_never_pages() -> None:
    rng = np.random.default_rng(7)
    net = random_network(rng, "churn2", ["wl-a"], vip_size=30, node_size=20, management="mgmt")
    world = IpWorld(rng, START, START + 3 * DAY, poll_s=300, observers=[])
    hs = populate_clusters(world, net, services={"wl-a": 3}, nodes={"wl-a": 2})
    add_services(
        world, net, "wl-a", 3 * 96, START, world.end_ms, lb_mac=lb_mac_of(hs["wl-a"]), lifetime=(20 * MIN, 30 * MIN)
    )
    run = replay(connect(None, world.table()), START, world.end_ms, networks=[net], coarse=2 * HOUR)
    assert not run.firing("vip_pool_exhaustion")


def test_api_vips_count_even_when_only_other_holders_are_seen() -> None:
    """Inventory shows services and a stray NIC in the VIP pool but no API-server VIP: every configured
    cluster (management included) still holds one (rule 22H2-VIP-API) on top of what is observed."""
    rng = np.random.default_rng(3)
    net = random_network(rng, "api", ["wl-a", "wl-b"], vip_size=20, node_size=20, management="mgmt")
    world = IpWorld(rng, START, START + 2 * HOUR, poll_s=120, observers=[])
    populate_clusters(world, net, services={"wl-a": 2, "wl-b": 2}, nodes={"wl-a": 1, "wl-b": 1})
    world.holders = [h for h in world.holders if h.owner_kind != "control-plane"]
    stray = world.free[(net.name, "vip")][:3]
    world.holders += [
        Holder(ip, "nic", f"host-{k}/nic", None, net.name, START, world.end_ms) for k, ip in enumerate(stray)
    ]
    run = replay(connect(None, world.table()), START, world.end_ms, networks=[net], coarse=30 * MIN)
    stat = next(s for s in run.engine.pools.snapshot() if s.pool == "vip")  # type: ignore[union-attr]
    # observed: 4 services + 3 stray NICs = 7; unobserved API VIPs: mgmt, wl-a, wl-b = 3
    assert stat.used == 7 + 3
    assert PoolSettings().vip_reserve == 2


def test_calico_pool_is_a_pod_pool_and_reserved_addresses_count() -> None:
    """Calico IPAM gauges (allocations per node + reserved addresses, pool size): a pod pool of its own kind."""
    t = np.arange(START, START + 10 * HOUR, 60_000)
    rows = []
    for ts in t.tolist():
        per_node = 20 + int(60 * (ts - START) / (10 * HOUR))  # two nodes filling a /24 (256)
        labels = (("ippool", "default-ipv4-ippool"), ("cluster", "wl-a"))
        for node in ("n1", "n2"):
            rows.append(
                Sample(
                    ts=from_ms(ts),
                    source="calico",
                    host="kube-controllers",
                    metric="calico.ipam.allocations_in_use",
                    value=float(per_node),
                    labels=(*labels, ("node", node)),
                )
            )
        for metric, v in (("calico.ipam.ippool_size", 256.0), ("calico.ipam.ippool_reserved", 10.0)):
            rows.append(
                Sample(ts=from_ms(ts), source="calico", host="kube-controllers", metric=metric, value=v, labels=labels)
            )
    run = replay(connect(samples_table(rows)), START, START + 10 * HOUR, coarse=20 * MIN)
    assert not run.firing("node_pool_exhaustion")
    fired = run.firing("pod_pool_exhaustion")
    assert fired and fired[0][1].resource["pool"] == "calico:wl-a/default-ipv4-ippool"
    stat = next(s for s in run.engine.pools.snapshot() if s.pool_type == "calico")  # type: ignore[union-attr]
    # at the end: 2 nodes x (20 + 59) in use + 10 reserved
    assert stat.used == 2 * 79 + 10 and stat.size == 256
    assert "Calico" in fired[0][1].runbook
