"""Alert changes as OpenTelemetry SDK log records: the encoding the OTLP and Azure Monitor sinks share.

Severity mapping (Azure Monitor severities onto OTel ``SeverityNumber``; the text keeps "SevN")::

    Sev0 (critical)      → FATAL  21
    Sev1 (error)         → ERROR  17
    Sev2 (warning)       → WARN   13
    Sev3 (informational) → INFO    9
    Sev4 (verbose)       → DEBUG   5

Record body = the alert summary. Attributes: ``hciwatch.alert.kind``, ``.status``,
``.fingerprint``, ``.severity``, ``.starts_at``, ``.ends_at`` (resolved only), ``.runbook`` (when
set), ``.evidence`` (the evidence as a JSON string) and one ``hciwatch.resource.<key>`` per
resource label. Only the OpenTelemetry SDK is imported here, no exporter (gRPC, HTTP, Azure).
"""

from __future__ import annotations

import importlib.metadata
import json
import threading
from collections.abc import Callable, Iterable, Mapping

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource

from collector.schema import Alert, Severity, iso, to_ms

SEVERITY_NUMBERS: dict[Severity, SeverityNumber] = {
    Severity.SEV0: SeverityNumber.FATAL,
    Severity.SEV1: SeverityNumber.ERROR,
    Severity.SEV2: SeverityNumber.WARN,
    Severity.SEV3: SeverityNumber.INFO,
    Severity.SEV4: SeverityNumber.DEBUG,
}

SCOPE_NAME = "hciwatch.alerts"
EVENT_NAME = "hciwatch.alert"


def package_version() -> str:
    """The installed hciwatch version (the instrumentation scope and meter version)."""
    try:
        return importlib.metadata.version("hciwatch")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def alert_attributes(alert: Alert) -> dict[str, str]:
    """The ``hciwatch.*`` attributes of one alert change (see module docstring)."""
    attrs: dict[str, str] = {
        "hciwatch.alert.kind": alert.kind.value,
        "hciwatch.alert.status": alert.status.value,
        "hciwatch.alert.fingerprint": alert.fingerprint,
        "hciwatch.alert.idempotency_key": alert.idempotency_key,
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
        self._logger = self._provider.get_logger(SCOPE_NAME, package_version())
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
