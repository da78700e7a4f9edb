"""windows_exporter as a source: the shared Prometheus scraper with windows_exporter's defaults.

Everything a host's exporter serves is reported with ``source = "windows"`` (including its
``go_*``/``process_*`` self-metrics), and its NIC address info becomes IP observations in the
parser.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from collector.registry import SourceSpec
from collector.sources.prometheus.source import PrometheusScraper, PrometheusSettings


class WindowsSettings(PrometheusSettings):
    """``[[sources]] type = "windows"``: windows_exporter on every host (default port 9182)."""

    source_name: ClassVar[str | None] = "windows"

    type: str = "windows"
    port: int | None = Field(default=9182, ge=1, le=65535, description="windows_exporter port")


SPEC = SourceSpec(WindowsSettings, PrometheusScraper, "prometheus")
