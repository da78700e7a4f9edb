"""The API's listening socket, hardened: connection cap, header deadline, quiet bad requests.

aiohttp alone keeps a connection that never sends a request open forever (its keep-alive timer
starts only after a first response), logs a traceback for every malformed request, and asyncio
logs one for every failed ``accept()`` at the descriptor limit. Probed with 3,000 idle or
half-sent connections, that held descriptors for minutes and wrote tens of MB of log. So:

* **Connection cap**: beyond ``max_connections`` a new connection is closed at once (counted).
* **Header deadline**: a connection must deliver its first request's headers within
  ``header_timeout`` (slowloris), or it is closed (counted). Between requests aiohttp's
  ``keepalive_timeout`` closes idle connections.
* **Bad requests are counted, not logged as tracebacks**: aiohttp still answers them with 400;
  the log gets one line per minute at most, ``/metrics`` the count.
* **Accept failures** (``EMFILE``): counted, logged once per minute instead of once per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)
HTTP_LOG = "hciwatch.api.http"
QUIET_EVERY_S = 60.0


@dataclass(frozen=True)
class ServerLimits:
    """Socket-level limits of the API server."""

    max_connections: int = 512
    header_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    body_timeout: float = 30.0
    max_field_size: int = 8190


@dataclass
class HttpCounters:
    """What the guard did (exported as ``hciwatch_api_connections_*`` metrics)."""

    open: int = 0
    refused: int = 0  # over the connection cap
    header_timeouts: int = 0
    bad_requests: int = 0  # malformed HTTP answered 400 by the parser
    accept_errors: int = 0


class _Throttled(logging.Filter):
    """Counts matching records; lets one through per ``QUIET_EVERY_S``, without its traceback."""

    def __init__(self, prefix: str, counters: HttpCounters, field: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.counters = counters
        self.field = field
        self._last = -QUIET_EVERY_S

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if not msg.startswith(self.prefix):
            return True
        setattr(self.counters, self.field, getattr(self.counters, self.field) + 1)
        now = time.monotonic()
        if now - self._last < QUIET_EVERY_S:
            return False
        self._last = now
        exc = record.exc_info[1] if record.exc_info else None
        record.msg = f"{msg} ({type(exc).__name__ if exc else 'error'}: {exc}); further ones counted, not logged"
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's per-connection handler: cap and header deadline, then plain delegation."""

    def __init__(self, inner: Any, site: GuardedSite) -> None:
        self._inner = inner
        self._site = site
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._tail = b""
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        site = self._site
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if site.counters.open >= site.limits.max_connections:
            site.counters.refused += 1
            transport.abort()
            self._inner = None
            return
        site.counters.open += 1
        self._counted = True
        self._deadline = asyncio.get_running_loop().call_later(site.limits.header_timeout, self._too_slow)
        self._inner.connection_made(transport)

    def _too_slow(self) -> None:
        self._deadline = None
        self._site.counters.header_timeouts += 1
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._deadline is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen:
                self._deadline.cancel()
                self._deadline = None
                self._tail = b""
            else:
                self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None  # type: ignore[no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._counted:
            self._site.counters.open -= 1
            self._counted = False
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class GuardedSite(web.TCPSite):
    """A :class:`aiohttp.web.TCPSite` whose connections go through :class:`_Guard`."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, limits: ServerLimits, counters: HttpCounters
    ) -> None:
        super().__init__(runner, host, port)
        self.limits = limits
        self.counters = counters

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Guard(server(), self), self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


def make_runner(app: web.Application, limits: ServerLimits, counters: HttpCounters) -> web.AppRunner:
    """An AppRunner whose handlers log malformed requests through a counting, throttling logger."""
    http_log = logging.getLogger(HTTP_LOG)
    aio = logging.getLogger("asyncio")
    for lg in (http_log, aio):  # the newest server's counters (one per process in practice)
        for f in [f for f in lg.filters if isinstance(f, _Throttled)]:
            lg.removeFilter(f)
    http_log.addFilter(_Throttled("Error handling request", counters, "bad_requests"))
    aio.addFilter(_Throttled("socket.accept() out of system resource", counters, "accept_errors"))
    return web.AppRunner(
        app,
        access_log=None,
        logger=http_log,
        keepalive_timeout=limits.keepalive_timeout,
        max_field_size=limits.max_field_size,
    )
