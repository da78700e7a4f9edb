"""Alert state: the firing/recent list and the Server-Sent Events stream of changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from hciwatch.api_context import CTX_KEY
from hciwatch.api_encode import dumps, event_json
from hciwatch.api_params import (
    FILTER_PARAMS,
    MAX_ALERT_LIMIT,
    bad_request,
    int_param,
    last_event_id,
    parse_filters,
    reject_unknown,
)

log = logging.getLogger("hciwatch.api")

SSE_RETRY_MS = 5_000


async def alerts(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    reject_unknown(request, {"state", "limit", *FILTER_PARAMS})
    filters = parse_filters(request)
    state = request.query.get("state", "firing")
    if state not in ("firing", "recent"):
        raise bad_request(f"state must be 'firing' or 'recent', got {state!r}")
    limit = int_param(request, "limit", default=1000 if state == "firing" else 100, low=1, high=MAX_ALERT_LIMIT)
    events = ctx.feed.firing(filters)[:limit] if state == "firing" else ctx.feed.recent(filters, limit)
    return web.json_response(
        {"state": state, "count": len(events), "alerts": [event_json(e) for e in events]}, dumps=dumps
    )


async def stream(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX_KEY]
    reject_unknown(request, {"last_event_id", *FILTER_PARAMS})
    filters = parse_filters(request)
    after = last_event_id(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    peer = request.remote or "unknown"
    with ctx.feed.subscribe(after=after, filters=filters, peer=peer) as sub:
        await response.prepare(request)
        try:
            await response.write(f"retry: {SSE_RETRY_MS}\n: hciwatch alert stream\n\n".encode())
            if sub.gap is not None:
                gap = {"requested_after": sub.gap[0], "oldest_available": sub.gap[1]}
                await response.write(f"event: gap\ndata: {dumps(gap)}\n\n".encode())
            while True:
                try:
                    event = await asyncio.wait_for(sub.next(), ctx.sse_heartbeat_s)
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
