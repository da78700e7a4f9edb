"""Webhook sink: common alert schema, HMAC and bearer auth, status handling, Retry-After."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from collector.errors import ConfigError
from collector.schema import iso
from collector.settings import DeprecatedKeyWarning
from exporters.delivery import DeliveryPolicy, OutboxDispatcher
from exporters.outbox import Outbox
from exporters.registry import parse_sink_settings
from exporters.settings import WebhookSettings
from exporters.webhook import WebhookExporter, alert_id, redact_url
from tests.exporters.script import scripted_alerts

SUB = "11111111-2222-3333-4444-555555555555"


class Hook:
    """A local receiver that records requests and answers from a script of statuses."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        if self.script:
            status, headers = self.script.pop(0)
            return web.Response(status=status, headers=headers, text="scripted")
        return web.Response(status=202)

    @property
    def docs(self) -> list[dict[str, Any]]:
        return [json.loads(b) for _, b in self.requests]


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    h = Hook()
    app = web.Application()
    app.router.add_post("/hooks/alerts", h.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    h.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/alerts"
    yield h
    await runner.cleanup()


def _settings(hook: Hook, tmp_path: Path, **kw: Any) -> WebhookSettings:
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    secret = tmp_path / "secret"
    secret.write_text("hmac-key\n")
    data: dict[str, Any] = {
        "type": "webhook",
        "url": hook.url + "?sig=SASSECRET",
        "bearer_token_file": token,
        "secret_file": secret,
        "subscription_id": SUB,
        "timeout": 2,
        "target_ids": ["/subscriptions/X/resourceGroups/RG/providers/Microsoft.AzureStackHCI/clusters/HCI-1"],
    }
    data.update(kw)
    return WebhookSettings.model_validate(data)


async def test_common_alert_schema_fields_and_signature(hook: Hook, tmp_path: Path) -> None:
    alerts = scripted_alerts()[:10]
    exporter = WebhookExporter(_settings(hook, tmp_path))
    await exporter.start()
    assert (await exporter.export(alerts)).ok
    await exporter.shutdown()
    assert len(hook.requests) == len(alerts)
    for alert, (headers, body) in zip(alerts, hook.requests, strict=True):
        assert headers["Content-Type"] == "application/json"
        assert headers["Authorization"] == "Bearer tok-123"
        expected = "sha256=" + hmac.new(b"hmac-key", body, hashlib.sha256).hexdigest()
        assert headers["X-Hciwatch-Signature"] == expected
        assert headers["Idempotency-Key"] == alert.idempotency_key
        doc = json.loads(body)
        assert doc["data"]["alertContext"]["idempotencyKey"] == alert.idempotency_key
        assert doc["schemaId"] == "azureMonitorCommonAlertSchema"
        e = doc["data"]["essentials"]
        guid = str(uuid.UUID(e["alertId"].rsplit("/", 1)[1]))
        assert e["alertId"] == f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/{guid}"
        assert e["alertId"] == alert_id(alert.fingerprint, SUB)
        assert e["alertRule"] == alert.kind.value
        assert e["severity"] == alert.severity.value
        assert e["signalType"] == "Log"
        assert e["monitorCondition"] == ("Fired" if alert.status.value == "firing" else "Resolved")
        assert e["monitoringService"] == "hciwatch"
        assert e["alertTargetIDs"] == [
            "/subscriptions/x/resourcegroups/rg/providers/microsoft.azurestackhci/clusters/hci-1"
        ]
        assert e["originAlertId"] == alert.fingerprint
        assert e["firedDateTime"] == iso(alert.starts_at)
        if alert.ends_at is None:
            assert "resolvedDateTime" not in e
        else:
            assert e["resolvedDateTime"] == iso(alert.ends_at)
        assert e["description"] == alert.summary
        assert e["essentialsVersion"] == "1.0" and e["alertContextVersion"] == "1.0"
        ctx = doc["data"]["alertContext"]
        assert ctx["evidence"] == alert.evidence and ctx["runbook"] == alert.runbook
        assert doc["data"]["customProperties"] == dict(alert.resource)
        for label in ("host", "ip", "network", "target"):
            if label in alert.resource:
                assert alert.resource[label] in e["configurationItems"]
    # Fired and Resolved of one incident share the alertId
    by_fp: dict[str, set[str]] = {}
    for doc in hook.docs:
        by_fp.setdefault(doc["data"]["essentials"]["originAlertId"], set()).add(doc["data"]["essentials"]["alertId"])
    assert all(len(ids) == 1 for ids in by_fp.values())


async def test_arm_ids_in_resource_labels_become_targets(hook: Hook, tmp_path: Path) -> None:
    from collector.schema import Alert

    a = scripted_alerts()[0]
    arm = "/subscriptions/S/resourceGroups/rg/providers/Microsoft.HybridContainerService/x/AKS-1"
    b = Alert(
        fingerprint=a.fingerprint,
        kind=a.kind,
        status=a.status,
        severity=a.severity,
        starts_at=a.starts_at,
        resource={**a.resource, "arm_id": arm, "cluster": "aks-1"},
        summary="s",
    )
    exporter = WebhookExporter(_settings(hook, tmp_path, target_ids=[]))
    assert (await exporter.export([b])).ok
    await exporter.shutdown()
    e = hook.docs[0]["data"]["essentials"]
    assert e["alertTargetIDs"] == [arm.lower()]
    assert "aks-1" in e["configurationItems"]


async def test_retry_after_seconds_and_date_honoured_without_duplicates(hook: Hook, tmp_path: Path) -> None:
    alerts = scripted_alerts()[:6]
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    hook.script = [
        (202, {}),
        (503, {"Retry-After": "17"}),
        (202, {}),
        (429, {"Retry-After": format_datetime(now + timedelta(seconds=90), usegmt=True)}),
    ]
    exporter = WebhookExporter(_settings(hook, tmp_path, name="hook"), now=lambda: now.timestamp())
    box = Outbox(tmp_path / "data", ["hook"])
    waits: list[float] = []

    async def fake_sleep(delay: float) -> None:
        waits.append(delay)
        await asyncio.sleep(0)

    d = OutboxDispatcher(box, exporter, DeliveryPolicy(max_batch=10, max_wait=0), sleep=fake_sleep)
    d.start()
    box.append(alerts)
    for _ in range(500):
        if box.lag("hook") == 0:
            break
        await asyncio.sleep(0.01)
    await d.stop()
    await exporter.shutdown()
    assert waits == [17.0, 90.0]
    accepted = [doc["data"]["essentials"]["description"] for (h, _), doc in zip(hook.requests, hook.docs, strict=True)]
    # requests: a0 ok, a1 503, a1 ok, a2 429, a2..a5 ok → each alert accepted exactly once
    assert accepted == [
        alerts[0].summary,
        alerts[1].summary,
        alerts[1].summary,
        alerts[2].summary,
        *[a.summary for a in alerts[2:]],
    ]
    box.close()


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (404, False), (408, True), (429, True), (500, True), (502, True), (301, False)],
)
async def test_status_classification(hook: Hook, tmp_path: Path, status: int, retryable: bool) -> None:
    hook.script = [(status, {})]
    exporter = WebhookExporter(_settings(hook, tmp_path))
    result = await exporter.export(scripted_alerts()[:1])
    await exporter.shutdown()
    assert not result.ok and result.retryable is retryable
    assert f"HTTP {status}" in result.error
    assert "SASSECRET" not in result.error


