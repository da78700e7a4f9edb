"""A simulated fleet: N Azure Local sites written into one lake, one site and one time slice at a time.

Why a second generator next to :mod:`lab.generate`: the scenario lab renders a site's raw
exporter text (hundreds of series per host, parsed by the real pipeline), which is right for
detector tests but costs minutes per 500-host site and held 12 GB in an earlier bench. A fleet
bench needs the *lake* a fleet of instances leaves behind — 200 sites, 5,000 HCI hosts — so this
module writes rows in the stored schemas (:mod:`collector.schema`) directly, vectorised, and never
holds more than one slice of one site (``slice_minutes`` of rows) in memory.

What varies between sites (seeded, deterministic — the same plan and the same bytes every run):

* **host count**: a skewed spread (a few big sites, many small ones), 2–64 hosts, summing to the
  fleet's total; host names repeat at every site (``hci-node-01``…) as they do in real fleets;
* **IP plan**: AKS on Azure Local 22H2 (VIP pool + k8s node pool, a management cluster) or AKS Arc
  23H2 (logical-network IP pool, control-plane IPs, MetalLB pools); one site in four reuses the
  reference plan ``10.40.0.0/24`` verbatim (copy-pasted plans are why every identity carries the site);
* **NIC model**: Mellanox ConnectX-6 Dx (PFC counters from the WinOF-2 QoS set), Intel E810 or
  Broadcom (RDMA and discard counters, no PFC pause counters), so series per host differ;
* **incidents** at some sites, listed in :attr:`FleetSite.incidents` as ground truth: a PFC storm
  on one host, a duplicate LoadBalancer IP claimed by two clusters, a VIP pool filling up.

Counters are closed-form in absolute time (``value = rate × t + storm``), so slices need no state
and any slice of any site can be regenerated alone.
"""

from __future__ import annotations

import ipaddress
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from collector.config import MetalLbPoolSettings, NetworkSettings
from collector.lake import Lake
from collector.schema import (
    IP_OBSERVATIONS_SCHEMA,
    SAMPLES_SCHEMA,
    TS_TYPE,
    IpObservation,
    OwnerKind,
    ip_observations_table,
)
from collector.store import Store
from lab.rand import stream
from lab.site import pdh_instance

FLEET_START = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)  # crosses midnight: a closed date and an open one
MAX_HOSTS_PER_SITE = 64
MIN_HOSTS_PER_SITE = 2

NIC_MODELS = (
    "Mellanox ConnectX-6 Dx Adapter",
    "Intel(R) Ethernet Network Adapter E810-XXVDA2",
    "Broadcom NetXtreme E-Series Dual-port 25Gb OCP 3.0 Ethernet",
)
PFC_MODEL = NIC_MODELS[0]  # only the Mellanox WinOF-2 driver exposes per-priority pause counters

# per NIC: (metric, normal rate per second); PFC counters only on PFC_MODEL adapters
_NIC_COUNTERS = (
    ("rdma.inbound_bytes_total", 2.0e8),
    ("rdma.outbound_bytes_total", 1.8e8),
    ("rdma.cq_errors_total", 0.0),
    ("net.packets_received_discarded_total", 0.05),
)
_PFC_COUNTERS = (("pfc.rx_pause_frames_total", 1.5), ("pfc.tx_pause_frames_total", 0.8))
_HOST_COUNTERS = (("smb.client.request_seconds_total", 0.9), ("smb.client.requests_total", 1500.0))
STORM_PAUSES_PER_S = 4000.0

REFERENCE_PREFIX = "10.40.0.0/24"


@dataclass(frozen=True, slots=True)
class FleetIncident:
    """One scripted incident at a site (ground truth for fleet queries).

    ``kind``: ``pfc-storm`` (``host`` pauses at :data:`STORM_PAUSES_PER_S` on every NIC from
    ``start`` to the end), ``duplicate-ip`` (``ip`` claimed by two clusters' Services throughout)
    or ``vip-leak`` (Services in the VIP pool grow by one per 5 minutes from ``start`` on).
    """

    kind: str
    start: timedelta
    host: str = ""
    ip: str = ""


