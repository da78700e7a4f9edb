"""Site in every identity: config defaults and the ids sinks derive from fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics.findings import Finding
from analytics.lifecycle import AlertManager
from analytics.settings import AnalyticsSettings
from collector.errors import ConfigError
from collector.schema import Alert, AlertKind, Severity
from exporters.mqtt import alert_topic
from exporters.webhook import alert_id, common_alert_schema
from hciwatch.config import parse_config

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _fire(site: str) -> Alert:
    settings = AnalyticsSettings.model_validate({"lifecycle": {"duplicate_ip": {"for": "0s"}}})
    am = AlertManager(settings, site=site)
    finding = Finding(
        AlertKind.DUPLICATE_IP, {"network": "akshci-vnet", "ip": "10.40.0.203"}, Severity.SEV1, "dup 10.40.0.203"
    )
    [alert] = am.update([finding], T0)
    return alert


def test_sink_ids_differ_between_sites() -> None:
    a, b = _fire("east"), _fire("west")
    assert a.fingerprint != b.fingerprint
    assert alert_id(a.fingerprint, "s") != alert_id(b.fingerprint, "s")
    assert alert_topic("hw", a).startswith("hw/alerts/east/duplicate_ip/")
    assert alert_topic("hw", b).startswith("hw/alerts/west/duplicate_ip/")
    doc = common_alert_schema(a)
    assert doc["data"]["customProperties"]["site"] == "east"


def test_otlp_resource_names_the_site_by_default() -> None:
    raw = {
        "site": {"name": "east"},
        "exporters": [
            {"type": "otlp", "endpoint": "127.0.0.1:4317"},
            {"type": "otlp", "name": "central", "endpoint": "127.0.0.1:4318", "resource": {"site": "other"}},
        ],
    }
    cfg = parse_config(raw, "", file="config.toml")
    assert cfg.exporters[0].resource.resource_dict()["hciwatch.site"] == "east"
    assert cfg.exporters[1].resource.resource_dict()["hciwatch.site"] == "other"  # explicit wins


@pytest.mark.parametrize("bad", ["two words", "a/b", "", "-x", "x" * 65])
def test_site_names_unsafe_in_paths_and_topics_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"site": {"name": bad}}, "", file="config.toml")
    assert "site.name" in "\n".join(err.value.problems)


def test_idempotency_key_is_the_change_not_the_delivery() -> None:
    """Two instances producing the same change (a handover) give it the same key; another
    status or change time is another key."""
    a, again = _fire("east"), _fire("east")
    assert a.idempotency_key == again.idempotency_key and len(a.idempotency_key) == 32
    resolved = Alert.from_json({**a.to_json(), "status": "resolved", "ends_at": a.to_json()["starts_at"]})
    later = Alert.from_json({**a.to_json(), "ts": "2026-11-20T10:05:00.000Z"})
    assert len({a.idempotency_key, resolved.idempotency_key, later.idempotency_key}) == 3
    assert _fire("west").idempotency_key != a.idempotency_key
