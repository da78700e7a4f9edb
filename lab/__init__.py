"""A simulated Azure Local site that emits real-format telemetry with scripted incidents.

``make demo``, the replay tests and the analytics scenario library feed on it. A
:class:`Scenario` (a :class:`SiteSpec`, a time range, scrape intervals, a script of
:class:`Incident` objects and a seed) becomes time-sorted capture records
(:class:`collector.schema.RawRecord`), byte-identical for the same seed:

* ``prometheus``: each HCI host's windows_exporter (net, smbclient, performancecounter for
  RDMA Activity and Mellanox WinOF-2 Port QoS) every ``interval``;
* ``haproxy-csv``: each workload cluster's HAProxy VM(s), ``show stat`` 2.6, every ``interval``;
* ``k8s``: each cluster's ServiceList and NodeList every ``slow_interval``;
* ``neighbors``: each host's ARP table every ``slow_interval``;
* on an AKS Arc (``ip_plan = "23h2"``) site, each cluster's MetalLB ``IPAddressPoolList`` and
  ``L2AdvertisementList`` (``k8s``) and its controller's and speaker's metrics (``prometheus``)
  every ``slow_interval``;
* ``event``: Windows Tcpip 4199 records, only when a script asks for them.

Example::

    import lab
    scenario = lab.demo_scenario(seed=7)          # 48 h, 4 hosts, every incident + confounder
    stats = lab.write_capture(scenario, "demo/capture.jsonl.zst")
    expected = lab.ground_truth(scenario)         # the alerts a correct detector raises
    quiet = lab.confounder_windows(scenario)      # windows where those alerts must NOT fire
    networks = lab.network_config(scenario)       # [[networks]] tables for the config file
    short = lab.compact_scenario(hours=6)         # the same script squeezed for fast tests
"""

from lab.generate import (
    CaptureStats,
    CaptureTee,
    confounder_windows,
    generate,
    ground_truth,
    network_config,
    write_capture,
)
from lab.scenario import (
    BackupBurst,
    DuplicateLbIp,
    HostReboot,
    IncastBursts,
    Incident,
    IncidentKind,
    NodeScaleOut,
    PfcStorm,
    Scenario,
    ScrapeGap,
    UpgradeBlocked,
    VipFailover,
    VipLeak,
    compact_scenario,
    demo_scenario,
)
from lab.site import ARC_SITE, ClusterSpec, MetalLbPoolSpec, NetworkSpec, ServiceSpec, SiteSpec

__all__ = [
    "ARC_SITE",
    "BackupBurst",
    "CaptureStats",
    "CaptureTee",
    "ClusterSpec",
    "DuplicateLbIp",
    "HostReboot",
    "IncastBursts",
    "Incident",
    "IncidentKind",
    "MetalLbPoolSpec",
    "NetworkSpec",
    "NodeScaleOut",
    "PfcStorm",
    "Scenario",
    "ScrapeGap",
    "ServiceSpec",
    "SiteSpec",
    "UpgradeBlocked",
    "VipFailover",
    "VipLeak",
    "compact_scenario",
    "confounder_windows",
    "demo_scenario",
    "generate",
    "ground_truth",
    "network_config",
    "write_capture",
]
