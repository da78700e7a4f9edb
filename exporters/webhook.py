"""Alert changes POSTed as the Azure Monitor *common alert schema* (one alert per request).

Why that schema: Logic Apps, Automation runbooks, ITSM connectors, Teams/Slack bridges and most
incident tools already parse it for Azure Monitor alerts, so hciwatch alerts drop into the same
automation. Fields (``data.essentials``):

* ``alertId`` ``/subscriptions/<subscription_id>/providers/Microsoft.AlertsManagement/alerts/
  <uuid5(fingerprint)>``: stable per fingerprint, so receivers pair Fired with Resolved;
* ``alertRule`` = alert kind, ``severity`` = Sev0…Sev4, ``signalType`` = ``Log``,
  ``monitorCondition`` = ``Fired`` / ``Resolved``, ``monitoringService`` = ``hciwatch``;
* ``alertTargetIDs``: configured ``target_ids`` plus resource label values that are ARM ids
  (``/subscriptions/…``), lower-cased as Azure does; ``configurationItems``: the host, node,
  cluster, IP, network and target labels; ``originAlertId`` = fingerprint;
* ``firedDateTime`` = starts_at, ``resolvedDateTime`` (resolved only) = ends_at,
  ``description`` = summary, ``essentialsVersion`` / ``alertContextVersion`` = ``1.0``.

``data.alertContext`` carries the evidence, runbook, status and change time;
``data.customProperties`` the resource labels.

Authentication: the shared HTTP client keys of :mod:`collector.settings` (``bearer_token_file``
adds ``Authorization: Bearer <token>``, ``username`` + ``password_file`` basic auth; each a file
or ``env:NAME``, checked at start-up); ``secret_file`` adds ``<signature_header>: sha256=<hex
HMAC-SHA256 of the exact body>``. Files are re-read for every batch, so rotated credentials are
picked up without a restart. TLS: the shared ``tls`` table.

Outcome per batch: the alerts are posted in order. A 2xx moves on; 408, 429, 5xx and transport
errors stop the batch as a retryable failure carrying the ``Retry-After`` (seconds or HTTP date)
— alerts of the batch already accepted are remembered and not posted again on the retry. Other
statuses (4xx, 3xx: the URL or payload is wrong) are permanent for that alert: it is logged and
the rest of the batch is still posted; the batch then reports a permanent failure so the outbox
counts it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from collector.schema import Alert, AlertStatus, iso
from collector.settings.retry import parse_retry_after
from exporters.base import ExportResult
from exporters.settings import WebhookSettings, resolve_value

log = logging.getLogger(__name__)

SCHEMA_ID = "azureMonitorCommonAlertSchema"
ALERT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/hciwatch/alerts")
CONFIGURATION_ITEM_LABELS = ("host", "node", "cluster", "ip", "network", "target")
RETRYABLE_STATUS = frozenset({408, 429})


def alert_id(fingerprint: str, subscription_id: str) -> str:
    """The essentials.alertId of an incident: same value for its Fired and Resolved changes."""
    return (
        f"/subscriptions/{subscription_id}/providers/Microsoft.AlertsManagement/alerts/"
        f"{uuid.uuid5(ALERT_ID_NAMESPACE, fingerprint)}"
    )


def common_alert_schema(
    alert: Alert, *, subscription_id: str = "00000000-0000-0000-0000-000000000000", target_ids: Sequence[str] = ()
) -> dict[str, Any]:
    """The common alert schema document for one alert change."""
    resource = dict(sorted(alert.resource.items()))
    targets = [t.lower() for t in target_ids]
    targets += [v.lower() for v in resource.values() if v.lower().startswith("/subscriptions/")]
    items = [resource[k] for k in CONFIGURATION_ITEM_LABELS if resource.get(k)]
    essentials: dict[str, Any] = {
        "alertId": alert_id(alert.fingerprint, subscription_id),
        "alertRule": alert.kind.value,
        "severity": alert.severity.value,
        "signalType": "Log",
        "monitorCondition": "Fired" if alert.status is AlertStatus.FIRING else "Resolved",
        "monitoringService": "hciwatch",
        "alertTargetIDs": list(dict.fromkeys(targets)),
        "configurationItems": list(dict.fromkeys(items)),
        "originAlertId": alert.fingerprint,
        "firedDateTime": iso(alert.starts_at),
        "description": alert.summary,
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    if alert.ends_at is not None:
        essentials["resolvedDateTime"] = iso(alert.ends_at)
    context = {
        "kind": alert.kind.value,
        "status": alert.status.value,
        "changedDateTime": iso(alert.changed_at),
        "idempotencyKey": alert.idempotency_key,
        "evidence": alert.evidence,
        "runbook": alert.runbook,
    }
    return {
        "schemaId": SCHEMA_ID,
        "data": {"essentials": essentials, "alertContext": context, "customProperties": resource or None},
    }


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment: safe to log (Logic App URLs carry a SAS sig)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def sign(body: bytes, secret: str) -> str:
    """The signature header value: ``sha256=<hex HMAC-SHA256 of body>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _key(a: Alert) -> tuple[str, str, str]:
    return (a.fingerprint, a.status.value, iso(a.changed_at))


