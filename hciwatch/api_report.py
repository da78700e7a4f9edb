"""The operator views: the live page at ``/`` (or the JSON index) and ``/api/v1/report``."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
from aiohttp import web

from collector.schema import iso
from hciwatch.api_context import CTX_KEY, json_error
from hciwatch.api_encode import dumps
from hciwatch.api_params import MAX_ALERT_LIMIT, bad_request, is_page_request, reject_unknown, report_window
from hciwatch.report.alerts import merge_live
from hciwatch.report.model import build_model
from hciwatch.report.render import live_page
from hciwatch.report.window import resolve_window

log = logging.getLogger("hciwatch.api")

REPORT_CACHE_S = 10.0
HTML_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def build_report(
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


def iso_from_s(seconds: float) -> str:
    """Unix seconds as the ISO-8601 UTC text alert changes carry."""
    return iso(dt.datetime.fromtimestamp(seconds, dt.UTC))


async def index(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    if is_page_request(request):
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
                "GET /ctx.metrics": "Prometheus ctx.metrics",
                "GET /api/v1/alerts": ("alerts: ?state=firing|recent&kind=&status=&network=&host=&since=&limit="),
                "GET /api/v1/alerts/stream": "Server-Sent Events of alert changes (Last-Event-ID replay)",
                "POST /api/v1/query": 'read-only SQL: {"sql": "...", "limit": N} or text/plain',
                "GET /api/v1/report": "the operator views' model: ?from=&to= (ISO-8601) or ?hours=",
                "GET / (Accept: text/html)": "the live status page (asks for this token once per session)",
            },
            "tables": ["samples", "ip_observations", "alerts", *(ctx.extra_views or {})],
        }
    )


async def report(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    reject_unknown(request, {"from", "to", "hours"})
    start, end, hours = report_window(request)
    key = (request.query.get("from", ""), request.query.get("to", ""), str(hours))
    async with ctx.report_lock:
        cached = ctx.report_cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < REPORT_CACHE_S:
            model = cached[1]
        else:
            summary = (
                {"origin": "the service's counters since it started", **ctx.ingest_stats()}
                if ctx.ingest_stats is not None
                else None
            )
            try:
                model = await asyncio.to_thread(
                    build_report, ctx.data_dir, start, end, hours, ctx.site, ctx.extra_views, summary
                )
            except ValueError as exc:
                raise bad_request(str(exc)) from None
            except duckdb.Error:  # a compaction swapped files under the read: read again, once
                log.info("report: the store changed while it was read; reading again")
                try:
                    model = await asyncio.to_thread(
                        build_report, ctx.data_dir, start, end, hours, ctx.site, ctx.extra_views, summary
                    )
                except duckdb.Error as exc:
                    log.warning("report: could not read the store: %s", exc)
                    return json_error(503, "the store is busy; try again shortly", headers={"Retry-After": "2"})
            ctx.report_cache.clear()
            ctx.report_cache[key] = (time.monotonic(), model)
    live = [e.alert.to_json() for e in reversed(ctx.feed.recent(limit=MAX_ALERT_LIMIT))]
    merged = {**model, "alerts": merge_live(model["alerts"], live, iso_from_s(model["window"]["from"]))}
    return web.Response(text=dumps(merged), content_type="application/json", headers={"Cache-Control": "no-store"})
