"""``hciwatch plan`` on the AKS Arc (23H2) lab site: verdicts and exit codes checked against numbers
worked out by hand from the 23H2 IP-plan rules (``analytics/ip_plan_rules.md``, domain reference §5.2).

The data is the ``arc_upgrade_blocked`` scenario replayed (``tests/replay/build_scenarios.py``,
``ARC_TIGHT`` = ``lab.ARC_SITE`` with a 12-address IP pool). The site, as configured:

* Arc VM logical network ``lnet-arc`` 10.60.0.0/24; its IP pool (the ``node`` pool)
  10.60.0.100-10.60.0.111 = 12 addresses;
* control-plane IPs (the ``vip`` range) 10.60.0.20-10.60.0.27 = 8 addresses, one per cluster
  (23H2-CP: arc-prod .20, arc-dev .21, arc-data .22 → 3 used);
* clusters arc-prod (1 control-plane + 3 workers), arc-dev (1 + 2), arc-data (1 + 1); the incident
  adds one worker to arc-prod and keeps it; no management cluster, no HAProxy VMs;
* arc-dev's MetalLB pool ``dev-lb`` 10.60.0.224/29 = 8 addresses, 2 LoadBalancer services.

At the end of the capture:

* node pool used = 23H2-NODE: (1 + 3 + 1) + (1 + 2) + (1 + 1) = 10 node VMs; free 12 − 10 = 2;
  reserve (RESERVE = 23H2-UPG × 3 clusters) = 3;
* ``--upgrade all`` needs 23H2-UPG 1 × 3 = 3 > 2 free → free after −1: does not fit, exit 1;
* ``--upgrade arc-dev`` needs 1 → free after 1; the reserve after is 3 − 1 spent = 2 > 1 →
  fits but below reserve (exit 0; exit 1 with ``--strict``);
* ``--scale arc-prod=-1 --upgrade all``: 23H2-NODE −1 + 23H2-UPG 3 = 2 needed, free after 0, reserve
  after 3 − 3 = 0 → fits (scale in first, then upgrade);
* ``--add-services arc-dev=6`` / ``=7``: 23H2-LB takes arc-dev's own MetalLB pool, 8 − 2 = 6 free →
  0 free after (below ``vip_reserve`` 2) / −1: does not fit;
* ``--create arc-new=1``: the vip range gives its control-plane IP (23H2-CP: 8 − 3 = 5 free → 4),
  the IP pool its node VM (23H2-NODE 1 → 1 free) and keeps its upgrade IP (reserve 3 + 1 = 4).
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

SCENARIO = Path(__file__).parent / "scenarios" / "arc_upgrade_blocked"


@pytest.fixture(scope="module")
def arc_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("plan_arc")
    cfg = load_config(SCENARIO / "config.toml")
    replay_records(read_captures([SCENARIO / "capture.jsonl.zst"], known_kinds=parser_kinds()), cfg, d)
    (d / "config.toml").write_text((SCENARIO / "config.toml").read_text())
    yield d


def _plan(d: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    rc = main(["plan", "--data-dir", str(d), "--format", "json", *args])
    out = capsys.readouterr().out
    return rc, json.loads(out) if out.strip() else {}


def _rules(pool: dict[str, Any]) -> list[tuple[str, int]]:
    return [(w["rule"], w.get("addresses", w.get("reserve_change"))) for w in pool["why"]]


def test_upgrade_all_does_not_fit_the_logical_network_pool(arc_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, d = _plan(arc_dir, capsys, "--upgrade", "all")
    assert rc == 1 and d["ip_plan"] == "23h2" and d["verdict"] == "does not fit"  # the config's ip_plan
    [node] = d["pools"]
    # 23H2-NODE: 10 node VMs in the 12-address IP pool
    assert (node["pool"], node["size"], node["used"], node["free_now"]) == ("node", 12, 10, 2)
    # 23H2-UPG: 1 per cluster x 3 = 3 > 2 free
    assert (node["needed"], node["free_after"], node["reserve_after"]) == (3, -1, 0)
    assert _rules(node).count(("23H2-UPG", 1)) == 3 and _rules(node).count(("RESERVE", -1)) == 3


def test_one_upgrade_fits_below_reserve_and_strict_gates(arc_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, d = _plan(arc_dir, capsys, "--upgrade", "arc-dev")
    [node] = d["pools"]
    # 23H2-UPG 1 -> 1 free; RESERVE 3 - 1 spent = 2 > 1
    assert rc == 0 and (node["needed"], node["free_after"], node["reserve_after"]) == (1, 1, 2)
    assert node["verdict"] == "fits but below reserve"
    assert _plan(arc_dir, capsys, "--upgrade", "arc-dev", "--strict")[0] == 1


def test_scaling_in_first_makes_the_upgrade_fit(arc_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, d = _plan(arc_dir, capsys, "--scale", "arc-prod=-1", "--upgrade", "all")
    [node] = d["pools"]
    # 23H2-NODE -1 + 23H2-UPG 3 = 2 of 2 free; RESERVE 3 - 3 = 0
    assert rc == 0 and d["verdict"] == "fits"
    assert (node["needed"], node["free_after"], node["reserve_after"]) == (2, 0, 0)


def test_services_take_the_clusters_own_metallb_pool(arc_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, d = _plan(arc_dir, capsys, "--add-services", "arc-dev=6")
    [lb] = d["pools"]
    # 23H2-LB: dev-lb 10.60.0.224/29 = 8 addresses, 2 services -> 6 free -> 0; vip_reserve 2
    assert lb["pool"] == "lb:arc-dev/dev-lb:10.60.0.224/29" and _rules(lb) == [("23H2-LB", 6)]
    assert (lb["size"], lb["used"], lb["free_after"], lb["verdict"]) == (8, 2, 0, "fits but below reserve")
    assert rc == 0
    rc, d = _plan(arc_dir, capsys, "--add-services", "arc-dev=7")
    assert rc == 1 and d["pools"][0]["free_after"] == -1 and d["verdict"] == "does not fit"


def test_a_new_cluster_takes_a_control_plane_ip_and_an_upgrade_ip(
    arc_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, d = _plan(arc_dir, capsys, "--create", "arc-new=1")
    by = {p["pool"]: p for p in d["pools"]}
    # 23H2-CP: 3 of 8 control-plane IPs used -> 1 more leaves 4
    assert (by["vip"]["used"], by["vip"]["needed"], by["vip"]["free_after"]) == (3, 1, 4)
    # 23H2-NODE 1 -> 1 free; RESERVE 3 + 23H2-UPG 1 = 4
    assert (by["node"]["needed"], by["node"]["free_after"], by["node"]["reserve_after"]) == (1, 1, 4)
    assert rc == 0 and d["verdict"] == "fits but below reserve"
