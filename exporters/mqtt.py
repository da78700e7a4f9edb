"""Alert changes published to an MQTT broker, with the broker's retained store as "what is firing".

Topic ``<topic_prefix>/alerts/<site>/<kind>/<fingerprint>`` (``_`` when an alert carries no site),
so a broker shared by a fleet keeps one retained message per site's incident; payload the alert JSON
(:meth:`Alert.to_json`), QoS 1 (or 2). A firing change is published **retained**, so a dashboard
or PLC that subscribes later immediately gets every alert that is firing now. A resolution is
published non-retained (live subscribers see it) and then the retained message is cleared with an
empty retained payload, as MQTT prescribes; subscribers should ignore empty payloads.

``publish`` returns after the broker's PUBACK (QoS 1) / PUBCOMP (QoS 2), which is what "accepted"
means for the outbox. On a broken connection the batch fails retryably; changes the broker already
acknowledged are remembered and not published again on the retry. A refused connection (bad
credentials, TLS failure, broker down) is also retryable: nothing can be delivered until it is
fixed, and the changes wait in the outbox; ``password_file`` is re-read at every connection so a
rotated password is picked up.

TLS and credentials use the shared keys of :mod:`collector.settings`, as the MQTT source does: a
``tls`` table (present: TLS on), ``username`` + ``password_file`` (a file or ``env:NAME``); both
are checked at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Sequence

import aiomqtt

from collector.schema import Alert, AlertStatus, fingerprint, iso
from exporters.base import ExportResult
from exporters.settings import MqttSettings

log = logging.getLogger(__name__)


def alert_topic(prefix: str, alert: Alert) -> str:
    """Where one alert's changes go: per site, kind and incident."""
    site = alert.resource.get("site") or "_"
    return f"{prefix}/alerts/{site}/{alert.kind.value}/{alert.fingerprint}"


def legacy_topic(prefix: str, alert: Alert) -> str | None:
    """The pre-site topic of an incident that fired before fingerprints carried the site.

    Such an incident keeps its old fingerprint (see :class:`analytics.lifecycle.AlertManager`), so
    its fingerprint no longer matches its resource; its retained message sits on the old topic and
    is cleared there with its next change (the site topic then holds it).
    """
    if "site" in alert.resource and fingerprint(alert.kind.value, alert.resource) != alert.fingerprint:
        return f"{prefix}/alerts/{alert.kind.value}/{alert.fingerprint}"
    return None


class MqttExporter:
    """Publishes alert changes; one connection, opened lazily and re-opened after failures."""

    def __init__(self, settings: MqttSettings) -> None:
        self.name = settings.name
        self.settings = settings
        key = f"exporters.{settings.name}"
        # The password and TLS files are read here, at start-up: a missing one stops the service.
        self._password = settings.password_file.resolve(key=f"{key}.password_file") if settings.password_file else None
        self._ssl_context = settings.tls.ssl_context(key=f"{key}.tls") if settings.tls is not None else None
        self._client: aiomqtt.Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._done: set[tuple[str, str, str, int]] = set()  # publishes acknowledged in a retried batch
        self._healthy = True

    @property
    def identifier(self) -> str:
        return self.settings.client_id or f"hciwatch-{self.name}-{socket.gethostname()}"

    def _make_client(self) -> aiomqtt.Client:
        s = self.settings
        password = self._password.current() if self._password is not None else None  # rotation
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=password,
            identifier=self.identifier,
            clean_session=True,
            keepalive=s.keepalive,
            timeout=s.timeout,
            tls_context=self._ssl_context,
            logger=logging.getLogger(f"{__name__}.paho"),
        )

    async def _connect(self) -> aiomqtt.Client:
        if self._client is None:
            stack = contextlib.AsyncExitStack()
            client = self._make_client()
            await asyncio.wait_for(stack.enter_async_context(client), self.settings.timeout)
            self._client, self._stack = client, stack
        return self._client

    async def _disconnect(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def start(self) -> None:
        return None

    async def export(self, batch: Sequence[Alert]) -> ExportResult:
        s = self.settings
        where = f"mqtt://{s.host}:{s.port}"
        try:
            client = await self._connect()
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            await self._disconnect()
            self._healthy = False
            return ExportResult.failure(f"{where}: cannot connect: {type(exc).__name__}: {exc}")
        try:
            for alert in batch:
                await self._publish(client, alert)
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            await self._disconnect()
            self._healthy = False
            return ExportResult.failure(f"{where}: publish failed: {type(exc).__name__}: {exc}")
        self._done.clear()
        self._healthy = True
        return ExportResult.success()

    async def _publish(self, client: aiomqtt.Client, alert: Alert) -> None:
        s = self.settings
        topic = alert_topic(s.topic_prefix, alert)
        payload = json.dumps(alert.to_json(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        # firing: retained; resolved: tell live subscribers, then clear the retained copy
        firing = alert.status is AlertStatus.FIRING
        steps: list[tuple[str, bytes, bool]] = (
            [(topic, payload, True)] if firing else [(topic, payload, False), (topic, b"", True)]
        )
        legacy = legacy_topic(s.topic_prefix, alert)
        if legacy is not None:  # moved to the site topic: its retained copy at the old one must go
            steps.append((legacy, b"", True))
        for i, (where, body, retain) in enumerate(steps):
            key = (alert.fingerprint, alert.status.value, iso(alert.changed_at), i)
            if key in self._done:
                continue
            await client.publish(where, body, qos=s.qos, retain=retain, timeout=s.timeout)
            self._done.add(key)

    async def healthcheck(self) -> bool:
        """Whether the last batch was acknowledged by the broker."""
        return self._healthy

    async def shutdown(self) -> None:
        await self._disconnect()
