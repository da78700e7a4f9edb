"""Pull HAProxy statistics from the stats page (``;csv``) or the runtime API socket.

Three target forms, one per way an AKS-HCI load balancer VM can expose its statistics:

* ``http://lb-vm:8404/stats`` (or ``https://``): the stats page; ``<uri>;csv`` is fetched with
  HTTP basic auth (``username`` + ``password_file``, a file or ``env:NAME``) and the ``tls`` table
  of :mod:`collector.settings`, and yields one ``haproxy-csv`` record;
* ``unix:///run/haproxy/admin.sock``: the runtime API on a local socket (the collector runs on
  the LB VM itself);
* ``tcp://10.0.0.5:9999``: the runtime API on a TCP ``stats socket ipv4@...``.

On a runtime API socket one connection sends ``show info;show stat`` and reads to the close, so
both blocks describe the same instant; the answer is split into a ``haproxy-info`` and a
``haproxy-csv`` record. Records carry the bytes exactly as received (capture and replay depend on
it); parsing happens in :mod:`collector.sources.haproxy.parse`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol
from urllib.parse import urlsplit

import aiohttp
import yarl
from pydantic import Field, field_validator, model_validator

from collector.errors import FetchError
from collector.registry import SourceSpec
from collector.schema import RawRecord
from collector.settings import HttpClientSettings, Renamed
from collector.settings.deprecated import invert
from collector.sources.base import SourceSettings

SOURCE = "haproxy"
RUNTIME_COMMAND = b"show info;show stat\n"
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Target:
    """One configured target, taken apart once at start-up."""

    raw: str
    scheme: Literal["http", "https", "unix", "tcp"]
    url: str = ""  # http(s): the ;csv URL actually fetched
    path: str = ""  # unix: socket path
    host: str = ""  # http(s)/tcp: host name or IP
    port: int = 0  # tcp: port

    @property
    def is_local(self) -> bool:
        """Whether the peer is this machine (a unix socket or a loopback address)."""
        if self.scheme == "unix":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_target(text: str) -> Target:
    """Validate and take apart a target; ``ValueError`` says what is wrong and what is allowed."""
    raw = text.strip()
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError(f"{raw!r}: an http(s) target needs a host (http://lb-vm:8404/stats)")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                f"{parts.scheme}://{parts.hostname}...: credentials in the URL are not allowed; "
                "set username and password_file"
            )
        if parts.fragment:
            raise ValueError(f"{raw!r}: a target URL cannot have a #fragment")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError(f"{raw!r}: bad port ({exc})") from None
        path = parts.path or "/"
        if not path.endswith(";csv"):
            path += ";csv"
        url = f"{scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else "")
        return Target(raw, "https" if scheme == "https" else "http", url=url, host=parts.hostname)
    if scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ValueError(f"{raw!r}: a unix target is unix:///absolute/path/to.sock (three slashes)")
        return Target(raw, "unix", path=parts.path)
    if scheme == "tcp":
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{raw!r}: bad port ({exc})") from None
        if not parts.hostname or port is None or port == 0:
            raise ValueError(f"{raw!r}: a tcp target is tcp://host:port (the stats socket ipv4@ address)")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError(f"{raw!r}: a tcp target has no path or query")
        return Target(raw, "tcp", host=parts.hostname, port=port)
    raise ValueError(
        f"{raw!r}: unsupported target scheme {parts.scheme!r} (allowed: http://, https://, unix://, tcp://)"
    )


_RENAMED = (
    Renamed("tls_verify", "tls.insecure_skip_verify", invert),
    Renamed("max_bytes", "max_body_bytes"),
)


class HaproxySettings(HttpClientSettings, SourceSettings):
    """``[[sources]]`` keys of ``type = "haproxy"`` (HTTP client keys from :class:`HttpClientSettings`)."""

    renamed_keys = _RENAMED

    type: Literal["haproxy"] = "haproxy"
    targets: list[str] = Field(
        min_length=1, description="stats page URLs (http://host:port/stats), unix:///path.sock or tcp://host:port"
    )
    hosts: dict[str, str] = Field(
        default_factory=dict, description="target → host name stored with its samples (default: the target's host)"
    )
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BYTES, gt=0, le=1 << 30, description="largest answer accepted from one target"
    )

    @field_validator("targets")
    @classmethod
    def _valid_targets(cls, targets: list[str]) -> list[str]:
        seen: set[str] = set()
        problems = []
        for t in targets:
            try:
                parse_target(t)
            except ValueError as exc:
                problems.append(str(exc))
            if t in seen:
                problems.append(f"{t!r} is listed twice")
            seen.add(t)
        if problems:
            raise ValueError("; ".join(problems))
        return targets

    @model_validator(mode="after")
    def _consistent(self) -> HaproxySettings:
        unknown = sorted(set(self.hosts) - set(self.targets))
        if unknown:
            raise ValueError(
                f"hosts: {', '.join(map(repr, unknown))} not in targets "
                f"(keys must be targets exactly as written: {', '.join(self.targets)})"
            )
        return self


class Transport(Protocol):
    """The I/O a HAProxy source does; tests inject fakes, production uses :class:`AioTransport`.

    Implementations raise :class:`FetchError` (without source/target; the source adds them).
    """

    async def http_get(
        self, url: str, *, auth: str | None, timeout: float, max_bytes: int, ssl_context: ssl.SSLContext | None
    ) -> bytes: ...

    async def runtime_query(self, target: Target, command: bytes, *, timeout: float, max_bytes: int) -> bytes: ...

    async def close(self) -> None: ...


_HTTP_HINTS = {
    401: "the stats page rejected the credentials (check username and password_file, `stats auth`)",
    403: "access to the stats page is forbidden (check `stats auth`/`stats admin` and ACLs)",
    404: "no stats page at this URI (check `stats uri` in the `listen stats` section)",
}


class AioTransport:
    """aiohttp for the stats page, asyncio streams for the runtime API."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def http_get(
        self, url: str, *, auth: str | None, timeout: float, max_bytes: int, ssl_context: ssl.SSLContext | None
    ) -> bytes:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "hciwatch"})
        headers = {"Authorization": auth} if auth else {}
        try:
            async with asyncio.timeout(timeout):
                async with self._session.get(
                    yarl.URL(url, encoded=True), headers=headers, ssl=ssl_context or True, allow_redirects=False
                ) as resp:
                    if resp.status != 200:
                        hint = _HTTP_HINTS.get(resp.status, "")
                        raise FetchError(
                            f"HTTP {resp.status} {resp.reason or ''}".rstrip() + (f": {hint}" if hint else ""),
                            retryable=resp.status >= 500 or resp.status == 429,
                        )
                    body = bytearray()
                    async for chunk in resp.content.iter_chunked(65536):
                        body += chunk
                        if len(body) > max_bytes:
                            raise FetchError(f"answer larger than max_body_bytes ({max_bytes} bytes)", retryable=False)
                    return bytes(body)
        except TimeoutError:
            raise FetchError(f"timed out after {timeout:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            why = (exc.os_error.strerror or str(exc.os_error)) if exc.os_error else str(exc)
            raise FetchError(f"cannot connect to {exc.host}:{exc.port}: {why}") from None
        except aiohttp.ClientError as exc:
            raise FetchError(f"HTTP request failed: {type(exc).__name__}: {exc}") from None

    async def runtime_query(self, target: Target, command: bytes, *, timeout: float, max_bytes: int) -> bytes:
        where = target.path if target.scheme == "unix" else f"{target.host}:{target.port}"
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(timeout):
                if target.scheme == "unix":
                    reader, writer = await asyncio.open_unix_connection(target.path)
                else:
                    reader, writer = await asyncio.open_connection(target.host, target.port)
                writer.write(command)
                await writer.drain()
                answer = bytearray()
                while chunk := await reader.read(65536):
                    answer += chunk
                    if len(answer) > max_bytes:
                        raise FetchError(f"answer larger than max_body_bytes ({max_bytes} bytes)", retryable=False)
                return bytes(answer)
        except TimeoutError:
            raise FetchError(
                f"timed out after {timeout:g}s waiting for the runtime API at {where} to answer and close"
            ) from None
        except FileNotFoundError:
            raise FetchError(
                f"no socket at {where} (check `stats socket` in the global section)", retryable=True
            ) from None
        except PermissionError:
            raise FetchError(
                f"permission denied on {where} (check `mode`/`user`/`group` of `stats socket`)", retryable=False
            ) from None
        except ConnectionRefusedError:
            raise FetchError(f"connection refused by {where} (is HAProxy running with this `stats socket`?)") from None
        except OSError as exc:
            raise FetchError(f"runtime API at {where} failed: {exc.strerror or exc}") from None
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def split_runtime_answer(answer: bytes) -> tuple[bytes, bytes]:
    """Split a ``show info;show stat`` answer into its info block and its CSV block.

    The CSV block starts at the first line beginning with ``# `` (its header); ``ValueError``
    when there is none (HAProxy answered with an error such as ``Unknown command``).
    """
    if answer.startswith(b"# "):
        return b"", answer
    at = answer.find(b"\n# ")
    if at < 0:
        raise ValueError("no show stat CSV block")
    return answer[: at + 1], answer[at + 1 :]


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    line = text.splitlines()[0] if text else ""
    return repr(line[:120]) if line else "nothing (empty answer)"


class HaproxySource:
    """A :class:`~collector.sources.base.PullSource` over the targets of one settings table."""

    def __init__(
        self,
        settings: HaproxySettings,
        *,
        transport: Transport | None = None,
        clock: Callable[[], datetime] | None = None,
        hostname: str | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name or settings.type
        self._targets = {t: parse_target(t) for t in settings.targets}
        key = f"sources.{self.name}"
        self._auth = settings.resolve_auth(key=key)  # a bad secret or TLS file fails here, at start-up
        self._ssl = settings.ssl_context(key=key)
        self._transport: Transport = transport if transport is not None else AioTransport()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._local_host = hostname or socket.gethostname()

    def targets(self) -> list[str]:
        return list(self._targets)

    def host_of(self, target: str) -> str:
        """Host stored with a target's samples: ``hosts`` entry, else the target's host.

        A unix socket or a loopback address means the collector runs on the LB VM, so the local
        host name is the meaningful one.
        """
        explicit = self.settings.hosts.get(target)
        if explicit:
            return explicit
        t = self._targets[target]
        return self._local_host if t.is_local else t.host

    async def fetch(self, target: str) -> list[RawRecord]:
        t = self._targets.get(target)
        if t is None:
            raise FetchError(
                f"not a configured target (configured: {', '.join(self._targets)})",
                source=SOURCE,
                target=target,
                retryable=False,
            )
        timeout = self.settings.timeout
        try:
            if t.scheme in ("http", "https"):
                body = await self._transport.http_get(
                    t.url,
                    auth=self._auth.header(),
                    timeout=timeout,
                    max_bytes=self.settings.max_body_bytes,
                    ssl_context=self._ssl,
                )
                return [self._record("haproxy-csv", target, body)]
            answer = await self._transport.runtime_query(
                t, RUNTIME_COMMAND, timeout=timeout, max_bytes=self.settings.max_body_bytes
            )
        except FetchError as exc:
            raise FetchError(exc.reason, source=SOURCE, target=target, retryable=exc.retryable) from exc
        try:
            info, stat = split_runtime_answer(answer)
        except ValueError:
            raise FetchError(
                f"the runtime API answer has no `show stat` CSV block; it said {_first_line(answer)}",
                source=SOURCE,
                target=target,
            ) from None
        ts = self._clock()
        records = [self._record("haproxy-csv", target, stat, ts)]
        if info.strip():
            records.append(self._record("haproxy-info", target, info, ts))
        return records

    def _record(self, kind: str, target: str, body: bytes, ts: datetime | None = None) -> RawRecord:
        return RawRecord(
            ts=ts or self._clock(),
            kind=kind,
            target=target,
            body=body,
            host=self.host_of(target),
            labels=self.settings.labels,
        )

    async def close(self) -> None:
        await self._transport.close()


def create_source(settings: HaproxySettings) -> HaproxySource:
    """Factory used by the registry (``[[sources]] type = "haproxy"``)."""
    return HaproxySource(settings)


SPEC = SourceSpec(HaproxySettings, create_source, "haproxy-csv")
