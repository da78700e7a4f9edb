"""Alert state changes as OpenTelemetry log records, and site metrics, over OTLP.

Alerts go out as OTel **log records** (one per state change) because that is what an alert
change is: a timestamped event with a severity and attributes; the OpenTelemetry Collector
routes them to Loki, Elastic, Azure Monitor or Splunk unchanged. Delivery guarantees belong to
the outbox, so the export is synchronous per batch: records are made through a
``LoggerProvider`` whose processor only collects them, then handed to ``OTLPLogExporter.export``
directly, and its SUCCESS/FAILURE becomes the batch's :class:`~exporters.base.ExportResult`. No
``BatchLogRecordProcessor`` (it would acknowledge records before the peer has them).

The records are encoded by :mod:`exporters.otel_logs` (severity mapping, attributes, resource),
shared with the Azure Monitor sink. TLS comes from the shared ``tls`` table
(:class:`collector.settings.TlsClientSettings`); ``tls.server_name`` becomes gRPC's
``grpc.ssl_target_name_override``.

Failure classification follows the OTLP specification: gRPC CANCELLED, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS and HTTP 408/429/502/503/504
or no response at all are retryable (with the peer's RetryInfo / Retry-After when it sent one);
any other status is permanent. The SDK's ``export`` only says SUCCESS or FAILURE, so the status
is observed on the wire: a gRPC client interceptor, and for HTTP a ``requests.Session`` (which
the SDK accepts as a parameter) that remembers the last response.

:func:`otlp_metrics` sends the dashboard metrics of :mod:`exporters.otel_metrics` to the same
endpoint. Metrics are state, not events: a failed export is superseded by the next one, so they
bypass the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import requests
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter

from collector.schema import Alert
from collector.settings.retry import parse_retry_after
from exporters.base import ExportResult, ThreadedSdkExporter
from exporters.otel_logs import AlertLogEncoder
from exporters.otel_metrics import MetricsSnapshot, OtlpMetrics, PipelineHealth, PoolStat
from exporters.settings import OtlpSettings

__all__ = ["MetricsSnapshot", "OtlpExporter", "OtlpMetrics", "PipelineHealth", "PoolStat", "otlp_metrics"]

log = logging.getLogger(__name__)

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


class _StatusInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
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
        channel = grpc.intercept_channel(self._channel, _StatusInterceptor(self._wire))
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


def _http_tls(s: OtlpSettings) -> tuple[str | None, str | None, str | None]:
    """The HTTP exporters' (certificate_file, client_key_file, client_certificate_file) from ``tls``."""
    files = s.tls.files() if s.tls is not None else {}
    ca, key, cert = (files.get(k) for k in ("ca_file", "key_file", "cert_file"))
    return (str(ca) if ca else None, str(key) if key else None, str(cert) if cert else None)


def _grpc_options(s: OtlpSettings) -> tuple[tuple[str, str]] | None:
    """``tls.server_name`` as gRPC's target-name override (the name the certificate must carry)."""
    if s.tls is not None and s.tls.server_name:
        return (("grpc.ssl_target_name_override", s.tls.server_name),)
    return None


def _grpc_compression(s: OtlpSettings) -> grpc.Compression:
    return grpc.Compression.Gzip if s.compression == "gzip" else grpc.Compression.NoCompression


def _http_compression(s: OtlpSettings) -> HttpCompression:
    return HttpCompression.Gzip if s.compression == "gzip" else HttpCompression.NoCompression


def _grpc_security(s: OtlpSettings) -> tuple[bool, grpc.ChannelCredentials | None]:
    endpoint = s.resolved_endpoint()
    insecure = s.insecure if s.insecure is not None else endpoint.startswith("http://")
    if insecure:
        return True, None
    files = s.tls.files() if s.tls is not None else {}
    return False, grpc.ssl_channel_credentials(
        root_certificates=_read_bytes(files.get("ca_file")),
        private_key=_read_bytes(files.get("key_file")),
        certificate_chain=_read_bytes(files.get("cert_file")),
    )


class OtlpExporter(ThreadedSdkExporter):
    """Alert changes → OTLP logs (gRPC or HTTP/protobuf); one export call per outbox batch."""

    def __init__(self, settings: OtlpSettings, *, now: Callable[[], float] | None = None) -> None:
        import time

        self.name = settings.name
        self.settings = settings
        self._now = now or time.time
        self._headers = settings.resolved_headers()  # fail at start-up on a missing env/file
        settings.check_tls_files()
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
                channel_options=_grpc_options(s),
            )
        ca, key, cert = _http_tls(s)
        return HttpLogExporter(
            endpoint=self.endpoint,
            certificate_file=ca,
            client_key_file=key,
            client_certificate_file=cert,
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


def otlp_metrics(settings: OtlpSettings, snapshot: Callable[[], MetricsSnapshot] | None = None) -> OtlpMetrics:
    """Dashboard metrics over this sink's OTLP endpoint (gRPC or HTTP), with its TLS and headers."""
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
            channel_options=_grpc_options(s),
        )
    else:
        ca, key, cert = _http_tls(s)
        exporter = HttpMetricExporter(
            endpoint=f"{s.resolved_endpoint()}/v1/metrics",
            certificate_file=ca,
            client_key_file=key,
            client_certificate_file=cert,
            headers=headers,
            timeout=s.timeout,
            compression=_http_compression(s),
        )
    return OtlpMetrics(exporter, s.resource.resource_dict(), interval=s.metrics_interval, snapshot=snapshot)
