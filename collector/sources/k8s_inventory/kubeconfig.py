"""Kubeconfig files and explicit API settings → how to reach and authenticate to an API server.

Supports what an AKS-HCI / AKS Arc admin or service-account kubeconfig uses: ``clusters``,
``users``, ``contexts``, ``current-context``; ``certificate-authority(-data)``,
``insecure-skip-tls-verify``, ``tls-server-name``; ``token``, ``tokenFile``,
``client-certificate(-data)`` / ``client-key(-data)``. Relative file paths are taken relative to
the kubeconfig's directory, as kubectl does. ``exec`` / ``auth-provider`` users (kubelogin, Azure
AD) are refused with a precise message: a collector daemon cannot run an interactive login, so it
should use a ServiceAccount token instead.

Secret values (tokens, keys) are held in fields excluded from ``repr`` and never enter an error
message; errors name the file and the key path only.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from collector.errors import ConfigError
from collector.settings import Secret, SecretRef, TlsClientSettings


@dataclass(frozen=True, slots=True)
class ApiCredentials:
    """Where an API server is and how to prove who we are to it.

    ``tls`` holds the file-based TLS settings (``certificate-authority``, ``client-certificate`` /
    ``client-key``, ``insecure-skip-tls-verify``, ``tls-server-name``, or the source's ``tls``
    table); the ``*_data`` fields hold what a kubeconfig embeds inline.
    """

    server: str
    tls: TlsClientSettings = field(default_factory=TlsClientSettings)
    ca_data: bytes | None = None  # PEM
    token: str | None = field(default=None, repr=False)
    token_secret: Secret | None = None  # a token file (re-read: rotation) or env:NAME
    client_cert_data: bytes | None = field(default=None, repr=False)
    client_key_data: bytes | None = field(default=None, repr=False)
    where: str = "tls"  # key path prefix for TLS errors

    @property
    def host(self) -> str:
        """The host of the ``server`` URL (an IP literal for AKS-HCI: the API-server VIP)."""
        return urlsplit(self.server).hostname or ""

    @property
    def is_https(self) -> bool:
        return urlsplit(self.server).scheme == "https"

    def bearer_token(self) -> str | None:
        """The token to send; a token file is read afresh so rotated tokens are picked up."""
        if self.token_secret is not None:
            return self.token_secret.current().strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS settings for this server; ``None`` for plain ``http://`` (tests, kubectl proxy)."""
        if not self.is_https:
            return None
        try:
            cadata = self.ca_data.decode("ascii") if self.ca_data else None
        except UnicodeDecodeError:
            raise ConfigError("cannot load the cluster CA from certificate-authority-data: not PEM text") from None
        ctx = self.tls.ssl_context(key=self.where, cadata=cadata)
        self._load_client_cert_data(ctx)
        return ctx

    def _load_client_cert_data(self, ctx: ssl.SSLContext) -> None:
        if self.client_cert_data is None and self.client_key_data is None:
            return
        if self.client_cert_data is None or self.client_key_data is None:
            raise ConfigError("client-certificate-data and client-key-data must be given together")
        # The ssl module loads key pairs from files only: write them to a private directory,
        # load, and remove them at once.
        with tempfile.TemporaryDirectory(prefix="hciwatch-k8s-") as tmp:
            os.chmod(tmp, 0o700)
            cert = Path(tmp, "client.crt")
            key = Path(tmp, "client.key")
            for path, data in ((cert, self.client_cert_data), (key, self.client_key_data)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            try:
                ctx.load_cert_chain(str(cert), str(key))
            except ssl.SSLError as exc:
                raise ConfigError(f"cannot load client-certificate-data / client-key-data: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def from_settings(
    api_url: str, *, token: Secret | None, tls: TlsClientSettings | None, where: str = "tls"
) -> ApiCredentials:
    """Credentials for an explicit ``api_url`` + ``bearer_token_file`` + ``tls`` cluster table."""
    return ApiCredentials(server=api_url.rstrip("/"), tls=tls or TlsClientSettings(), token_secret=token, where=where)


def load_kubeconfig(path: Path, context: str | None = None) -> ApiCredentials:
    """Read a kubeconfig and resolve ``context`` (default: ``current-context``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"kubeconfig {path} is not UTF-8 text", file=str(path)) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"kubeconfig {path} is not valid YAML{where}", file=str(path)) from None
    return parse_kubeconfig(doc, path=path, context=context)


def parse_kubeconfig(doc: Any, *, path: Path, context: str | None = None) -> ApiCredentials:
    """Resolve a loaded kubeconfig document (``path`` anchors relative file references)."""
    where = str(path)

    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"kubeconfig {where}: {key}: {why}", file=where, key=key)

    if not isinstance(doc, dict):
        raise fail("$", "expected a mapping (apiVersion, clusters, users, contexts)")
    ctx_name = context or doc.get("current-context")
    if not isinstance(ctx_name, str) or not ctx_name:
        raise fail("current-context", "not set and no context was configured")

    def named(section: str, name: str) -> tuple[str, dict[str, Any]]:
        entries = doc.get(section) or []
        if not isinstance(entries, list):
            raise fail(section, "expected a list")
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get("name") == name:
                body = entry.get(section[:-1])  # clusters[].cluster, users[].user, contexts[].context
                key = f"{section}[name={name}].{section[:-1]}"
                if not isinstance(body, dict):
                    raise fail(key, "expected a mapping")
                return key, body
            if not isinstance(entry, dict):
                raise fail(f"{section}[{i}]", "expected a mapping")
        known = [e.get("name") for e in entries if isinstance(e, dict)]
        raise fail(section, f"no entry named {name!r} (have: {', '.join(map(str, known)) or 'none'})")

    ctx_key, ctx = named("contexts", ctx_name)
    cluster_name = ctx.get("cluster")
    if not isinstance(cluster_name, str) or not cluster_name:
        raise fail(f"{ctx_key}.cluster", "missing")
    cl_key, cluster = named("clusters", cluster_name)
    user: dict[str, Any] = {}
    user_key = ""
    user_name = ctx.get("user")
    if user_name:
        if not isinstance(user_name, str):
            raise fail(f"{ctx_key}.user", "expected a string")
        user_key, user = named("users", user_name)

    base = path.parent

    def file_at(mapping: dict[str, Any], key: str, section: str) -> Path | None:
        value = mapping.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise fail(f"{section}.{key}", "expected a file path")
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    def data_at(mapping: dict[str, Any], key: str, section: str) -> bytes | None:
        value = mapping.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise fail(f"{section}.{key}", "expected base64 text")
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise fail(f"{section}.{key}", "not valid base64") from None

    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise fail(f"{cl_key}.server", "missing")
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(f"{cl_key}.server", "expected an http(s):// URL")
    if cluster.get("proxy-url"):
        raise fail(f"{cl_key}.proxy-url", "proxies are not supported; reach the API server directly")
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise fail(f"{cl_key}.insecure-skip-tls-verify", "expected true or false")
    tls_server_name = cluster.get("tls-server-name")
    if tls_server_name is not None and not isinstance(tls_server_name, str):
        raise fail(f"{cl_key}.tls-server-name", "expected a host name")

    for unsupported in ("exec", "auth-provider"):
        if user.get(unsupported):
            raise fail(
                f"{user_key}.{unsupported}",
                "credential plugins (kubelogin, az, gcloud) cannot run inside a collector; "
                "use a ServiceAccount token (token or tokenFile) or a client certificate",
            )
    if user.get("username") or user.get("password"):
        raise fail(
            f"{user_key}.username",
            "basic authentication is not supported by Kubernetes since 1.19; use a token or a client certificate",
        )
    token = user.get("token")
    if token is not None and not isinstance(token, str):
        raise fail(f"{user_key}.token", "expected a string")

    cert_file = file_at(user, "client-certificate", user_key)
    key_file = file_at(user, "client-key", user_key)
    if (cert_file is None) != (key_file is None):
        raise fail(f"{user_key}.client-certificate", "client-certificate and client-key must be given together")
    token_file = file_at(user, "tokenFile", user_key)
    token_key = f"kubeconfig {where}: {user_key}.tokenFile"
    token_secret = SecretRef(path=token_file).resolve(key=token_key) if token_file else None
    return ApiCredentials(
        server=server.rstrip("/"),
        tls=TlsClientSettings(
            ca_file=file_at(cluster, "certificate-authority", cl_key),
            cert_file=cert_file,
            key_file=key_file,
            insecure_skip_verify=insecure,
            server_name=tls_server_name or None,
        ),
        ca_data=data_at(cluster, "certificate-authority-data", cl_key),
        token=token or None,
        token_secret=token_secret,
        client_cert_data=data_at(user, "client-certificate-data", user_key),
        client_key_data=data_at(user, "client-key-data", user_key),
        where=f"kubeconfig {where}: {cl_key}",
    )
