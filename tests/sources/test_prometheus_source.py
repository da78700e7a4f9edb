"""The Prometheus scraper against a real aiohttp server on 127.0.0.1 (auth, errors, limits)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from collector.catalog import DEFAULT_CATALOG
from collector.errors import ConfigError, FetchError
from collector.registry import SourceSpec, get_source_spec
from collector.settings import DeprecatedKeyWarning
from collector.sources.base import PullSource
from collector.sources.prometheus.parse import parse_record
from collector.sources.prometheus.source import (
    ACCEPT,
    PrometheusScraper,
    PrometheusSettings,
    split_host_port,
)
from tests.sources.test_prometheus_golden import SOURCE_LABEL

PAYLOAD = b'# TYPE up gauge\nup{job="x"} 1\nwindows_net_bytes_sent_total{nic="eth0"} 12\n'
CLOCK = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


class PromServer:
    """A tiny exporter: serves ``body`` on any path with optional auth, gzip, delay or status."""

    def __init__(
        self,
        body: bytes = PAYLOAD,
        *,
        basic: tuple[str, str] | None = None,
        token: str | None = None,
        gzip_body: bool = False,
        status: int = 200,
        delay: float = 0.0,
    ) -> None:
        self.body = body
        self.basic = basic
        self.token = token
        self.gzip_body = gzip_body
        self.status = status
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append({"path": request.path, "headers": dict(request.headers)})
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.basic is not None:
            import aiohttp

            auth = request.headers.get("Authorization", "")
            try:
                got = aiohttp.BasicAuth.decode(auth)
            except ValueError:
                return web.Response(status=401)
            if (got.login, got.password) != self.basic:
                return web.Response(status=401)
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=403)
        if self.status != 200:
            return web.Response(status=self.status, text="boom")
        if self.gzip_body:
            return web.Response(
                body=gzip.compress(self.body),
                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; version=0.0.4"},
            )
        return web.Response(body=self.body, content_type="text/plain", charset="utf-8")

    async def __aenter__(self) -> PromServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def scraper_for(server: PromServer, **settings: Any) -> AsyncIterator[PrometheusScraper]:
    settings.setdefault("type", "prometheus")
    settings.setdefault("targets", ["hci-node-01:9182"])
    settings.setdefault("timeout", 5.0)
    s = PrometheusScraper(PrometheusSettings(**settings), base_url=server.base_url, clock=lambda: CLOCK)
    try:
        yield s
    finally:
        await s.close()


async def scrape_payload_via_spec(spec: SourceSpec, type_name: str, path: Path) -> None:
    """Serve a testdata payload and scrape it through a source type's real SPEC and scraper."""
    body = path.read_bytes()
    async with PromServer(body) as server:
        settings = spec.settings_model(
            type=type_name, targets=["hci-node-01"], timeout=5.0, labels={"cluster": "hci-1"}
        )
        scraper = spec.factory(settings, base_url=server.base_url, clock=lambda: CLOCK)
        assert isinstance(scraper, PullSource)
        try:
            records = await scraper.fetch(scraper.targets()[0])
        finally:
            await scraper.close()
        assert server.requests[0]["path"] == "/metrics"
        assert server.requests[0]["headers"]["Accept"] == ACCEPT
    assert spec.record_kind == "prometheus"
    (rec,) = records
    assert rec.body == body
    assert rec.kind == "prometheus"
    assert rec.host == "hci-node-01"
    assert rec.ts == CLOCK
    assert rec.target == f"hci-node-01:{settings.port}"
    assert rec.labels == {"cluster": "hci-1", "source": SOURCE_LABEL[type_name]}
    result = parse_record(rec, DEFAULT_CATALOG)
    assert result.samples.num_rows > 0
    assert set(result.samples.column("source").to_pylist()) == {SOURCE_LABEL[type_name]}


