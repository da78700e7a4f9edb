"""``POST /api/v1/query``: read-only SQL, in memory-capped workers when the service provides them.

In central mode (``hciwatch serve-fleet``, :class:`hciwatch.fleet.FleetViews` on the context) the
same sandbox runs over every site of a lake with the fleet views, as ``hciwatch sql --lake`` does.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from hciwatch.api_context import CTX_KEY, json_error
from hciwatch.api_encode import run_and_encode
from hciwatch.api_params import read_query
from hciwatch.query import QueryError

ARROW_STREAM = "application/vnd.apache.arrow.stream"
_QUERY_STATUS = {"bad_query": 400, "execution": 422, "timeout": 503, "internal": 500}


async def query(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    try:
        sql, limit = await asyncio.wait_for(read_query(request, ctx.limits), ctx.body_timeout)
    except TimeoutError:
        return json_error(408, f"the request body did not arrive within {ctx.body_timeout:g} s")
    wants_arrow = ARROW_STREAM in request.headers.get("Accept", "").lower()
    try:
        await asyncio.wait_for(ctx.query_slots.acquire(), ctx.limits.timeout_s)
    except TimeoutError:
        ctx.metrics.queries.labels("busy").inc()
        return json_error(503, "too many queries are running; try again shortly", headers={"Retry-After": "1"})
    started = time.monotonic()
    views, lake = ctx.extra_views, None
    try:
        if ctx.fleet is not None:  # central mode: every site of the lake, each site's own pools
            views, lake = await asyncio.to_thread(ctx.fleet.views), ctx.fleet.settings
        if ctx.query_workers is not None:
            done = await ctx.query_workers.run(ctx.data_dir, sql, limit, ctx.limits, views, wants_arrow, lake)
            rows, truncated, body = done.rows, done.truncated, done.body
        else:
            result, body = await asyncio.to_thread(
                run_and_encode, ctx.data_dir, sql, limit, ctx.limits, views, wants_arrow, lake
            )
            rows, truncated = result.table.num_rows, result.truncated
    except QueryError as exc:
        ctx.metrics.queries.labels(exc.kind).inc()
        return json_error(_QUERY_STATUS.get(exc.kind, 500), str(exc), kind=exc.kind)
    finally:
        ctx.query_slots.release()
        ctx.metrics.query_seconds.observe(time.monotonic() - started)
    ctx.metrics.queries.labels("ok").inc()
    headers = {
        "X-Hciwatch-Truncated": "true" if truncated else "false",
        "X-Hciwatch-Row-Count": str(rows),
    }
    if wants_arrow:
        return web.Response(body=body, content_type=ARROW_STREAM, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)
