"""Alert state changes as OpenTelemetry log records, and site metrics, over OTLP.

Alerts go out as OTel **log records** (one per state change) because that is what an alert
change is: a timestamped event with a severity and attributes; the OpenTelemetry Collector
routes them to Loki, Elastic, Azure Monitor or Splunk unchanged. Delivery guarantees belong to
the outbox, so the export is synchronous per batch: records are made through a
``LoggerProvider`` whose processor only collects them, then handed to ``OTLPLogExporter.export``
directly, and its SUCCESS/FAILURE becomes the batch's :class:`~exporters.base.ExportResult`. No
``BatchLogRecordProcessor`` (it would acknowledge records before the peer has them).

Severity mapping (Azure Monitor severities onto OTel ``SeverityNumber``; the text keeps "SevN")::

    Sev0 (critical)      → FATAL  21
    Sev1 (error)         → ERROR  17
    Sev2 (warning)       → WARN   13
    Sev3 (informational) → INFO    9
    Sev4 (verbose)       → DEBUG   5

Record body = the alert summary. Attributes: ``hciwatch.alert.kind``, ``.status``,
``.fingerprint``, ``.severity``, ``.starts_at``, ``.ends_at`` (resolved only), ``.runbook`` (when
set), ``.evidence`` (the evidence as a JSON string) and one ``hciwatch.resource.<key>`` per
resource label. Resource: ``service.name=hciwatch``, ``service.instance.id``,
``deployment.environment`` and ``hciwatch.site`` (from settings).

Failure classification follows the OTLP specification: gRPC CANCELLED, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS and HTTP 408/429/502/503/504
or no response at all are retryable (with the peer's RetryInfo / Retry-After when it sent one);
any other status is permanent. The SDK's ``export`` only says SUCCESS or FAILURE, so the status
is observed on the wire: a gRPC client interceptor, and for HTTP a ``requests.Session`` (which
the SDK accepts as a parameter) that remembers the last response.

:class:`OtlpMetrics` exports dashboard metrics (pool usage, congestion scores, firing alerts,
pipeline health) as observable instruments read from the latest snapshot, on a
``PeriodicExportingMetricReader``. Metrics are state, not events: a failed export is simply
superseded by the next one, so they bypass the outbox.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, cast

import grpc
import requests
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from collector.schema import Alert, Severity, iso, to_ms
from exporters.base import ExportResult, ThreadedSdkExporter
from exporters.service_metrics import (
    DASHBOARD_METRICS,
    MetricsSnapshot,
    PipelineHealth,
    PoolStat,
    snapshot_observations,
)
from exporters.settings import OtlpSettings

log = logging.getLogger(__name__)

SEVERITY_NUMBERS: dict[Severity, SeverityNumber] = {
    Severity.SEV0: SeverityNumber.FATAL,
    Severity.SEV1: SeverityNumber.ERROR,
    Severity.SEV2: SeverityNumber.WARN,
    Severity.SEV3: SeverityNumber.INFO,
    Severity.SEV4: SeverityNumber.DEBUG,
}

SCOPE_NAME = "hciwatch.alerts"
EVENT_NAME = "hciwatch.alert"

RETRYABLE_GRPC_CODES = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
RETRYABLE_HTTP_STATUS = frozenset({408, 429, 502, 503, 504})


def _version() -> str:
    try:
        return importlib.metadata.version("hciwatch")
    except importlib.metadata.PackageNotFoundError:
        return "0"


# ---------------------------------------------------------------------------------------------
# Alert → log record
# ---------------------------------------------------------------------------------------------


def alert_attributes(alert: Alert) -> dict[str, str]:
    """The ``hciwatch.*`` attributes of one alert change (see module docstring)."""
    attrs: dict[str, str] = {
        "hciwatch.alert.kind": alert.kind.value,
        "hciwatch.alert.status": alert.status.value,
        "hciwatch.alert.fingerprint": alert.fingerprint,
        "hciwatch.alert.severity": alert.severity.value,
        "hciwatch.alert.starts_at": iso(alert.starts_at),
        "hciwatch.alert.evidence": json.dumps(alert.evidence, sort_keys=True, separators=(",", ":")),
    }
    if alert.ends_at is not None:
        attrs["hciwatch.alert.ends_at"] = iso(alert.ends_at)
    if alert.runbook:
        attrs["hciwatch.alert.runbook"] = alert.runbook
    for key, value in sorted(alert.resource.items()):
        attrs[f"hciwatch.resource.{key}"] = value
    return attrs


class _Collect(LogRecordProcessor):
    """A processor that keeps emitted records for the caller instead of exporting them."""

    def __init__(self) -> None:
        self.records: list[ReadableLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        resource = log_record.resource if log_record.resource is not None else Resource.create({})
        self.records.append(
            ReadableLogRecord(
                log_record=log_record.log_record,
                resource=resource,
                instrumentation_scope=log_record.instrumentation_scope,
                limits=log_record.limits,
            )
        )

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class AlertLogEncoder:
    """Turns alerts into SDK log records with this site's resource (shared with Azure Monitor)."""

    def __init__(self, resource_attributes: Mapping[str, str]) -> None:
        self.resource = Resource.create(dict(resource_attributes))
        self._collect = _Collect()
        self._provider = LoggerProvider(resource=self.resource, shutdown_on_exit=False)
        self._provider.add_log_record_processor(self._collect)
        self._logger = self._provider.get_logger(SCOPE_NAME, _version())
        self._lock = threading.Lock()

    def records(
        self, alerts: Iterable[Alert], extra: Callable[[Alert], Mapping[str, str]] | None = None
    ) -> list[ReadableLogRecord]:
        """One log record per alert change; ``extra`` adds sink-specific attributes."""
        with self._lock:
            self._collect.records = []
            for alert in alerts:
                attrs = alert_attributes(alert)
                if extra is not None:
                    attrs.update(extra(alert))
                self._logger.emit(
                    LogRecord(
                        timestamp=to_ms(alert.changed_at) * 1_000_000,
                        severity_number=SEVERITY_NUMBERS[alert.severity],
                        severity_text=alert.severity.value,
                        body=alert.summary,
                        attributes=attrs,
                        event_name=EVENT_NAME,
                    )
                )
            out, self._collect.records = self._collect.records, []
        return out

    def shutdown(self) -> None:
        self._provider.shutdown()


