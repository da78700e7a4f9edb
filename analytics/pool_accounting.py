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

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from typing import Protocol

from analytics.networks import NetworkIndex, PoolRange


class HolderLike(Protocol):
    @property
    def owner_kind(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def cluster(self) -> str | None: ...


API_FRONTEND_PREFIX = "k8s-apiserver"


def in_range(r: PoolRange, index: NetworkIndex, ip: str) -> bool:
    """Whether an address (text) is inside a configured range."""
    key = index.lookup(ip)[0]
    return key is not None and r.contains(key)


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


VIP_HOLDER_KINDS = frozenset({"service", "control-plane", "haproxy-frontend"})


def inferred_lb_vms(
    vip_holders: Mapping[str, Sequence[HolderLike]],
    neighbor_mac: Mapping[str, tuple[str, int]],
    t_ms: int,
    ttl_ms: int,
) -> dict[str, str]:
    """Addresses of HAProxy load-balancer VMs that no inventory lists, found in neighbour tables.

    Rule ``22H2-LB``: each workload cluster's HAProxy VM takes a node-pool address, but Kubernetes
    does not list it (it is not a node). The VM answers ARP for its cluster's VIPs, so an address
    whose MAC is the MAC a cluster's VIPs resolve to is that cluster's load-balancer VM. Returns
    address → cluster, for addresses that are not VIPs themselves, seen within ``ttl_ms`` of t.
    (A keepalived standby answers for no VIP and is not found this way.)
    """
    mac_cluster: dict[str, str] = {}
    for ip, hs in vip_holders.items():
        seen = neighbor_mac.get(ip)
        if seen is None or seen[1] < t_ms - ttl_ms:
            continue
        cluster = next((h.cluster for h in hs if h.owner_kind in VIP_HOLDER_KINDS and h.cluster), None)
        if cluster is not None:
            mac_cluster.setdefault(seen[0], cluster)
    out: dict[str, str] = {}
    for ip, (mac, ts) in neighbor_mac.items():
        if ip in vip_holders or ts < t_ms - ttl_ms:
            continue
        cluster = mac_cluster.get(mac)
        if cluster is not None:
            out[ip] = cluster
    return out


def node_pool_wire_only(
    in_range: Callable[[str], bool],
    held: Container[str],
    neighbor_mac: Mapping[str, tuple[str, int]],
    lb_vms: Mapping[str, str],
    t_ms: int,
    ttl_ms: int,
) -> dict[str, str]:
    """Node-pool addresses the hosts' neighbour tables saw within ``ttl_ms`` that no inventory lists.

    They are in use all the same (MOC handed them out; allocating one again is a duplicate IP): the
    HAProxy VMs (rule ``22H2-LB``, named when :func:`inferred_lb_vms` found them, a keepalived
    standby among the rest) and anything else answering ARP there. Address → who holds it.
    """
    out: dict[str, str] = {}
    for ip, (_mac, ts) in neighbor_mac.items():
        if ts < t_ms - ttl_ms or ip in held or not in_range(ip):
            continue
        cluster = lb_vms.get(ip)
        out[ip] = (
            f"HAProxy VM of {cluster} (answers for its VIPs)" if cluster else "seen on the wire, no inventory owner"
        )
    return out
