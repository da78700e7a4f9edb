"""The MetalLB Arc extension of an AKS Arc (23H2+) cluster: its CRDs as lists and its metrics.

* ``IPAddressPoolList`` / ``L2AdvertisementList`` as the API server answers
  ``GET /apis/metallb.io/v1beta1/ipaddresspools`` (items carry no ``kind``, compact JSON). Field
  names follow MetalLB's v1beta1 CRDs (``spec.addresses``, ``spec.autoAssign``,
  ``spec.avoidBuggyIPs``; ``spec.ipAddressPools``, ``spec.nodeSelectors``); the objects live in
  the extension's namespace ``kube-system`` on AKS Arc (the upstream chart's is ``metallb-system``).
* the controller's ``/metrics`` (``metallb_allocator_addresses_in_use_total`` and
  ``metallb_allocator_addresses_total`` per ``pool``, config health) and the elected speaker's
  (``metallb_speaker_announced`` per service, ``metallb_layer2_*`` counters per IP), in the
  Prometheus text format client_golang writes (families sorted, ``# HELP``/``# TYPE``).

The controller counts what *its* cluster allocated: an address another cluster's MetalLB handed
out from an overlapping pool is free as far as it knows — the conflict hciwatch exists to see.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from datetime import datetime
from typing import Any

from lab.promtext import label_text
from lab.site import ClusterSpec
from lab.world import Snapshot, World

NAMESPACE = "kube-system"
API_VERSION = "metallb.io/v1beta1"


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _uid(cluster: str, kind: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hciwatch-lab/{cluster}/{kind}/{name}"))


def _list(kind: str, rv: int, items: list[dict[str, Any]]) -> str:
    body = {"apiVersion": API_VERSION, "items": items, "kind": kind, "metadata": {"resourceVersion": str(rv)}}
    return json.dumps(body, separators=(",", ":"))


def ip_address_pools(world: World, cluster: ClusterSpec, rv: int) -> str:
    """The cluster's ``IPAddressPoolList``."""
    created = world.cluster_created[cluster.name]
    items = []
    for i, p in enumerate(cluster.metallb_pools):
        items.append(
            {
                "apiVersion": API_VERSION,
                "kind": "IPAddressPool",
                "metadata": {
                    "creationTimestamp": _ts(created),
                    "generation": 1,
                    "name": p.name,
                    "namespace": NAMESPACE,
                    "resourceVersion": str(1200 + 17 * i),
                    "uid": _uid(cluster.name, "IPAddressPool", p.name),
                },
                "spec": {
                    "addresses": list(p.addresses),
                    "autoAssign": p.auto_assign,
                    "avoidBuggyIPs": p.avoid_buggy_ips,
                },
            }
        )
    return _list("IPAddressPoolList", rv, items)


def l2_advertisements(world: World, cluster: ClusterSpec, rv: int) -> str:
    """The cluster's ``L2AdvertisementList``: one advertisement of every pool from the Linux nodes."""
    created = world.cluster_created[cluster.name]
    item = {
        "apiVersion": API_VERSION,
        "kind": "L2Advertisement",
        "metadata": {
            "creationTimestamp": _ts(created),
            "generation": 1,
            "name": f"{cluster.name}-l2",
            "namespace": NAMESPACE,
            "resourceVersion": "1260",
            "uid": _uid(cluster.name, "L2Advertisement", "l2"),
        },
        "spec": {
            "ipAddressPools": [p.name for p in cluster.metallb_pools],
            "nodeSelectors": [{"matchLabels": {"kubernetes.io/os": "linux"}}],
        },
    }
    return _list("L2AdvertisementList", rv, [item])


def _pool_of(cluster: ClusterSpec, ip: str) -> str | None:
    a = ipaddress.ip_address(ip)
    return next((p.name for p in cluster.metallb_pools if a in p.ips()), None)


