"""A synthetic fleet written into a lake through the real store: N sites, the same names everywhere.

Every site has the same network name (``akshci-vnet``), the same VIP pool and host names
(``hci-node-01`` …), and the same duplicate IP (``10.40.0.203`` claimed by two clusters) — the
case that made fingerprints ambiguous before sites were part of every identity. Rows are in the
real stored schemas (:mod:`collector.schema`); values are deterministic per site, so every engine
reading the lake must agree on every aggregate.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.config import CollectorSettings, NetworkSettings, SiteSettings
from collector.lake import Lake
from collector.schema import IpObservation, OwnerKind, Sample, ip_observations_table, samples_table
from collector.store import Store
from hciwatch.config import AppConfig
from hciwatch.fleet import write_site_manifest

T0 = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)  # crosses midnight: two date partitions
NETWORK = NetworkSettings(
    name="akshci-vnet",
    vip_pool_start="10.40.0.200",
    vip_pool_end="10.40.0.250",
    clusters=["mgmt", "workload-a", "workload-b"],
    management_cluster="mgmt",
)
DUP_IP = "10.40.0.203"


def site_name(i: int) -> str:
    return f"site-{i:03d}"


def write_site(lake: Lake, i: int, *, hosts: int = 4, minutes: int = 60, workdir: Path) -> int:
    """One site's hour of samples and IP observations into ``lake``; returns rows written."""
    site = site_name(i)
    store = Store(workdir / site, site=site, lake=lake, writer=f"w{i}")
    samples: list[Sample] = []
    for m in range(minutes):
        ts = T0 + timedelta(minutes=m)
        for h in range(hosts):
            host = f"hci-node-{h + 1:02d}"
            # a PFC storm on node 01 of every third site in the second half hour
            storm = i % 3 == 0 and h == 0 and m >= minutes // 2
            pause = float(m * (500 if storm else 2) + i)
            samples.append(Sample(ts, "windows", host, "pfc.rx_pause_frames_total", pause, (("nic", "SMB1"),)))
            samples.append(Sample(ts, "windows", host, "net.packets_received_discarded_total", float(m), ()))
    obs: list[IpObservation] = []
    for m in range(0, minutes, 5):
        ts = T0 + timedelta(minutes=m)
        for k in range(5 + i % 4):  # services holding VIPs: 5-8 per site
            obs.append(
                IpObservation(ts, f"10.40.0.{210 + k}", OwnerKind.SERVICE, f"ns/svc-{k}", "k8s", None, "workload-a")
            )
        obs.append(IpObservation(ts, DUP_IP, OwnerKind.SERVICE, "web/storefront", "k8s", None, "workload-a"))
        obs.append(IpObservation(ts, DUP_IP, OwnerKind.SERVICE, "payments/api", "k8s", None, "workload-b"))
    store.append("samples", samples_table(samples))
    store.append("ip_observations", ip_observations_table(obs))
    store.close()
    cfg = AppConfig(collector=CollectorSettings(site=SiteSettings(name=site), networks=[NETWORK]))
    write_site_manifest(lake, cfg)
    return len(samples) + len(obs)


def write_fleet(lake: Lake, sites: int, workdir: Path, **kw: int) -> int:
    """``sites`` sites into ``lake``; returns all rows written."""
    return sum(write_site(lake, i, workdir=workdir, **kw) for i in range(sites))


def record_site(lake: Lake, site: str, networks: list[NetworkSettings]) -> None:
    """What a site's instance records at start-up (``_sites/<site>.json``: its networks, default pools)."""
    write_site_manifest(lake, AppConfig(collector=CollectorSettings(site=SiteSettings(name=site), networks=networks)))


__all__ = ["DUP_IP", "NETWORK", "T0", "record_site", "site_name", "write_fleet", "write_site"]
