"""The live page's routes: ``/`` for a browser (public shell, no data) and ``GET /api/v1/report``
(the views' model, behind the token, with the feed's changes merged in)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from collector.schema import AlertKind
from exporters.feed import AlertFeed
from tests.api.conftest import ClientFactory
from tests.api.helpers import TOKEN, auth, make_alert

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


async def test_browser_gets_the_page_without_the_token(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.get("/", headers=BROWSER)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert 'id="token-form"' in page and "hciwatchViews" in page
    assert TOKEN not in page and "default/web" not in page  # a shell: no secret, no data
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    hashes = re.findall(r"'sha256-[^']+'", csp)
    assert len(hashes) == len(re.findall(r"<script>", page)) == 3
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("headers", [{}, auth("wrong"), {"Accept": "application/json"}])
async def test_report_needs_the_token(make_client: ClientFactory, headers: dict[str, str]) -> None:
    client = await make_client()
    resp = await client.get("/api/v1/report", headers=headers)
    assert resp.status == 401
    assert await resp.json() == {"error": "unauthorized"}
    # only an HTML navigation to / is public; the same request for another path is not
    resp = await client.get("/api/v1/report", headers=BROWSER)
    assert resp.status == 401


async def test_report_model(make_client: ClientFactory) -> None:
    feed = AlertFeed(first_seq=1)
    client = await make_client(feed=feed, site="lab")
    alert = make_alert(1, kind=AlertKind.DUPLICATE_IP)
    feed.publish([alert])
    resp = await client.get("/api/v1/report", headers=auth())
    assert resp.status == 200
    model: dict[str, Any] = await resp.json()
    assert model["schema"] == "hciwatch.report/1"
    assert model["site"] == "lab"
    sources = {s["source"]: s for s in model["collected"]["sources"]}
    assert sources["windows"]["samples"] > 0
    assert [a["fingerprint"] for a in model["alerts"]] == [alert.fingerprint]  # from the feed
    w = model["window"]
    assert w["from"] < w["to"] and w["step_s"] >= 300


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("hours=0", "hours must be between"),
        ("hours=abc", "hours must be a number"),
        ("from=yesterday", "from:"),
        ("from=2026-11-21T00:00Z&to=2026-11-20T00:00Z", "window is empty"),
        ("colour=red", "unknown query parameter"),
    ],
)
async def test_report_rejects_bad_parameters(make_client: ClientFactory, query: str, message: str) -> None:
    client = await make_client()
    resp = await client.get(f"/api/v1/report?{query}", headers=auth())
    assert resp.status == 400
    assert message in (await resp.json())["error"]


async def test_report_window_parameters(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.get("/api/v1/report?from=2026-11-20T10:00Z&to=2026-11-20T10:30Z", headers=auth())
    assert resp.status == 200
    model = await resp.json()
    assert model["window"]["to"] - model["window"]["from"] == 1800
    resp = await client.get("/api/v1/report?hours=1", headers=auth())
    model = await resp.json()
    assert model["window"]["to"] - model["window"]["from"] <= 3600