# ---------------------------------------------------------------------------------------------
# Seeing the wire status behind SUCCESS/FAILURE
# ---------------------------------------------------------------------------------------------


@dataclass
class _WireStatus:
    """What the last request of an export ended with (reset before every export)."""

    grpc_code: grpc.StatusCode | None = None
    http_status: int | None = None
    retry_after: float | None = None
    detail: str = ""

    def reset(self) -> None:
        self.grpc_code = None
        self.http_status = None
        self.retry_after = None
        self.detail = ""


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds to wait: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds and seconds != float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - now, 0.0)


class _StatusInterceptor(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, status: _WireStatus) -> None:
        self._status = status

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        outcome = continuation(client_call_details, request)
        try:
            code = outcome.code()
        except Exception:  # a future without a code: nothing to learn
            return outcome
        self._status.grpc_code = code
        if code is not None and code != grpc.StatusCode.OK:
            self._status.detail = f"gRPC {code.name}: {outcome.details() or ''}".strip()
            self._status.retry_after = _grpc_retry_delay(outcome)
        return outcome


def _grpc_retry_delay(outcome: Any) -> float | None:
    from google.rpc.error_details_pb2 import RetryInfo

    try:
        trailers = dict(outcome.trailing_metadata() or ())
    except Exception:
        return None
    raw = trailers.get("google.rpc.retryinfo-bin")
    if not isinstance(raw, bytes):
        return None
    info = RetryInfo()
    info.ParseFromString(raw)
    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)


class _ObservedGrpcLogExporter(GrpcLogExporter):
    """The SDK's gRPC exporter with a status interceptor on its channel.

    Overrides the SDK hook that (re)creates the channel; should a future SDK stop calling it,
    the interceptor is simply absent and every failure counts as retryable (never lost).
    """

    def __init__(self, status: _WireStatus, **kwargs: Any) -> None:
        self._wire = status
        super().__init__(**kwargs)

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]
        # the SDK declares _channel without a type; the call above has just set it to a grpc.Channel
        channel = grpc.intercept_channel(cast(grpc.Channel, self._channel), _StatusInterceptor(self._wire))
        self._client = self._stub(channel)


