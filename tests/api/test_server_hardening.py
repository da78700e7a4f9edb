"""The API socket under abuse: malformed headers get 400/401 (never 500, never a traceback in the
log), half-sent and idle connections are closed, connections beyond the cap are refused."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from exporters.feed import AlertFeed
from hciwatch.api import create_app
from hciwatch.api_server import GuardedSite, HttpCounters, ServerLimits, make_runner
from tests.api.conftest import ready
from tests.api.helpers import TOKEN


@pytest.fixture
async def served(data_dir: Path) -> AsyncIterator[tuple[int, HttpCounters]]:
    app = create_app(
        data_dir=data_dir,
        feed=AlertFeed(first_seq=1),
        token=TOKEN,
        readiness=ready,
        metrics_registry=CollectorRegistry(),
    )
    counters = HttpCounters()
    limits = ServerLimits(max_connections=8, header_timeout=0.5)
    runner = make_runner(app, limits, counters)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, limits=limits, counters=counters)
    await site.start()
    try:
        yield site.port, counters
    finally:
        await runner.cleanup()


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    return data


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info]


async def test_a_non_utf8_authorization_header_is_401_not_500(
    served: tuple[int, HttpCounters], caplog: pytest.LogCaptureFixture
) -> None:
    port, _ = served
    caplog.set_level(logging.DEBUG)
    answer = await _raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xc3(\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert not _tracebacks(caplog)


async def test_oversized_headers_are_400_counted_and_not_logged_per_request(
    served: tuple[int, HttpCounters], caplog: pytest.LogCaptureFixture
) -> None:
    port, counters = served
    caplog.set_level(logging.INFO)
    for _ in range(5):
        answer = await _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
        assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer[:200]
    assert counters.bad_requests == 5
    assert not _tracebacks(caplog)
    assert len([r for r in caplog.records if "Error handling request" in r.getMessage()]) <= 1


async def test_half_sent_and_idle_connections_are_closed_and_the_cap_holds(served: tuple[int, HttpCounters]) -> None:
    port, counters = served
    conns: list[tuple[asyncio.StreamReader, Any]] = []
    for i in range(8):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        if i % 2:
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
        conns.append((r, w))
    # the ninth is over the cap: closed at once, and /healthz cannot get in either until some close
    r9, w9 = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(r9.read(), timeout=10) == b""
    w9.close()
    for r, w in conns:  # every idle or partial connection is closed by the header deadline
        assert await asyncio.wait_for(r.read(), timeout=10) == b""
        w.close()
    assert counters.refused >= 1 and counters.header_timeouts == 8
    answer = await _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")


def test_guarded_site_is_a_tcp_site() -> None:
    assert issubclass(GuardedSite, web.TCPSite)