async def test_scrape_returns_body_and_context() -> None:
    async with (
        PromServer() as server,
        scraper_for(server, labels={"cluster": "c1"}, hosts={"hci-node-01:9182": "node-one"}) as s,
    ):
        assert s.targets() == ["hci-node-01:9182"]
        (rec,) = await s.fetch("hci-node-01:9182")
    assert rec.body == PAYLOAD
    assert rec.host == "node-one"
    assert rec.labels == {"cluster": "c1"}  # the generic scraper sets no source label
    hdr = server.requests[0]["headers"]
    assert hdr["Accept"] == ACCEPT
    assert "gzip" in hdr["Accept-Encoding"]
    assert hdr["X-Prometheus-Scrape-Timeout-Seconds"] == "5"


async def test_gzip_body_is_decompressed() -> None:
    async with PromServer(gzip_body=True) as server, scraper_for(server) as s:
        (rec,) = await s.fetch("hci-node-01:9182")
    assert rec.body == PAYLOAD


async def test_basic_auth(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret-pass\n")
    async with PromServer(basic=("scraper", "s3cret-pass")) as server:
        async with scraper_for(server, username="scraper", password_file=pw) as s:
            (rec,) = await s.fetch("hci-node-01:9182")
            assert rec.body == PAYLOAD
        pw.write_text("wrong-pass")
        async with scraper_for(server, username="scraper", password_file=pw) as s:
            with pytest.raises(FetchError) as err:
                await s.fetch("hci-node-01:9182")
    assert "HTTP 401" in str(err.value)
    assert err.value.retryable is False
    assert err.value.target == "hci-node-01:9182"
    assert "wrong-pass" not in str(err.value)


async def test_bearer_token_read_from_file_each_scrape(tmp_path: Path) -> None:
    tok = tmp_path / "token"
    tok.write_text("tok-1")
    async with PromServer(token="tok-2") as server, scraper_for(server, bearer_token_file=tok) as s:
        with pytest.raises(FetchError) as err:
            await s.fetch("hci-node-01:9182")
        assert "HTTP 403" in str(err.value)
        assert "tok-1" not in str(err.value)
        tok.write_text("tok-2")  # rotated token is picked up without a restart
        (rec,) = await s.fetch("hci-node-01:9182")
        assert rec.body == PAYLOAD


async def test_missing_token_file_is_a_config_error_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        PrometheusScraper(PrometheusSettings(type="prometheus", targets=["a"], bearer_token_file=tmp_path / "nope"))
    assert "sources.prometheus.bearer_token_file" in str(err.value) and str(tmp_path / "nope") in str(err.value)


async def test_secrets_from_env_and_old_key_spellings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROM_PW", "s3cret-pass")
    async with PromServer(basic=("scraper", "s3cret-pass")) as server:
        async with scraper_for(server, username="scraper", password_file="env:PROM_PW") as s:
            (rec,) = await s.fetch("hci-node-01:9182")
            assert rec.body == PAYLOAD
        with pytest.warns(DeprecatedKeyWarning, match="'basic_auth_password_file' is deprecated, use 'password_file'"):
            ctx = scraper_for(server, basic_auth_username="scraper", basic_auth_password_file="env:PROM_PW")
            async with ctx as s:
                (rec,) = await s.fetch("hci-node-01:9182")
    with pytest.raises(ConfigError, match="environment variable PROM_UNSET is not set"):
        PrometheusScraper(PrometheusSettings(type="prometheus", targets=["a"], bearer_token_file="env:PROM_UNSET"))
    with pytest.warns(DeprecatedKeyWarning, match="'tls_ca_file' is deprecated, use 'tls.ca_file'"):
        s2 = PrometheusSettings(type="windows", targets=["a"], tls_ca_file=tmp_path / "ca.pem")
    assert s2.tls is not None and s2.tls.ca_file == tmp_path / "ca.pem"


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (404, False)])
async def test_http_errors(status: int, retryable: bool) -> None:
    async with PromServer(status=status) as server, scraper_for(server) as s:
        with pytest.raises(FetchError) as err:
            await s.fetch("hci-node-01:9182")
    assert f"HTTP {status}" in str(err.value)
    assert err.value.retryable is retryable
    assert err.value.source == "prometheus"


async def test_timeout() -> None:
    async with PromServer(delay=2.0) as server, scraper_for(server, timeout=0.2) as s:
        with pytest.raises(FetchError) as err:
            await s.fetch("hci-node-01:9182")
    assert "timed out after 0.2s" in str(err.value)
    assert err.value.retryable is True


