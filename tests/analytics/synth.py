"""Synthetic but principled Azure Local sites for analytics tests and the benchmark.

Nothing here is a fixture of constants: every site is drawn from a seeded random process —
host and NIC naming styles, scrape interval, per-host load level and diurnal phase, PFC priority,
counter start values, shares, the IP plan (subnet, pool sizes and positions, clusters, services).
Counters are cumulative with Poisson (gamma-overdispersed) increments; agents are windows_exporter
style (raw ``*_total``) or Telegraf formatted (``*_per_sec`` / ``avg_seconds``) per host.

Effects (congestion, backup burst, reboot, scrape gap) are applied as multipliers over time so
a test states *what* happens, and the process decides the numbers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from collector.schema import IP_OBSERVATIONS_SCHEMA, SAMPLES_SCHEMA, TS_TYPE

HOST_STYLES: list[Callable[[int], str]] = [
    "hci-node-{:02d}".format,
    "AZL{:03d}".format,
    "srv-hv{}".format,
    "contoso-s2d-n{}".format,
    "edge-{:x}".format,
    "rack2-host{}".format,
]
NIC_MODELS = [
    "Mellanox ConnectX-6 Dx Adapter",
    "NVIDIA ConnectX-5 Ex Adapter",
    "Mellanox ConnectX-4 Lx Adapter",
    "QLogic FastLinQ QL41262-DE 25GbE Adapter",
    "Intel[R] Ethernet Network Adapter E810-XXV-2",
    "Chelsio T62100-LP-CR Unified Wire Ethernet Controller",
    "Broadcom NetXtreme E-Series Dual-port 25Gb",
]
SHARE_NAMES = ["UserStorage_1", "UserStorage_2", "ClusterStorage$", "Volume01", "infra", "VMs", "csv-a"]


@dataclass
class Site:
    seed: int
    rng: np.random.Generator
    hosts: list[str]
    nics: dict[str, list[str]]
    shares: dict[str, list[tuple[str, str]]]
    prio: str
    scrape_s: int
    start_ms: int
    end_ms: int
    formatted: set[str]
    base: dict[str, dict[str, float]]


def random_site(
    seed: int,
    n_hosts: int = 8,
    hours: float = 10.0,
    scrape_s: int | None = None,
    formatted_share: float = 0.3,
    start: datetime | None = None,
) -> Site:
    rng = np.random.default_rng(seed)
    style = HOST_STYLES[int(rng.integers(len(HOST_STYLES)))]
    hosts = [style(i + 1) for i in range(n_hosts)]
    nics: dict[str, list[str]] = {}
    models = list(rng.choice(NIC_MODELS, size=2, replace=False))
    for h in hosts:
        k = int(rng.integers(1, 4))
        nics[h] = [f"{models[0]}{'' if j == 0 else f' _{j + 1}'}" for j in range(k)]
    shares = {}
    for h in hosts:
        n = int(rng.integers(2, 5))
        servers = [x for x in hosts if x != h] or [h]
        shares[h] = [(str(rng.choice(servers)), str(rng.choice(SHARE_NAMES))) for _ in range(n)]
        shares[h] = list(dict.fromkeys(shares[h]))
    prio = str(rng.choice(["3", "3", "4", "5"]))
    scrape = scrape_s or int(rng.choice([15, 30, 30, 60]))
    t0 = start or datetime(
        2026, int(rng.integers(1, 12)), int(rng.integers(1, 28)), int(rng.integers(0, 24)), tzinfo=UTC
    )
    start_ms = int(t0.timestamp() * 1000) // 60000 * 60000
    formatted = {h for h in hosts if rng.random() < formatted_share}
    base = {}
    for h in hosts:
        base[h] = {
            "pause": float(rng.choice([0.0, rng.lognormal(0.5, 1.2)])),  # frames/s, some hosts none
            "err": float(rng.choice([0.0, rng.uniform(0, 0.003)])),
            "disc": float(rng.lognormal(-1.5, 1.0)),
            "bytes": float(rng.lognormal(np.log(2e8), 0.7)),
            "req": float(rng.lognormal(np.log(600), 0.8)),
            "lat": float(rng.lognormal(np.log(0.0012), 0.5)),
            "phase": float(rng.uniform(0, 1)),
            "amp": float(rng.uniform(0.1, 0.5)),
        }
    return Site(
        seed, rng, hosts, nics, shares, prio, scrape, start_ms, start_ms + int(hours * 3_600_000), formatted, base
    )


@dataclass
class Effects:
    congestion: list[tuple[Sequence[str], int, int]] = field(default_factory=list)
    backup: list[tuple[Sequence[str], int, int, float]] = field(default_factory=list)
    reboot: list[tuple[str, int, int]] = field(default_factory=list)  # host, down at, down for (ms)
    gaps: list[tuple[str, int, int]] = field(default_factory=list)  # host, from, to (ms)
    rdma_errors: list[tuple[str, int, int, float]] = field(default_factory=list)  # host, from, to, rate/s
    # hosts whose SMB client latency alone is multiplied (clients of a stalled storage node)
    smb_latency: list[tuple[Sequence[str], int, int, float]] = field(default_factory=list)
    # hosts whose adapters routinely burst (host, bursts per hour): healthy, but for a few minutes at
    # random times PFC pauses and discards jump 5-20x and SMB latency rises a little (incast on an
    # adapter with shallower buffers; the host's normal, not an incident)
    bursts: list[tuple[str, float]] = field(default_factory=list)


class _Builder:
    def __init__(self) -> None:
        self.ts: list[np.ndarray] = []
        self.val: list[np.ndarray] = []
        self.meta: list[tuple[str, str, str, tuple[tuple[str, str], ...]]] = []

    def add(self, source: str, host: str, metric: str, labels: dict[str, str], ts: np.ndarray, val: np.ndarray) -> None:
        self.ts.append(ts)
        self.val.append(val.astype(np.float64))
        self.meta.append((source, host, metric, tuple(labels.items())))

    def table(self) -> pa.Table:
        if not self.ts:
            return SAMPLES_SCHEMA.empty_table()
        counts = np.array([len(t) for t in self.ts])
        idx = np.repeat(np.arange(len(self.meta)), counts)
        keys = [[k for k, _ in m[3]] for m in self.meta]
        vals = [[v for _, v in m[3]] for m in self.meta]
        offsets = np.concatenate([[0], np.cumsum([len(k) for k in keys])]).astype(np.int32)
        # the stubs accept only int64 offsets here; a map's offsets are int32
        series_maps = pa.MapArray.from_arrays(  # type: ignore[call-overload]
            pa.array(offsets, pa.int32()),
            pa.array([k for ks in keys for k in ks], pa.string()),
            pa.array([v for vs in vals for v in vs], pa.string()),
        )
        labels = series_maps.take(idx)

        def dict_col(pos: int) -> pa.Array[Any]:
            uniq = sorted({m[pos] for m in self.meta})
            code = {u: i for i, u in enumerate(uniq)}
            codes = np.array([code[m[pos]] for m in self.meta], np.int32)[idx]
            return pa.DictionaryArray.from_arrays(codes, pa.array(uniq, pa.string()))

        return pa.table(
            {
                "ts": pa.array(np.concatenate(self.ts).astype(np.int64)).cast(TS_TYPE),
                "source": dict_col(0),
                "host": dict_col(1),
                "metric": dict_col(2),
                "labels": labels,
                "value": pa.array(np.concatenate(self.val)),
            },
            schema=SAMPLES_SCHEMA,
        )


def _in(t: np.ndarray, a: int, b: int) -> np.ndarray:
    return (t >= a) & (t < b)


def samples(site: Site, fx: Effects | None = None, *, filler_series: int = 0) -> pa.Table:
    """Counters and gauges of every host from start to end under the given effects."""
    fx = fx or Effects()
    rng = site.rng
    b = _Builder()
    step = site.scrape_s * 1000
    for h in site.hosts:
        p = site.base[h]
        offset = int(rng.integers(0, step))
        t = np.arange(site.start_ms + offset, site.end_ms, step, dtype=np.int64)
        t = t + rng.integers(0, 800, size=t.size)  # scrape jitter
        keep = np.ones(t.size, bool)
        resets = np.zeros(t.size, bool)
        for host, a, dur in fx.reboot:
            if host == h:
                keep &= ~_in(t, a, a + dur)
                after = np.nonzero(t >= a + dur)[0]
                if after.size:
                    resets[after[0]] = True
        for host, a, z in fx.gaps:
            if host == h:
                keep &= ~_in(t, a, z)
        t, resets = t[keep], resets[keep]
        if t.size < 2:
            continue
        dt = np.diff(t, prepend=t[0] - step) / 1000.0
        day = (t / 86_400_000.0 + p["phase"]) % 1.0
        diurnal = 1 + p["amp"] * np.sin(2 * np.pi * day)
        load = diurnal * rng.lognormal(0, 0.12, t.size)
        tput = load.copy()
        for hs, a, z, f in fx.backup:
            if h in hs:
                tput = np.where(_in(t, a, z), tput * f, tput)
        cong = np.zeros(t.size, bool)
        for hs, a, z in fx.congestion:
            if h in hs:
                cong |= _in(t, a, z)
        pause_rate = (p["pause"] + 0.02) * np.sqrt(diurnal) * np.where(cong, rng.uniform(80, 300), 1.0) + np.where(
            cong, rng.uniform(50, 400), 0.0
        )
        err_rate = p["err"] + np.where(cong, rng.uniform(0.3, 2.0), 0.0)
        for host, a, z, r in fx.rdma_errors:
            if host == h:
                err_rate = err_rate + np.where(_in(t, a, z), r, 0.0)
        disc_rate = p["disc"] * diurnal + np.where(cong, rng.uniform(20, 200), 0.0)
        lat = p["lat"] * (1 + 0.1 * load) * rng.lognormal(0, 0.08, t.size) * np.where(cong, rng.uniform(4, 12), 1)
        for host, per_hour in fx.bursts:
            if host == h:
                n_bursts = int(rng.poisson(per_hour * (site.end_ms - site.start_ms) / 3_600_000))
                burst = np.ones(t.size)
                for a, dur, f in zip(
                    rng.uniform(site.start_ms, site.end_ms, n_bursts),
                    rng.uniform(60_000, 240_000, n_bursts),
                    rng.lognormal(np.log(8.0), 0.5, n_bursts),
                    strict=True,
                ):
                    burst = np.where(_in(t, int(a), int(a + dur)), np.maximum(burst, f), burst)
                pause_rate = pause_rate * burst
                disc_rate = disc_rate * burst
                lat = lat * np.where(burst > 1, 1.3, 1.0)
        for hs, a, z, f in fx.smb_latency:
            if h in hs:
                lat = np.where(_in(t, a, z), lat * f, lat)
        req_rate = p["req"] * load * np.where(tput > load * 1.5, 2.5, 1.0)

        def counts(rate: np.ndarray, dt: np.ndarray = dt) -> np.ndarray:
            lam = np.maximum(rate, 0) * dt * rng.gamma(5.0, 0.2, dt.size)
            out: np.ndarray = rng.poisson(lam).astype(np.float64)
            return out

        def cumulative(incr: np.ndarray, start: float, resets: np.ndarray = resets) -> np.ndarray:
            out = np.empty(incr.size)
            acc = float(start)
            seg_start = 0
            cuts: list[int] = [int(x) for x in np.nonzero(resets)[0]]
            for r in [*cuts, int(incr.size)]:
                seg = incr[seg_start:r]
                if seg.size:
                    out[seg_start:r] = acc + np.cumsum(seg)
                if r < incr.size:
                    acc = 0.0
                    incr = incr.copy()
                    incr[r] = float(rng.integers(0, 3))  # a little since boot
                seg_start = r
            return out

        raw = h not in site.formatted
        src = "windows" if raw else "telegraf"
        nic_w = rng.dirichlet(np.ones(len(site.nics[h])))
        for n, nic in enumerate(site.nics[h]):
            for prio in [str(x) for x in range(8)]:
                share = nic_w[n] if prio == site.prio else nic_w[n] * 0.002
                for direction, frac in (("rx", 0.6), ("tx", 0.4)):
                    inc = counts(pause_rate * share * frac)
                    b.add(
                        src,
                        h,
                        f"pfc.{direction}_pause_frames_total",
                        {"nic": nic, "priority": prio},
                        t,
                        cumulative(inc, float(rng.integers(0, 10**7))),
                    )
            for m, f in (
                ("rdma.cq_errors_total", 0.3),
                ("rdma.failed_connection_attempts_total", 0.3),
                ("rdma.connection_errors_total", 0.4),
            ):
                b.add(
                    src, h, m, {"nic": nic}, t, cumulative(counts(err_rate * f * nic_w[n]), float(rng.integers(0, 50)))
                )
            for m in ("net.packets_received_discarded_total", "net.packets_outbound_discarded_total"):
                b.add(
                    src,
                    h,
                    m,
                    {"nic": nic},
                    t,
                    cumulative(counts(disc_rate * nic_w[n] / 2), float(rng.integers(0, 10**5))),
                )
            byte_rate = p["bytes"] * tput * nic_w[n]
            for m in ("rdma.inbound_bytes", "rdma.outbound_bytes", "net.bytes_received", "net.bytes_sent"):
                if raw:
                    b.add(
                        src,
                        h,
                        m + "_total",
                        {"nic": nic},
                        t,
                        cumulative(byte_rate * dt * rng.lognormal(0, 0.05, t.size), float(rng.integers(0, 10**12))),
                    )
                else:
                    b.add(src, h, m + "_per_sec", {"nic": nic}, t, byte_rate * rng.lognormal(0, 0.05, t.size))
        w = rng.dirichlet(np.ones(len(site.shares[h])))
        for k, (server, share) in enumerate(site.shares[h]):
            labels = {"server": server, "share": share}
            reqs = counts(req_rate * w[k])
            lat_k = lat * rng.lognormal(0, 0.05, t.size)
            if raw:
                b.add(src, h, "smb.client.requests_total", labels, t, cumulative(reqs, float(rng.integers(0, 10**8))))
                b.add(
                    src,
                    h,
                    "smb.client.request_seconds_total",
                    labels,
                    t,
                    cumulative(reqs * lat_k, float(rng.uniform(0, 1e5))),
                )
            else:
                b.add(src, h, "smb.client.requests_per_sec", labels, t, reqs / dt)
                b.add(src, h, "smb.client.request_avg_seconds", labels, t, np.where(reqs > 0, lat_k, 0.0))
        for f in range(filler_series):
            b.add(
                src,
                h,
                f"windows.filler.metric{f % 40}_total",
                {"core": str(f)},
                t,
                np.cumsum(rng.poisson(100, t.size)).astype(np.float64),
            )
    return b.table()


# ---------------------------------------------------------------------------------------------
# IP plans and IP observations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Net:
    """Implements analytics.networks.NetworkLike (what collector.config.NetworkSettings provides)."""

    name: str
    vip_pool_start: str
    vip_pool_end: str
    k8s_node_ip_pool_start: str | None
    k8s_node_ip_pool_end: str | None
    ip_address_prefix: str | None
    clusters: tuple[str, ...]
    management_cluster: str | None = None
    lb_ranges: tuple[str, ...] = ()
    vip_reserve: int | None = None
    node_upgrade_reserve: int | None = None


def random_network(
    rng: np.random.Generator,
    name: str,
    clusters: Sequence[str],
    *,
    vip_size: int,
    node_size: int,
    management: str | None = None,
    subnet: str | None = None,
) -> Net:
    if subnet is None:
        choice = int(rng.integers(3))
        if choice == 0:
            subnet = f"10.{rng.integers(0, 255)}.{rng.integers(0, 255)}.0/24"
        elif choice == 1:
            subnet = f"172.{rng.integers(16, 32)}.{rng.integers(0, 255)}.0/24"
        else:
            subnet = f"192.168.{rng.integers(0, 255)}.0/24"
    net = ipaddress.ip_network(subnet)
    base = int(net.network_address)
    total = net.num_addresses
    assert vip_size + node_size + 20 < total
    # node pool first or VIP pool first, at a random offset
    start = int(rng.integers(10, total - vip_size - node_size - 5))
    if rng.random() < 0.5:
        node0, vip0 = start, start + node_size + int(rng.integers(0, 3))
    else:
        vip0, node0 = start, start + vip_size + int(rng.integers(0, 3))

    def ip(off: int) -> str:
        return str(ipaddress.IPv4Address(base + off))

    return Net(
        name,
        ip(vip0),
        ip(vip0 + vip_size - 1),
        ip(node0),
        ip(node0 + node_size - 1),
        subnet,
        tuple(clusters),
        management,
    )


def pool_addresses(net: Net, pool: str) -> list[str]:
    if pool == "vip":
        a, z = net.vip_pool_start, net.vip_pool_end
    else:
        assert net.k8s_node_ip_pool_start and net.k8s_node_ip_pool_end
        a, z = net.k8s_node_ip_pool_start, net.k8s_node_ip_pool_end
    lo, hi = int(ipaddress.IPv4Address(a)), int(ipaddress.IPv4Address(z))
    return [str(ipaddress.IPv4Address(x)) for x in range(lo, hi + 1)]


def random_mac(rng: np.random.Generator) -> str:
    return "00:15:5d:" + ":".join(f"{int(x):02x}" for x in rng.integers(0, 256, 3))


@dataclass
class Holder:
    """Something that holds an IP from t0 to t1 (ms) as seen by inventory polls."""

    ip: str
    owner_kind: str
    owner: str
    cluster: str | None
    network: str | None
    t0: int
    t1: int
    mac: str | None = None
    source: str = "k8s"
    arp_mac: str | None = None  # the MAC that answers ARP for it (VIPs: the LB VM's)


@dataclass
class IpWorld:
    rng: np.random.Generator
    start_ms: int
    end_ms: int
    poll_s: int
    holders: list[Holder] = field(default_factory=list)
    observers: list[str] = field(default_factory=list)
    # explicit neighbour sequences: ip → list of (t_ms, mac) changes seen by every observer
    arp_script: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    events: list[tuple[int, str, str, str]] = field(default_factory=list)  # t, ip, host, mac
    free: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # unused pool addresses

    def table(self) -> pa.Table:
        rows: dict[str, list[object]] = {k: [] for k in IP_OBSERVATIONS_SCHEMA.names}
        step = self.poll_s * 1000

        def add(
            t: int,
            ip: str,
            mac: str | None,
            kind: str,
            owner: str,
            cluster: str | None,
            network: str | None,
            source: str,
        ) -> None:
            rows["ts"].append(t)
            rows["ip"].append(ip)
            rows["mac"].append(mac)
            rows["owner_kind"].append(kind)
            rows["owner"].append(owner)
            rows["cluster"].append(cluster)
            rows["network"].append(network)
            rows["source"].append(source)

        for t in range(self.start_ms, self.end_ms, step):
            tj = t + int(self.rng.integers(0, 1500))
            for h in self.holders:
                if h.t0 <= t < h.t1:
                    add(tj, h.ip, h.mac, h.owner_kind, h.owner, h.cluster, h.network, h.source)
            # neighbour tables: each observer sees the current ARP answer for some addresses
            for obs in self.observers:
                for h in self.holders:
                    if not (h.t0 <= t < h.t1) or h.arp_mac is None or self.rng.random() < 0.3:
                        continue
                    mac = h.arp_mac
                    script = self.arp_script.get(h.ip)
                    if script:
                        for ts, m in script:
                            if ts <= t:
                                mac = m
                    add(tj + 200, h.ip, mac, "neighbor", obs, None, None, "neighbors")
        for t, ip, host, mac in self.events:
            add(t, ip, mac, "event", host, None, None, "event")
        order = np.argsort(np.array(rows["ts"]), kind="stable")

        def col(name: str) -> list[object]:
            return [rows[name][i] for i in order]

        def dict_col(name: str) -> pa.Array[Any]:
            return pa.array(col(name), pa.string()).dictionary_encode()

        return pa.table(
            {
                "ts": pa.array(np.array(col("ts"), np.int64)).cast(TS_TYPE),
                "ip": pa.array(col("ip"), pa.string()),
                "mac": pa.array(col("mac"), pa.string()),
                "owner_kind": dict_col("owner_kind"),
                "owner": pa.array(col("owner"), pa.string()),
                "cluster": dict_col("cluster"),
                "network": dict_col("network"),
                "source": dict_col("source"),
            },
            schema=IP_OBSERVATIONS_SCHEMA,
        )


def populate_clusters(
    world: IpWorld,
    net: Net,
    *,
    services: dict[str, int],
    nodes: dict[str, int],
    t0: int | None = None,
    t1: int | None = None,
) -> dict[str, list[Holder]]:
    """Give each cluster its API VIP, LB VM, node VMs and Services from the network's pools."""
    rng = world.rng
    t0 = world.start_ms if t0 is None else t0
    t1 = world.end_ms if t1 is None else t1
    vips = pool_addresses(net, "vip")
    node_ips = pool_addresses(net, "node")
    rng.shuffle(vips)
    rng.shuffle(node_ips)
    out: dict[str, list[Holder]] = {}
    namespaces = ["default", "web", "payments", "monitoring", "ingress-nginx", "data"]
    for c in net.clusters:
        lb_mac = random_mac(rng)
        hs = [
            Holder(vips.pop(), "control-plane", c, c, net.name, t0, t1, arp_mac=lb_mac),
            Holder(
                node_ips.pop(),
                "load-balancer",
                f"{c}-lb",
                c,
                net.name,
                t0,
                t1,
                mac=lb_mac,
                source="haproxy",
                arp_mac=lb_mac,
            ),
        ]
        for k in range(nodes.get(c, 2)):
            mac = random_mac(rng)
            hs.append(Holder(node_ips.pop(), "node", f"{c}-np-{k}", c, net.name, t0, t1, mac=mac, arp_mac=mac))
        for k in range(services.get(c, 0)):
            ns = str(rng.choice(namespaces))
            ip = vips.pop()
            hs.append(Holder(ip, "service", f"{ns}/svc-{k}", c, net.name, t0, t1, arp_mac=lb_mac))
            hs.append(Holder(ip, "haproxy-frontend", f"{c}-lb/fe-{k}", c, None, t0, t1, source="haproxy"))
        world.holders.extend(hs)
        out[c] = hs
    world.free[(net.name, "vip")] = vips
    world.free[(net.name, "node")] = node_ips
    return out


