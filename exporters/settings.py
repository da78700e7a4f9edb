"""Validated settings of every sink and of the outbox, plus the secret-reference helpers.

Each ``[[exporters]]`` table of the configuration becomes one of the models below, picked by its
``type`` key. Unknown keys are rejected (``extra="forbid"``) so a typo fails at start-up with its
key path. Secrets never live in the configuration file: they are read from ``*_file`` paths or
from ``env:NAME`` references when the exporter is built, and they never appear in messages.

:func:`build_exporter` imports the sink module lazily, so a site that only writes JSONL does not
pay for loading the Azure SDK.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from collector.errors import ConfigError

if TYPE_CHECKING:
    from exporters.base import Exporter

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENV_PREFIX = "env:"

MiB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Secret references
# ---------------------------------------------------------------------------------------------


def resolve_value(value: str, *, key: str) -> str:
    """Return ``value``, or the environment variable it names when written ``env:NAME``.

    Raises :class:`ConfigError` naming the key and the variable (never the value) when the
    variable is not set, because a silently empty credential only fails later and obscurely.
    """
    if not value.startswith(_ENV_PREFIX):
        return value
    var = value[len(_ENV_PREFIX) :].strip()
    if not var:
        raise ConfigError(f"{key}: 'env:' must be followed by a variable name", key=key)
    if var not in os.environ:
        raise ConfigError(f"{key}: environment variable {var} is not set", key=key)
    return os.environ[var]


def read_secret_file(path: Path, *, key: str) -> str:
    """Read a one-value secret file (surrounding newlines stripped); errors name key and path."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}", key=key) from None
    value = text.strip("\r\n")
    if not value.strip():
        raise ConfigError(f"{key}: {path} is empty", key=key)
    return value


def read_headers_file(path: Path, *, key: str) -> dict[str, str]:
    """Parse a headers file: one ``Name: value`` per line; blank lines and ``#`` comments skipped.

    Values may themselves be ``env:NAME`` references. Errors give the file and line but never
    the value, since these files exist to hold credentials.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}", key=key) from None
    headers: dict[str, str] = {}
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _HEADER_NAME_RE.match(name):
            raise ConfigError(f"{key}: {path}:{lineno}: expected 'Name: value'", key=key)
        headers[name] = resolve_value(value.strip(), key=f"{key} ({path}:{lineno})")
    return headers


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------


class SinkSettings(BaseModel):
    """Keys every ``[[exporters]]`` table accepts: identity, batching and retry policy.

    The outbox keeps one cursor per ``name``: renaming a sink makes it start over as a new sink
    (it sees only changes appended after it first appears).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: str = Field(default="", description="sink name (cursor file name); defaults to the type")
    max_batch: int = Field(default=100, ge=1, le=10_000, description="alert changes per export call")
    max_wait: float = Field(
        default=0.5, ge=0, le=60, description="seconds to wait for a batch to fill before sending it"
    )
    backoff_initial: float = Field(
        default=1.0, gt=0, le=3600, description="first retry delay cap, seconds (full jitter)"
    )
    backoff_max: float = Field(default=60.0, gt=0, le=86_400, description="largest retry delay cap, seconds")
    timeout: float = Field(default=10.0, gt=0, le=600, description="per-request timeout, seconds")

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name"):
            kind = data.get("type") or cls.model_fields["type"].default
            if isinstance(kind, str) and kind:
                data = {**data, "name": kind}
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if v and not _NAME_RE.match(v):
            raise ValueError("use 1-64 letters, digits, '_', '.', '-' (it names the sink's cursor file)")
        return v

    @model_validator(mode="after")
    def _check_backoff(self) -> SinkSettings:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")
        return self


