"""``/api/v1/plan``: the capacity preflight over HTTP (the same answer as ``hciwatch plan --format json``).

``GET /api/v1/plan?upgrade=all&scale=C=N&create=NAME=N[@NET]&add_services=C=K&site_update=1&ip_plan=23h2``
(each operation parameter may repeat) or ``POST /api/v1/plan`` with a plan file's JSON body
(``{"operation": [{"op": "upgrade", "clusters": ["all"]}, ...]}``). 200 with the plan for any verdict
(the body's ``verdict`` says whether it fits), 400 with ``{"error": ...}`` for a bad plan. The app's
bearer-token middleware covers these routes like every other ``/api`` route. Registered by
:func:`add_plan_routes` (one line where the app is built).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from analytics.plan import Operation, PlanError, PlanFile, operations_from_flags
from analytics.settings import PoolSettings
from hciwatch.plan_data import run_plan

PARAMS = {"upgrade", "scale", "create", "add_services", "site_update", "ip_plan"}


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": message}), content_type="application/json")


def add_plan_routes(app: web.Application, *, data_dir: Path, networks: Any, pools: PoolSettings) -> None:
    """Add ``GET``/``POST /api/v1/plan`` to an API application."""

    async def answer(ops: list[Operation], ip_plan: str | None) -> web.Response:
        settings = pools
        if ip_plan is not None:
            if ip_plan not in ("22h2", "23h2"):
                return _error(400, f"ip_plan must be 22h2 or 23h2, got {ip_plan!r}")
            settings = pools.model_copy(update={"ip_plan": ip_plan})
        try:
            result = await asyncio.to_thread(run_plan, data_dir, networks, settings, ops)
        except (PlanError, ValueError) as exc:
            return _error(400, str(exc))
        return web.Response(
            text=json.dumps(result.as_dict()), content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    async def get_plan(request: web.Request) -> web.Response:
        q = request.query
        unknown = sorted(set(q) - PARAMS)
        if unknown:
            return _error(400, f"unknown parameter(s): {', '.join(unknown)} (allowed: {', '.join(sorted(PARAMS))})")
        try:
            ops = operations_from_flags(
                upgrade=q.getall("upgrade", []),
                scale=q.getall("scale", []),
                create=q.getall("create", []),
                add_services=q.getall("add_services", []),
                site_update=q.get("site_update", "").lower() in ("1", "true", "yes"),
            )
        except PlanError as exc:
            return _error(400, str(exc))
        return await answer(ops, q.get("ip_plan"))

    async def post_plan(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"the body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, 'the body must be an object: {"operation": [...], "ip_plan": "22h2"}')
        ip_plan = body.pop("ip_plan", None)
        try:
            ops = list(PlanFile.model_validate(body).operation)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
            return _error(400, f"bad plan: {problems}")
        return await answer(ops, None if ip_plan is None else str(ip_plan))

    app.router.add_get("/api/v1/plan", get_plan)
    app.router.add_post("/api/v1/plan", post_plan)
