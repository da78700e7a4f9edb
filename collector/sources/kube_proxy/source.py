"""kube-proxy as a source: the shared Prometheus scraper with kube-proxy's defaults.

kube-proxy binds its metrics to 127.0.0.1:10249 unless ``--metrics-bind-address`` (or
``metricsBindAddress`` in KubeProxyConfiguration) says otherwise, so scraping from outside the
node needs that set to ``0.0.0.0:10249``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from collector.registry import SourceSpec
from collector.sources.prometheus.source import PrometheusScraper, PrometheusSettings


class KubeProxySettings(PrometheusSettings):
    """``[[sources]] type = "kube_proxy"``: kube-proxy on every node (default port 10249)."""

    source_name: ClassVar[str | None] = "kube-proxy"

    type: str = "kube_proxy"
    port: int | None = Field(default=10249, ge=1, le=65535, description="kube-proxy metrics port")


SPEC = SourceSpec(KubeProxySettings, PrometheusScraper, "prometheus")
