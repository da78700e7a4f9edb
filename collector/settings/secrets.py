"""Secret references: a ``*_file`` key holds a file path or ``env:NAME``, never the secret itself.

A :class:`SecretRef` is what the configuration says (safe to show: a path or a variable name).
:meth:`SecretRef.resolve` reads it once, at start-up, and returns a :class:`Secret`; a missing
file, an unreadable one, an empty one or an unset variable is a :class:`ConfigError` naming the
key path and the reference, so a bad credential stops start-up instead of failing at the first
connection. The value is never part of ``repr``/``str`` of either object, nor of any message.

Files are the way rotating credentials are delivered (projected ServiceAccount tokens, mounted
secrets), so :meth:`Secret.current` reads a file reference again (a few bytes, once per request)
and keeps the last good value when a rotation is caught half-written or the file is briefly gone.

One rule for every secret: line breaks around the value are removed (what ``echo`` and editors
add); everything else, spaces included, is part of the value.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from collector.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "env:"


class SecretRef:
    """Where a secret is: ``env:NAME`` or a file path (``~`` expanded)."""

    __slots__ = ("env", "path")

    def __init__(self, *, env: str | None = None, path: Path | None = None) -> None:
        if (env is None) == (path is None):
            raise ValueError("a secret reference is either env:NAME or a file path")
        self.env = env
        self.path = path

    @classmethod
    def parse(cls, text: str | Path) -> SecretRef:
        """``env:NAME`` or a path; ``ValueError`` for an empty reference or a bad variable name."""
        if isinstance(text, Path):
            return cls(path=text.expanduser())
        t = text.strip()
        if not t:
            raise ValueError("empty secret reference (a file path or env:NAME)")
        if t.startswith(ENV_PREFIX):
            name = t[len(ENV_PREFIX) :].strip()
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"'env:' must be followed by an environment variable name (got {t!r})")
            return cls(env=name)
        return cls(path=Path(t).expanduser())

    def __str__(self) -> str:
        return f"{ENV_PREFIX}{self.env}" if self.env is not None else str(self.path)

    def __repr__(self) -> str:
        return f"SecretRef({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and (self.env, self.path) == (other.env, other.path)

    def __hash__(self) -> int:
        return hash((self.env, self.path))

    def read(self, *, key: str) -> str:
        """The secret's value now; :class:`ConfigError` naming ``key`` and the reference otherwise."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"{key}: environment variable {self.env} is not set", key=key)
            where = f"environment variable {self.env}"
        else:
            assert self.path is not None
            try:
                value = self.path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                raise ConfigError(f"{key}: cannot read secret file {self.path}: {why}", key=key) from None
            where = f"secret file {self.path}"
        value = value.strip("\r\n")
        if not value.strip():
            raise ConfigError(f"{key}: {where} is empty", key=key)
        return value

    def resolve(self, *, key: str) -> Secret:
        """Read once (at start-up) and keep the value in a :class:`Secret`."""
        return Secret(self, key=key, value=self.read(key=key))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def validate(value: Any) -> SecretRef:
            if isinstance(value, SecretRef):
                return value
            if isinstance(value, str | Path):
                return cls.parse(value)
            raise ValueError("expected a file path or env:NAME")

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, _schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "description": "a file path or env:NAME"}


class Secret:
    """A resolved secret. Only :meth:`get`/:meth:`current` return the value; ``repr`` never does."""

    __slots__ = ("_value", "key", "ref")

    def __init__(self, ref: SecretRef, *, key: str, value: str) -> None:
        self.ref = ref
        self.key = key
        self._value = value

    def get(self) -> str:
        """The value read at start-up (or at the last :meth:`current`)."""
        return self._value

    def current(self) -> str:
        """The value now: a file reference is read again (rotation); an env reference is fixed.

        A file that cannot be read at this moment (a rotation replacing it) keeps the last good
        value; the problem is logged with the key and path only.
        """
        if self.ref.path is None:
            return self._value
        try:
            self._value = self.ref.read(key=self.key)
        except ConfigError as exc:
            log.warning("%s; keeping the previous value", exc)
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.key}={str(self.ref)!r}, value=<hidden>)"

    __str__ = __repr__


def resolve_optional(ref: SecretRef | None, *, key: str) -> Secret | None:
    """:meth:`SecretRef.resolve` for an optional key."""
    return None if ref is None else ref.resolve(key=key)