class _ObservedSession(requests.Session):
    """A requests session that remembers the last response's status and Retry-After."""

    def __init__(self, status: _WireStatus, now: Callable[[], float]) -> None:
        super().__init__()
        self._wire = status
        self._now = now

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            response = super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]
        except requests.RequestException as exc:
            self._wire.http_status = None
            self._wire.detail = f"{type(exc).__name__}"
            raise
        self._wire.http_status = response.status_code
        if response.status_code >= 300:
            self._wire.detail = f"HTTP {response.status_code} {response.reason or ''}".strip()
            self._wire.retry_after = parse_retry_after(response.headers.get("Retry-After"), self._now())
        return response


def _classify(status: _WireStatus, what: str) -> ExportResult:
    if status.grpc_code is not None and status.grpc_code != grpc.StatusCode.OK:
        retryable = status.grpc_code in RETRYABLE_GRPC_CODES
        return ExportResult.failure(
            f"{what}: {status.detail}", retryable=retryable, retry_after=status.retry_after if retryable else None
        )
    if status.http_status is not None and status.http_status >= 300:
        retryable = status.http_status in RETRYABLE_HTTP_STATUS
        return ExportResult.failure(
            f"{what}: {status.detail}", retryable=retryable, retry_after=status.retry_after if retryable else None
        )
    reason = status.detail or "no response (peer unreachable or timed out)"
    return ExportResult.failure(f"{what}: {reason}", retryable=True)


# ---------------------------------------------------------------------------------------------
# Exporter
# ---------------------------------------------------------------------------------------------


def _read_bytes(path: Any) -> bytes | None:
    return None if path is None else bytes(path.read_bytes())


def _grpc_compression(s: OtlpSettings) -> grpc.Compression:
    return grpc.Compression.Gzip if s.compression == "gzip" else grpc.Compression.NoCompression


def _http_compression(s: OtlpSettings) -> HttpCompression:
    return HttpCompression.Gzip if s.compression == "gzip" else HttpCompression.NoCompression


def _grpc_security(s: OtlpSettings) -> tuple[bool, grpc.ChannelCredentials | None]:
    endpoint = s.resolved_endpoint()
    insecure = s.insecure if s.insecure is not None else endpoint.startswith("http://")
    if insecure:
        return True, None
    return False, grpc.ssl_channel_credentials(
        root_certificates=_read_bytes(s.ca_file),
        private_key=_read_bytes(s.key_file),
        certificate_chain=_read_bytes(s.cert_file),
    )


class OtlpExporter(ThreadedSdkExporter):
    """Alert changes → OTLP logs (gRPC or HTTP/protobuf); one export call per outbox batch."""

    def __init__(self, settings: OtlpSettings, *, now: Callable[[], float] | None = None) -> None:
        import time

        self.name = settings.name
        self.settings = settings
        self._now = now or time.time
        self._headers = settings.resolved_headers()  # fail at start-up on a missing env/file
        self._wire = _WireStatus()
        self._encoder = AlertLogEncoder(settings.resource.resource_dict())
        self._exporter: LogRecordExporter | None = None
        self._lock = threading.Lock()
        self._healthy = True

    @property
    def endpoint(self) -> str:
        s = self.settings
        base = s.resolved_endpoint()
        return f"{base}/v1/logs" if s.protocol == "http/protobuf" else base

    def _build(self) -> LogRecordExporter:
        s = self.settings
        if s.protocol == "grpc":
            insecure, creds = _grpc_security(s)
            return _ObservedGrpcLogExporter(
                self._wire,
                endpoint=s.resolved_endpoint(),
                insecure=insecure,
                credentials=creds,
                headers=self._headers or None,
                timeout=s.timeout,
                compression=_grpc_compression(s),
            )
        return HttpLogExporter(
            endpoint=self.endpoint,
            certificate_file=str(s.ca_file) if s.ca_file else None,
            client_key_file=str(s.key_file) if s.key_file else None,
            client_certificate_file=str(s.cert_file) if s.cert_file else None,
            headers=self._headers,
            timeout=s.timeout,
            compression=_http_compression(s),
            session=_ObservedSession(self._wire, self._now),
        )

    async def start(self) -> None:
        if self._exporter is None:
            self._exporter = await asyncio.to_thread(self._build)

    def _export_sync(self, batch: Sequence[Alert]) -> ExportResult:
        with self._lock:
            if self._exporter is None:
                self._exporter = self._build()
            records = self._encoder.records(batch)
            self._wire.reset()
            try:
                result = self._exporter.export(records)
            except Exception as exc:  # the SDK should not raise; keep the batch
                return ExportResult.failure(f"OTLP export raised {type(exc).__name__}: {exc}")
            if result == LogRecordExportResult.SUCCESS:
                return ExportResult.success()
            return _classify(self._wire, f"OTLP {self.settings.protocol} {self.endpoint}")

    async def shutdown(self) -> None:
        exporter, self._exporter = self._exporter, None
        if exporter is not None:
            await asyncio.to_thread(exporter.shutdown)
        self._encoder.shutdown()


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


