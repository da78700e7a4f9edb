"""Name → implementation, for parsers (by capture-record kind) and sources (by config type).

Built-ins are referenced as ``"module:attribute"`` strings and imported on first use, so the
registry stays greppable (every built-in is listed here), importing it is cheap, and one broken
optional source cannot stop the others from loading. Registering a name twice is an error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from collector.catalog import Catalog
from collector.schema import ParseResult, RawRecord


class Parser(Protocol):
    """A pure function: one raw record in, rows out. No I/O, no clock."""

    def __call__(self, record: RawRecord, catalog: Catalog) -> ParseResult: ...


# capture-record kind → parser
BUILTIN_PARSERS: dict[str, str] = {
    "prometheus": "collector.sources.prometheus.parse:parse_record",
    "haproxy-csv": "collector.sources.haproxy.parse:parse_record",
    "haproxy-info": "collector.sources.haproxy.parse:parse_info_record",
    "k8s": "collector.sources.k8s_inventory.parse:parse_record",
    "mqtt": "collector.sources.mqtt.parse:parse_record",
    "typeperf-csv": "collector.sources.typeperf.parse:parse_record",
    "neighbors": "collector.sources.neighbors.parse:parse_record",
    "event": "collector.sources.neighbors.parse:parse_event_record",
}

# [[sources]] type → (settings model, factory(settings) -> PullSource | PushSource)
BUILTIN_SOURCES: dict[str, str] = {
    "windows": "collector.sources.windows.source:SPEC",
    "kube_proxy": "collector.sources.kube_proxy.source:SPEC",
    "calico": "collector.sources.calico.source:SPEC",
    "metallb": "collector.sources.metallb.source:SPEC",
    "prometheus": "collector.sources.prometheus.source:SPEC",
    "haproxy": "collector.sources.haproxy.source:SPEC",
    "mqtt": "collector.sources.mqtt.source:SPEC",
    "k8s_inventory": "collector.sources.k8s_inventory.source:SPEC",
    "neighbors": "collector.sources.neighbors.source:SPEC",
}

_parsers: dict[str, Parser] = {}
_sources: dict[str, Any] = {}


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def register_parser(kind: str, parser: Parser) -> None:
    """Add a parser for a record kind; a kind can be registered once."""
    if kind in _parsers or kind in BUILTIN_PARSERS:
        raise ValueError(f"a parser for record kind {kind!r} is already registered")
    _parsers[kind] = parser


def parser_kinds() -> list[str]:
    """Every record kind with a parser (for error messages listing what is allowed)."""
    return sorted(set(BUILTIN_PARSERS) | set(_parsers))


def get_parser(kind: str) -> Parser:
    """The parser for ``kind``; ``KeyError`` naming the allowed kinds when there is none."""
    if kind not in _parsers:
        ref = BUILTIN_PARSERS.get(kind)
        if ref is None:
            raise KeyError(f"unknown record kind {kind!r}; known kinds: {', '.join(parser_kinds())}")
        _parsers[kind] = _load(ref)
    return _parsers[kind]


def register_source(type_name: str, spec: Any) -> None:
    """Add a source type (a :class:`SourceSpec`); a type can be registered once."""
    if type_name in _sources or type_name in BUILTIN_SOURCES:
        raise ValueError(f"source type {type_name!r} is already registered")
    _sources[type_name] = spec


def source_types() -> list[str]:
    """Every configurable source type."""
    return sorted(set(BUILTIN_SOURCES) | set(_sources))


def get_source_spec(type_name: str) -> Any:
    """The :class:`SourceSpec` of a source type; ``KeyError`` listing allowed types."""
    if type_name not in _sources:
        ref = BUILTIN_SOURCES.get(type_name)
        if ref is None:
            raise KeyError(f"unknown source type {type_name!r}; known types: {', '.join(source_types())}")
        _sources[type_name] = _load(ref)
    return _sources[type_name]


class SourceSpec:
    """How one source type is configured and built: its settings model and a factory."""

    def __init__(self, settings_model: type[Any], factory: Callable[..., Any], record_kind: str) -> None:
        self.settings_model = settings_model
        self.factory = factory
        self.record_kind = record_kind
