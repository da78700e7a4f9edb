"""The one TLS client table every source and sink accepts (``tls = { ca_file = ..., ... }``).

Keys follow the OpenTelemetry Collector's ``configtls`` client settings: ``ca_file`` (trust
anchors instead of the system store), ``cert_file`` + ``key_file`` (a client certificate for
mutual TLS), ``insecure_skip_verify`` (no chain or name check: a lab only) and ``server_name``
(the name the certificate must carry when the peer is reached by IP or through a tunnel).

:meth:`TlsClientSettings.ssl_context` loads the files; owners call it at start-up so a missing
or malformed file is a configuration error with its key path, not a failed connection later.
``server_name`` is applied by the context itself (it rewrites the name asked for in
``wrap_socket``/``wrap_bio``), so it works the same for aiohttp, paho-mqtt and anything else
that takes an :class:`ssl.SSLContext`.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from collector.errors import ConfigError


class _ServerNameContext(ssl.SSLContext):
    """An SSL context that verifies (and sends SNI for) a fixed name instead of the host dialled."""

    server_name_override: str | None = None

    def _named(self, args: tuple[Any, ...], kwargs: dict[str, Any], at: int) -> tuple[Any, ...]:
        """Put the override where ``server_hostname`` is, positional (index ``at``) or keyword."""
        if not self.server_name_override:
            return args
        if len(args) > at:
            return (*args[:at], self.server_name_override, *args[at + 1 :])
        kwargs["server_hostname"] = self.server_name_override
        return args

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:
        # wrap_socket(sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, server_hostname, ...)
        return super().wrap_socket(sock, *self._named(args, kwargs, 3), **kwargs)

    def wrap_bio(self, incoming: Any, outgoing: Any, *args: Any, **kwargs: Any) -> Any:
        # wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        return super().wrap_bio(incoming, outgoing, *self._named(args, kwargs, 1), **kwargs)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class TlsClientSettings(BaseModel):
    """How to verify a TLS server and, optionally, prove who we are to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = Field(default=None, description="PEM CA bundle to verify the peer (default: system store)")
    cert_file: Path | None = Field(default=None, description="PEM client certificate (mutual TLS), with key_file")
    key_file: Path | None = Field(default=None, description="PEM private key of cert_file")
    insecure_skip_verify: bool = Field(
        default=False, description="do not verify the peer's certificate chain or name (labs only)"
    )
    server_name: str | None = Field(
        default=None, min_length=1, description="name the peer certificate must carry (default: the host dialled)"
    )

    @model_validator(mode="after")
    def _pairs(self) -> TlsClientSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together (a client certificate and its key)")
        return self

    def ssl_context(self, *, key: str = "tls", cadata: str | None = None) -> ssl.SSLContext:
        """A client context with these settings; :class:`ConfigError` naming ``key`` and the file.

        ``cadata`` adds PEM trust anchors held in memory (a kubeconfig's certificate-authority-data).
        """
        ctx = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.server_name_override = self.server_name
        try:
            if self.ca_file is None and cadata is None:
                ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
            if self.ca_file is not None:
                ctx.load_verify_locations(cafile=str(self.ca_file))
            if cadata is not None:
                ctx.load_verify_locations(cadata=cadata)
        except (OSError, ssl.SSLError, ValueError) as exc:
            where = str(self.ca_file) if self.ca_file is not None else "the in-memory CA data"
            raise ConfigError(
                f"{key}.ca_file: cannot load CA certificates from {where}: {_reason(exc)}", key=key
            ) from None
        if self.cert_file is not None and self.key_file is not None:
            try:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"{key}.cert_file: cannot load client certificate {self.cert_file} with key {self.key_file}: "
                    f"{_reason(exc)}",
                    key=key,
                ) from None
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def files(self) -> dict[str, Path]:
        """The files this table names, by key (for owners that hand paths to a library)."""
        out = {"ca_file": self.ca_file, "cert_file": self.cert_file, "key_file": self.key_file}
        return {k: v for k, v in out.items() if v is not None}


def tls_shorthand(value: Any) -> Any:
    """``tls = true`` means a default table (system CAs), ``tls = false`` no TLS; tables pass through."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


TlsTable = Annotated[TlsClientSettings | None, BeforeValidator(tls_shorthand)]
"""The type of every owner's ``tls`` key: a table, ``true`` (defaults) or ``false``/absent (none)."""