class ResourceSettings(BaseModel):
    """How this site names itself to OpenTelemetry / Azure Monitor (resource attributes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str = Field(default="", description="hciwatch.site resource attribute")
    service_instance_id: str = Field(default="", description="service.instance.id; default hostname")
    deployment_environment: str = Field(default="", description="deployment.environment")
    resource_attributes: dict[str, str] = Field(default_factory=dict, description="extra resource attributes")

    def resource_dict(self) -> dict[str, str]:
        """The resource attributes every record and metric of this sink carries."""
        attrs: dict[str, str] = dict(self.resource_attributes)
        attrs["service.name"] = "hciwatch"
        attrs["service.instance.id"] = self.service_instance_id or socket.gethostname()
        if self.deployment_environment:
            attrs["deployment.environment"] = self.deployment_environment
            attrs["deployment.environment.name"] = self.deployment_environment
        if self.site:
            attrs["hciwatch.site"] = self.site
        return attrs


# ---------------------------------------------------------------------------------------------
# Sinks
# ---------------------------------------------------------------------------------------------


class OtlpSettings(SinkSettings):
    """OTLP logs (alert changes) and metrics (dashboards) to an OpenTelemetry Collector.

    ``endpoint`` is ``host:port`` or a URL for gRPC, and the base URL for HTTP (``/v1/logs`` and
    ``/v1/metrics`` are appended, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` does).
    """

    type: Literal["otlp"] = "otlp"
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    endpoint: str = Field(default="", description="default http://localhost:4317 (grpc) / :4318 (http)")
    headers: dict[str, str] = Field(default_factory=dict, description="values may be env:NAME")
    headers_file: Path | None = Field(default=None, description="'Name: value' lines")
    insecure: bool | None = Field(default=None, description="gRPC without TLS; default: true for http:// endpoints")
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    compression: Literal["none", "gzip"] = "none"
    resource: ResourceSettings = Field(default_factory=ResourceSettings)
    metrics: bool = Field(default=True, description="also export hciwatch.* metrics")
    metrics_interval: float = Field(default=60.0, gt=0, le=3600, description="seconds")

    @model_validator(mode="after")
    def _check_tls(self) -> OtlpSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate and its key)")
        return self

    def resolved_endpoint(self) -> str:
        if self.endpoint:
            return self.endpoint.rstrip("/") if self.protocol == "http/protobuf" else self.endpoint
        return "http://localhost:4317" if self.protocol == "grpc" else "http://localhost:4318"

    def resolved_headers(self) -> dict[str, str]:
        """Headers with ``env:`` references and the headers file applied (file wins)."""
        out = {k: resolve_value(v, key=f"exporters.{self.name}.headers.{k}") for k, v in self.headers.items()}
        if self.headers_file is not None:
            out.update(read_headers_file(self.headers_file, key=f"exporters.{self.name}.headers_file"))
        return out


class AzureMonitorSettings(SinkSettings):
    """Alerts to Application Insights (traces or customEvents) via the Azure Monitor exporter.

    The connection string is a credential (it carries the instrumentation key): it is read from
    ``connection_string_file`` or the environment variable ``connection_string_env``
    (default ``APPLICATIONINSIGHTS_CONNECTION_STRING``), never from this file.
    """

    type: Literal["azure_monitor"] = "azure_monitor"
    connection_string_file: Path | None = None
    connection_string_env: str | None = None
    as_custom_events: bool = Field(default=False, description="customEvents instead of traces")
    managed_identity: bool = Field(default=False, description="authenticate with Entra ID (MSI)")
    managed_identity_client_id: str | None = None
    sdk_stats: bool = Field(default=False, description="let the SDK send its own usage statistics to Microsoft")
    resource: ResourceSettings = Field(default_factory=ResourceSettings)
    metrics: bool = Field(default=False, description="also export hciwatch.* metrics (customMetrics)")
    metrics_interval: float = Field(default=60.0, gt=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _reject_inline_secret(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("connection_string", "instrumentation_key"):
                if key in data:
                    raise ValueError(
                        f"'{key}' is not accepted in the configuration file: it is a credential "
                        "(the instrumentation key lets anyone write to your Application Insights); "
                        "put it in a file readable only by hciwatch and set connection_string_file, "
                        "or in an environment variable and set connection_string_env"
                    )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> AzureMonitorSettings:
        if self.connection_string_file is not None and self.connection_string_env is not None:
            raise ValueError("set connection_string_file or connection_string_env, not both")
        return self

    def read_connection_string(self) -> str:
        key = f"exporters.{self.name}"
        if self.connection_string_file is not None:
            return read_secret_file(self.connection_string_file, key=f"{key}.connection_string_file").strip()
        var = self.connection_string_env or "APPLICATIONINSIGHTS_CONNECTION_STRING"
        value = os.environ.get(var, "").strip()
        if not value:
            raise ConfigError(
                f"{key}.connection_string_env: environment variable {var} is not set (or set connection_string_file)",
                key=f"{key}.connection_string_env",
            )
        return value


class WebhookSettings(SinkSettings):
    """HTTP POST of the Azure Monitor common alert schema (Logic Apps, ITSM, chat bridges)."""

    type: Literal["webhook"] = "webhook"
    url: str = Field(default="", description="http(s) URL, or env:NAME (Logic App URLs carry a SAS sig)")
    url_file: Path | None = Field(default=None, description="file holding the URL (when it has a secret)")
    token_file: Path | None = Field(default=None, description="bearer token file")
    secret_file: Path | None = Field(default=None, description="HMAC-SHA256 signing secret file")
    signature_header: str = "X-Hciwatch-Signature"
    headers: dict[str, str] = Field(default_factory=dict, description="values may be env:NAME")
    subscription_id: str = Field(
        default="00000000-0000-0000-0000-000000000000", description="used in essentials.alertId"
    )
    target_ids: list[str] = Field(default_factory=list, description="ARM resource ids added to alertTargetIDs")
    ca_file: Path | None = None
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://", _ENV_PREFIX)):
            raise ValueError("url must start with http://, https:// or env:")
        return v

    @model_validator(mode="after")
    def _one_url(self) -> WebhookSettings:
        if bool(self.url) == (self.url_file is not None):
            raise ValueError("set exactly one of url and url_file")
        return self

    def resolved_url(self) -> str:
        key = f"exporters.{self.name}"
        if self.url_file is not None:
            url = read_secret_file(self.url_file, key=f"{key}.url_file").strip()
        else:
            url = resolve_value(self.url, key=f"{key}.url")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{key}: the webhook URL must start with http:// or https://", key=key)
        return url

    @field_validator("signature_header")
    @classmethod
    def _check_header(cls, v: str) -> str:
        if not _HEADER_NAME_RE.match(v):
            raise ValueError("not a valid HTTP header name")
        return v


class MqttSettings(SinkSettings):
    """Alert JSON to an MQTT broker: ``<topic_prefix>/alerts/<kind>/<fingerprint>``."""

    type: Literal["mqtt"] = "mqtt"
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = "hciwatch"
    client_id: str = ""
    username: str | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = Field(default=False, description="skip hostname verification (lab only)")
    qos: Literal[1, 2] = 1
    keepalive: int = Field(default=60, ge=5, le=3600)

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "+#\0") or v.startswith("/") or v.endswith("/"):
            raise ValueError("a non-empty topic without wildcards (+, #) or leading/trailing '/'")
        return v

    @model_validator(mode="after")
    def _check_auth(self) -> MqttSettings:
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs username")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class JsonlSettings(SinkSettings):
    """Alert JSON lines appended to a local file, rotated by size (audit trail, log shippers)."""

    type: Literal["jsonl"] = "jsonl"
    path: Path
    max_bytes: int = Field(default=64 * MiB, ge=1024, description="rotate when the file exceeds this")
    backups: int = Field(default=5, ge=0, le=1000, description="rotated files kept (path.1 …)")
    max_wait: float = Field(default=0.0, ge=0, le=60)


class MemorySettings(SinkSettings):
    """An in-process list of batches (tests and the lab); can be told to fail first."""

    type: Literal["memory"] = "memory"
    fail_times: int = Field(default=0, ge=0)
    max_wait: float = Field(default=0.0, ge=0, le=60)


AnySinkSettings = Annotated[
    OtlpSettings | AzureMonitorSettings | WebhookSettings | MqttSettings | JsonlSettings | MemorySettings,
    Field(discriminator="type"),
]

SINK_TYPES: tuple[str, ...] = ("otlp", "azure_monitor", "webhook", "mqtt", "jsonl", "memory")

_SINK_ADAPTER: TypeAdapter[AnySinkSettings] = TypeAdapter(AnySinkSettings)


def parse_sink_settings(data: dict[str, Any]) -> AnySinkSettings:
    """Validate one ``[[exporters]]`` table (raises ``pydantic.ValidationError``)."""
    return _SINK_ADAPTER.validate_python(data)


class OutboxSettings(BaseModel):
    """The durable log between the alert manager and the sinks (``<data_dir>/outbox``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: int = Field(
        default=256 * MiB, ge=64 * 1024, description="disk bound; oldest segments are dropped beyond it"
    )
    segment_bytes: int = Field(default=4 * MiB, ge=4096, description="segment file size")

    @model_validator(mode="after")
    def _check_sizes(self) -> OutboxSettings:
        if self.segment_bytes * 2 > self.max_bytes:
            raise ValueError("segment_bytes must be at most half of max_bytes")
        return self


def build_exporter(settings: AnySinkSettings) -> Exporter:
    """Make the exporter for one validated sink (secrets are read here, at start-up)."""
    if isinstance(settings, OtlpSettings):
        from exporters.otlp import OtlpExporter

        return OtlpExporter(settings)
    if isinstance(settings, AzureMonitorSettings):
        from exporters.azure_monitor import AzureMonitorExporter

        return AzureMonitorExporter(settings)
    if isinstance(settings, WebhookSettings):
        from exporters.webhook import WebhookExporter

        return WebhookExporter(settings)
    if isinstance(settings, MqttSettings):
        from exporters.mqtt import MqttExporter

        return MqttExporter(settings)
    if isinstance(settings, JsonlSettings):
        from exporters.jsonl import JsonlExporter

        return JsonlExporter.from_settings(settings)
    from exporters.memory import MemoryExporter

    return MemoryExporter(name=settings.name, fail_times=settings.fail_times)
