"""Scripted incidents and confounders, and the scenario that runs them on a site.

An incident is a small frozen dataclass: its kind, when it starts and ends (offsets from the
scenario start, so a script can be moved in time by changing ``Scenario.start``) and its
parameters. Incidents are what detectors must find; confounders are the harmless events that
look alarming to a naive detector (a nightly backup, a scale-out, a failover, a reboot, a
scrape gap) and must not raise the incident alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import ClassVar

from lab.site import SiteSpec


class IncidentKind(StrEnum):
    """Every scripted event the lab can play."""

    VIP_LEAK = "vip_leak"
    DUPLICATE_LB_IP = "duplicate_lb_ip"
    PFC_STORM = "pfc_storm"
    BACKUP_BURST = "backup_burst"
    NODE_SCALE_OUT = "node_scale_out"
    VIP_FAILOVER = "vip_failover"
    HOST_REBOOT = "host_reboot"
    SCRAPE_GAP = "scrape_gap"
    UPGRADE_BLOCKED = "upgrade_blocked"
    INCAST_BURSTS = "incast_bursts"


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    """Base of every scripted event: ``start``/``end`` are offsets from the scenario start.

    ``end=None`` means "until the scenario ends" (or, for one-shot events, the event has no
    duration).
    """

    kind: ClassVar[IncidentKind]
    confounder: ClassVar[bool] = False
    start: timedelta
    end: timedelta | None = None

    def __post_init__(self) -> None:
        if self.start < timedelta(0):
            raise ValueError(f"{self.kind}: start must not be negative, got {self.start}")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"{self.kind}: end ({self.end}) must be after start ({self.start})")

    def window(self, duration: timedelta) -> tuple[timedelta, timedelta]:
        """The active window, clipped to the scenario."""
        end = self.end if self.end is not None else duration
        return min(self.start, duration), min(end, duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class VipLeak(Incident):
    """LoadBalancer services created every ``every`` in ``cluster`` and never deleted.

    Modelled on CI preview environments that nobody tears down: each takes the lowest free VIP,
    gets almost no traffic, and the VIP pool heads for exhaustion.
    """

    kind: ClassVar[IncidentKind] = IncidentKind.VIP_LEAK
    cluster: str = "workload-a"
    every: timedelta = timedelta(hours=3)
    namespace: str = "ci-previews"
    first_pr: int = 4101

    def __post_init__(self) -> None:
        Incident.__post_init__(self)
        if self.every < timedelta(minutes=1):
            raise ValueError(f"vip_leak: every must be at least one minute, got {self.every}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DuplicateLbIp(Incident):
    """Two workload clusters on one cluster network handed the same LoadBalancer IP.

    The documented AKS-HCI case (seeds: "Container networking concepts"): a service on a
    *different port* deployed in ``cluster`` receives the IP of a service in ``shared_with``.
    Both clusters' HAProxy VMs then answer ARP for it (neighbour rows flip-flop between their
    MACs) until ``end``, when the service is redeployed and gets an IP of its own.

    ``events`` adds Windows Tcpip 4199 records on the hosts whose neighbour cache saw the MAC
    change. Off by default: Windows logs 4199 only for its *own* addresses, and here both
    claimants are Linux VMs, so a real host would not log it; turn it on to exercise the
    event path.
    """

    kind: ClassVar[IncidentKind] = IncidentKind.DUPLICATE_LB_IP
    cluster: str = "workload-b"
    shared_with: str = "workload-a"
    namespace: str = "payments"
    service: str = "api-gateway"
    port: int = 8443
    events: bool = False

    def __post_init__(self) -> None:
        Incident.__post_init__(self)
        if self.end is None:
            raise ValueError("duplicate_lb_ip: needs an end (when the workload is redeployed)")
        if self.cluster == self.shared_with:
            raise ValueError("duplicate_lb_ip: cluster and shared_with must be different clusters")


@dataclass(frozen=True, slots=True, kw_only=True)
class PfcStorm(Incident):
    """A PFC pause storm on one host's storage adapter (optionally spreading to a second host).

    The storm host's adapter sends pause frames on the lossless priority at 10^4/s (its receive
    path is stalled), RDMA CQ errors and failed connection attempts rise, SMB latency to and
    from that host goes from ~1 ms to tens of ms, and NIC discards rise. With ``spread_to`` the
    switch's back-pressure reaches that host ``spread_delay`` later: its received pause frames
    and its SMB latency rise too.
    """

    kind: ClassVar[IncidentKind] = IncidentKind.PFC_STORM
    host: str = "hci-node-02"
    adapter: int = 0
    spread_to: str | None = "hci-node-03"
    spread_delay: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        Incident.__post_init__(self)
        if self.end is None:
            raise ValueError("pfc_storm: needs an end")
        if self.spread_to == self.host:
            raise ValueError("pfc_storm: spread_to must be another host")


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupBurst(Incident):
    """Nightly backup: several times the usual RDMA/SMB throughput in large sequential reads,
    with no pause-frame or latency rise (a confounder for congestion detectors)."""

    kind: ClassVar[IncidentKind] = IncidentKind.BACKUP_BURST
    confounder: ClassVar[bool] = True
    hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        Incident.__post_init__(self)
        if self.end is None:
            raise ValueError("backup_burst: needs an end")


@dataclass(frozen=True, slots=True, kw_only=True)
class IncastBursts(Incident):
    """A host whose adapters routinely burst: healthy, but noisier than its peers (shallower
    buffers on another NIC model, an incast-heavy workload). About ``per_hour`` times an hour, for
    2-5 minutes, its received and sent PFC pauses rise 5-20x and so do its received discards —
    the host's normal for the whole window, not an incident (a confounder for congestion
    detectors that judge every host against one fixed bar)."""

    kind: ClassVar[IncidentKind] = IncidentKind.INCAST_BURSTS
    confounder: ClassVar[bool] = True
    host: str = "hci-node-02"
    per_hour: float = 2.0

    def __post_init__(self) -> None:
        Incident.__post_init__(self)
        if not self.per_hour > 0:
            raise ValueError(f"incast_bursts: per_hour must be positive, got {self.per_hour}")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeScaleOut(Incident):
    """A node pool scaled out by ``nodes`` workers at ``start`` and back in at ``end``."""

    kind: ClassVar[IncidentKind] = IncidentKind.NODE_SCALE_OUT
    confounder: ClassVar[bool] = True
    cluster: str = "workload-b"
    nodes: int = 3

    def __post_init__(self) -> None:
        Incident.__post_init__(self)
        if self.nodes < 1:
            raise ValueError("node_scale_out: nodes must be >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class UpgradeBlocked(Incident):
    """A node pool scaled out by ``nodes`` workers at ``start`` and kept: the k8s node IP pool (on
    AKS Arc, the logical network's IP pool) is left with fewer free addresses than the clusters'
    upgrade IPs (§5.2 23H2-UPG / 22H2-UPD-*), so the next upgrade cannot fit. Not a confounder:
    ``node_pool_exhaustion`` (below the upgrade reserve) is the alert a correct detector raises."""

    kind: ClassVar[IncidentKind] = IncidentKind.UPGRADE_BLOCKED
    cluster: str = "workload-b"
    nodes: int = 1

    def __post_init__(self) -> None:
        Incident.__post_init__(self)
        if self.nodes < 1:
            raise ValueError("upgrade_blocked: nodes must be >= 1")
        if self.end is not None:
            raise ValueError("upgrade_blocked: the added nodes stay (no end)")


@dataclass(frozen=True, slots=True, kw_only=True)
class VipFailover(Incident):
    """keepalived moves a workload cluster's VIPs to its standby HAProxy VM at ``start``: one
    legitimate MAC change per VIP (gratuitous ARP), never alternating."""

    kind: ClassVar[IncidentKind] = IncidentKind.VIP_FAILOVER
    confounder: ClassVar[bool] = True
    cluster: str = "workload-b"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostReboot(Incident):
    """A host reboots (e.g. patching): no scrapes for ``downtime``, then every counter restarts
    from 0; its peers see their RDMA/SMB connections to it drop and come back."""

    kind: ClassVar[IncidentKind] = IncidentKind.HOST_REBOOT
    confounder: ClassVar[bool] = True
    host: str = "hci-node-04"
    downtime: timedelta = timedelta(minutes=8)

    def window(self, duration: timedelta) -> tuple[timedelta, timedelta]:
        return min(self.start, duration), min(self.start + self.downtime, duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeGap(Incident):
    """The collector cannot reach one host's exporter for a while; its counters keep running."""

    kind: ClassVar[IncidentKind] = IncidentKind.SCRAPE_GAP
    confounder: ClassVar[bool] = True
    host: str = "hci-node-03"

    def __post_init__(self) -> None:
        Incident.__post_init__(self)
        if self.end is None:
            raise ValueError("scrape_gap: needs an end")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A site, a time range, scrape intervals, a script of incidents and a seed.

    ``interval`` is the scrape interval of the hosts' windows_exporter and the HAProxy VMs;
    ``slow_interval`` that of the Kubernetes lists and the neighbour tables.
    """

    site: SiteSpec = field(default_factory=SiteSpec)
    start: datetime = datetime(2026, 11, 16, tzinfo=UTC)
    duration: timedelta = timedelta(hours=48)
    interval: timedelta = timedelta(seconds=30)
    incidents: tuple[Incident, ...] = ()
    seed: int = 7
    slow_interval: timedelta = timedelta(seconds=60)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=UTC))
        else:
            object.__setattr__(self, "start", self.start.astimezone(UTC))
        if self.start.microsecond % 1000:
            raise ValueError("scenario start must be whole milliseconds")
        if self.duration <= timedelta(0):
            raise ValueError(f"scenario duration must be positive, got {self.duration}")
        for name in ("interval", "slow_interval"):
            iv: timedelta = getattr(self, name)
            if iv < timedelta(seconds=1) or iv.total_seconds() % 1:
                raise ValueError(f"scenario {name} must be whole seconds >= 1 s, got {iv}")
        if self.duration < self.slow_interval:
            raise ValueError("scenario duration must cover at least one slow_interval")
        object.__setattr__(self, "incidents", tuple(self.incidents))
        hosts = set(self.site.hosts)
        clusters = {c.name: c for c in self.site.clusters}
        for i, inc in enumerate(self.incidents):
            where = f"incidents[{i}] ({inc.kind})"
            for attr in ("host", "spread_to"):
                h = getattr(inc, attr, None)
                if h is not None and h not in hosts:
                    raise ValueError(f"{where}: {attr} {h!r} is not a site host ({', '.join(sorted(hosts))})")
            for h in getattr(inc, "hosts", ()):
                if h not in hosts:
                    raise ValueError(f"{where}: host {h!r} is not a site host ({', '.join(sorted(hosts))})")
            for attr in ("cluster", "shared_with"):
                c = getattr(inc, attr, None)
                if c is None:
                    continue
                if c not in clusters:
                    raise ValueError(f"{where}: {attr} {c!r} is not a site cluster ({', '.join(clusters)})")
                if clusters[c].management:
                    raise ValueError(f"{where}: {attr} {c!r} is the management cluster; use a workload one")
            if isinstance(inc, VipFailover) and clusters[inc.cluster].lb_vms < 2:
                raise ValueError(
                    f"{where}: cluster {inc.cluster} has one load-balancer VM; a failover needs lb_vms >= 2"
                )
            if isinstance(inc, PfcStorm) and not 0 <= inc.adapter < len(self.site.rdma_adapters):
                raise ValueError(f"{where}: adapter must be 0..{len(self.site.rdma_adapters) - 1}")
            if isinstance(inc, DuplicateLbIp):
                shared = clusters[inc.shared_with]
                if not any(inc.port not in s.ports for s in shared.services):
                    raise ValueError(
                        f"{where}: {inc.shared_with} has no LoadBalancer service on a port other "
                        f"than {inc.port} to collide with"
                    )

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    def of_kind(self, kind: IncidentKind) -> list[Incident]:
        return [i for i in self.incidents if i.kind is kind]


def demo_scenario(seed: int = 7) -> Scenario:
    """48 h of the default 4-host site with every incident and every confounder.

    Timeline (UTC; the site is UTC+1): nightly backups 00:00–02:00 both nights; the VIP leak
    from 02:00 (one preview service every 3 h); a host reboot at 05:30; a node-pool scale-out
    09:00–15:00; a 15-minute scrape gap at 11:00; the duplicate LoadBalancer IP 17:00–20:00;
    the keepalived failover at 28:00; the PFC storm 33:00–33:45 spreading to a second host.
    """
    h = timedelta(hours=1)
    incidents: tuple[Incident, ...] = (
        BackupBurst(start=0 * h, end=2 * h),
        BackupBurst(start=24 * h, end=26 * h),
        VipLeak(start=2 * h),
        HostReboot(start=timedelta(hours=5, minutes=30), host="hci-node-04"),
        NodeScaleOut(start=9 * h, end=15 * h, cluster="workload-b", nodes=3),
        ScrapeGap(start=11 * h, end=timedelta(hours=11, minutes=15), host="hci-node-03"),
        DuplicateLbIp(start=17 * h, end=20 * h),
        VipFailover(start=28 * h, cluster="workload-b"),
        PfcStorm(start=33 * h, end=timedelta(hours=33, minutes=45), host="hci-node-02", spread_to="hci-node-03"),
    )
    return Scenario(
        site=SiteSpec(),
        start=datetime(2026, 11, 16, tzinfo=UTC),
        duration=48 * h,
        interval=timedelta(seconds=30),
        incidents=incidents,
        seed=seed,
    )


def compact_scenario(seed: int = 7, hours: float = 6.0) -> Scenario:
    """Every incident and confounder squeezed into a few hours (fast replay tests).

    Same site as the demo; the script is scaled to ``hours`` (default 6): backup, leak (one
    service per ``hours``/6), reboot, scale-out, scrape gap, duplicate IP with Tcpip events on,
    failover and a PFC storm that spreads.
    """
    if hours < 1.0:
        raise ValueError(f"compact_scenario needs at least 1 hour, got {hours}")
    u = timedelta(hours=hours) / 6  # one "unit" = an hour of the 6-hour script

    def t(units: float) -> timedelta:
        return timedelta(seconds=round((u * units).total_seconds()))

    incidents: tuple[Incident, ...] = (
        BackupBurst(start=t(0), end=t(0.67)),
        VipLeak(start=t(0.5), every=t(1)),
        HostReboot(start=t(1), host="hci-node-04"),
        NodeScaleOut(start=t(1.5), end=t(3), cluster="workload-b", nodes=3),
        ScrapeGap(start=t(2), end=t(2.25), host="hci-node-03"),
        DuplicateLbIp(start=t(3), end=t(4), events=True),
        VipFailover(start=t(4.25), cluster="workload-b"),
        PfcStorm(start=t(4.5), end=t(5.25), host="hci-node-02", spread_to="hci-node-03", spread_delay=t(0.1)),
    )
    return Scenario(
        site=SiteSpec(),
        start=datetime(2026, 11, 17, 8, tzinfo=UTC),
        duration=timedelta(hours=hours),
        interval=timedelta(seconds=30),
        incidents=incidents,
        seed=seed,
    )
