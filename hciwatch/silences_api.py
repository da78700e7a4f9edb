"""HTTP routes for silences, behind the API token like every data route.

``GET /api/v1/silences`` (``?all=1`` includes expired ones), ``POST /api/v1/silences`` with
``{"matchers": {"kind": "...", "host": "..."} | "kind=...,host=...", "for": "2h", "comment": "..."}``
and ``DELETE /api/v1/silences/{id}`` (expire now). Registered by :func:`register` in one line.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from analytics.settings import parse_duration
from hciwatch.silences import SilenceStore, parse_matchers


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(reason=message)


def register(app: web.Application, store: SilenceStore) -> None:
    """Add the silence routes to ``app`` (its auth middleware protects them)."""

    async def list_silences(request: web.Request) -> web.Response:
        everything = request.query.get("all", "") in ("1", "true", "yes")
        items = [s.to_json() for s in store.current(include_expired=everything)]
        return web.json_response({"count": len(items), "silences": items})

    async def add_silence(request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
        except ValueError:
            raise _bad("body must be JSON: {matchers, for, comment}") from None
        if not isinstance(body, dict):
            raise _bad("body must be a JSON object: {matchers, for, comment}")
        unknown = set(body) - {"matchers", "for", "comment", "created_by"}
        if unknown:
            raise _bad(f"unknown field(s): {', '.join(sorted(unknown))} (allowed: matchers, for, comment, created_by)")
        raw = body.get("matchers")
        try:
            if isinstance(raw, str):
                matchers = parse_matchers(raw)
            elif isinstance(raw, dict) and raw and all(isinstance(v, str) and v for v in raw.values()):
                matchers = {str(k): str(v) for k, v in raw.items()}
            else:
                raise ValueError("matchers: a non-empty object of strings or 'key=value,...'")
            duration = parse_duration(str(body.get("for", "")))
            silence = store.add(
                matchers,
                duration=duration,
                comment=str(body.get("comment", "")),
                created_by=str(body.get("created_by", "api")),
            )
        except ValueError as exc:
            raise _bad(str(exc)) from None
        return web.json_response(silence.to_json(), status=201)

    async def expire_silence(request: web.Request) -> web.Response:
        try:
            silence = store.expire(request.match_info["id"])
        except KeyError:
            raise web.HTTPNotFound(reason=f"no silence {request.match_info['id']!r}") from None
        return web.json_response(silence.to_json())

    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", add_silence)
    app.router.add_delete("/api/v1/silences/{id}", expire_silence)
