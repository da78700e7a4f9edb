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
* **SQL never runs on the event loop.** Queries run in worker threads, at most
  ``QueryLimits.max_concurrent`` at once, each on its own locked-down DuckDB connection (see
  :mod:`hciwatch.query`); the JSON/Arrow encoding happens in the worker too.
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
import base64
import contextlib
import datetime as dt
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector.errors import ConfigError
from collector.schema import AlertKind, AlertStatus, iso, parse_iso
from exporters.feed import AlertFeed, AlertFilter, FeedEvent
from hciwatch.query import QueryError, QueryLimits, QueryResult, run_query
from hciwatch.report.alerts import merge_live
from hciwatch.report.model import build_model
from hciwatch.report.render import live_page
from hciwatch.report.window import resolve_window
from hciwatch.silences import SilenceStore
from hciwatch.silences_api import register as register_silence_routes

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
ARROW_STREAM = "application/vnd.apache.arrow.stream"
SSE_HEARTBEAT_S = 15.0
SSE_RETRY_MS = 5_000
READINESS_TIMEOUT_S = 5.0
MAX_ALERT_LIMIT = 10_000
_FILTER_PARAMS = ("kind", "status", "network", "host", "since")
_QUERY_STATUS = {"bad_query": 400, "execution": 422, "timeout": 503, "internal": 500}
REPORT_CACHE_S = 10.0
MAX_REPORT_HOURS = 24 * 31
HTML_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

Readiness = Callable[[], Awaitable[dict[str, Any]]]
IngestStats = Callable[[], Mapping[str, Any]]


class _Metrics:
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


FEED_KEY = web.AppKey("feed", AlertFeed)
LIMITS_KEY = web.AppKey("query_limits", QueryLimits)


