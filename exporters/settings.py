"""Validated settings of every sink and of the outbox.

Each ``[[exporters]]`` table of the configuration becomes one of the models below, picked by its
``type`` key through :mod:`exporters.registry`. Unknown keys are rejected (``extra="forbid"``) so
a typo fails at start-up with its key path. TLS, secrets, HTTP client and retry keys are the
shared vocabulary of :mod:`collector.settings` (the same keys as the sources): secrets are
``*_file`` keys holding a path or ``env:NAME``, read when the exporter is built and never shown.

This module imports no sink: :func:`exporters.registry.build_exporter` loads the one a table
names, so a site that only writes JSONL does not pay for loading the Azure SDK.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from collector.errors import ConfigError
from collector.settings import (
    HttpClientSettings,
    Renamed,
    RetrySettings,
    SecretRef,
)
from collector.settings.deprecated import RenamedKeys, env_ref, invert
from collector.settings.secrets import ENV_PREFIX
from collector.settings.tls import TlsTable

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

MiB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Inline values and headers files
# ---------------------------------------------------------------------------------------------


def resolve_value(value: str, *, key: str) -> str:
    """``value`` itself, or the environment variable it names when written ``env:NAME``.

    For keys that are usually plain but may carry a credential (header values, a URL with a
    signature); a ``*_file`` key is a :class:`~collector.settings.SecretRef` instead.
    """
    if not value.startswith(ENV_PREFIX):
        return value
    try:
        ref = SecretRef.parse(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}", key=key) from None
    return ref.read(key=key)


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


class SinkSettings(RetrySettings, RenamedKeys):
    """Keys every ``[[exporters]]`` table accepts: identity, batching and retry policy.

    The outbox keeps one cursor per ``name``: renaming a sink makes it start over as a new sink
    (it sees only changes appended after it first appears).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    section: ClassVar[str] = "exporters"

    type: str
    name: str = Field(default="", description="sink name (cursor file name); defaults to the type")
    max_batch: int = Field(default=100, ge=1, le=10_000, description="alert changes per export call")
    max_wait: float = Field(
        default=0.5, ge=0, le=60, description="seconds to wait for a batch to fill before sending it"
    )
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


