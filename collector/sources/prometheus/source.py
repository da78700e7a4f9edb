"""Scrape Prometheus text endpoints over HTTP(S): the one scraper behind every exposition source.

windows_exporter, kube-proxy, Calico, MetalLB and any other ``/metrics`` endpoint differ only in
defaults (port, path, the ``source`` they report as), so each of those source types is a settings
subclass of :class:`PrometheusSettings` plus ``SourceSpec(settings, PrometheusScraper, "prometheus")``.

The scraper does I/O only: it returns the body exactly as received (decompressed when the peer
used gzip) in a :class:`~collector.schema.RawRecord` of kind ``prometheus``; parsing happens in
:mod:`collector.sources.prometheus.parse`, so capture and replay see the same bytes.
Credentials (``bearer_token_file`` or ``username`` + ``password_file``, each a file or ``env:NAME``)
and the ``tls`` table are checked at start-up; a token file that changes is read again before the
next scrape (a rotated Kubernetes service-account token is picked up without a restart). Secrets
never appear in errors or logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, field_validator, model_validator

from collector.errors import FetchError
from collector.registry import SourceSpec
from collector.schema import RawRecord
from collector.settings import HttpClientSettings, Renamed
from collector.sources.base import SourceSettings

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
USER_AGENT = "hciwatch/0.1"
_RENAMED = (
    Renamed("tls_ca_file", "tls.ca_file"),
    Renamed("tls_insecure_skip_verify", "tls.insecure_skip_verify"),
    Renamed("basic_auth_username", "username"),
    Renamed("basic_auth_password_file", "password_file"),
)


class PrometheusSettings(HttpClientSettings, SourceSettings):
    """``[[sources]] type = "prometheus"``: scrape any Prometheus text endpoint."""

    source_name: ClassVar[str | None] = None  # the `source` label records carry (None: by prefix)
    renamed_keys = _RENAMED

    type: str = "prometheus"
    targets: list[str] = Field(min_length=1, description='"host:port", "host" or a full URL')
    port: int | None = Field(default=None, ge=1, le=65535, description="port for targets given without one")
    path: str = Field(default="/metrics", description="HTTP path for targets that are not URLs")
    scheme: Literal["http", "https"] = "http"
    hosts: dict[str, str] = Field(
        default_factory=dict, description="target → host name (default: the target's host part)"
    )

    @field_validator("path")
    @classmethod
    def _path_absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path must start with '/': {v!r}")
        return v

    @field_validator("targets")
    @classmethod
    def _targets_valid(cls, v: list[str]) -> list[str]:
        for t in v:
            if not t.strip():
                raise ValueError("empty target")
            if "://" in t and urlsplit(t).scheme not in ("http", "https"):
                raise ValueError(f"target URL must be http or https: {t!r}")
        return v

    @model_validator(mode="after")
    def _auth_consistent(self) -> PrometheusSettings:
        known = {n for c, n, _ in self.resolved()} | {c for c, _, _ in self.resolved()}
        unknown = sorted(set(self.hosts) - known)
        if unknown:
            raise ValueError(f"hosts names targets that are not configured: {', '.join(unknown)}")
        return self

    def resolved(self) -> list[tuple[str, str, str]]:
        """(target as configured, target name records carry, URL) for every target.

        Subclasses with several target lists (Calico: Felix and kube-controllers) extend this.
        """
        return [(t, *self._resolve(t, self.port)) for t in self.targets]

    def target_urls(self) -> dict[str, str]:
        """Target name (as records carry it) → URL to scrape."""
        return {name: url for _, name, url in self.resolved()}

    def _resolve(self, target: str, default_port: int | None) -> tuple[str, str]:
        t = target.strip()
        if "://" in t:
            parts = urlsplit(t)
            path = parts.path or self.path
            query = f"?{parts.query}" if parts.query else ""
            return t, f"{parts.scheme}://{parts.netloc}{path}{query}"
        host, port = split_host_port(t)
        if port is None:
            port = default_port
        netloc = f"[{host}]" if ":" in host else host
        name = f"{netloc}:{port}" if port is not None else netloc
        return name, f"{self.scheme}://{name}{self.path}"


def split_host_port(target: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address → (host, port)."""
    t = target.strip()
    if t.startswith("["):
        end = t.find("]")
        if end < 0:
            raise ValueError(f"unbalanced '[' in target {target!r}")
        host, rest = t[1:end], t[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":") or not rest[1:].isdigit():
            raise ValueError(f"bad port in target {target!r}")
        return host, int(rest[1:])
    if t.count(":") == 1:
        host, _, port = t.partition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad port in target {target!r}")
        return host, int(port)
    return t, None  # a name, an IPv4 address or a bare IPv6 address


