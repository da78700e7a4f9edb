"""THE data model of hciwatch: samples, IP observations, alerts and raw records.

Every part of the flow speaks these types. Parsers build Arrow tables in :data:`SAMPLES_SCHEMA`
and :data:`IP_OBSERVATIONS_SCHEMA` directly (columnar, no Python object per sample on hot paths);
the frozen dataclasses exist for the places where one value at a time is natural (tests, the
alert manager, exporters) and validate themselves so a bad value fails where it was made.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pyarrow as pa

# ---------------------------------------------------------------------------------------------
# Arrow schemas (the on-disk contract: Parquet files and DuckDB views are built from these)
# ---------------------------------------------------------------------------------------------

_DICT = pa.dictionary(pa.int32(), pa.string())
TS_TYPE = pa.timestamp("ms", tz="UTC")

SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("source", _DICT, nullable=False),
        pa.field("host", _DICT, nullable=False),
        pa.field("metric", _DICT, nullable=False),
        pa.field("labels", pa.map_(pa.string(), pa.string()), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)

_IP_OBSERVATIONS_FIELDS: list[pa.Field[Any]] = [
    pa.field("ts", TS_TYPE, nullable=False),
    pa.field("ip", pa.string(), nullable=False),
    pa.field("mac", pa.string(), nullable=True),
    pa.field("owner_kind", _DICT, nullable=False),
    pa.field("owner", pa.string(), nullable=False),
    pa.field("cluster", _DICT, nullable=True),
    pa.field("network", _DICT, nullable=True),
    pa.field("source", _DICT, nullable=False),
]
IP_OBSERVATIONS_SCHEMA = pa.schema(_IP_OBSERVATIONS_FIELDS)

_ALERTS_FIELDS: list[pa.Field[Any]] = [
    pa.field("ts", TS_TYPE, nullable=False),
    pa.field("fingerprint", pa.string(), nullable=False),
    pa.field("kind", _DICT, nullable=False),
    pa.field("status", _DICT, nullable=False),
    pa.field("severity", _DICT, nullable=False),
    pa.field("resource", pa.map_(pa.string(), pa.string()), nullable=False),
    pa.field("summary", pa.string(), nullable=False),
    pa.field("evidence", pa.string(), nullable=False),  # JSON text
    pa.field("runbook", pa.string(), nullable=False),
    pa.field("starts_at", TS_TYPE, nullable=False),
    pa.field("ends_at", TS_TYPE, nullable=True),
]
ALERTS_SCHEMA = pa.schema(_ALERTS_FIELDS)

# Empty tables, built once: Arrow tables are immutable, and building one costs ~45 us, which a
# parser paid several times per record (a replay of small records spent seconds on it).
EMPTY_SAMPLES = SAMPLES_SCHEMA.empty_table()
EMPTY_IP_OBSERVATIONS = IP_OBSERVATIONS_SCHEMA.empty_table()

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "samples": SAMPLES_SCHEMA,
    "ip_observations": IP_OBSERVATIONS_SCHEMA,
    "alerts": ALERTS_SCHEMA,
}


# ---------------------------------------------------------------------------------------------
# Enumerations
# ---------------------------------------------------------------------------------------------


class Severity(StrEnum):
    """Azure Monitor severities: Sev0 is the most severe (critical), Sev4 verbose."""

    SEV0 = "Sev0"  # critical: outage now (pool exhausted, duplicate IP on an API server VIP)
    SEV1 = "Sev1"  # error: will break soon or is breaking some traffic
    SEV2 = "Sev2"  # warning: needs action within days
    SEV3 = "Sev3"  # informational: worth a look
    SEV4 = "Sev4"  # verbose

    @property
    def rank(self) -> int:
        """0 for Sev0 … 4 for Sev4 (lower is more severe)."""
        return int(self.value[3])


class AlertStatus(StrEnum):
    """An alert state change is either a firing or a resolution."""

    FIRING = "firing"
    RESOLVED = "resolved"


class AlertKind(StrEnum):
    """Every kind of alert the product raises."""

    VIP_POOL_EXHAUSTION = "vip_pool_exhaustion"
    NODE_POOL_EXHAUSTION = "node_pool_exhaustion"
    POD_POOL_EXHAUSTION = "pod_pool_exhaustion"  # a Calico IP pool (pod addresses)
    IP_POOL_OVERLAP = "ip_pool_overlap"
    DUPLICATE_IP = "duplicate_ip"
    EASTWEST_CONGESTION = "eastwest_congestion"
    METRIC_ANOMALY = "metric_anomaly"
    SOURCE_DOWN = "source_down"


class OwnerKind(StrEnum):
    """Who holds an IP address in an :class:`IpObservation`."""

    SERVICE = "service"  # Kubernetes Service type LoadBalancer ingress / loadBalancerIP
    NODE = "node"  # Kubernetes node VM InternalIP
    CONTROL_PLANE = "control-plane"  # API server VIP of a cluster
    LOAD_BALANCER = "load-balancer"  # the HAProxy load-balancer VM itself
    POD = "pod"
    HAPROXY_FRONTEND = "haproxy-frontend"  # an address an HAProxy frontend binds
    HAPROXY_SERVER = "haproxy-server"  # an HAProxy backend server's addr (usually a node IP)
    NEIGHBOR = "neighbor"  # an ARP/NDP neighbour row
    NIC = "nic"  # an address configured on a host NIC (windows_exporter nic_address_info)
    EVENT = "event"  # a Windows Tcpip 4198/4199 conflict event


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def utc(ts: datetime) -> datetime:
    """Return ``ts`` as an aware UTC datetime; naive input is taken to be UTC already."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def to_ms(ts: datetime) -> int:
    """Milliseconds since the epoch (the on-disk resolution)."""
    return round(utc(ts).timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """Inverse of :func:`to_ms`."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def iso(ts: datetime) -> str:
    """ISO-8601 UTC with millisecond precision and a ``Z``: the one time format in our JSON."""
    return utc(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """Parse ISO-8601 (``Z`` or offset); raises ``ValueError`` with the text on failure."""
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError as exc:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from exc
    if dt.tzinfo is None:
        raise ValueError(f"timestamp has no timezone (use Z or an offset): {text!r}")
    return dt.astimezone(UTC)


def normalize_mac(mac: str) -> str:
    """MAC in lower-case colon form (``00-15-5D-01-02-03`` → ``00:15:5d:01:02:03``)."""
    hexdigits = "".join(c for c in mac if c.isalnum()).lower()
    if len(hexdigits) != 12 or any(c not in "0123456789abcdef" for c in hexdigits):
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def _frozen_map(m: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in (m or {}).items()))


# ---------------------------------------------------------------------------------------------
# Value types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one metric series at one time (long format; counters stay raw)."""

    ts: datetime
    source: str
    host: str
    metric: str
    value: float
    # given as a mapping or as pairs; always stored as sorted pairs (frozen, hashable)
    labels: tuple[tuple[str, str], ...] | Mapping[str, str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", utc(self.ts))
        if not self.source or not self.metric:
            raise ValueError("Sample needs a source and a metric name")
        if isinstance(self.labels, Mapping):
            object.__setattr__(self, "labels", _frozen_map(self.labels))
        if not isinstance(self.value, float):
            object.__setattr__(self, "value", float(self.value))

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True, slots=True)
class IpObservation:
    """One sighting of an IP address held by an owner (service, node, NIC, neighbour …)."""

    ts: datetime
    ip: str
    owner_kind: OwnerKind
    owner: str
    source: str
    mac: str | None = None
    cluster: str | None = None
    network: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", utc(self.ts))
        object.__setattr__(self, "ip", str(ipaddress.ip_address(self.ip.strip().strip("[]"))))
        object.__setattr__(self, "owner_kind", OwnerKind(self.owner_kind))
        if self.mac is not None:
            object.__setattr__(self, "mac", normalize_mac(self.mac))
        if not self.owner:
            raise ValueError("IpObservation needs an owner")


def fingerprint(kind: str, resource: Mapping[str, str]) -> str:
    """Stable identity of one incident: the kind plus its resource labels, hashed.

    Evidence and numbers are deliberately left out, so the same incident keeps its fingerprint
    while its values change; 16 hex digits are plenty for a fleet's alerts (the site is part of the resource).
    """
    canon = json.dumps([kind, sorted((str(k), str(v)) for k, v in resource.items())], separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def _json_safe(value: Any) -> Any:
    """Make evidence JSON-clean: NaN/Inf become None, datetimes ISO, tuples lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        seq = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_json_safe(v) for v in seq]
    if isinstance(value, StrEnum):
        return value.value
    if hasattr(value, "item"):  # numpy scalar
        return _json_safe(value.item())
    return value


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert state change (firing or resolved). Every sink derives its payload from this.

    ``ts`` is when the change happened (the clock of the flow); ``starts_at`` is when the
    incident started firing and stays the same across its changes; ``ends_at`` is set only on
    the resolution.
    """

    fingerprint: str
    kind: AlertKind
    status: AlertStatus
    severity: Severity
    starts_at: datetime
    resource: Mapping[str, str]
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    runbook: str = ""
    ends_at: datetime | None = None
    ts: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", AlertKind(self.kind))
        object.__setattr__(self, "status", AlertStatus(self.status))
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "starts_at", utc(self.starts_at))
        object.__setattr__(self, "resource", {str(k): str(v) for k, v in self.resource.items()})
        object.__setattr__(self, "evidence", _json_safe(dict(self.evidence)))
        if self.ends_at is not None:
            object.__setattr__(self, "ends_at", utc(self.ends_at))
        if self.status is AlertStatus.RESOLVED and self.ends_at is None:
            raise ValueError("a resolved alert needs ends_at")
        if self.status is AlertStatus.FIRING and self.ends_at is not None:
            raise ValueError("a firing alert has no ends_at")
        if self.ts is None:
            object.__setattr__(self, "ts", self.ends_at or self.starts_at)
        else:
            object.__setattr__(self, "ts", utc(self.ts))
        if not self.summary:
            raise ValueError("an alert needs a summary")

    @property
    def changed_at(self) -> datetime:
        """When this state change happened (never None after validation)."""
        assert self.ts is not None
        return self.ts

    @property
    def idempotency_key(self) -> str:
        """One state change's identity: (fingerprint, status, changed_at), hashed to 32 hex digits.

        A change delivered twice (a retried batch, or the same change produced again by the
        instance that takes a network domain over) has the same key, so a receiver that
        de-duplicates on it sees each change once.
        """
        canon = f"{self.fingerprint}|{self.status.value}|{iso(self.changed_at)}"
        return hashlib.sha256(canon.encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        """The alert JSON object (JSONL output, feeds, webhooks start from this)."""
        return {
            "fingerprint": self.fingerprint,
            "kind": self.kind.value,
            "status": self.status.value,
            "severity": self.severity.value,
            "ts": iso(self.changed_at),
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at) if self.ends_at else None,
            "resource": dict(sorted(self.resource.items())),
            "summary": self.summary,
            "evidence": self.evidence,
            "runbook": self.runbook,
        }

    def to_json_line(self) -> str:
        """One compact, key-stable JSON line (byte-identical for identical alerts)."""
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=False, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Alert:
        """Inverse of :meth:`to_json`; raises ``ValueError``/``KeyError`` on bad input."""
        return cls(
            fingerprint=str(obj["fingerprint"]),
            kind=AlertKind(obj["kind"]),
            status=AlertStatus(obj["status"]),
            severity=Severity(obj["severity"]),
            starts_at=parse_iso(obj["starts_at"]),
            ends_at=parse_iso(obj["ends_at"]) if obj.get("ends_at") else None,
            ts=parse_iso(obj["ts"]) if obj.get("ts") else None,
            resource=dict(obj.get("resource") or {}),
            summary=str(obj["summary"]),
            evidence=dict(obj.get("evidence") or {}),
            runbook=str(obj.get("runbook") or ""),
        )


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A payload exactly as a source received it: the unit of capture and replay.

    ``kind`` picks the parser (see :mod:`collector.registry`); ``labels`` carry context the
    payload lacks (``cluster``, ``network`` for Kubernetes lists; ``source`` to override the
    source name); ``topic`` is set for MQTT records.
    """

    ts: datetime
    kind: str
    target: str
    body: bytes
    host: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    topic: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", utc(self.ts))
        if isinstance(self.body, str):
            object.__setattr__(self, "body", self.body.encode("utf-8"))
        object.__setattr__(self, "labels", {str(k): str(v) for k, v in self.labels.items()})

    @classmethod
    def normalised(cls, ts: datetime, kind: str, target: str, host: str) -> RawRecord:
        """A record without body, labels or topic from fields another record already normalised
        (``ts`` aware UTC): no ``__post_init__``, which was ~4 µs of a replay's ~10 µs per record
        in the main process (:mod:`hciwatch.parse_pool` rebuilds each record a worker parsed)."""
        rec = object.__new__(cls)
        put = object.__setattr__
        put(rec, "ts", ts)
        put(rec, "kind", kind)
        put(rec, "target", target)
        put(rec, "body", b"")
        put(rec, "host", host)
        put(rec, "labels", {})
        put(rec, "topic", None)
        return rec


# ---------------------------------------------------------------------------------------------
# Table builders
# ---------------------------------------------------------------------------------------------


def samples_table(samples: Iterable[Sample]) -> pa.Table:
    """Build a :data:`SAMPLES_SCHEMA` table from value objects (tests, small batches)."""
    rows = list(samples)
    return pa.table(
        {
            "ts": pa.array([to_ms(s.ts) for s in rows], pa.int64()).cast(TS_TYPE),
            "source": pa.array([s.source for s in rows], pa.string()).dictionary_encode(),
            "host": pa.array([s.host for s in rows], pa.string()).dictionary_encode(),
            "metric": pa.array([s.metric for s in rows], pa.string()).dictionary_encode(),
            "labels": pa.array([list(s.labels) for s in rows], pa.map_(pa.string(), pa.string())),
            "value": pa.array([s.value for s in rows], pa.float64()),
        },
        schema=SAMPLES_SCHEMA,
    )


def ip_observations_table(observations: Iterable[IpObservation]) -> pa.Table:
    """Build an :data:`IP_OBSERVATIONS_SCHEMA` table from value objects."""
    rows = list(observations)

    def dict_col(values: list[str | None]) -> pa.Array[Any]:
        return pa.array(values, pa.string()).dictionary_encode()

    return pa.table(
        {
            "ts": pa.array([to_ms(o.ts) for o in rows], pa.int64()).cast(TS_TYPE),
            "ip": pa.array([o.ip for o in rows], pa.string()),
            "mac": pa.array([o.mac for o in rows], pa.string()),
            "owner_kind": dict_col([o.owner_kind.value for o in rows]),
            "owner": pa.array([o.owner for o in rows], pa.string()),
            "cluster": dict_col([o.cluster for o in rows]),
            "network": dict_col([o.network for o in rows]),
            "source": dict_col([o.source for o in rows]),
        },
        schema=IP_OBSERVATIONS_SCHEMA,
    )


def alerts_table(alerts: Iterable[Alert]) -> pa.Table:
    """Build an :data:`ALERTS_SCHEMA` table (one row per state change)."""
    rows = list(alerts)

    def dict_col(values: list[str]) -> pa.Array[Any]:
        return pa.array(values, pa.string()).dictionary_encode()

    return pa.table(
        {
            "ts": pa.array([to_ms(a.changed_at) for a in rows], pa.int64()).cast(TS_TYPE),
            "fingerprint": pa.array([a.fingerprint for a in rows], pa.string()),
            "kind": dict_col([a.kind.value for a in rows]),
            "status": dict_col([a.status.value for a in rows]),
            "severity": dict_col([a.severity.value for a in rows]),
            "resource": pa.array([sorted(a.resource.items()) for a in rows], pa.map_(pa.string(), pa.string())),
            "summary": pa.array([a.summary for a in rows], pa.string()),
            "evidence": pa.array([json.dumps(a.evidence, sort_keys=True) for a in rows], pa.string()),
            "runbook": pa.array([a.runbook for a in rows], pa.string()),
            "starts_at": pa.array([to_ms(a.starts_at) for a in rows], pa.int64()).cast(TS_TYPE),
            "ends_at": pa.array([to_ms(a.ends_at) if a.ends_at else None for a in rows], pa.int64()).cast(TS_TYPE),
        },
        schema=ALERTS_SCHEMA,
    )


def empty_table(name: str) -> pa.Table:
    """An empty table of one of the three stored schemas."""
    return TABLE_SCHEMAS[name].empty_table()


@dataclass(slots=True)
class ParseResult:
    """What a parser returns: stored tables plus the problems it skipped past.

    ``errors`` holds per-line/per-item problems that did not stop the parse (the good rest is
    kept); a payload that cannot be parsed at all raises :class:`collector.errors.ParseError`.
    """

    samples: pa.Table = field(default_factory=lambda: EMPTY_SAMPLES)
    ip_observations: pa.Table = field(default_factory=lambda: EMPTY_IP_OBSERVATIONS)
    errors: list[Exception] = field(default_factory=list)

    def extend(self, other: ParseResult) -> None:
        """Append another result (tables are concatenated lazily by Arrow)."""
        if other.samples.num_rows:
            self.samples = (
                pa.concat_tables([self.samples, other.samples], promote_options="none")
                if self.samples.num_rows
                else other.samples
            )
        if other.ip_observations.num_rows:
            self.ip_observations = (
                pa.concat_tables([self.ip_observations, other.ip_observations])
                if self.ip_observations.num_rows
                else other.ip_observations
            )
        self.errors.extend(other.errors)
