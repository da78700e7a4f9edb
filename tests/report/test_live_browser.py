"""The service's ``/`` page in headless Chromium: it asks for the token once per browser session,
draws the same views as the report from ``/api/v1/report``, shows an alert pushed over the SSE
stream without reloading, talks to nothing but 127.0.0.1, and keeps the console clean.

The API runs on a real socket on 127.0.0.1 in its own thread and event loop (Playwright's sync
API drives the browser from the test thread); alerts are published on that loop, as the outbox
does in the service.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from collector.scheduler import Scheduler, TargetHealth
from collector.schema import Alert, AlertKind, AlertStatus, Severity, fingerprint
from exporters.feed import AlertFeed
from hciwatch.api import create_app
from hciwatch.service import target_health
from tests.fixtures.chromium import ChromiumSession, PageInfo, artifacts_dir
from tests.report.conftest import Replayed

TOKEN = "live-page-test-token"
WAIT_MS = 20_000  # bounds a hang; not a timing assertion
VIEWS = ("view-header", "view-pools", "view-duplicates", "view-congestion", "view-alerts")
T = TypeVar("T")


def _health() -> Scheduler:
    """A scheduler's health table: one target scraped fine, one never answering."""

    async def emit(_: Any) -> None:
        return None

    sched = Scheduler([], [], emit)
    now = datetime.now(UTC)
    good = TargetHealth("windows", "hci-node-01:9182", 300.0)
    good.ok(now, 1)
    dead = TargetHealth("windows", "hci-node-09:9182", 300.0)
    dead.fail(now, "cannot connect to hci-node-09:9182: Connection refused")
    garbage = TargetHealth("windows", "hci-node-05:9182", 300.0)  # HTTP 200 with an HTML error page
    garbage.ok(now, 1)
    sched.health = {(h.source, h.target): h for h in (good, dead, garbage)}
    return sched


class ServedApi:
    """create_app() served on 127.0.0.1 from a background thread with its own loop."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.feed = AlertFeed(first_seq=1)
        self.port = 0
        self._runner: web.AppRunner | None = None
        started: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(data_dir, started), daemon=True)
        self._thread.start()
        started.result(timeout=30)

    def _run(self, data_dir: Path, started: Future[None]) -> None:
        asyncio.set_event_loop(self.loop)

        async def ready() -> dict[str, Any]:
            return {"ready": True}

        async def start() -> None:
            app = create_app(
                data_dir=data_dir,
                feed=self.feed,
                token=TOKEN,
                readiness=ready,
                metrics_registry=CollectorRegistry(),
                site="test-site",
                ingest_stats=lambda: {
                    "records_read": 7,
                    "records_rejected": 1,
                    "reject_reasons": {"parse error": 1},
                    "skipped_parts": 2,
                    "targets": target_health(
                        _health(),
                        {"hci-node-01:9182": 3, "hci-node-05:9182": 1},
                        {"hci-node-01:9182": 500},
                    ),
                },
            )
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        try:
            self.loop.run_until_complete(start())
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(None)
        self.loop.run_forever()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (the feed is loop-only) and return its result."""

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def served(duplicate_lb_ip: Replayed) -> Iterator[ServedApi]:
    api = ServedApi(duplicate_lb_ip.data_dir)
    try:
        yield api
    finally:
        api.close()


def enter_token(info: PageInfo, token: str) -> None:
    page = info.page
    page.wait_for_selector("#token-form:not(.hidden)", timeout=WAIT_MS)
    page.fill("#token-input", token)
    page.click("#token-form button[type=submit]")


def new_alert(rep: Replayed) -> Alert:
    last = max(a.changed_at for a in rep.alerts)
    resource = {"host": "hci-node-03"}
    return Alert(
        fingerprint=fingerprint(AlertKind.EASTWEST_CONGESTION.value, resource),
        kind=AlertKind.EASTWEST_CONGESTION,
        status=AlertStatus.FIRING,
        severity=Severity.SEV2,
        starts_at=last + timedelta(minutes=5),
        resource=resource,
        summary="East-west congestion on 1 host (pushed live by the test)",
        evidence={"hosts": ["hci-node-03"], "onset": None},
        ts=last + timedelta(minutes=5),
    )


