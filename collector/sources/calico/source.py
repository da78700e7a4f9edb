"""Calico as a source: Felix on every node and calico-kube-controllers, one scraper for both.

Felix serves dataplane health (``felix_*``) on 9091 once ``prometheusMetricsEnabled`` is set in
FelixConfiguration; calico-kube-controllers serves pod IPAM utilisation (``ipam_*``) on 9094.
Flannel has no Prometheus metrics at all: pod CIDRs come from the Kubernetes inventory's
``Node.spec.podCIDR``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from collector.registry import SourceSpec
from collector.sources.prometheus.source import PrometheusScraper, PrometheusSettings


class CalicoSettings(PrometheusSettings):
    """``[[sources]] type = "calico"``: Felix targets (port 9091) and kube-controllers (9094)."""

    source_name: ClassVar[str | None] = "calico"

    type: str = "calico"
    targets: list[str] = Field(min_length=1, description="Felix targets (calico-node on each node)")
    port: int | None = Field(default=9091, ge=1, le=65535, description="Felix metrics port")
    kube_controllers_targets: list[str] = Field(
        default_factory=list, description="calico-kube-controllers targets (IPAM metrics)"
    )
    kube_controllers_port: int = Field(default=9094, ge=1, le=65535, description="calico-kube-controllers metrics port")

    def resolved(self) -> list[tuple[str, str, str]]:
        felix = super().resolved()
        kc = [(t, *self._resolve(t, self.kube_controllers_port)) for t in self.kube_controllers_targets]
        return felix + kc


SPEC = SourceSpec(CalicoSettings, PrometheusScraper, "prometheus")