def add_services(
    world: IpWorld,
    net: Net,
    cluster: str,
    count: int,
    t_from: int,
    t_to: int,
    *,
    lb_mac: str | None = None,
    lifetime: tuple[int, int] | None = None,
    namespaces: Sequence[str] = ("default", "web", "payments", "data"),
) -> list[Holder]:
    """Services created at Poisson-process times in [t_from, t_to] (optionally deleted later)."""
    rng = world.rng
    times = np.sort(rng.uniform(t_from, t_to, count)).astype(np.int64)
    pool = pool_addresses(net, "vip")
    out = []
    for k, t in enumerate(times):
        end = world.end_ms if lifetime is None else int(t + rng.uniform(*lifetime))
        busy = {h.ip for h in world.holders if h.t0 <= t < h.t1 or h.t0 <= end <= h.t1}
        free = [ip for ip in pool if ip not in busy]
        if not free:
            continue  # the pool is full: the Service stays pending (as Kubernetes would)
        ip = free[int(rng.integers(len(free)))]
        ns = str(rng.choice(list(namespaces)))
        h = Holder(ip, "service", f"{ns}/app-{cluster}-{k}", cluster, net.name, int(t), end, arp_mac=lb_mac)
        world.holders.append(h)
        out.append(h)
    return out


def lb_mac_of(holders: list[Holder]) -> str:
    return next(h.mac for h in holders if h.owner_kind == "load-balancer" and h.mac)
