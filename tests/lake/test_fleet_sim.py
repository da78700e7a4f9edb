"""The lab's fleet simulation (:mod:`lab.fleet`) written into a lake and read back by the fleet views.

The plan's incidents are the ground truth: the fleet views must find each one at its own site
and nowhere else, on local disk and on a real Azurite.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from collector.lake import Lake, LakeSettings
from hciwatch.fleet import fleet_views
from hciwatch.query import run_query
from lab.fleet import (
    FLEET_START,
    NIC_MODELS,
    PFC_MODEL,
    FleetIncident,
    FleetSite,
    fleet_plan,
    sample_slices,
    write_site,
)
from tests.fixtures.object_stores import ObjectStore
from tests.lake.fleet_synth import record_site

HOURS = 0.5


def test_the_full_fleet_plan_is_varied_and_adds_up() -> None:
    plan = fleet_plan(200, 5000)
    assert plan == fleet_plan(200, 5000)  # deterministic
    assert sum(s.hosts for s in plan) == 5000
    assert min(s.hosts for s in plan) >= 2 and max(s.hosts for s in plan) <= 64
    assert len({s.hosts for s in plan}) > 20
    assert {s.ip_plan for s in plan} == {"22h2", "23h2"}
    assert {s.nic_model for s in plan} == set(NIC_MODELS)
    kinds = Counter(i.kind for s in plan for i in s.incidents)
    assert set(kinds) == {"pfc-storm", "duplicate-ip", "vip-leak"}
    assert all(s.has_pfc for s in plan if s.incident("pfc-storm"))
    # one site in four reuses the reference plan verbatim, the others have their own prefix
    prefixes = Counter(s.prefix for s in plan)
    assert prefixes.most_common(1)[0][1] == 50 and len(prefixes) == 151
    with pytest.raises(ValueError, match="cannot be split"):
        fleet_plan(10, 10)


def test_samples_are_generated_a_slice_at_a_time() -> None:
    """The biggest site's hour arrives in 15-minute tables, never as one (bounded memory)."""
    big = max(fleet_plan(200, 5000), key=lambda s: s.hosts)
    tables = sample_slices(big, start=FLEET_START, hours=1.0, interval_s=30, slice_minutes=15)
    sizes = [t.num_rows for t in tables]
    assert len(sizes) == 4 and len(set(sizes)) == 1
    series = big.hosts * (2 * (4 + 2 * big.has_pfc) + 2)
    assert sizes[0] == series * 30


def _small_fleet() -> list[FleetSite]:
    """Eight sites, 60 hosts; one storm, one duplicate IP and one leak placed where the test knows."""
    plan = [replace(s, incidents=()) for s in fleet_plan(8, 60, hours=HOURS)]
    half = timedelta(hours=HOURS / 2)
    plan[1] = replace(plan[1], nic_model=PFC_MODEL, incidents=(FleetIncident("pfc-storm", half, host="hci-node-02"),))
    dup_ip = plan[2].vip_pool()[0].rsplit(".", 1)[0] + ".240"
    plan[2] = replace(plan[2], incidents=(FleetIncident("duplicate-ip", timedelta(0), ip=dup_ip),))
    plan[5] = replace(plan[5], incidents=(FleetIncident("vip-leak", half),))
    return plan


@pytest.fixture(params=["local", "azurite"])
def sim_lake(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Lake, list[FleetSite], dict[str, int]]:
    if request.param == "local":
        lake = Lake.open(str(tmp_path / "lake"))
    else:
        request.applymarker(pytest.mark.integration)
        server: ObjectStore = request.getfixturevalue("azurite")
        url = server.url(server.new_bucket())
        lake = Lake.open(url, LakeSettings.model_validate({"url": url, **server.lake_settings()}))
    plan = _small_fleet()
    written = {}
    for site in plan:
        written[site.name] = write_site(lake, site, tmp_path / "work", hours=HOURS).samples
        record_site(lake, site.name, site.networks())
    return lake, plan, written


def _q(lake: Lake, sql: str) -> list[dict[str, object]]:
    return run_query(Path("."), sql, extra_views=fleet_views(lake), lake=lake).table.to_pylist()


def test_the_fleet_views_find_each_incident_at_its_own_site(
    sim_lake: tuple[Lake, list[FleetSite], dict[str, int]],
) -> None:
    lake, plan, written = sim_lake
    counts = _q(lake, "SELECT site, count(*) AS n, count(DISTINCT host) AS hosts FROM samples GROUP BY site")
    assert {r["site"]: r["n"] for r in counts} == written
    assert {r["site"]: r["hosts"] for r in counts} == {s.name: s.hosts for s in plan}

    storms = _q(lake, "SELECT DISTINCT site, host FROM congestion_signals WHERE pfc_pause_frames_per_sec > 1000")
    assert storms == [{"site": plan[1].name, "host": "hci-node-02"}]

    conflicts = _q(lake, "SELECT DISTINCT site, ip, claimants FROM ip_conflicts")
    assert conflicts == [{"site": plan[2].name, "ip": plan[2].incidents[0].ip, "claimants": 2}]

    growing = _q(lake, "SELECT DISTINCT site FROM pool_usage GROUP BY site, pool HAVING max(used) > min(used)")
    assert growing == [{"site": plan[5].name}]

    # PFC pause counters exist only where the NIC model exposes them
    pfc_sites = _q(lake, "SELECT DISTINCT site FROM counter_rates WHERE base = 'pfc.rx_pause_frames'")
    assert {r["site"] for r in pfc_sites} == {s.name for s in plan if s.has_pfc}
