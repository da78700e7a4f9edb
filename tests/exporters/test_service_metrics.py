"""The service metrics are declared once: /metrics and the pushed dashboard metrics use one name per
quantity, and the deployed Grafana dashboard queries only declared names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collector.scheduler import TargetHealth
from collector.store import Store
from exporters.service_metrics import (
    DASHBOARD_METRICS,
    SERVICE_METRICS,
    MetricSpec,
    MetricsSnapshot,
    PipelineHealth,
    PoolStat,
    prometheus_name,
    snapshot_observations,
)
from hciwatch.pipeline import PipelineStats
from hciwatch.selfmetrics import HciwatchCollector

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "hciwatch-dashboard.json"


def test_prometheus_names_follow_the_collector_rules() -> None:
    assert prometheus_name(MetricSpec("hciwatch.pool.time_to_exhaustion", "gauge", "s", "")) == (
        "hciwatch_pool_time_to_exhaustion_seconds"
    )
    assert prometheus_name(MetricSpec("hciwatch.api.request_duration", "histogram", "s", "")) == (
        "hciwatch_api_request_duration_seconds"
    )
    assert prometheus_name(MetricSpec("hciwatch.store.bytes_written", "counter", "By", "")) == (
        "hciwatch_store_bytes_written"
    )
    assert prometheus_name(MetricSpec("hciwatch.pipeline.samples_in", "counter", "{sample}", "")) == (
        "hciwatch_pipeline_samples_in"
    )


def test_one_name_per_quantity() -> None:
    names = [m.name for m in SERVICE_METRICS]
    prom = [m.prometheus_name for m in SERVICE_METRICS]
    assert len(set(names)) == len(names) and len(set(prom)) == len(prom)
    assert all(m.name.startswith("hciwatch.") for m in SERVICE_METRICS)
    assert not any(m.kind == "histogram" for m in DASHBOARD_METRICS)
    assert "hciwatch_samples_stored" not in prom and "hciwatch_ingest_queue_depth" not in prom


def test_grafana_queries_only_declared_names() -> None:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_total$", "", n) for e in exprs for n in re.findall(r"\bhciwatch_[a-z_]+\b", e)}
    used.discard("hciwatch_site")  # the resource attribute a collector turns into a label
    pushed = {m.prometheus_name for m in DASHBOARD_METRICS}
    assert used and used <= pushed, used - pushed


def test_snapshot_values_cover_every_dashboard_metric() -> None:
    snap = MetricsSnapshot(
        pools=(PoolStat("net-a", "vip", 64, 60, 4, 7200.0), PoolStat("net-a", "node", 32, 10, 22)),
        congestion={"hci-node-02": 0.9},
        firing_by_kind={"duplicate_ip": 2},
        pipeline=PipelineHealth(samples_in=12, parse_errors=3, queue_depth=4, export_failures=5),
    )
    obs = snapshot_observations(snap)
    assert set(obs) == {m.name for m in DASHBOARD_METRICS}
    assert obs["hciwatch.pool.time_to_exhaustion"] == [({"network": "net-a", "pool": "vip"}, 7200.0)]
    assert ({"kind": "vip_pool_exhaustion"}, 0) in obs["hciwatch.alerts.firing"]
    assert obs["hciwatch.pipeline.export_failures"] == [({}, 5)]


def _scrape(tmp_path: Path) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    stats = PipelineStats(samples_stored=120, line_errors=2, ip_observations_stored=7, evaluations=3)
    stats.reject("bad_payload", "x")
    stats.records_by_kind["prometheus"] += 9
    stats.alerts["duplicate_ip/firing"] += 1
    health = TargetHealth("windows", "hci-node-01:9182", down_after=60.0, consecutive_failures=1, failures=4)
    outbox = {"appended": 5, "dropped": 0, "sinks": {"webhook": {"lag": 1, "delivered": 4, "failures": 6}}}
    snap = MetricsSnapshot(pools=(PoolStat("net-a", "vip", 64, 60, 4),), firing_by_kind={"duplicate_ip": 1})
    registry = CollectorRegistry()
    registry.register(
        HciwatchCollector(
            pipeline=lambda: stats,
            scheduler=lambda: SimpleNamespace(health={"x": health}),
            store=lambda: Store(tmp_path / "data"),
            outbox=lambda: outbox,
            queue_depth=lambda: 11,
            snapshot=lambda: snap,
        )
    )
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_endpoint_renders_the_declared_list(tmp_path: Path) -> None:
    got = _scrape(tmp_path)
    assert got["hciwatch_pipeline_samples_in_total"] == {(): 120}
    assert got["hciwatch_pipeline_parse_errors_total"] == {
        (("reason", "bad_payload"),): 1,
        (("reason", "skipped_part"),): 2,
    }
    assert got["hciwatch_pipeline_export_failures_total"] == {(("sink", "webhook"),): 6}
    assert got["hciwatch_pipeline_queue_depth"] == {(): 11}
    assert got["hciwatch_pool_free"] == {(("network", "net-a"), ("pool", "vip")): 4}
    assert got["hciwatch_alerts_firing"][(("kind", "duplicate_ip"),)] == 1
    assert got["hciwatch_target_up"] == {(("source", "windows"), ("target", "hci-node-01:9182")): 0.0}
    declared = {m.prometheus_name for m in SERVICE_METRICS}
    for sample in got:
        base = re.sub(r"_(total|created)$", "", sample)
        assert base in declared, sample
