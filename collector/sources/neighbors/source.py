"""Neighbour-table pull source: an HTTP endpoint serving JSON, or a local command's output.

Two ways to get ARP/NDP rows (or Windows event JSON) in on an interval:

* ``url``: GET a JSON document, e.g. a small endpoint on a Windows host that serves
  ``Get-NetNeighbor | ConvertTo-Json`` (with the HTTP client keys of :mod:`collector.settings`:
  ``bearer_token_file`` or ``username`` + ``password_file``, a ``tls`` table, ``max_body_bytes``);
* ``command``: run an argv list *without a shell* (default ``["ip", "-j", "neigh"]``, the
  collector's own neighbour table, which sees every VIP answering on its L2 segment).

The body goes out exactly as received, as a ``neighbors`` (or ``event``) record; the pure parser
in :mod:`collector.sources.neighbors.parse` normalizes the three row shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, field_validator, model_validator

from collector.errors import FetchError
from collector.registry import SourceSpec
from collector.schema import RawRecord
from collector.settings import HttpClientSettings, Renamed
from collector.sources.base import SourceSettings

SOURCE_KIND = "neighbors"
DEFAULT_COMMAND = ("ip", "-j", "neigh")


_RENAMED = (Renamed("max_bytes", "max_body_bytes"),)


class NeighborsSettings(HttpClientSettings, SourceSettings):
    """``[[sources]] type = "neighbors"``."""

    renamed_keys = _RENAMED

    type: Literal["neighbors"] = "neighbors"
    url: str = Field(default="", description="http(s) URL serving neighbour (or event) JSON")
    command: list[str] = Field(default_factory=list, description="argv run without a shell; default ip -j neigh")
    record_kind: Literal["neighbors", "event"] = Field(
        default="neighbors", description="what the payload is: neighbour rows or Windows events"
    )
    host: str = Field(
        default="",
        description="host the table belongs to (owner prefix); default: the URL's host, or this machine for commands",
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024, description="largest payload (or command output)"
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if v:
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"url {v!r} must be http:// or https:// with a host")
        return v

    @field_validator("command")
    @classmethod
    def _check_command(cls, v: list[str]) -> list[str]:
        if v and not v[0].strip():
            raise ValueError("command[0] (the program) must not be empty")
        if any("\x00" in a for a in v):
            raise ValueError("command arguments must not contain NUL")
        return v

    @model_validator(mode="after")
    def _one_way(self) -> NeighborsSettings:
        if self.url and self.command:
            raise ValueError("set either url or command, not both")
        http_keys = [k for k in ("bearer_token_file", "password_file", "tls") if getattr(self, k) is not None]
        if http_keys and not self.url:
            raise ValueError(f"{', '.join(http_keys)}: only with a url (a command has no HTTP peer)")
        return self

    def argv(self) -> list[str]:
        return list(self.command) if self.command else list(DEFAULT_COMMAND)

    def target(self) -> str:
        return self.url or "exec:" + " ".join(self.argv())

    def table_host(self) -> str:
        if self.host:
            return self.host
        if self.url:
            return urlsplit(self.url).hostname or ""
        return socket.gethostname()


SessionFactory = Callable[[], aiohttp.ClientSession]


class NeighborsSource:
    """PullSource reading one neighbour table per fetch."""

    def __init__(
        self,
        settings: NeighborsSettings,
        *,
        clock: Callable[[], datetime] | None = None,
        session_factory: SessionFactory | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name or "neighbors"
        self._clock = clock or (lambda: datetime.now(UTC))
        self._session_factory = session_factory or aiohttp.ClientSession
        self._session: aiohttp.ClientSession | None = None
        key = f"sources.{self.name}"
        self._auth = settings.resolve_auth(key=key)  # a bad secret or TLS file fails here, at start-up
        self._ssl_context = settings.ssl_context(key=key)

    def targets(self) -> list[str]:
        return [self.settings.target()]

    async def fetch(self, target: str) -> list[RawRecord]:
        s = self.settings
        body = await (self._http() if s.url else self._exec())
        return [
            RawRecord(
                ts=self._clock(), kind=s.record_kind, target=target, body=body, host=s.table_host(), labels=s.labels
            )
        ]

    async def _http(self) -> bytes:
        s = self.settings
        headers = {"Accept": "application/json"}
        auth = self._auth.header()
        if auth is not None:
            headers["Authorization"] = auth
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        try:
            async with self._session.get(
                s.url, headers=headers, timeout=aiohttp.ClientTimeout(total=s.timeout), ssl=self._ssl_context or True
            ) as resp:
                if resp.status != 200:
                    raise FetchError(
                        f"HTTP {resp.status} {resp.reason or ''}".strip(),
                        source=SOURCE_KIND,
                        target=s.url,
                        retryable=resp.status >= 500 or resp.status == 429,
                    )
                body = await resp.content.read(s.max_body_bytes + 1)
        except TimeoutError:
            raise FetchError(f"no answer within {s.timeout}s", source=SOURCE_KIND, target=s.url) from None
        except aiohttp.ClientError as exc:
            raise FetchError(f"HTTP request failed: {exc}", source=SOURCE_KIND, target=s.url) from None
        if len(body) > s.max_body_bytes:
            raise FetchError(
                f"payload larger than max_body_bytes={s.max_body_bytes}",
                source=SOURCE_KIND,
                target=s.url,
                retryable=False,
            )
        return body

    async def _exec(self) -> bytes:
        s = self.settings
        argv = s.argv()
        target = s.target()
        program = shutil.which(argv[0])
        if program is None:
            raise FetchError(
                f"program {argv[0]!r} not found on PATH", source=SOURCE_KIND, target=target, retryable=False
            )
        proc = await asyncio.create_subprocess_exec(
            program,
            *argv[1:],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(self._collect(proc), timeout=s.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise FetchError(f"command did not finish within {s.timeout}s", source=SOURCE_KIND, target=target) from None
        if len(out) > s.max_body_bytes:
            raise FetchError(
                f"command output larger than max_body_bytes={s.max_body_bytes}",
                source=SOURCE_KIND,
                target=target,
                retryable=False,
            )
        if proc.returncode != 0:
            detail = err.decode("utf-8", "replace").strip().splitlines()
            raise FetchError(
                f"command exited with {proc.returncode}" + (f": {detail[-1][:200]}" if detail else ""),
                source=SOURCE_KIND,
                target=target,
            )
        return out

    async def _collect(self, proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
        """Read stdout up to max_body_bytes + 1 (then stop reading and kill), and stderr's tail."""
        assert proc.stdout is not None and proc.stderr is not None
        limit = self.settings.max_body_bytes + 1
        chunks: list[bytes] = []
        size = 0
        err_task = asyncio.create_task(proc.stderr.read(64 * 1024))
        while size < limit:
            chunk = await proc.stdout.read(min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size >= limit:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        err = await err_task
        await proc.wait()
        return b"".join(chunks), err

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


SPEC = SourceSpec(NeighborsSettings, NeighborsSource, SOURCE_KIND)
