"""Who holds each pool address, and which addresses could be given back.

Holders come from the inventory (Services, API-server VIPs, node and load-balancer VMs, HAProxy
frontends, host NICs); every one is listed with its cluster, namespace/service or VM and since
when it holds the address. Reclaim candidates, each with its evidence and the command that
inspects it:

* ``idle_service`` — a LoadBalancer Service whose HAProxy frontends carried no sessions and no
  bytes for at least ``idle`` (counters ``haproxy.sessions_total`` / ``haproxy.bytes_in_total`` did
  not rise on any load-balancer VM), although the frontends were scraped over that whole period;
* ``orphaned_frontend`` — an address an HAProxy frontend still binds while no Service or API
  server of any cluster holds it (the Service was deleted — typically with its namespace — and
  the load balancer kept the VIP);
* ``unowned_on_wire`` — an address inside a pool that hosts' neighbour (ARP/NDP) tables saw
  recently but no inventory source owns (a VM or device outside the cluster inventory; check
  before reusing it — an HAProxy load-balancer VM, which Kubernetes does not list, shows up here).

MetalLB and kube-proxy expose no per-Service traffic counters (``metallb_*`` count addresses,
kube-proxy counts sync runs), so on AKS Arc sites a Service is judged idle only when an HAProxy
(or other frontend) counter for it is collected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class HolderLike(Protocol):
    @property
    def ip(self) -> str: ...
    @property
    def owner_kind(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def cluster(self) -> str | None: ...
    @property
    def first_ms(self) -> int: ...
    @property
    def last_ms(self) -> int: ...


@dataclass(frozen=True, slots=True)
class FrontendTraffic:
    """Per HAProxy frontend (cluster, proxy name): when its counters last rose, and the scrape span."""

    cluster: str
    proxy: str
    first_ms: int  # first sample in the window read
    last_ms: int  # last sample
    last_active_ms: int | None  # last sample where sessions or bytes rose (None: never in the window)
    sessions_in_window: float


@dataclass(frozen=True, slots=True)
class WireSighting:
    ip: str
    first_ms: int
    last_ms: int
    macs: tuple[str, ...]
    observers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Candidate:
    network: str
    pool: str
    ip: str
    reason: str  # idle_service, orphaned_frontend, unowned_on_wire
    holder: str
    cluster: str | None
    since_ms: int
    command: str
    evidence: dict[str, Any] = field(default_factory=dict)


def kubectl_svc(cluster: str | None, owner: str) -> str:
    ns, _, name = owner.partition("/")
    ctx = f"--context {cluster} " if cluster else ""
    return f"kubectl {ctx}get svc -n {ns} {name} -o wide"


def find_candidates(
    holders: Mapping[tuple[str, str], Mapping[str, Sequence[HolderLike]]],
    traffic: Sequence[FrontendTraffic],
    wire: Mapping[str, WireSighting],
    *,
    pool_of: Mapping[str, tuple[str, str]],
    now_ms: int,
    idle_ms: int,
    ttl_ms: int,
) -> list[Candidate]:
    """Reclaim candidates over the current holders (see the module docstring).

    ``holders``: (network, pool) → ip → current holders; ``pool_of``: ip → (network, pool) for every
    address inside a pool (for the wire sightings); ``traffic`` per HAProxy frontend.
    """
    fe_traffic = {(t.cluster, t.proxy): t for t in traffic}
    out: list[Candidate] = []
    for (network, pool), by_ip in sorted(holders.items()):
        for ip, hs in sorted(by_ip.items()):
            services = [h for h in hs if h.owner_kind == "service"]
            frontends = [h for h in hs if h.owner_kind == "haproxy-frontend"]
            for svc in services:
                fes = [
                    t
                    for f in frontends
                    if (t := fe_traffic.get((svc.cluster or "", f.owner.split("/", 1)[0]))) is not None
                ]
                if not fes:
                    continue
                observed_from = max(t.first_ms for t in fes)
                last_active = max((t.last_active_ms for t in fes if t.last_active_ms is not None), default=None)
                if now_ms - observed_from < idle_ms:
                    continue  # not scraped long enough to call it idle
                if last_active is not None and now_ms - last_active < idle_ms:
                    continue
                idle_since = last_active if last_active is not None else observed_from
                out.append(
                    Candidate(
                        network,
                        pool,
                        ip,
                        "idle_service",
                        f"service {svc.owner}",
                        svc.cluster,
                        svc.first_ms,
                        kubectl_svc(svc.cluster, svc.owner),
                        {
                            "frontends": sorted(t.proxy for t in fes),
                            "no_sessions_or_bytes_since": idle_since,
                            "last_traffic_seen": last_active,
                            "idle_hours": round((now_ms - idle_since) / 3_600_000, 2),
                            "counters": ["haproxy.sessions_total", "haproxy.bytes_in_total"],
                            "holds_since": svc.first_ms,
                        },
                    )
                )
            owners = [h for h in hs if h.owner_kind in ("service", "control-plane")]
            if frontends and not owners:
                f = frontends[0]
                ctx = f"--context {f.cluster} " if f.cluster else ""
                out.append(
                    Candidate(
                        network,
                        pool,
                        ip,
                        "orphaned_frontend",
                        f"haproxy frontend {f.owner.split('/', 1)[0]}",
                        f.cluster,
                        f.first_ms,
                        f"kubectl {ctx}get svc -A -o wide | grep -w {ip}",
                        {
                            "frontends": sorted({x.owner.split("/", 1)[0] for x in frontends}),
                            "no_service_or_api_server_holds_it": True,
                        },
                    )
                )
    held_ips = {ip for by_ip in holders.values() for ip in by_ip}
    for ip, w in sorted(wire.items()):
        where = pool_of.get(ip)
        if where is None or ip in held_ips or now_ms - w.last_ms > ttl_ms:
            continue
        out.append(
            Candidate(
                where[0],
                where[1],
                ip,
                "unowned_on_wire",
                f"MAC {', '.join(w.macs)}",
                None,
                w.first_ms,
                f"Get-NetNeighbor -IPAddress {ip} | Format-List; arp -a | findstr {ip}",
                {"macs": list(w.macs), "seen_by": list(w.observers), "last_seen": w.last_ms},
            )
        )
    return out


def holder_rows(
    holders: Mapping[tuple[str, str], Mapping[str, Sequence[HolderLike]]],
) -> list[dict[str, Any]]:
    """Every current holder of every pool address, one row each (ordered by pool and address)."""
    rows = []
    for (network, pool), by_ip in sorted(holders.items()):
        for ip, hs in sorted(by_ip.items(), key=lambda kv: _ip_sort(kv[0])):
            for h in sorted(hs, key=lambda h: (h.owner_kind, h.owner)):
                rows.append(
                    {
                        "network": network,
                        "pool": pool,
                        "ip": ip,
                        "kind": h.owner_kind,
                        "holder": h.owner,
                        "cluster": h.cluster,
                        "since_ms": h.first_ms,
                        "last_seen_ms": h.last_ms,
                    }
                )
    return rows


def _ip_sort(ip: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in ip.split("."))
    except ValueError:
        return (1 << 30,)