@dataclass(frozen=True, slots=True)
class FleetSite:
    """One site of the fleet: its size, IP plan, NIC model and incidents."""

    name: str
    hosts: int
    ip_plan: str
    nic_model: str
    prefix: str
    clusters: tuple[str, ...]
    services: int  # LoadBalancer Services holding VIPs at the start
    incidents: tuple[FleetIncident, ...] = field(default=())

    @property
    def host_names(self) -> list[str]:
        return [f"hci-node-{h + 1:02d}" for h in range(self.hosts)]

    @property
    def has_pfc(self) -> bool:
        return self.nic_model == PFC_MODEL

    def ip(self, offset: int) -> str:
        """The address ``offset`` into the site's prefix (the IP plans are laid out by offset)."""
        return str(ipaddress.ip_network(self.prefix).network_address + offset)

    @property
    def network_name(self) -> str:
        return "akshci-vnet" if self.ip_plan == "22h2" else "arc-lnet"

    def vip_pool(self) -> tuple[str, str]:
        """First and last address Services take VIPs from (the VIP pool, or the MetalLB pool on 23H2)."""
        return (self.ip(200), self.ip(250))

    def networks(self) -> list[NetworkSettings]:
        """The site's ``[[networks]]`` (what its instance records in ``_sites/<site>.json``)."""
        lo, hi = self.vip_pool()
        if self.ip_plan == "22h2":
            return [
                NetworkSettings(
                    name=self.network_name,
                    vip_pool_start=lo,
                    vip_pool_end=hi,
                    k8s_node_ip_pool_start=self.ip(100),
                    k8s_node_ip_pool_end=self.ip(180),
                    ip_address_prefix=self.prefix,
                    clusters=list(self.clusters),
                    management_cluster=self.clusters[0],
                )
            ]
        return [
            NetworkSettings(
                name=self.network_name,
                vip_pool_start=self.ip(20),
                vip_pool_end=self.ip(27),
                k8s_node_ip_pool_start=self.ip(100),
                k8s_node_ip_pool_end=self.ip(180),
                ip_address_prefix=self.prefix,
                clusters=list(self.clusters),
                control_plane_ips={c: self.ip(20 + k) for k, c in enumerate(self.clusters)},
                metallb_pools=[MetalLbPoolSettings(cluster=self.clusters[1], name="lb", addresses=[f"{lo}-{hi}"])],
            )
        ]

    def incident(self, kind: str) -> FleetIncident | None:
        return next((i for i in self.incidents if i.kind == kind), None)


def _host_counts(sites: int, hosts: int, rng: np.random.Generator) -> list[int]:
    """A skewed split of ``hosts`` over ``sites`` (each within the per-site bounds), summing exactly."""
    if not MIN_HOSTS_PER_SITE * sites <= hosts <= MAX_HOSTS_PER_SITE * sites:
        raise ValueError(
            f"{hosts} hosts cannot be split over {sites} sites of {MIN_HOSTS_PER_SITE}..{MAX_HOSTS_PER_SITE} hosts each"
        )
    w = rng.lognormal(0.0, 0.7, sites)
    counts = np.clip(np.round(w / w.sum() * hosts), MIN_HOSTS_PER_SITE, MAX_HOSTS_PER_SITE).astype(int)
    i = 0
    while (diff := hosts - int(counts.sum())) != 0:  # fix rounding, one host at a time, round robin
        k = i % sites
        if diff > 0 and counts[k] < MAX_HOSTS_PER_SITE:
            counts[k] += 1
        elif diff < 0 and counts[k] > MIN_HOSTS_PER_SITE:
            counts[k] -= 1
        i += 1
    return [int(c) for c in counts]


def fleet_plan(sites: int, hosts: int, *, hours: float = 1.0, seed: int = 15) -> list[FleetSite]:
    """The fleet: ``sites`` sites with ``hosts`` HCI hosts in all (see the module docstring)."""
    if sites < 1:
        raise ValueError("a fleet needs at least one site")
    rng = stream(seed, "fleet")
    counts = _host_counts(sites, hosts, rng)
    half = timedelta(hours=hours / 2)
    out = []
    for i, n in enumerate(counts):
        r = stream(seed, "fleet-site", i)
        plan = "23h2" if r.random() < 0.3 else "22h2"
        prefix = REFERENCE_PREFIX if i % 4 == 0 else f"172.{16 + i // 250}.{i % 250}.0/24"
        nic = NIC_MODELS[int(r.choice(3, p=[0.5, 0.35, 0.15]))]
        clusters = ("mgmt", "workload-a", "workload-b") if plan == "22h2" else ("arc-prod", "arc-dev")
        services = int(r.integers(4, 16))
        incidents: list[FleetIncident] = []
        if nic == PFC_MODEL and r.random() < 0.2:
            incidents.append(FleetIncident("pfc-storm", half, host=f"hci-node-{int(r.integers(0, n)) + 1:02d}"))
        if r.random() < 0.1:
            incidents.append(FleetIncident("duplicate-ip", timedelta(0), ip=_offset_ip(prefix, 240)))
        # no leak where an IP is duplicated: the growing pool would reach the duplicated address
        if (not incidents or incidents[-1].kind != "duplicate-ip") and r.random() < 0.06:
            incidents.append(FleetIncident("vip-leak", half))
        out.append(FleetSite(f"site-{i:03d}", n, plan, nic, prefix, clusters, services, tuple(incidents)))
    return out


