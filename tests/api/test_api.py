"""The HTTP API over a real socket on 127.0.0.1: auth, health, metrics, alerts, SSE and SQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow.parquet as pq
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, Gauge

from collector.errors import ConfigError
from collector.schema import SAMPLES_SCHEMA, AlertKind, AlertStatus
from exporters.feed import AlertFeed
from hciwatch.api import create_app
from hciwatch.query import QueryLimits
from tests.api.conftest import ClientFactory
from tests.api.helpers import TOKEN, arrow_table, auth, make_alert

WAIT = 20.0  # generous: these bound a hang, they are not timing assertions

PROTECTED = [
    ("GET", "/metrics"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/alerts/stream"),
    ("POST", "/api/v1/query"),
]


# -- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "headers", [{}, auth("wrong"), {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}, auth(TOKEN + "x")]
)
async def test_token_required(make_client: ClientFactory, method: str, path: str, headers: dict[str, str]) -> None:
    client = await make_client()
    resp = await client.request(method, path, headers=headers, json={"sql": "SELECT * FROM samples"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert await resp.json() == {"error": "unauthorized"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_needs_no_token(make_client: ClientFactory, path: str) -> None:
    client = await make_client()
    resp = await client.get(path)
    assert resp.status == 200
    body = await resp.json()
    assert body == {"status": "ok"} if path == "/healthz" else body["ready"] is True


async def test_right_token_passes(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.get("/", headers={**auth(), "Accept": "application/json"})
    assert resp.status == 200
    assert "POST /api/v1/query" in (await resp.json())["endpoints"]
    resp = await client.get("/no/such/path", headers=auth())
    assert resp.status == 404 and "error" in await resp.json()


async def test_root_and_unknown_paths_without_token(make_client: ClientFactory) -> None:
    """curl http://host:8080/ gets the page shell (no data); an unknown path is 404, not 401."""
    client = await make_client()
    for accept in ("*/*", "", "text/html"):
        resp = await client.get("/", headers={"Accept": accept} if accept else {})
        assert resp.status == 200 and resp.content_type == "text/html", accept
    resp = await client.get("/", headers={"Accept": "application/json"})
    assert resp.status == 401  # the endpoint index is behind the token
    for path in ("/no/such/path", "/index.html", "/api/v2/alerts"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert await resp.json() == {"error": "Not Found"}


def test_refuses_to_start_without_token(data_dir: Path) -> None:
    async def ready() -> dict[str, Any]:
        return {"ready": True}

    common: dict[str, Any] = {"data_dir": data_dir, "feed": AlertFeed(), "readiness": ready}
    with pytest.raises(ConfigError, match="no token"):
        create_app(token=None, metrics_registry=CollectorRegistry(), **common)
    with pytest.raises(ConfigError, match="empty"):
        create_app(token="  ", metrics_registry=CollectorRegistry(), **common)


async def test_allow_unauthenticated_for_local_testing(make_client: ClientFactory) -> None:
    client = await make_client(token=None, allow_unauthenticated=True)
    assert (await client.get("/api/v1/alerts")).status == 200


# -- readiness and metrics ------------------------------------------------------------------------


async def test_readyz_not_ready_and_failing(make_client: ClientFactory) -> None:
    async def not_ready() -> dict[str, Any]:
        return {"ready": False, "store_writable": False, "sinks": {"otlp": False}}

    async def broken() -> dict[str, Any]:
        raise RuntimeError("boom /secret/path")

    client = await make_client(readiness=not_ready)
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert await resp.json() == {"ready": False, "store_writable": False, "sinks": {"otlp": False}}
    client = await make_client(readiness=broken)
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert "secret" not in await resp.text()


async def test_metrics(make_client: ClientFactory) -> None:
    registry = CollectorRegistry()
    Gauge("hciwatch_test_gauge", "a service metric", registry=registry).set(3)
    feed = AlertFeed(first_seq=1)
    client = await make_client(registry=registry, feed=feed)
    await feed.export([make_alert(1)])
    await client.get("/healthz")
    resp = await client.get("/metrics", headers=auth())
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert "hciwatch_test_gauge 3.0" in text
    assert 'hciwatch_api_requests_total{code="200",method="GET",route="/healthz"} 1.0' in text
    assert "hciwatch_feed_firing_alerts 1.0" in text
    assert "hciwatch_feed_changes_total 1.0" in text


# -- alerts ---------------------------------------------------------------------------------------


async def test_alerts_firing_and_recent(make_client: ClientFactory) -> None:
    feed = AlertFeed(first_seq=1)
    feed.publish(
        [
            make_alert(1, host="a"),
            make_alert(2, host="b", network="n2"),
            make_alert(1, host="a", status=AlertStatus.RESOLVED),
            make_alert(3, kind=AlertKind.VIP_POOL_EXHAUSTION),
        ]
    )
    client = await make_client(feed=feed)
    body = await (await client.get("/api/v1/alerts", headers=auth())).json()
    assert body["state"] == "firing" and body["count"] == 2
    assert {a["summary"] for a in body["alerts"]} == {"alert 2", "alert 3"}
    body = await (await client.get("/api/v1/alerts?state=recent&limit=2", headers=auth())).json()
    assert [a["seq"] for a in body["alerts"]] == [4, 3]
    body = await (await client.get("/api/v1/alerts?state=recent&host=a&status=resolved", headers=auth())).json()
    assert [(a["seq"], a["status"]) for a in body["alerts"]] == [(3, "resolved")]
    body = await (
        await client.get("/api/v1/alerts?kind=vip_pool_exhaustion,duplicate_ip&network=n2", headers=auth())
    ).json()
    assert [a["summary"] for a in body["alerts"]] == ["alert 2"]


@pytest.mark.parametrize(
    ("query", "word"),
    [
        ("kind=nope", "unknown kind"),
        ("status=open", "unknown status"),
        ("state=all", "state"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("since=yesterday", "since"),
        ("hots=a", "unknown query"),
    ],
)
async def test_alerts_bad_parameters(make_client: ClientFactory, query: str, word: str) -> None:
    client = await make_client()
    resp = await client.get(f"/api/v1/alerts?{query}", headers=auth())
    assert resp.status == 400
    assert word in (await resp.json())["error"]


# -- SSE ------------------------------------------------------------------------------------------


async def read_events(resp: aiohttp.ClientResponse, count: int) -> list[dict[str, str]]:
    """Parse SSE events (not comments) from a live response until ``count`` have arrived."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with asyncio.timeout(WAIT):
        while len(events) < count:
            line = (await resp.content.readline()).decode()
            if not line:
                raise AssertionError(f"stream ended after {events}")
            line = line.rstrip("\n")
            if not line:
                if "data" in current:  # as EventSource: a block without data dispatches nothing
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = value
    return events


async def test_sse_delivers_a_change(make_client: ClientFactory) -> None:
    feed = AlertFeed(first_seq=1)
    client = await make_client(feed=feed)
    async with client.get("/api/v1/alerts/stream", headers=auth()) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async with asyncio.timeout(WAIT):
            while feed.subscriber_count == 0:
                await asyncio.sleep(0.01)
        await feed.export([make_alert(5)])
        (event,) = await read_events(resp, 1)
    assert event["event"] == "alert" and event["id"] == "1"
    data = json.loads(event["data"])
    assert data["summary"] == "alert 5" and data["kind"] == "duplicate_ip"


async def test_sse_filters(make_client: ClientFactory) -> None:
    feed = AlertFeed(first_seq=1)
    client = await make_client(feed=feed)
    async with client.get("/api/v1/alerts/stream?host=b", headers=auth()) as resp:
        async with asyncio.timeout(WAIT):
            while feed.subscriber_count == 0:
                await asyncio.sleep(0.01)
        feed.publish([make_alert(1, host="a"), make_alert(2, host="b")])
        (event,) = await read_events(resp, 1)
    assert event["id"] == "2"


async def test_sse_last_event_id_replay(make_client: ClientFactory) -> None:
    feed = AlertFeed(first_seq=10)
    feed.publish(make_alert(i) for i in range(4))  # seq 10..13
    client = await make_client(feed=feed)
    headers = {**auth(), "Last-Event-ID": "11"}
    async with client.get("/api/v1/alerts/stream", headers=headers) as resp:
        events = await read_events(resp, 2)
        assert [e["id"] for e in events] == ["12", "13"]
        feed.publish([make_alert(9)])
        (live,) = await read_events(resp, 1)
        assert live["id"] == "14"


async def test_sse_gap_then_replay(make_client: ClientFactory) -> None:
    feed = AlertFeed(ring_size=2, first_seq=1)
    feed.publish(make_alert(i) for i in range(5))  # ring keeps 4, 5
    client = await make_client(feed=feed)
    async with client.get("/api/v1/alerts/stream?last_event_id=1", headers=auth()) as resp:
        gap, first, second = await read_events(resp, 3)
    assert gap["event"] == "gap"
    assert json.loads(gap["data"]) == {"requested_after": 1, "oldest_available": 4}
    assert [first["id"], second["id"]] == ["4", "5"]


async def test_sse_heartbeat(make_client: ClientFactory) -> None:
    client = await make_client(sse_heartbeat_s=0.05)
    async with client.get("/api/v1/alerts/stream", headers=auth()) as resp:
        async with asyncio.timeout(WAIT):
            while (await resp.content.readline()) != b": heartbeat\n":
                pass


async def test_sse_bad_last_event_id(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.get("/api/v1/alerts/stream", headers={**auth(), "Last-Event-ID": "abc"})
    assert resp.status == 400


async def test_server_shutdown_ends_open_streams(make_client: ClientFactory) -> None:
    feed = AlertFeed(first_seq=1)
    client = await make_client(feed=feed)
    resp = await client.get("/api/v1/alerts/stream", headers=auth())
    async with asyncio.timeout(WAIT):
        while feed.subscriber_count == 0:
            await asyncio.sleep(0.01)
        await client.server.close()  # runs on_shutdown: the stream must finish, not hang
        while await resp.content.readline():
            pass
    assert feed.subscriber_count == 0
    resp.release()


# -- SQL ------------------------------------------------------------------------------------------


async def post_sql(client: TestClient[Any, Any], sql: str, **extra: Any) -> aiohttp.ClientResponse:
    headers = {**auth(), **extra.pop("headers", {})}
    return await client.post("/api/v1/query", json={"sql": sql, **extra}, headers=headers)


async def test_query_json(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await post_sql(
        client,
        "SELECT host, count(*) AS n, min(ts) AS first, any_value(labels) AS l "
        "FROM samples WHERE date = DATE '2026-11-20' GROUP BY host ORDER BY host",
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["columns"] == ["host", "n", "first", "l"]
    assert body["rows"][0] == ["hci-node-01", 17, "2026-11-20T10:00:00.000Z", {"nic": "eth0"}]
    assert body["truncated"] is False and body["row_count"] == 3
    assert resp.headers["X-Hciwatch-Truncated"] == "false"


async def test_query_text_plain_and_limit(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.post(
        "/api/v1/query?limit=5", data="SELECT * FROM samples", headers={**auth(), "Content-Type": "text/plain"}
    )
    body = await resp.json()
    assert resp.status == 200
    assert body["row_count"] == 5 and body["truncated"] is True
    assert resp.headers["X-Hciwatch-Truncated"] == "true"


async def test_query_arrow_stream(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await post_sql(
        client, "SELECT * FROM samples ORDER BY ts", limit=10, headers={"Accept": "application/vnd.apache.arrow.stream"}
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    table = arrow_table(await resp.read())
    assert table.num_rows == 10 and "host" in table.column_names
    assert table.schema.metadata[b"hciwatch.truncated"] == b"true"


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO samples VALUES (1)",
        "COPY (SELECT 1) TO '{tmp}/x.csv'",
        "ATTACH '{tmp}/x.db' AS x",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_parquet('{tmp}/outside.parquet')",
        "SET threads = 8",
        "PRAGMA version",
        "SELECT 1; SELECT 2",
    ],
)
async def test_query_refusals(make_client: ClientFactory, tmp_path: Path, sql: str) -> None:
    pq.write_table(SAMPLES_SCHEMA.empty_table(), tmp_path / "outside.parquet")
    client = await make_client()
    resp = await post_sql(client, sql.format(tmp=tmp_path))
    assert resp.status == 400
    body = await resp.json()
    assert body["kind"] == "bad_query" and body["error"]
    assert str(tmp_path) not in body["error"]
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.db").exists()


async def test_query_errors(make_client: ClientFactory, data_dir: Path) -> None:
    client = await make_client(limits=QueryLimits(timeout_s=0.5, max_sql_bytes=1024))
    resp = await post_sql(client, "SELECT nope FROM samples")
    assert resp.status == 422 and str(data_dir) not in await resp.text()
    resp = await post_sql(client, "SELECT count(*) FROM range(1000000000000) a, samples b")
    assert resp.status == 503 and (await resp.json())["kind"] == "timeout"
    resp = await post_sql(client, "SELECT 1", limit=10**9)
    assert resp.status == 400
    resp = await post_sql(client, "SELECT 1 " + " " * 100_000)
    assert resp.status == 413 and "error" in await resp.json()
    resp = await client.post(
        "/api/v1/query", data=b"SELECT 1", headers={**auth(), "Content-Type": "application/octet-stream"}
    )
    assert resp.status == 415
    resp = await client.post("/api/v1/query", data=b"{not json", headers={**auth(), "Content-Type": "application/json"})
    assert resp.status == 400
    resp = await client.post("/api/v1/query", json={"sql": "SELECT 1", "rows": 3}, headers=auth())
    assert resp.status == 400 and "rows" in (await resp.json())["error"]
    resp = await client.get("/api/v1/query", headers=auth())
    assert resp.status == 405 and "error" in await resp.json()
