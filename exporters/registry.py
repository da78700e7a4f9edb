"""Sink type → settings model and factory, the way :mod:`collector.registry` registers sources.

Built-in factories are ``"module:attribute"`` strings imported on first use, so validating a
configuration never loads a sink's SDK (the OpenTelemetry gRPC stack, the Azure exporter), and
one sink that cannot be imported does not stop the others. Settings models live in
:mod:`exporters.settings` (pydantic only, cheap to import). Registering a type twice is an error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from exporters.base import Exporter
from exporters.settings import (
    AzureMonitorSettings,
    JsonlSettings,
    MemorySettings,
    MqttSettings,
    OtlpSettings,
    SinkSettings,
    WebhookSettings,
)


@dataclass(frozen=True)
class SinkSpec:
    """How one sink type is configured and built: its settings model and a factory (or its reference)."""

    settings_model: type[SinkSettings]
    factory: Callable[[Any], Exporter] | str


BUILTIN_SINKS: dict[str, SinkSpec] = {
    "otlp": SinkSpec(OtlpSettings, "exporters.otlp:OtlpExporter"),
    "azure_monitor": SinkSpec(AzureMonitorSettings, "exporters.azure_monitor:AzureMonitorExporter"),
    "webhook": SinkSpec(WebhookSettings, "exporters.webhook:WebhookExporter"),
    "mqtt": SinkSpec(MqttSettings, "exporters.mqtt:MqttExporter"),
    "jsonl": SinkSpec(JsonlSettings, "exporters.jsonl:JsonlExporter.from_settings"),
    "memory": SinkSpec(MemorySettings, "exporters.memory:MemoryExporter.from_settings"),
}

_sinks: dict[str, SinkSpec] = {}


def _load(ref: str) -> Callable[[Any], Exporter]:
    module, _, path = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def register_sink(type_name: str, spec: SinkSpec) -> None:
    """Add a sink type; a type can be registered once."""
    if type_name in _sinks or type_name in BUILTIN_SINKS:
        raise ValueError(f"sink type {type_name!r} is already registered")
    _sinks[type_name] = spec


def sink_types() -> list[str]:
    """Every configurable sink type."""
    return sorted(set(BUILTIN_SINKS) | set(_sinks))


def get_sink_spec(type_name: str) -> SinkSpec:
    """The :class:`SinkSpec` of a sink type; ``KeyError`` listing the allowed types."""
    spec = _sinks.get(type_name) or BUILTIN_SINKS.get(type_name)
    if spec is None:
        raise KeyError(f"unknown sink type {type_name!r}; known types: {', '.join(sink_types())}")
    return spec


def sink_settings_models() -> dict[str, type[SinkSettings]]:
    """``[[exporters]] type`` → its settings model (for the config loader)."""
    return {t: get_sink_spec(t).settings_model for t in sink_types()}


def parse_sink_settings(data: dict[str, Any]) -> SinkSettings:
    """Validate one ``[[exporters]]`` table (raises ``pydantic.ValidationError``, also for an unknown type)."""
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in sink_types():
        expected = ", ".join(repr(t) for t in sink_types())
        error: InitErrorDetails = {
            "type": PydanticCustomError("sink_type", "unknown sink type; allowed: {expected}", {"expected": expected}),
            "loc": ("type",),
            "input": kind,
        }
        raise ValidationError.from_exception_data("SinkSettings", [error])
    return get_sink_spec(str(kind)).settings_model.model_validate(data)


def build_exporter(settings: SinkSettings) -> Exporter:
    """Make the exporter for one validated sink (secrets and TLS files are read here, at start-up)."""
    spec = get_sink_spec(settings.type)
    factory = _load(spec.factory) if isinstance(spec.factory, str) else spec.factory
    return factory(settings)