@pytest.mark.integration
def test_live_page(chromium: ChromiumSession, served: ServedApi, duplicate_lb_ip: Replayed) -> None:
    rep = duplicate_lb_ip
    info = chromium.new_page()
    page = info.page
    page.goto(served.url)
    enter_token(info, TOKEN)
    page.wait_for_selector("#app[data-rendered='1']", timeout=WAIT_MS)
    page.wait_for_selector("#live-status.connected", timeout=WAIT_MS)
    counts = page.evaluate("hciwatchViews.counts()")
    assert counts["pools"] >= 2 and counts["poolSeries"] == [7] * counts["pools"]
    assert counts["duplicates"] == rep.expected_incidents("duplicate_ip")
    assert counts["congestionHosts"] == 4
    assert counts["alertIncidents"] == rep.incidents
    assert "test-site" in page.locator("#view-header h1").inner_text()
    assert "1 record(s) rejected (parse error: 1)" in page.locator("#parse-errors").inner_text()
    # every configured target is listed with its health, the dead one from its first failed scrape
    assert page.locator("#target-health").get_attribute("data-down") == "2"
    garbage = page.locator("#target-health tr[data-target='hci-node-05:9182']")
    assert garbage.get_attribute("data-state") == "answering, unparsable"
    dead = page.locator("#target-health tr[data-target='hci-node-09:9182']")
    assert dead.get_attribute("data-state") == "down" and "Connection refused" in dead.inner_text()
    good = page.locator("#target-health tr[data-target='hci-node-01:9182']")
    assert good.get_attribute("data-state") == "up" and "\t3\t" in good.inner_text()
    # the status banner heads the live page as it heads the report
    assert page.evaluate("document.getElementById('app').firstElementChild.id") == "status-banner"
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(artifacts_dir("report") / "live-first-screen.png"))

    # an alert pushed over SSE shows up without a reload
    page.evaluate("window.__sameDocument = 'yes'")
    alert = new_alert(rep)
    served.call(lambda: served.feed.publish([alert]))
    page.wait_for_selector(f"#current-alerts tr[data-fingerprint='{alert.fingerprint}']", timeout=WAIT_MS)
    after = page.evaluate("hciwatchViews.counts()")
    assert after["alertIncidents"] == counts["alertIncidents"] + 1
    assert after["currentAlerts"] == counts["currentAlerts"] + 1
    assert after["congestionIncidents"] == counts["congestionIncidents"] + 1
    assert page.evaluate("window.__sameDocument") == "yes"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert "pushed live by the test" in page.locator("#current-alerts").inner_text()

    for view in VIEWS:
        shot = artifacts_dir("report") / f"live-{view.removeprefix('view-')}.png"
        page.locator(f"#{view}").screenshot(path=str(shot))

    # the token is kept for the session: a reload does not ask again
    page.reload()
    page.wait_for_selector("#app[data-rendered='1']", timeout=WAIT_MS)
    assert page.locator("#token-form").is_hidden()
    # the live change is in the feed's ring, so the reloaded model has it too
    page.wait_for_selector(f"#current-alerts tr[data-fingerprint='{alert.fingerprint}']", timeout=WAIT_MS)

    assert info.outside == [], f"requests left 127.0.0.1: {info.outside}"
    assert all(u.startswith((served.url, "data:")) for u in info.requests), info.requests
    assert info.errors == [], info.errors
    page.close()


@pytest.mark.integration
def test_live_page_asks_for_the_token_and_shows_no_data_without_it(
    chromium: ChromiumSession, served: ServedApi
) -> None:
    info = chromium.new_page()  # a new tab: a new browser session for sessionStorage
    page = info.page
    page.goto(served.url)
    page.wait_for_selector("#token-form:not(.hidden)", timeout=WAIT_MS)
    assert page.locator("#app").inner_text().strip() == ""
    assert not any("/api/" in u for u in info.requests)  # nothing is asked for before the token
    assert info.errors == []
    info.errors.clear()
    enter_token(info, "not-the-token")
    page.wait_for_selector("#token-error:has-text('refused')", timeout=WAIT_MS)
    assert page.locator("#app").inner_text().strip() == ""
    assert page.evaluate("sessionStorage.getItem('hciwatch.token')") is None
    # the browser reports the refused requests (401) itself; nothing else may fail
    assert all("401" in e for e in info.errors), info.errors
    assert info.outside == []
    page.close()
