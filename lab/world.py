"""The site's inventory over time: hosts, VMs, services, VIP ownership.

Static facts (host NICs and MACs, API VIPs) are drawn once; everything that the script changes
(services created by a leak, the duplicate IP and its fix, a scale-out, a keepalived failover)
is replayed through an IP allocator into a list of immutable snapshots. The payload builders
ask "what did the site look like at second ``t``?" and never change anything themselves.

Allocation mimics AKS-HCI: the management cluster is created first, then each workload cluster
(API-server VIP, control-plane VMs, load-balancer VMs, workers), then the services; every new
address is the lowest free one of its pool.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from lab.rand import stream, token, uuid4
from lab.scenario import DuplicateLbIp, NodeScaleOut, Scenario, UpgradeBlocked, VipFailover, VipLeak
from lab.site import pdh_instance

KUBERNETES_VERSION = "v1.27.7"
OS_IMAGE = "CBL-Mariner/Linux"
KERNEL_VERSION = "5.15.138.1-1.cm2"
CONTAINER_RUNTIME = "containerd://1.6.26"
PREVIEW_ACTIVE = timedelta(minutes=30)  # a leaked CI preview carries traffic this long, then none


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """One RDMA storage adapter of a host."""

    description: str
    instance: str  # PDH instance / windows_exporter nic label
    alias: str  # InterfaceAlias (neighbour rows, nic_info friendly_name)
    mac: str
    ip: str


@dataclass(frozen=True, slots=True)
class HostInfo:
    """One HCI host: its management vNIC and its RDMA adapters."""

    name: str
    index: int
    mgmt_ip: str
    mgmt_mac: str
    adapters: tuple[AdapterInfo, ...]


@dataclass(frozen=True, slots=True)
class Vm:
    """A VM on the cluster network: a Kubernetes node or an HAProxy load-balancer VM."""

    name: str
    cluster: str
    role: str  # "control-plane" | "worker" | "load-balancer"
    ip: str
    mac: str
    uid: str
    created: datetime
    pod_cidr: str | None


@dataclass(frozen=True, slots=True)
class Svc:
    """A Kubernetes Service of type LoadBalancer with its VIP."""

    cluster: str
    namespace: str
    name: str
    uid: str
    ip: str
    ports: tuple[int, ...]
    node_ports: tuple[int, ...]
    cluster_ip: str
    created: datetime
    weight: float
    resource_version: int
    idle_after: float | None = None  # seconds since the scenario start after which it gets no traffic

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The site from second ``at`` (since the scenario start) until the next snapshot."""

    at: float
    seq: int
    vms: tuple[Vm, ...]
    services: tuple[Svc, ...]
    active_lb: tuple[tuple[str, str], ...]  # (cluster, LB VM name)
    duplicate: tuple[str, str, str] | None  # (ip, owning cluster, intruding cluster)

    def nodes(self, cluster: str) -> list[Vm]:
        return [v for v in self.vms if v.cluster == cluster and v.role != "load-balancer"]

    def lb_vms(self, cluster: str) -> list[Vm]:
        return [v for v in self.vms if v.cluster == cluster and v.role == "load-balancer"]

    def services_of(self, cluster: str) -> list[Svc]:
        return [s for s in self.services if s.cluster == cluster]

    def active_lb_name(self, cluster: str) -> str | None:
        return dict(self.active_lb).get(cluster)


