"""IP pool overlap: configured ranges that collide and addresses sitting in the wrong pool."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.networks import compile_networks
from analytics.overlap import config_overlaps
from analytics.settings import PoolSettings
from collector.schema import Severity
from tests.analytics.harness import HOUR, MIN, connect, replay
from tests.analytics.synth import Holder, IpWorld, Net, populate_clusters, random_mac, random_network

START = 1_767_225_600_000


def test_configured_ranges_that_overlap_within_and_across_networks() -> None:
    a = Net(
        "net-a",
        "10.1.0.10",
        "10.1.0.60",
        "10.1.0.61",
        "10.1.0.99",
        "10.1.0.0/24",
        ("c1",),
        lb_ranges=("10.1.0.50-10.1.0.70",),
    )
    b = Net("net-b", "10.1.0.90", "10.1.0.120", None, None, None, ("c2",), lb_ranges=("10.9.0.0/28",))
    found = config_overlaps(compile_networks([a, b], PoolSettings()))
    pairs = {(f.resource["pool"], f.resource["other_network"], f.resource["other_pool"]): f for f in found}
    assert set(pairs) == {
        ("lb:10.1.0.50-10.1.0.70", "net-a", "node"),
        ("lb:10.1.0.50-10.1.0.70", "net-a", "vip"),
        ("node", "net-b", "vip"),
    }
    vip_lb = pairs[("lb:10.1.0.50-10.1.0.70", "net-a", "vip")]
    assert vip_lb.evidence["shared"] == "10.1.0.50-10.1.0.60" and vip_lb.evidence["shared_addresses"] == 11
    assert all(f.severity is Severity.SEV2 for f in found)
    clean = Net("n", "10.2.0.10", "10.2.0.20", "10.2.0.30", "10.2.0.40", None, ("c",))
    assert config_overlaps(compile_networks([clean], PoolSettings())) == []


def test_addresses_in_the_wrong_pool_are_reported_while_seen() -> None:
    rng = np.random.default_rng(12)
    net = random_network(rng, "cn", ["w1"], vip_size=20, node_size=20)
    world = IpWorld(rng, START, START + 3 * HOUR, poll_s=60)
    hs = populate_clusters(world, net, services={"w1": 3}, nodes={"w1": 2})
    node_free = world.free[(net.name, "node")]
    vip_free = world.free[(net.name, "vip")]
    t0 = START + 1 * HOUR
    misplaced_svc = node_free.pop()
    host_in_vip = vip_free.pop()
    world.holders += [
        Holder(misplaced_svc, "service", "web/static-ip", "w1", net.name, t0, t0 + 30 * MIN),
        Holder(host_in_vip, "nic", "azl-n3", None, None, t0, world.end_ms, mac=random_mac(rng), source="windows"),
        Holder("10.99.0.1", "node", "w1-np-x", "w1", net.name, t0, world.end_ms),  # outside the node pool
    ]
    run = replay(
        connect(None, world.table()), START, world.end_ms, networks=[net], fine=[(t0, t0 + 15 * MIN)], step=3 * MIN
    )
    fired = {x.resource["ip"]: x for _, x in run.firing("ip_pool_overlap")}
    assert set(fired) == {misplaced_svc, host_in_vip, "10.99.0.1"}
    assert "node pool" in fired[misplaced_svc].evidence["problem"]
    assert fired[host_in_vip].evidence["problem"].startswith("a host address inside")
    assert fired["10.99.0.1"].evidence["problem"] == "outside the node pool"
    assert all(x.severity is Severity.SEV3 for x in fired.values())
    assert {x.resource["ip"] for _, x in run.resolved("ip_pool_overlap")} == {misplaced_svc}
    assert not run.firing("duplicate_ip")
    del hs


def test_flagged_holdings_follow_the_holdings_and_the_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The list of holdings with a verdict is what walking every holding gives, and is rebuilt
    when a holding is added or forgotten, the network index changes or the configuration is
    refreshed (a declared MetalLB range) — not at a pass where none of these moved."""
    from typing import Any

    from analytics.networks import NetworkIndex
    from analytics.observations import Holding, ObservationTracker
    from analytics.overlap import OverlapDetector
    from tests.analytics.harness import settings

    rng = np.random.default_rng(5)
    net = random_network(rng, "cn", ["w1"], vip_size=20, node_size=20)
    s = settings()
    plans = compile_networks([net], s.pools)
    index = NetworkIndex(plans)
    det = OverlapDetector(s, plans, index)
    obs = ObservationTracker(s)
    calls = [0]
    verdict = det._verdict

    def counted(h: Holding) -> Any:
        calls[0] += 1
        return verdict(h)

    monkeypatch.setattr(det, "_verdict", counted)

    def want() -> list[tuple[Holding, Any]]:
        return [(h, v) for h in obs.holdings.values() if (v := verdict(h)) is not None]

    obs._hold("10.99.0.1", "node", "w1-np-x", "w1", net.name, START, START, 1, [], ["k8s"])  # outside the node pool
    obs._hold("10.99.0.2", "pod", "p", "w1", net.name, START, START, 1, [], ["k8s"])  # no verdict for a pod
    assert det._flagged(obs) == want() and len(want()) == 1
    made = calls[0]
    assert det._flagged(obs) is det._flagged(obs) and calls[0] == made, "nothing moved: kept"
    obs._hold("10.99.0.3", "node", "w1-np-y", "w1", net.name, START, START, 1, [], ["k8s"])  # epoch moves
    assert det._flagged(obs) == want() and len(want()) == 2
    obs.prune(START + 10 * 24 * HOUR)  # every holding forgotten
    assert det._flagged(obs) == [] == want()
    obs._hold("10.99.0.1", "node", "w1-np-x", "w1", net.name, START, START, 1, [], ["k8s"])
    kept = det._flagged(obs)
    index.invalidate()
    assert det._flagged(obs) is not kept and det._flagged(obs) == want()
    kept = det._flagged(obs)
    det.refresh_config()
    assert det._flagged(obs) is not kept and det._flagged(obs) == want()
    # the findings only name flagged holdings seen within the TTL
    assert [f.resource["ip"] for f in det.evaluate(obs, START + MIN)] == ["10.99.0.1"]
    assert [f.active for f in det.evaluate(obs, START + det.ttl + MIN)] == [False]
