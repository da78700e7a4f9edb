"""Cluster networks as analytics reads them, compiled into integer address ranges.

The configuration model lives in ``collector.config`` (``NetworkSettings``); analytics depends
only on the attributes listed in :class:`NetworkLike`, so any object with them works (tests use a
plain dataclass). :class:`NetworkPlan` turns one network into integer ranges and the IP plan of
AKS on Azure Local (domain-reference §5.2):

* VIP pool: one VIP per cluster API server (management cluster included) and one per Service of
  type LoadBalancer;
* node pool: one IP per node VM and per load-balancer (HAProxy) VM, plus the IPs rolling upgrades
  need — 22H2: 2 for the management cluster's update operations and 5 per workload cluster;
  23H2 (AKS Arc): 1 per cluster.

AKS Arc (23H2+) networks may also carry ``control_plane_ips`` (cluster → IP, rule ``23H2-CP``) and
``metallb_pools`` (per cluster, rule ``23H2-LB``); they are read with ``getattr`` so a network
object without them still works. MetalLB address ranges become load-balancer ranges named
``lb:<cluster>/<pool>:<range>`` (owned by that cluster); control-plane IPs become one-address
``fixed`` ranges that only the overlap checks read (they are not pools).

MetalLB ranges are also *declared* by the clusters themselves: the ``IPAddressPool`` CRDs the
Kubernetes inventory reads (``k8s.metallb_pool_range_info``). :func:`declare_metallb_range` adds
one to a compiled plan at run time under the same name a configured pool would have, so a pool
both configured and listed is one range, and a pool only the cluster knows is checked all the same.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from analytics.settings import PoolSettings

IpLike = str | ipaddress.IPv4Address | ipaddress.IPv6Address


class NetworkLike(Protocol):
    """The attributes of ``collector.config.NetworkSettings`` that analytics reads."""

    @property
    def name(self) -> str: ...
    @property
    def vip_pool_start(self) -> IpLike: ...
    @property
    def vip_pool_end(self) -> IpLike: ...
    @property
    def k8s_node_ip_pool_start(self) -> IpLike | None: ...
    @property
    def k8s_node_ip_pool_end(self) -> IpLike | None: ...
    @property
    def ip_address_prefix(self) -> str | ipaddress.IPv4Network | ipaddress.IPv6Network | None: ...
    @property
    def clusters(self) -> Sequence[str]: ...
    @property
    def management_cluster(self) -> str | None: ...
    @property
    def lb_ranges(self) -> Sequence[str]: ...
    @property
    def vip_reserve(self) -> int | None: ...
    @property
    def node_upgrade_reserve(self) -> int | None: ...


def ip_key(ip: IpLike) -> tuple[int, int]:
    """(version, integer) of an address; raises ``ValueError`` naming the bad text."""
    try:
        a = ipaddress.ip_address(str(ip).strip().strip("[]"))
    except ValueError as exc:
        raise ValueError(f"not an IP address: {ip!r}") from exc
    return a.version, int(a)


def parse_range(spec: str) -> tuple[int, int, int]:
    """``"10.0.0.10-10.0.0.20"`` or a CIDR → (version, first, last), inclusive."""
    text = spec.strip()
    if "-" in text:
        a, b = (p.strip() for p in text.split("-", 1))
        va, ia = ip_key(a)
        vb, ib = ip_key(b)
        if va != vb:
            raise ValueError(f"range mixes IPv4 and IPv6: {spec!r}")
        if ib < ia:
            raise ValueError(f"range end before start: {spec!r}")
        return va, ia, ib
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ValueError(f"not a CIDR or 'a-b' range: {spec!r}") from exc
    return net.version, int(net.network_address), int(net.broadcast_address)


def fmt_ip(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


@dataclass(frozen=True, slots=True)
class PoolRange:
    """One configured address range of one network."""

    network: str
    pool: str  # "vip", "node", "lb:<spec>"
    kind: str  # "vip", "node", "lb"
    version: int
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def contains(self, key: tuple[int, int]) -> bool:
        return key[0] == self.version and self.first <= key[1] <= self.last

    def overlaps(self, other: PoolRange) -> tuple[int, int] | None:
        if self.version != other.version:
            return None
        lo, hi = max(self.first, other.first), min(self.last, other.last)
        return (lo, hi) if lo <= hi else None

    @property
    def text(self) -> str:
        return f"{fmt_ip(self.version, self.first)}-{fmt_ip(self.version, self.last)}"


@dataclass(slots=True)
class NetworkPlan:
    """One network compiled for fast membership tests and the IP-plan arithmetic."""

    name: str
    vip: PoolRange
    node: PoolRange | None
    lbs: list[PoolRange]
    prefix: PoolRange | None
    clusters: list[str]
    management_cluster: str | None
    vip_reserve: int
    node_reserve: int
    node_reserve_breakdown: dict[str, int] = field(default_factory=dict)
    fixed: list[PoolRange] = field(default_factory=list)  # 23H2 control-plane IPs (kind "control-plane")
    lb_owner: dict[str, str] = field(default_factory=dict)  # lb pool name → owning cluster (MetalLB pools)
    lb_manual: set[str] = field(default_factory=set)  # MetalLB ranges with autoAssign false (asked-for IPs only)

    @property
    def ranges(self) -> list[PoolRange]:
        return [self.vip, *([self.node] if self.node else []), *self.lbs]

    @property
    def all_clusters(self) -> list[str]:
        """Workload clusters plus the management cluster, each once."""
        out = list(dict.fromkeys(self.clusters))
        if self.management_cluster and self.management_cluster not in out:
            out.append(self.management_cluster)
        return out

    @property
    def workload_clusters(self) -> list[str]:
        return [c for c in dict.fromkeys(self.clusters) if c != self.management_cluster]

    def covers(self, key: tuple[int, int]) -> bool:
        """Whether an address belongs to this network (any pool or its prefix)."""
        return (
            any(r.contains(key) for r in self.ranges)
            or any(r.contains(key) for r in self.fixed)
            or bool(self.prefix and self.prefix.contains(key))
        )


def metallb_range_name(cluster: str, pool: str, spec: str) -> str:
    """The pool name of one ``spec.addresses`` entry of a cluster's MetalLB pool."""
    return f"lb:{cluster}/{pool}:{spec.strip()}"