class World:
    """Static inventory plus the time-ordered snapshots of everything the script changes."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        site = scenario.site
        rng = stream(scenario.seed, "world")
        self.gateway_mac = ":".join(["00", "1c", "73"] + [f"{int(x):02x}" for x in rng.integers(0, 256, 3)])
        self.hosts = tuple(self._host(i, name, rng) for i, name in enumerate(site.hosts))
        self._mac_seq = 0x0A10
        self._node_free = [str(ip) for ip in site.network.node_pool()]
        self._vip_free = [str(ip) for ip in site.network.vip_pool()]
        # AKS Arc: each cluster's MetalLB hands out the lowest free address of its auto-assign pools,
        # blind to every other cluster's MetalLB (Microsoft: no IP conflict checking for the extension)
        self._lb_free: dict[str, list[str]] = {
            c.name: list(dict.fromkeys(str(ip) for p in c.metallb_pools if p.auto_assign for ip in p.ips()))
            for c in site.clusters
            if c.arc
        }
        self._pod_cidr_next: dict[str, int] = {}
        self._node_ports: dict[str, set[int]] = {}
        self._cluster_ips: dict[str, set[str]] = {}
        self._rv = 1000
        self.api_vips: dict[str, str] = {}
        self.cluster_created: dict[str, datetime] = {}
        start = scenario.start
        vms: list[Vm] = []
        services: list[Svc] = []
        active: dict[str, str] = {}
        # Clusters were created weeks before the capture, management cluster first.
        ages = np.linspace(60, 20, num=len(site.clusters))
        for age, c in zip(ages, site.clusters, strict=True):
            created = _whole_seconds(start - timedelta(days=float(age), minutes=int(rng.integers(0, 600))))
            self.cluster_created[c.name] = created
            self.api_vips[c.name] = self._take_vip()
            crng = stream(scenario.seed, "cluster", c.name)
            for _ in range(c.control_plane_nodes):
                vms.append(self._new_vm(c.name, "control-plane", created, crng))
            lbs = [self._new_vm(c.name, "load-balancer", created, crng) for _ in range(c.lb_vms)]
            vms.extend(lbs)
            if lbs:
                active[c.name] = lbs[0].name
            for _ in range(c.worker_nodes):
                vms.append(self._new_vm(c.name, "worker", created, crng))
        for c in site.clusters:
            crng = stream(scenario.seed, "services", c.name)
            for j, spec in enumerate(c.services):
                created = self.cluster_created[c.name] + timedelta(days=2 + 3 * j, minutes=int(crng.integers(0, 900)))
                services.append(
                    self._new_service(
                        c.name, spec.namespace, spec.name, spec.ports, spec.weight, _whole_seconds(created), crng
                    )
                )
        state = Snapshot(0.0, 0, tuple(vms), tuple(services), tuple(sorted(active.items())), None)
        self.snapshots: list[Snapshot] = [state]
        self.leaked: list[tuple[float, Svc]] = []
        self.duplicate_ips: list[tuple[float, float, str, Svc, Svc]] = []  # start, end, ip, owner, intruder
        self.scaled_nodes: list[tuple[float, float, list[Vm]]] = []
        self.squeezed: list[tuple[float, list[Vm]]] = []  # UpgradeBlocked: node VMs added for good
        self._apply_script()
        self._starts = [s.at for s in self.snapshots]

    # ------------------------------------------------------------------------------------------
    # static parts

    def _host(self, i: int, name: str, rng: np.random.Generator) -> HostInfo:
        site = self.scenario.site
        mgmt_mac = f"00:15:5d:0b:{0x10 + i:02x}:{int(rng.integers(0, 256)):02x}"
        adapters = []
        for a, desc in enumerate(site.rdma_adapters):
            tail = rng.integers(0, 256, 2)
            mac = f"b8:ce:f6:{int(tail[0]):02x}:{int(tail[1]):02x}:{(2 * i + a) & 0xFF:02x}"
            adapters.append(AdapterInfo(desc, pdh_instance(desc), site.rdma_aliases[a], mac, site.storage_ip(i, a)))
        return HostInfo(name, i, site.host_ips()[i], mgmt_mac, tuple(adapters))

    # ------------------------------------------------------------------------------------------
    # allocators

    def _take_vip(self) -> str:
        if not self._vip_free:
            raise RuntimeError("VIP pool exhausted while building the lab site; enlarge the pool")
        return self._vip_free.pop(0)

    def _take_lb_ip(self, cluster: str) -> str:
        """A LoadBalancer IP: the cluster's MetalLB pools (AKS Arc), else the shared VIP pool."""
        free = self._lb_free.get(cluster)
        if free is None:
            return self._take_vip()
        if not free:
            raise RuntimeError(f"MetalLB pools of {cluster} exhausted while building the lab site; enlarge them")
        return free.pop(0)

    def _release(self, free: list[str], ip: str) -> None:
        free.append(ip)
        free.sort(key=lambda s: int(ipaddress.ip_address(s)))

    def _new_vm(self, cluster: str, role: str, created: datetime, rng: np.random.Generator) -> Vm:
        if not self._node_free:
            raise RuntimeError("k8s node IP pool exhausted while building the lab site; enlarge the pool")
        ip = self._node_free.pop(0)
        self._mac_seq += 1
        mac = f"00:15:5d:28:{self._mac_seq >> 8 & 0xFF:02x}:{self._mac_seq & 0xFF:02x}"
        if role == "load-balancer":
            # cluster-api-provider-azurestackhci names the HAProxy VM "<cluster>-load-balancer-<5>".
            name = f"{cluster}-load-balancer-{token(rng, 5)}"
            pod_cidr = None
        else:
            name = "moc-l" + token(rng, 11)
            k = self._pod_cidr_next.get(cluster, 0)
            self._pod_cidr_next[cluster] = k + 1
            pod_cidr = f"10.244.{k}.0/24"
        return Vm(name, cluster, role, ip, mac, uuid4(rng), created, pod_cidr)

    def _new_service(
        self,
        cluster: str,
        namespace: str,
        name: str,
        ports: tuple[int, ...],
        weight: float,
        created: datetime,
        rng: np.random.Generator,
        ip: str | None = None,
    ) -> Svc:
        used_np = self._node_ports.setdefault(cluster, set())
        node_ports = []
        for _ in ports:
            while True:
                p = int(rng.integers(30000, 32768))
                if p not in used_np:
                    used_np.add(p)
                    node_ports.append(p)
                    break
        used_ip = self._cluster_ips.setdefault(cluster, {"10.96.0.1", "10.96.0.10"})
        while True:
            cip = f"10.{96 + int(rng.integers(0, 4))}.{int(rng.integers(0, 256))}.{int(rng.integers(2, 255))}"
            if cip not in used_ip:
                used_ip.add(cip)
                break
        self._rv += int(rng.integers(50, 400))
        return Svc(
            cluster,
            namespace,
            name,
            uuid4(rng),
            ip if ip is not None else self._take_lb_ip(cluster),
            tuple(ports),
            tuple(node_ports),
            cip,
            created,
            weight,
            self._rv,
        )

    # ------------------------------------------------------------------------------------------
    # the script

    def _apply_script(self) -> None:
        sc = self.scenario
        dur = sc.duration.total_seconds()
        events: list[tuple[float, int, int, str, object]] = []  # (sec, incident no, seq, what, payload)
        for n, inc in enumerate(sc.incidents):
            if inc.start >= sc.duration:
                continue
            if isinstance(inc, VipLeak):
                t, k = inc.start, 0
                stop = inc.window(sc.duration)[1]
                while t < stop:
                    events.append((t.total_seconds(), n, k, "leak", (inc, k)))
                    t += inc.every
                    k += 1
            elif isinstance(inc, DuplicateLbIp):
                lo, hi = inc.window(sc.duration)
                events.append((lo.total_seconds(), n, 0, "dup_start", inc))
                if hi.total_seconds() < dur:
                    events.append((hi.total_seconds(), n, 1, "dup_end", inc))
            elif isinstance(inc, NodeScaleOut):
                lo, hi = inc.window(sc.duration)
                events.append((lo.total_seconds(), n, 0, "scale_out", inc))
                if hi.total_seconds() < dur:
                    events.append((hi.total_seconds(), n, 1, "scale_in", inc))
            elif isinstance(inc, UpgradeBlocked):
                events.append((inc.start.total_seconds(), n, 0, "squeeze", inc))
            elif isinstance(inc, VipFailover) and inc.start.total_seconds() < dur:
                events.append((inc.start.total_seconds(), n, 0, "failover", inc))
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        open_dups: dict[int, tuple[float, str, Svc, Svc]] = {}
        open_scale: dict[int, tuple[float, list[Vm]]] = {}
        for sec, n, _k, what, payload in events:
            cur = self.snapshots[-1]
            vms, services, active = list(cur.vms), list(cur.services), dict(cur.active_lb)
            duplicate = cur.duplicate
            when = _whole_seconds(sc.start + timedelta(seconds=sec))
            erng = stream(sc.seed, "event", n, what, sec)
            if what == "leak":
                assert isinstance(payload, tuple)
                inc, k = payload
                assert isinstance(inc, VipLeak)
                svc = self._new_service(
                    inc.cluster, inc.namespace, f"pr-{inc.first_pr + 7 * k}-web", (80,), 0.004, when, erng
                )
                # the CI run uses its preview for a while; then nobody does (a reclaim candidate)
                svc = replace(svc, idle_after=sec + PREVIEW_ACTIVE.total_seconds())
                services.append(svc)
                self.leaked.append((sec, svc))
            elif what == "dup_start":
                assert isinstance(payload, DuplicateLbIp)
                owner = next(
                    (
                        s
                        for s in services
                        if s.cluster == payload.shared_with
                        and payload.port not in s.ports
                        and self._may_request(payload.cluster, s.ip)
                    ),
                    None,
                )
                if owner is None:
                    raise ValueError(
                        f"duplicate_lb_ip: no service of {payload.shared_with} holds an address "
                        f"{payload.cluster}'s MetalLB pools could hand out (the pools do not overlap)"
                    )
                intruder = self._new_service(
                    payload.cluster, payload.namespace, payload.service, (payload.port,), 1.0, when, erng, ip=owner.ip
                )
                services.append(intruder)
                duplicate = (owner.ip, owner.cluster, intruder.cluster)
                open_dups[n] = (sec, owner.ip, owner, intruder)
            elif what == "dup_end":
                assert isinstance(payload, DuplicateLbIp)
                t0, ip, owner, intruder = open_dups.pop(n)
                services = [s for s in services if s.uid != intruder.uid]
                fixed = self._new_service(
                    intruder.cluster, intruder.namespace, intruder.name, intruder.ports, 1.0, when, erng
                )
                services.append(fixed)
                duplicate = None
                self.duplicate_ips.append((t0, sec, ip, owner, intruder))
            elif what == "squeeze":
                assert isinstance(payload, UpgradeBlocked)
                new = [self._new_vm(payload.cluster, "worker", when, erng) for _ in range(payload.nodes)]
                vms.extend(new)
                self.squeezed.append((sec, new))
            elif what == "scale_out":
                assert isinstance(payload, NodeScaleOut)
                new = [self._new_vm(payload.cluster, "worker", when, erng) for _ in range(payload.nodes)]
                vms.extend(new)
                open_scale[n] = (sec, new)
            elif what == "scale_in":
                t0, new = open_scale.pop(n)
                gone = {v.uid for v in new}
                vms = [v for v in vms if v.uid not in gone]
                for v in new:
                    self._release(self._node_free, v.ip)
                self.scaled_nodes.append((t0, sec, new))
            elif what == "failover":
                assert isinstance(payload, VipFailover)
                lbs = [v.name for v in cur.lb_vms(payload.cluster)]
                current = active.get(payload.cluster, lbs[0])
                active[payload.cluster] = lbs[(lbs.index(current) + 1) % len(lbs)]
            nxt = Snapshot(sec, cur.seq + 1, tuple(vms), tuple(services), tuple(sorted(active.items())), duplicate)
            if cur.at == sec:
                self.snapshots[-1] = replace(nxt, seq=cur.seq)
            else:
                self.snapshots.append(nxt)
        for t0, ip, owner, intruder in open_dups.values():
            self.duplicate_ips.append((t0, dur, ip, owner, intruder))
        for t0, new in open_scale.values():
            self.scaled_nodes.append((t0, dur, new))
        self.duplicate_ips.sort(key=lambda d: d[0])

    # ------------------------------------------------------------------------------------------
    # queries

    def at(self, sec: float) -> Snapshot:
        """The snapshot in force at ``sec`` seconds after the scenario start."""
        i = bisect.bisect_right(self._starts, sec) - 1
        return self.snapshots[max(i, 0)]

    def vm_by_name(self, name: str) -> Vm:
        for snap in self.snapshots:
            for v in snap.vms:
                if v.name == name:
                    return v
        raise KeyError(name)

    def _may_request(self, cluster: str, ip: str) -> bool:
        """Whether ``cluster``'s MetalLB accepts a Service asking for ``ip`` (it is in one of its
        pools, auto-assign or not); a HAProxy cluster takes any VIP it is given."""
        c = self.scenario.site.cluster(cluster)
        if not c.arc:
            return True
        return any(ipaddress.ip_address(ip) in p.ips() for p in c.metallb_pools)

    def speaker_node(self, snap: Snapshot, cluster: str) -> Vm:
        """The node whose MetalLB speaker answers ARP for the cluster's LoadBalancer IPs (layer 2
        mode elects one per service; the lab's clusters elect their first worker for all)."""
        workers = [v for v in snap.nodes(cluster) if v.role == "worker"]
        return min(workers, key=lambda v: (v.created, v.name))

    def vip_claims(self, snap: Snapshot) -> dict[str, list[tuple[str, str]]]:
        """VIP → the (MAC, cluster) of every VM answering ARP for it (two entries = a duplicate)."""
        claims: dict[str, list[tuple[str, str]]] = {}
        mgmt_spec = self.scenario.site.management
        mgmt = mgmt_spec.name if mgmt_spec is not None else None
        for c in self.scenario.site.clusters:
            if c.arc:
                # kube-vip on the first control-plane VM holds the control-plane IP
                cp = min((v for v in snap.nodes(c.name) if v.role == "control-plane"), key=lambda v: v.name)
                claims.setdefault(self.api_vips[c.name], []).append((cp.mac, c.name))
                speaker = self.speaker_node(snap, c.name)
                for ip in dict.fromkeys(s.ip for s in snap.services_of(c.name)):
                    claims.setdefault(ip, []).append((speaker.mac, c.name))
                continue
            if c.name == mgmt:
                kva = snap.nodes(c.name)[0]
                claims.setdefault(self.api_vips[c.name], []).append((kva.mac, c.name))
                continue
            active = snap.active_lb_name(c.name)
            lb = next(v for v in snap.lb_vms(c.name) if v.name == active)
            ips = [self.api_vips[c.name]] + [s.ip for s in snap.services_of(c.name)]
            for ip in dict.fromkeys(ips):
                claims.setdefault(ip, []).append((lb.mac, c.name))
        return claims

    def vips_in_use(self, snap: Snapshot) -> set[str]:
        return set(self.api_vips.values()) | {s.ip for s in snap.services}


def _whole_seconds(ts: datetime) -> datetime:
    return ts.replace(microsecond=0)
