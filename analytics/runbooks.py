"""What an operator of AKS on Azure Local does next, per alert kind (the alert's ``runbook``).

Grounded in Microsoft's AKS-on-Azure-Local networking guidance (IP address planning, container
networking concepts — the HAProxy duplicate-LB-IP note, node networking concepts) and the
Windows / arpwatch semantics in ``shared/reference/domain-reference.md`` §1, §5, §7. The numbers
an operator needs (top VIP holders, what the next upgrade needs, MACs, signals vs baselines) are
in the alert's evidence; the text says where to look and what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.schema import AlertKind

VIP_EXHAUSTION = """\
VIP pool running out. The VIP pool gives one address to every cluster API server (management
cluster included) and one to every Service of type LoadBalancer; a new workload cluster takes an
API-server VIP and a load-balancer VIP. Evidence: top_vip_holders_by_cluster/_by_namespace (who
holds the most VIPs), next_upgrade_needs, hours_to_reserve with its interval, trend.rate_estimated_from
(how the growth rate was measured), hciwatch_plan (what `hciwatch plan` answers for the next upgrade
and a new cluster; the summary repeats it).
1. `hciwatch reclaim --data-dir DIR` lists idle LoadBalancer Services (no HAProxy sessions/bytes for
   --idle), frontends whose Service is gone, and unowned addresses, each with its kubectl command.
   In each cluster sharing the network, list LoadBalancer Services:
   kubectl get svc -A --field-selector spec.type=LoadBalancer
   Delete unused ones; put HTTP(S) services behind one ingress controller (one VIP for many).
2. Hold cluster creation until free VIPs are back above the reserve; gate changes with
   `hciwatch plan --create NAME=N` / `--add-services C=K` (exit 1 when they do not fit).
3. If the pool cannot be widened in place (22H2: Get-AksHciClusterNetwork; 23H2: the logical
   network / MetalLB load-balancer range), deploy new clusters on a cluster network with a larger
   VIP pool (Microsoft recommends reserving at least 256 addresses) and move workloads there.
"""

NODE_EXHAUSTION = """\
Node IP pool running out. Every node VM and every load-balancer (HAProxy) VM takes a node-pool
address, and upgrades roll extra VMs: 22H2 plans 2 IPs for the management cluster's update
operations and 5 per workload cluster, 23H2 one per cluster. Evidence: vms_by_cluster,
held_without_inventory (HAProxy VMs and other addresses seen only in neighbour tables),
next_upgrade_needs (with its breakdown), hours_to_reserve, hciwatch_plan (the verdict of
`hciwatch plan --upgrade all` when the alert was raised; the summary repeats it).
1. Do not start a Kubernetes/AKS upgrade until free addresses cover next_upgrade_needs — a rolling
   upgrade that cannot get an IP stalls half-way. Run `hciwatch plan --upgrade all` (or the named
   clusters) before Update-AksHci / az aksarc upgrade: it exits 1 when the upgrade does not fit and
   says until when it still fits at the current growth.
2. Scale in or remove idle node pools (Set-AksHciNodePool -count / az aksarc nodepool scale) and
   delete clusters no longer used.
3. Widen the node pool (k8sNodeIpPoolStart/End, or the Arc logical-network IP pool) into free
   addresses of the subnet that no other pool or DHCP scope uses.
"""

POD_EXHAUSTION = """\
Calico IP pool (pod addresses) running out: pods cannot start once it is full. Used = allocations in
use plus the addresses Calico reserves. Evidence: pool_name, scope (cluster), hours_to_reserve.
1. Release leaked allocations: ipam_allocations_gc_candidates should return to 0
   (calicoctl ipam check; calicoctl ipam release --from-report).
2. Add an IP pool or a larger CIDR (calicoctl create ippool) or lower blockSize so blocks are not
   stranded on nodes with few pods.
Pod addresses are not taken from the VIP or node pools; `hciwatch plan` does not judge them.
"""

OVERLAP = """\
Address ranges collide, or an address sits in a pool it does not belong to. Overlapping pools hand
out the same address twice — a duplicate IP waiting to happen. Microsoft: the VIP pool must not
overlap the range planned for a custom load balancer (MetalLB) nor Arc VM logical-network pools,
and LoadBalancer / control-plane IPs must not overlap other pools.
1. Configuration overlap: change one range (vipPoolStart/End, k8sNodeIpPoolStart/End, MetalLB
   address pool) so the ranges are disjoint, then update hciwatch's [[networks]] to match.
2. Misplaced address: re-create the Service without a fixed loadBalancerIP (or with one from the
   VIP pool), re-address the VM/NIC into its pool, or exclude the address from the pool (DHCP
   reservation/exclusion) if it must stay.
