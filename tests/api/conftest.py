"""Fixtures for the API tests: a Hive-layout Parquet store and an app served on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from exporters.feed import AlertFeed
from hciwatch.api import create_app
from hciwatch.query import QueryLimits
from tests.api.helpers import TOKEN, write_store


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    write_store(d)
    return d


async def ready() -> dict[str, Any]:
    return {"ready": True, "store_writable": True, "sources": 3, "sinks": {"feed": True}}


ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(data_dir: Path) -> AsyncIterator[ClientFactory]:
    clients: list[TestClient[Any, Any]] = []

    async def make(
        *,
        feed: AlertFeed | None = None,
        token: str | None = TOKEN,
        limits: QueryLimits | None = None,
        registry: CollectorRegistry | None = None,
        **kwargs: Any,
    ) -> TestClient[Any, Any]:
        kwargs.setdefault("readiness", ready)
        app = create_app(
            data_dir=data_dir,
            feed=feed or AlertFeed(first_seq=1),
            token=token,
            metrics_registry=registry or CollectorRegistry(),
            query_limits=limits or QueryLimits(timeout_s=10),
            **kwargs,
        )
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()
