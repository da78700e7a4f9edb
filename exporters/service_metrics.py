"""The service's own metrics, declared once: name, type, unit, help and labels of every quantity.

Two renderers read this list and nothing else for names: the Prometheus text the API serves at
``/metrics`` (:mod:`hciwatch.selfmetrics`, the API's request/query/feed series) and the OTLP
dashboard metrics pushed through every sink with ``metrics = true`` (:class:`exporters.otlp.OtlpMetrics`).
Why here: both renderers import it, and :mod:`exporters` is the lowest layer they share; it
imports neither OpenTelemetry nor prometheus-client, so reading the list costs nothing.

**One name per quantity.** A metric's name is its OpenTelemetry name (``hciwatch.pipeline.samples_in``);
its Prometheus name is derived the way the OpenTelemetry Collector's Prometheus exporter derives
it (:func:`prometheus_name`: dots become underscores, the unit becomes a suffix — ``s`` →
``_seconds``, ``By`` → ``_bytes`` — unless the name already says it, and counters get ``_total``
from the client), so the deployed Grafana dashboard's queries match whether Prometheus scrapes
``/metrics`` or receives the pushed OTLP metrics through a collector.

**Labels.** ``labels`` are what ``/metrics`` breaks a quantity down by; the pushed dashboard copy
keeps only ``dashboard_labels`` and sums over the rest (``hciwatch.pipeline.parse_errors`` is per
``reason`` on ``/metrics`` and one total on the dashboards).

Renamed on ``/metrics`` when the two lists became one (the old names had a second name for a
quantity the dashboards already charted): ``hciwatch_samples_stored`` →
``hciwatch_pipeline_samples_in``, ``hciwatch_ingest_queue_depth`` → ``hciwatch_pipeline_queue_depth``,
``hciwatch_records_rejected{reason}`` and ``hciwatch_parse_skipped_parts`` →
``hciwatch_pipeline_parse_errors{reason}`` (skipped parts have ``reason="skipped_part"``),
``hciwatch_export_failures{sink}`` → ``hciwatch_pipeline_export_failures{sink}``.

The dashboard snapshot types (:class:`MetricsSnapshot` and its parts) live here too: they are the
input of :func:`snapshot_observations`, which turns one snapshot into the values of every
dashboard metric for both renderers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from collector.schema import AlertKind

MetricKind = Literal["counter", "gauge", "histogram"]

_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One quantity the service reports.

    Attributes:
        name: the OpenTelemetry name (``hciwatch.<area>.<what>``).
        kind: ``counter`` (cumulative), ``gauge`` or ``histogram`` (``/metrics`` only).
        unit: UCUM unit as OpenTelemetry spells it (``s``, ``By``, ``{sample}``, ``1``).
        help: one line for ``# HELP`` and the OTLP description.
        labels: label names on ``/metrics``.
        dashboard: also pushed as an OTLP dashboard metric.
        dashboard_labels: the labels the pushed copy keeps (the others are summed over).
        buckets: histogram bucket bounds (seconds), when not the client's default.
    """

    name: str
    kind: MetricKind
    unit: str
    help: str
    labels: tuple[str, ...] = ()
    dashboard: bool = False
    dashboard_labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def prometheus_name(self) -> str:
        return prometheus_name(self)


def prometheus_name(spec: MetricSpec) -> str:
    """The Prometheus family name (without the ``_total`` prometheus-client adds to counters)."""
    base = spec.name.replace(".", "_")
    suffix = _UNIT_SUFFIX.get(spec.unit)
    if spec.unit == "1" and spec.kind == "gauge":  # the Collector's translator: a unit-"1" gauge is a ratio
        suffix = "ratio"
    if suffix and suffix not in base.split("_"):
        base = f"{base}_{suffix}"
    return base


def _m(
    name: str,
    kind: MetricKind,
    unit: str,
    help: str,
    *labels: str,
    dashboard: bool = False,
    buckets: tuple[float, ...] = (),
) -> MetricSpec:
    return MetricSpec(name, kind, unit, help, tuple(labels), dashboard=dashboard, buckets=buckets)