class PrometheusScraper:
    """A :class:`~collector.sources.base.PullSource` for Prometheus text endpoints.

    ``session`` injects an ``aiohttp.ClientSession`` (owned by the caller); ``base_url`` sends
    every request to that scheme://host:port instead of the target's (tests point real targets
    at a local server this way); ``clock`` stamps records (the flow's clock in replay/tests).
    """

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        base_url: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name or settings.type
        self._urls = settings.target_urls()
        self._hosts: dict[str, str] = {}
        for configured, name, _ in settings.resolved():
            host = settings.hosts.get(configured) or settings.hosts.get(name)
            if host:
                self._hosts[name] = host
        self._session = session
        self._own_session = session is None
        self._base_url = base_url.rstrip("/") if base_url else None
        self._clock = clock or (lambda: datetime.now(UTC))
        self._source = type(settings).source_name or ""
        key = f"sources.{self.name}"
        self._auth = settings.resolve_auth(key=key)  # a bad secret or TLS file fails here, at start-up
        self._ssl_context = settings.ssl_context(key=key)

    def targets(self) -> list[str]:
        return list(self._urls)

    def host_for(self, target: str) -> str:
        """The record's host: the ``hosts`` table entry, else the target's host part."""
        host = self._hosts.get(target)
        if host is not None:
            return host
        if "://" in target:
            return urlsplit(target).hostname or target
        try:
            return split_host_port(target)[0]
        except ValueError:
            return target

    def _fail(self, target: str, why: str, *, retryable: bool) -> FetchError:
        return FetchError(why, source=self.name, target=target, retryable=retryable)

    def _headers(self, target: str) -> dict[str, str]:
        s = self.settings
        headers = {
            "Accept": ACCEPT,
            "Accept-Encoding": "gzip",
            "User-Agent": USER_AGENT,
            "X-Prometheus-Scrape-Timeout-Seconds": f"{s.timeout:g}",
        }
        auth = self._auth.header()
        if auth is not None:
            headers["Authorization"] = auth
        return headers

    def _url(self, target: str) -> str:
        url = self._urls[target]
        if self._base_url is None:
            return url
        parts = urlsplit(url)
        return self._base_url + parts.path + (f"?{parts.query}" if parts.query else "")

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    async def fetch(self, target: str) -> list[RawRecord]:
        if target not in self._urls:
            raise self._fail(target, f"unknown target; configured: {', '.join(self._urls)}", retryable=False)
        s = self.settings
        headers = self._headers(target)
        session = await self._get_session()
        ts = self._clock()
        try:
            async with session.get(
                self._url(target),
                headers=headers,
                ssl=self._ssl_context or True,
                timeout=aiohttp.ClientTimeout(total=s.timeout),
                allow_redirects=True,
            ) as resp:
                if resp.status >= 400:
                    retryable = resp.status >= 500 or resp.status in (408, 429)
                    raise self._fail(target, f"HTTP {resp.status} {resp.reason or ''}".rstrip(), retryable=retryable)
                declared = resp.content_length
                if declared is not None and declared > s.max_body_bytes:
                    raise self._fail(
                        target, f"body of {declared} bytes exceeds max_body_bytes ({s.max_body_bytes})", retryable=False
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 20):
                    size += len(chunk)
                    if size > s.max_body_bytes:
                        raise self._fail(
                            target,
                            f"body exceeds max_body_bytes ({s.max_body_bytes}) after decompression",
                            retryable=False,
                        )
                    chunks.append(chunk)
        except FetchError:
            raise
        except TimeoutError as exc:
            raise self._fail(target, f"timed out after {s.timeout:g}s", retryable=True) from exc
        except aiohttp.ClientSSLError as exc:
            raise self._fail(target, f"TLS error: {exc}", retryable=False) from exc
        except aiohttp.ClientConnectorError as exc:
            raise self._fail(target, f"cannot connect: {exc.os_error.strerror or exc}", retryable=True) from exc
        except aiohttp.ClientPayloadError as exc:
            raise self._fail(target, f"truncated or corrupt response body: {exc}", retryable=True) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self._fail(target, f"{type(exc).__name__}: {exc}", retryable=True) from exc
        labels = dict(s.labels)
        if self._source and "source" not in labels:
            labels["source"] = self._source
        return [
            RawRecord(
                ts=ts,
                kind="prometheus",
                target=target,
                host=self.host_for(target),
                body=b"".join(chunks),
                labels=labels,
            )
        ]

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._own_session and not session.closed:
            await session.close()
            await asyncio.sleep(0)  # let aiohttp close its connector's transports


SPEC = SourceSpec(PrometheusSettings, PrometheusScraper, "prometheus")
