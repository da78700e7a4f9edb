"""The neighbour pull source: local commands (argv, no shell) and HTTP endpoints on loopback."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import ValidationError

from collector.catalog import DEFAULT_CATALOG
from collector.errors import FetchError
from collector.registry import get_parser
from collector.settings import DeprecatedKeyWarning
from collector.sources.base import PullSource
from collector.sources.neighbors.source import SPEC, NeighborsSettings, NeighborsSource

T0 = datetime(2024, 5, 29, 16, 30, tzinfo=UTC)
ROWS = [{"ip": "10.20.0.50", "mac": "00:15:5d:0a:0b:0c", "interface": "eth0", "state": "reachable"}]


def source(**kw: object) -> NeighborsSource:
    return NeighborsSource(NeighborsSettings(type="neighbors", **kw), clock=lambda: T0)  # type: ignore[arg-type]


def test_settings() -> None:
    s = NeighborsSettings(type="neighbors")
    assert s.argv() == ["ip", "-j", "neigh"] and s.target() == "exec:ip -j neigh"
    with pytest.raises(ValidationError, match="either url or command"):
        NeighborsSettings(type="neighbors", url="http://h/x", command=["ip"])
    with pytest.raises(ValidationError, match="http"):
        NeighborsSettings(type="neighbors", url="file:///etc/passwd")
    with pytest.raises(ValidationError, match="only with a url"):
        NeighborsSettings(type="neighbors", bearer_token_file=Path("/x"))
    assert isinstance(SPEC.factory(s), PullSource)


async def test_command_output_is_a_neighbors_record() -> None:
    src = source(
        command=[sys.executable, "-c", f"print({json.dumps(json.dumps(ROWS))})"],
        host="lb-vm-1",
        labels={"network": "vnet-1"},
    )
    [record] = await src.fetch(src.targets()[0])
    assert (record.kind, record.host, record.ts) == ("neighbors", "lb-vm-1", T0)
    assert record.labels == {"network": "vnet-1"}
    obs = get_parser("neighbors")(record, DEFAULT_CATALOG).ip_observations.to_pylist()
    assert [(o["ip"], o["owner"], o["network"]) for o in obs] == [("10.20.0.50", "lb-vm-1/eth0", "vnet-1")]


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 not installed")
async def test_default_command_runs_ip_neigh() -> None:
    src = source()
    [record] = await src.fetch(src.targets()[0])
    assert isinstance(json.loads(record.body), list)
    get_parser("neighbors")(record, DEFAULT_CATALOG)


async def test_command_failures_are_fetch_errors() -> None:
    with pytest.raises(FetchError, match="exited with 3: boom"):
        s = source(command=[sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"])
        await s.fetch(s.targets()[0])
    with pytest.raises(FetchError, match=r"within 0\.5s"):
        s = source(command=[sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
        await s.fetch(s.targets()[0])
    with pytest.raises(FetchError, match="not found") as ei:
        s = source(command=["no-such-program-hciwatch"])
        await s.fetch(s.targets()[0])
    assert not ei.value.retryable
    with pytest.raises(FetchError, match="max_body_bytes"):
        s = source(command=[sys.executable, "-c", "print('x' * 5000)"], max_body_bytes=1024)
        await s.fetch(s.targets()[0])
    with pytest.warns(DeprecatedKeyWarning, match="'max_bytes' is deprecated, use 'max_body_bytes'"):
        assert NeighborsSettings(type="neighbors", max_bytes=2048).max_body_bytes == 2048


async def test_no_shell_interpretation() -> None:
    s = source(
        command=[
            sys.executable,
            "-c",
            "import sys, json; print(json.dumps(sys.argv[1:]))",
            "$(touch /tmp/hciwatch-pwned)",
            ";",
            "|",
        ]
    )
    [record] = await s.fetch(s.targets()[0])
    assert json.loads(record.body) == ["$(touch /tmp/hciwatch-pwned)", ";", "|"]
    assert not Path("/tmp/hciwatch-pwned").exists()


@pytest.fixture
async def http_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    token = tmp_path / "token"
    token.write_text("s3cret\n")

    async def neighbors(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer s3cret":
            return web.Response(status=401)
        return web.json_response(ROWS)

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503, reason="Service Unavailable")

    app = web.Application()
    app.router.add_get("/neighbors", neighbors)
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        await runner.cleanup()


async def test_http_endpoint_with_token(http_server: tuple[str, Path]) -> None:
    base, token = http_server
    s = source(url=f"{base}/neighbors", bearer_token_file=token)
    try:
        [record] = await s.fetch(s.targets()[0])
        assert record.host == "127.0.0.1" and json.loads(record.body) == ROWS
    finally:
        await s.close()
        await s.close()
    no_token = source(url=f"{base}/neighbors")
    try:
        with pytest.raises(FetchError, match="HTTP 401") as ei:
            await no_token.fetch(no_token.targets()[0])
        assert not ei.value.retryable
    finally:
        await no_token.close()
    broken = source(url=f"{base}/broken")
    try:
        with pytest.raises(FetchError, match="HTTP 503") as ei2:
            await broken.fetch(broken.targets()[0])
        assert ei2.value.retryable
    finally:
        await broken.close()
