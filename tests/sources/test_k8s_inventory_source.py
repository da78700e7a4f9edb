"""The k8s inventory source against a fake API server on 127.0.0.1.

The fake server serves the recorded testdata lists the way kube-apiserver does: bearer-token
check (Status 401 otherwise), ``limit``/``continue`` pagination with ``remainingItemCount``, a
410 ``Expired`` Status for a stale continue token, and ``?watch=1`` event streams.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import itertools
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError

from collector.catalog import Catalog
from collector.errors import ConfigError, FetchError
from collector.schema import RawRecord
from collector.settings import DeprecatedKeyWarning
from collector.sources.base import PullSource, PushSource
from collector.sources.k8s_inventory.parse import parse_record
from collector.sources.k8s_inventory.source import (
    SPEC,
    K8sInventorySettings,
    K8sInventorySource,
    K8sInventoryWatchSource,
)

TESTDATA = Path(__file__).resolve().parents[2] / "collector" / "sources" / "k8s_inventory" / "testdata"
TOKEN = "s3cr3t-token-value"
NOW = dt.datetime(2024, 11, 20, 10, 0, tzinfo=dt.UTC)

EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TESTDATA / name).read_text())
    return data


def status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


# ---------------------------------------------------------------------------------------------
# The fake API server
# ---------------------------------------------------------------------------------------------


@dataclass
class FakeApiServer:
    lists: dict[str, dict[str, Any]]
    token: str | None = TOKEN
    gone_on_continue: int = 0  # how many continue requests answer 410 Expired
    fail_with: int | None = None  # answer every request with this status
    recorded_pages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], str | None]] = field(default_factory=list)
    watch_queues: dict[str, asyncio.Queue[dict[str, Any] | None]] = field(default_factory=dict)
    list_calls: dict[str, int] = field(default_factory=dict)
    served: list[bytes] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/{resource}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        resp = await self._handle(request)
        if isinstance(resp, web.Response) and isinstance(resp.body, bytes):
            self.served.append(resp.body)
        return resp

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        resource = request.match_info["resource"]
        query = dict(request.query)
        auth = request.headers.get("Authorization")
        self.requests.append((resource, query, auth))
        if self.token is not None and auth != f"Bearer {self.token}":
            return status(401, "Unauthorized", "Unauthorized")
        if self.fail_with == 403:
            return status(
                403,
                "Forbidden",
                f'{resource} is forbidden: User "system:serviceaccount:hciwatch:'
                f'hciwatch" cannot list resource "{resource}" in API group "" at the cluster scope',
            )
        if self.fail_with is not None:
            return status(self.fail_with, "InternalError", "etcdserver: request timed out")
        if resource not in self.lists:
            return status(404, "NotFound", "the server could not find the requested resource")
        if query.get("watch") in ("1", "true"):
            return await self.watch(request, resource)
        if resource in self.recorded_pages:
            return self.recorded(resource, query)
        full = self.lists[resource]
        cont = query.get("continue")
        if cont is None:
            self.list_calls[resource] = self.list_calls.get(resource, 0) + 1
        elif self.gone_on_continue > 0:
            self.gone_on_continue -= 1
            return status(410, "Expired", EXPIRED_MESSAGE)
        start = json.loads(base64.b64decode(cont))["start"] if cont else 0
        limit = int(query.get("limit", "0")) or len(full["items"])
        items = full["items"][start : start + limit]
        meta: dict[str, Any] = {"resourceVersion": full["metadata"]["resourceVersion"]}
        rest = len(full["items"]) - (start + limit)
        if rest > 0:
            meta["continue"] = base64.b64encode(json.dumps({"start": start + limit}).encode()).decode()
            meta["remainingItemCount"] = rest
        return web.json_response({"apiVersion": "v1", "kind": full["kind"], "metadata": meta, "items": items})

    def recorded(self, resource: str, query: dict[str, str]) -> web.Response:
        """Serve the recorded page files verbatim, checking the client follows their token."""
        pages = self.recorded_pages[resource]
        cont = query.get("continue")
        if cont is None:
            return web.json_response(pages[0])
        for prev, page in itertools.pairwise(pages):
            if prev["metadata"].get("continue") == cont:
                return web.json_response(page)
        return status(400, "BadRequest", "continue key is not valid")

    async def watch(self, request: web.Request, resource: str) -> web.StreamResponse:
        queue = self.watch_queues.setdefault(resource, asyncio.Queue())
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        while True:
            event = await queue.get()
            if event is None:
                break
            data = json.dumps(event).encode() + b"\n"
            for i in range(0, len(data), 97):  # split events across chunks, as TCP may
                await resp.write(data[i : i + 97])
            if event["type"] == "ERROR":
                break  # kube-apiserver ends the stream after an ERROR event
        await resp.write_eof()
        return resp


@asynccontextmanager
async def serve(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port
    finally:
        await runner.cleanup()


def make(**values: Any) -> K8sInventorySettings:
    """Settings as the config loader builds them: validated from plain TOML-like values."""
    return K8sInventorySettings.model_validate(values)


def settings(port: int, tmp_path: Path, *, scheme: str = "http", **overrides: Any) -> K8sInventorySettings:
    token_file = tmp_path / "token"
    if not token_file.exists():
        token_file.write_text(TOKEN + "\n")
    cluster: dict[str, Any] = {
        "name": "wl-prod",
        "network": "aks-vnet-site1",
        "api_url": f"{scheme}://127.0.0.1:{port}",
        "bearer_token_file": token_file,
    }
    cluster.update(overrides.pop("cluster", {}))
    return make(clusters=[cluster], **overrides)


def full_lists() -> dict[str, dict[str, Any]]:
    return {
        "services": load("services_wl-prod.json"),
        "nodes": load("nodes_wl-prod.json"),
        "pods": load("pods_wl-prod.json"),
    }


# ---------------------------------------------------------------------------------------------
# List mode
# ---------------------------------------------------------------------------------------------


async def test_lists_all_pages_into_one_snapshot_per_resource(tmp_path: Path) -> None:
    api = FakeApiServer(full_lists())
    async with serve(api.app()) as port:
        source = K8sInventorySource(
            settings(port, tmp_path, page_size=2, cluster={"control_plane_endpoint": "10.20.30.201"}), now=lambda: NOW
        )
        try:
            assert source.targets() == ["wl-prod"]
            records = await source.fetch("wl-prod")
        finally:
            await source.close()
    assert [r.target for r in records] == [
        f"http://127.0.0.1:{port}/api/v1/services",
        f"http://127.0.0.1:{port}/api/v1/nodes",
    ]
    svc, nodes = records
    assert svc.kind == "k8s" and svc.host == "wl-prod" and svc.ts == NOW
    assert svc.labels == {
        "cluster": "wl-prod",
        "network": "aks-vnet-site1",
        "resource_version": "418950",
        "control_plane_endpoint": "10.20.30.201",
    }
    assert "control_plane_endpoint" not in nodes.labels  # the VIP rides on one record only
    body = json.loads(svc.body)
    assert body["kind"] == "ServiceList" and body["items"] == load("services_wl-prod.json")["items"]
    assert body["metadata"] == {"resourceVersion": "418950"}
    # pagination: limit on every page, continue followed, bearer token on every request
    svc_requests = [q for res, q, _ in api.requests if res == "services"]
    assert [q.get("limit") for q in svc_requests] == ["2", "2", "2"]
    assert "continue" not in svc_requests[0] and all("continue" in q for q in svc_requests[1:])
    assert {auth for _, _, auth in api.requests} == {f"Bearer {TOKEN}"}
    # end to end through the parser
    parsed = parse_record(svc, Catalog())
    owners = {(r["ip"], r["owner_kind"], r["owner"]) for r in parsed.ip_observations.to_pylist()}
    assert ("10.20.30.201", "control-plane", "wl-prod/apiserver") in owners
    assert ("10.20.30.204", "service", "shop/storefront") in owners


async def test_single_page_is_recorded_byte_for_byte(tmp_path: Path) -> None:
    api = FakeApiServer(full_lists())
    async with serve(api.app()) as port:
        source = K8sInventorySource(settings(port, tmp_path, resources=["nodes"]))
        try:
            (rec,) = await source.fetch("wl-prod")
        finally:
            await source.close()
    assert rec.body == api.served[-1]
    assert json.loads(rec.body)["items"] == load("nodes_wl-prod.json")["items"]


async def test_control_plane_defaults_to_the_server_host(tmp_path: Path) -> None:
    api = FakeApiServer(full_lists())
    async with serve(api.app()) as port:
        source = K8sInventorySource(settings(port, tmp_path, resources=["nodes", "pods"]))
        try:
            records = await source.fetch("wl-prod")
        finally:
            await source.close()
    assert records[0].labels["control_plane_endpoint"] == "127.0.0.1"
    assert "control_plane_endpoint" not in records[1].labels


async def test_control_plane_can_be_disabled(tmp_path: Path) -> None:
    api = FakeApiServer(full_lists())
    async with serve(api.app()) as port:
        source = K8sInventorySource(settings(port, tmp_path, cluster={"control_plane_endpoint": ""}))
        try:
            records = await source.fetch("wl-prod")
        finally:
            await source.close()
    assert all("control_plane_endpoint" not in r.labels for r in records)


async def test_recorded_paginated_pair_is_followed_and_merged(tmp_path: Path) -> None:
    api = FakeApiServer(
        full_lists(),
        recorded_pages={"services": [load("services_wl-prod_page1.json"), load("services_wl-prod_page2.json")]},
    )
    async with serve(api.app()) as port:
        source = K8sInventorySource(settings(port, tmp_path, resources=["services"], page_size=3))
        try:
            (rec,) = await source.fetch("wl-prod")
        finally:
            await source.close()
    assert json.loads(rec.body)["items"] == load("services_wl-prod.json")["items"]
    assert rec.labels["resource_version"] == "418950"


async def test_expired_continue_token_restarts_the_list(tmp_path: Path) -> None:
    api = FakeApiServer(full_lists(), gone_on_continue=1)
    async with serve(api.app()) as port:
        source = K8sInventorySource(settings(port, tmp_path, resources=["services"], page_size=2))
        try:
            (rec,) = await source.fetch("wl-prod")
        finally:
            await source.close()
    items = json.loads(rec.body)["items"]
    assert items == load("services_wl-prod.json")["items"]  # complete, nothing twice
    assert api.list_calls["services"] == 2


async def test_continue_token_expiring_forever_fails_retryable(tmp_path: Path) -> None:
    api = FakeApiServer(full_lists(), gone_on_continue=100)
    async with serve(api.app()) as port:
        source = K8sInventorySource(settings(port, tmp_path, resources=["services"], page_size=2))
        try:
            with pytest.raises(FetchError) as info:
                await source.fetch("wl-prod")
        finally:
            await source.close()
    assert info.value.retryable and "410" in str(info.value)
    assert info.value.target == "wl-prod"


async def test_bad_token_is_401_not_retryable_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeApiServer(full_lists(), token="the-right-one")
    async with serve(api.app()) as port:
        source = K8sInventorySource(settings(port, tmp_path))
        try:
            with pytest.raises(FetchError) as info:
                await source.fetch("wl-prod")
        finally:
            await source.close()
    assert not info.value.retryable
    assert "HTTP 401" in str(info.value) and "token_file" in str(info.value)
    assert TOKEN not in str(info.value) and TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("code", "retryable", "words"),
    [(403, False, "RBAC"), (500, True, "etcdserver"), (503, True, "HTTP 503"), (429, True, "HTTP 429")],
)
async def test_http_errors(tmp_path: Path, code: int, retryable: bool, words: str) -> None:
    api = FakeApiServer(full_lists(), fail_with=code)
    async with serve(api.app()) as port:
        source = K8sInventorySource(settings(port, tmp_path))
        try:
            with pytest.raises(FetchError) as info:
                await source.fetch("wl-prod")
        finally:
            await source.close()
    assert info.value.retryable is retryable
    assert words in str(info.value)


async def test_connection_refused_is_retryable(tmp_path: Path) -> None:
    async with serve(web.Application()) as port:
        pass  # the port is free again now
    source = K8sInventorySource(settings(port, tmp_path))
    try:
        with pytest.raises(FetchError) as info:
            await source.fetch("wl-prod")
    finally:
        await source.close()
    assert info.value.retryable and "127.0.0.1" in str(info.value)


async def test_unknown_target_and_missing_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as err:  # checked at start-up, with its key path
        K8sInventorySource(settings(1, tmp_path, cluster={"bearer_token_file": tmp_path / "nope"}))
    assert "sources.k8s_inventory.clusters[0].bearer_token_file: cannot read secret file" in str(err.value)
    with pytest.raises(ConfigError, match="environment variable K8S_TOKEN_UNSET is not set"):
        K8sInventorySource(settings(1, tmp_path, cluster={"bearer_token_file": "env:K8S_TOKEN_UNSET"}))
    monkeypatch.setenv("K8S_TOKEN", TOKEN)
    source = K8sInventorySource(settings(1, tmp_path, cluster={"bearer_token_file": "env:K8S_TOKEN"}))
    try:
        with pytest.raises(FetchError) as info:
            await source.fetch("other")
        assert "unknown cluster" in str(info.value) and not info.value.retryable
    finally:
        await source.close()
        await source.close()  # twice is fine


def test_old_cluster_key_spellings_still_work_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(DeprecatedKeyWarning) as caught:
        s = make(
            clusters=[
                {
                    "name": "a",
                    "api_url": "https://x",
                    "token_file": "t",
                    "ca_file": "ca.pem",
                    "insecure_skip_tls_verify": True,
                }
            ]
        )
    c = s.clusters[0]
    assert c.tls is not None and c.tls.ca_file == Path("ca.pem") and c.tls.insecure_skip_verify
    assert c.bearer_token_file is not None and str(c.bearer_token_file) == "t"
    text = "\n".join(str(w.message) for w in caught)
    assert "'token_file' is deprecated, use 'bearer_token_file'" in text
    assert "'insecure_skip_tls_verify' is deprecated, use 'tls.insecure_skip_verify'" in text


async def test_rotated_token_file_is_picked_up(tmp_path: Path) -> None:
    api = FakeApiServer(full_lists())
    async with serve(api.app()) as port:
        source = K8sInventorySource(settings(port, tmp_path, resources=["nodes"]))
        try:
            await source.fetch("wl-prod")
            api.token = "rotated"
            (tmp_path / "token").write_text("rotated")
            await source.fetch("wl-prod")
        finally:
            await source.close()
    assert api.requests[-1][2] == "Bearer rotated"


# ---------------------------------------------------------------------------------------------
# Kubeconfig variants
# ---------------------------------------------------------------------------------------------


def kubeconfig(
    server: str, *, user: dict[str, Any], cluster: dict[str, Any] | None = None, extra_contexts: bool = False
) -> str:
    cluster_body = {"server": server, **(cluster or {})}
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "wl-prod", "cluster": cluster_body},
            {"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:1"}},
        ],
        "users": [{"name": "hciwatch", "user": user}, {"name": "nobody", "user": {"token": "wrong"}}],
        "contexts": [{"name": "wl-prod-hciwatch", "context": {"cluster": "wl-prod", "user": "hciwatch"}}],
        "current-context": "wl-prod-hciwatch",
        "preferences": {},
    }
    if extra_contexts:
        doc["contexts"].append({"name": "broken", "context": {"cluster": "elsewhere", "user": "nobody"}})
        doc["current-context"] = "broken"
    return json.dumps(doc)  # JSON is YAML


async def fetch_with_kubeconfig(
    port: int, tmp_path: Path, text: str, *, scheme: str = "http", context: str | None = None
) -> list[RawRecord]:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    cluster: dict[str, Any] = {"name": "wl-prod", "network": "aks-vnet-site1", "kubeconfig": path}
    if context:
        cluster["context"] = context
    source = K8sInventorySource(make(clusters=[cluster], resources=["nodes"]))
    try:
        return await source.fetch("wl-prod")
    finally:
        await source.close()


async def test_kubeconfig_with_token(tmp_path: Path) -> None:
    api = FakeApiServer(full_lists())
    async with serve(api.app()) as port:
        (rec,) = await fetch_with_kubeconfig(
            port, tmp_path, kubeconfig(f"http://127.0.0.1:{port}", user={"token": TOKEN})
        )
    assert json.loads(rec.body)["kind"] == "NodeList"
    assert rec.labels["control_plane_endpoint"] == "127.0.0.1"


async def test_kubeconfig_with_relative_token_file_and_named_context(tmp_path: Path) -> None:
    (tmp_path / "sa-token").write_text(TOKEN)
    api = FakeApiServer(full_lists())
    async with serve(api.app()) as port:
        text = kubeconfig(f"http://127.0.0.1:{port}", user={"tokenFile": "sa-token"}, extra_contexts=True)
        (rec,) = await fetch_with_kubeconfig(port, tmp_path, text, context="wl-prod-hciwatch")
    assert rec.target == f"http://127.0.0.1:{port}/api/v1/nodes"


async def test_kubeconfig_current_context_is_used_by_default(tmp_path: Path) -> None:
    api = FakeApiServer(full_lists())
    async with serve(api.app()) as port:
        text = kubeconfig(f"http://127.0.0.1:{port}", user={"token": TOKEN}, extra_contexts=True)
        with pytest.raises(FetchError) as info:  # current-context "broken" points at port 1
            await fetch_with_kubeconfig(port, tmp_path, text)
    assert "127.0.0.1:1" in str(info.value)


async def test_kubeconfig_change_is_reloaded(tmp_path: Path) -> None:
    api = FakeApiServer(full_lists())
    path = tmp_path / "kubeconfig"
    async with serve(api.app()) as port:
        path.write_text(kubeconfig(f"http://127.0.0.1:{port}", user={"token": TOKEN}))
        source = K8sInventorySource(make(clusters=[{"name": "wl-prod", "kubeconfig": path}], resources=["nodes"]))
        try:
            await source.fetch("wl-prod")
            api.token = "new-token"
            path.write_text(kubeconfig(f"http://127.0.0.1:{port}", user={"token": "new-token"}) + "\n\n")
            await source.fetch("wl-prod")
        finally:
            await source.close()
    assert api.requests[-1][2] == "Bearer new-token"


@pytest.mark.parametrize(
    ("user", "cluster", "context", "words"),
    [
        (
            {"exec": {"command": "kubelogin", "apiVersion": "client.authentication.k8s.io/v1beta1"}},
            {},
            None,
            "users[name=hciwatch].user.exec",
        ),
        ({"auth-provider": {"name": "azure"}}, {}, None, "auth-provider"),
        ({"token": TOKEN}, {}, "missing", "no entry named 'missing'"),
        (
            {"client-certificate-data": "!!notbase64!!", "client-key-data": "eA=="},
            {},
            None,
            "client-certificate-data: not valid base64",
        ),
        ({"token": TOKEN}, {"proxy-url": "http://proxy:3128"}, None, "proxy-url"),
        ({"username": "admin", "password": "hunter2"}, {}, None, "basic authentication"),
    ],
)
async def test_kubeconfig_problems_are_precise_and_secret_free(
    tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any], context: str | None, words: str
) -> None:
    text = kubeconfig("https://10.20.30.201:6443", user=user, cluster=cluster)
    with pytest.raises(FetchError) as info:
        await fetch_with_kubeconfig(0, tmp_path, text, context=context)
    message = str(info.value)
    assert words in message and str(tmp_path / "kubeconfig") in message
    assert not info.value.retryable
    assert TOKEN not in message and "hunter2" not in message


async def test_kubeconfig_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(FetchError) as info:
        await fetch_with_kubeconfig(0, tmp_path, "clusters: [unclosed\n  - x: {")
    assert "not valid YAML" in str(info.value)


# -- TLS: CA data, CA file, client certificates ------------------------------------------------


@dataclass
class Pki:
    ca_pem: bytes
    server_cert: Path
    server_key: Path
    client_cert_pem: bytes
    client_key_pem: bytes
    ca_file: Path


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    elif server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes-ca")])
    ca = _issue("kubernetes-ca", ca_key, ca_name, ca_key, ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = _issue("kube-apiserver", srv_key, ca_name, ca_key, server=True)
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = _issue("hciwatch", cli_key, ca_name, ca_key)

    def key_pem(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    pem = serialization.Encoding.PEM
    (d / "server.crt").write_bytes(srv.public_bytes(pem))
    (d / "server.key").write_bytes(key_pem(srv_key))
    (d / "ca.crt").write_bytes(ca.public_bytes(pem))
    return Pki(
        ca.public_bytes(pem), d / "server.crt", d / "server.key", cli.public_bytes(pem), key_pem(cli_key), d / "ca.crt"
    )


def server_tls(pki: Pki, *, require_client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=pki.ca_pem.decode())
    return ctx


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_kubeconfig_ca_data_and_client_certificate_data(tmp_path: Path, pki: Pki) -> None:
    api = FakeApiServer(full_lists(), token=None)  # authenticated by the client certificate
    async with serve(api.app(), server_tls(pki, require_client_cert=True)) as port:
        text = kubeconfig(
            f"https://127.0.0.1:{port}",
            cluster={"certificate-authority-data": b64(pki.ca_pem)},
            user={"client-certificate-data": b64(pki.client_cert_pem), "client-key-data": b64(pki.client_key_pem)},
        )
        (rec,) = await fetch_with_kubeconfig(port, tmp_path, text, scheme="https")
    assert json.loads(rec.body)["kind"] == "NodeList"
    assert api.requests[0][2] is None  # no bearer token was sent


async def test_kubeconfig_ca_file_and_client_certificate_files(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "client.crt").write_bytes(pki.client_cert_pem)
    (tmp_path / "client.key").write_bytes(pki.client_key_pem)
    api = FakeApiServer(full_lists(), token=None)
    async with serve(api.app(), server_tls(pki, require_client_cert=True)) as port:
        text = kubeconfig(
            f"https://127.0.0.1:{port}",
            cluster={"certificate-authority": str(pki.ca_file)},
            user={"client-certificate": "client.crt", "client-key": "client.key"},
        )
        (rec,) = await fetch_with_kubeconfig(port, tmp_path, text)
    assert json.loads(rec.body)["kind"] == "NodeList"


async def test_unknown_ca_is_refused_unless_insecure(tmp_path: Path, pki: Pki) -> None:
    api = FakeApiServer(full_lists())
    async with serve(api.app(), server_tls(pki, require_client_cert=False)) as port:
        with pytest.raises(FetchError) as info:
            await fetch_with_kubeconfig(port, tmp_path, kubeconfig(f"https://127.0.0.1:{port}", user={"token": TOKEN}))
        assert "certificate" in str(info.value).lower() and not info.value.retryable
        text = kubeconfig(
            f"https://127.0.0.1:{port}", cluster={"insecure-skip-tls-verify": True}, user={"token": TOKEN}
        )
        (rec,) = await fetch_with_kubeconfig(port, tmp_path, text)
    assert json.loads(rec.body)["kind"] == "NodeList"


async def test_api_url_with_ca_file_and_token_file(tmp_path: Path, pki: Pki) -> None:
    api = FakeApiServer(full_lists())
    async with serve(api.app(), server_tls(pki, require_client_cert=False)) as port:
        source = K8sInventorySource(
            settings(port, tmp_path, scheme="https", resources=["nodes"], cluster={"tls": {"ca_file": pki.ca_file}})
        )
        try:
            (rec,) = await source.fetch("wl-prod")
        finally:
            await source.close()
    assert rec.target == f"https://127.0.0.1:{port}/api/v1/nodes"


# ---------------------------------------------------------------------------------------------
# Settings and registration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clusters", "extra", "words"),
    [
        ([{"name": "a"}], {}, "exactly one of kubeconfig or api_url"),
        ([{"name": "a", "api_url": "http://x", "kubeconfig": "k"}], {}, "exactly one"),
        ([{"name": "a", "kubeconfig": "k", "bearer_token_file": "t"}], {}, "go with api_url"),
        ([{"name": "a", "api_url": "http://x", "context": "c"}], {}, "context goes with kubeconfig"),
        ([{"name": "a", "api_url": "ftp://x"}], {}, "http(s)://"),
        ([{"name": "a", "api_url": "http://x"}, {"name": "a", "api_url": "http://y"}], {}, "repeated: a"),
        ([{"name": "a", "api_url": "http://x", "control_plane_endpoint": "api.local"}], {}, "IP"),
        ([{"name": "a", "api_url": "http://x"}], {"resources": ["secrets"]}, "resources"),
        ([{"name": "a", "api_url": "http://x"}], {"lb_node_name_pattern": "(x"}, "regular expression"),
        ([{"name": "a", "api_url": "http://x"}], {"page_size": 0}, "page_size"),
        ([{"name": "a", "api_url": "http://x", "tokn_file": "t"}], {}, "tokn_file"),
        ([], {}, "clusters"),
    ],
)
def test_settings_validation(clusters: list[dict[str, Any]], extra: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as info:
        make(clusters=clusters, **extra)
    assert words in str(info.value)


def test_settings_defaults() -> None:
    s = make(type="k8s_inventory", clusters=[{"name": "a", "api_url": "https://10.0.0.5:6443/"}])
    assert s.resources == ["services", "nodes"] and s.page_size == 500 and s.watch is False
    assert s.clusters[0].api_url == "https://10.0.0.5:6443"


def test_spec_builds_pull_or_push() -> None:
    assert SPEC.record_kind == "k8s" and SPEC.settings_model is K8sInventorySettings
    base = {"clusters": [{"name": "a", "api_url": "http://127.0.0.1:1"}]}
    pull = SPEC.factory(make(**base))
    push = SPEC.factory(make(**base, watch=True))
    assert isinstance(pull, K8sInventorySource) and isinstance(pull, PullSource)
    assert isinstance(push, K8sInventoryWatchSource) and isinstance(push, PushSource)


# ---------------------------------------------------------------------------------------------
# Watch mode
# ---------------------------------------------------------------------------------------------


async def test_watch_emits_snapshots_and_relists_on_410(tmp_path: Path) -> None:
    lists = {"services": load("services_wl-dev.json")}
    api = FakeApiServer(lists)
    records: asyncio.Queue[RawRecord] = asyncio.Queue()

    async def emit(rec: RawRecord) -> None:
        await records.put(rec)

    def names(rec: RawRecord) -> list[str]:
        items = json.loads(rec.body)["items"]
        return [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items]

    async with serve(api.app()) as port:
        source = K8sInventoryWatchSource(
            settings(
                port,
                tmp_path,
                resources=["services"],
                watch=True,
                watch_debounce=0.05,
                cluster={"control_plane_endpoint": "10.20.30.202"},
            )
        )
        task = asyncio.create_task(source.run(emit))
        try:
            first = await asyncio.wait_for(records.get(), 10)
            assert names(first) == ["default/kubernetes", "dev/api", "dev/pending", "dev/web", "kube-system/kube-dns"]
            assert first.labels["resource_version"] == "207311"
            assert first.labels["control_plane_endpoint"] == "10.20.30.202"

            for _ in range(100):  # wait until the watch request is in
                if any(q.get("watch") for _, q, _ in api.requests):
                    break
                await asyncio.sleep(0.02)
            watch_q = next(q for _, q, _ in api.requests if q.get("watch"))
            assert watch_q["resourceVersion"] == "207311" and watch_q["allowWatchBookmarks"] == "true"

            queue = api.watch_queues["services"]
            new = json.loads(json.dumps(lists["services"]["items"][1]))
            new["metadata"].update(name="api2", resourceVersion="207400")
            new["status"]["loadBalancer"]["ingress"] = [{"ip": "10.20.30.207", "ipMode": "VIP"}]
            pending = json.loads(json.dumps(lists["services"]["items"][2]))
            pending["metadata"]["resourceVersion"] = "207401"
            await queue.put({"type": "ADDED", "object": new})
            await queue.put({"type": "DELETED", "object": pending})
            await queue.put(
                {
                    "type": "BOOKMARK",
                    "object": {"kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": "207405"}},
                }
            )
            second = await asyncio.wait_for(records.get(), 10)
            assert names(second) == ["default/kubernetes", "dev/api", "dev/api2", "dev/web", "kube-system/kube-dns"]
            parsed = parse_record(second, Catalog())
            assert "10.20.30.207" in parsed.ip_observations.column("ip").to_pylist()

            expired = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Expired",
                "message": "too old resource version: 207311 (207500)",
                "code": 410,
            }
            await queue.put({"type": "ERROR", "object": expired})
            third = await asyncio.wait_for(records.get(), 10)
            assert api.list_calls["services"] == 2  # re-listed after the 410
            assert names(third) == names(first)  # the server's list never changed
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for q in api.watch_queues.values():
                q.put_nowait(None)
            await source.close()


async def test_watch_keeps_retrying_on_auth_failure_without_leaking_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeApiServer({"nodes": load("nodes_wl-dev.json")}, token="other")
    emitted: list[RawRecord] = []

    async def emit(rec: RawRecord) -> None:
        emitted.append(rec)

    async with serve(api.app()) as port:
        source = K8sInventoryWatchSource(settings(port, tmp_path, resources=["nodes"], watch=True))
        source.backoff_initial = 0.01
        task = asyncio.create_task(source.run(emit))
        for _ in range(200):
            if len(api.requests) >= 3:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await source.close()
    assert len(api.requests) >= 3 and emitted == []
    assert "HTTP 401" in caplog.text and TOKEN not in caplog.text


async def test_watch_surfaces_an_emit_failure(tmp_path: Path) -> None:
    api = FakeApiServer({"nodes": load("nodes_wl-dev.json")})

    async def emit(rec: RawRecord) -> None:
        raise RuntimeError("queue closed")

    async with serve(api.app()) as port:
        source = K8sInventoryWatchSource(settings(port, tmp_path, resources=["nodes"], watch=True, watch_debounce=0))
        try:
            with pytest.raises(RuntimeError, match="queue closed"):
                await asyncio.wait_for(source.run(emit), 10)
        finally:
            for q in api.watch_queues.values():
                q.put_nowait(None)
            await source.close()