def _offset_ip(prefix: str, offset: int) -> str:
    return str(ipaddress.ip_network(prefix).network_address + offset)


# -- rows ------------------------------------------------------------------------------------------


def _series(site: FleetSite) -> tuple[list[str], list[str], list[str], npt.NDArray[np.float64]]:
    """Per series of one site: host, metric, nic label ('' for host-level), rate per second."""
    hosts: list[str] = []
    metrics: list[str] = []
    nics: list[str] = []
    rates: list[float] = []
    per_nic = _NIC_COUNTERS + (_PFC_COUNTERS if site.has_pfc else ())
    adapters = [pdh_instance(site.nic_model), pdh_instance(site.nic_model + " #2")]
    rng = stream(hash_site(site.name), "rates")
    for host in site.host_names:
        for nic in adapters:
            for metric, rate in per_nic:
                hosts.append(host)
                metrics.append(metric)
                nics.append(nic)
                rates.append(rate * float(rng.uniform(0.5, 1.5)))
        for metric, rate in _HOST_COUNTERS:
            hosts.append(host)
            metrics.append(metric)
            nics.append("")
            rates.append(rate * float(rng.uniform(0.8, 1.2)))
    return hosts, metrics, nics, np.array(rates)


def hash_site(name: str) -> int:
    """A stable integer per site name (seeds its own random streams)."""
    return zlib.crc32(name.encode())


def _dict_col(indices: npt.NDArray[np.int32], values: list[str]) -> pa.DictionaryArray[Any, Any]:
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(values, pa.string()))


def sample_slices(
    site: FleetSite, *, start: datetime, hours: float, interval_s: float, slice_minutes: float
) -> Iterator[pa.Table]:
    """The site's samples, one table per ``slice_minutes`` (bounded memory whatever the site's size)."""
    hosts, metrics, nics, rates = _series(site)
    n_series = len(hosts)
    host_values = sorted(set(hosts))
    metric_values = sorted(set(metrics))
    host_idx = np.array([host_values.index(h) for h in hosts], np.int32)
    metric_idx = np.array([metric_values.index(m) for m in metrics], np.int32)
    label_rows = [[("nic", n)] if n else [] for n in nics]
    labels = pa.array(label_rows, pa.map_(pa.string(), pa.string()))
    storm = site.incident("pfc-storm")
    storm_mask = np.array(
        [
            storm is not None and h == storm.host and m == "pfc.rx_pause_frames_total"
            for h, m in zip(hosts, metrics, strict=True)
        ]
    )
    storm_start = storm.start.total_seconds() if storm is not None else 0.0
    phase = stream(hash_site(site.name), "phase").uniform(0.0, 1.0, n_series)
    ticks = int(hours * 3600 / interval_s)
    per_slice = max(1, int(slice_minutes * 60 / interval_s))
    t0_ms = int(start.timestamp() * 1000)
    for lo in range(0, ticks, per_slice):
        tick = np.arange(lo, min(lo + per_slice, ticks), dtype=np.int64)
        t = tick * interval_s  # seconds since start, per tick
        n = len(tick) * n_series
        values = np.floor(np.outer(t, rates) + phase)  # ticks × series: cumulative counters
        if storm_mask.any():
            values[:, storm_mask] += np.floor(np.maximum(t - storm_start, 0.0) * STORM_PAUSES_PER_S)[:, None]
        ts_ms = np.repeat(t0_ms + (t * 1000).astype(np.int64), n_series)
        s_idx = np.tile(np.arange(n_series), len(tick))
        yield pa.table(
            {
                "ts": pa.array(ts_ms, pa.int64()).cast(TS_TYPE),
                "source": _dict_col(np.zeros(n, np.int32), ["windows"]),
                "host": _dict_col(host_idx[s_idx], host_values),
                "metric": _dict_col(metric_idx[s_idx], metric_values),
                "labels": labels.take(s_idx),
                "value": pa.array(values.reshape(-1)),
            },
            schema=SAMPLES_SCHEMA,
        )


