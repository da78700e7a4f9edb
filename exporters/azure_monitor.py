"""Alert changes to Azure Monitor Application Insights, through the official Azure exporter.

Each alert change becomes an OpenTelemetry log record (the same record the OTLP sink sends, see
:mod:`exporters.otlp`) and the ``azure-monitor-opentelemetry-exporter`` turns it into an
envelope: a ``MessageData`` item in the ``traces`` table (severityLevel from the OTel severity:
Sev0→4 Critical, Sev1→3 Error, Sev2→2 Warning, Sev3→1 Information, Sev4→0 Verbose), or, with
``as_custom_events = true``, an ``EventData`` item in ``customEvents`` named after the alert kind
(via the ``microsoft.custom_event.name`` attribute). The ``hciwatch.*`` attributes become
``customDimensions``; ``service.name`` / ``service.instance.id`` become cloud role / instance.

How it is wired, and why:

* **No offline storage.** The SDK can park failed batches in a temp directory and resend them
  on its own; the outbox is already the durable layer, and two retry layers would reorder and
  duplicate. So ``disable_offline_storage=True`` and ``retry_total=0`` (azure-core's retry
  policy off): every batch is one request, and its outcome goes back to the outbox.
* **Outcome on the wire.** ``export()`` only says SUCCESS/FAILURE and, without storage, drops
  the retryable part of a 206 partial success. An azure-core ``raw_response_hook`` (a public
  pipeline option) records the status, ``Retry-After`` and TrackResponse of the last request,
  so: 200 → success; 206 with any retryable item error → retryable failure (the whole batch is
  sent again, so accepted items arrive twice: at least once); 206 with only permanent item
  errors → permanent; 401, 403, 408, 429, 500, 502, 503, 504 and no response → retryable, with
  the ``Retry-After`` the service sent (the SDK's own classification); 402/439 (daily cap) and
  other statuses → permanent.
* **Quiet by default.** Unless ``sdk_stats = true``, the SDK's own usage statistics
  ("statsbeat"/"sdkstats") and its remote configuration poll are switched off through their
  documented environment variables (process-wide; an operator's explicit value wins), because
  an on-premises site should not phone anything home except the telemetry it was asked to send.

The connection string is a credential: it comes from ``connection_string_file`` only (a file or
``env:NAME``; see :class:`exporters.settings.AzureMonitorSettings`) and is never logged.
``IngestionEndpoint`` may be ``http://`` (the tests point it at 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter, AzureMonitorMetricExporter
from opentelemetry.sdk._logs.export import LogRecordExportResult

from collector.errors import ConfigError
from collector.schema import Alert
from collector.settings.retry import parse_retry_after
from exporters.base import ExportResult, ThreadedSdkExporter
from exporters.otel_logs import AlertLogEncoder
from exporters.otel_metrics import MetricsSnapshot, OtlpMetrics
from exporters.settings import AzureMonitorSettings

log = logging.getLogger(__name__)

CUSTOM_EVENT_ATTRIBUTE = "microsoft.custom_event.name"
RETRYABLE_STATUS = frozenset({401, 403, 408, 429, 500, 502, 503, 504})
_QUIET_ENV = (
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED",
)


def _quiet_sdk(settings: AzureMonitorSettings) -> None:
    if not settings.sdk_stats:
        for var in _QUIET_ENV:
            os.environ.setdefault(var, "true")
    http_log = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    if http_log.level == logging.NOTSET:
        http_log.setLevel(logging.WARNING)  # it logs every request at INFO otherwise


def _connection_source(settings: AzureMonitorSettings) -> str:
    ref = settings.connection_string_file
    if ref is None or ref.env is not None:
        return f"environment variable {ref.env if ref is not None else 'APPLICATIONINSIGHTS_CONNECTION_STRING'}"
    return f"file {ref.path}"


def _build(cls: type[Any], settings: AzureMonitorSettings, hook: Callable[[Any], None] | None) -> Any:
    """Make an SDK exporter (log or metric) with the connection string read here, at start-up."""
    key = f"exporters.{settings.name}"
    kwargs: dict[str, Any] = {
        "connection_string": settings.read_connection_string(),
        "disable_offline_storage": True,
        "retry_total": 0,
        "timeout": settings.timeout,
    }
    if hook is not None:
        kwargs["raw_response_hook"] = hook
    if settings.managed_identity:
        from azure.identity import ManagedIdentityCredential

        kwargs["credential"] = ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        # the SDK's messages name the problem, never the value; keep it that way
        raise ConfigError(
            f"{key}: the connection string from {_connection_source(settings)} is invalid: {exc}", key=key
        ) from None


class _LastResponse:
    """What the last ingestion request answered (filled by the azure-core response hook)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.retry_after: str | None = None
        self.body: str = ""

    def reset(self) -> None:
        self.status = None
        self.retry_after = None
        self.body = ""

    def __call__(self, pipeline_response: Any) -> None:
        response = pipeline_response.http_response
        self.status = int(response.status_code)
        self.retry_after = response.headers.get("Retry-After")
        try:
            self.body = response.text() if self.status != 200 else ""
        except Exception:  # a body we cannot read only loses detail, not the status
            self.body = ""


