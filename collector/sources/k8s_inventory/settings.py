"""Settings of the Kubernetes inventory source: ``[[sources]] type = "k8s_inventory"`` and its clusters.

Each cluster is reached through a kubeconfig (which carries its own server, CA and user) or
through ``api_url`` with the shared keys of :mod:`collector.settings`: ``bearer_token_file`` (a
file, re-read so projected ServiceAccount tokens rotate, or ``env:NAME``) and a ``tls`` table.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator

from collector.settings import Renamed, SecretRef
from collector.settings.deprecated import RenamedKeys
from collector.settings.tls import TlsTable
from collector.sources.base import SourceSettings

# ipaddresspools / l2advertisements: MetalLB's CRDs (metallb.io/v1beta1; AKS Arc's MetalLB extension)
Resource = Literal["services", "nodes", "pods", "ipaddresspools", "l2advertisements"]
DEFAULT_RESOURCES: tuple[Resource, ...] = ("services", "nodes")

_RENAMED = (
    Renamed("token_file", "bearer_token_file"),
    Renamed("ca_file", "tls.ca_file"),
    Renamed("insecure_skip_tls_verify", "tls.insecure_skip_verify"),
)


class ClusterSettings(RenamedKeys):
    """One ``[[sources.clusters]]`` table: a cluster, its cluster network and how to reach it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    renamed_keys = _RENAMED
    section = "sources.clusters"

    name: str = Field(min_length=1, description="cluster name (the `cluster` column)")
    network: str = Field(default="", description="AksHciClusterNetwork object the cluster uses")
    kubeconfig: Path | None = Field(default=None, description="kubeconfig file")
    context: str | None = Field(default=None, description="kubeconfig context (default: current)")
    api_url: str | None = Field(default=None, description="API server URL instead of a kubeconfig")
    bearer_token_file: SecretRef | None = Field(
        default=None, description="ServiceAccount token (with api_url): a file, re-read for rotation, or env:NAME"
    )
    tls: TlsTable = Field(default=None, description="TLS client settings (with api_url)")
    control_plane_endpoint: str | None = Field(
        default=None, description='API-server VIP to report; default: the host of the server URL; "" disables'
    )

    @field_validator("api_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http(s):// URL such as https://10.0.0.5:6443")
        return v.rstrip("/")

    @field_validator("control_plane_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v:
            ipaddress.ip_address(v.strip().strip("[]"))
        return v

    @model_validator(mode="after")
    def _one_way_in(self) -> ClusterSettings:
        if (self.kubeconfig is None) == (self.api_url is None):
            raise ValueError(f"cluster {self.name!r}: set exactly one of kubeconfig or api_url")
        if self.kubeconfig is not None and (self.bearer_token_file is not None or self.tls is not None):
            raise ValueError(
                f"cluster {self.name!r}: bearer_token_file and tls go with api_url; a kubeconfig carries its own"
            )
        if self.api_url is not None and self.context is not None:
            raise ValueError(f"cluster {self.name!r}: context goes with kubeconfig")
        return self


class K8sInventorySettings(SourceSettings):
    """``[[sources]] type = "k8s_inventory"``."""

    type: Literal["k8s_inventory"] = "k8s_inventory"
    clusters: list[ClusterSettings] = Field(min_length=1)
    resources: list[Resource] = Field(
        default_factory=lambda: list(DEFAULT_RESOURCES), min_length=1, description="what to list per cluster"
    )
    page_size: int = Field(default=500, ge=1, le=100_000, description="items per list page (limit)")
    watch: bool = Field(default=False, description="list + watch and push snapshots on change")
    watch_debounce: float = Field(default=2.0, ge=0, le=600, description="seconds to gather changes before a snapshot")
    watch_timeout: int = Field(
        default=300, ge=1, le=3600, description="server-side timeoutSeconds of one watch request"
    )
    lb_node_name_pattern: str | None = Field(
        default=None, description='regex that marks the HAProxy LB VM node by name; "" disables'
    )
    lb_node_label: str | None = Field(
        default=None, description='node label (key or key=value) that marks the LB VM; "" disables'
    )

    @field_validator("clusters")
    @classmethod
    def _unique_clusters(cls, v: list[ClusterSettings]) -> list[ClusterSettings]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"cluster names must be unique; repeated: {', '.join(dupes)}")
        return v

    @field_validator("resources")
    @classmethod
    def _unique_resources(cls, v: list[Resource]) -> list[Resource]:
        return list(dict.fromkeys(v))

    @field_validator("lb_node_name_pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return v
