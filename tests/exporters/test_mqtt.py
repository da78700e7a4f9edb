"""MQTT sink against a private real mosquitto broker (auth, TLS, retained state)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiomqtt
import pytest

from collector.schema import Alert
from exporters.delivery import DeliveryPolicy, OutboxDispatcher
from exporters.mqtt import MqttExporter, alert_topic
from exporters.outbox import Outbox
from exporters.settings import MqttSettings
from tests.exporters.script import scripted_alerts
from tests.fixtures.mosquitto import MosquittoBroker

pytestmark = pytest.mark.integration


def _settings(broker: MosquittoBroker, *, tls: bool = False, **kw: Any) -> MqttSettings:
    return MqttSettings.model_validate(
        {
            "type": "mqtt",
            "host": broker.host,
            "port": broker.tls_port if tls else broker.port,
            "username": broker.username,
            "password_file": broker.password_file,
            "tls": {"ca_file": broker.ca_file} if tls else None,
            "topic_prefix": "site1/hciwatch",
            "timeout": 5,
            **kw,
        }
    )


def _subscriber(broker: MosquittoBroker, ident: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        broker.host, broker.port, username=broker.username, password=broker.password, identifier=ident
    )


async def _retained(broker: MosquittoBroker) -> dict[str, Any]:
    """What a fresh subscriber gets right after subscribing: the retained messages."""
    out: dict[str, Any] = {}
    async with _subscriber(broker, "retained-probe") as c:
        await c.subscribe("site1/hciwatch/alerts/#", qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for msg in c.messages:
                    assert msg.retain
                    out[str(msg.topic)] = json.loads(msg.payload) if msg.payload else None
    return out


@pytest.mark.parametrize("tls", [False, True])
async def test_retained_while_firing_cleared_on_resolve(mosquitto_broker: MosquittoBroker, tls: bool) -> None:
    alerts = scripted_alerts(cycles=1)  # 5 firing, then 5 resolved
    firing, resolved = alerts[:5], alerts[5:]
    exporter = MqttExporter(_settings(mosquitto_broker, tls=tls))
    live: list[tuple[str, bytes, bool]] = []
    async with _subscriber(mosquitto_broker, "live") as sub:
        await sub.subscribe("site1/hciwatch/alerts/#", qos=1)
        assert (await exporter.export(firing)).ok
        retained = await _retained(mosquitto_broker)
        assert set(retained) == {alert_topic("site1/hciwatch", a) for a in firing}
        for a in firing:
            assert Alert.from_json(retained[alert_topic("site1/hciwatch", a)]) == a

        assert (await exporter.export(resolved)).ok
        assert await _retained(mosquitto_broker) == {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for msg in sub.messages:
                    live.append((str(msg.topic), bytes(msg.payload), msg.retain))
                    if len(live) == 15:
                        break
    await exporter.shutdown()
    assert len(live) == 15  # 5 firing + 5 resolved + 5 clears
    payloads = [json.loads(p) for _, p, _ in live if p]
    assert [Alert.from_json(p) for p in payloads] == alerts
    assert sum(1 for _, p, _ in live if p == b"") == 5
    # per topic: firing, resolved, then the empty clear
    for a in firing:
        topic = alert_topic("site1/hciwatch", a)
        seq = [p for t, p, _ in live if t == topic]
        assert [json.loads(p)["status"] if p else "" for p in seq] == ["firing", "resolved", ""]


async def test_broker_restart_is_retried_through_the_outbox(mosquitto_broker: MosquittoBroker, tmp_path: Any) -> None:
    alerts = scripted_alerts(cycles=1)
    exporter = MqttExporter(_settings(mosquitto_broker, name="broker"))
    box = Outbox(tmp_path, ["broker"])
    waits: list[float] = []

    async def fake_sleep(delay: float) -> None:
        waits.append(delay)
        await asyncio.sleep(0.05)

    d = OutboxDispatcher(box, exporter, DeliveryPolicy(max_batch=5, max_wait=0), sleep=fake_sleep)
    d.start()
    box.append(alerts[:5])
    for _ in range(200):
        if box.lag("broker") == 0:
            break
        await asyncio.sleep(0.02)
    assert box.lag("broker") == 0
    await asyncio.to_thread(mosquitto_broker.stop)
    box.append(alerts[5:])
    for _ in range(100):
        if waits:
            break
        await asyncio.sleep(0.02)
    assert waits and box.lag("broker") == 5  # failing while the broker is away
    await asyncio.to_thread(mosquitto_broker.start)
    for _ in range(500):
        if box.lag("broker") == 0:
            break
        await asyncio.sleep(0.02)
    await d.stop()
    await exporter.shutdown()
    assert box.lag("broker") == 0
    assert await _retained(mosquitto_broker) == {}  # the resolutions cleared what was retained
    box.close()


async def test_wrong_password_is_a_retryable_failure(mosquitto_broker: MosquittoBroker, tmp_path: Any) -> None:
    bad = tmp_path / "pw"
    bad.write_text("not-the-password\n")
    exporter = MqttExporter(_settings(mosquitto_broker, password_file=bad))
    result = await exporter.export(scripted_alerts()[:1])
    assert not result.ok and result.retryable
    assert "not-the-password" not in result.error
    await exporter.shutdown()


async def test_site_topics_and_the_pre_site_retained_copy_is_cleared(mosquitto_broker: MosquittoBroker) -> None:
    """Alerts of a site go under its name; an incident that fired before fingerprints carried the
    site (old fingerprint, resource now with site) moves: its old retained topic is cleared."""
    [fire_old, *_] = scripted_alerts(cycles=1)
    old_topic = f"site1/hciwatch/alerts/{fire_old.kind.value}/{fire_old.fingerprint}"
    async with _subscriber(mosquitto_broker, "pre-upgrade") as c:  # what the previous version left
        await c.publish(old_topic, json.dumps(fire_old.to_json()), qos=1, retain=True)
    migrated = Alert.from_json({**fire_old.to_json(), "resource": {"site": "east", **fire_old.resource}})
    assert alert_topic("site1/hciwatch", migrated).startswith("site1/hciwatch/alerts/east/")
    resolved = Alert.from_json({**migrated.to_json(), "status": "resolved", "ends_at": migrated.to_json()["starts_at"]})
    exporter = MqttExporter(_settings(mosquitto_broker))
    assert (await exporter.export([migrated])).ok
    assert set(await _retained(mosquitto_broker)) == {alert_topic("site1/hciwatch", migrated)}
    assert (await exporter.export([resolved])).ok
    assert await _retained(mosquitto_broker) == {}
    await exporter.shutdown()
