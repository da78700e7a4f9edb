"""Old key spellings, accepted for one release: each is moved to its new key with a warning.

Owners declare their renames as :class:`Renamed` entries and call :func:`apply_renames` in a
``mode="before"`` validator. The warning (:class:`DeprecatedKeyWarning`, a ``FutureWarning`` so
Python shows it by default) names the old and the new key; giving both spellings is an error,
because silently preferring one hides a configuration that does not do what it says.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, model_validator


class DeprecatedKeyWarning(FutureWarning):
    """A configuration key is spelled the old way; the message names the new spelling."""


def _same(value: Any) -> Any:
    return value


def invert(value: Any) -> Any:
    """For a boolean whose meaning flipped (``tls_verify = false`` → ``insecure_skip_verify = true``)."""
    return not value if isinstance(value, bool) else value


def env_ref(value: Any) -> Any:
    """A bare variable name becomes a secret reference (``X`` → ``env:X``)."""
    return f"env:{value}" if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Renamed:
    """``old`` is now ``new`` (a dotted path such as ``tls.ca_file``); ``convert`` maps the value."""

    old: str
    new: str
    convert: Callable[[Any], Any] = _same
    note: str = ""


def apply_renames(data: Any, renames: Iterable[Renamed], *, where: str) -> Any:
    """A copy of ``data`` with every old key moved to its new place; warns once per key used."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for r in renames:
        if r.old not in out:
            continue
        value = r.convert(out.pop(r.old))
        *parents, leaf = r.new.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if child is None or child is True:  # `tls = true` is an empty table
                child = {}
            elif not isinstance(child, dict):
                raise ValueError(f"{r.old} is the deprecated spelling of {r.new}, but {part} is not a table")
            node[part] = child = dict(child)
            node = child
        if leaf in node:
            raise ValueError(f"set {r.new} only ({r.old} is its deprecated spelling)")
        node[leaf] = value
        warnings.warn(
            f"{where}: key {r.old!r} is deprecated, use {r.new!r}"
            + (f" ({r.note})" if r.note else "")
            + "; the old spelling is accepted until the next release",
            DeprecatedKeyWarning,
            stacklevel=2,
        )
    return out


class RenamedKeys(BaseModel):
    """Mixin for a settings model whose keys had other spellings: list them in ``renamed_keys``.

    ``section`` names where the model sits in the file (``sources``, ``exporters``); warnings say
    ``<section> (<name or type>): key 'old' is deprecated, use 'new'``.
    """

    renamed_keys: ClassVar[tuple[Renamed, ...]] = ()
    section: ClassVar[str] = "settings"

    @model_validator(mode="before")
    @classmethod
    def _apply_renamed_keys(cls, data: Any) -> Any:
        if not cls.renamed_keys or not isinstance(data, dict):
            return data
        field = cls.model_fields.get("type")
        default = field.default if field is not None and isinstance(field.default, str) else ""
        label = data.get("name") or data.get("type") or default or cls.__name__
        return apply_renames(data, cls.renamed_keys, where=f"{cls.section} ({label})")