SERVICE_METRICS: tuple[MetricSpec, ...] = (
    # -- what the dashboards chart (pushed through sinks with metrics = true, and on /metrics) --
    _m("hciwatch.pool.size", "gauge", "{address}", "addresses in the pool", "network", "pool", dashboard=True),
    _m("hciwatch.pool.used", "gauge", "{address}", "addresses in use", "network", "pool", dashboard=True),
    _m("hciwatch.pool.free", "gauge", "{address}", "addresses still free", "network", "pool", dashboard=True),
    _m(
        "hciwatch.pool.time_to_exhaustion",
        "gauge",
        "s",
        "projected seconds until free addresses fall below the upgrade reserve (absent when usage is not growing)",
        "network",
        "pool",
        dashboard=True,
    ),
    _m(
        "hciwatch.congestion.score",
        "gauge",
        "1",
        "east-west congestion score per host (0 = healthy)",
        "host",
        dashboard=True,
    ),
    _m("hciwatch.build_info", "gauge", "", "the running hciwatch build (always 1)", "version", "python", "duckdb"),
    _m("hciwatch.alerts.firing", "gauge", "{alert}", "alerts currently firing, per kind", "kind", dashboard=True),
    _m(
        "hciwatch.pipeline.samples_in", "counter", "{sample}", "samples parsed and accepted for storage", dashboard=True
    ),
    _m(
        "hciwatch.pipeline.parse_errors",
        "counter",
        "{error}",
        "records rejected (by reason) and bad parts skipped inside accepted payloads (reason skipped_part)",
        "reason",
        dashboard=True,
    ),
    _m(
        "hciwatch.pipeline.export_failures",
        "counter",
        "{failure}",
        "failed sink export attempts",
        "sink",
        dashboard=True,
    ),
    _m(
        "hciwatch.pipeline.queue_depth",
        "gauge",
        "{record}",
        "records waiting between sources and the parser",
        dashboard=True,
    ),
    # -- /metrics only --
    _m("hciwatch.records", "counter", "{record}", "raw records received, by kind", "kind"),
    _m("hciwatch.ip_observations_stored", "counter", "{observation}", "IP observations accepted for storage"),
    _m("hciwatch.evaluations", "counter", "{pass}", "detector passes run"),
    _m("hciwatch.alert_changes", "counter", "{change}", "alert state changes", "kind", "status"),
    # booleans carry no unit (a unit of "1" would make them ratios: hciwatch_target_up_ratio)
    _m("hciwatch.target_up", "gauge", "", "1 when the last fetch succeeded", "source", "target"),
    _m("hciwatch.target_fetch_failures", "counter", "{failure}", "failed fetches", "source", "target"),
    _m(
        "hciwatch.target_parse_errors",
        "counter",
        "{payload}",
        "payloads the parser refused (HTML, garbage, over sample_limit/label_limit)",
        "source",
        "target",
    ),
    _m(
        "hciwatch.io_fault",
        "gauge",
        "",
        "1 while an I/O component fails (store, wal, outbox, ...)",
        "component",
        "error",
    ),
    _m("hciwatch.io_fault_errors", "counter", "{error}", "failed I/O attempts", "component"),
    _m(
        "hciwatch.fleet.domain_epoch",
        "gauge",
        "",
        "[fleet]: the lease epoch of a network domain this instance evaluates; 0 while it stands by",
        "domain",
    ),
    _m("hciwatch.ingest_refused", "counter", "{record}", "records refused at the edge (not acknowledged)", "reason"),
    _m("hciwatch.ingest_queue_bytes", "gauge", "By", "raw record bytes waiting"),
    _m("hciwatch.wal.appended", "counter", "{record}", "records written to the write-ahead log"),
    _m("hciwatch.wal.fsyncs", "counter", "{fsync}", "group-commit fsyncs of the write-ahead log"),
    _m("hciwatch.wal.replayed", "counter", "{record}", "records replayed from the log at start"),
    _m("hciwatch.wal.corrupt", "counter", "{record}", "damaged log records found"),
    _m("hciwatch.wal.bytes", "gauge", "By", "write-ahead log size on disk"),
    _m(
        "hciwatch.window_shed_rows",
        "counter",
        "{row}",
        "rows the detectors' window dropped early to stay under window_max_bytes",
    ),
    _m("hciwatch.store.files_written", "counter", "{file}", "Parquet files written"),
    _m("hciwatch.store.bytes_written", "counter", "By", "Parquet bytes written"),
    _m("hciwatch.store.buffered_rows", "gauge", "{row}", "rows accepted but not yet on disk"),
    _m("hciwatch.store.buffered_bytes", "gauge", "By", "row bytes accepted but not yet in Parquet"),
    _m("hciwatch.outbox.appended", "counter", "{change}", "alert changes accepted into the outbox"),
    _m("hciwatch.outbox.dropped", "counter", "{change}", "alert changes dropped by the disk bound"),
    _m("hciwatch.outbox.lag", "gauge", "{change}", "undelivered alert changes per sink", "sink"),
    _m("hciwatch.export.delivered", "counter", "{change}", "alert changes delivered", "sink"),
    _m("hciwatch.api.requests", "counter", "{request}", "HTTP requests served by the API", "route", "method", "code"),
    _m(
        "hciwatch.api.request_duration",
        "histogram",
        "s",
        "time to answer an API request (SSE streams excluded)",
        "route",
    ),
    _m("hciwatch.api.queries", "counter", "{query}", "SQL queries by outcome", "outcome"),
    _m("hciwatch.api.connections_open", "gauge", "{connection}", "open API connections"),
    _m("hciwatch.api.connections_closed", "counter", "{connection}", "API connections closed by the guard", "reason"),
    _m("hciwatch.api.bad_requests", "counter", "{request}", "malformed HTTP requests answered 400 (not logged each)"),
    _m("hciwatch.api.accept_errors", "counter", "{error}", "failed accept() calls (descriptor limit)"),
    _m(
        "hciwatch.api.query_duration",
        "histogram",
        "s",
        "time SQL queries took (including refused ones)",
        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    ),
    _m("hciwatch.feed.subscribers", "gauge", "{subscriber}", "live alert stream subscribers"),
    _m("hciwatch.feed.firing_alerts", "gauge", "{alert}", "alerts firing now, as the live feed told its subscribers"),
    _m("hciwatch.feed.changes", "counter", "{change}", "alert state changes the feed received"),
    _m(
        "hciwatch.feed.subscribers_dropped",
        "counter",
        "{subscriber}",
        "stream subscribers dropped for reading too slowly",
    ),
)

