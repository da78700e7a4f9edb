"""Resolve every secret reference and TLS table of validated settings, as start-up will.

``hciwatch check-config`` calls :func:`credential_problems` so an unreadable password file, an
unset ``env:NAME`` or a malformed CA bundle is reported when the configuration is checked, with
the key path of the file (``sources[2].password_file``), instead of when the service starts.
Values are read and dropped; only messages (which never contain a secret) come back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from collector.errors import ConfigError
from collector.settings.secrets import SecretRef
from collector.settings.tls import TlsClientSettings


def credential_problems(sections: Mapping[str, Any]) -> list[str]:
    """One message per secret or TLS file that cannot be used, for ``{key path: settings}``."""
    problems: list[str] = []
    for key, value in sections.items():
        _visit(value, key, problems)
    return problems


def _visit(value: Any, key: str, problems: list[str]) -> None:
    try:
        if isinstance(value, SecretRef):
            value.read(key=key)
        elif isinstance(value, TlsClientSettings):
            value.ssl_context(key=key)
    except ConfigError as exc:
        problems.append(str(exc))
        return
    if isinstance(value, TlsClientSettings | SecretRef):
        return
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _visit(getattr(value, name), f"{key}.{name}" if key else name, problems)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _visit(v, f"{key}.{k}", problems)
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for i, v in enumerate(value):
            _visit(v, f"{key}[{i}]", problems)