async def test_connection_refused() -> None:
    async with PromServer() as server:
        port = server.port
    s = PrometheusScraper(PrometheusSettings(type="prometheus", targets=[f"127.0.0.1:{port}"], timeout=2))
    try:
        with pytest.raises(FetchError) as err:
            await s.fetch(f"127.0.0.1:{port}")
    finally:
        await s.close()
    assert "cannot connect" in str(err.value)
    assert err.value.retryable is True


async def test_max_body_bytes_guard() -> None:
    big = b"# padding\n" * 300 + PAYLOAD
    async with PromServer(big) as server, scraper_for(server, max_body_bytes=2048) as s:
        with pytest.raises(FetchError) as err:
            await s.fetch("hci-node-01:9182")
    assert "max_body_bytes" in str(err.value)
    assert err.value.retryable is False


async def test_max_body_bytes_applies_after_decompression() -> None:
    big = b"# padding\n" * 3000 + PAYLOAD  # compresses far below the limit
    async with PromServer(big, gzip_body=True) as server, scraper_for(server, max_body_bytes=4096) as s:
        with pytest.raises(FetchError, match="after decompression"):
            await s.fetch("hci-node-01:9182")


async def test_unknown_target_and_double_close() -> None:
    async with PromServer() as server, scraper_for(server) as s:
        with pytest.raises(FetchError, match="unknown target"):
            await s.fetch("other:1")
        await s.close()
        await s.close()


async def test_injected_session_is_not_closed() -> None:
    import aiohttp

    async with PromServer() as server, aiohttp.ClientSession() as session:
        s = PrometheusScraper(
            PrometheusSettings(type="prometheus", targets=["a:1"]), session=session, base_url=server.base_url
        )
        (rec,) = await s.fetch("a:1")
        await s.close()
        assert not session.closed
        assert rec.host == "a"


def test_target_resolution() -> None:
    s = PrometheusSettings(
        type="prometheus",
        port=9100,
        path="/m",
        targets=["node1", "10.0.0.5:9999", "[fd00::1]", "fd00::2", "https://exp.example:8443/custom?x=1"],
    )
    assert s.target_urls() == {
        "node1:9100": "http://node1:9100/m",
        "10.0.0.5:9999": "http://10.0.0.5:9999/m",
        "[fd00::1]:9100": "http://[fd00::1]:9100/m",
        "[fd00::2]:9100": "http://[fd00::2]:9100/m",
        "https://exp.example:8443/custom?x=1": "https://exp.example:8443/custom?x=1",
    }
    scraper = PrometheusScraper(s)
    assert [scraper.host_for(t) for t in scraper.targets()] == [
        "node1",
        "10.0.0.5",
        "fd00::1",
        "fd00::2",
        "exp.example",
    ]
    assert split_host_port("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError):
        split_host_port("host:notaport")


@pytest.mark.parametrize(
    "bad",
    [
        {"targets": []},
        {"targets": ["a"], "path": "metrics"},
        {"targets": ["a"], "username": "u"},
        {"targets": ["a"], "bearer_token_file": "/t", "username": "u", "password_file": "/p"},
        {"targets": ["a"], "tls": {"cert_file": "/c"}},
        {"targets": ["a"], "hosts": {"b": "x"}},
        {"targets": ["ftp://a/metrics"]},
        {"targets": ["a"], "scrape_everything": True},
        {"targets": ["a"], "max_body_bytes": 10},
    ],
)
def test_settings_rejects(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PrometheusSettings(type="prometheus", **bad)


def test_specific_source_defaults() -> None:
    expected = {
        "windows": (9182, "windows"),
        "kube_proxy": (10249, "kube-proxy"),
        "calico": (9091, "calico"),
        "metallb": (7472, "metallb"),
        "prometheus": (None, None),
    }
    for type_name, (port, source) in expected.items():
        spec = get_source_spec(type_name)
        settings = spec.settings_model(type=type_name, targets=["n1"])
        assert settings.port == port
        assert type(settings).source_name == source
        assert spec.factory is PrometheusScraper
        assert spec.record_kind == "prometheus"
