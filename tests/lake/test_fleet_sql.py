"""Fleet queries: ``hciwatch sql --lake`` over every site of a lake, in the read-only sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.lake import Lake, LakeSettings
from hciwatch.cli import main
from hciwatch.fleet import fleet_views, read_site_configs
from hciwatch.query import QueryError, run_query
from tests.fixtures.object_stores import ObjectStore
from tests.lake.fleet_synth import DUP_IP, site_name, write_fleet

SITES = 4


@pytest.fixture(params=["local", "azurite"])
def fleet_lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    if request.param == "local":
        lake = Lake.open(str(tmp_path / "lake"))
    else:
        request.applymarker(pytest.mark.integration)
        server: ObjectStore = request.getfixturevalue("azurite")
        url = server.url(server.new_bucket())
        lake = Lake.open(url, LakeSettings.model_validate({"url": url, **server.lake_settings()}))
    write_fleet(lake, SITES, tmp_path / "work", minutes=30)
    return lake


def _q(lake: Lake, sql: str) -> list[dict[str, object]]:
    result = run_query(Path("."), sql, extra_views=fleet_views(lake), lake=lake)
    return result.table.to_pylist()


def test_fleet_views_answer_per_site(fleet_lake: Lake) -> None:
    assert sorted(read_site_configs(fleet_lake)) == [site_name(i) for i in range(SITES)]
    per_site = _q(fleet_lake, "SELECT site, count(*) AS n FROM samples GROUP BY site ORDER BY site")
    assert [r["site"] for r in per_site] == [site_name(i) for i in range(SITES)]
    assert {r["n"] for r in per_site} == {30 * 4 * 2}
    conflicts = _q(fleet_lake, "SELECT DISTINCT site, network, ip, claimants FROM ip_conflicts ORDER BY site")
    assert conflicts == [
        {"site": site_name(i), "network": "akshci-vnet", "ip": DUP_IP, "claimants": 2} for i in range(SITES)
    ]
    pools = _q(
        fleet_lake,
        "SELECT site, pool, max(used) AS used, max(size) AS size FROM pool_usage GROUP BY ALL ORDER BY site",
    )
    # each site's services: 5 + i % 4 plus the duplicate IP, counted against its own 51-address pool
    assert [(r["site"], r["used"], r["size"]) for r in pools] == [
        (site_name(i), 5 + i % 4 + 1, 51) for i in range(SITES)
    ]
    storms = _q(
        fleet_lake,
        "SELECT site, host FROM congestion_signals WHERE pfc_pause_frames_per_sec > 5 GROUP BY ALL ORDER BY site",
    )
    assert storms == [{"site": site_name(i), "host": "hci-node-01"} for i in range(SITES) if i % 3 == 0]


def test_the_fleet_sandbox_refuses_file_access(fleet_lake: Lake) -> None:
    with pytest.raises(QueryError):
        _q(fleet_lake, "SELECT * FROM read_parquet('/etc/hostname')")
    with pytest.raises(QueryError):
        _q(fleet_lake, "COPY (SELECT 1) TO '/tmp/x.csv'")


def test_cli_sql_over_a_lake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = Lake.open(str(tmp_path / "lake"))
    write_fleet(lake, 2, tmp_path / "work", minutes=10)
    sql = "SELECT site, count(*) AS n FROM ip_observations GROUP BY site ORDER BY site"
    assert main(["sql", "--lake", str(tmp_path / "lake"), "--format", "json", sql]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [r["site"] for r in rows] == [site_name(0), site_name(1)]
    assert main(["sql", "--lake", str(tmp_path / "nope"), "SELECT 1"]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_fleet_counter_rates_never_reach_across_sites(fleet_lake: Lake) -> None:
    """Every site has a ``hci-node-01`` with a pause counter: rated per site, no false resets."""
    rows = _q(
        fleet_lake,
        "SELECT site, host, count(*) FILTER (WHERE counter_reset) AS resets, "
        "round(arg_max(rate_per_sec, ts), 4) AS last_rate, count(DISTINCT base) AS bases "
        "FROM counter_rates WHERE metric = 'pfc.rx_pause_frames_total' GROUP BY ALL ORDER BY site, host",
    )
    assert len(rows) == SITES * 4
    assert {r["resets"] for r in rows} == {0}
    assert {r["bases"] for r in rows} == {1}
    # the synthetic counter rises 500 a minute on node 01 of every third site in the second half hour, else 2
    for r in rows:
        storm = int(str(r["site"])[-3:]) % 3 == 0 and r["host"] == "hci-node-01"
        assert r["last_rate"] == round((500 if storm else 2) / 60, 4), r
