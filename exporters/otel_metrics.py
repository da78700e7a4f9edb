"""Dashboard metrics (pool usage, congestion, firing alerts, pipeline health) as OTel observable instruments.

What is pushed (names, units, descriptions) is declared in :mod:`exporters.service_metrics`.

:class:`OtlpMetrics` reads the latest :class:`MetricsSnapshot` at each collection of a
``PeriodicExportingMetricReader`` over any SDK ``MetricExporter``: the OTLP sink gives it a gRPC or
HTTP exporter (:func:`exporters.otlp.otlp_metrics`), the Azure Monitor sink its own. Metrics are
state, not events: a failed export is superseded by the next one, so they bypass the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from exporters.otel_logs import package_version
from exporters.service_metrics import (
    DASHBOARD_METRICS,
    MetricsSnapshot,
    PipelineHealth,
    PoolStat,
    snapshot_observations,
)

__all__ = ["MetricsSnapshot", "OtlpMetrics", "PipelineHealth", "PoolStat"]

log = logging.getLogger(__name__)


class OtlpMetrics:
    """Dashboard metrics as observable instruments over the latest :class:`MetricsSnapshot`.

    Feed it with :meth:`record` (push the latest numbers) or a ``snapshot`` callable (pulled at
    each collection). One instrument per :data:`exporters.service_metrics.DASHBOARD_METRICS`
    entry (name, unit, description and counter/gauge from there; values from
    :func:`~exporters.service_metrics.snapshot_observations`): ``pool.size``/``.used``/``.free``/
    ``.time_to_exhaustion`` with ``network``, ``pool``; ``congestion.score`` with ``host``;
    ``alerts.firing`` with ``kind`` (every kind, zeros included); ``pipeline.samples_in``/
    ``.parse_errors``/``.export_failures`` (observable counters, cumulative) and
    ``pipeline.queue_depth``.
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
        for m in DASHBOARD_METRICS:  # names, units and help come from the one declaration
            create = meter.create_observable_counter if m.kind == "counter" else meter.create_observable_gauge
            create(m.name, [self._observe(m.name)], unit=m.unit, description=m.help)

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

    def _observe(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            for attrs, value in snapshot_observations(self._current())[name]:
                yield Observation(value, dict(attrs))

        return observe

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Collect and export now (tests, replay end, shutdown)."""
        return bool(self._provider.force_flush(int(timeout * 1000)))

    def shutdown(self) -> None:
        self._provider.shutdown()