"""

DUP_LB_ACROSS_CLUSTERS = """\
Two workload clusters that share one cluster network (AksHciClusterNetwork) were handed the same
LoadBalancer IP by HAProxy — a documented AKS-on-Azure-Local issue when workloads on *different
ports* are deployed to clusters sharing a network. One or both workloads see random connectivity
failures until they are re-deployed. Evidence: owners (both clusters and Services),
service_ports (each Service's ports — different ports on one IP is exactly this case), overlaps,
MACs answering.
Fix by re-deploying the workloads, either on the *same port* (each then receives its own service
IP) or onto clusters that use *different* cluster-network objects, i.e. give each cluster its own
network. Delete and re-create the Service in one cluster first and confirm the alert resolves.
"""

DUP_SERVICE_NODE = """\
A Service VIP equals a node or load-balancer VM address: the VIP pool and the node pool (or a
static loadBalancerIP) overlap. Re-create the Service so it gets a fresh VIP, then make the VIP
pool and node pool disjoint (see any ip_pool_overlap alert for the same network).
"""

DUP_HOSTS = """\
The same address is configured on NICs of two hosts (or on a host and a cluster VM). Check
Get-NetIPAddress -IPAddress <ip> on the hosts in evidence and the Network ATC intent / static IP
plan; remove the duplicate. A Tcpip 4198 event means Windows disabled the address on that host.
"""

DUP_VMS = """\
Two VMs hold the same address (node or load-balancer VMs): a node-pool allocation collided with a
static or DHCP address. Find the VMs by MAC (Get-VMNetworkAdapter -All | ? MacAddress -eq ...),
shut the stray one down or re-address it, and make sure DHCP scopes exclude the node pool.
"""

DUP_FLIP = """\
Neighbour tables see the address alternate between MACs (arpwatch "flip flop"): two devices are
answering for it. Find both MACs (evidence macs_answering) on the hosts (Get-VMNetworkAdapter -All
| ? MacAddress -eq ...) and on the switch MAC table. For a HAProxy/keepalived or MetalLB VIP, two
speakers both claiming mastership (split brain) look the same: check keepalived/MetalLB speaker
logs and the link between the load-balancer VMs.
"""

DUP_EVENT = """\
Windows logged a Tcpip address conflict (4199: another MAC answered for this host's address; 4198:
the address was disabled). Confirm with Get-WinEvent -FilterHashtable @{LogName='System';
ProviderName='Tcpip';Id=4198,4199}; the conflicting MAC is in evidence. A one-off event during
failover or address assignment can be benign; repeated events are a real duplicate.
"""

CONGESTION = """\
East-west (storage/RDMA) congestion on the hosts in evidence: signals above each host's own
baseline (value and baseline per signal; PFC pauses per NIC and priority).
1. PFC pauses on the RDMA priority (usually 3): compare host and switch DCB — Get-NetQosFlowControl,
   Get-NetAdapterQos, Network ATC Get-NetIntentStatus — and the switch's PFC/ETS config and pause
   counters; a single host sending pauses points at that host (slow receiver), all hosts receiving
   them at the switch/fabric. Check Get-HealthFault for Network HUD findings.
2. RDMA errors (completion-queue errors, failed connections): driver/firmware — Get-NetAdapterRdma,
   NIC driver version, WinOF-2 diagnostics counters; move storage traffic off a failing port.
3. SMB latency: Get-SmbMultichannelConnection (RDMA in use?), storage repair jobs (Get-StorageJob),
   live migrations.
4. NIC discards: receive buffers / VMMQ and the NIC's firmware; check the switch port for drops.
High throughput alone (backup windows) is not flagged.
"""

METRIC_ANOMALY = """\
A watched metric left its learned band (evidence: value, baseline, band, failing periods). Compare
with the same hour on previous days and with recent changes (deployments, maintenance, failover);
tune the rule's sensitivity or min_failing_periods if this behaviour is expected.
"""

SOURCE_DOWN = """\
A telemetry source stopped delivering. Check the agent (windows_exporter service, Telegraf, MQTT
broker, HAProxy stats socket, Kubernetes API credentials) and network reachability from hciwatch.
Detectors that depend on it cannot see incidents meanwhile.
"""

_DUP = {
    "lb_ip_shared_across_clusters": DUP_LB_ACROSS_CLUSTERS,
    "service_ip_equals_node_ip": DUP_SERVICE_NODE,
    "nic_address_on_two_hosts": DUP_HOSTS,
    "host_address_used_by_cluster": DUP_HOSTS,
    "node_ip_on_two_vms": DUP_VMS,
    "pod_ip_reused": DUP_VMS,
    "arp_flip_flop": DUP_FLIP,
    "tcpip_conflict_event": DUP_EVENT,
}

RUNBOOKS: dict[AlertKind, str] = {
    AlertKind.VIP_POOL_EXHAUSTION: VIP_EXHAUSTION,
    AlertKind.NODE_POOL_EXHAUSTION: NODE_EXHAUSTION,
    AlertKind.POD_POOL_EXHAUSTION: POD_EXHAUSTION,
    AlertKind.IP_POOL_OVERLAP: OVERLAP,
    AlertKind.DUPLICATE_IP: DUP_LB_ACROSS_CLUSTERS,
    AlertKind.EASTWEST_CONGESTION: CONGESTION,
    AlertKind.METRIC_ANOMALY: METRIC_ANOMALY,
    AlertKind.SOURCE_DOWN: SOURCE_DOWN,
}


def runbook(kind: AlertKind, evidence: Mapping[str, Any] | None = None) -> str:
    """The runbook text for an alert; duplicate IPs get the one matching their scenario."""
    kind = AlertKind(kind)
    ev = evidence or {}
    if kind is AlertKind.DUPLICATE_IP:
        text = _DUP.get(str(ev.get("scenario", "")), DUP_LB_ACROSS_CLUSTERS)
        if "tcpip_events" in ev and text is not DUP_EVENT:
            text += "\n" + DUP_EVENT
        if "arp_flip_flops" in ev and text is not DUP_FLIP:
            text += "\n" + DUP_FLIP
        return text.strip()
    return RUNBOOKS[kind].strip()