class ResourceSettings(BaseModel):
    """How this site names itself to OpenTelemetry / Azure Monitor (resource attributes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: str = Field(default="", description="hciwatch.site resource attribute; default: [site] name")
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


_TLS_FILE_RENAMES = (
    Renamed("ca_file", "tls.ca_file"),
    Renamed("cert_file", "tls.cert_file"),
    Renamed("key_file", "tls.key_file"),
)


class OtlpSettings(SinkSettings):
    """OTLP logs (alert changes) and metrics (dashboards) to an OpenTelemetry Collector.

    ``endpoint`` is ``host:port`` or a URL for gRPC, and the base URL for HTTP (``/v1/logs`` and
    ``/v1/metrics`` are appended, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` does). ``insecure`` is the
    gRPC plaintext switch (no TLS at all); the ``tls`` table configures TLS when it is used.
    """

    renamed_keys = _TLS_FILE_RENAMES

    type: Literal["otlp"] = "otlp"
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    endpoint: str = Field(default="", description="default http://localhost:4317 (grpc) / :4318 (http)")
    headers: dict[str, str] = Field(default_factory=dict, description="values may be env:NAME")
    headers_file: Path | None = Field(default=None, description="'Name: value' lines")
    insecure: bool | None = Field(default=None, description="gRPC without TLS; default: true for http:// endpoints")
    tls: TlsTable = Field(default=None, description="CA, client certificate, server_name (gRPC)")
    compression: Literal["none", "gzip"] = "none"
    resource: ResourceSettings = Field(default_factory=ResourceSettings)
    metrics: bool = Field(default=True, description="also export hciwatch.* metrics")
    metrics_interval: float = Field(default=60.0, gt=0, le=3600, description="seconds")

    @model_validator(mode="after")
    def _check_tls(self) -> OtlpSettings:
        tls = self.tls
        if tls is not None and tls.insecure_skip_verify:
            raise ValueError(
                "tls.insecure_skip_verify is not available for OTLP (the OpenTelemetry exporters always verify); "
                "give tls.ca_file, or insecure = true for a plaintext gRPC endpoint"
            )
        if tls is not None and tls.server_name and self.protocol != "grpc":
            raise ValueError("tls.server_name works with protocol = grpc only (the HTTP exporter cannot override it)")
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

    def check_tls_files(self) -> None:
        """Load the TLS files once (start-up), so a bad path is a config error with its key."""
        if self.tls is not None:
            self.tls.ssl_context(key=f"exporters.{self.name}.tls")


class AzureMonitorSettings(SinkSettings):
    """Alerts to Application Insights (traces or customEvents) via the Azure Monitor exporter.

    The connection string is a credential (it carries the instrumentation key): it is read from
    ``connection_string_file`` (a file, or ``env:NAME``; default: the environment variable
    ``APPLICATIONINSIGHTS_CONNECTION_STRING``), never from this file. TLS is the Azure SDK's
    (public Azure endpoints, system CAs): no ``tls`` table.
    """

    renamed_keys = (Renamed("connection_string_env", "connection_string_file", env_ref),)

    type: Literal["azure_monitor"] = "azure_monitor"
    connection_string_file: SecretRef | None = Field(
        default=None, description="a file or env:NAME; default env:APPLICATIONINSIGHTS_CONNECTION_STRING"
    )
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
                        'or in an environment variable and set connection_string_file = "env:NAME"'
                    )
        return data

    def read_connection_string(self) -> str:
        key = f"exporters.{self.name}.connection_string_file"
        ref = self.connection_string_file or SecretRef(env="APPLICATIONINSIGHTS_CONNECTION_STRING")
        try:
            return ref.read(key=key).strip()
        except ConfigError as exc:
            if self.connection_string_file is None:
                raise ConfigError(f"{exc} (or set connection_string_file)", key=key) from None
            raise


class WebhookSettings(HttpClientSettings, SinkSettings):
    """HTTP POST of the Azure Monitor common alert schema (Logic Apps, ITSM, chat bridges).

    Authentication and TLS are the shared HTTP client keys (``bearer_token_file`` or ``username``
    + ``password_file``, a ``tls`` table); ``secret_file`` signs each body with HMAC-SHA256.
    """

    renamed_keys = (
        Renamed("token_file", "bearer_token_file"),
        Renamed("ca_file", "tls.ca_file"),
        Renamed("verify_tls", "tls.insecure_skip_verify", invert),
    )

    type: Literal["webhook"] = "webhook"
    url: str = Field(default="", description="http(s) URL, or env:NAME (Logic App URLs carry a SAS sig)")
    url_file: SecretRef | None = Field(default=None, description="the URL when it carries a secret: a file or env:NAME")
    secret_file: SecretRef | None = Field(default=None, description="HMAC-SHA256 signing secret: a file or env:NAME")
    signature_header: str = "X-Hciwatch-Signature"
    headers: dict[str, str] = Field(default_factory=dict, description="values may be env:NAME")
    subscription_id: str = Field(
        default="00000000-0000-0000-0000-000000000000", description="used in essentials.alertId"
    )
    target_ids: list[str] = Field(default_factory=list, description="ARM resource ids added to alertTargetIDs")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://", ENV_PREFIX)):
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
            url = self.url_file.read(key=f"{key}.url_file").strip()
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
    """Alert JSON to an MQTT broker: ``<topic_prefix>/alerts/<site>/<kind>/<fingerprint>``.

    TLS is on when a ``tls`` table is given (``tls = true`` for system CAs and no other setting).
    """

    renamed_keys = (
        *_TLS_FILE_RENAMES,
        Renamed(
            "tls_insecure",
            "tls.insecure_skip_verify",
            note="it now skips the chain check too; to accept a certificate for another name, set tls.server_name",
        ),
    )

    type: Literal["mqtt"] = "mqtt"
    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = "hciwatch"
    client_id: str = ""
    username: str | None = None
    password_file: SecretRef | None = Field(default=None, description="the password: a file or env:NAME")
    tls: TlsTable = Field(default=None, description="TLS client settings; absent: plain MQTT")
    qos: Literal[1, 2] = 1
    keepalive: int = Field(default=60, ge=5, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _tls_off(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("tls") is False:  # old `tls = false`: its TLS keys never applied
            unused = ("tls", "ca_file", "cert_file", "key_file", "tls_insecure")
            data = {k: v for k, v in data.items() if k not in unused}
        return data

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
