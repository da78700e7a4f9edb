"""Parsing and checking API request parameters: every bad value is a 400 naming the parameter."""

from __future__ import annotations

import datetime as dt
import json
import math

from aiohttp import web

from collector.schema import AlertKind, AlertStatus, parse_iso
from exporters.feed import AlertFilter
from hciwatch.query import QueryLimits

MAX_ALERT_LIMIT = 10_000
MAX_REPORT_HOURS = 24 * 31
FILTER_PARAMS = ("kind", "status", "network", "host", "since")


def is_page_request(request: web.Request) -> bool:
    """A browser navigating to ``/``: it gets the page, which holds no data."""
    return (
        request.path == "/"
        and request.method in ("GET", "HEAD")
        and "text/html" in request.headers.get("Accept", "").lower()
    )


def report_window(request: web.Request) -> tuple[dt.datetime | None, dt.datetime | None, float]:
    bounds: list[dt.datetime | None] = []
    for name in ("from", "to"):
        raw = request.query.get(name, "").strip()
        try:
            bounds.append(parse_iso(raw) if raw else None)
        except ValueError as exc:
            raise bad_request(f"{name}: {exc}") from None
    raw_hours = request.query.get("hours", "").strip()
    try:
        hours = float(raw_hours) if raw_hours else 48.0
    except ValueError:
        raise bad_request(f"hours must be a number, got {raw_hours!r}") from None
    if not 0 < hours <= MAX_REPORT_HOURS or not math.isfinite(hours):
        raise bad_request(f"hours must be between 0 and {MAX_REPORT_HOURS}, got {raw_hours}")
    return bounds[0], bounds[1], hours


def route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(reason=message)


def reject_unknown(request: web.Request, allowed: set[str]) -> None:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise bad_request(f"unknown query parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _values(request: web.Request, name: str) -> frozenset[str]:
    out: set[str] = set()
    for raw in request.query.getall(name, []):
        out.update(v.strip() for v in raw.split(",") if v.strip())
    return frozenset(out)


def parse_filters(request: web.Request) -> AlertFilter:
    kinds = _values(request, "kind")
    allowed_kinds = {k.value for k in AlertKind}
    if bad := sorted(kinds - allowed_kinds):
        raise bad_request(f"unknown kind {', '.join(bad)}; allowed: {', '.join(sorted(allowed_kinds))}")
    statuses = _values(request, "status")
    allowed_status = {s.value for s in AlertStatus}
    if bad := sorted(statuses - allowed_status):
        raise bad_request(f"unknown status {', '.join(bad)}; allowed: {', '.join(sorted(allowed_status))}")
    since = None
    if "since" in request.query:
        try:
            since = parse_iso(request.query["since"])
        except ValueError as exc:
            raise bad_request(f"since: {exc}") from None
    return AlertFilter(
        kinds=kinds,
        statuses=statuses,
        networks=_values(request, "network"),
        hosts=_values(request, "host"),
        since=since,
    )


def int_param(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}, got {value}")
    return value


def last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or ""
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise bad_request(f"Last-Event-ID must be a sequence number from this stream, got {raw[:40]!r}")
    return int(raw)


async def read_query(request: web.Request, limits: QueryLimits) -> tuple[str, int | None]:
    if request.content_length is not None and request.content_length > limits.max_sql_bytes + 1024:
        raise web.HTTPRequestEntityTooLarge(max_size=limits.max_sql_bytes, actual_size=request.content_length)
    ctype = request.content_type
    limit: int | None
    if ctype == "application/json":
        reject_unknown(request, set())
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad_request(f"the body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise bad_request('the JSON body must be an object: {"sql": "...", "limit": N}')
        if unknown := sorted(set(payload) - {"sql", "limit"}):
            raise bad_request(f"unknown field(s) {', '.join(unknown)}; allowed: limit, sql")
        sql = payload.get("sql")
        limit = payload.get("limit")
        if not isinstance(sql, str):
            raise bad_request('"sql" must be a string')
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise bad_request('"limit" must be an integer')
    elif ctype in ("text/plain", "application/sql"):
        reject_unknown(request, {"limit"})
        try:
            sql = await request.text()
        except UnicodeDecodeError:
            raise bad_request("the body is not UTF-8 text") from None
        limit = (
            int_param(request, "limit", default=limits.default_rows, low=1, high=limits.max_rows)
            if "limit" in request.query
            else None
        )
    else:
        raise web.HTTPUnsupportedMediaType(reason='send the query as application/json {"sql": ...} or as text/plain')
    return sql, limit


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------
