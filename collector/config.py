"""TOML configuration → validated, typed settings, with errors a user can act on.

Every problem is reported at once, each as ``file:line: key.path: what is wrong (allowed: …)``.
Pydantic does the validation (``extra="forbid"`` everywhere, so a typo is an error, not a silently
ignored key); this module turns its errors into those lines and finds the line of each key in
the TOML text (``tomllib`` keeps no positions, so a small scanner maps key paths back to lines).

Secrets never live in the file in clear: settings take ``*_file`` paths or ``env:NAME`` references
(:class:`collector.settings.SecretRef`), resolved at start-up.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collector.errors import ConfigError
from collector.lake import LakeSettings
from collector.settings import SecretRef

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Sections owned by the collector
# ---------------------------------------------------------------------------------------------


def parse_ip_range(
    text: str,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """``10.0.0.10-10.0.0.50`` or a CIDR → (first, last) address; ``ValueError`` otherwise."""
    t = text.strip()
    if "/" in t:
        net = ipaddress.ip_network(t, strict=False)
        return net[0], net[-1]
    if "-" in t:
        a, b = (ipaddress.ip_address(x.strip()) for x in t.split("-", 1))
        if a.version != b.version or int(b) < int(a):
            raise ValueError(f"range end before start or mixed IP versions: {text!r}")
        return a, b
    ip = ipaddress.ip_address(t)
    return ip, ip


class MetalLbPoolSettings(_Strict):
    """One MetalLB ``IPAddressPool`` of an AKS Arc (23H2+) cluster (the MetalLB Arc extension's load-balancer)."""

    cluster: str = Field(min_length=1, description="the cluster whose MetalLB owns the pool")
    name: str = Field(min_length=1, description="the IPAddressPool / load-balancer name")
    addresses: list[str] = Field(min_length=1, description="CIDRs or 'a-b' ranges (spec.addresses)")

    @field_validator("addresses")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        for r in v:
            parse_ip_range(r)
        return v


class NetworkSettings(_Strict):
    """One cluster-network object (keys mirror ``New-AksHciClusterNetwork`` / ``New-AksHciNetworkSetting``)."""

    name: str = Field(min_length=1, description="vnet name (the cluster network object)")
    vip_pool_start: str = Field(description="first IP of the VIP pool (API-server VIPs + LoadBalancer IPs)")
    vip_pool_end: str = Field(description="last IP of the VIP pool")
    k8s_node_ip_pool_start: str | None = Field(default=None, description="first node-pool IP (static IP plans)")
    k8s_node_ip_pool_end: str | None = Field(default=None, description="last node-pool IP")
    ip_address_prefix: str | None = Field(default=None, description="subnet CIDR, e.g. 10.0.0.0/24")
    gateway: str | None = None
    vlan_id: int | None = Field(default=None, ge=0, le=4094)
    clusters: list[str] = Field(default_factory=list, description="clusters that share this network")
    management_cluster: str | None = Field(
        default=None, description="the AKS host / management cluster among `clusters`"
    )
    lb_ranges: list[str] = Field(
        default_factory=list, description="MetalLB / custom load-balancer ranges (CIDR or a-b)"
    )
    vip_reserve: int | None = Field(default=None, ge=0, description="VIPs to keep free (default: analytics default)")
    node_upgrade_reserve: int | None = Field(
        default=None, ge=0, description="node IPs rolling upgrades need (default: IP plan)"
    )
    control_plane_ips: dict[str, str] = Field(
        default_factory=dict,
        description="AKS Arc (23H2+): cluster -> control-plane IP (same subnet, outside the logical network's IP pool)",
    )
    metallb_pools: list[MetalLbPoolSettings] = Field(
        default_factory=list,
        description="AKS Arc (23H2+): each cluster's MetalLB address pools (same subnet, outside the IP pool)",
    )

    @field_validator("control_plane_ips")
    @classmethod
    def _cp_ips(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for cluster, ip in v.items():
            try:
                out[cluster] = str(ipaddress.ip_address(str(ip).strip()))
            except ValueError:
                raise ValueError(f"control_plane_ips.{cluster}: not an IP address: {ip!r}") from None
        return out

    @field_validator("vip_pool_start", "vip_pool_end", "k8s_node_ip_pool_start", "k8s_node_ip_pool_end", "gateway")
    @classmethod
    def _ip(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_address(v.strip()))
        except ValueError:
            raise ValueError(f"not an IP address: {v!r}") from None

    @field_validator("ip_address_prefix")
    @classmethod
    def _cidr(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not a CIDR prefix: {v!r}") from None

    @field_validator("lb_ranges")
    @classmethod
    def _ranges(cls, v: list[str]) -> list[str]:
        for r in v:
            parse_ip_range(r)
        return v

    @model_validator(mode="after")
    def _pools(self) -> NetworkSettings:
        def check(a: str | None, b: str | None, what: str) -> None:
            if (a is None) != (b is None):
                raise ValueError(f"{what}: give both start and end, or neither")
            if a and b and int(ipaddress.ip_address(b)) < int(ipaddress.ip_address(a)):
                raise ValueError(f"{what}: end {b} is before start {a}")

        check(self.vip_pool_start, self.vip_pool_end, "vip pool")
        check(self.k8s_node_ip_pool_start, self.k8s_node_ip_pool_end, "k8s node ip pool")
        if self.management_cluster and self.management_cluster not in self.clusters:
            raise ValueError(f"management_cluster {self.management_cluster!r} is not in clusters")
        for c in [*self.control_plane_ips, *(p.cluster for p in self.metallb_pools)]:
            if c not in self.clusters:
                raise ValueError(f"cluster {c!r} (control_plane_ips / metallb_pools) is not in clusters")
        return self

    @property
    def vip_pool(self) -> tuple[str, str]:
        return self.vip_pool_start, self.vip_pool_end

    @property
    def node_pool(self) -> tuple[str, str] | None:
        if self.k8s_node_ip_pool_start and self.k8s_node_ip_pool_end:
            return self.k8s_node_ip_pool_start, self.k8s_node_ip_pool_end
        return None


class StoreSettings(_Strict):
    """Where and how samples are stored."""

    batch_rows: int = Field(default=250_000, ge=1, description="rows buffered per table before a write")
    flush_interval: float = Field(default=10.0, gt=0, description="seconds between timed flushes")
    retention_days: int | None = Field(default=30, ge=1, description="delete date partitions older than this")
    compact_min_files: int = Field(default=8, ge=2, description="merge a closed partition with this many files")
    queue_max_records: int = Field(
        default=1000, ge=1, description="raw records waiting for the parser (backpressure bound)"
    )
    queue_max_bytes: int = Field(
        default=256 << 20, ge=1 << 16, description="bytes of raw records waiting for the parser (memory bound)"
    )
    buffer_max_bytes: int = Field(
        default=512 << 20,
        ge=1 << 16,
        description="unwritten rows held while Parquet writes fail; beyond it new records are refused (counted)",
    )
    wal_max_bytes: int = Field(
        default=4 << 30, ge=1 << 20, description="write-ahead log size bound; beyond it new records are refused"
    )
    wal_segment_bytes: int = Field(default=64 << 20, ge=1 << 16, description="write-ahead log segment size")
    window_max_bytes: int = Field(
        default=512 << 20,
        ge=1 << 20,
        description="recent rows the detectors read, per table; past it the oldest go first (counted)",
    )
    lake: LakeSettings = Field(
        default_factory=LakeSettings,
        description="where Parquet files go: the data dir (default), az://, abfs[s]:// or s3:// with credentials",
    )


class CatalogMapping(_Strict):
    """A user mapping for a renamed or custom native metric (Prometheus-exposition name)."""

    native: str = Field(min_length=1)
    canonical: str = Field(min_length=1)
    unit: str = "1"
    counter: bool = False


class SiteSettings(_Strict):
    """Identity of the monitored site (it names alerts' resources and OTLP resources).

    The name is part of every alert fingerprint, of MQTT alert topics and of the lake layout
    (``site=<name>`` directories and object prefixes), so it is limited to characters that are
    safe in all three.
    """

    name: str = Field(
        default="azure-local",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="1-64 letters, digits, '.', '_', '-' (starts with a letter or digit)",
    )
    environment: str = "production"


# ---------------------------------------------------------------------------------------------
# Error formatting
# ---------------------------------------------------------------------------------------------


def _loc_to_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_TABLE_RE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_\-\"]+)\s*=")


def locate(text: str, path: str) -> int | None:
    """Best-effort 1-based line of a dotted key path (``networks[1].vip_pool_start``) in TOML text."""
    parts = re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)
    keys: list[str | int] = [int(i) if i else k for k, i in parts]
    lines = text.splitlines()
    # walk table headers: find the table for the longest prefix of keys, then the key line
    best: int | None = None
    counters: dict[str, int] = {}
    current: list[str | int] = []
    for n, line in enumerate(lines, 1):
        m = _TABLE_RE.match(line)
        if m:
            name = m.group(2).replace('"', "")
            segs: list[str | int] = list(name.split("."))
            if m.group(1) == "[[":
                counters[name] = counters.get(name, -1) + 1
                segs = [*segs, counters[name]]
            current = segs
            if keys[: len(current)] == current:
                best = n
            continue
        km = _KEY_RE.match(line)
        if (
            km
            and keys[: len(current)] == current
            and len(keys) > len(current)
            and km.group(1).strip('"') == keys[len(current)]
        ):
            return n
    return best


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The (nested) model that owns the last key of ``loc``, for listing its allowed keys."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        ann = current.model_fields[part].annotation
        while get_args(ann) and not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            models = [a for a in get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
            ann = models[0] if models else get_args(ann)[0]
        current = ann
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def format_validation_error(
    exc: ValidationError, *, file: str, text: str, prefix: str = "", model: type[BaseModel] | None = None
) -> list[str]:
    """One ``file:line: key: message`` line per pydantic error."""
    out = []
    for err in exc.errors():
        loc = [*([prefix] if prefix else []), *err["loc"]]
        path = _loc_to_path(loc) if err["loc"] else prefix
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, list(err["loc"])) if model else None
            msg = "unknown key" + (f" (allowed keys: {allowed_keys(owner)})" if owner else "")
        elif "input" in err and not isinstance(err["input"], dict | list) and repr(err["input"]) not in msg:
            msg = f"{msg} (got {err['input']!r})"
        line = locate(text, path) if path else None
        where = f"{file}:{line}" if line else file
        out.append(f"{where}: {path or '<root>'}: {msg}")
    return out


def allowed_keys(model: type[BaseModel]) -> str:
    """Comma-separated field names of a model (for 'unknown key' messages)."""
    return ", ".join(model.model_fields)


def validate_section(model: type[M], data: Any, *, file: str, text: str, prefix: str, problems: list[str]) -> M | None:
    """Validate one section; append formatted problems instead of raising."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(format_validation_error(exc, file=file, text=text, prefix=prefix, model=model))
        return None


def load_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Read and parse a TOML file; syntax errors become :class:`ConfigError` with the line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}", file=str(path)) from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}", file=str(path)) from exc


def resolve_secret(ref: str | SecretRef | None, *, what: str) -> str | None:
    """Resolve a secret reference (``env:NAME`` or a file path) now; ``None`` when not configured.

    A thin entry point over :class:`collector.settings.SecretRef` for callers holding a plain
    string; errors name ``what`` and the reference, never the secret.
    """
    if ref is None:
        return None
    parsed = ref if isinstance(ref, SecretRef) else _parse_ref(ref, what=what)
    return parsed.read(key=what)


def _parse_ref(text: str, *, what: str) -> SecretRef:
    try:
        return SecretRef.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}", key=what) from None


def validate_sources(raw: Any, *, file: str, text: str, problems: list[str]) -> list[Any]:
    """Validate each ``[[sources]]`` table with the settings model of its ``type``."""
    from collector.registry import get_source_spec, source_types

    out: list[Any] = []
    if raw is None:
        return out
    if not isinstance(raw, list):
        problems.append(f"{file}: sources: must be an array of tables ([[sources]])")
        return out
    names: set[str] = set()
    for i, item in enumerate(raw):
        prefix = f"sources[{i}]"
        line = locate(text, prefix)
        where = f"{file}:{line}" if line else file
        if not isinstance(item, dict) or "type" not in item:
            problems.append(f"{where}: {prefix}.type: missing (allowed: {', '.join(source_types())})")
            continue
        try:
            spec = get_source_spec(str(item["type"]))
        except KeyError:
            problems.append(
                f"{where}: {prefix}.type: unknown source type {item['type']!r} (allowed: {', '.join(source_types())})"
            )
            continue
        except ImportError as exc:
            problems.append(f"{where}: {prefix}.type: source {item['type']!r} cannot be loaded: {exc}")
            continue
        settings = validate_section(spec.settings_model, item, file=file, text=text, prefix=prefix, problems=problems)
        if settings is None:
            continue
        name = settings.name or settings.type
        if name in names:
            problems.append(f"{where}: {prefix}.name: duplicate source name {name!r} (give each a unique name)")
            continue
        names.add(name)
        out.append(settings)
    return out


class CollectorSettings(_Strict):
    """The collector's part of the config (the composition root adds analytics/exporters/api)."""

    site: SiteSettings = Field(default_factory=SiteSettings)
    data_dir: str = "./data"
    store: StoreSettings = Field(default_factory=StoreSettings)
    metric_mappings: list[CatalogMapping] = Field(default_factory=list)
    networks: list[NetworkSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_networks(self) -> CollectorSettings:
        seen = set()
        for n in self.networks:
            if n.name in seen:
                raise ValueError(f"duplicate network name {n.name!r}")
            seen.add(n.name)
        return self


COLLECTOR_KEYS = ("site", "data_dir", "store", "metric_mappings", "networks")


def collector_section(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a whole config file that :class:`CollectorSettings` validates."""
    return {k: raw[k] for k in COLLECTOR_KEYS if k in raw}


LogLevel = Literal["debug", "info", "warning", "error"]
