"""Turning a scenario into capture records, capture files, ground truth and a network config."""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import zstandard

from collector.schema import AlertKind, RawRecord, iso
from lab.haproxy import LbVmSim, cluster_loads
from lab.hosts import HostModel
from lab.k8s import K8sLists
from lab.metallb import controller_metrics, ip_address_pools, l2_advertisements, speaker_metrics
from lab.neighbors import NeighborTables
from lab.rand import stream
from lab.scenario import (
    BackupBurst,
    DuplicateLbIp,
    HostReboot,
    IncastBursts,
    NodeScaleOut,
    PfcStorm,
    Scenario,
    ScrapeGap,
    UpgradeBlocked,
    VipFailover,
    VipLeak,
)
from lab.timeline import Grid
from lab.world import World

# Sort rank of record kinds sharing a millisecond (keeps the order total and stable).
_RANK = {"prometheus": 0, "haproxy-csv": 1, "k8s": 2, "neighbors": 3, "event": 4}


@dataclass(frozen=True, slots=True)
class _Item:
    """One record to build: when, what, and the builder's arguments (bodies are made lazily)."""

    ms: int
    rank: int
    target: str
    kind: str
    host: str
    what: str
    a: int
    i: int


@dataclass(frozen=True, slots=True)
class CaptureStats:
    """What :func:`write_capture` wrote."""

    path: Path
    records: int
    body_bytes: int
    file_bytes: int
    by_kind: dict[str, int]


