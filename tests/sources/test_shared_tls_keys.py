"""Every HTTP source and the webhook sink take the same ``tls`` table and ``env:NAME``/file secrets.

One real HTTPS peer on 127.0.0.1 (aiohttp, certificate issued by the test CA of
``tests/fixtures/mosquitto.py`` for 127.0.0.1 and localhost) answers the HAProxy stats page, a
Prometheus exposition, a neighbour table and webhook POSTs, and requires a bearer token. Each
client is configured with the same keys and must: succeed with ``tls.ca_file``; fail without it
(the CA is not in the system store); succeed with ``tls.server_name = "localhost"`` and fail
with a name the certificate does not carry; succeed with ``tls.insecure_skip_verify``. The MQTT
source and sink run the same keys against the TLS Mosquitto fixture (tests/sources/test_mqtt_source.py,
tests/exporters/test_mqtt.py); the Kubernetes source against its own PKI (test_k8s_inventory_source.py).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from collector.errors import ConfigError, FetchError
from collector.sources.haproxy.source import HaproxySettings, HaproxySource
from collector.sources.neighbors.source import NeighborsSettings, NeighborsSource
from collector.sources.prometheus.source import PrometheusScraper, PrometheusSettings
from exporters.settings import WebhookSettings
from exporters.webhook import WebhookExporter
from tests.exporters.script import scripted_alerts
from tests.fixtures.mosquitto import MosquittoCerts

TOKEN = "tls-test-token"
CSV = b"# pxname,svname,qcur,scur,status\nfe,FRONTEND,,3,OPEN\n"


@pytest.fixture
async def https_peer(mosquitto_certs: MosquittoCerts) -> AsyncIterator[int]:
    async def handle(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401)
        if request.method == "POST":
            return web.Response(status=202)
        if request.path.endswith(";csv"):
            return web.Response(body=CSV)
        if request.path == "/neigh":
            return web.Response(body=b'[{"dst": "10.0.0.9", "lladdr": "00:15:5d:00:00:01", "state": ["REACHABLE"]}]')
        return web.Response(body=b"up 1\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(mosquitto_certs.cert_file), str(mosquitto_certs.key_file))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


Call = Callable[[int, dict[str, Any] | None], Awaitable[None]]


async def haproxy(port: int, tls: dict[str, Any] | None) -> None:
    settings = HaproxySettings(
        targets=[f"https://127.0.0.1:{port}/stats"], bearer_token_file="env:TLS_TEST_TOKEN", tls=tls
    )
    src = HaproxySource(settings)
    try:
        (rec,) = await src.fetch(settings.targets[0])
        assert rec.body == CSV
    finally:
        await src.close()


async def prometheus(port: int, tls: dict[str, Any] | None) -> None:
    settings = PrometheusSettings(
        type="prometheus",
        targets=[f"https://127.0.0.1:{port}/metrics"],
        bearer_token_file="env:TLS_TEST_TOKEN",
        tls=tls,
    )
    src = PrometheusScraper(settings)
    try:
        (rec,) = await src.fetch(src.targets()[0])
        assert rec.body == b"up 1\n"
    finally:
        await src.close()


async def neighbors(port: int, tls: dict[str, Any] | None) -> None:
    settings = NeighborsSettings(
        type="neighbors", url=f"https://127.0.0.1:{port}/neigh", bearer_token_file="env:TLS_TEST_TOKEN", tls=tls
    )
    src = NeighborsSource(settings)
    try:
        (rec,) = await src.fetch(src.targets()[0])
        assert b"10.0.0.9" in rec.body
    finally:
        await src.close()


async def webhook(port: int, tls: dict[str, Any] | None) -> None:
    settings = WebhookSettings(
        url=f"https://127.0.0.1:{port}/hook", bearer_token_file="env:TLS_TEST_TOKEN", tls=tls, timeout=5
    )
    sink = WebhookExporter(settings)
    try:
        result = await sink.export(scripted_alerts()[:1])
        if not result.ok:
            raise FetchError(result.error)
    finally:
        await sink.shutdown()


CLIENTS: dict[str, Call] = {"haproxy": haproxy, "prometheus": prometheus, "neighbors": neighbors, "webhook": webhook}


@pytest.mark.parametrize("client", sorted(CLIENTS))
async def test_same_tls_keys_against_a_real_https_peer(
    client: str, https_peer: int, mosquitto_certs: MosquittoCerts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLS_TEST_TOKEN", TOKEN)
    call = CLIENTS[client]
    ca = str(mosquitto_certs.ca_file)
    await call(https_peer, {"ca_file": ca})
    await call(https_peer, {"ca_file": ca, "server_name": "localhost"})
    await call(https_peer, {"insecure_skip_verify": True})
    for tls in (None, {"ca_file": ca, "server_name": "not-this-peer.example"}):
        with pytest.raises(FetchError):
            await call(https_peer, tls)


@pytest.mark.parametrize("client", sorted(CLIENTS))
async def test_bad_tls_files_and_unset_secrets_stop_start_up(
    client: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TLS_TEST_TOKEN", raising=False)
    call = CLIENTS[client]
    with pytest.raises(ConfigError, match="environment variable TLS_TEST_TOKEN is not set"):
        await call(1, None)  # port 1: never dialled, the failure comes first
    monkeypatch.setenv("TLS_TEST_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match=r"\.tls\.ca_file: cannot load CA certificates from .*missing\.pem"):
        await call(1, {"ca_file": str(tmp_path / "missing.pem")})
