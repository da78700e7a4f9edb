"""What every API handler shares: the app's context (store, feed, limits, counters) and JSON errors.

The handlers live in one module per job (``api_health``, ``api_alerts``, ``api_query``,
``api_report``) and read this context from ``request.app[CTX_KEY]``; :func:`hciwatch.api.create_app`
builds it once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporters.feed import AlertFeed
from exporters.service_metrics import spec
from hciwatch.query import QueryLimits
from hciwatch.query_worker import QueryWorkers
from hciwatch.selfmetrics import counter, family, histogram

if TYPE_CHECKING:  # the fleet module (and its config imports) only where central mode runs
    from hciwatch.fleet import FleetViews

Readiness = Callable[[], Awaitable[dict[str, Any]]]
IngestStats = Callable[[], Mapping[str, Any]]


class ApiMetrics:
    """The API's own series, registered once per app in the service registry."""

    def __init__(self, registry: CollectorRegistry, feed: AlertFeed) -> None:
        # names, help and labels: exporters.service_metrics
        self.requests = counter("hciwatch.api.requests", registry)
        self.latency = histogram("hciwatch.api.request_duration", registry)
        self.queries = counter("hciwatch.api.queries", registry)
        self.query_seconds = histogram("hciwatch.api.query_duration", registry)
        registry.register(_FeedCollector(feed))


class _FeedCollector(Collector):
    """Exposes the feed's counters without the feed depending on prometheus_client."""

    def __init__(self, feed: AlertFeed) -> None:
        self._feed = feed

    def collect(self) -> Iterable[Metric]:
        feed = self._feed
        for name, value in (
            ("hciwatch.feed.subscribers", feed.subscriber_count),
            ("hciwatch.feed.firing_alerts", feed.firing_count),
            ("hciwatch.feed.changes", feed.changes_total),
            ("hciwatch.feed.subscribers_dropped", feed.dropped_total),
        ):
            yield family(spec(name), [({}, value)])


@dataclass
class ApiContext:
    """Everything the handlers need, built once per app."""

    data_dir: Path
    feed: AlertFeed
    readiness: Readiness
    metrics_registry: CollectorRegistry
    limits: QueryLimits
    metrics: ApiMetrics
    extra_views: Mapping[str, str] | None
    sse_heartbeat_s: float
    site: str | None
    ingest_stats: IngestStats | None
    query_workers: QueryWorkers | None
    body_timeout: float
    query_slots: asyncio.Semaphore
    fleet: FleetViews | None = None  # central mode: queries run over this lake (hciwatch serve-fleet)
    report_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one model build at a time
    report_cache: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = field(default_factory=dict)


CTX_KEY = web.AppKey("hciwatch_api", ApiContext)


def json_error(status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=headers)