def metallb_pool_of(range_name: str) -> tuple[str, str] | None:
    """(cluster, MetalLB pool name) of a range named by :func:`metallb_range_name`, else None.

    Kubernetes object and cluster names cannot hold ``/`` or ``:``, so the split is unambiguous."""
    if not range_name.startswith("lb:") or "/" not in range_name:
        return None
    cluster, rest = range_name[3:].split("/", 1)
    return cluster, rest.split(":", 1)[0]


def declare_metallb_range(
    plan: NetworkPlan, cluster: str, pool: str, spec: str, *, auto_assign: bool = True
) -> PoolRange | None:
    """Add a MetalLB range a cluster declares (its IPAddressPool CRD) to a compiled plan.

    Returns the new range, or None when the plan already has it (same name, or the same addresses
    under the same cluster and pool written another way: ``10.0.0.0/29`` vs ``10.0.0.0-10.0.0.7``).
    ``auto_assign=False`` (the CRD's ``spec.autoAssign``) marks a range MetalLB hands out only to a
    Service that asks for an address in it: ``hciwatch plan`` does not place new Services there.
    Raises ``ValueError`` on an entry that is not a CIDR or range.
    """
    name = metallb_range_name(cluster, pool, spec)
    ver, first, last = parse_range(spec)
    for r in plan.lbs:
        if r.pool == name or (
            metallb_pool_of(r.pool) == (cluster, pool) and (r.version, r.first, r.last) == (ver, first, last)
        ):
            if not auto_assign:
                plan.lb_manual.add(r.pool)  # the cluster's own word on autoAssign
            return None
    r = PoolRange(plan.name, name, "lb", ver, first, last)
    plan.lbs.append(r)
    plan.lb_owner[name] = cluster
    if not auto_assign:
        plan.lb_manual.add(name)
    return r