class AzureMonitorExporter(ThreadedSdkExporter):
    """Alert changes → Application Insights ``traces`` (or ``customEvents``), one request per batch."""

    def __init__(self, settings: AzureMonitorSettings, *, now: Callable[[], float] = time.time) -> None:
        self.name = settings.name
        self.settings = settings
        self._now = now
        _quiet_sdk(settings)
        self._last = _LastResponse()
        self._sdk: AzureMonitorLogExporter = _build(AzureMonitorLogExporter, settings, self._last)
        self._encoder = AlertLogEncoder(settings.resource.resource_dict())
        self._lock = threading.Lock()
        self._healthy = True

    def _extra(self, alert: Alert) -> Mapping[str, str]:
        return {CUSTOM_EVENT_ATTRIBUTE: alert.kind.value} if self.settings.as_custom_events else {}

    async def start(self) -> None:
        return None

    def _export_sync(self, batch: Sequence[Alert]) -> ExportResult:
        with self._lock:
            records = self._encoder.records(batch, self._extra)
            self._last.reset()
            try:
                result = self._sdk.export(records)
            except Exception as exc:  # the SDK should not raise; keep the batch
                return ExportResult.failure(f"Azure Monitor export raised {type(exc).__name__}: {exc}")
            if result == LogRecordExportResult.SUCCESS:
                return ExportResult.success()
            return self._classify()

    def _classify(self) -> ExportResult:
        status = self._last.status
        if status is None:
            return ExportResult.failure(
                "Azure Monitor: no response (ingestion endpoint unreachable, timed out or client-side rate limit)"
            )
        retry_after = parse_retry_after(self._last.retry_after, self._now())
        if status == 206:
            codes = _item_error_codes(self._last.body)
            retryable = [c for c in codes if c in RETRYABLE_STATUS]
            if retryable or not codes:
                return ExportResult.failure(
                    f"Azure Monitor: partial success, {len(retryable)} items rejected with retryable "
                    f"statuses {sorted(set(retryable))}; the batch is sent again",
                    retry_after=retry_after,
                )
            return ExportResult.failure(
                f"Azure Monitor: partial success, items rejected permanently with statuses {sorted(set(codes))}",
                retryable=False,
            )
        if status in RETRYABLE_STATUS:
            return ExportResult.failure(f"Azure Monitor: HTTP {status}", retry_after=retry_after)
        if status in (402, 439):
            return ExportResult.failure(
                f"Azure Monitor: HTTP {status} (daily ingestion cap reached; "
                "the service drops data until the cap resets)",
                retryable=False,
            )
        return ExportResult.failure(f"Azure Monitor: HTTP {status} (not retryable)", retryable=False)

    async def shutdown(self) -> None:
        await asyncio.to_thread(self._sdk.shutdown)
        self._encoder.shutdown()


def _item_error_codes(body: str) -> list[int]:
    try:
        errors = json.loads(body).get("errors") or []
        return [int(e["statusCode"]) for e in errors]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []


def azure_monitor_metrics(
    settings: AzureMonitorSettings, snapshot: Callable[[], MetricsSnapshot] | None = None
) -> OtlpMetrics:
    """The ``hciwatch.*`` dashboard metrics to Application Insights ``customMetrics``."""
    _quiet_sdk(settings)
    exporter = _build(AzureMonitorMetricExporter, settings, None)
    return OtlpMetrics(
        exporter, settings.resource.resource_dict(), interval=settings.metrics_interval, snapshot=snapshot
    )
