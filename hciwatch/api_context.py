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
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporters.feed import AlertFeed
from hciwatch.query import QueryLimits
from hciwatch.query_worker import QueryWorkers

Readiness = Callable[[], Awaitable[dict[str, Any]]]
IngestStats = Callable[[], Mapping[str, Any]]


class ApiMetrics:
    """The API's own series, registered once per app in the service registry."""

    def __init__(self, registry: CollectorRegistry, feed: AlertFeed) -> None:
        self.requests = Counter(
            "hciwatch_api_requests", "HTTP requests served by the API", ["route", "method", "code"], registry=registry
        )
        self.latency = Histogram(
            "hciwatch_api_request_duration_seconds",
            "Time to answer an API request (SSE streams excluded)",
            ["route"],
            registry=registry,
        )
        self.queries = Counter("hciwatch_api_queries", "SQL queries by outcome", ["outcome"], registry=registry)
        self.query_seconds = Histogram(
            "hciwatch_api_query_duration_seconds",
            "Time SQL queries took (including refused ones)",
            registry=registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        registry.register(_FeedCollector(feed))


class _FeedCollector(Collector):
    """Exposes the feed's counters without the feed depending on prometheus_client."""

    def __init__(self, feed: AlertFeed) -> None:
        self._feed = feed

    def collect(self) -> Iterable[Metric]:
        feed = self._feed
        yield GaugeMetricFamily(
            "hciwatch_feed_subscribers", "Live alert stream subscribers", value=feed.subscriber_count
        )
        yield GaugeMetricFamily(
            "hciwatch_feed_firing_alerts", "Alerts firing now, per the feed", value=feed.firing_count
        )
        yield CounterMetricFamily(
            "hciwatch_feed_changes", "Alert state changes the feed received", value=feed.changes_total
        )
        yield CounterMetricFamily(
            "hciwatch_feed_subscribers_dropped",
            "Stream subscribers dropped for reading too slowly",
            value=feed.dropped_total,
        )


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
    report_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one model build at a time
    report_cache: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = field(default_factory=dict)


CTX_KEY = web.AppKey("hciwatch_api", ApiContext)


def json_error(status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=headers)
