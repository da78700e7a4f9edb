"""How many addresses of one VIP range are used: observed holders plus the API-server VIPs the plan says exist.

Shared by the pool detector (:mod:`analytics.ip_pools`) and the capacity preflight
(:mod:`analytics.plan`), so an alert and a plan never disagree on "used".

Rule ``22H2-VIP-API`` (``analytics/ip_plan_rules.md``): every cluster's API server holds one VIP,
the management cluster's included. Inventory does not always show it (a cluster whose kubeconfig
is not polled, an API VIP seen only in neighbour tables), so a configured cluster whose API VIP is
not identified among the observed holders counts one *more* address — in addition to everything
observed, not as a floor under it: a floor (``max(observed, services + clusters)``) lets other
holders (stale frontends, misplaced VMs) hide missing API VIPs, which counted a site 3 short.

An API VIP is identified by an inventory ``control-plane`` holder of the cluster, or by an HAProxy
frontend of the cluster whose name starts with ``k8s-apiserver`` (the AKS-HCI load-balancer VM's
API-server frontend).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol


class HolderLike(Protocol):
    @property
    def owner_kind(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def cluster(self) -> str | None: ...


API_FRONTEND_PREFIX = "k8s-apiserver"


def api_vip_cluster(h: HolderLike) -> str | None:
    """The cluster whose API-server VIP this holder is, if it is one."""
    if h.owner_kind == "control-plane":
        return h.cluster or h.owner.split("/", 1)[0]
    if h.owner_kind == "haproxy-frontend" and h.cluster and h.owner.startswith(API_FRONTEND_PREFIX):
        return h.cluster
    return None


def api_vips_unobserved(clusters: Sequence[str], held: Iterable[Iterable[HolderLike]]) -> list[str]:
    """Configured clusters whose API-server VIP is not among the observed holders."""
    seen = {c for hs in held for h in hs if (c := api_vip_cluster(h)) is not None}
    return [c for c in clusters if c not in seen]


def vip_range_used(clusters: Sequence[str], held: Mapping[str, Sequence[HolderLike]]) -> tuple[int, list[str]]:
    """(used addresses, clusters counted by the plan rule) for a VIP range: observed + unobserved API VIPs."""
    missing = api_vips_unobserved(clusters, held.values())
    return len(held) + len(missing), missing
