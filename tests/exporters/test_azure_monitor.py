"""Azure Monitor exporter against a fake ingestion endpoint on 127.0.0.1 (real SDK, real HTTP)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from collector.errors import ConfigError
from collector.settings import DeprecatedKeyWarning
from exporters.azure_monitor import AzureMonitorExporter, azure_monitor_metrics
from exporters.delivery import DeliveryPolicy, OutboxDispatcher
from exporters.otel_metrics import PipelineHealth, PoolStat
from exporters.outbox import Outbox
from exporters.registry import parse_sink_settings
from exporters.settings import AzureMonitorSettings, ResourceSettings
from tests.exporters.script import scripted_alerts
from tests.fixtures.azure_ingest import AzureIngest

pytestmark = pytest.mark.integration

QUIET = (
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED",
)


@pytest.fixture(autouse=True)
def _restore_sdk_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in QUIET:  # the exporter sets these process-wide; undo after each test
        monkeypatch.setenv(var, "true")
        monkeypatch.delenv(var)
    yield


def _settings(ingest: AzureIngest, tmp_path: Path, **kw: object) -> AzureMonitorSettings:
    cs = tmp_path / "appinsights.cs"
    cs.write_text(ingest.connection_string + "\n")
    data: dict[str, object] = {
        "type": "azure_monitor",
        "connection_string_file": cs,
        "timeout": 2,
        "resource": ResourceSettings(site="lab-site-1", service_instance_id="collector-0"),
    }
    data.update(kw)
    return AzureMonitorSettings.model_validate(data)


async def test_alerts_arrive_as_traces_with_alert_fields(azure_ingest: AzureIngest, tmp_path: Path) -> None:
    alerts = scripted_alerts()
    exporter = AzureMonitorExporter(_settings(azure_ingest, tmp_path))
    await exporter.start()
    assert (await exporter.export(alerts)).ok
    await exporter.shutdown()

    envs = azure_ingest.envelopes
    assert len(envs) == len(alerts)
    level = {"Sev0": 4, "Sev1": 3, "Sev2": 2, "Sev3": 1, "Sev4": 0}
    for alert, env in zip(alerts, envs, strict=True):
        assert env["name"] == "Microsoft.ApplicationInsights.Message"
        assert env["iKey"] == azure_ingest.ikey
        assert env["tags"]["ai.cloud.role"] == "hciwatch"
        assert env["tags"]["ai.cloud.roleInstance"] == "collector-0"
        assert env["time"].startswith(alert.changed_at.strftime("%Y-%m-%dT%H:%M:%S"))
        data = env["data"]
        assert data["baseType"] == "MessageData"
        base = data["baseData"]
        assert base["message"] == alert.summary
        assert base["severityLevel"] == level[alert.severity.value]
        props = base["properties"]
        assert props["hciwatch.alert.kind"] == alert.kind.value
        assert props["hciwatch.alert.status"] == alert.status.value
        assert props["hciwatch.alert.fingerprint"] == alert.fingerprint
        assert props["hciwatch.alert.severity"] == alert.severity.value
        assert json.loads(props["hciwatch.alert.evidence"]) == alert.evidence
        for key, value in alert.resource.items():
            assert props[f"hciwatch.resource.{key}"] == value
    assert all(k in __import__("os").environ for k in QUIET)  # no statsbeat / remote config


async def test_custom_events_mode(azure_ingest: AzureIngest, tmp_path: Path) -> None:
    alerts = scripted_alerts()[:4]
    exporter = AzureMonitorExporter(_settings(azure_ingest, tmp_path, as_custom_events=True))
    assert (await exporter.export(alerts)).ok
    await exporter.shutdown()
    envs = azure_ingest.envelopes
    assert [e["name"] for e in envs] == ["Microsoft.ApplicationInsights.Event"] * 4
    assert [e["data"]["baseData"]["name"] for e in envs] == [a.kind.value for a in alerts]
    assert envs[0]["data"]["baseType"] == "EventData"
    assert envs[0]["data"]["baseData"]["properties"]["hciwatch.alert.fingerprint"] == alerts[0].fingerprint


async def test_503_then_recovery_is_retried_through_the_outbox(azure_ingest: AzureIngest, tmp_path: Path) -> None:
    alerts = scripted_alerts()
    exporter = AzureMonitorExporter(_settings(azure_ingest, tmp_path, name="appinsights"))
    outbox = Outbox(tmp_path / "data", ["appinsights"])
    waits: list[float] = []

    async def fake_sleep(delay: float) -> None:
        waits.append(delay)
        await asyncio.sleep(0)

    azure_ingest.fail_next(503, times=3, retry_after=30)
    policy = DeliveryPolicy(max_batch=50, max_wait=0)
    dispatcher = OutboxDispatcher(outbox, exporter, policy, sleep=fake_sleep)
    dispatcher.start()
    outbox.append(alerts)
    for _ in range(1000):
        if outbox.lag("appinsights") == 0:  # committed, not only received
            break
        await asyncio.sleep(0.01)
    await dispatcher.stop()
    await exporter.shutdown()
    assert [e["data"]["baseData"]["message"] for e in azure_ingest.envelopes] == [a.summary for a in alerts]
    assert [r.status for r in azure_ingest.requests] == [503, 503, 503, 200]
    assert waits == [30, 30, 30]  # Retry-After honoured, no real waiting
    assert outbox.stats()["sinks"]["appinsights"]["failures"] == 3
    assert outbox.lag("appinsights") == 0
    outbox.close()


async def test_partial_success_with_retryable_items_resends_the_batch(
    azure_ingest: AzureIngest, tmp_path: Path
) -> None:
    alerts = scripted_alerts()[:5]
    exporter = AzureMonitorExporter(_settings(azure_ingest, tmp_path))
    azure_ingest.partial_next({1: 503, 3: 429})
    first = await exporter.export(alerts)
    assert not first.ok and first.retryable
    assert (await exporter.export(alerts)).ok
    await exporter.shutdown()
    messages = [e["data"]["baseData"]["message"] for e in azure_ingest.envelopes]
    assert set(messages) == {a.summary for a in alerts}  # every item at least once
    assert len(messages) == 3 + 5


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (402, False), (404, False), (500, True), (401, True), (429, True)]
)
async def test_status_classification(azure_ingest: AzureIngest, tmp_path: Path, status: int, retryable: bool) -> None:
    exporter = AzureMonitorExporter(_settings(azure_ingest, tmp_path))
    azure_ingest.fail_next(status)
    result = await exporter.export(scripted_alerts()[:2])
    assert not result.ok
    assert result.retryable is retryable
    assert str(status) in result.error
    await exporter.shutdown()


async def test_partial_success_with_only_permanent_item_errors_is_permanent(
    azure_ingest: AzureIngest, tmp_path: Path
) -> None:
    exporter = AzureMonitorExporter(_settings(azure_ingest, tmp_path))
    azure_ingest.partial_next({0: 400})
    result = await exporter.export(scripted_alerts()[:3])
    assert not result.ok and not result.retryable
    await exporter.shutdown()


async def test_unreachable_endpoint_is_retryable(tmp_path: Path) -> None:
    from tests.fixtures.mosquitto import free_port

    cs = tmp_path / "cs"
    cs.write_text(
        f"InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint=http://127.0.0.1:{free_port()}/"
    )
    exporter = AzureMonitorExporter(AzureMonitorSettings(connection_string_file=cs, timeout=1))
    result = await exporter.export(scripted_alerts()[:1])
    assert not result.ok and result.retryable
    await exporter.shutdown()


def test_connection_string_in_config_is_rejected_with_the_reason() -> None:
    with pytest.raises(ValidationError) as info:
        parse_sink_settings({"type": "azure_monitor", "connection_string": "InstrumentationKey=x"})
    text = str(info.value)
    assert "credential" in text and "connection_string_file" in text and "env:NAME" in text
    assert "InstrumentationKey=x" not in text.split("input_value")[0]


def test_connection_string_from_env(azure_ingest: AzureIngest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCIWATCH_AI_CS", azure_ingest.connection_string)
    s = AzureMonitorSettings(connection_string_file="env:HCIWATCH_AI_CS")
    assert s.read_connection_string() == azure_ingest.connection_string
    with pytest.warns(
        DeprecatedKeyWarning, match="'connection_string_env' is deprecated, use 'connection_string_file'"
    ):
        old = AzureMonitorSettings.model_validate({"connection_string_env": "HCIWATCH_AI_CS"})
    assert old.connection_string_file == s.connection_string_file
    monkeypatch.delenv("HCIWATCH_AI_CS")
    with pytest.raises(ConfigError, match="HCIWATCH_AI_CS is not set"):
        AzureMonitorExporter(s)


def test_invalid_connection_string_message_does_not_echo_it(tmp_path: Path) -> None:
    cs = tmp_path / "cs"
    cs.write_text("InstrumentationKey=not-a-uuid-secretish;IngestionEndpoint=http://127.0.0.1:1/")
    with pytest.raises(ConfigError) as info:
        AzureMonitorExporter(AzureMonitorSettings(name="ai", connection_string_file=cs))
    assert "not-a-uuid-secretish" not in str(info.value)
    assert str(cs) in str(info.value) and "exporters.ai" in str(info.value)


def test_metrics_arrive_as_custom_metrics(azure_ingest: AzureIngest, tmp_path: Path) -> None:
    metrics = azure_monitor_metrics(_settings(azure_ingest, tmp_path, metrics_interval=3600))
    metrics.record(
        [PoolStat("clusternet-a", "vip", 64, 60, 4, 7200.0)],
        {"hci-node-01": 0.4},
        {"duplicate_ip": 1},
        PipelineHealth(samples_in=10),
    )
    assert metrics.force_flush()
    metrics.shutdown()
    points = {}
    for env in azure_ingest.envelopes:
        assert env["name"] == "Microsoft.ApplicationInsights.Metric"
        base = env["data"]["baseData"]
        for m in base["metrics"]:
            points[(m["name"], tuple(sorted(base.get("properties", {}).items())))] = m["value"]
    assert points[("hciwatch.pool.used", (("network", "clusternet-a"), ("pool", "vip")))] == 60
    assert points[("hciwatch.alerts.firing", (("kind", "duplicate_ip"),))] == 1
    assert points[("hciwatch.congestion.score", (("host", "hci-node-01"),))] == pytest.approx(0.4)


async def test_fake_ingestion_inflates_gzip_bodies(azure_ingest: AzureIngest) -> None:
    import gzip

    import aiohttp

    envelope = {
        "name": "Microsoft.ApplicationInsights.Message",
        "iKey": azure_ingest.ikey,
        "time": "2026-11-20T10:00:00Z",
        "data": {"baseType": "MessageData", "baseData": {"ver": 2, "message": "hello"}},
    }
    body = gzip.compress(json.dumps([envelope, envelope]).encode())
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            azure_ingest.endpoint + "v2.1/track",
            data=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 200
        answer = await resp.json()
    assert answer == {"itemsReceived": 2, "itemsAccepted": 2, "errors": []}
    assert [e["data"]["baseData"]["message"] for e in azure_ingest.envelopes] == ["hello", "hello"]
