"""Liveness, readiness and the Prometheus metrics endpoint."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hciwatch.api_context import CTX_KEY

log = logging.getLogger("hciwatch.api")

READINESS_TIMEOUT_S = 5.0


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    try:
        info = await asyncio.wait_for(ctx.readiness(), READINESS_TIMEOUT_S)
    except Exception as exc:
        log.warning("readiness check failed: %s", exc)
        return web.json_response({"ready": False, "error": "readiness check failed"}, status=503)
    if not isinstance(info, dict):
        log.warning("readiness check returned %s, not a dict", type(info).__name__)
        return web.json_response({"ready": False, "error": "readiness check failed"}, status=503)
    body = json.dumps(info, default=str)
    return web.Response(text=body, content_type="application/json", status=200 if info.get("ready") is True else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    payload = generate_latest(ctx.metrics_registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})
