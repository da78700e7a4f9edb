"""``hciwatch plan`` on the demo site's data (a replayed lab scenario): verdicts and exit codes checked
against numbers worked out by hand from the IP-plan rules (``analytics/ip_plan_rules.md``).

The demo site (``lab.SiteSpec()``): node pool 10.40.0.20-10.40.0.59 (40 addresses), VIP pool
10.40.0.200-10.40.0.231 (32); clusters aks-mgmt (management, 1 control-plane VM), workload-a
(3 control-plane + 3 workers, services storefront, checkout-api, grafana) and workload-b
(1 + 2, services ingress-nginx, kafka-external, plus payments/api-gateway that the
duplicate-IP incident adds). At the end of ``duplicate_lb_ip``:

* node pool used 10 node VMs (22H2-NODE: 1 + 6 + 3) + 3 HAProxy VMs (22H2-LB: workload-a has one,
  workload-b a keepalived pair; Kubernetes does not list them, the hosts' neighbour tables do) = 13,
  free 27, reserve 2 + 2 x 5 = 12 (22H2-UPD-MGMT, 22H2-UPD-WL);
* VIP pool used 3 API-server VIPs (22H2-VIP-API) + 6 LoadBalancer services (22H2-VIP-SVC) = 9, free 23.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.capture import read_captures
from collector.registry import parser_kinds
from hciwatch.cli import main
from hciwatch.config import load_config
from hciwatch.pipeline import replay_records

SCENARIO = Path(__file__).parent / "scenarios" / "duplicate_lb_ip"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("plan_demo")
    cfg = load_config(SCENARIO / "config.toml")
    replay_records(read_captures([SCENARIO / "capture.jsonl.zst"], known_kinds=parser_kinds()), cfg, d)
    (d / "config.toml").write_text((SCENARIO / "config.toml").read_text())
    yield d


def _plan(demo_dir: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    rc = main(["plan", "--data-dir", str(demo_dir), "--format", "json", *args])
    out = capsys.readouterr().out
    return rc, json.loads(out) if out.strip() else {}


def test_upgrade_all_fits_on_the_demo_site(demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, d = _plan(demo_dir, capsys, "--upgrade", "all")
    assert rc == 0 and d["verdict"] == "fits"
    [node] = d["pools"]
    assert (node["pool"], node["size"], node["used"], node["free_now"]) == ("node", 40, 13, 27)
    # 22H2-UPD-MGMT 2 + 22H2-UPD-WL 5 x 2 = 12; 27 - 12 = 15 left, the reserve is what the upgrade spends
    assert (node["needed"], node["free_after"], node["reserve_after"]) == (12, 15, 0)


def test_not_fitting_exits_1_below_reserve_exits_0(demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, d = _plan(demo_dir, capsys, "--add-services", "workload-a=22", "--create", "c3=3")
    assert rc == 0 and d["verdict"] == "fits but below reserve"
    by = {p["pool"]: p for p in d["pools"]}
    # VIP: 9 used of 32 -> 23 free; 22 services (22H2-VIP-SVC) + 1 API VIP of c3 (22H2-VIP-API) = 23 -> 0 free
    assert (by["vip"]["used"], by["vip"]["needed"], by["vip"]["free_after"]) == (9, 23, 0)
    assert by["vip"]["verdict"] == "fits but below reserve"  # vip_reserve 2
    # node: 3 VMs (22H2-NODE) + 1 HAProxy VM (22H2-LB) = 4 -> 23 free; reserve 12 + 5 (22H2-UPD-WL) = 17
    assert (by["node"]["needed"], by["node"]["free_after"], by["node"]["reserve_after"]) == (4, 23, 17)
    rc, d = _plan(demo_dir, capsys, "--add-services", "workload-a=24")
    assert rc == 1 and d["verdict"] == "does not fit" and d["pools"][0]["free_after"] == -1


def test_below_reserve_gates_only_with_strict(demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 27 free - 20 new nodes (22H2-NODE) = 7 < reserve 12
    rc, d = _plan(demo_dir, capsys, "--scale", "workload-b=20")
    assert rc == 0 and d["verdict"] == "fits but below reserve"
    rc, _d = _plan(demo_dir, capsys, "--scale", "workload-b=20", "--strict")
    assert rc == 1


def test_plan_file_and_23h2_rules(demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "chg.toml"
    f.write_text('[[operation]]\nop = "site-update"\n')
    rc, d = _plan(demo_dir, capsys, "--plan", str(f), "--ip-plan", "23h2")
    # 23H2-UPG: 1 per cluster, 3 clusters
    assert rc == 0 and d["ip_plan"] == "23h2" and d["pools"][0]["needed"] == 3
    assert set(d["rules"]) == {"23H2-UPG", "RESERVE"}


def test_bad_input_exits_2_with_a_message(demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--data-dir", str(demo_dir), "--upgrade", "nope"]) == 2
    assert "unknown cluster 'nope'" in " ".join(capsys.readouterr().err.split())
    assert main(["plan", "--data-dir", str(demo_dir / "missing"), "--upgrade", "all"]) == 2
    assert "not an hciwatch data dir" in " ".join(capsys.readouterr().err.split())


async def test_plan_over_the_api_needs_the_token_and_answers_like_the_cli(demo_dir: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import CollectorRegistry

    from exporters.feed import AlertFeed
    from hciwatch.api import create_app
    from hciwatch.api_plan import add_plan_routes

    async def ready() -> dict[str, Any]:
        return {"ready": True}

    cfg = load_config(SCENARIO / "config.toml")
    app = create_app(
        data_dir=demo_dir,
        feed=AlertFeed(first_seq=1),
        token="t0k",
        readiness=ready,
        metrics_registry=CollectorRegistry(),
    )
    add_plan_routes(app, data_dir=demo_dir, networks=cfg.collector.networks, pools=cfg.analytics.pools)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        assert (await client.get("/api/v1/plan", params={"upgrade": "all"})).status == 401
        auth = {"Authorization": "Bearer t0k"}
        r = await client.get("/api/v1/plan", params={"upgrade": "all"}, headers=auth)
        d = await r.json()
        assert r.status == 200 and d["verdict"] == "fits" and d["pools"][0]["needed"] == 12  # as the CLI test
        body = {"operation": [{"op": "add-services", "cluster": "workload-b", "count": 24}]}
        r = await client.post("/api/v1/plan", json=body, headers=auth)
        d = await r.json()
        assert r.status == 200 and d["verdict"] == "does not fit" and d["pools"][0]["free_after"] == -1
        r = await client.get("/api/v1/plan", params={"scale": "ghost=2"}, headers=auth)
        assert r.status == 400 and "unknown cluster 'ghost'" in (await r.json())["error"]
        r = await client.get("/api/v1/plan", params={"bogus": "1"}, headers=auth)
        assert r.status == 400 and "unknown parameter" in (await r.json())["error"]
    finally:
        await client.close()
