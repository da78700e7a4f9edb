"""OTLP logs and metrics against a real OTLP receiver (gRPC and HTTP/protobuf)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from collector.schema import iso, to_ms
from collector.settings.retry import parse_retry_after
from exporters.otel_logs import SEVERITY_NUMBERS
from exporters.otel_metrics import MetricsSnapshot, PipelineHealth, PoolStat
from exporters.otlp import OtlpExporter, otlp_metrics
from exporters.settings import OtlpSettings, ResourceSettings
from tests.exporters.script import scripted_alerts
from tests.fixtures.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

PROTOCOLS = ["grpc", "http/protobuf"]


def _settings(receiver: OtlpReceiver, protocol: str, **kw: object) -> OtlpSettings:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    base: dict[str, object] = {
        "type": "otlp",
        "protocol": protocol,
        "endpoint": endpoint,
        "timeout": 0.5,
        "resource": ResourceSettings(
            site="lab-site-1", service_instance_id="collector-0", deployment_environment="test"
        ),
    }
    base.update(kw)
    return OtlpSettings.model_validate(base)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_alert_change_arrives_as_a_log_record(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    alerts = scripted_alerts()
    exporter = OtlpExporter(_settings(otlp_receiver, protocol, compression="gzip"))
    await exporter.start()
    for i in range(0, len(alerts), 7):
        result = await exporter.export(alerts[i : i + 7])
        assert result.ok, result.error
    await exporter.shutdown()

    logs = otlp_receiver.logs
    assert len(logs) == len(alerts)
    if protocol == "http/protobuf":
        assert all(m["Content-Encoding"] == "gzip" for m in otlp_receiver.metadata)
    transport = "grpc" if protocol == "grpc" else "http"
    for alert, rec in zip(alerts, logs, strict=True):
        assert rec.transport == transport
        assert rec.severity_number == SEVERITY_NUMBERS[alert.severity].value
        assert rec.severity_text == alert.severity.value
        assert rec.body == alert.summary
        assert rec.time_unix_nano == to_ms(alert.changed_at) * 1_000_000
        assert rec.scope == "hciwatch.alerts"
        a = rec.attributes
        assert a["hciwatch.alert.kind"] == alert.kind.value
        assert a["hciwatch.alert.status"] == alert.status.value
        assert a["hciwatch.alert.fingerprint"] == alert.fingerprint
        assert a["hciwatch.alert.severity"] == alert.severity.value
        assert a["hciwatch.alert.starts_at"] == iso(alert.starts_at)
        if alert.ends_at is None:
            assert "hciwatch.alert.ends_at" not in a
        else:
            assert a["hciwatch.alert.ends_at"] == iso(alert.ends_at)
        assert json.loads(a["hciwatch.alert.evidence"]) == alert.evidence
        for key, value in alert.resource.items():
            assert a[f"hciwatch.resource.{key}"] == value
        assert rec.resource["service.name"] == "hciwatch"
        assert rec.resource["service.instance.id"] == "collector-0"
        assert rec.resource["deployment.environment"] == "test"
        assert rec.resource["hciwatch.site"] == "lab-site-1"


def test_severity_mapping_is_the_documented_one() -> None:
    assert {s.value: n.value for s, n in SEVERITY_NUMBERS.items()} == {
        "Sev0": 21,
        "Sev1": 17,
        "Sev2": 13,
        "Sev3": 9,
        "Sev4": 5,
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_outage_is_a_retryable_failure_with_retry_after(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    exporter = OtlpExporter(_settings(otlp_receiver, protocol))
    await exporter.start()
    otlp_receiver.set_unavailable(True, retry_after=7)
    result = await exporter.export(scripted_alerts()[:3])
    assert not result.ok and result.retryable
    assert result.retry_after == pytest.approx(7, abs=1)
    assert not await exporter.healthcheck()
    otlp_receiver.set_unavailable(False)
    assert (await exporter.export(scripted_alerts()[:3])).ok
    assert len(otlp_receiver.logs) == 3
    await exporter.shutdown()


@pytest.mark.parametrize(
    ("protocol", "failure"),
    [
        ("grpc", {"grpc_code": grpc.StatusCode.INVALID_ARGUMENT}),
        ("http/protobuf", {"http_status": 400}),
    ],
)
async def test_rejection_is_permanent(otlp_receiver: OtlpReceiver, protocol: str, failure: dict[str, object]) -> None:
    exporter = OtlpExporter(_settings(otlp_receiver, protocol))
    otlp_receiver.set_failure(**failure)  # type: ignore[arg-type]
    result = await exporter.export(scripted_alerts()[:2])
    assert not result.ok and not result.retryable
    assert result.error
    await exporter.shutdown()


async def test_nobody_listening_is_retryable(tmp_path: Path) -> None:
    from tests.fixtures.mosquitto import free_port

    port = free_port()
    for protocol in PROTOCOLS:
        s = OtlpSettings(protocol=protocol, endpoint=f"http://127.0.0.1:{port}", timeout=0.3)  # type: ignore[arg-type]
        exporter = OtlpExporter(s)
        result = await exporter.export(scripted_alerts()[:1])
        assert not result.ok and result.retryable, protocol
        await exporter.shutdown()


async def test_headers_from_env_and_file_reach_the_peer(
    otlp_receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HCIWATCH_TEST_TENANT", "tenant-42")
    hf = tmp_path / "headers"
    hf.write_text("# collector auth\nauthorization: Bearer s3cr3t\n")
    for protocol in PROTOCOLS:
        s = _settings(otlp_receiver, protocol, headers={"x-tenant": "env:HCIWATCH_TEST_TENANT"}, headers_file=hf)
        exporter = OtlpExporter(s)
        assert (await exporter.export(scripted_alerts()[:1])).ok
        await exporter.shutdown()
    for meta in otlp_receiver.metadata:
        lower = {k.lower(): v for k, v in meta.items()}
        assert lower["x-tenant"] == "tenant-42"
        assert lower["authorization"] == "Bearer s3cr3t"


def test_missing_env_header_fails_at_start_naming_the_variable() -> None:
    from collector.errors import ConfigError

    s = OtlpSettings(headers={"authorization": "env:HCIWATCH_NOT_SET_ANYWHERE"})
    with pytest.raises(ConfigError, match="HCIWATCH_NOT_SET_ANYWHERE"):
        OtlpExporter(s)


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(" 0 ", now) == 0
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:20 GMT", now) == pytest.approx(120, abs=1)
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_metrics_arrive_with_names_and_values(otlp_receiver: OtlpReceiver, protocol: str) -> None:
    metrics = otlp_metrics(_settings(otlp_receiver, protocol, metrics_interval=3600))
    metrics.record(
        [PoolStat("clusternet-a", "vip", 64, 60, 4, 7200.0), PoolStat("clusternet-a", "node", 32, 10, 22)],
        {"hci-node-01": 0.1, "hci-node-02": 0.9},
        {"duplicate_ip": 2},
        PipelineHealth(samples_in=12345, parse_errors=3, queue_depth=17, export_failures=5),
    )
    assert metrics.force_flush()
    metrics.shutdown()

    def one(name: str, **attrs: str) -> float:
        return otlp_receiver.latest(name)[tuple(sorted(attrs.items()))]

    assert one("hciwatch.pool.size", network="clusternet-a", pool="vip") == 64
    assert one("hciwatch.pool.used", network="clusternet-a", pool="vip") == 60
    assert one("hciwatch.pool.free", network="clusternet-a", pool="node") == 22
    assert one("hciwatch.pool.time_to_exhaustion", network="clusternet-a", pool="vip") == 7200.0
    assert otlp_receiver.latest("hciwatch.pool.time_to_exhaustion").keys() == {
        (("network", "clusternet-a"), ("pool", "vip"))
    }
    assert one("hciwatch.congestion.score", host="hci-node-02") == pytest.approx(0.9)
    assert one("hciwatch.alerts.firing", kind="duplicate_ip") == 2
    assert one("hciwatch.alerts.firing", kind="vip_pool_exhaustion") == 0
    assert one("hciwatch.pipeline.samples_in") == 12345
    assert one("hciwatch.pipeline.parse_errors") == 3
    assert one("hciwatch.pipeline.queue_depth") == 17
    assert one("hciwatch.pipeline.export_failures") == 5
    units = {p.name: p.unit for p in otlp_receiver.metrics}
    assert units["hciwatch.pool.time_to_exhaustion"] == "s"
    kinds = {p.name: p.kind for p in otlp_receiver.metrics}
    assert kinds["hciwatch.pipeline.samples_in"] == "sum"
    assert kinds["hciwatch.pool.used"] == "gauge"
    res = otlp_receiver.metrics[0].resource
    assert res["hciwatch.site"] == "lab-site-1" and res["service.name"] == "hciwatch"


def test_metrics_from_a_snapshot_callable(otlp_receiver: OtlpReceiver) -> None:
    calls = []

    def snap() -> MetricsSnapshot:
        calls.append(1)
        return MetricsSnapshot(firing_by_kind={"source_down": len(calls)})

    metrics = otlp_metrics(_settings(otlp_receiver, "grpc", metrics_interval=3600), snap)
    assert metrics.force_flush()
    assert metrics.force_flush()
    metrics.shutdown()
    assert otlp_receiver.latest("hciwatch.alerts.firing")[(("kind", "source_down"),)] >= 2
