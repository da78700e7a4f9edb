"""Build the replay scenario library under ``tests/replay/scenarios/`` from the lab.

Each folder is one test: ``capture.jsonl.zst`` (real-format payloads), ``config.toml`` (the site's
networks) and ``expected.json`` (ground truth incidents + confounder windows, as
``lab.ground_truth`` / ``confounder_windows`` state them). Regenerate with::

    .venv/bin/python -m tests.replay.build_scenarios

Scenarios vary site shape on purpose (host names, NIC model, IP plan, seeds) so the detectors
are not tuned to one site.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lab
from hciwatch.demo import demo_config_text

HERE = Path(__file__).parent / "scenarios"
M = timedelta(minutes=1)
H = timedelta(hours=1)

OTHER_SITE = lab.SiteSpec(
    name="edge-7",
    hosts=("azl-h1", "azl-h2", "azl-h3"),
    host_ip_start="10.40.0.11",
    rdma_adapters=("QLogic FastLinQ QL41262", "QLogic FastLinQ QL41262 #2"),
)

# A third shape: three hosts with one Broadcom RDMA port each, PFC on priority 5, a /22 cluster
# network whose VIP pool sits in the upper /24, a management cluster plus a two-LB production
# cluster and a single-LB dev cluster, and a site clock nine hours ahead of UTC.
EDGE_SITE = lab.SiteSpec(
    name="edge-9",
    hosts=("n1", "n2", "n3"),
    host_ip_start="10.200.16.10",
    rdma_adapters=("Broadcom NetXtreme-E P2100D",),
    rdma_aliases=("Storage1",),
    storage_subnets=("10.72.1.0/24",),
    pfc_priority=5,
    utc_offset_hours=9.0,
    network=lab.NetworkSpec(
        name="edge-vnet",
        ip_address_prefix="10.200.16.0/22",
        gateway="10.200.16.1",
        k8s_node_ip_pool_start="10.200.16.100",
        k8s_node_ip_pool_end="10.200.16.199",
        vip_pool_start="10.200.17.0",
        vip_pool_end="10.200.17.23",
    ),
    clusters=(
        lab.ClusterSpec("mgmt", management=True),
        lab.ClusterSpec(
            "prod",
            control_plane_nodes=1,
            worker_nodes=4,
            lb_vms=2,
            services=(
                lab.ServiceSpec("shop", "frontend", (443,), weight=2.0),
                lab.ServiceSpec("shop", "api", (8443,), weight=1.0),
                lab.ServiceSpec("ops", "prometheus", (9090,), weight=0.2),
            ),
        ),
        lab.ClusterSpec(
            "dev",
            control_plane_nodes=1,
            worker_nodes=1,
            lb_vms=1,
            services=(lab.ServiceSpec("dev", "sandbox", (80,), weight=0.5),),
        ),
    ),
)


# AKS Arc (23H2) variants of lab.ARC_SITE (see its comment for the plan):
# * ARC_PINNED: arc-dev's operator added a MetalLB pool by hand (only its CRD lists it, not the
#   hciwatch config) for pinned IPs, copied from arc-prod's range: autoAssign false, 10.60.0.200/29,
#   inside arc-prod's 10.60.0.200-215 — two clusters' MetalLBs may now hand out the same address.
# * ARC_TIGHT: the logical network's IP pool is 12 addresses; 9 node VMs leave exactly the 3
#   upgrade IPs the three clusters need (23H2-UPG), so one more node VM blocks the next upgrade.
ARC_PINNED = dataclasses.replace(
    lab.ARC_SITE,
    clusters=tuple(
        dataclasses.replace(
            c,
            metallb_pools=(
                *c.metallb_pools,
                lab.MetalLbPoolSpec("dev-pinned", ("10.60.0.200/29",), auto_assign=False, in_config=False),
            ),
        )
        if c.name == "arc-dev"
        else c
        for c in lab.ARC_SITE.clusters
    ),
)
ARC_TIGHT = dataclasses.replace(
    lab.ARC_SITE, network=dataclasses.replace(lab.ARC_SITE.network, k8s_node_ip_pool_end="10.60.0.111")
)


def scenarios() -> dict[str, lab.Scenario]:
    iv = timedelta(seconds=60)
    return {
        "duplicate_lb_ip": lab.Scenario(
            duration=2 * H, interval=iv, seed=3, incidents=(lab.DuplicateLbIp(start=45 * M, end=90 * M),)
        ),
        "pfc_storm": lab.Scenario(
            duration=3 * H,
            interval=iv,
            seed=5,
            incidents=(lab.PfcStorm(start=2 * H, end=2 * H + 40 * M, host="hci-node-02", spread_to=None),),
        ),
        "pfc_storm_other_site": lab.Scenario(
            site=OTHER_SITE,
            duration=3 * H,
            interval=iv,
            seed=9,
            incidents=(lab.PfcStorm(start=2 * H, end=2 * H + 30 * M, host="azl-h3", spread_to=None),),
        ),
        "vip_leak": lab.Scenario(
            duration=6 * H, interval=iv, seed=4, incidents=(lab.VipLeak(start=30 * M, every=20 * M),)
        ),
        "confounders": lab.Scenario(
            duration=4 * H,
            interval=iv,
            seed=6,
            incidents=(
                lab.BackupBurst(start=1 * H, end=2 * H),
                lab.HostReboot(start=2 * H + 10 * M, host="hci-node-04"),
                lab.NodeScaleOut(start=90 * M, end=3 * H, cluster="workload-b", nodes=3),
                lab.ScrapeGap(start=3 * H, end=3 * H + 15 * M, host="hci-node-03"),
                lab.VipFailover(start=3 * H + 30 * M, cluster="workload-b"),
            ),
        ),
        "all_together": lab.compact_scenario(seed=8, hours=6),
        "mix_other_site": lab.Scenario(
            site=EDGE_SITE,
            duration=6 * H,
            interval=iv,
            seed=202,
            start=datetime(2026, 12, 3, 2, tzinfo=UTC),
            incidents=(
                lab.VipLeak(start=45 * M, every=40 * M, cluster="prod"),
                lab.ScrapeGap(start=1 * H, end=1 * H + 20 * M, host="n2"),
                lab.VipFailover(start=2 * H, cluster="prod"),
                lab.BackupBurst(start=3 * H, end=4 * H),
                lab.PfcStorm(start=4 * H + 20 * M, end=4 * H + 50 * M, host="n1", spread_to=None),
            ),
        ),
        "arc_vip_leak": lab.Scenario(
            site=lab.ARC_SITE,
            duration=6 * H,
            interval=iv,
            seed=41,
            start=datetime(2026, 12, 1, 14, tzinfo=UTC),
            incidents=(lab.VipLeak(start=30 * M, every=30 * M, cluster="arc-prod"),),
        ),
        "arc_duplicate_lb_ip": lab.Scenario(
            site=ARC_PINNED,
            duration=3 * H,
            interval=iv,
            seed=43,
            start=datetime(2026, 12, 2, 9, tzinfo=UTC),
            incidents=(lab.DuplicateLbIp(start=60 * M, end=2 * H, cluster="arc-dev", shared_with="arc-prod"),),
        ),
        "arc_upgrade_blocked": lab.Scenario(
            site=ARC_TIGHT,
            duration=3 * H,
            interval=iv,
            seed=47,
            start=datetime(2026, 12, 3, 20, tzinfo=UTC),
            incidents=(lab.UpgradeBlocked(start=90 * M, cluster="arc-prod", nodes=1),),
        ),
        "clean_baseline_a": lab.Scenario(duration=24 * H, interval=timedelta(seconds=120), seed=11),
        "clean_baseline_b": lab.Scenario(site=OTHER_SITE, duration=24 * H, interval=timedelta(seconds=120), seed=23),
    }


def build(names: list[str] | None = None) -> None:
    for name, scen in scenarios().items():
        if names and name not in names:
            continue
        d = HERE / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        lab.write_capture(scen, d / "capture.jsonl.zst")
        (d / "config.toml").write_text(demo_config_text(scen))
        expected = {
            "incidents": lab.ground_truth(scen),
            "confounders": lab.confounder_windows(scen),
            "origin": f"lab scenario {name!r} (tests/replay/build_scenarios.py), seed {scen.seed}",
        }
        (d / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
        size = (d / "capture.jsonl.zst").stat().st_size
        print(f"{name}: {scen.duration} → {size / 1e6:.1f} MB")


if __name__ == "__main__":
    import sys

    build(sys.argv[1:] or None)