class _Lab:
    """Everything needed to build a scenario's records, built once."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.world = World(scenario)
        self.fast = Grid.build(scenario, scenario.interval.total_seconds())
        self.slow = Grid.build(scenario, scenario.slow_interval.total_seconds())
        self.hosts = HostModel(scenario, self.world, self.fast)
        loads = cluster_loads(scenario, self.fast)
        self.lb_vms = [v for v in self.world.snapshots[0].vms if v.role == "load-balancer"]
        self.lbs = [LbVmSim(scenario, self.world, self.fast, v, loads[v.cluster]) for v in self.lb_vms]
        self.k8s = {c.name: K8sLists(self.world, c.name) for c in scenario.site.clusters}
        self.neighbors = NeighborTables(scenario, self.world)
        self.slow_down = self._slow_no_scrape()
        self.arp_requests: dict[str, dict[str, int]] = {c.name: {} for c in scenario.site.clusters if c.arc}
        self.arp_rng = stream(scenario.seed, "metallb-arp")

    def _slow_no_scrape(self) -> list[list[bool]]:
        """Per host and slow tick: is the host unreachable (rebooting or in a scrape gap)?"""
        sc = self.scenario
        out = []
        for h in sc.site.hosts:
            flags = [False] * self.slow.n
            for inc in sc.incidents:
                if isinstance(inc, HostReboot | ScrapeGap) and inc.host == h:
                    lo, hi = (x.total_seconds() for x in inc.window(sc.duration))
                    for j, s in enumerate(self.slow.sec.tolist()):
                        if lo <= s < hi:
                            flags[j] = True
            out.append(flags)
        return out

    def plan(self) -> Iterator[_Item]:
        """Every record to build, in time order (ties by kind rank, then target), made lazily.

        Each target's items come from its own generator, already in time order (a jitter is
        below a 500th of an interval), and :func:`heapq.merge` interleaves them: the plan never
        holds more than one pending item per target, where a list of every (target, tick) was
        hosts × ticks objects. Keys that tie exactly belong to one target, hence to one
        generator, so the merge yields the order a stable sort of the full list did. The random
        jitters are drawn up front, target by target in the order they always were, and kept
        as compact arrays.

        A target's offset into each interval is 1.0 % + 1.3 % per host (20 % + 1.3 % per load
        balancer, ...), taken modulo the interval: a large site's hosts are spread over the
        interval instead of their first scrape coming minutes after the start (sites of up to 30
        hosts are laid out exactly as before).
        """
        sc = self.scenario
        site = sc.site
        start_ms = round(sc.start.timestamp() * 1000)
        fast_ms = int(sc.interval.total_seconds() * 1000)
        slow_ms = int(sc.slow_interval.total_seconds() * 1000)
        rng = stream(sc.seed, "schedule")
        jit_fast = max(1, fast_ms // 500)
        jit_slow = max(1, slow_ms // 500)
        fast_n, slow_n = self.fast.n, self.slow.n
        hosts = self.hosts

        def offset(interval_ms: int, share: float) -> int:
            return int(interval_ms * (share % 1.0))

        def host_scrapes(h: int, name: str, base: int, jitter: npt.NDArray[np.int64]) -> Iterator[_Item]:
            for i in range(fast_n):
                if hosts.scraped(h, i):
                    yield _Item(
                        start_ms + i * fast_ms + base + int(jitter[i]),
                        0,
                        f"{name}:9182",
                        "prometheus",
                        name,
                        "host",
                        h,
                        i,
                    )

        def lb_scrapes(k: int, vm_name: str, base: int, jitter: npt.NDArray[np.int64]) -> Iterator[_Item]:
            for i in range(fast_n):
                yield _Item(
                    start_ms + i * fast_ms + base + int(jitter[i]),
                    1,
                    f"{vm_name}:stats",
                    "haproxy-csv",
                    vm_name,
                    "lb",
                    k,
                    i,
                )

        def slow_items(
            base: int,
            jitter: npt.NDArray[np.int64],
            after: int,
            rank: int,
            target: str,
            kind: str,
            host: str,
            what: str,
            a: int,
        ) -> Iterator[_Item]:
            for j in range(slow_n):
                yield _Item(
                    start_ms + j * slow_ms + base + int(jitter[j]) + after, rank, target, kind, host, what, a, j
                )

        def neighbor_scrapes(h: int, name: str, base: int, jitter: npt.NDArray[np.int64]) -> Iterator[_Item]:
            down = self.slow_down[h]
            for j in range(slow_n):
                if not down[j]:
                    yield _Item(
                        start_ms + j * slow_ms + base + int(jitter[j]),
                        3,
                        f"{name}:neighbors",
                        "neighbors",
                        name,
                        "nbr",
                        h,
                        j,
                    )

        streams: list[Iterator[_Item]] = []
        for h, name in enumerate(site.hosts):
            base = offset(fast_ms, 0.010 + 0.013 * h)
            streams.append(host_scrapes(h, name, base, rng.integers(0, jit_fast, fast_n)))
        for k, vm in enumerate(self.lb_vms):
            base = offset(fast_ms, 0.20 + 0.013 * k)
            streams.append(lb_scrapes(k, vm.name, base, rng.integers(0, jit_fast, fast_n)))
        for c, cl in enumerate(site.clusters):
            base = offset(slow_ms, 0.40 + 0.013 * c)
            jitter = rng.integers(0, jit_slow, slow_n)
            server = f"https://{self.world.api_vips[cl.name]}:6443"
            streams.append(slow_items(base, jitter, 0, 2, server + "/api/v1/services", "k8s", cl.name, "svc", c))
            streams.append(slow_items(base, jitter, 41, 2, server + "/api/v1/nodes", "k8s", cl.name, "nodes", c))
        for h, name in enumerate(site.hosts):
            base = offset(slow_ms, 0.60 + 0.013 * h)
            streams.append(neighbor_scrapes(h, name, base, rng.integers(0, jit_slow, slow_n)))
        # AKS Arc clusters: MetalLB's CRDs (with the other lists) and its controller and speaker metrics
        for c, cl in enumerate(site.clusters):
            if not cl.arc:
                continue
            server = f"https://{self.world.api_vips[cl.name]}:6443/apis/metallb.io/v1beta1"
            base = offset(slow_ms, 0.45 + 0.013 * c)
            jitter = rng.integers(0, jit_slow, slow_n)
            for after, rank, target, kind, what in (
                (0, 2, server + "/ipaddresspools", "k8s", "pools"),
                (23, 2, server + "/l2advertisements", "k8s", "l2"),
                (310, 0, f"{cl.name}-metallb-controller:7472", "prometheus", "ctrl"),
                (350, 0, f"{cl.name}-metallb-speaker:7472", "prometheus", "spk"),
            ):
                streams.append(slow_items(base, jitter, after, rank, target, kind, cl.name, what, c))
        return heapq.merge(*streams, key=lambda it: (it.ms, it.rank, it.target))

    def records(self) -> Iterator[tuple[datetime, str, str, str, dict[str, str], str]]:
        """(ts, kind, target, host, labels, body) in time order."""
        sc = self.scenario
        site = sc.site
        net = site.network.name
        epoch = datetime(1970, 1, 1, tzinfo=sc.start.tzinfo)
        # Host-level records carry no labels: `cluster`/`network` name a Kubernetes cluster and a
        # cluster network in IP observations, which an HCI host's NICs and ARP table are not.
        host_labels: dict[str, str] = {}
        for it in self.plan():
            ts = epoch + timedelta(milliseconds=it.ms)
            if it.what == "host":
                yield ts, it.kind, it.target, it.host, host_labels, self.hosts.body(it.a, it.i)
            elif it.what == "lb":
                labels = {"cluster": self.lb_vms[it.a].cluster, "network": net}
                yield ts, it.kind, it.target, it.host, labels, self.lbs[it.a].body(it.i)
            elif it.what in ("pools", "l2", "ctrl", "spk"):
                cl = site.clusters[it.a]
                snap = self.world.at(float(self.slow.sec[it.i]))
                labels = {"cluster": cl.name, "network": net}
                rv = 400_000 + it.i * 31
                if it.what == "pools":
                    body = ip_address_pools(self.world, cl, rv)
                elif it.what == "l2":
                    body = l2_advertisements(self.world, cl, rv)
                elif it.what == "ctrl":
                    body = controller_metrics(cl, snap, 300 + snap.seq)
                else:
                    counts = self.arp_requests[cl.name]
                    for s in snap.services_of(cl.name):
                        counts[s.ip] = counts.get(s.ip, 0) + int(self.arp_rng.integers(0, 4))
                    body = speaker_metrics(self.world, cl, snap, counts)
                if it.what in ("pools", "l2"):
                    labels["resource_version"] = str(rv)
                yield ts, it.kind, it.target, it.host, labels, body
            elif it.what in ("svc", "nodes"):
                cl = site.clusters[it.a]
                lists = self.k8s[cl.name]
                sec = float(self.slow.sec[it.i])
                snap = self.world.at(sec)
                labels = {"cluster": cl.name, "network": net}
                if it.what == "svc":
                    body = lists.services(snap, ts)
                    labels["control_plane_endpoint"] = self.world.api_vips[cl.name]
                else:
                    body = lists.nodes(snap, ts)
                labels["resource_version"] = _resource_version(body)
                yield ts, it.kind, it.target, it.host, labels, body
            else:
                sec = float(self.slow.sec[it.i])
                body, events = self.neighbors.scrape(it.a, sec, ts)
                yield ts, it.kind, it.target, it.host, host_labels, body
                if events:
                    yield (
                        ts,
                        "event",
                        f"{it.host}:events",
                        it.host,
                        host_labels,
                        json.dumps(events, separators=(",", ":")),
                    )


def _resource_version(body: str) -> str:
    """The list's resourceVersion (the first ``resourceVersion`` in the body is the list's own)."""
    key = '"resourceVersion":"'
    at = body.index(key) + len(key)
    return body[at : body.index('"', at)]


def generate(scenario: Scenario) -> Iterator[RawRecord]:
    """Every capture record of the scenario, sorted by time (deterministic for a given seed)."""
    for ts, kind, target, host, labels, body in _Lab(scenario).records():
        yield RawRecord(ts=ts, kind=kind, target=target, host=host, labels=labels, body=body.encode("utf-8"))


def write_capture(scenario: Scenario, path: str | os.PathLike[str], *, level: int = 3) -> CaptureStats:
    """Write the scenario as a capture file (JSON Lines; zstd when the name ends in ``.zst``).

    Same line format as :mod:`collector.capture` (key order ts, kind, target, host, labels,
    body; labels sorted), written atomically: a temporary file is fsynced and renamed.
    """
    tee = CaptureTee(scenario, path, level=level)
    for _ in tee:
        pass
    assert tee.stats is not None
    return tee.stats


class CaptureTee:
    """Iterate a scenario's records while writing them to a capture file, in one pass.

    ``make demo`` replays the records as they are generated instead of writing the capture and
    reading it back (the JSON decode costs as much as the encode). The file appears, whole, only
    when the iteration is complete; ``stats`` is set then. An interrupted iteration leaves no file.
    """

    def __init__(self, scenario: Scenario, path: str | os.PathLike[str], *, level: int = 3) -> None:
        self.scenario = scenario
        self.path = Path(path)
        self.level = level
        self.stats: CaptureStats | None = None

    def __iter__(self) -> Iterator[RawRecord]:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        count = 0
        body_bytes = 0
        by_kind: dict[str, int] = {}
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        done = False
        try:
            with open(tmp, "wb") as raw:
                sink: Any = raw
                cctx = None
                if path.name.endswith(".zst"):
                    cctx = zstandard.ZstdCompressor(level=self.level, threads=0)
                    sink = cctx.stream_writer(raw, closefd=False)
                buf: list[str] = []
                size = 0
                for ts, kind, target, host, labels, body in _Lab(self.scenario).records():
                    line = dumps(
                        {
                            "ts": iso(ts),
                            "kind": kind,
                            "target": target,
                            "host": host,
                            "labels": dict(sorted(labels.items())),
                            "body": body,
                        }
                    )
                    buf.append(line)
                    buf.append("\n")
                    size += len(line)
                    count += 1
                    body_bytes += len(body)
                    by_kind[kind] = by_kind.get(kind, 0) + 1
                    if size > 4_000_000:
                        sink.write("".join(buf).encode("utf-8"))
                        buf, size = [], 0
                    yield RawRecord(
                        ts=ts, kind=kind, target=target, host=host, labels=labels, body=body.encode("utf-8")
                    )
                if buf:
                    sink.write("".join(buf).encode("utf-8"))
                if cctx is not None:
                    sink.flush(zstandard.FLUSH_FRAME)
                    sink.close()
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(tmp, path)
            done = True
        finally:
            if not done:
                tmp.unlink(missing_ok=True)
        self.stats = CaptureStats(path, count, body_bytes, path.stat().st_size, dict(sorted(by_kind.items())))


# ----------------------------------------------------------------------------------------------
# Ground truth and configuration


def ground_truth(scenario: Scenario) -> list[dict[str, Any]]:
    """The alerts a correct detector raises for the scripted incidents (not the confounders).

    Each entry: ``incident`` (script kind), ``kind`` (:class:`AlertKind` value), ``resource``
    (the keys that identify it: network/pool, network/ip, host/nic/priority), ``start`` and
    ``end`` (ISO-8601; ``end`` is None when it lasts past the scenario) and ``details`` (numbers
    a grader or a human can check the alert's evidence against).
    """
    world = World(scenario)
    sc, site = scenario, scenario.site
    net = site.network.name
    out: list[dict[str, Any]] = []

    def at(sec: float) -> str:
        return iso(sc.start + timedelta(seconds=sec))

    dur = sc.duration.total_seconds()
    pool = len(site.network.vip_pool())
    if site.ip_plan == "23h2":
        for x, y, shared in metallb_overlaps(sc):
            out.append(
                {
                    "incident": "metallb_pool_overlap",
                    "kind": AlertKind.IP_POOL_OVERLAP.value,
                    "resource": {"network": net, "pool": x, "other_pool": y},
                    "start": at(0.0),
                    "end": None,
                    "details": {"shared_addresses": shared, "why": "two clusters' MetalLB pools share addresses"},
                }
            )
    for inc in sc.incidents:
        if inc.start >= sc.duration:
            continue
        lo, hi = (x.total_seconds() for x in inc.window(sc.duration))
        if isinstance(inc, VipLeak) and site.cluster(inc.cluster).arc:
            out.append(_arc_leak_truth(sc, world, inc, net, at(lo), None if inc.end is None or hi >= dur else at(hi)))
        elif isinstance(inc, UpgradeBlocked):
            before = world.at(lo - 1e-3)
            after = world.at(lo)
            node_pool = len(site.network.node_pool())
            used_before = len({v.ip for v in before.vms})
            used_after = len({v.ip for v in after.vms})
            upgrade_ips = len(site.clusters) if site.ip_plan == "23h2" else 2 + 5 * (len(site.clusters) - 1)
            out.append(
                {
                    "incident": inc.kind.value,
                    "kind": AlertKind.NODE_POOL_EXHAUSTION.value,
                    "resource": {"network": net, "pool": "node"},
                    "start": at(lo),
                    "end": None,
                    "details": {
                        "pool_size": node_pool,
                        "used_before": used_before,
                        "used_after": used_after,
                        "free_after": node_pool - used_after,
                        "upgrade_ips_needed": upgrade_ips,
                        "cluster": inc.cluster,
                        "nodes_added": inc.nodes,
                    },
                }
            )
        elif isinstance(inc, VipLeak):
            used_start = len(world.vips_in_use(world.at(lo - 1e-3)))
            used_end = len(world.vips_in_use(world.snapshots[-1]))
            per_day = 86400.0 / inc.every.total_seconds()
            free_end = pool - used_end
            exhaustion = dur + free_end * inc.every.total_seconds() if inc.end is None else None
            out.append(
                {
                    "incident": inc.kind.value,
                    "kind": AlertKind.VIP_POOL_EXHAUSTION.value,
                    "resource": {"network": net, "pool": "vip"},
                    "start": at(lo),
                    "end": None if inc.end is None or hi >= dur else at(hi),
                    "details": {
                        "pool_size": pool,
                        "used_at_start": used_start,
                        "used_at_end": used_end,
                        "leak_per_day": per_day,
                        "cluster": inc.cluster,
                        "leaked_services": [
                            f"{s.namespace}/{s.name}" for _t, s in world.leaked if s.cluster == inc.cluster
                        ],
                        "projected_exhaustion": at(exhaustion) if exhaustion is not None else None,
                    },
                }
            )
        elif isinstance(inc, DuplicateLbIp):
            for t0, t1, ip, owner, intruder in world.duplicate_ips:
                if t0 != lo:
                    continue
                macs = sorted(
                    {
                        mac
                        for snap in world.snapshots
                        if snap.duplicate and snap.duplicate[0] == ip
                        for mac, _c in world.vip_claims(snap).get(ip, [])
                    }
                )
                out.append(
                    {
                        "incident": inc.kind.value,
                        "kind": AlertKind.DUPLICATE_IP.value,
                        "resource": {"network": net, "ip": ip},
                        "start": at(t0),
                        "end": None if t1 >= dur else at(t1),
                        "details": {
                            "owners": [f"{owner.cluster}/{owner.key}", f"{intruder.cluster}/{intruder.key}"],
                            "ports": [list(owner.ports), list(intruder.ports)],
                            "macs": macs,
                        },
                    }
                )
        elif isinstance(inc, PfcStorm):
            adapter = site.adapter_instances[inc.adapter]
            out.append(
                {
                    "incident": inc.kind.value,
                    "kind": AlertKind.EASTWEST_CONGESTION.value,
                    "resource": {"host": inc.host, "nic": adapter, "priority": str(site.pfc_priority)},
                    "start": at(lo),
                    "end": None if hi >= dur else at(hi),
                    "details": {
                        "role": "source",
                        "signals": [
                            "pfc.tx_pause_frames_total",
                            "rdma.cq_errors_total",
                            "rdma.failed_connection_attempts_total",
                            "smb.client latency",
                            "net.packets_received_discarded_total",
                        ],
                        # every host's SMB client shares on this server slow down too
                        "smb_server": inc.host,
                    },
                }
            )
            if inc.spread_to is not None:
                s0 = lo + inc.spread_delay.total_seconds()
                if s0 < hi:
                    out.append(
                        {
                            "incident": inc.kind.value,
                            "kind": AlertKind.EASTWEST_CONGESTION.value,
                            "resource": {"host": inc.spread_to, "priority": str(site.pfc_priority)},
                            "start": at(s0),
                            "end": None if hi >= dur else at(hi),
                            "details": {
                                "role": "spread",
                                "from_host": inc.host,
                                "signals": ["pfc.rx_pause_frames_total", "smb.client latency"],
                            },
                        }
                    )
    out.sort(key=lambda e: (e["start"], e["kind"]))
    return out


def _arc_leak_truth(sc: Scenario, world: World, inc: VipLeak, net: str, start: str, end: str | None) -> dict[str, Any]:
    """A leak on an AKS Arc cluster fills the MetalLB range its services come from (rule 23H2-LB)."""
    import ipaddress

    cluster = sc.site.cluster(inc.cluster)
    leaked = [s for _t, s in world.leaked if s.cluster == inc.cluster]
    first = ipaddress.ip_address(leaked[0].ip) if leaked else None
    pool, spec = next(
        ((p, a) for p in cluster.metallb_pools for a in p.addresses if first is not None and first in _spec_ips(a)),
        (cluster.metallb_pools[0], cluster.metallb_pools[0].addresses[0]),
    )
    ips = set(_spec_ips(spec))
    lo = inc.start.total_seconds()

    def used(snap_sec: float) -> int:
        snap = world.at(snap_sec)
        return len({s.ip for s in snap.services if ipaddress.ip_address(s.ip) in ips})

    return {
        "incident": inc.kind.value,
        "kind": AlertKind.VIP_POOL_EXHAUSTION.value,
        "resource": {"network": net, "pool": metallb_pool_name(cluster.name, pool.name, spec)},
        "start": start,
        "end": end,
        "details": {
            "pool_size": len(ips),
            "used_at_start": used(lo - 1e-3),
            "used_at_end": used(sc.duration.total_seconds()),
            "leak_per_day": 86400.0 / inc.every.total_seconds(),
            "cluster": inc.cluster,
            "leaked_services": [s.key for s in leaked],
        },
    }


def _spec_ips(spec: str) -> list[Any]:
    from lab.site import _spec_range

    return _spec_range(spec)


_CONFOUNDER_RULES: dict[type, tuple[list[str], list[str]]] = {
    BackupBurst: ([AlertKind.EASTWEST_CONGESTION.value], []),
    NodeScaleOut: ([AlertKind.NODE_POOL_EXHAUSTION.value, AlertKind.DUPLICATE_IP.value], []),
    IncastBursts: ([AlertKind.EASTWEST_CONGESTION.value], []),
    VipFailover: ([AlertKind.DUPLICATE_IP.value], []),
    HostReboot: ([AlertKind.EASTWEST_CONGESTION.value, AlertKind.METRIC_ANOMALY.value], [AlertKind.SOURCE_DOWN.value]),
    ScrapeGap: ([AlertKind.EASTWEST_CONGESTION.value, AlertKind.METRIC_ANOMALY.value], [AlertKind.SOURCE_DOWN.value]),
}


def confounder_windows(scenario: Scenario) -> list[dict[str, Any]]:
    """The confounders' windows with the alert kinds they must not raise (and may raise).

    A reboot or scrape gap is a real outage of the exporter, so ``source_down`` is allowed;
    nothing else about them is an incident. Windows are padded by 15 minutes after the end,
    where a detector's look-back still covers the event.
    """
    sc = scenario
    out: list[dict[str, Any]] = []
    pad = 900.0
    dur = sc.duration.total_seconds()
    for inc in sc.incidents:
        rule = _CONFOUNDER_RULES.get(type(inc))
        if rule is None or inc.start >= sc.duration:
            continue
        lo, hi = (x.total_seconds() for x in inc.window(sc.duration))
        if isinstance(inc, VipFailover):
            hi = lo
        resource: dict[str, str] = {}
        for attr in ("host", "cluster"):
            v = getattr(inc, attr, None)
            if v:
                resource[attr] = v
        out.append(
            {
                "confounder": inc.kind.value,
                "resource": resource,
                "start": iso(sc.start + timedelta(seconds=lo)),
                "end": iso(sc.start + timedelta(seconds=min(dur, hi + pad))),
                "must_not_raise": rule[0],
                "may_raise": rule[1],
            }
        )
    out.sort(key=lambda e: e["start"])
    return out


def network_config(scenario: Scenario) -> list[dict[str, Any]]:
    """The ``[[networks]]`` tables describing the site's cluster network (one dict per table).

    A 23h2 site adds ``control_plane_ips`` (cluster → its control-plane IP, drawn from the VIP
    range) and ``metallb_pools`` (every pool the operator declared; a pool with ``in_config=False``
    exists only in the cluster's CRDs, which hciwatch reads as inventory).
    """
    site = scenario.site
    n = site.network
    mgmt = site.management
    out: dict[str, Any] = {
        "name": n.name,
        "vip_pool_start": n.vip_pool_start,
        "vip_pool_end": n.vip_pool_end,
        "k8s_node_ip_pool_start": n.k8s_node_ip_pool_start,
        "k8s_node_ip_pool_end": n.k8s_node_ip_pool_end,
        "ip_address_prefix": n.ip_address_prefix,
        "gateway": n.gateway,
        "clusters": [c.name for c in site.clusters],
        "management_cluster": mgmt.name if mgmt is not None else None,
        "lb_ranges": [],
    }
    if site.ip_plan == "23h2":
        world = World(scenario)
        out["control_plane_ips"] = {c.name: world.api_vips[c.name] for c in site.clusters}
        out["metallb_pools"] = [
            {"cluster": c.name, "name": p.name, "addresses": list(p.addresses)}
            for c in site.clusters
            for p in c.metallb_pools
            if p.in_config
        ]
    return [out]


def metallb_pool_name(cluster: str, pool: str, spec: str) -> str:
    """hciwatch's name of one address range of a MetalLB pool (``analytics.networks``)."""
    return f"lb:{cluster}/{pool}:{spec.strip()}"


def metallb_overlaps(scenario: Scenario) -> list[tuple[str, str, int]]:
    """(pool, other pool, shared addresses) for every pair of MetalLB ranges of *different* clusters
    that share addresses, named and ordered as hciwatch's ``ip_pool_overlap`` names them."""
    import ipaddress

    ranges: list[tuple[str, str, set[int]]] = []
    for c in scenario.site.clusters:
        for p in c.metallb_pools:
            for spec in p.addresses:
                if "-" in spec:
                    a, b = (int(ipaddress.ip_address(x.strip())) for x in spec.split("-", 1))
                else:
                    net = ipaddress.ip_network(spec.strip())
                    a, b = int(net.network_address), int(net.broadcast_address)
                ranges.append((c.name, metallb_pool_name(c.name, p.name, spec), set(range(a, b + 1))))
    out = []
    for i, (ca, na, sa) in enumerate(ranges):
        for cb, nb, sb in ranges[i + 1 :]:
            shared = len(sa & sb)
            if ca != cb and shared:
                x, y = sorted([na, nb])
                out.append((x, y, shared))
    return out
