"""``hciwatch reclaim`` on the demo site with its leak of CI preview services (lab: each preview carries
traffic for the 30 minutes of its CI run, then none): the idle previews are the candidates, with
their evidence and the kubectl command; services in use never are."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import lab
from collector.capture import read_captures
from collector.registry import parser_kinds
from hciwatch.cli import main
from hciwatch.config import load_config
from hciwatch.demo import demo_config_text
from hciwatch.pipeline import replay_records

M = timedelta(minutes=1)
SCENARIO = lab.Scenario(
    duration=timedelta(hours=3),
    interval=timedelta(seconds=60),
    seed=4,
    incidents=(lab.VipLeak(start=20 * M, every=20 * M),),
)


@pytest.fixture(scope="module")
def leak_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("reclaim_demo")
    capture = d / "capture.jsonl.zst"
    lab.write_capture(SCENARIO, capture)
    (d / "config.toml").write_text(demo_config_text(SCENARIO))
    cfg = load_config(d / "config.toml")
    replay_records(read_captures([capture], known_kinds=parser_kinds()), cfg, d / "data")
    (d / "data" / "config.toml").write_text((d / "config.toml").read_text())
    yield d / "data"


def test_idle_previews_are_reclaim_candidates(leak_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reclaim", "--data-dir", str(leak_dir), "--idle", "1h", "--holders", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    idle = {c["holder"]: c for c in d["candidates"] if c["reason"] == "idle_service"}
    # previews are created at 00:20, 00:40, … and idle 30 min after; the data ends at 02:59:
    # idle for ≥ 1 h are those created by 01:29 → 00:20, 00:40, 01:00, 01:20
    assert sorted(idle) == [f"service ci-previews/pr-{4101 + 7 * k}-web" for k in range(4)]
    first = idle["service ci-previews/pr-4101-web"]
    assert first["cluster"] == "workload-a" and first["pool"] == "vip"
    assert first["command"] == "kubectl --context workload-a get svc -n ci-previews pr-4101-web -o wide"
    assert first["evidence"]["frontends"] == ["svc-ci-previews-pr-4101-web-80"]
    assert first["evidence"]["idle_hours"] >= 1.0
    # every holder is listed with kind, cluster and since when
    rows = {(r["ip"], r["kind"]): r for r in d["holders"]}
    assert rows[("10.40.0.200", "control-plane")]["cluster"] == "aks-mgmt"
    assert rows[("10.40.0.203", "service")]["holder"] == "web/storefront"
    assert all(r["since"] <= r["last_seen"] for r in d["holders"] if r["since"] is not None)
    # the HAProxy VMs Kubernetes does not list are holders (found by their MAC answering for the VIPs)
    lbs = {r["ip"]: r["holder"] for r in d["holders"] if r["kind"] == "load-balancer"}
    assert "HAProxy VM of workload-a (answers for its VIPs)" in lbs.values()
    assert not any(c["ip"] in lbs for c in d["candidates"])


def test_table_output_shows_evidence_and_command(leak_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reclaim", "--data-dir", str(leak_dir), "--idle", "2h"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "idle_service — service ci-previews/pr-4101-web in workload-a" in out
    assert "inspect: kubectl --context workload-a get svc -n ci-previews pr-4101-web -o wide" in out
    assert "pr-4122-web" not in out  # idle only 1.2 h
    assert main(["reclaim", "--data-dir", str(leak_dir), "--idle", "soon"]) == 2