def controller_metrics(cluster: ClusterSpec, snap: Snapshot, updates: int) -> str:
    """The MetalLB controller's ``/metrics`` (allocator gauges per pool, config health)."""
    in_use = {p.name: 0 for p in cluster.metallb_pools}
    for ip in {s.ip for s in snap.services_of(cluster.name)}:
        name = _pool_of(cluster, ip)
        if name is not None:
            in_use[name] += 1
    lines = [
        "# HELP metallb_allocator_addresses_in_use_total Number of IP addresses in use, per pool",
        "# TYPE metallb_allocator_addresses_in_use_total gauge",
    ]
    lines += [f'metallb_allocator_addresses_in_use_total{{pool="{n}"}} {v}' for n, v in sorted(in_use.items())]
    lines += [
        "# HELP metallb_allocator_addresses_total Number of usable IP addresses, per pool",
        "# TYPE metallb_allocator_addresses_total gauge",
    ]
    lines += [
        f'metallb_allocator_addresses_total{{pool="{p.name}"}} {len(p.ips())}'
        for p in sorted(cluster.metallb_pools, key=lambda p: p.name)
    ]
    lines += [
        "# HELP metallb_k8s_client_config_loaded_bool 1 if the MetalLB configuration was successfully loaded at "
        "least once.",
        "# TYPE metallb_k8s_client_config_loaded_bool gauge",
        "metallb_k8s_client_config_loaded_bool 1",
        "# HELP metallb_k8s_client_config_stale_bool 1 if running on a stale configuration, because the latest "
        "config failed to load.",
        "# TYPE metallb_k8s_client_config_stale_bool gauge",
        "metallb_k8s_client_config_stale_bool 0",
        "# HELP metallb_k8s_client_updates_total Number of k8s object updates that have been processed.",
        "# TYPE metallb_k8s_client_updates_total counter",
        f"metallb_k8s_client_updates_total {updates}",
    ]
    return "\n".join(lines) + "\n"


def speaker_metrics(world: World, cluster: ClusterSpec, snap: Snapshot, requests: dict[str, int]) -> str:
    """The elected speaker's ``/metrics``: what it announces and its ARP counters per owned IP.

    ``requests`` holds each IP's running ARP request count (the caller advances it per scrape).
    """
    node = world.speaker_node(snap, cluster.name).name
    svcs = sorted(snap.services_of(cluster.name), key=lambda s: (s.ip, s.key))
    ips = sorted({s.ip for s in svcs}, key=lambda x: int(ipaddress.ip_address(x)))
    out = [
        "# HELP metallb_layer2_gratuitous_sent Number of gratuitous ARP packets sent for owned IPs as a result "
        "of failovers",
        "# TYPE metallb_layer2_gratuitous_sent counter",
    ]
    out += [f"metallb_layer2_gratuitous_sent{label_text({'ip': ip})} 1" for ip in ips]
    out += [
        "# HELP metallb_layer2_requests_received Number of layer2 requests received for owned IPs",
        "# TYPE metallb_layer2_requests_received counter",
    ]
    out += [f"metallb_layer2_requests_received{label_text({'ip': ip})} {requests.get(ip, 0)}" for ip in ips]
    out += [
        "# HELP metallb_layer2_responses_sent Number of layer2 responses sent for owned IPs",
        "# TYPE metallb_layer2_responses_sent counter",
    ]
    out += [f"metallb_layer2_responses_sent{label_text({'ip': ip})} {requests.get(ip, 0)}" for ip in ips]
    out += [
        "# HELP metallb_speaker_announced Services being announced from this node. This is desired state, it "
        "does not guarantee that the routing protocols have converged.",
        "# TYPE metallb_speaker_announced gauge",
    ]
    out += [
        "metallb_speaker_announced"
        + label_text({"ip": s.ip, "node": node, "protocol": "layer2", "service": s.key})
        + " 1"
        for s in svcs
    ]
    return "\n".join(out) + "\n"