def compile_network(net: NetworkLike, pools: PoolSettings) -> NetworkPlan:
    """Build the plan; raises ``ValueError`` naming the network and the bad value."""
    name = str(net.name)
    try:
        v1, a = ip_key(net.vip_pool_start)
        v2, b = ip_key(net.vip_pool_end)
        if v1 != v2 or b < a:
            raise ValueError(f"vip pool {net.vip_pool_start}-{net.vip_pool_end} is not a range")
        vip = PoolRange(name, "vip", "vip", v1, a, b)
        node = None
        if net.k8s_node_ip_pool_start is not None and net.k8s_node_ip_pool_end is not None:
            n1, c = ip_key(net.k8s_node_ip_pool_start)
            n2, d = ip_key(net.k8s_node_ip_pool_end)
            if n1 != n2 or d < c:
                raise ValueError(f"node pool {net.k8s_node_ip_pool_start}-{net.k8s_node_ip_pool_end} is not a range")
            node = PoolRange(name, "node", "node", n1, c, d)
        lbs = []
        for spec in net.lb_ranges or ():
            ver, f, last = parse_range(str(spec))
            lbs.append(PoolRange(name, f"lb:{str(spec).strip()}", "lb", ver, f, last))
        lb_owner: dict[str, str] = {}
        for mp in getattr(net, "metallb_pools", None) or ():
            for spec in mp.addresses:
                ver, f, last = parse_range(str(spec))
                pool_name = metallb_range_name(str(mp.cluster), str(mp.name), str(spec))
                lbs.append(PoolRange(name, pool_name, "lb", ver, f, last))
                lb_owner[pool_name] = str(mp.cluster)
        fixed = []
        for cluster, ip in (getattr(net, "control_plane_ips", None) or {}).items():
            ver, f = ip_key(ip)
            fixed.append(PoolRange(name, f"control-plane:{cluster}", "control-plane", ver, f, f))
        prefix = None
        if net.ip_address_prefix is not None:
            ver, f, last = parse_range(str(net.ip_address_prefix))
            prefix = PoolRange(name, "prefix", "prefix", ver, f, last)
    except ValueError as exc:
        raise ValueError(f"network {name!r}: {exc}") from exc

    clusters = [str(c) for c in (net.clusters or ())]
    mgmt = str(net.management_cluster) if net.management_cluster else None
    plan = NetworkPlan(name, vip, node, lbs, prefix, clusters, mgmt, 0, 0, fixed=fixed, lb_owner=lb_owner)
    plan.vip_reserve = pools.vip_reserve if net.vip_reserve is None else int(net.vip_reserve)
    breakdown: dict[str, int] = {}
    if net.node_upgrade_reserve is not None:
        breakdown["configured"] = int(net.node_upgrade_reserve)
    elif pools.ip_plan == "22h2":
        if mgmt:
            breakdown["management_cluster_update_ips"] = pools.management_update_ips
        n = len(plan.workload_clusters)
        if n:
            breakdown[f"workload_cluster_update_ips ({n} x {pools.workload_update_ips})"] = (
                n * pools.workload_update_ips
            )
    else:
        n = len(plan.all_clusters)
        if n:
            breakdown[f"rolling_upgrade_ips ({n} x {pools.arc_upgrade_ips_per_cluster})"] = (
                n * pools.arc_upgrade_ips_per_cluster
            )
    plan.node_reserve = sum(breakdown.values())
    plan.node_reserve_breakdown = breakdown
    return plan


def compile_networks(nets: Iterable[NetworkLike], pools: PoolSettings) -> list[NetworkPlan]:
    plans = [compile_network(n, pools) for n in nets]
    names = [p.name for p in plans]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"network names must be unique: {', '.join(dup)}")
    return plans


class NetworkIndex:
    """Answers 'which network / which pool is this address in' and 'which network is this cluster'."""

    def __init__(self, plans: Sequence[NetworkPlan]) -> None:
        self.plans = list(plans)
        self.by_name = {p.name: p for p in self.plans}
        self.cluster_net: dict[str, str] = {}
        for p in self.plans:
            for c in p.all_clusters:
                self.cluster_net.setdefault(c, p.name)
        self._cache: dict[str, tuple[tuple[int, int] | None, list[PoolRange], str | None]] = {}
        self.epoch = 0  # bumps at every invalidate: consumers' own caches of lookups key on it

    def invalidate(self) -> None:
        """Forget cached lookups (a plan gained a range at run time)."""
        self._cache.clear()
        self.epoch += 1

    def lookup(self, ip: str) -> tuple[tuple[int, int] | None, list[PoolRange], str | None]:
        """(key, pools containing the address, network whose ranges or prefix cover it)."""
        hit = self._cache.get(ip)
        if hit is not None:
            return hit
        try:
            key: tuple[int, int] | None = ip_key(ip)
        except ValueError:
            key = None
        pools: list[PoolRange] = []
        net: str | None = None
        if key is not None:
            for p in self.plans:
                inside = [r for r in p.ranges if r.contains(key)]
                pools.extend(inside)
                if net is None and (inside or (p.prefix and p.prefix.contains(key))):
                    net = p.name
        if len(self._cache) > 200_000:
            self._cache.clear()
        res = (key, pools, net)
        self._cache[ip] = res
        return res

    def resolve_network(self, ip: str, network: str | None, cluster: str | None) -> str | None:
        """The network an observation belongs to: its own label, its cluster's, or its address's."""
        if network:
            return network
        if cluster and cluster in self.cluster_net:
            return self.cluster_net[cluster]
        return self.lookup(ip)[2]
