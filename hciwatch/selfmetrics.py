"""The service's own metrics in Prometheus form (``/metrics``), read live from the parts' counters.

Names, types, units, help and labels come from :mod:`exporters.service_metrics`, the one list
the pushed OTLP dashboard metrics are also made from. A custom collector reads the counters the
parts already keep (pipeline stats, scheduler health, store stats, outbox stats) and the latest
dashboard snapshot (pools, congestion, firing alerts) at scrape time, so the hot paths never touch
prometheus-client objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporters.service_metrics import (
    SERVICE_METRICS,
    MetricSpec,
    MetricsSnapshot,
    Observation,
    Observations,
    snapshot_observations,
    spec,
)
from hciwatch.buildinfo import build_info_metric

# what /metrics takes from the dashboard snapshot as it is (the pipeline totals are read live
# instead, broken down by their labels)
_FROM_SNAPSHOT = (
    "hciwatch.pool.size",
    "hciwatch.pool.used",
    "hciwatch.pool.free",
    "hciwatch.pool.time_to_exhaustion",
    "hciwatch.congestion.score",
    "hciwatch.alerts.firing",
)


def family(metric: MetricSpec, observations: Iterable[Observation]) -> Metric:
    """A Prometheus family for one declared counter or gauge with its current values."""
    make = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
    fam = make(metric.prometheus_name, metric.help, labels=list(metric.labels))
    for labels, value in observations:
        fam.add_metric([labels.get(n, "") for n in metric.labels], value)
    return fam


def counter(name: str, registry: CollectorRegistry) -> Counter:
    """A prometheus-client counter for a declared metric (for code that counts as it goes)."""
    m = spec(name)
    return Counter(m.prometheus_name, m.help, list(m.labels), registry=registry)


def histogram(name: str, registry: CollectorRegistry) -> Histogram:
    """A prometheus-client histogram for a declared metric (its buckets when it declares some)."""
    m = spec(name)
    if m.buckets:
        return Histogram(m.prometheus_name, m.help, list(m.labels), registry=registry, buckets=m.buckets)
    return Histogram(m.prometheus_name, m.help, list(m.labels), registry=registry)


class HciwatchCollector(Collector):
    """Exposes the declared service metrics from callables that return the current state."""

    def __init__(
        self,
        *,
        pipeline: Callable[[], Any],
        scheduler: Callable[[], Any],
        store: Callable[[], Any],
        outbox: Callable[[], dict[str, Any]],
        queue_depth: Callable[[], int],
        snapshot: Callable[[], MetricsSnapshot] | None = None,
        reliability: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._scheduler = scheduler
        self._store = store
        self._outbox = outbox
        self._queue_depth = queue_depth
        self._snapshot = snapshot
        self._reliability = reliability

    def collect(self) -> Iterator[Metric]:
        yield build_info_metric()
        obs = self.observations()
        for m in SERVICE_METRICS:
            if m.name in obs and m.kind != "histogram":
                yield family(m, obs[m.name])

    def observations(self) -> Observations:
        """Every metric this collector serves: declared name → (labels, value) pairs."""
        obs: Observations = {}
        if self._snapshot is not None:
            snap = snapshot_observations(self._snapshot())
            for name in _FROM_SNAPSHOT:
                obs[name] = snap[name]

        p = self._pipeline()
        obs["hciwatch.pipeline.samples_in"] = [({}, p.samples_stored)]
        obs["hciwatch.pipeline.parse_errors"] = [
            *(({"reason": r}, n) for r, n in sorted(p.reject_reasons.items())),
            ({"reason": "skipped_part"}, p.line_errors),
        ]
        obs["hciwatch.pipeline.queue_depth"] = [({}, self._queue_depth())]
        obs["hciwatch.records"] = [({"kind": k}, n) for k, n in sorted(p.records_by_kind.items())]
        obs["hciwatch.ip_observations_stored"] = [({}, p.ip_observations_stored)]
        obs["hciwatch.evaluations"] = [({}, p.evaluations)]
        changes: list[Observation] = []
        for key, n in sorted(p.alerts.items()):
            kind, _, status = key.partition("/")
            changes.append(({"kind": kind, "status": status}, n))
        obs["hciwatch.alert_changes"] = changes

        s = self._scheduler()
        if s is not None:
            health = list(s.health.values())
            obs["hciwatch.target_up"] = [
                ({"source": h.source, "target": h.target}, 1.0 if getattr(h, "up", not h.consecutive_failures) else 0.0)
                for h in health
            ]
            obs["hciwatch.target_fetch_failures"] = [
                ({"source": h.source, "target": h.target}, h.failures) for h in health
            ]
            obs["hciwatch.target_parse_errors"] = [
                ({"source": h.source, "target": h.target}, getattr(h, "parse_errors", 0)) for h in health
            ]

        st = self._store()
        obs["hciwatch.store.files_written"] = [({}, st.stats.files_written)]
        obs["hciwatch.store.bytes_written"] = [({}, st.stats.bytes_written)]
        obs["hciwatch.store.buffered_rows"] = [({}, st.buffered_rows())]

        ob = self._outbox()
        if ob:
            sinks = sorted((ob.get("sinks") or {}).items())
            obs["hciwatch.outbox.appended"] = [({}, ob.get("appended", 0))]
            obs["hciwatch.outbox.dropped"] = [({}, ob.get("dropped", 0))]
            obs["hciwatch.outbox.lag"] = [({"sink": n}, s.get("lag", 0)) for n, s in sinks]
            obs["hciwatch.export.delivered"] = [({"sink": n}, s.get("delivered", 0)) for n, s in sinks]
            obs["hciwatch.pipeline.export_failures"] = [({"sink": n}, s.get("failures", 0)) for n, s in sinks]
        if self._reliability is not None:
            obs.update(_reliability_observations(self._reliability()))
        return obs


def _reliability_observations(r: dict[str, Any]) -> Observations:
    """I/O fault states, refused records, write-ahead log and connection-guard counters."""
    faults = sorted(r["faults"].items())
    w = r["wal"]
    obs: Observations = {
        "hciwatch.io_fault": [({"component": n, "error": f.code}, 0.0 if f.ok else 1.0) for n, f in faults],
        "hciwatch.io_fault_errors": [({"component": n}, f.failures_total) for n, f in faults],
        "hciwatch.ingest_refused": [({"reason": k}, n) for k, n in sorted(r["refused"].items())],
        "hciwatch.wal.appended": [({}, w.appended)],
        "hciwatch.wal.fsyncs": [({}, w.fsyncs)],
        "hciwatch.wal.replayed": [({}, w.replayed)],
        "hciwatch.wal.corrupt": [({}, w.corrupt)],
        "hciwatch.wal.bytes": [({}, r["wal_bytes"])],
        "hciwatch.ingest_queue_bytes": [({}, r["queue_bytes"])],
        "hciwatch.store.buffered_bytes": [({}, r["buffered_bytes"])],
        "hciwatch.window_shed_rows": [({}, r.get("window_shed_rows", 0))],
    }
    fleet = r.get("fleet")
    if fleet is not None:
        owned = fleet["owned"]
        obs["hciwatch.fleet.domain_epoch"] = [({"domain": d}, float(owned.get(d, 0))) for d in fleet["domains"]]
    h = r.get("http")
    if h is not None:
        obs["hciwatch.api.connections_open"] = [({}, h.open)]
        obs["hciwatch.api.connections_closed"] = [
            ({"reason": "over_cap"}, h.refused),
            ({"reason": "header_timeout"}, h.header_timeouts),
        ]
        obs["hciwatch.api.bad_requests"] = [({}, h.bad_requests)]
        obs["hciwatch.api.accept_errors"] = [({}, h.accept_errors)]
    return obs
