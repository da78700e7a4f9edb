"""The service's HTTP API: health, readiness, Prometheus metrics, alerts, the SSE feed and SQL.

Routes (all but ``/healthz`` and ``/readyz`` need ``Authorization: Bearer <token>``):

==========================  ======================================================================
``GET /healthz``            liveness: always ``200 {"status": "ok"}``
``GET /readyz``             readiness: the service's readiness dict, 200 when ``ready`` is true,
                            else 503 (keep it free of secrets: it is served without a token)
``GET /metrics``            Prometheus text exposition of the service's registry
``GET /``                   a browser (``Accept: text/html``) gets the live status page: a shell
                            with no data that asks for the token once per browser session and
                            then reads everything below with it; other clients get the JSON
                            index of the endpoints (with the token)
``GET /api/v1/report``      the operator views' model (:mod:`hciwatch.report.model`) for
                            ``?from=&to=`` (ISO-8601) or the last ``?hours=`` (48) of data, with
                            the feed's alert changes merged in
``GET /api/v1/alerts``      ``?state=firing|recent&kind=&status=&network=&host=&since=&limit=``
``GET /api/v1/alerts/stream``  Server-Sent Events: ``id: <seq>``, ``event: alert``,
                            ``data: <alert JSON>``; ``: heartbeat`` comments every 15 s;
                            ``Last-Event-ID`` (or ``?last_event_id=``) replays from the ring;
                            ``event: gap`` when the ring no longer reaches back that far
``POST /api/v1/query``      ``{"sql": "...", "limit": N}`` (JSON) or the SQL as ``text/plain``
                            (``?limit=N``); JSON ``{"columns", "types", "rows", "row_count",
                            "truncated", "elapsed_ms"}``, or an Arrow IPC stream when
                            ``Accept: application/vnd.apache.arrow.stream``
==========================  ======================================================================

Why it is built this way:

* **Fail closed.** ``create_app`` refuses to build an app without a token unless the caller says
  ``allow_unauthenticated=True`` (meant for local testing only). Tokens are compared with
  :func:`hmac.compare_digest`; a 401 carries ``WWW-Authenticate: Bearer`` and says nothing about
  the data or whether the path exists (routing happens after the check).
* **Errors are JSON** (``{"error": "..."}``) everywhere, including aiohttp's own 404/405/413, so
  scripts never have to parse HTML.
* **SQL never runs on the event loop.** Queries run in memory-capped worker processes in the
  service (:mod:`hciwatch.query_worker`; worker threads without them), at most
  ``QueryLimits.max_concurrent`` at once, each on its own locked-down DuckDB connection (see
  :mod:`hciwatch.query`); the JSON/Arrow encoding happens in the worker too.
* **One module per job.** This module builds the app (checks, middlewares, routes); the handlers
  are in ``api_health``, ``api_alerts``, ``api_query`` and ``api_report``, request parsing in
  ``api_params``, result encoding in ``api_encode``, shared state in ``api_context``, and the
  hardened socket in ``api_server``.
* **The page is public, its data is not.** A browser cannot put a bearer token on a navigation,
  so ``/`` serves the page (scripts and styles only, pinned by a Content-Security-Policy that
  allows requests to this origin alone) without the token; the page asks for the token and sends
  it on every data request, including the SSE stream (read with ``fetch``, as ``EventSource``
  cannot send headers). The token never appears in a URL.
* **Self-instrumented.** Requests, queries and the feed are counted in the same registry that
  ``/metrics`` serves, labelled by route template (never by raw path, which would let any client
  create series).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.errors import ConfigError
from exporters.feed import AlertFeed
from hciwatch import api_alerts, api_health, api_query, api_report
from hciwatch.api_context import CTX_KEY, ApiContext, ApiMetrics, IngestStats, Readiness, json_error
from hciwatch.api_params import is_page_request, route_name
from hciwatch.query import QueryLimits
from hciwatch.query_worker import QueryWorkers
from hciwatch.silences import SilenceStore
from hciwatch.silences_api import register as register_silence_routes

if TYPE_CHECKING:  # the fleet module (and its config imports) only where central mode runs
    from hciwatch.fleet import FleetViews

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
SSE_HEARTBEAT_S = 15.0


def create_app(
    *,
    data_dir: Path,
    feed: AlertFeed,
    token: str | None,
    readiness: Readiness,
    metrics_registry: CollectorRegistry,
    query_limits: QueryLimits | None = None,
    allow_unauthenticated: bool = False,
    extra_views: Mapping[str, str] | None = None,
    sse_heartbeat_s: float = SSE_HEARTBEAT_S,
    site: str | None = None,
    ingest_stats: IngestStats | None = None,
    query_workers: QueryWorkers | None = None,
    body_timeout: float = 30.0,
    silences: SilenceStore | None = None,
    fleet: FleetViews | None = None,
) -> web.Application:
    """Build the API application (the service adds it to its runner and binds the socket).

    Args:
        data_dir: the store's data directory (queries read its Parquet files).
        feed: the alert feed the outbox delivers to.
        token: the bearer token every non-health request must carry.
        readiness: returns ``{"ready": bool, ...details}``; only ``ready is True`` gives 200.
        metrics_registry: served at ``/metrics``; the API registers its own series in it.
        query_limits: row/time/memory limits for ``/api/v1/query``.
        allow_unauthenticated: serve without a token. For local testing only.
        extra_views: more query views, name → ``SELECT`` over the stored tables.
        sse_heartbeat_s: seconds between SSE heartbeat comments.
        site: the site's name, shown in the views' header.
        ingest_stats: returns the pipeline's parse counters (``records_read``, ``records_rejected``,
            ``reject_reasons``, ``skipped_parts``) for the views' header.
        query_workers: run SQL in memory-capped worker processes (the service does); without
            it queries run in a thread of this process.
        body_timeout: seconds a client gets to send a query body (408 after).
        fleet: central mode (``hciwatch serve-fleet``): queries run over this lake with the fleet
            views; only health, readiness, metrics and the query endpoint are served (alerts, the
            feed and the operator views belong to each site's instance).

    Raises:
        ConfigError: no token and ``allow_unauthenticated`` is not set, or the token is blank.
    """
    if token is not None and not token.strip():
        raise ConfigError("the API token is empty; put the token in api.token_file", key="api.token_file")
    if token is None and not allow_unauthenticated:
        raise ConfigError(
            "the API has no token: set api.token_file (a file or env:NAME holding the bearer token); "
            "api.allow_unauthenticated = true serves without one and is for local testing only",
            key="api.token_file",
        )
    if token is None:
        log.warning("API authentication is OFF (allow_unauthenticated): for local testing only")
    limits = query_limits or QueryLimits()
    metrics = ApiMetrics(metrics_registry, feed)
    token_bytes = token.encode("utf-8") if token is not None else None

    @web.middleware
    async def metrics_mw(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.monotonic()
        route = route_name(request)
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            metrics.requests.labels(route, request.method, str(code)).inc()
            if route != "/api/v1/alerts/stream":
                metrics.latency.labels(route).observe(time.monotonic() - started)

    @web.middleware
    async def errors_mw(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return json_error(
                exc.status,
                exc.reason,
                headers={k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")},
            )
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("API: unhandled error on %s %s", request.method, request.path)
            return json_error(500, "internal error (see the service log)")

    @web.middleware
    async def auth_mw(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if token_bytes is None or request.path in PUBLIC_PATHS or is_page_request(request):
            return await handler(request)
        if request.match_info.http_exception is not None:  # no such route: 404/405, no data behind it
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # surrogateescape: a header with non-UTF-8 bytes is a wrong token (401), not a crash (500)
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), token_bytes
        ):
            return await handler(request)
        challenge = 'Bearer realm="hciwatch"'
        if scheme:
            challenge += ', error="invalid_token"'
        return json_error(401, "unauthorized", headers={"WWW-Authenticate": challenge})

    app = web.Application(
        middlewares=[metrics_mw, errors_mw, auth_mw], client_max_size=limits.max_sql_bytes + 16 * 1024
    )
    app[CTX_KEY] = ApiContext(
        data_dir=data_dir,
        feed=feed,
        readiness=readiness,
        metrics_registry=metrics_registry,
        limits=limits,
        metrics=metrics,
        extra_views=extra_views,
        sse_heartbeat_s=sse_heartbeat_s,
        site=site,
        ingest_stats=ingest_stats,
        query_workers=query_workers,
        body_timeout=body_timeout,
        query_slots=asyncio.Semaphore(limits.max_concurrent),
        fleet=fleet,
    )

    async def on_shutdown(app: web.Application) -> None:
        feed.close_subscribers()  # ends open SSE responses so graceful shutdown does not wait

    app.router.add_get("/healthz", api_health.healthz)
    app.router.add_get("/readyz", api_health.readyz)
    app.router.add_get("/metrics", api_health.metrics_handler)
    if fleet is not None:
        app.router.add_post("/api/v1/query", api_query.query)
        app.on_shutdown.append(on_shutdown)
        return app
    app.router.add_get("/", api_report.index)
    app.router.add_get("/api/v1/alerts", api_alerts.alerts)
    app.router.add_get("/api/v1/alerts/stream", api_alerts.stream)
    app.router.add_post("/api/v1/query", api_query.query)
    app.router.add_get("/api/v1/report", api_report.report)
    if silences is not None:
        register_silence_routes(app, silences)
    app.on_shutdown.append(on_shutdown)
    return app
