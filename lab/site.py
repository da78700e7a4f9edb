"""The simulated site's static plan: HCI hosts, their NICs, one AKS cluster network, its clusters.

The defaults follow the AKS-on-Azure-Local IP plan (domain reference §5): one
``AksHciClusterNetwork``-style object (VIP pool, k8s node IP pool, prefix) shared by the
management cluster and two workload clusters. API-server VIPs and LoadBalancer service IPs come
from the VIP pool; control-plane, worker and HAProxy load-balancer VMs take node-pool IPs. The
HCI hosts' management vNICs sit in the same /24 (outside both pools), so the hosts' neighbour
tables see every VIP and VM address; storage traffic runs over two RDMA adapters on the Network
ATC default storage subnets (VLAN 711/712 → 10.71.1.0/24 and 10.71.2.0/24).

Everything here is validated at construction so a bad plan fails where it was written, naming
the field and the rule it breaks.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


def pdh_instance(description: str) -> str:
    """The PDH instance name of an adapter (``(``→``[``, ``)``→``]``, ``#``→``_``).

    windows_exporter applies the same replacer to its ``nic`` label, so RDMA Activity, Network
    Interface and nic_info series of one adapter carry the same string.
    """
    return description.replace("(", "[").replace(")", "]").replace("#", "_")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A Kubernetes Service of type LoadBalancer that exists when the scenario starts.

    ``weight`` scales its client traffic (sessions per second through HAProxy).
    """

    namespace: str
    name: str
    ports: tuple[int, ...]
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.namespace or not self.name:
            raise ValueError("ServiceSpec needs a namespace and a name")
        if not self.ports or any(not 0 < p < 65536 for p in self.ports):
            raise ValueError(f"ServiceSpec {self.namespace}/{self.name}: ports must be 1..65535, got {self.ports!r}")


@dataclass(frozen=True, slots=True)
class MetalLbPoolSpec:
    """One MetalLB ``IPAddressPool`` of an AKS Arc (23H2+) cluster (``spec.addresses`` CIDRs or ranges).

    ``auto_assign=False`` pools hand out only addresses a Service asks for by name (MetalLB's
    ``metallb.universe.tf/loadBalancerIPs`` annotation); ``in_config=False`` pools exist on the
    cluster (its CRDs list them) but not in hciwatch's configuration: an operator added them by hand.
    """

    name: str
    addresses: tuple[str, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    in_config: bool = True

    def __post_init__(self) -> None:
        if not self.name or not self.addresses:
            raise ValueError("MetalLbPoolSpec needs a name and addresses")
        for a in self.addresses:
            try:
                _spec_range(a)
            except ValueError as exc:
                raise ValueError(f"MetalLB pool {self.name}: {exc}") from None

    def ips(self) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """Every address MetalLB may hand out from this pool, lowest first (avoidBuggyIPs skips .0/.255)."""
        out = [ip for a in self.addresses for ip in _spec_range(a)]
        if self.avoid_buggy_ips:
            out = [ip for ip in out if ip.version != 4 or int(ip) & 0xFF not in (0, 255)]
        return out


def _spec_range(spec: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """``a-b`` or a CIDR (every address of it, as MetalLB counts them) → the addresses."""
    if "-" in spec:
        a, b = (x.strip() for x in spec.split("-", 1))
        out = _range(a, b)
        if not out:
            raise ValueError(f"range {spec!r} ends before it starts")
        return out
    net = ipaddress.ip_network(spec.strip(), strict=True)
    return [net.network_address + i for i in range(net.num_addresses)]


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """One AKS cluster on the shared cluster network.

    The management cluster (AKS host / KVA) has one control-plane VM whose API VIP it answers
    itself; a workload cluster has control-plane and worker VMs plus ``lb_vms`` HAProxy VMs
    (2 = keepalived active/standby) that own its API VIP and LoadBalancer service VIPs.

    An AKS Arc (23H2+) cluster has no HAProxy VM: ``metallb_pools`` (the MetalLB Arc extension's
    IPAddressPools) hand out its LoadBalancer IPs, a speaker on one of its workers answers ARP for
    them, and kube-vip on its first control-plane VM answers for its control-plane IP.
    """

    name: str
    management: bool = False
    control_plane_nodes: int = 1
    worker_nodes: int = 0
    lb_vms: int = 0
    services: tuple[ServiceSpec, ...] = ()
    metallb_pools: tuple[MetalLbPoolSpec, ...] = ()

    @property
    def arc(self) -> bool:
        """An AKS Arc (MetalLB) cluster rather than an AKS-HCI (HAProxy) one."""
        return bool(self.metallb_pools)

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower():
            raise ValueError(f"cluster name must be non-empty lower case, got {self.name!r}")
        if self.control_plane_nodes < 1:
            raise ValueError(f"cluster {self.name}: control_plane_nodes must be >= 1")
        if self.management and (self.worker_nodes or self.lb_vms or self.services):
            raise ValueError(
                f"cluster {self.name}: the management cluster has no workers, "
                "load-balancer VMs or LoadBalancer services"
            )
        if self.metallb_pools and (self.management or self.lb_vms):
            raise ValueError(
                f"cluster {self.name}: a MetalLB (AKS Arc) cluster has no HAProxy VM and is no management cluster"
            )
        if not self.management and (self.worker_nodes < 1 or (self.lb_vms < 1 and not self.metallb_pools)):
            raise ValueError(
                f"workload cluster {self.name}: needs worker_nodes >= 1 and lb_vms >= 1 (or metallb_pools)"
            )
        if len({p.name for p in self.metallb_pools}) != len(self.metallb_pools):
            raise ValueError(f"cluster {self.name}: MetalLB pool names must be unique")


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    """The cluster-network object (keys mirror ``New-AksHciClusterNetwork``)."""

    name: str = "akshci-vnet"
    ip_address_prefix: str = "10.40.0.0/24"
    gateway: str = "10.40.0.1"
    k8s_node_ip_pool_start: str = "10.40.0.20"
    k8s_node_ip_pool_end: str = "10.40.0.59"
    vip_pool_start: str = "10.40.0.200"
    vip_pool_end: str = "10.40.0.231"

    def __post_init__(self) -> None:
        try:
            net = ipaddress.ip_network(self.ip_address_prefix, strict=True)
        except ValueError as exc:
            raise ValueError(f"network {self.name}: ip_address_prefix: {exc}") from None
        for key in ("gateway", "k8s_node_ip_pool_start", "k8s_node_ip_pool_end", "vip_pool_start", "vip_pool_end"):
            value = getattr(self, key)
            try:
                ip = ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"network {self.name}: {key}: not an IP address: {value!r}") from None
            if ip not in net:
                raise ValueError(f"network {self.name}: {key} {value} is outside {self.ip_address_prefix}")

        def n(ip: str) -> int:
            return int(ipaddress.ip_address(ip))

        for lo, hi in (
            (self.k8s_node_ip_pool_start, self.k8s_node_ip_pool_end),
            (self.vip_pool_start, self.vip_pool_end),
        ):
            if n(lo) > n(hi):
                raise ValueError(f"network {self.name}: pool {lo}-{hi} ends before it starts")
        if set(self.node_pool()) & set(self.vip_pool()):
            raise ValueError(f"network {self.name}: the VIP pool overlaps the k8s node IP pool")
        gw = ipaddress.ip_address(self.gateway)
        if gw in self.node_pool() or gw in self.vip_pool():
            raise ValueError(f"network {self.name}: the gateway {self.gateway} is inside a pool")

    def node_pool(self) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return _range(self.k8s_node_ip_pool_start, self.k8s_node_ip_pool_end)

    def vip_pool(self) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return _range(self.vip_pool_start, self.vip_pool_end)


def _range(start: str, end: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    a, b = ipaddress.ip_address(start), ipaddress.ip_address(end)
    return [ipaddress.ip_address(int(a) + i) for i in range(int(b) - int(a) + 1)]


MAX_CLUSTER_NODES = 16  # machines per Azure Local cluster, at most

DEFAULT_CLUSTERS: tuple[ClusterSpec, ...] = (
    ClusterSpec("aks-mgmt", management=True),
    ClusterSpec(
        "workload-a",
        control_plane_nodes=3,
        worker_nodes=3,
        lb_vms=1,
        services=(
            ServiceSpec("web", "storefront", (80, 443), weight=4.0),
            ServiceSpec("shop", "checkout-api", (8080,), weight=1.5),
            ServiceSpec("monitoring", "grafana", (3000,), weight=0.3),
        ),
    ),
    ClusterSpec(
        "workload-b",
        control_plane_nodes=1,
        worker_nodes=2,
        lb_vms=2,
        services=(
            ServiceSpec("ingress-nginx", "ingress-nginx-controller", (80, 443), weight=3.0),
            ServiceSpec("data", "kafka-external", (9094,), weight=0.8),
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """The simulated Azure Local site (defaults = the demo site).

    ``pause_baseline`` is each host's normal rate of received PFC pause frames per second on the
    lossless priority at average load (lossless classes always see a few); when empty, a
    per-host spread of 0.15–3 /s is used.

    ``ip_plan = "23h2"`` makes it an AKS Arc on Azure Local site (domain reference §5.2, 23H2+):
    the network's k8s node IP pool is the Arc VM logical network's IP pool (node VMs, one upgrade
    IP per cluster), its VIP pool holds the clusters' control-plane IPs (same subnet, outside the IP
    pool), every cluster is a MetalLB cluster with its own address pools (same subnet, outside the
    IP pool) and there is no management cluster (the Arc Resource Bridge is not an AKS cluster).

    ``cluster_nodes`` is the most machines one Azure Local cluster of the site holds (Azure Local
    supports 1–16): the hosts, in order, are split into the fewest clusters of at most that many
    nodes, as evenly as possible (50 hosts → 12, 13, 12, 13). A host's SMB storage traffic, its
    RDMA connections and the storage and management neighbours it sees stay inside its cluster,
    as on a real site: a 500-host site is 32 clusters, not one 500-node storage mesh. A site of at
    most ``cluster_nodes`` hosts is one cluster, as it always was.
    """

    name: str = "hci-1"
    hosts: tuple[str, ...] = ("hci-node-01", "hci-node-02", "hci-node-03", "hci-node-04")
    host_ip_start: str = "10.40.0.11"
    management_nic: str = "Hyper-V Virtual Ethernet Adapter"
    management_alias: str = "vManagement(mgmt_compute)"
    rdma_adapters: tuple[str, ...] = ("Mellanox ConnectX-6 Dx Adapter", "Mellanox ConnectX-6 Dx Adapter #2")
    rdma_aliases: tuple[str, ...] = ("SLOT 3 Port 1", "SLOT 3 Port 2")
    storage_subnets: tuple[str, ...] = ("10.71.1.0/24", "10.71.2.0/24")
    smb_share: str = "ClusterStorage$"
    pfc_priority: int = 3
    utc_offset_hours: float = 1.0
    pause_baseline: tuple[float, ...] = ()
    network: NetworkSpec = field(default_factory=NetworkSpec)
    clusters: tuple[ClusterSpec, ...] = DEFAULT_CLUSTERS
    ip_plan: str = "22h2"
    cluster_nodes: int = MAX_CLUSTER_NODES

    def __post_init__(self) -> None:
        if not 1 <= self.cluster_nodes <= MAX_CLUSTER_NODES:
            raise ValueError(
                f"site {self.name}: cluster_nodes must be 1..{MAX_CLUSTER_NODES} "
                f"(machines per Azure Local cluster), got {self.cluster_nodes}"
            )
        if self.ip_plan not in ("22h2", "23h2"):
            raise ValueError(f"site {self.name}: ip_plan must be 22h2 or 23h2, got {self.ip_plan!r}")
        if len(self.hosts) < 2 or len(set(self.hosts)) != len(self.hosts):
            raise ValueError(f"site {self.name}: needs at least 2 distinct hosts, got {self.hosts!r}")
        if (
            len(self.rdma_adapters) < 1
            or len(self.rdma_adapters) != len(self.rdma_aliases)
            or len(self.rdma_adapters) != len(self.storage_subnets)
        ):
            raise ValueError(
                f"site {self.name}: rdma_adapters, rdma_aliases and storage_subnets must be "
                "non-empty and of equal length"
            )
        if not 0 <= self.pfc_priority <= 7:
            raise ValueError(f"site {self.name}: pfc_priority must be 0..7, got {self.pfc_priority}")
        if self.pause_baseline and len(self.pause_baseline) != len(self.hosts):
            raise ValueError(
                f"site {self.name}: pause_baseline needs one rate per host "
                f"({len(self.hosts)}), got {len(self.pause_baseline)}"
            )
        names = [c.name for c in self.clusters]
        if len(set(names)) != len(names):
            raise ValueError(f"site {self.name}: duplicate cluster names in {names}")
        if self.ip_plan == "22h2" and sum(c.management for c in self.clusters) != 1:
            raise ValueError(f"site {self.name}: exactly one cluster must be the management cluster")
        net = ipaddress.ip_network(self.network.ip_address_prefix)
        pools = set(self.network.node_pool()) | set(self.network.vip_pool())
        if self.ip_plan == "23h2":
            self._check_arc(net)
        for ip in self.host_ips():
            if ipaddress.ip_address(ip) not in net or ipaddress.ip_address(ip) in pools:
                raise ValueError(
                    f"site {self.name}: host IP {ip} must be inside "
                    f"{self.network.ip_address_prefix} and outside both pools"
                )
        for subnet in self.storage_subnets:
            if ipaddress.ip_network(subnet).num_addresses < len(self.hosts) + 12:
                raise ValueError(f"site {self.name}: storage subnet {subnet} is too small")
        nodes = sum(c.control_plane_nodes + c.worker_nodes + c.lb_vms for c in self.clusters)
        if nodes > len(self.network.node_pool()):
            raise ValueError(
                f"site {self.name}: {nodes} VMs need node IPs but the k8s node IP pool has "
                f"{len(self.network.node_pool())}"
            )
        vips = len(self.clusters) + sum(len(c.services) for c in self.clusters if not c.arc)
        if vips > len(self.network.vip_pool()):
            raise ValueError(
                f"site {self.name}: {vips} VIPs needed but the VIP pool has {len(self.network.vip_pool())}"
            )

    def _check_arc(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
        """23H2 rules: no management cluster, MetalLB clusters only, their pools in the subnet outside
        the IP pool (§5.2; overlapping pools across clusters are allowed: scenarios need them)."""
        if any(c.management for c in self.clusters):
            raise ValueError(f"site {self.name}: a 23h2 site has no AKS management cluster")
        node_pool = set(self.network.node_pool())
        for c in self.clusters:
            if not c.arc:
                raise ValueError(f"site {self.name}: cluster {c.name} needs metallb_pools on a 23h2 site")
            for p in c.metallb_pools:
                for ip in p.ips():
                    if ip not in net or ip in node_pool:
                        raise ValueError(
                            f"site {self.name}: MetalLB pool {c.name}/{p.name} address {ip} must be inside "
                            f"{self.network.ip_address_prefix} and outside the logical network's IP pool"
                        )
            auto = [ip for p in c.metallb_pools if p.auto_assign for ip in p.ips()]
            if len(set(auto)) < len(c.services):
                raise ValueError(f"site {self.name}: cluster {c.name} has more services than MetalLB addresses")

    @property
    def management(self) -> ClusterSpec | None:
        """The management cluster (None on a 23h2 site)."""
        return next((c for c in self.clusters if c.management), None)

    def host_ips(self) -> list[str]:
        first = int(ipaddress.ip_address(self.host_ip_start))
        return [str(ipaddress.ip_address(first + i)) for i in range(len(self.hosts))]

    def hci_clusters(self) -> list[range]:
        """The site's Azure Local clusters as ranges of host indexes, in host order (see ``cluster_nodes``)."""
        n = len(self.hosts)
        k = -(-n // self.cluster_nodes)
        return [range(i * n // k, (i + 1) * n // k) for i in range(k)]

    def cluster_peers(self, host_index: int) -> range:
        """The host indexes of ``host_index``'s Azure Local cluster (itself included)."""
        for c in self.hci_clusters():
            if host_index in c:
                return c
        raise IndexError(f"site {self.name} has no host {host_index}")

    def storage_ip(self, host_index: int, adapter_index: int) -> str:
        net = ipaddress.ip_network(self.storage_subnets[adapter_index])
        return str(net.network_address + 11 + host_index)

    def cluster(self, name: str) -> ClusterSpec:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(f"no cluster named {name!r} (clusters: {', '.join(c.name for c in self.clusters)})")

    @property
    def management_cluster(self) -> ClusterSpec:
        return next(c for c in self.clusters if c.management)

    @property
    def adapter_instances(self) -> tuple[str, ...]:
        return tuple(pdh_instance(a) for a in self.rdma_adapters)


# An AKS Arc on Azure Local (23H2+) site (domain reference §5.2, 23H2 rules): three hosts, one Arc VM
# logical network 10.60.0.0/24 whose IP pool (10.60.0.100-115) gives node VMs their addresses and
# keeps one upgrade IP per cluster, control-plane IPs 10.60.0.20-27 and one MetalLB pool per cluster
# (.200-.215, .224-.231, .240-.247), all in the same subnet and outside the IP pool. No HAProxy VMs,
# no management cluster.
ARC_SITE = SiteSpec(
    name="arc-1",
    hosts=("azl-arc-01", "azl-arc-02", "azl-arc-03"),
    host_ip_start="10.60.0.11",
    rdma_adapters=("Intel(R) Ethernet Network Adapter E810-XXVDA2", "Intel(R) Ethernet Network Adapter E810-XXVDA2 #2"),
    rdma_aliases=("Storage1", "Storage2"),
    pfc_priority=3,
    utc_offset_hours=-5.0,
    ip_plan="23h2",
    network=NetworkSpec(
        name="lnet-arc",
        ip_address_prefix="10.60.0.0/24",
        gateway="10.60.0.1",
        k8s_node_ip_pool_start="10.60.0.100",
        k8s_node_ip_pool_end="10.60.0.115",
        vip_pool_start="10.60.0.20",
        vip_pool_end="10.60.0.27",
    ),
    clusters=(
        ClusterSpec(
            "arc-prod",
            control_plane_nodes=1,
            worker_nodes=3,
            services=(
                ServiceSpec("web", "storefront", (443,), weight=3.0),
                ServiceSpec("shop", "orders-api", (8080,), weight=1.0),
                ServiceSpec("monitoring", "grafana", (3000,), weight=0.3),
            ),
            metallb_pools=(MetalLbPoolSpec("prod-lb", ("10.60.0.200-10.60.0.215",)),),
        ),
        ClusterSpec(
            "arc-dev",
            control_plane_nodes=1,
            worker_nodes=2,
            services=(
                ServiceSpec("dev", "sandbox", (80,), weight=0.5),
                ServiceSpec("ingress", "ingress-nginx-controller", (80, 443), weight=1.0),
            ),
            metallb_pools=(MetalLbPoolSpec("dev-lb", ("10.60.0.224/29",), avoid_buggy_ips=True),),
        ),
        ClusterSpec(
            "arc-data",
            control_plane_nodes=1,
            worker_nodes=1,
            services=(ServiceSpec("data", "kafka-external", (9094,), weight=0.8),),
            metallb_pools=(MetalLbPoolSpec("data-lb", ("10.60.0.240-10.60.0.247",)),),
        ),
    ),
)
