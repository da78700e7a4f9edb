"""The whole configuration: the collector's sections plus analytics, exporters and the API.

Collector, analytics and exporters each own the models for their sections; this composition
root validates a file against all of them in one pass so a user sees every problem at once,
each with ``file:line: key.path: why``. ``hciwatch check-config`` prints exactly these lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from analytics.settings import AnalyticsSettings
from collector.config import (
    COLLECTOR_KEYS,
    CollectorSettings,
    collector_section,
    load_toml,
    locate,
    validate_section,
    validate_sources,
)
from collector.domains import DomainSettings, FleetSettings, check_domains, domain_of
from collector.errors import ConfigError
from collector.settings import SecretRef
from collector.sources.base import SourceSettings
from exporters.settings import OutboxSettings, ResourceSettings


class ApiSettings(BaseModel):
    """The service's HTTP API (``hciwatch run``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = Field(default="127.0.0.1:8080", description="host:port to bind")
    token_file: SecretRef | None = Field(default=None, description="file holding the bearer token (or env:NAME)")
    allow_unauthenticated: bool = Field(default=False, description="only for local testing")
    query_row_limit: int = Field(default=10_000, ge=1, le=10_000_000)
    query_timeout: float = Field(default=10.0, gt=0, le=600)
    max_connections: int = Field(default=512, ge=1, description="open connections; more are closed at once")
    header_timeout: float = Field(default=10.0, gt=0, description="seconds for a connection's request headers")
    keepalive_timeout: float = Field(default=15.0, gt=0, description="idle seconds between requests")
    body_timeout: float = Field(default=30.0, gt=0, description="seconds to receive a request body")
    query_memory_bytes: int = Field(
        default=1 << 30, ge=64 << 20, description="hard memory cap of one query's worker process"
    )


TOP_LEVEL_KEYS = (*COLLECTOR_KEYS, "sources", "analytics", "exporters", "outbox", "api", "domains", "fleet")


