"""AKS Arc (23H2+) networks: a logical network's IP pool, per-cluster control-plane IPs and MetalLB pools
in the same subnet — the conflict checking Microsoft says the MetalLB extension does not do."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
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


def _samples(rows: list[tuple[int, str, dict[str, str], float]]) -> pa.Table:
    from collector.schema import SAMPLES_SCHEMA, TS_TYPE

    return pa.table(
        {
            "ts": pa.array([r[0] for r in rows], pa.int64()).cast(TS_TYPE),
            "source": pa.array(["k8s" if r[1].startswith("k8s.") else "metallb" for r in rows]).dictionary_encode(),
            "host": pa.array([r[2]["cluster"] for r in rows]).dictionary_encode(),
            "metric": pa.array([r[1] for r in rows]).dictionary_encode(),
            "labels": pa.array([list(r[2].items()) for r in rows], pa.map_(pa.string(), pa.string())),
            "value": pa.array([r[3] for r in rows], pa.float64()),
        },
        schema=SAMPLES_SCHEMA,
    )


def test_metallb_ranges_declared_by_crds_join_the_overlap_and_pool_checks() -> None:
    """arc-b's pool exists only in its IPAddressPool CRD (not in the config): its overlap with arc-a's
    configured pool is found once the inventory lists it; arc-a's pool listed again under another
    spelling is the same pool (no overlap with itself, one range); the MetalLB allocator gauges of a
    declared pool report through the range, as its evidence (no second alert for one pool)."""
    cfg = {**ARC, "control_plane_ips": {"arc-a": "10.50.0.10", "arc-b": "10.50.0.11"}}
    cfg["metallb_pools"] = [{"cluster": "arc-a", "name": "lb-a", "addresses": ["10.50.0.200-10.50.0.207"]}]
    net = NetworkSettings.model_validate(cfg)
    rows: list[tuple[int, str, dict[str, str], float]] = []
    for t in range(START + MIN, START + 2 * HOUR, 5 * MIN):
        crd = {"network": "lnet-arc", "namespace": "kube-system", "auto_assign": "true", "avoid_buggy_ips": "false"}
        rows.append(
            (
                t,
                "k8s.metallb_pool_range_info",
                {**crd, "cluster": "arc-a", "pool": "lb-a", "addresses": "10.50.0.200/29"},
                8.0,
            )
        )
        rows.append(
            (
                t,
                "k8s.metallb_pool_range_info",
                {**crd, "cluster": "arc-b", "pool": "lb-b", "addresses": "10.50.0.204-10.50.0.219"},
                16.0,
            )
        )
        gauge = {"cluster": "arc-a", "network": "lnet-arc", "pool": "lb-a"}
        rows.append((t, "metallb.addresses_in_use", gauge, 7.0))  # 1 free < vip_reserve 2: below reserve
        rows.append((t, "metallb.addresses_total", gauge, 8.0))
    rng = np.random.default_rng(3)
    world = IpWorld(rng, START, START + 2 * HOUR, poll_s=60, observers=["host-1"])
    world.holders += [
        Holder(f"10.50.0.{200 + i}", "service", f"web/s{i}", "arc-a", "lnet-arc", START, world.end_ms) for i in range(7)
    ]
    run = replay(
        connect(_samples(rows), world.table()),
        START,
        START + 2 * HOUR,
        networks=[net],
        settings=settings(pools={"ip_plan": "23h2"}),
        coarse=10 * MIN,
    )
    assert run.engine is not None
    plan = run.engine.plans[0]
    assert sorted(r.pool for r in plan.lbs) == [
        "lb:arc-a/lb-a:10.50.0.200-10.50.0.207",
        "lb:arc-b/lb-b:10.50.0.204-10.50.0.219",
    ]
    config = [a for _t, a in run.firing("ip_pool_overlap") if "other_pool" in a.resource]
    assert {(a.resource["pool"], a.resource["other_pool"]) for a in config} == {
        ("lb:arc-a/lb-a:10.50.0.200-10.50.0.207", "lb:arc-b/lb-b:10.50.0.204-10.50.0.219")
    }
    pools = {a.resource["pool"]: a for _t, a in run.firing("vip_pool_exhaustion")}
    assert set(pools) == {"lb:arc-a/lb-a:10.50.0.200-10.50.0.207"}  # not also metallb:arc-a/lb-a
    ev = pools["lb:arc-a/lb-a:10.50.0.200-10.50.0.207"].evidence
    assert (ev["used"], ev["metallb_allocator"]["addresses_in_use"], ev["metallb_allocator"]["addresses_total"]) == (
        7,
        7.0,
        8,
    )


def test_plan_places_new_services_in_auto_assign_pools_only() -> None:
    """A MetalLB pool with autoAssign false (declared by its CRD) only serves Services that ask for an
    address in it: `plan --add-services` counts against the cluster's auto-assign pool (23H2-LB)."""
    from analytics.networks import declare_metallb_range

    [plan] = compile_networks([NetworkSettings.model_validate(ARC)], PoolSettings(ip_plan="23h2"))
    manual = declare_metallb_range(plan, "arc-b", "pinned", "10.50.0.232/29", auto_assign=False)
    assert manual is not None and manual.pool in plan.lb_manual
    # the same pool listed again under the configured spelling is not a second range
    assert declare_metallb_range(plan, "arc-b", "lb-b", "10.50.0.215-10.50.0.230") is None
    pools = {
        ("lnet-arc", r.pool): PoolNow(
            "lnet-arc", r.pool, r.kind, r.size, 0 if r is manual else 12, 2, math.nan, "none", START
        )
        for r in plan.ranges
    }
    res = evaluate_plan(operations_from_flags(add_services=["arc-b=2"]), [plan], pools, ip_plan="23h2")
    [lb] = res.pools
    # lb-b: 16 addresses, 12 used -> 4 free -> 2 after (vip_reserve 2: fits); `pinned` (8 free) is not used
    assert lb.pool == "lb:arc-b/lb-b:10.50.0.215-10.50.0.230" and (lb.needed, lb.free_after) == (2, 2)


def test_a_manual_metallb_range_keeps_no_reserve() -> None:
    """autoAssign false: MetalLB never allocates from the range unasked, so 3 of 4 held (by the other
    cluster's Services in the overlap) is not 'below reserve'; full is still an alert."""
    from analytics.ip_pools import PoolDetector
    from analytics.networks import NetworkIndex, declare_metallb_range

    [plan] = compile_networks([NetworkSettings.model_validate(ARC)], PoolSettings(ip_plan="23h2"))
    s = settings(pools={"ip_plan": "23h2"})
    det = PoolDetector(s, [plan], NetworkIndex([plan]))
    manual = declare_metallb_range(plan, "arc-b", "pinned", "10.50.0.200-10.50.0.203", auto_assign=False)
    assert manual is not None
    det.add_range(plan, manual)
    pool = det.pools[("lnet-arc", manual.pool)]
    assert pool.reserve == 0
    for i, used in enumerate((3.0, 3.0, 3.0)):
        det._append(pool, START + i * 5 * MIN, used)
    assert not det.evaluate(START + 15 * MIN)
    det._append(pool, START + 20 * MIN, 4.0)
    [f] = det.evaluate(START + 20 * MIN)
    assert f.evidence["free"] == 0 and f.evidence["reserve"] == 0
