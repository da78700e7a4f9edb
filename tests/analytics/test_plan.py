"""Capacity preflight arithmetic: every expected number is worked out by hand from the IP-plan rules
(``analytics/ip_plan_rules.md``, rule ids in the comments)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest

from analytics.networks import NetworkPlan, compile_network
from analytics.plan import (
    Operation,
    PlanError,
    PlanResult,
    PoolNow,
    PoolVerdict,
    Verdict,
    evaluate_plan,
    load_plan_file,
    operations_from_flags,
)
from analytics.settings import PoolSettings
from tests.analytics.synth import Net

HOUR_MS = 3_600_000
NOW = 1_767_225_600_000
# VIP pool .10-.40 (31), node pool .50-.80 (31), one management + two workload clusters
NET = Net("n", "10.0.0.10", "10.0.0.40", "10.0.0.50", "10.0.0.80", "10.0.0.0/24", ("mgmt", "w1", "w2"), "mgmt")


Pools = dict[tuple[str, str], PoolNow]


def _state(
    ip_plan: Literal["22h2", "23h2"],
    *,
    node_used: int,
    vip_used: int,
    slope: float = math.nan,
    lbs: tuple[str, ...] = (),
) -> tuple[NetworkPlan, Pools]:
    plan = compile_network(replace(NET, lb_ranges=lbs), PoolSettings(ip_plan=ip_plan))
    pools = {
        ("n", "node"): PoolNow("n", "node", "node", 31, node_used, plan.node_reserve, slope, "theil-sen", NOW),
        ("n", "vip"): PoolNow("n", "vip", "vip", 31, vip_used, plan.vip_reserve, math.nan, "none", NOW),
    }
    for r in plan.lbs:
        pools[("n", r.pool)] = PoolNow("n", r.pool, "lb", r.size, 0, plan.vip_reserve, math.nan, "none", NOW)
    return plan, pools


def _run(
    plan: NetworkPlan, pools: Pools, ops: list[Operation], ip_plan: str = "22h2"
) -> tuple[PlanResult, dict[str, PoolVerdict]]:
    res = evaluate_plan(ops, [plan], pools, ip_plan=ip_plan)
    return res, {p.pool: p for p in res.pools}


def test_upgrade_all_22h2_needs_the_update_ips_and_spends_the_reserve() -> None:
    plan, pools = _state("22h2", node_used=10, vip_used=8)
    # reserve = 2 (22H2-UPD-MGMT) + 2 x 5 (22H2-UPD-WL) = 12
    assert plan.node_reserve == 12
    res, by = _run(plan, pools, operations_from_flags(upgrade=["all"]))
    node = by["node"]
    assert node.needed == 12  # 2 + 5 + 5
    assert (node.free_now, node.free_after, node.reserve_after) == (21, 9, 0)
    assert node.verdict is Verdict.FITS and res.worst is Verdict.FITS
    assert {w["rule"] for w in node.why} == {"22H2-UPD-MGMT", "22H2-UPD-WL", "RESERVE"}
    assert "vip" not in by  # an upgrade takes no VIPs (22H2-VIP-API/SVC are per cluster/service, unchanged)


def test_upgrade_named_cluster_leaves_the_others_reserve() -> None:
    plan, pools = _state("22h2", node_used=15, vip_used=8)
    _res, by = _run(plan, pools, operations_from_flags(upgrade=["w1"]))
    node = by["node"]
    # needs 5 (22H2-UPD-WL); free 31-15 = 16 -> 11; reserve left 12-5 = 7 -> fits
    assert (node.needed, node.free_after, node.reserve_after, node.verdict) == (5, 11, 7, Verdict.FITS)


def test_upgrade_that_does_not_fit_and_one_below_reserve() -> None:
    plan, pools = _state("22h2", node_used=22, vip_used=8)
    _res, by = _run(plan, pools, operations_from_flags(upgrade=["all"]))
    # free 9 < 12 needed -> does not fit
    assert (by["node"].free_after, by["node"].verdict) == (-3, Verdict.DOES_NOT_FIT)
    _res, by = _run(plan, pools, operations_from_flags(scale=["w1=+2"]))
    # 2 node VMs (22H2-NODE): free 9 -> 7, reserve stays 12 -> fits but the next upgrade will not
    assert (by["node"].needed, by["node"].free_after, by["node"].verdict) == (2, 7, Verdict.BELOW_RESERVE)
    assert by["node"].headroom_after == -5


def test_create_cluster_22h2_takes_nodes_lb_vm_api_vip_and_grows_the_reserve() -> None:
    plan, pools = _state("22h2", node_used=10, vip_used=8)
    res, by = _run(plan, pools, operations_from_flags(create=["w3=4"]))
    # node pool: 4 node VMs (22H2-NODE) + 1 HAProxy VM (22H2-LB) = 5; reserve 12 + 5 (22H2-UPD-WL) = 17
    assert (by["node"].needed, by["node"].free_after, by["node"].reserve_after) == (5, 16, 17)
    assert by["node"].verdict is Verdict.BELOW_RESERVE
    # VIP pool: 1 API-server VIP (22H2-VIP-API); 23 free -> 22, vip_reserve 2
    assert (by["vip"].needed, by["vip"].free_after, by["vip"].reserve_after) == (1, 22, 2)
    assert res.worst is Verdict.BELOW_RESERVE


def test_add_services_takes_vips_and_trend_says_until_when() -> None:
    plan, pools = _state("22h2", node_used=10, vip_used=8, slope=0.5)
    _res, by = _run(plan, pools, operations_from_flags(add_services=["w2=5"]))
    vip = by["vip"]
    assert (vip.needed, vip.free_after, vip.verdict) == (5, 18, Verdict.FITS)  # 22H2-VIP-SVC
    assert vip.fits_until_ms is None  # the VIP pool is not growing
    plan, pools = _state("22h2", node_used=10, vip_used=8, slope=0.5)
    _res, by = _run(plan, pools, operations_from_flags(scale=["w2=3"]))
    node = by["node"]
    # 21 free - 3 = 18; growing 0.5/h: still fits for 18 / 0.5 = 36 h, above the reserve for (18-12)/0.5 = 12 h
    assert node.fits_until_ms == NOW + 36 * HOUR_MS
    assert node.reserve_until_ms == NOW + 12 * HOUR_MS


def test_23h2_rules_one_upgrade_ip_per_cluster_and_metallb_ranges() -> None:
    plan, pools = _state("23h2", node_used=10, vip_used=3, lbs=("10.0.0.100-10.0.0.107",))
    assert plan.node_reserve == 3  # 23H2-UPG: 1 per cluster, management included
    _res, by = _run(plan, pools, operations_from_flags(site_update=True), "23h2")
    assert (by["node"].needed, by["node"].free_after, by["node"].reserve_after) == (3, 18, 0)
    _res, by = _run(plan, pools, operations_from_flags(create=["w3=2"], add_services=["w1=9"]), "23h2")
    # 2 node VMs (23H2-NODE), reserve +1 (23H2-UPG); control-plane IP from the vip range (23H2-CP)
    assert (by["node"].needed, by["node"].reserve_after) == (2, 4)
    assert by["vip"].needed == 1 and by["vip"].why[0]["rule"] == "23H2-CP"
    lb = by["lb:10.0.0.100-10.0.0.107"]
    assert (lb.needed, lb.free_after, lb.verdict) == (9, -1, Verdict.DOES_NOT_FIT)  # 23H2-LB: 8 addresses
    assert lb.why[0]["rule"] == "23H2-LB"


def test_bad_plans_say_what_is_wrong(tmp_path: Path) -> None:
    plan, pools = _state("22h2", node_used=10, vip_used=8)
    with pytest.raises(PlanError, match=r"unknown cluster 'nope' \(configured clusters: mgmt, w1, w2\)"):
        _run(plan, pools, operations_from_flags(upgrade=["nope"]))
    with pytest.raises(PlanError, match="already configured"):
        _run(plan, pools, operations_from_flags(create=["w1=2"]))
    with pytest.raises(PlanError, match="expected CLUSTER=N"):
        operations_from_flags(scale=["w1"])
    with pytest.raises(PlanError, match="no operation"):
        _run(plan, pools, [])
    bad = tmp_path / "p.toml"
    bad.write_text('[[operation]]\nop = "scale"\ncluster = "w1"\n')
    with pytest.raises(PlanError, match=r"p.toml: operation.0: .*scale needs nodes"):
        load_plan_file(bad)


def test_plan_files_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "change-4711.toml"
    toml.write_text(
        '[[operation]]\nop = "upgrade"\nclusters = ["w1"]\n\n'
        '[[operation]]\nop = "add-services"\ncluster = "w2"\ncount = 2\n'
    )
    js = tmp_path / "change.json"
    js.write_text(
        json.dumps(
            {"operation": [{"op": "upgrade", "clusters": ["w1"]}, {"op": "add-services", "cluster": "w2", "count": 2}]}
        )
    )
    assert load_plan_file(toml) == load_plan_file(js)
    plan, pools = _state("22h2", node_used=10, vip_used=8)
    res = evaluate_plan(load_plan_file(toml), [plan], pools, ip_plan="22h2")
    d = res.as_dict()
    assert d["operations"] == ["upgrade w1", "add 2 LoadBalancer service(s) to w2"]
    assert [(p["pool"], p["needed"]) for p in d["pools"]] == [("node", 5), ("vip", 2)]
    assert set(d["rules"]) == {"22H2-UPD-WL", "22H2-VIP-SVC", "RESERVE"}