@dataclass(frozen=True)
class AppConfig:
    """Validated settings for every part of the flow."""

    collector: CollectorSettings = field(default_factory=CollectorSettings)
    sources: list[SourceSettings] = field(default_factory=list)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)
    exporters: list[Any] = field(default_factory=list)
    api: ApiSettings = field(default_factory=ApiSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    domains: list[DomainSettings] = field(default_factory=list)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    path: Path | None = None

    @property
    def domain(self) -> DomainSettings:
        """The network domain this instance's site belongs to (by default one named after the site)."""
        return domain_of(self.collector.site.name, self.domains)

    @property
    def data_dir(self) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        p = Path(self.collector.data_dir).expanduser()
        return p if p.is_absolute() else (base / p)


def exporter_models() -> dict[str, type[BaseModel]]:
    """``[[exporters]] type`` → its settings model (from :mod:`exporters.registry`)."""
    from exporters.registry import sink_settings_models

    return dict(sink_settings_models())


def _validate_exporters(raw: Any, *, file: str, text: str, problems: list[str]) -> list[Any]:
    models = exporter_models()
    out: list[Any] = []
    if raw is None:
        return out
    if not isinstance(raw, list):
        problems.append(f"{file}: exporters: must be an array of tables ([[exporters]])")
        return out
    for i, item in enumerate(raw):
        prefix = f"exporters[{i}]"
        line = locate(text, prefix)
        where = f"{file}:{line}" if line else file
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in models:
            problems.append(
                f"{where}: {prefix}.type: {'missing' if kind is None else repr(kind)} "
                f"(allowed: {', '.join(sorted(models))})"
            )
            continue
        model = validate_section(models[kind], item, file=file, text=text, prefix=prefix, problems=problems)
        if model is not None:
            out.append(model)
    return out


def _validate_domains(raw: Any, *, file: str, text: str, problems: list[str]) -> list[DomainSettings]:
    out: list[DomainSettings] = []
    if raw is None:
        return out
    if not isinstance(raw, list):
        problems.append(f"{file}: domains: must be an array of tables ([[domains]])")
        return out
    for i, item in enumerate(raw):
        model = validate_section(DomainSettings, item, file=file, text=text, prefix=f"domains[{i}]", problems=problems)
        if model is not None:
            out.append(model)
    for i, key, why in check_domains(out):
        problems.append(f"{file}:{locate(text, f'domains[{i}].{key}') or 1}: domains[{i}].{key}: {why}")
    return out


def _check_fleet(
    fleet: FleetSettings, collector: CollectorSettings, domains: list[DomainSettings], *, file: str, text: str
) -> list[str]:
    """What ``[fleet]`` needs from the rest of the file (one line each, with the key path)."""
    if not fleet.enabled:
        return []

    def at(key: str, why: str) -> str:
        return f"{file}:{locate(text, key) or locate(text, 'fleet') or 1}: {key}: {why}"

    out = []
    url = collector.store.lake.url
    if not url.startswith(("az://", "abfs://", "abfss://")):
        out.append(
            at(
                "fleet.lease",
                "the azure_blob lease lives in the lake's container: set store.lake.url to az:// or abfs[s]://",
            )
        )
    dom = domain_of(collector.site.name, domains)
    if dom.sites != [collector.site.name]:
        i = domains.index(dom)
        out.append(
            at(
                f"domains[{i}].sites",
                f"domain {dom.id!r} spans sites {', '.join(dom.sites)}; an instance evaluates one site's data, "
                "so a multi-site domain is not supported yet (give each site its own domain)",
            )
        )
    return out


def _check_fleet_sessions(fleet: FleetSettings, sources: list[Any], *, file: str, text: str) -> list[str]:
    """With ``[fleet]``, a persistent MQTT session must belong to the domain, not to the machine."""
    if not fleet.enabled:
        return []
    out = []
    for i, src in enumerate(sources):
        client_id = getattr(src, "client_id", "")
        if getattr(src, "clean_session", True) or "{hostname}" not in client_id:
            continue
        key = f"sources[{i}].client_id"
        out.append(
            f"{file}:{locate(text, key) or 1}: {key}: with [fleet] the persistent session must follow the domain, "
            "not the machine (its queued messages would be lost at a takeover): use e.g. 'hciwatch-{domain}'"
        )
    return out


def _with_site(sink: Any, site: str) -> Any:
    """A sink's OTLP/Azure Monitor resource names the site unless it says otherwise.

    Every record then carries ``hciwatch.site``, so a collector shared by a fleet can tell sites
    apart without each site repeating its name in every sink.
    """
    resource = getattr(sink, "resource", None)
    if not isinstance(resource, ResourceSettings) or resource.site:
        return sink
    return sink.model_copy(update={"resource": resource.model_copy(update={"site": site})})


def parse_config(raw: dict[str, Any], text: str, *, file: str, path: Path | None = None) -> AppConfig:
    """Validate a decoded config; raises one :class:`ConfigError` listing every problem."""
    problems: list[str] = []
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            line = locate(text, key)
            problems.append(f"{file}:{line or 1}: {key}: unknown top-level key (allowed: {', '.join(TOP_LEVEL_KEYS)})")
    collector = validate_section(
        CollectorSettings, collector_section(raw), file=file, text=text, prefix="", problems=problems
    )
    sources = validate_sources(raw.get("sources"), file=file, text=text, problems=problems)
    analytics = validate_section(
        AnalyticsSettings, raw.get("analytics", {}), file=file, text=text, prefix="analytics", problems=problems
    )
    exporters = _validate_exporters(raw.get("exporters"), file=file, text=text, problems=problems)
    api = validate_section(ApiSettings, raw.get("api", {}), file=file, text=text, prefix="api", problems=problems)
    outbox = validate_section(
        OutboxSettings, raw.get("outbox", {}), file=file, text=text, prefix="outbox", problems=problems
    )
    domains = _validate_domains(raw.get("domains"), file=file, text=text, problems=problems)
    fleet = validate_section(
        FleetSettings, raw.get("fleet", {}), file=file, text=text, prefix="fleet", problems=problems
    )
    if fleet is not None and collector is not None:
        problems.extend(_check_fleet(fleet, collector, domains, file=file, text=text))
        problems.extend(_check_fleet_sessions(fleet, sources, file=file, text=text))
    if problems or collector is None or analytics is None or api is None or outbox is None or fleet is None:
        from hciwatch.redact import redact

        problems = [redact(p) for p in problems]  # validation quotes rejected values; they may hold credentials
        raise ConfigError(f"{file}: {len(problems)} problem(s) in the configuration", file=file, problems=problems)
    domain = domain_of(collector.site.name, domains).id
    return AppConfig(
        collector=collector,
        sources=[src.for_domain(collector.site.name, domain) for src in sources],
        analytics=analytics,
        exporters=[_with_site(e, collector.site.name) for e in exporters],
        api=api,
        outbox=outbox,
        domains=domains,
        fleet=fleet,
        path=path,
    )


def load_config(path: Path | str) -> AppConfig:
    """Read, parse and validate a config file."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory; give the config file (e.g. {p / 'hciwatch.toml'})", file=str(p))
    try:
        raw, text = load_toml(p)
    except RecursionError:
        raise ConfigError(f"{p}: TOML nested too deeply to read; flatten the tables", file=str(p)) from None
    return parse_config(raw, text, file=str(p), path=p.resolve())


def default_config(data_dir: Path | None = None) -> AppConfig:
    """The embedded default: local Parquet + DuckDB, no sources, no external sinks."""
    col = CollectorSettings(data_dir=str(data_dir) if data_dir else "./data")
    return AppConfig(collector=col)
