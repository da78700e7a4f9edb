"""The HAProxy source without a real HAProxy: settings, record shaping, and each transport's errors.

The real capture is served over a unix socket, a TCP socket and an HTTP server so the three
transports are shown to deliver the same bytes (integration tests repeat this against HAProxy).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from collector.catalog import DEFAULT_CATALOG
from collector.config import format_validation_error
from collector.errors import ConfigError, FetchError
from collector.registry import get_parser, get_source_spec
from collector.schema import RawRecord
from collector.settings import DeprecatedKeyWarning, basic_auth
from collector.sources.base import PullSource
from collector.sources.haproxy.parse import parse_info_record, parse_record
from collector.sources.haproxy.source import (
    SPEC,
    AioTransport,
    HaproxySettings,
    HaproxySource,
    Target,
    parse_target,
    split_runtime_answer,
)

TESTDATA = Path(__file__).resolve().parents[2] / "collector" / "sources" / "haproxy" / "testdata"
ANSWER = (TESTDATA / "runtime_info_stat_2.6.12.txt").read_bytes()
CSV = (TESTDATA / "show_stat_2.6.12.csv").read_bytes()
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SECRET = "s3cr3t-P4ss"


def settings(**kw: Any) -> HaproxySettings:
    return HaproxySettings.model_validate({"type": "haproxy", **kw})


class FakeTransport:
    """Answers from memory and remembers what it was asked."""

    def __init__(self, *, http: bytes | Exception = CSV, runtime: bytes | Exception = ANSWER) -> None:
        self.http = http
        self.runtime = runtime
        self.calls: list[tuple[str, Any]] = []
        self.closed = False

    async def http_get(
        self, url: str, *, auth: str | None, timeout: float, max_bytes: int, ssl_context: ssl.SSLContext | None
    ) -> bytes:
        verify = None if ssl_context is None else ssl_context.verify_mode != ssl.CERT_NONE
        self.calls.append(("http", (url, auth, timeout, max_bytes, verify)))
        if isinstance(self.http, Exception):
            raise self.http
        return self.http

    async def runtime_query(self, target: Target, command: bytes, *, timeout: float, max_bytes: int) -> bytes:
        self.calls.append(("runtime", (target.raw, command, timeout)))
        if isinstance(self.runtime, Exception):
            raise self.runtime
        return self.runtime

    async def close(self) -> None:
        self.closed = True


def source(s: HaproxySettings, transport: Any = None) -> HaproxySource:
    return HaproxySource(s, transport=transport or FakeTransport(), clock=lambda: NOW, hostname="lb-vm-local")


# ---------------------------------------------------------------------------------------------
# Settings and targets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scheme", "detail"),
    [
        ("http://lb:8404/stats", "http", "http://lb:8404/stats;csv"),
        ("http://lb:8404/stats;csv", "http", "http://lb:8404/stats;csv"),
        ("https://lb/haproxy?stats", "https", "https://lb/haproxy;csv?stats"),
        ("http://lb", "http", "http://lb/;csv"),
        ("unix:///run/haproxy/admin.sock", "unix", "/run/haproxy/admin.sock"),
        ("tcp://10.0.0.5:9999", "tcp", "10.0.0.5:9999"),
        ("tcp://[fd00::5]:9999", "tcp", "fd00::5:9999"),
    ],
)
def test_parse_target(text: str, scheme: str, detail: str) -> None:
    t = parse_target(text)
    assert t.scheme == scheme
    got = {"http": t.url, "https": t.url, "unix": t.path, "tcp": f"{t.host}:{t.port}"}[scheme]
    assert got == detail


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("ftp://lb/stats", "unsupported target scheme"),
        ("unix://relative.sock", "three slashes"),
        ("tcp://10.0.0.5", "tcp://host:port"),
        ("tcp://10.0.0.5:99999", "bad port"),
        ("http:///stats", "needs a host"),
        ("lb:8404", "unsupported target scheme"),
    ],
)
def test_bad_targets(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_target(text)


def test_credentials_in_url_rejected_without_echoing_them() -> None:
    with pytest.raises(ValidationError) as info:
        settings(targets=[f"http://admin:{SECRET}@lb:8404/stats"])
    lines = format_validation_error(info.value, file="hciwatch.toml", text="", prefix="sources[0]")
    assert "credentials in the URL are not allowed" in lines[0]
    assert SECRET not in "\n".join(lines)


def test_settings_validation() -> None:
    s = settings(targets=["unix:///run/haproxy/admin.sock"])
    assert (s.interval, s.timeout, s.username, s.password_file, s.tls) == (30.0, 10.0, "", None, None)
    with pytest.raises(ValidationError, match="listed twice"):
        settings(targets=["tcp://a:1", "tcp://a:1"])
    with pytest.raises(ValidationError, match="not in targets"):
        settings(targets=["tcp://a:1"], hosts={"tcp://b:1": "x"})
    with pytest.raises(ValidationError, match="password_file is not"):
        settings(targets=["http://a/stats"], username="u")
    with pytest.raises(ValidationError, match="username is not"):
        settings(targets=["http://a/stats"], password_file="/x")
    with pytest.raises(ValidationError, match="at least 1"):
        settings(targets=[])
    with pytest.raises(ValidationError, match="Extra inputs"):
        settings(targets=["tcp://a:1"], pasword_file="/x")


def test_password_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw = tmp_path / "pw"
    pw.write_text(SECRET + "\n")
    t = FakeTransport()
    src = source(settings(targets=["http://lb:8404/stats"], username="hciwatch", password_file=str(pw)), t)
    asyncio.run(src.fetch("http://lb:8404/stats"))
    assert t.calls[0][1][1] == basic_auth("hciwatch", SECRET)
    monkeypatch.setenv("HX_PW", SECRET)
    src = source(settings(targets=["http://lb:8404/stats"], username="hciwatch", password_file="env:HX_PW"))
    assert src._auth.header() == basic_auth("hciwatch", SECRET)
    assert SECRET not in repr(src._auth) and SECRET not in repr(src.settings)


def test_missing_password_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as info:
        source(settings(targets=["http://lb/stats"], username="u", password_file=str(missing)))
    assert str(missing) in str(info.value)


def test_registry_wiring() -> None:
    assert get_source_spec("haproxy") is SPEC
    assert SPEC.settings_model is HaproxySettings and SPEC.record_kind == "haproxy-csv"
    src = SPEC.factory(settings(targets=["tcp://127.0.0.1:1"]))
    assert isinstance(src, PullSource)
    assert get_parser("haproxy-csv") is parse_record
    assert get_parser("haproxy-info") is parse_info_record
    asyncio.run(src.close())


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


async def test_socket_answer_becomes_csv_and_info_records() -> None:
    t = FakeTransport()
    s = settings(targets=["unix:///run/haproxy/admin.sock"], labels={"cluster": "hci-1"}, timeout=3)
    src = source(s, t)
    records = await src.fetch("unix:///run/haproxy/admin.sock")
    assert [r.kind for r in records] == ["haproxy-csv", "haproxy-info"]
    assert t.calls == [("runtime", ("unix:///run/haproxy/admin.sock", b"show info;show stat\n", 3.0))]
    csv_rec, info_rec = records
    assert csv_rec.body.startswith(b"# pxname,svname,") and info_rec.body.startswith(b"Name: HAProxy\n")
    assert csv_rec.body + info_rec.body != ANSWER and info_rec.body + csv_rec.body == ANSWER
    for r in records:
        assert (r.ts, r.host, r.labels, r.target) == (
            NOW,
            "lb-vm-local",
            {"cluster": "hci-1"},
            "unix:///run/haproxy/admin.sock",
        )
    assert parse_record(csv_rec, DEFAULT_CATALOG).errors == []
    assert parse_info_record(info_rec, DEFAULT_CATALOG).errors == []
    await src.close()
    assert t.closed


async def test_http_target_gives_one_csv_record() -> None:
    t = FakeTransport()
    s = settings(targets=["http://10.0.0.5:8404/stats"], tls={"insecure_skip_verify": True}, max_body_bytes=1000)
    src = source(s, t)
    records = await src.fetch("http://10.0.0.5:8404/stats")
    assert [(r.kind, r.body, r.host) for r in records] == [("haproxy-csv", CSV, "10.0.0.5")]
    assert t.calls == [("http", ("http://10.0.0.5:8404/stats;csv", None, 10.0, 1000, False))]


def test_old_tls_verify_and_max_bytes_keys_still_work_with_a_warning() -> None:
    with pytest.warns(DeprecatedKeyWarning, match="'tls_verify' is deprecated, use 'tls.insecure_skip_verify'"):
        s = settings(targets=["http://10.0.0.5:8404/stats"], tls_verify=False)
    assert s.tls is not None and s.tls.insecure_skip_verify
    with pytest.warns(DeprecatedKeyWarning, match="'max_bytes' is deprecated, use 'max_body_bytes'"):
        assert settings(targets=["tcp://a:1"], max_bytes=1000).max_body_bytes == 1000
    with pytest.raises(ValidationError, match=r"set max_body_bytes only \(max_bytes is its deprecated spelling\)"):
        settings(targets=["tcp://a:1"], max_bytes=1000, max_body_bytes=2000)


def test_host_names() -> None:
    targets = [
        "unix:///run/h.sock",
        "tcp://127.0.0.1:9999",
        "tcp://10.0.0.5:9999",
        "http://lb-vm-2:8404/stats",
        "http://10.0.0.7/stats",
    ]
    src = source(settings(targets=targets, hosts={"http://10.0.0.7/stats": "lb-vm-7"}))
    assert [src.host_of(t) for t in targets] == ["lb-vm-local", "lb-vm-local", "10.0.0.5", "lb-vm-2", "lb-vm-7"]
    assert src.targets() == targets


async def test_transport_errors_get_source_and_target() -> None:
    t = FakeTransport(runtime=FetchError("connection refused by x", retryable=True))
    src = source(settings(targets=["tcp://10.0.0.5:9999"]), t)
    with pytest.raises(FetchError) as info:
        await src.fetch("tcp://10.0.0.5:9999")
    err = info.value
    assert (err.source, err.target, err.retryable) == ("haproxy", "tcp://10.0.0.5:9999", True)
    assert str(info.value) == "haproxy:tcp://10.0.0.5:9999: connection refused by x"


@pytest.mark.parametrize("answer", [b"", b"Unknown command: 'show stat'\n", b"Permission denied\n\n"])
async def test_answer_without_stat_block(answer: bytes) -> None:
    src = source(settings(targets=["unix:///s.sock"]), FakeTransport(runtime=answer))
    with pytest.raises(FetchError, match="no `show stat` CSV block") as info:
        await src.fetch("unix:///s.sock")
    first = answer.decode().strip().splitlines()[0] if answer.strip() else "empty answer"
    assert first in str(info.value)


async def test_unknown_target() -> None:
    src = source(settings(targets=["unix:///s.sock"]))
    with pytest.raises(FetchError, match="not a configured target"):
        await src.fetch("unix:///other.sock")


def test_split_runtime_answer() -> None:
    info, stat = split_runtime_answer(ANSWER)
    assert info.endswith(b"\n\n") and stat.startswith(b"# pxname")
    assert split_runtime_answer(CSV) == (b"", CSV)
    with pytest.raises(ValueError):
        split_runtime_answer(b"Name: HAProxy\n\n")


# ---------------------------------------------------------------------------------------------
# AioTransport against local servers (the same bytes over all three transports)
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def answer_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    line = await reader.readline()
    writer.write(ANSWER if line == b"show info;show stat\n" else b"Unknown command\n")
    await writer.drain()
    writer.close()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


@pytest.fixture
async def unix_server(tmp_path: Path) -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.AbstractServer] = []

    async def start(handler: Handler) -> str:
        path = tmp_path / f"s{len(servers)}.sock"
        servers.append(await asyncio.start_unix_server(handler, path=str(path)))
        return f"unix://{path}"

    yield start
    for s in servers:
        s.close()


@pytest.fixture
async def tcp_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.AbstractServer] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for s in servers:
        s.close()


@pytest.fixture
async def http_server() -> AsyncIterator[str]:
    """A stats page stand-in: /stats;csv with basic auth hciwatch:SECRET, /big, /boom (500)."""
    want = "Basic " + base64.b64encode(f"hciwatch:{SECRET}".encode()).decode()

    async def stats(request: web.Request) -> web.Response:
        if request.path == "/boom;csv":
            return web.Response(status=500)
        if request.headers.get("Authorization") != want:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="HAProxy"'})
        if request.path == "/big;csv":
            return web.Response(body=CSV * 50)
        return web.Response(body=CSV, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/{tail:.*}", stats)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_same_bytes_over_unix_tcp_and_http(
    unix_server: Any, tcp_server: Any, http_server: str, tmp_path: Path
) -> None:
    pw = tmp_path / "pw"
    pw.write_text(SECRET)
    targets = [await unix_server(answer_and_close), await tcp_server(answer_and_close), f"{http_server}/stats"]
    src = HaproxySource(settings(targets=targets, username="hciwatch", password_file=str(pw), timeout=5))
    try:
        bodies = []
        for t in targets:
            records = await src.fetch(t)
            bodies.append(next(r.body for r in records if r.kind == "haproxy-csv"))
        assert bodies[0] == bodies[1] == bodies[2] == CSV
    finally:
        await src.close()


async def test_runtime_timeout(unix_server: Any, tcp_server: Any) -> None:
    for target in (await unix_server(never_answer), await tcp_server(never_answer)):
        src = HaproxySource(settings(targets=[target], timeout=0.3))
        with pytest.raises(FetchError, match=r"timed out after 0.3s") as info:
            await src.fetch(target)
        assert info.value.retryable
        await src.close()


async def test_runtime_refused_and_missing_socket(tmp_path: Path) -> None:
    target = f"tcp://127.0.0.1:{free_port()}"
    src = HaproxySource(settings(targets=[target, f"unix://{tmp_path}/none.sock"], timeout=2))
    with pytest.raises(FetchError, match="connection refused"):
        await src.fetch(target)
    with pytest.raises(FetchError, match=r"no socket at .*none\.sock"):
        await src.fetch(f"unix://{tmp_path}/none.sock")
    await src.close()


async def test_runtime_answer_too_large(tcp_server: Any) -> None:
    target = await tcp_server(answer_and_close)
    src = HaproxySource(settings(targets=[target], max_body_bytes=100))
    with pytest.raises(FetchError, match="larger than max_body_bytes") as info:
        await src.fetch(target)
    assert not info.value.retryable
    await src.close()


async def test_http_errors(http_server: str, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("wrong-" + SECRET)
    stats, boom, big = f"{http_server}/stats", f"{http_server}/boom", f"{http_server}/big"
    src = HaproxySource(settings(targets=[stats, boom], username="hciwatch", password_file=str(pw)))
    with pytest.raises(FetchError, match="HTTP 401") as info:
        await src.fetch(stats)
    assert not info.value.retryable and SECRET not in str(info.value)
    with pytest.raises(FetchError, match="HTTP 500") as info:
        await src.fetch(boom)
    assert info.value.retryable
    await src.close()
    pw.write_text(SECRET)
    src = HaproxySource(settings(targets=[big], username="hciwatch", password_file=str(pw), max_body_bytes=len(CSV)))
    with pytest.raises(FetchError, match="larger than max_body_bytes"):
        await src.fetch(big)
    await src.close()
    await src.close()  # twice is fine


async def test_http_refused() -> None:
    target = f"http://127.0.0.1:{free_port()}/stats"
    src = HaproxySource(settings(targets=[target], timeout=2))
    with pytest.raises(FetchError, match=r"cannot connect to 127\.0\.0\.1"):
        await src.fetch(target)
    await src.close()


async def test_transport_close_without_use() -> None:
    t = AioTransport()
    await t.close()
    await t.close()


def test_record_is_replayable() -> None:
    """Records hold only what a capture file stores (bytes, no parsed state)."""
    src = source(settings(targets=["unix:///s.sock"]))
    records = asyncio.run(src.fetch("unix:///s.sock"))
    for r in records:
        assert isinstance(r, RawRecord) and isinstance(r.body, bytes)
