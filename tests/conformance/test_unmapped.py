"""Unknown metrics from a known source are counted per name on the ``unmapped_metrics`` view."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from collector.config import CatalogMapping
from hciwatch.cli import main
from hciwatch.config import default_config
from tests.conformance.test_corpus import record

FILES = ["datadog-calico-felix.prom", "otelcol-haproxy-stats.csv", "windows_exporter-v0.15.0-net-doc.prom"]


def _replay(d: Path, mappings: list[CatalogMapping] | None = None) -> None:
    from hciwatch.pipeline import replay_records

    cfg = default_config(d)
    if mappings:
        cfg = replace(cfg, collector=cfg.collector.model_copy(update={"metric_mappings": mappings}))
    replay_records([record(n) for n in FILES], cfg, d, workers=0)


def _unmapped(d: Path, capsys: pytest.CaptureFixture[str]) -> dict[tuple[str, str], int]:
    capsys.readouterr()
    assert main(["sql", "--data-dir", str(d), "--format", "json", "SELECT * FROM unmapped_metrics"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all({"first_seen", "last_seen", "hosts", "example_labels"} <= set(r) for r in rows)
    return {(r["source"], r["metric"]): r["samples"] for r in rows}


def test_unmapped_metrics_are_counted_per_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _replay(tmp_path)
    got = _unmapped(tmp_path, capsys)
    # counted independently from the files: 4 felix_iptables_rules lines, one h1_bytes_out cell per row having one
    assert got[("calico", "felix_iptables_rules")] == 4
    assert got[("calico", "go_goroutines")] == 1
    assert got[("haproxy", "haproxy.csv.h1_bytes_out")] == 3
    # mapped names never appear, whatever the source
    assert not any(m.startswith(("net.", "calico.felix.", "haproxy.process.")) for _, m in got)
    assert ("haproxy", "haproxy.up") not in got and ("haproxy", "haproxy.sessions_total") not in got


def test_a_user_mapping_takes_a_name_off_the_view(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _replay(tmp_path, [CatalogMapping(native="felix_iptables_rules", canonical="calico.felix.iptables_rules")])
    got = _unmapped(tmp_path, capsys)
    assert ("calico", "felix_iptables_rules") not in got
    assert ("calico", "calico.felix.iptables_rules") not in got
    assert got[("calico", "go_goroutines")] == 1
