"""Kubernetes ServiceList and NodeList bodies, shaped as the API server returns them.

``GET /api/v1/services`` and ``/api/v1/nodes`` answer with a typed list (``kind: ServiceList``)
whose items carry no ``kind``, compact JSON. Node objects carry AKS-HCI's facts: ``moc-l…``
names, ``moc://`` provider IDs, CBL-Mariner images, a ``/24`` pod CIDR each. The HAProxy
load-balancer VM is not a Kubernetes node (the seeds describe it as a separate Linux VM), so it
never appears here; HAProxy stats and neighbour tables carry its evidence.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from lab.world import (
    CONTAINER_RUNTIME,
    KERNEL_VERSION,
    KUBERNETES_VERSION,
    OS_IMAGE,
    Snapshot,
    Svc,
    Vm,
    World,
)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _base_services(cluster: str, created: datetime, rv: int) -> list[dict[str, Any]]:
    """The ClusterIP services every cluster has (they are not LoadBalancers and must be ignored)."""
    return [
        {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "uid": _fixed_uid(cluster, "kubernetes"),
                "resourceVersion": str(rv),
                "creationTimestamp": _ts(created),
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 6443}],
                "clusterIP": "10.96.0.1",
                "clusterIPs": ["10.96.0.1"],
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
            },
            "status": {"loadBalancer": {}},
        },
        {
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "uid": _fixed_uid(cluster, "kube-dns"),
                "resourceVersion": str(rv + 7),
                "creationTimestamp": _ts(created),
                "labels": {
                    "k8s-app": "kube-dns",
                    "kubernetes.io/cluster-service": "true",
                    "kubernetes.io/name": "CoreDNS",
                },
                "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
            },
            "spec": {
                "ports": [
                    {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53},
                    {"name": "dns-tcp", "protocol": "TCP", "port": 53, "targetPort": 53},
                    {"name": "metrics", "protocol": "TCP", "port": 9153, "targetPort": 9153},
                ],
                "selector": {"k8s-app": "kube-dns"},
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
            },
            "status": {"loadBalancer": {}},
        },
    ]


def _fixed_uid(cluster: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hciwatch-lab/{cluster}/{name}"))


def _service(svc: Svc) -> dict[str, Any]:
    ports = [
        {"name": f"tcp-{p}", "protocol": "TCP", "port": p, "targetPort": p, "nodePort": np_}
        for p, np_ in zip(svc.ports, svc.node_ports, strict=True)
    ]
    return {
        "metadata": {
            "name": svc.name,
            "namespace": svc.namespace,
            "uid": svc.uid,
            "resourceVersion": str(svc.resource_version),
            "creationTimestamp": _ts(svc.created),
            "labels": {"app.kubernetes.io/name": svc.name},
        },
        "spec": {
            "ports": ports,
            "selector": {"app.kubernetes.io/name": svc.name},
            "clusterIP": svc.cluster_ip,
            "clusterIPs": [svc.cluster_ip],
            "type": "LoadBalancer",
            "sessionAffinity": "None",
            "loadBalancerIP": svc.ip,
            "externalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "allocateLoadBalancerNodePorts": True,
            "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {"ingress": [{"ip": svc.ip}]}},
    }


def _node(vm: Vm, heartbeat: datetime, rv: int) -> dict[str, Any]:
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": vm.name,
        "kubernetes.io/os": "linux",
    }
    spec: dict[str, Any] = {"podCIDR": vm.pod_cidr, "podCIDRs": [vm.pod_cidr], "providerID": f"moc://{vm.name}"}
    if vm.role == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
        spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    return {
        "metadata": {
            "name": vm.name,
            "uid": vm.uid,
            "resourceVersion": str(rv),
            "creationTimestamp": _ts(vm.created),
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": spec,
        "status": {
            "conditions": [
                {
                    "type": "MemoryPressure",
                    "status": "False",
                    "lastHeartbeatTime": _ts(heartbeat),
                    "lastTransitionTime": _ts(vm.created),
                    "reason": "KubeletHasSufficientMemory",
                    "message": "kubelet has sufficient memory available",
                },
                {
                    "type": "DiskPressure",
                    "status": "False",
                    "lastHeartbeatTime": _ts(heartbeat),
                    "lastTransitionTime": _ts(vm.created),
                    "reason": "KubeletHasNoDiskPressure",
                    "message": "kubelet has no disk pressure",
                },
                {
                    "type": "PIDPressure",
                    "status": "False",
                    "lastHeartbeatTime": _ts(heartbeat),
                    "lastTransitionTime": _ts(vm.created),
                    "reason": "KubeletHasSufficientPID",
                    "message": "kubelet has sufficient PID available",
                },
                {
                    "type": "Ready",
                    "status": "True",
                    "lastHeartbeatTime": _ts(heartbeat),
                    "lastTransitionTime": _ts(vm.created + timedelta(seconds=95)),
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                },
            ],
            "addresses": [{"type": "InternalIP", "address": vm.ip}, {"type": "Hostname", "address": vm.name}],
            "nodeInfo": {
                "kernelVersion": KERNEL_VERSION,
                "osImage": OS_IMAGE,
                "containerRuntimeVersion": CONTAINER_RUNTIME,
                "kubeletVersion": KUBERNETES_VERSION,
                "kubeProxyVersion": KUBERNETES_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def _list_body(kind: str, rv: int, items_json: str) -> str:
    return f'{{"kind":"{kind}","apiVersion":"v1","metadata":{{"resourceVersion":"{rv}"}},"items":{items_json}}}'


class K8sLists:
    """Builds the two list bodies of one cluster at a given time.

    Item JSON is cached: services change only with the snapshot, node status only when kubelet
    reports it (every 5 minutes when nothing changes, Kubernetes' nodeStatusReportFrequency);
    the list's own resourceVersion (etcd's revision) moves on every request.
    """

    def __init__(self, world: World, cluster: str) -> None:
        self.world = world
        self.cluster = cluster
        self.created = world.cluster_created[cluster]
        self._svc: tuple[int, str] | None = None
        self._node_json: dict[tuple[str, int], str] = {}

    def _list_rv(self, when: datetime) -> int:
        return 400_000 + int((when - self.created).total_seconds() // 2)

    def services(self, snap: Snapshot, when: datetime) -> str:
        if self._svc is None or self._svc[0] != snap.seq:
            items = _base_services(self.cluster, self.created, 200)
            items.extend(
                _service(s) for s in sorted(snap.services_of(self.cluster), key=lambda s: (s.namespace, s.name))
            )
            self._svc = (snap.seq, json.dumps(items, separators=(",", ":")))
        return _list_body("ServiceList", self._list_rv(when), self._svc[1])

    def nodes(self, snap: Snapshot, when: datetime) -> str:
        epoch = int(when.timestamp())
        items = []
        for i, vm in enumerate(sorted(snap.nodes(self.cluster), key=lambda v: v.name)):
            beat = epoch - (epoch + 37 * i) % 300  # each kubelet reports on its own 5-minute phase
            text = self._node_json.get((vm.uid, beat))
            if text is None:
                hb = datetime.fromtimestamp(beat, tz=when.tzinfo)
                text = json.dumps(_node(vm, hb, self._list_rv(hb) - 1), separators=(",", ":"))
                self._node_json = {k: v for k, v in self._node_json.items() if k[1] > beat - 600}
                self._node_json[(vm.uid, beat)] = text
            items.append(text)
        return _list_body("NodeList", self._list_rv(when), "[" + ",".join(items) + "]")