class OtlpMetrics:
    """Dashboard metrics as observable instruments over the latest :class:`MetricsSnapshot`.

    Feed it with :meth:`record` (push the latest numbers) or a ``snapshot`` callable (pulled at
    each collection). One instrument per :data:`exporters.service_metrics.DASHBOARD_METRICS`
    entry (name, unit, description and counter/gauge from there; values from
    :func:`~exporters.service_metrics.snapshot_observations`): ``pool.size``/``.used``/``.free``/
    ``.time_to_exhaustion`` with ``network``, ``pool``; ``congestion.score`` with ``host``;
    ``alerts.firing`` with ``kind`` (every kind, zeros included); ``pipeline.samples_in``/
    ``.parse_errors``/``.export_failures`` (observable counters, cumulative) and
    ``pipeline.queue_depth``.
    """

    def __init__(
        self,
        exporter: MetricExporter,
        resource_attributes: Mapping[str, str],
        *,
        interval: float = 60.0,
        snapshot: Callable[[], MetricsSnapshot] | None = None,
    ) -> None:
        self._latest = MetricsSnapshot()
        self._snapshot = snapshot
        self._reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval * 1000)
        self._provider = MeterProvider(
            metric_readers=[self._reader], resource=Resource.create(dict(resource_attributes)), shutdown_on_exit=False
        )
        meter = self._provider.get_meter("hciwatch", _version())
        for m in DASHBOARD_METRICS:  # names, units and help come from the one declaration
            create = meter.create_observable_counter if m.kind == "counter" else meter.create_observable_gauge
            create(m.name, [self._observe(m.name)], unit=m.unit, description=m.help)

    @classmethod
    def from_settings(
        cls, settings: OtlpSettings, snapshot: Callable[[], MetricsSnapshot] | None = None
    ) -> OtlpMetrics:
        s = settings
        headers = s.resolved_headers()
        exporter: MetricExporter
        if s.protocol == "grpc":
            insecure, creds = _grpc_security(s)
            exporter = GrpcMetricExporter(
                endpoint=s.resolved_endpoint(),
                insecure=insecure,
                credentials=creds,
                headers=headers or None,
                timeout=s.timeout,
                compression=_grpc_compression(s),
            )
        else:
            exporter = HttpMetricExporter(
                endpoint=f"{s.resolved_endpoint()}/v1/metrics",
                certificate_file=str(s.ca_file) if s.ca_file else None,
                client_key_file=str(s.key_file) if s.key_file else None,
                client_certificate_file=str(s.cert_file) if s.cert_file else None,
                headers=headers,
                timeout=s.timeout,
                compression=_http_compression(s),
            )
        return cls(exporter, s.resource.resource_dict(), interval=s.metrics_interval, snapshot=snapshot)

    def record(
        self,
        pool_stats: Sequence[PoolStat],
        congestion_scores: Mapping[str, float],
        firing_by_kind: Mapping[str, int],
        pipeline_health: PipelineHealth,
    ) -> None:
        """Replace the numbers the next collection reports."""
        self._latest = MetricsSnapshot(
            tuple(pool_stats), dict(congestion_scores), dict(firing_by_kind), pipeline_health
        )

    def _current(self) -> MetricsSnapshot:
        if self._snapshot is not None:
            try:
                self._latest = self._snapshot()
            except Exception:  # a broken snapshot source must not break the metric pipeline
                log.exception("metrics snapshot callable failed; reporting the previous numbers")
        return self._latest

    def _observe(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            for attrs, value in snapshot_observations(self._current())[name]:
                yield Observation(value, dict(attrs))

        return observe

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Collect and export now (tests, replay end, shutdown)."""
        return bool(self._provider.force_flush(int(timeout * 1000)))

    def shutdown(self) -> None:
        self._provider.shutdown()
