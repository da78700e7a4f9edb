"""Alert changes published to an MQTT broker, with the broker's retained store as "what is firing".

Topic ``<topic_prefix>/alerts/<kind>/<fingerprint>``, payload the alert JSON
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

TLS and credentials use the same keys as the MQTT source: ``tls``, ``ca_file``, ``cert_file``,
``key_file``, ``tls_insecure``, ``username``, ``password_file``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Sequence

import aiomqtt

from collector.schema import Alert, AlertStatus, iso
from exporters.base import ExportResult
from exporters.settings import MqttSettings, read_secret_file

log = logging.getLogger(__name__)


def alert_topic(prefix: str, alert: Alert) -> str:
    return f"{prefix}/alerts/{alert.kind.value}/{alert.fingerprint}"


class MqttExporter:
    """Publishes alert changes; one connection, opened lazily and re-opened after failures."""

    def __init__(self, settings: MqttSettings) -> None:
        self.name = settings.name
        self.settings = settings
        if settings.password_file is not None:  # fail at start-up when it is missing
            read_secret_file(settings.password_file, key=f"exporters.{settings.name}.password_file")
        self._client: aiomqtt.Client | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._done: set[tuple[str, str, str, int]] = set()  # publishes acknowledged in a retried batch
        self._healthy = True

    @property
    def identifier(self) -> str:
        return self.settings.client_id or f"hciwatch-{self.name}-{socket.gethostname()}"

    def _make_client(self) -> aiomqtt.Client:
        s = self.settings
        password = (
            read_secret_file(s.password_file, key=f"exporters.{s.name}.password_file") if s.password_file else None
        )
        tls = None
        if s.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(s.ca_file) if s.ca_file else None,
                certfile=str(s.cert_file) if s.cert_file else None,
                keyfile=str(s.key_file) if s.key_file else None,
            )
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=password,
            identifier=self.identifier,
            clean_session=True,
            keepalive=s.keepalive,
            timeout=s.timeout,
            tls_params=tls,
            tls_insecure=s.tls_insecure if s.tls else None,
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
        steps: list[tuple[bytes, bool]] = [(payload, True)] if firing else [(payload, False), (b"", True)]
        for i, (body, retain) in enumerate(steps):
            key = (alert.fingerprint, alert.status.value, iso(alert.changed_at), i)
            if key in self._done:
                continue
            await client.publish(topic, body, qos=s.qos, retain=retain, timeout=s.timeout)
            self._done.add(key)

    async def healthcheck(self) -> bool:
        """Whether the last batch was acknowledged by the broker."""
        return self._healthy

    async def shutdown(self) -> None:
        await self._disconnect()