class WebhookExporter:
    """POSTs each alert change of a batch, in order, to ``settings.url``."""

    def __init__(self, settings: WebhookSettings, *, now: Callable[[], float] = time.time) -> None:
        self.name = settings.name
        self.settings = settings
        self._now = now
        self._url = settings.resolved_url()
        self._shown_url = redact_url(self._url)
        self._static_headers = {
            k: resolve_value(v, key=f"exporters.{settings.name}.headers.{k}") for k, v in settings.headers.items()
        }
        key = f"exporters.{settings.name}"
        # Credentials and TLS files are read here, at start-up: a missing one stops the service.
        self._auth = settings.resolve_auth(key=key)
        self._secret = settings.secret_file.resolve(key=f"{key}.secret_file") if settings.secret_file else None
        self._ssl_context = settings.ssl_context(key=key)
        self._session: aiohttp.ClientSession | None = None
        self._accepted: set[tuple[str, str, str]] = set()  # progress inside a batch being retried
        self._healthy = True

    async def start(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                connector=aiohttp.TCPConnector(ssl=self._ssl_context or True),
                headers={"User-Agent": "hciwatch-webhook"},
            )

    async def export(self, batch: Sequence[Alert]) -> ExportResult:
        await self.start()
        auth = self._auth.header()  # files are re-read (rotation); a vanished one keeps its last value
        secret = self._secret.current() if self._secret is not None else None
        rejected: list[str] = []
        for alert in batch:
            key = _key(alert)
            if key in self._accepted:
                continue
            outcome = await self._post(alert, auth, secret)
            if outcome is None:
                self._accepted.add(key)
                continue
            if outcome.retryable:
                self._healthy = False
                return outcome
            log.error(
                "webhook %s: alert %s (%s) rejected permanently: %s",
                self.name,
                alert.fingerprint,
                alert.status.value,
                outcome.error,
            )
            rejected.append(outcome.error)
        self._accepted.clear()
        self._healthy = not rejected
        if rejected:
            return ExportResult.failure(
                f"{len(rejected)} of {len(batch)} alert changes rejected: {rejected[0]}", retryable=False
            )
        return ExportResult.success()

    async def _post(self, alert: Alert, auth: str | None, secret: str | None) -> ExportResult | None:
        s = self.settings
        doc = common_alert_schema(alert, subscription_id=s.subscription_id, target_ids=s.target_ids)
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        # the same change posted twice (retry, handover) carries the same key: receivers de-duplicate
        headers = {**self._static_headers, "Content-Type": "application/json", "Idempotency-Key": alert.idempotency_key}
        if auth:
            headers["Authorization"] = auth
        if secret:
            headers[s.signature_header] = sign(body, secret)
        assert self._session is not None
        try:
            async with self._session.post(self._url, data=body, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), self._now())
                await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            detail = str(exc).replace(self._url, self._shown_url)
            query = urlsplit(self._url).query
            if query:
                detail = detail.replace(query, "…")
            return ExportResult.failure(f"POST {self._shown_url}: {type(exc).__name__} {detail}".strip())
        if 200 <= status < 300:
            return None
        what = f"POST {self._shown_url}: HTTP {status}"
        if status >= 500 or status in RETRYABLE_STATUS:
            return ExportResult.failure(what, retry_after=retry_after)
        return ExportResult.failure(what, retryable=False)

    async def healthcheck(self) -> bool:
        """Whether the last batch went through (no probe requests of its own)."""
        return self._healthy

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