def _json_error(status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


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
    silences: SilenceStore | None = None,
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
    metrics = _Metrics(metrics_registry, feed)
    token_bytes = token.encode("utf-8") if token is not None else None
    query_slots = asyncio.Semaphore(limits.max_concurrent)
    report_lock = asyncio.Lock()  # one model build at a time; concurrent viewers share the cache
    report_cache: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = {}

    @web.middleware
    async def metrics_mw(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.monotonic()
        route = _route_name(request)
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
            return _json_error(
                exc.status,
                exc.reason,
                headers={k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")},
            )
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("API: unhandled error on %s %s", request.method, request.path)
            return _json_error(500, "internal error (see the service log)")

    @web.middleware
    async def auth_mw(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if token_bytes is None or request.path in PUBLIC_PATHS or _is_page_request(request):
            return await handler(request)
        if request.match_info.http_exception is not None:  # no such route: 404/405, no data behind it
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8"), token_bytes):
            return await handler(request)
        challenge = 'Bearer realm="hciwatch"'
        if scheme:
            challenge += ', error="invalid_token"'
        return _json_error(401, "unauthorized", headers={"WWW-Authenticate": challenge})

    app = web.Application(
        middlewares=[metrics_mw, errors_mw, auth_mw], client_max_size=limits.max_sql_bytes + 16 * 1024
    )
    app[FEED_KEY] = feed
    app[LIMITS_KEY] = limits

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        try:
            info = await asyncio.wait_for(readiness(), READINESS_TIMEOUT_S)
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            return web.json_response({"ready": False, "error": "readiness check failed"}, status=503)
        if not isinstance(info, dict):
            log.warning("readiness check returned %s, not a dict", type(info).__name__)
            return web.json_response({"ready": False, "error": "readiness check failed"}, status=503)
        body = json.dumps(info, default=str)
        return web.Response(
            text=body, content_type="application/json", status=200 if info.get("ready") is True else 503
        )

    async def metrics_handler(request: web.Request) -> web.Response:
        payload = generate_latest(metrics_registry)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def index(request: web.Request) -> web.Response:
        if _is_page_request(request):
            page, csp = live_page()
            return web.Response(
                text=page, content_type="text/html", headers={**HTML_HEADERS, "Content-Security-Policy": csp}
            )
        return web.json_response(
            {
                "service": "hciwatch",
                "endpoints": {
                    "GET /healthz": "liveness (no token)",
                    "GET /readyz": "readiness (no token)",
                    "GET /metrics": "Prometheus metrics",
                    "GET /api/v1/alerts": ("alerts: ?state=firing|recent&kind=&status=&network=&host=&since=&limit="),
                    "GET /api/v1/alerts/stream": "Server-Sent Events of alert changes (Last-Event-ID replay)",
                    "POST /api/v1/query": 'read-only SQL: {"sql": "...", "limit": N} or text/plain',
                    "GET /api/v1/report": "the operator views' model: ?from=&to= (ISO-8601) or ?hours=",
                    "GET / (any Accept but JSON)": "the live status page (asks for this token once per session)",
                },
                "tables": ["samples", "ip_observations", "alerts", *(extra_views or {})],
            }
        )

    async def alerts(request: web.Request) -> web.Response:
        _reject_unknown(request, {"state", "limit", *_FILTER_PARAMS})
        filters = _parse_filters(request)
        state = request.query.get("state", "firing")
        if state not in ("firing", "recent"):
            raise _bad_request(f"state must be 'firing' or 'recent', got {state!r}")
        limit = _int_param(request, "limit", default=1000 if state == "firing" else 100, low=1, high=MAX_ALERT_LIMIT)
        events = feed.firing(filters)[:limit] if state == "firing" else feed.recent(filters, limit)
        return web.json_response(
            {"state": state, "count": len(events), "alerts": [_event_json(e) for e in events]}, dumps=_dumps
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        _reject_unknown(request, {"last_event_id", *_FILTER_PARAMS})
        filters = _parse_filters(request)
        after = _last_event_id(request)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        peer = request.remote or "unknown"
        with feed.subscribe(after=after, filters=filters, peer=peer) as sub:
            await response.prepare(request)
            try:
                await response.write(f"retry: {SSE_RETRY_MS}\n: hciwatch alert stream\n\n".encode())
                if sub.gap is not None:
                    gap = {"requested_after": sub.gap[0], "oldest_available": sub.gap[1]}
                    await response.write(f"event: gap\ndata: {_dumps(gap)}\n\n".encode())
                while True:
                    try:
                        event = await asyncio.wait_for(sub.next(), sse_heartbeat_s)
                    except TimeoutError:
                        await response.write(b": heartbeat\n\n")
                        continue
                    if event is None:
                        if sub.dropped:
                            await response.write(b": dropped for reading too slowly; reconnect\n\n")
                        break
                    data = event.alert.to_json_line()
                    await response.write(f"id: {event.seq}\nevent: alert\ndata: {data}\n\n".encode())
            except ConnectionResetError:
                log.debug("SSE client %s went away", peer)
                return response
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def query(request: web.Request) -> web.Response:
        sql, limit = await _read_query(request, limits)
        wants_arrow = ARROW_STREAM in request.headers.get("Accept", "").lower()
        try:
            await asyncio.wait_for(query_slots.acquire(), limits.timeout_s)
        except TimeoutError:
            metrics.queries.labels("busy").inc()
            return _json_error(503, "too many queries are running; try again shortly", headers={"Retry-After": "1"})
        started = time.monotonic()
        try:
            result, body = await asyncio.to_thread(
                _run_and_encode, data_dir, sql, limit, limits, extra_views, wants_arrow
            )
        except QueryError as exc:
            metrics.queries.labels(exc.kind).inc()
            return _json_error(_QUERY_STATUS.get(exc.kind, 500), str(exc), kind=exc.kind)
        finally:
            query_slots.release()
            metrics.query_seconds.observe(time.monotonic() - started)
        metrics.queries.labels("ok").inc()
        headers = {
            "X-Hciwatch-Truncated": "true" if result.truncated else "false",
            "X-Hciwatch-Row-Count": str(result.table.num_rows),
        }
        if wants_arrow:
            return web.Response(body=body, content_type=ARROW_STREAM, headers=headers)
        return web.Response(body=body, content_type="application/json", headers=headers)

    async def report(request: web.Request) -> web.Response:
        _reject_unknown(request, {"from", "to", "hours"})
        start, end, hours = _report_window(request)
        key = (request.query.get("from", ""), request.query.get("to", ""), str(hours))
        async with report_lock:
            cached = report_cache.get(key)
            if cached is not None and time.monotonic() - cached[0] < REPORT_CACHE_S:
                model = cached[1]
            else:
                summary = (
                    {"origin": "the service's counters since it started", **ingest_stats()}
                    if ingest_stats is not None
                    else None
                )
                try:
                    model = await asyncio.to_thread(
                        _build_report, data_dir, start, end, hours, site, extra_views, summary
                    )
                except ValueError as exc:
                    raise _bad_request(str(exc)) from None
                except duckdb.Error:  # a compaction swapped files under the read: read again, once
                    log.info("report: the store changed while it was read; reading again")
                    try:
                        model = await asyncio.to_thread(
                            _build_report, data_dir, start, end, hours, site, extra_views, summary
                        )
                    except duckdb.Error as exc:
                        log.warning("report: could not read the store: %s", exc)
                        return _json_error(503, "the store is busy; try again shortly", headers={"Retry-After": "2"})
                report_cache.clear()
                report_cache[key] = (time.monotonic(), model)
        live = [e.alert.to_json() for e in reversed(feed.recent(limit=MAX_ALERT_LIMIT))]
        merged = {**model, "alerts": merge_live(model["alerts"], live, _iso_from_s(model["window"]["from"]))}
        return web.Response(text=_dumps(merged), content_type="application/json", headers={"Cache-Control": "no-store"})

    async def on_shutdown(app: web.Application) -> None:
        feed.close_subscribers()  # ends open SSE responses so graceful shutdown does not wait

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/", index)
    app.router.add_get("/api/v1/alerts", alerts)
    app.router.add_get("/api/v1/alerts/stream", stream)
    app.router.add_post("/api/v1/query", query)
    app.router.add_get("/api/v1/report", report)
    if silences is not None:
        register_silence_routes(app, silences)
    app.on_shutdown.append(on_shutdown)
    return app


# ---------------------------------------------------------------------------------------------
# Request parsing
# ---------------------------------------------------------------------------------------------


def _is_page_request(request: web.Request) -> bool:
    """Any GET of ``/`` that does not ask for JSON (a browser, curl): the page shell, which holds no data."""
    return (
        request.path == "/"
        and request.method in ("GET", "HEAD")
        and "application/json" not in request.headers.get("Accept", "").lower()
    )


def _report_window(request: web.Request) -> tuple[dt.datetime | None, dt.datetime | None, float]:
    bounds: list[dt.datetime | None] = []
    for name in ("from", "to"):
        raw = request.query.get(name, "").strip()
        try:
            bounds.append(parse_iso(raw) if raw else None)
        except ValueError as exc:
            raise _bad_request(f"{name}: {exc}") from None
    raw_hours = request.query.get("hours", "").strip()
    try:
        hours = float(raw_hours) if raw_hours else 48.0
    except ValueError:
        raise _bad_request(f"hours must be a number, got {raw_hours!r}") from None
    if not 0 < hours <= MAX_REPORT_HOURS or not math.isfinite(hours):
        raise _bad_request(f"hours must be between 0 and {MAX_REPORT_HOURS}, got {raw_hours}")
    return bounds[0], bounds[1], hours


def _build_report(
    data_dir: Path,
    start: dt.datetime | None,
    end: dt.datetime | None,
    hours: float,
    site: str | None,
    extra_views: Mapping[str, str] | None,
    summary: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The views' model; without ``from`` the window is the last ``hours`` before ``to`` (or the
    newest data)."""
    win = resolve_window(data_dir, start, end, default_span=dt.timedelta(hours=hours))
    return build_model(data_dir, site=site, extra_views=extra_views, ingest_summary=summary, window=win)


def _iso_from_s(seconds: float) -> str:
    """Unix seconds as the ISO-8601 UTC text alert changes carry."""
    return iso(dt.datetime.fromtimestamp(seconds, dt.UTC))


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(reason=message)


def _reject_unknown(request: web.Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise _bad_request(f"unknown query parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _values(request: web.Request, name: str) -> frozenset[str]:
    out: set[str] = set()
    for raw in request.query.getall(name, []):
        out.update(v.strip() for v in raw.split(",") if v.strip())
    return frozenset(out)


def _parse_filters(request: web.Request) -> AlertFilter:
    kinds = _values(request, "kind")
    allowed_kinds = {k.value for k in AlertKind}
    if bad := sorted(kinds - allowed_kinds):
        raise _bad_request(f"unknown kind {', '.join(bad)}; allowed: {', '.join(sorted(allowed_kinds))}")
    statuses = _values(request, "status")
    allowed_status = {s.value for s in AlertStatus}
    if bad := sorted(statuses - allowed_status):
        raise _bad_request(f"unknown status {', '.join(bad)}; allowed: {', '.join(sorted(allowed_status))}")
    since = None
    if "since" in request.query:
        try:
            since = parse_iso(request.query["since"])
        except ValueError as exc:
            raise _bad_request(f"since: {exc}") from None
    return AlertFilter(
        kinds=kinds,
        statuses=statuses,
        networks=_values(request, "network"),
        hosts=_values(request, "host"),
        since=since,
    )


def _int_param(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_request(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise _bad_request(f"{name} must be between {low} and {high}, got {value}")
    return value


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or ""
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise _bad_request(f"Last-Event-ID must be a sequence number from this stream, got {raw[:40]!r}")
    return int(raw)


async def _read_query(request: web.Request, limits: QueryLimits) -> tuple[str, int | None]:
    if request.content_length is not None and request.content_length > limits.max_sql_bytes + 1024:
        raise web.HTTPRequestEntityTooLarge(max_size=limits.max_sql_bytes, actual_size=request.content_length)
    ctype = request.content_type
    limit: int | None
    if ctype == "application/json":
        _reject_unknown(request, set())
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _bad_request(f"the body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise _bad_request('the JSON body must be an object: {"sql": "...", "limit": N}')
        if unknown := sorted(set(payload) - {"sql", "limit"}):
            raise _bad_request(f"unknown field(s) {', '.join(unknown)}; allowed: limit, sql")
        sql = payload.get("sql")
        limit = payload.get("limit")
        if not isinstance(sql, str):
            raise _bad_request('"sql" must be a string')
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise _bad_request('"limit" must be an integer')
    elif ctype in ("text/plain", "application/sql"):
        _reject_unknown(request, {"limit"})
        try:
            sql = await request.text()
        except UnicodeDecodeError:
            raise _bad_request("the body is not UTF-8 text") from None
        limit = (
            _int_param(request, "limit", default=limits.default_rows, low=1, high=limits.max_rows)
            if "limit" in request.query
            else None
        )
    else:
        raise web.HTTPUnsupportedMediaType(reason='send the query as application/json {"sql": ...} or as text/plain')
    return sql, limit


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _event_json(event: FeedEvent) -> dict[str, Any]:
    return {"seq": event.seq, **event.alert.to_json()}


def _run_and_encode(
    data_dir: Path, sql: str, limit: int | None, limits: QueryLimits, extra_views: Mapping[str, str] | None, arrow: bool
) -> tuple[QueryResult, bytes]:
    result = run_query(data_dir, sql, limit=limit, limits=limits, extra_views=extra_views)
    if arrow:
        return result, arrow_ipc(result)
    return result, json_result(result).encode("utf-8")


def arrow_ipc(result: QueryResult) -> bytes:
    """The result as an Arrow IPC stream; ``hciwatch.truncated`` is in the schema metadata."""
    table = result.table
    meta = dict(table.schema.metadata or {})
    meta[b"hciwatch.truncated"] = b"true" if result.truncated else b"false"
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def json_result(result: QueryResult) -> str:
    """The result as the API's JSON document (rows are arrays in column order)."""
    table = result.table
    columns = [_column_values(table.column(i)) for i in range(table.num_columns)]
    rows = [list(r) for r in zip(*columns, strict=True)] if columns else []
    return _dumps(
        {
            "columns": table.column_names,
            "types": [str(f.type) for f in table.schema],
            "rows": rows,
            "row_count": table.num_rows,
            "truncated": result.truncated,
            "elapsed_ms": round(result.elapsed_s * 1000, 3),
        }
    )


def _column_values(column: pa.ChunkedArray) -> list[Any]:
    try:
        values = column.to_pylist()
    except (pa.ArrowException, ValueError, OverflowError):
        # e.g. DuckDB's 'infinity' timestamps do not fit Python datetimes: show them as text
        return [None if v is None else str(v) for v in column.cast(pa.string()).to_pylist()]
    return [_json_value(v, column.type) for v in values]


def _json_value(value: Any, typ: pa.DataType) -> Any:
    """One Arrow value as JSON, by its Arrow type (maps become objects, times ISO-8601)."""
    if value is None:
        return None
    if pa.types.is_dictionary(typ):
        return _json_value(value, typ.value_type)
    if pa.types.is_map(typ):
        return {str(k): _json_value(v, typ.item_type) for k, v in value}
    if pa.types.is_struct(typ):
        return {
            typ.field(i).name: _json_value(value.get(typ.field(i).name), typ.field(i).type)
            for i in range(typ.num_fields)
        }
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        return [_json_value(v, typ.value_type) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime):
        return iso(value) if value.tzinfo is not None else value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, bool | int | str):
        return value
    if hasattr(value, "months") and hasattr(value, "days"):  # MonthDayNano interval
        return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
    return str(value)
