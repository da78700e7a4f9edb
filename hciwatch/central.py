"""``hciwatch serve-fleet``: the central fleet view — the query API over a lake many sites write.

A central deployment runs no sources, detectors or sinks: each site's instance does that and
writes its site's partitions into the shared lake. This process only answers
``POST /api/v1/query`` over every site (the same read-only DuckDB sandbox, limits and memory-capped
worker processes as a site's API, the same fleet views as ``hciwatch sql --lake``), plus
``/healthz``, ``/readyz`` (the lake can be listed) and ``/metrics``.

Configuration is an ordinary config file: ``[store.lake]`` names the lake and its credentials
(``SecretRef``s: connection string, key, SAS, S3 keys; DefaultAzureCredential / the AWS chain when
none), ``[api]`` the listen address, token and query limits. ``--lake URL`` replaces the lake's URL.
A token is required: a central reader sees every site, so ``api.allow_unauthenticated`` is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.catalog import DEFAULT_CATALOG
from collector.config import resolve_secret
from collector.errors import ConfigError
from collector.lake import LakeSettings
from collector.unmapped import unmapped_metrics_view
from exporters.feed import AlertFeed
from hciwatch.api import create_app
from hciwatch.api_server import GuardedSite, HttpCounters, ServerLimits, make_runner
from hciwatch.config import AppConfig
from hciwatch.fleet import FleetViews
from hciwatch.query import QueryLimits
from hciwatch.query_worker import QueryWorkers

log = logging.getLogger(__name__)


def central_lake(cfg: AppConfig, url: str | None) -> LakeSettings:
    """The lake a central reader serves: ``[store.lake]`` with ``url`` replacing its URL."""
    settings = cfg.collector.store.lake
    if url:
        settings = LakeSettings.model_validate({**settings.model_dump(), "url": url})
    if not settings.url:
        raise ConfigError("serve-fleet needs a lake: set [store.lake] url or pass --lake URL", key="store.lake.url")
    return settings


@dataclass
class CentralServer:
    """The running central API (``start`` binds, ``stop`` closes the socket and the workers)."""

    cfg: AppConfig
    lake: LakeSettings
    listen: tuple[str, int]
    workers: int = 2
    port: int = 0
    _runner: web.AppRunner | None = field(default=None, init=False)
    _workers: QueryWorkers | None = field(default=None, init=False)

    async def start(self) -> None:
        api = self.cfg.api
        token = resolve_secret(api.token_file, what="api.token_file")
        if token is None:
            raise ConfigError(
                "serve-fleet needs api.token_file: a central reader answers for every site of the lake, "
                "so it never serves without a bearer token (api.allow_unauthenticated is not honoured here)",
                key="api.token_file",
            )
        fleet = FleetViews(self.lake, extra=unmapped_metrics_view(DEFAULT_CATALOG))
        limits = QueryLimits(
            default_rows=min(10_000, api.query_row_limit), max_rows=api.query_row_limit, timeout_s=api.query_timeout
        )
        self._workers = (
            QueryWorkers(workers=self.workers, memory_bytes=api.query_memory_bytes) if self.workers else None
        )

        async def readiness() -> dict[str, Any]:
            ok = await asyncio.to_thread(fleet.reachable)
            return {"ready": ok, "mode": "central", "lake": fleet.lake.url}

        app = create_app(
            data_dir=Path("."),
            feed=AlertFeed(),
            token=token,
            readiness=readiness,
            metrics_registry=CollectorRegistry(),
            query_limits=limits,
            query_workers=self._workers,
            body_timeout=api.body_timeout,
            fleet=fleet,
        )
        server_limits = ServerLimits(
            max_connections=api.max_connections,
            header_timeout=api.header_timeout,
            keepalive_timeout=api.keepalive_timeout,
            body_timeout=api.body_timeout,
        )
        counters = HttpCounters()
        self._runner = make_runner(app, server_limits, counters)
        await self._runner.setup()
        site = GuardedSite(self._runner, self.listen[0], self.listen[1], limits=server_limits, counters=counters)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.listen[1]
        log.info(
            "hciwatch central fleet view: queries over %s on http://%s:%d/", fleet.lake.url, self.listen[0], self.port
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._workers is not None:
            self._workers.close()
            self._workers = None


async def serve(cfg: AppConfig, *, lake_url: str | None = None, listen: str | None = None) -> None:
    """Run the central API until SIGTERM/SIGINT."""
    from hciwatch.preflight import parse_listen

    try:
        host, port = parse_listen(listen or cfg.api.listen)
    except ValueError as exc:
        raise ConfigError(f"api.listen: {exc}", key="api.listen") from None
    server = CentralServer(cfg, central_lake(cfg, lake_url), (host or "127.0.0.1", port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()


__all__ = ["CentralServer", "central_lake", "serve"]