def ip_observations(site: FleetSite, *, start: datetime, hours: float, slow_s: float = 300.0) -> Iterator[pa.Table]:
    """The site's IP observations, one table per slow tick (Kubernetes lists every ``slow_s``)."""
    ticks = int(hours * 3600 / slow_s)
    lo_vip = ipaddress.ip_address(site.vip_pool()[0])
    pool_size = int(ipaddress.ip_address(site.vip_pool()[1])) - int(lo_vip) + 1
    dup = site.incident("duplicate-ip")
    leak = site.incident("vip-leak")
    workloads = site.clusters[1:] if site.ip_plan == "22h2" else site.clusters
    for k in range(ticks):
        elapsed = k * slow_s
        ts = start + timedelta(seconds=elapsed)
        services = site.services
        if leak is not None and elapsed >= leak.start.total_seconds():
            services = min(
                pool_size - len(site.clusters) - 1, services + 1 + int((elapsed - leak.start.total_seconds()) // 300)
            )
        obs: list[IpObservation] = []
        for s in range(services):
            cluster = workloads[s % len(workloads)]
            obs.append(IpObservation(ts, str(lo_vip + s), OwnerKind.SERVICE, f"ns{s}/svc-{s}", "k8s", None, cluster))
        for c, cluster in enumerate(site.clusters):
            if site.ip_plan == "22h2":
                vip = site.ip(250 - c)  # API-server VIPs from the top of the VIP pool
                obs.append(IpObservation(ts, vip, OwnerKind.CONTROL_PLANE, cluster, "k8s", None, cluster))
            for n in range(3):
                ip = site.ip(100 + c * 10 + n)
                obs.append(IpObservation(ts, ip, OwnerKind.NODE, f"{cluster}-node-{n}", "k8s", None, cluster))
        if dup is not None:
            a, b = workloads[0], workloads[-1] if len(workloads) > 1 else workloads[0]
            obs.append(IpObservation(ts, dup.ip, OwnerKind.SERVICE, "web/storefront", "k8s", None, a))
            obs.append(IpObservation(ts, dup.ip, OwnerKind.SERVICE, "payments/api", "k8s", None, b))
        yield ip_observations_table(obs).cast(IP_OBSERVATIONS_SCHEMA)


# -- writing one site --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteIngest:
    """What one site's instance wrote and how long its store took (generation excluded)."""

    site: str
    hosts: int
    samples: int
    ip_observations: int
    files: int
    bytes: int
    open_s: float  # Store start-up (empty partition files, catalog)
    write_s: float  # append + flush of every slice

    @property
    def rows(self) -> int:
        return self.samples + self.ip_observations


def write_site(
    lake: Lake,
    site: FleetSite,
    workdir: Path,
    *,
    start: datetime = FLEET_START,
    hours: float = 1.0,
    interval_s: float = 30.0,
    slice_minutes: float = 15.0,
) -> SiteIngest:
    """Write one site's data into ``lake`` as its own instance would: its own store and writer id,
    one flush per slice (so a site leaves ``hours × 60 / slice_minutes`` files per table and date)."""
    t = time.perf_counter()
    store = Store(workdir / site.name, site=site.name, lake=lake, writer=f"w-{site.name}", auto_flush=False)
    open_s = time.perf_counter() - t
    write_s = 0.0
    n_samples = n_obs = 0
    obs_iter = ip_observations(site, start=start, hours=hours)
    obs_per_slice = max(1, int(slice_minutes * 60 / 300))
    for samples in sample_slices(site, start=start, hours=hours, interval_s=interval_s, slice_minutes=slice_minutes):
        obs = [tbl for _, tbl in zip(range(obs_per_slice), obs_iter, strict=False)]
        t = time.perf_counter()
        store.append("samples", samples)
        for tbl in obs:
            store.append("ip_observations", tbl)
        store.flush()
        write_s += time.perf_counter() - t
        n_samples += samples.num_rows
        n_obs += sum(tbl.num_rows for tbl in obs)
        del samples, obs
    for tbl in obs_iter:  # observations past the last sample slice (hours not a multiple of slices)
        store.append("ip_observations", tbl)
        n_obs += tbl.num_rows
    t = time.perf_counter()
    store.close()
    write_s += time.perf_counter() - t
    return SiteIngest(
        site.name,
        site.hosts,
        n_samples,
        n_obs,
        store.stats.files_written,
        store.stats.bytes_written,
        open_s,
        write_s,
    )


__all__ = [
    "FLEET_START",
    "NIC_MODELS",
    "PFC_MODEL",
    "STORM_PAUSES_PER_S",
    "FleetIncident",
    "FleetSite",
    "SiteIngest",
    "fleet_plan",
    "ip_observations",
    "sample_slices",
    "write_site",
]
