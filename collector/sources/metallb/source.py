"""MetalLB as a source: the shared Prometheus scraper with MetalLB's defaults.

The controller exposes the address-pool allocator gauges (``metallb_allocator_*``), the speakers
the BGP/L2 announcement metrics; both listen on 7472 unless the chart's ``prometheus.metricsPort``
is changed (behind kube-rbac-proxy it is HTTPS with a service-account bearer token instead).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from collector.registry import SourceSpec
from collector.sources.prometheus.source import PrometheusScraper, PrometheusSettings


class MetalLBSettings(PrometheusSettings):
    """``[[sources]] type = "metallb"``: MetalLB controller and speakers (default port 7472)."""

    source_name: ClassVar[str | None] = "metallb"

    type: str = "metallb"
    port: int | None = Field(default=7472, ge=1, le=65535, description="MetalLB metrics port")


SPEC = SourceSpec(MetalLBSettings, PrometheusScraper, "prometheus")