METRICS: dict[str, MetricSpec] = {m.name: m for m in SERVICE_METRICS}
DASHBOARD_METRICS: tuple[MetricSpec, ...] = tuple(m for m in SERVICE_METRICS if m.dashboard)


def spec(name: str) -> MetricSpec:
    """The declaration of ``name`` (KeyError names the metric when it is not declared)."""
    return METRICS[name]


# ---------------------------------------------------------------------------------------------
# The dashboard snapshot and its values
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolStat:
    """Usage of one IP pool of one cluster network (``pool`` is e.g. ``vip`` or ``node``)."""

    network: str
    pool: str
    size: int
    used: int
    free: int
    time_to_exhaustion: float | None = None  # seconds; None when usage is not growing


@dataclass(frozen=True)
class PipelineHealth:
    """Cumulative pipeline counters (``samples_in``, ``parse_errors``, ``export_failures``) and
    the current ``queue_depth``."""

    samples_in: int = 0
    parse_errors: int = 0
    queue_depth: int = 0
    export_failures: int = 0


@dataclass(frozen=True)
class MetricsSnapshot:
    """What the dashboards show, copied out of the detectors' state at one instant."""

    pools: Sequence[PoolStat] = ()
    congestion: Mapping[str, float] = field(default_factory=dict)
    firing_by_kind: Mapping[str, int] = field(default_factory=dict)
    pipeline: PipelineHealth = field(default_factory=PipelineHealth)


Observation = tuple[Mapping[str, str], float]
Observations = dict[str, list[Observation]]


def snapshot_observations(snap: MetricsSnapshot) -> Observations:
    """Every dashboard metric's values (label set → value) as the pushed copy carries them.

    ``alerts.firing`` has every alert kind, zeros included, so a dashboard shows a flat line
    rather than a gap; ``pool.time_to_exhaustion`` is absent for pools whose usage is not growing.
    """
    out: Observations = {m.name: [] for m in DASHBOARD_METRICS}
    for p in snap.pools:
        where = {"network": p.network, "pool": p.pool}
        out["hciwatch.pool.size"].append((where, p.size))
        out["hciwatch.pool.used"].append((where, p.used))
        out["hciwatch.pool.free"].append((where, p.free))
        if p.time_to_exhaustion is not None:
            out["hciwatch.pool.time_to_exhaustion"].append((where, p.time_to_exhaustion))
    out["hciwatch.congestion.score"] = [({"host": h}, float(s)) for h, s in sorted(snap.congestion.items())]
    firing = dict.fromkeys((k.value for k in AlertKind), 0)
    firing.update(snap.firing_by_kind)
    out["hciwatch.alerts.firing"] = [({"kind": k}, int(n)) for k, n in sorted(firing.items())]
    h = snap.pipeline
    out["hciwatch.pipeline.samples_in"] = [({}, h.samples_in)]
    out["hciwatch.pipeline.parse_errors"] = [({}, h.parse_errors)]
    out["hciwatch.pipeline.export_failures"] = [({}, h.export_failures)]
    out["hciwatch.pipeline.queue_depth"] = [({}, h.queue_depth)]
    return out
