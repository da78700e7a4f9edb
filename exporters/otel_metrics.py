"""Dashboard metrics (pool usage, congestion, firing alerts, pipeline health) as OTel observable instruments.

:class:`OtlpMetrics` reads the latest :class:`MetricsSnapshot` at each collection of a
``PeriodicExportingMetricReader`` over any SDK ``MetricExporter``: the OTLP sink gives it a gRPC or
HTTP exporter (:func:`exporters.otlp.otlp_metrics`), the Azure Monitor sink its own. Metrics are
state, not events: a failed export is superseded by the next one, so they bypass the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from collector.schema import AlertKind
from exporters.otel_logs import package_version

log = logging.getLogger(__name__)


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
    pools: Sequence[PoolStat] = ()
    congestion: Mapping[str, float] = field(default_factory=dict)
    firing_by_kind: Mapping[str, int] = field(default_factory=dict)
    pipeline: PipelineHealth = field(default_factory=PipelineHealth)


class OtlpMetrics:
    """Dashboard metrics as observable instruments over the latest :class:`MetricsSnapshot`.

    Feed it with :meth:`record` (push the latest numbers) or a ``snapshot`` callable (pulled at
    each collection). Instruments (all ``hciwatch.*``): ``pool.size``/``.used``/``.free``
    (``{address}``) and ``pool.time_to_exhaustion`` (``s``) with ``network``, ``pool``;
    ``congestion.score`` (``1``) with ``host``; ``alerts.firing`` with ``kind`` (every kind,
    zeros included); ``pipeline.samples_in``/``.parse_errors``/``.export_failures`` (observable
    counters, cumulative) and ``pipeline.queue_depth`` (gauge).
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
        meter = self._provider.get_meter("hciwatch", package_version())
        gauge = meter.create_observable_gauge
        gauge("hciwatch.pool.size", [self._pool("size")], unit="{address}", description="addresses in the pool")
        gauge("hciwatch.pool.used", [self._pool("used")], unit="{address}", description="addresses in use")
        gauge("hciwatch.pool.free", [self._pool("free")], unit="{address}", description="addresses still free")
        gauge(
            "hciwatch.pool.time_to_exhaustion",
            [self._pool("time_to_exhaustion")],
            unit="s",
            description="projected seconds until free addresses fall below the upgrade reserve "
            "(absent when usage is not growing)",
        )
        gauge(
            "hciwatch.congestion.score",
            [self._congestion],
            unit="1",
            description="east-west congestion score per host (0 = healthy)",
        )
        gauge("hciwatch.alerts.firing", [self._firing], unit="{alert}", description="alerts currently firing, per kind")
        counter = meter.create_observable_counter
        counter(
            "hciwatch.pipeline.samples_in",
            [self._pipeline("samples_in")],
            unit="{sample}",
            description="samples parsed since start",
        )
        counter(
            "hciwatch.pipeline.parse_errors",
            [self._pipeline("parse_errors")],
            unit="{error}",
            description="payload parts that could not be parsed",
        )
        counter(
            "hciwatch.pipeline.export_failures",
            [self._pipeline("export_failures")],
            unit="{failure}",
            description="failed sink export attempts",
        )
        gauge(
            "hciwatch.pipeline.queue_depth",
            [self._pipeline("queue_depth")],
            unit="{record}",
            description="records waiting between sources and the store",
        )

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

    def _pool(self, attr: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            for p in self._current().pools:
                value = getattr(p, attr)
                if value is not None:
                    yield Observation(value, {"network": p.network, "pool": p.pool})

        return observe

    def _congestion(self, _: CallbackOptions) -> Iterable[Observation]:
        for host, score in sorted(self._current().congestion.items()):
            yield Observation(float(score), {"host": host})

    def _firing(self, _: CallbackOptions) -> Iterable[Observation]:
        firing = dict.fromkeys((k.value for k in AlertKind), 0)
        firing.update(self._current().firing_by_kind)
        for kind, n in sorted(firing.items()):
            yield Observation(int(n), {"kind": kind})

    def _pipeline(self, attr: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            yield Observation(int(getattr(self._current().pipeline, attr)))

        return observe

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Collect and export now (tests, replay end, shutdown)."""
        return bool(self._provider.force_flush(int(timeout * 1000)))

    def shutdown(self) -> None:
        self._provider.shutdown()