async def test_permanent_rejection_does_not_stop_the_rest_of_the_batch(hook: Hook, tmp_path: Path) -> None:
    hook.script = [(202, {}), (400, {}), (202, {})]
    exporter = WebhookExporter(_settings(hook, tmp_path))
    result = await exporter.export(scripted_alerts()[:4])
    await exporter.shutdown()
    assert not result.ok and not result.retryable
    assert "1 of 4" in result.error
    assert len(hook.requests) == 4


async def test_unreachable_is_retryable_and_does_not_leak_the_url_secret(tmp_path: Path) -> None:
    from tests.fixtures.mosquitto import free_port

    url = f"http://127.0.0.1:{free_port()}/hook?sig=SASSECRET"
    exporter = WebhookExporter(WebhookSettings(url=url, timeout=1))
    result = await exporter.export(scripted_alerts()[:1])
    await exporter.shutdown()
    assert not result.ok and result.retryable
    assert "SASSECRET" not in result.error


def test_url_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "url"
    f.write_text("https://prod.logic.azure.com/workflows/1/triggers/manual?sig=abc\n")
    assert WebhookSettings(url_file=f).resolved_url().endswith("sig=abc")
    monkeypatch.setenv("HOOK_URL", "https://example.test/h")
    assert WebhookSettings(url="env:HOOK_URL").resolved_url() == "https://example.test/h"
    with pytest.raises(ValidationError):
        parse_sink_settings({"type": "webhook"})
    with pytest.raises(ValidationError, match="extra"):
        parse_sink_settings({"type": "webhook", "url": "https://x", "tokenfile": "typo"})
    with pytest.raises(ConfigError, match=r"exporters\.webhook\.bearer_token_file: cannot read secret file"):
        WebhookExporter(WebhookSettings(url="https://x", bearer_token_file=tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"exporters\.webhook\.secret_file: environment variable HOOK_UNSET"):
        WebhookExporter(WebhookSettings(url="https://x", secret_file="env:HOOK_UNSET"))
    with pytest.warns(DeprecatedKeyWarning, match="'token_file' is deprecated, use 'bearer_token_file'"):
        old = WebhookSettings.model_validate({"url": "https://x", "token_file": str(f), "verify_tls": False})
    assert old.bearer_token_file is not None and old.tls is not None and old.tls.insecure_skip_verify
    assert redact_url("https://u:p@h.test:8443/a/b?sig=1#f") == "https://h.test:8443/a/b"
