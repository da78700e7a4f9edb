"""The ``hciwatch.*`` dashboard metrics (pool fill, congestion scores, firing alerts, pipeline
health) pushed through every OTLP / Azure Monitor sink that has ``metrics = true``.

The SDK's reader thread collects on its own schedule while the detectors run in another thread,
so the detectors' state is never read from the collection callback: the service copies it into
an immutable :class:`~exporters.otlp.MetricsSnapshot` right after each evaluation (under the
pipeline lock) and the callback only reads that copy plus a few plain counters.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from exporters.settings import AzureMonitorSettings, OtlpSettings

if TYPE_CHECKING:
    from exporters.otlp import MetricsSnapshot, OtlpMetrics, PipelineHealth
    from hciwatch.config import AppConfig
    from hciwatch.pipeline import Pipeline

log = logging.getLogger(__name__)


def analytics_snapshot(pipeline: Pipeline, health: PipelineHealth) -> MetricsSnapshot:
    """Copy what the dashboards show out of the detectors' state (call from the pipeline's thread)."""
    from exporters.otlp import MetricsSnapshot, PoolStat

    pools = []
    for p in pipeline.engine.pool_stats():
        hours = p.hours_to_reserve
        tte = hours * 3600.0 if hours is not None and math.isfinite(hours) else None
        pools.append(PoolStat(p.network, p.pool, int(p.size), int(p.used), int(p.free), tte))
    congestion = {c.host: float(c.score) for c in pipeline.engine.congestion_scores() if math.isfinite(c.score)}
    firing = Counter(a.kind.value for a in pipeline.manager.firing())
    return MetricsSnapshot(tuple(pools), congestion, dict(firing), health)


def pipeline_health(pipeline: Pipeline, queue_depth: int, outbox_stats: dict[str, Any]) -> PipelineHealth:
    """Cumulative pipeline counters as the dashboards chart them."""
    from exporters.otlp import PipelineHealth

    s = pipeline.stats
    failures = sum(int(v.get("failures", 0)) for v in outbox_stats.get("sinks", {}).values())
    return PipelineHealth(
        samples_in=s.samples_stored,
        parse_errors=s.records_rejected + s.line_errors,
        queue_depth=queue_depth,
        export_failures=failures,
    )


def build_metric_exporters(cfg: AppConfig, snapshot: Callable[[], MetricsSnapshot]) -> Sequence[OtlpMetrics]:
    """One metrics pipeline per sink that asks for it (``metrics = true``)."""
    out: list[OtlpMetrics] = []
    for s in cfg.exporters:
        if isinstance(s, OtlpSettings) and s.metrics:
            from exporters.otlp import otlp_metrics

            out.append(otlp_metrics(s, snapshot=snapshot))
        elif isinstance(s, AzureMonitorSettings) and s.metrics:
            from exporters.azure_monitor import azure_monitor_metrics

            out.append(azure_monitor_metrics(s, snapshot=snapshot))
    if out:
        log.info("exporting hciwatch.* dashboard metrics through %d sink(s)", len(out))
    return out
