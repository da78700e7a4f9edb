"""The keys of an HTTP client: timeout, body limit, basic or bearer authentication, TLS.

Sources that scrape over HTTP (HAProxy stats page, Prometheus expositions, neighbour tables)
and sinks that POST (webhook) subclass :class:`HttpClientSettings`, so ``username`` +
``password_file``, ``bearer_token_file``, ``max_body_bytes`` and the ``tls`` table mean the same
everywhere. :meth:`HttpClientSettings.resolve_auth` reads the credentials once, at start-up.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from collector.settings.secrets import Secret, SecretRef
from collector.settings.tls import TlsTable

DEFAULT_MAX_BODY = 64 * 1024 * 1024


def basic_auth(username: str, password: str) -> str:
    """RFC 7617 ``Authorization`` value (built here: aiohttp's helpers changed across 3.x releases)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


@dataclass(frozen=True, slots=True)
class HttpAuth:
    """Resolved credentials of one HTTP client; :meth:`header` builds ``Authorization`` per request."""

    username: str = ""
    password: Secret | None = None
    bearer: Secret | None = None

    def header(self) -> str | None:
        """The ``Authorization`` value now (a rotated token file is picked up), or ``None``."""
        if self.bearer is not None:
            return "Bearer " + self.bearer.current().strip()
        if self.password is not None:
            return basic_auth(self.username, self.password.current())
        return None


class HttpClientSettings(BaseModel):
    """Keys shared by every HTTP client (mixed into a source's or sink's settings model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(default=10.0, gt=0, le=600, description="per-request timeout, seconds")
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY, ge=1024, le=2**31 - 1, description="largest response body accepted"
    )
    username: str = Field(default="", description="HTTP basic auth user (with password_file)")
    password_file: SecretRef | None = Field(default=None, description="basic auth password: a file or env:NAME")
    bearer_token_file: SecretRef | None = Field(default=None, description="bearer token: a file or env:NAME")
    tls: TlsTable = Field(default=None, description="TLS client settings for https:// peers")

    @model_validator(mode="after")
    def _auth_pairs(self) -> HttpClientSettings:
        if self.username and self.password_file is None:
            raise ValueError("username is set but password_file is not")
        if self.password_file is not None and not self.username:
            raise ValueError("password_file is set but username is not")
        if self.bearer_token_file is not None and self.username:
            raise ValueError("use either bearer_token_file or basic auth (username + password_file), not both")
        return self

    def resolve_auth(self, *, key: str) -> HttpAuth:
        """Read the credentials now (start-up); :class:`ConfigError` naming ``key`` on failure."""
        password = self.password_file.resolve(key=f"{key}.password_file") if self.password_file else None
        bearer = self.bearer_token_file.resolve(key=f"{key}.bearer_token_file") if self.bearer_token_file else None
        return HttpAuth(self.username, password, bearer)

    def ssl_context(self, *, key: str) -> ssl.SSLContext | None:
        """The context for https:// peers (``None``: aiohttp's default verification)."""
        return self.tls.ssl_context(key=f"{key}.tls") if self.tls is not None else None
