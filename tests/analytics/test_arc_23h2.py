"""AKS Arc (23H2+) networks: a logical network's IP pool, per-cluster control-plane IPs and MetalLB pools
in the same subnet — the conflict checking Microsoft says the MetalLB extension does not do."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from analytics.networks import compile_networks
from analytics.overlap import config_overlaps
from analytics.plan import PoolNow, Verdict, evaluate_plan, operations_from_flags
from analytics.settings import PoolSettings
from collector.config import NetworkSettings
from tests.analytics.harness import HOUR, MIN, connect, replay, settings
from tests.analytics.synth import Holder, IpWorld

START = 1_767_225_600_000
ARC = {
    "name": "lnet-arc",
    "vip_pool_start": "10.50.0.10",  # control-plane IPs live here (outside the IP pool)
    "vip_pool_end": "10.50.0.19",
    "k8s_node_ip_pool_start": "10.50.0.100",  # the Arc VM logical network's IP pool
    "k8s_node_ip_pool_end": "10.50.0.199",
    "ip_address_prefix": "10.50.0.0/24",
    "clusters": ["arc-a", "arc-b"],
    "control_plane_ips": {"arc-a": "10.50.0.10", "arc-b": "10.50.0.150"},  # arc-b's inside the IP pool
    "metallb_pools": [
        {"cluster": "arc-a", "name": "lb-a", "addresses": ["10.50.0.200-10.50.0.220"]},
        {"cluster": "arc-b", "name": "lb-b", "addresses": ["10.50.0.215-10.50.0.230"]},
    ],
}


def test_config_conflicts_between_metallb_pools_control_plane_ips_and_the_ip_pool() -> None:
    plans = compile_networks([NetworkSettings.model_validate(ARC)], PoolSettings(ip_plan="23h2"))
    found = config_overlaps(plans)
    pairs = {(f.resource["pool"], f.resource["other_pool"]): f.evidence for f in found}
    assert set(pairs) == {
        ("lb:arc-a/lb-a:10.50.0.200-10.50.0.220", "lb:arc-b/lb-b:10.50.0.215-10.50.0.230"),
        ("control-plane:arc-b", "node"),
    }
    assert (
        pairs[("lb:arc-a/lb-a:10.50.0.200-10.50.0.220", "lb:arc-b/lb-b:10.50.0.215-10.50.0.230")]["shared_addresses"]
        == 6
    )
    # 23H2-UPG: 1 upgrade IP per cluster
    assert plans[0].node_reserve == 2


def test_bad_arc_config_is_rejected_with_the_key() -> None:
    with pytest.raises(ValidationError, match=r"'arc-z'.*is not in clusters"):
        NetworkSettings.model_validate({**ARC, "control_plane_ips": {"arc-z": "10.50.0.11"}})
    with pytest.raises(ValidationError, match=r"control_plane_ips\.arc-a: not an IP address"):
        NetworkSettings.model_validate({**ARC, "control_plane_ips": {"arc-a": "10.50.0.x"}})


def test_observed_conflicts_metallb_duplicate_and_control_plane_ip() -> None:
    rng = np.random.default_rng(5)
    net = NetworkSettings.model_validate(ARC)
    world = IpWorld(rng, START, START + 2 * HOUR, poll_s=60, observers=["host-1"])
    end = world.end_ms
    world.holders += [
        Holder("10.50.0.10", "control-plane", "arc-a/apiserver", "arc-a", "lnet-arc", START, end),
        Holder("10.50.0.101", "node", "arc-a-cp", "arc-a", "lnet-arc", START, end, mac="00:15:5d:00:00:01"),
        Holder("10.50.0.102", "node", "arc-b-cp", "arc-b", "lnet-arc", START, end, mac="00:15:5d:00:00:02"),
        # the overlapping MetalLB pools hand 10.50.0.216 to a Service in each cluster
        Holder(
            "10.50.0.216", "service", "web/a", "arc-a", "lnet-arc", START + 30 * MIN, end, arp_mac="00:15:5d:00:00:01"
        ),
        Holder(
            "10.50.0.216", "service", "web/b", "arc-b", "lnet-arc", START + 40 * MIN, end, arp_mac="00:15:5d:00:00:02"
        ),
        # arc-b's Service inside arc-a's pool only
        Holder("10.50.0.205", "service", "shop/api", "arc-b", "lnet-arc", START + 20 * MIN, end),
        # a VM on arc-a's control-plane IP
        Holder("10.50.0.10", "node", "arc-a-np-3", "arc-a", "lnet-arc", START + 60 * MIN, end, mac="00:15:5d:00:00:03"),
    ]
    run = replay(
        connect(None, world.table()),
        START,
        end,
        networks=[net],
        settings=settings(pools={"ip_plan": "23h2"}),
        coarse=10 * MIN,
    )
    dups = run.firing("duplicate_ip")
    assert any(a.resource.get("ip") == "10.50.0.216" for _t, a in dups)
    observed = {a.resource.get("ip"): a for _t, a in run.firing("ip_pool_overlap") if "ip" in a.resource}
    assert "inside the MetalLB pool of cluster arc-a, not its own" in observed["10.50.0.205"].summary
    assert "holds 10.50.0.10, the configured control-plane IP of cluster arc-a" in observed["10.50.0.10"].summary


def test_plan_uses_the_clusters_own_metallb_pool() -> None:
    plans = compile_networks([NetworkSettings.model_validate(ARC)], PoolSettings(ip_plan="23h2"))
    plan = plans[0]
    pools = {
        ("lnet-arc", r.pool): PoolNow("lnet-arc", r.pool, r.kind, r.size, 3, 2, math.nan, "none", START)
        for r in plan.ranges
    }
    res = evaluate_plan(operations_from_flags(add_services=["arc-b=14"]), plans, pools, ip_plan="23h2")
    [lb] = res.pools
    # arc-b's pool 10.50.0.215-230 = 16 addresses, 3 used -> 13 free; 14 services (23H2-LB) do not fit
    assert lb.pool == "lb:arc-b/lb-b:10.50.0.215-10.50.0.230"
    assert (lb.needed, lb.free_after, lb.verdict) == (14, -1, Verdict.DOES_NOT_FIT)
