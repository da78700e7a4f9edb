"""Kubernetes List objects → IP observations and inventory samples (pure: no I/O, no clock).

A ``k8s`` record's body is what the API server (or ``kubectl get … -o json``) prints for a list:
a ``ServiceList``, ``NodeList`` or ``PodList`` whose items carry no ``kind``, or a generic
``List`` (``kubectl get svc,nodes -A -o json``) whose items each name their ``kind``. The record's
labels add what the payload lacks: ``cluster`` and ``network`` (the AksHciClusterNetwork the
cluster draws its VIP and node addresses from), and, from the source, ``control_plane_endpoint``
(the API-server VIP taken from the kubeconfig ``server`` URL).

What becomes what (the IP plan of AKS hybrid, domain reference §5):

* Service ``type: LoadBalancer`` — each ``status.loadBalancer.ingress[].ip`` and
  ``spec.loadBalancerIP`` → owner_kind ``service``, owner ``<namespace>/<name>`` (VIP pool), plus
  one ``k8s.service_lb_ip_info`` sample per (service, IP) carrying the service's ports: two
  clusters on one cluster network holding the same IP on *different* ports is the documented
  AKS-HCI HAProxy duplicate-IP case, and the ports are the evidence an operator needs.
* ``control_plane_endpoint`` → owner_kind ``control-plane``, owner ``<cluster>/apiserver`` (VIP
  pool), unless it equals the ClusterIP of Service ``default/kubernetes`` (an in-cluster client
  talks to that ClusterIP, which is not a VIP).
* Node ``InternalIP``/``ExternalIP`` → owner_kind ``node`` (node IP pool), or ``load-balancer``
  for the HAProxy LB VM (name or label rule, see :func:`is_lb_node`); ``spec.podCIDRs`` →
  ``k8s.node_pod_cidr_info`` (Flannel has no metrics; this is how its per-node subnets are seen).
* MetalLB ``IPAddressPool`` (``metallb.io/v1beta1``; AKS Arc's MetalLB extension) → one
  ``k8s.metallb_pool_range_info`` sample per ``spec.addresses`` entry (a CIDR or an ``a-b`` range),
  labels ``namespace``, ``pool``, ``addresses`` (the entry as written), ``first``/``last``,
  ``auto_assign``, ``avoid_buggy_ips``, value = the addresses in it. These are the *declared*
  MetalLB ranges the pool and overlap analysis use next to the configured ``metallb_pools``
  (Microsoft: the extension does no IP conflict checking, so nothing else compares them).
* MetalLB ``L2Advertisement`` → ``k8s.metallb_l2advertisement_info`` (``advertisement``, ``pools``:
  ``spec.ipAddressPools`` comma-joined, ``*`` when empty = every pool; ``node_selectors`` as JSON).
* Pod ``status.podIPs`` → owner_kind ``pod``, skipping ``hostNetwork`` pods (their IP is the
  node's) and finished pods (``Succeeded``/``Failed``: their IP is free for reuse, so keeping it
  would report false duplicates).

Bad parts of a payload become :class:`ParseError` entries naming the JSON path
(``items[3].status.loadBalancer.ingress[0].ip``) and the rest is kept; a body that is not a JSON
object naming a ``kind`` raises.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import pyarrow as pa

from collector.catalog import Catalog
from collector.errors import ParseError
from collector.schema import (
    IP_OBSERVATIONS_SCHEMA,
    SAMPLES_SCHEMA,
    TS_TYPE,
    OwnerKind,
    ParseResult,
    RawRecord,
    to_ms,
)
from collector.sources import skeletons
from collector.sources.k8s_inventory import _reuse
from collector.text import without_bom

SOURCE = "k8s"

# AKS-HCI's cluster-api provider names the HAProxy VM "<cluster>-load-balancer-<5 alnum>"
# (microsoft/cluster-api-provider-azurestackhci cloud/defaults.go); the token match also
# accepts "loadbalancer" and custom "lb-…-load-balancer" spellings without matching "myloadbalancerapp".
DEFAULT_LB_NODE_NAME_PATTERN = r"(?i)(^|[-.])load-?balancer([-.]|$)"
# Role labels an operator (or a provider) may put on a load-balancer node.
DEFAULT_LB_NODE_LABELS: tuple[tuple[str, str | None], ...] = (
    ("node-role.kubernetes.io/load-balancer", None),
    ("node-role.kubernetes.io/loadbalancer", None),
    ("kubernetes.io/role", "load-balancer"),
    ("kubernetes.io/role", "loadbalancer"),
)

METRIC_SERVICES_LB = "k8s.services_loadbalancer"
METRIC_NODES = "k8s.nodes"
METRIC_SERVICE_LB_IP_INFO = "k8s.service_lb_ip_info"
METRIC_NODE_POD_CIDR_INFO = "k8s.node_pod_cidr_info"
METRIC_METALLB_POOL_RANGE_INFO = "k8s.metallb_pool_range_info"
METRIC_METALLB_L2ADV_INFO = "k8s.metallb_l2advertisement_info"

_METALLB_KINDS = frozenset({"IPAddressPool", "L2Advertisement"})
_SUPPORTED_ITEM_KINDS = frozenset({"Service", "Node", "Pod"}) | _METALLB_KINDS
_FINISHED_POD_PHASES = frozenset({"Succeeded", "Failed"})
_NODE_IP_TYPES = frozenset({"InternalIP", "ExternalIP"})


def _clean(text: str) -> str:
    """Labels from a capture file may hold lone surrogates that Arrow cannot encode."""
    return text.encode("utf-8", "replace").decode("utf-8")


@lru_cache(maxsize=65536)
def _normalize_ip(text: str) -> str | None:
    """Canonical text of an IP; cached because the same addresses come back every scrape."""
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


@lru_cache(maxsize=65536)
def _normalize_cidr(text: str) -> str | None:
    """Canonical text of a network (host bits cleared); cached like :func:`_normalize_ip`."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        return None


@lru_cache(maxsize=64)
def _compile(pattern: str) -> re.Pattern[str] | str:
    """Compile a user pattern once; a bad pattern comes back as the error text."""
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return str(exc)


def parse_label_rule(rule: str) -> tuple[str, str | None]:
    """``"key"`` (label present) or ``"key=value"`` (label has that value)."""
    key, sep, value = rule.partition("=")
    return key.strip(), (value.strip() if sep else None)


def is_lb_node(
    name: str,
    labels: Mapping[str, str],
    *,
    name_pattern: re.Pattern[str] | None,
    label_rules: tuple[tuple[str, str | None], ...],
) -> bool:
    """Whether a node is the AKS HAProxy load-balancer VM (node IP pool, not a worker)."""
    if name_pattern is not None and name_pattern.search(name):
        return True
    return any(key in labels and (value is None or labels[key] == value) for key, value in label_rules)


class _Builder:
    """Collects rows column by column and the errors skipped past, for one record."""

    def __init__(self, record: RawRecord) -> None:
        self.record = record
        labels = record.labels
        self.cluster = _clean(labels.get("cluster", "")) or None
        self.network = _clean(labels.get("network", "")) or None
        self.source = _clean(labels.get("source", "")) or SOURCE
        self.host = _clean(record.host) or self.cluster or _clean(record.target)
        self.ts = to_ms(record.ts)
        self.errors: list[Exception] = []
        self.obs_ip: list[str] = []
        self.obs_kind: list[str] = []
        self.obs_owner: list[str] = []
        self._obs_seen: set[tuple[str, str, str]] = set()
        self.s_metric: list[str] = []
        self.s_labels: list[list[tuple[str, str]]] = []
        self.s_value: list[float] = []
        self._sample_seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self.name_pattern, self.label_rules = self._lb_rules()
        self.listed = False  # the body was a List: only its kind and items were read

    def _lb_rules(self) -> tuple[re.Pattern[str] | None, tuple[tuple[str, str | None], ...]]:
        labels = self.record.labels
        pattern_text = labels.get("lb_node_name_pattern", DEFAULT_LB_NODE_NAME_PATTERN)
        pattern: re.Pattern[str] | None = None
        if pattern_text:
            compiled = _compile(pattern_text)
            if isinstance(compiled, str):
                self.error(
                    "labels.lb_node_name_pattern",
                    f"not a valid regular expression ({compiled}); using the default rule",
                )
                default = _compile(DEFAULT_LB_NODE_NAME_PATTERN)
                assert not isinstance(default, str)
                pattern = default
            else:
                pattern = compiled
        rules = DEFAULT_LB_NODE_LABELS
        if "lb_node_label" in labels:
            rule = labels["lb_node_label"]
            rules = (parse_label_rule(rule),) if rule.strip() else ()
        return pattern, rules

    # -- errors and typed access ---------------------------------------------------------------

    def error(self, path: str, why: str) -> None:
        self.errors.append(ParseError(f"{path}: {why}", source=self.source, target=_clean(self.record.target)))

    def dict_at(self, obj: Mapping[str, Any], key: str, path: str) -> dict[str, Any] | None:
        """``obj[key]`` when it is an object; ``None`` when absent or null; an error otherwise."""
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(f"{path}.{key}", f"expected an object, got {_type_name(value)}")
            return None
        return value

    def list_at(self, obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(f"{path}.{key}", f"expected a list, got {_type_name(value)}")
            return []
        return value

    def text(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.error(path, f"expected a string, got {_type_name(value)}")
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.error(path, "string is not valid Unicode (lone surrogate)")
            return None
        return value

    def ip(self, value: Any, path: str) -> str | None:
        text = self.text(value, path)
        if text is None:
            return None
        ip = _normalize_ip(text)
        if ip is None:
            self.error(path, f"not an IP address: {_short(text)}")
        return ip

    # -- rows -------------------------------------------------------------------------------------

    def observe(self, ip: str, kind: OwnerKind, owner: str) -> None:
        key = (ip, kind.value, owner)
        if key in self._obs_seen:
            return
        self._obs_seen.add(key)
        self.obs_ip.append(ip)
        self.obs_kind.append(kind.value)
        self.obs_owner.append(owner)

    def sample(self, metric: str, labels: dict[str, str], value: float) -> None:
        if self.cluster:
            labels = {"cluster": self.cluster, **labels}
        if self.network:
            labels = {**labels, "network": self.network}
        items = tuple(sorted(labels.items()))
        key = (metric, items)
        if key in self._sample_seen:
            return
        self._sample_seen.add(key)
        self.s_metric.append(metric)
        self.s_labels.append(list(items))
        self.s_value.append(value)

    def result(self) -> ParseResult:
        n_obs = len(self.obs_ip)
        n_s = len(self.s_metric)
        ts_obs = pa.array([self.ts] * n_obs, pa.int64()).cast(TS_TYPE)
        observations = pa.table(
            {
                "ts": ts_obs,
                "ip": pa.array(self.obs_ip, pa.string()),
                "mac": pa.nulls(n_obs, pa.string()),
                "owner_kind": pa.array(self.obs_kind, pa.string()).dictionary_encode(),
                "owner": pa.array(self.obs_owner, pa.string()),
                "cluster": pa.array([self.cluster] * n_obs, pa.string()).dictionary_encode(),
                "network": pa.array([self.network] * n_obs, pa.string()).dictionary_encode(),
                "source": pa.array([self.source] * n_obs, pa.string()).dictionary_encode(),
            },
            schema=IP_OBSERVATIONS_SCHEMA,
        )
        samples = pa.table(
            {
                "ts": pa.array([self.ts] * n_s, pa.int64()).cast(TS_TYPE),
                "source": pa.array([self.source] * n_s, pa.string()).dictionary_encode(),
                "host": pa.array([self.host] * n_s, pa.string()).dictionary_encode(),
                "metric": pa.array(self.s_metric, pa.string()).dictionary_encode(),
                "labels": pa.array(self.s_labels, pa.map_(pa.string(), pa.string())),
                "value": pa.array(self.s_value, pa.float64()),
            },
            schema=SAMPLES_SCHEMA,
        )
        return ParseResult(samples=samples, ip_observations=observations, errors=self.errors)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _load(record: RawRecord) -> dict[str, Any]:
    """Decode the body; anything that is not a JSON object is fatal for the record."""
    target = _clean(record.target)
    try:
        text = without_bom(record.body).decode("utf-8")  # kubectl output saved by PowerShell
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"body is not UTF-8 JSON: {exc.reason}", source=SOURCE, target=target, offset=exc.start
        ) from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"body is not JSON: {exc.msg}", source=SOURCE, target=target, line=exc.lineno, offset=exc.pos
        ) from None
    except (ValueError, RecursionError) as exc:  # int digit limit, nesting too deep
        raise ParseError(f"body is not usable JSON: {exc}", source=SOURCE, target=target) from None
    if not isinstance(body, dict):
        raise ParseError(f"body is {_type_name(body)}, not a Kubernetes object", source=SOURCE, target=target)
    return body


def parse_record(record: RawRecord, catalog: Catalog) -> ParseResult:
    """Parse one ``k8s`` record (see the module docstring for what becomes what).

    A List that is the target's previous list but for its ``metadata`` is answered from that
    list's tables, and one whose rows come out the same reuses them (:mod:`._reuse`);
    ``HCIWATCH_PARSE_REUSE=0`` always parses carefully.
    """
    if not skeletons.enabled():
        return parse_careful(record, catalog)
    try:
        text = without_bom(record.body).decode("utf-8")
    except UnicodeDecodeError:
        return parse_careful(record, catalog)
    sk = _reuse.CACHE.get(record, catalog)
    if sk is not None and _reuse.same_list(sk, text):  # only the list's metadata changed
        ts = to_ms(record.ts)
        return ParseResult(
            samples=skeletons.with_ts(sk.samples, ts),
            ip_observations=skeletons.with_ts(sk.ip_observations, ts),
            errors=list(sk.errors),
        )
    top = _reuse.split_top(text)
    if top is None:
        return parse_careful(record, catalog)  # not one JSON object: the careful parser says why
    body, meta = top
    b = _walk(record, body)
    columns = _reuse.columns(b)
    if sk is not None and columns == sk.columns:  # other items, same rows (a node's heartbeat)
        samples, observations = skeletons.with_ts(sk.samples, b.ts), skeletons.with_ts(sk.ip_observations, b.ts)
    else:
        samples, observations = _reuse.tables(b)
    if b.listed:
        _reuse.CACHE.put(record, _reuse.skeleton(catalog, text, meta, columns, samples, observations, b.errors))
    return ParseResult(samples=samples, ip_observations=observations, errors=b.errors)


def parse_careful(record: RawRecord, catalog: Catalog) -> ParseResult:
    """Parse one ``k8s`` record from scratch: ``json.loads``, the walk, tables built the plain way."""
    del catalog  # inventory facts, not agent metrics: nothing to map
    return _walk(record, _load(record)).result()


def _walk(record: RawRecord, body: dict[str, Any]) -> _Builder:
    """Collect the rows and errors of one decoded body (raises for a body that is no k8s object)."""
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ParseError(
            "body has no 'kind': not a Kubernetes object or list", source=SOURCE, target=_clean(record.target)
        )
    base = kind.rsplit("/", 1)[-1]  # tolerate "v1/List"-style kinds
    b = _Builder(record)

    items: list[Any]
    default_kind: str | None
    paths: list[str]
    if base.endswith("List"):
        b.listed = True
        default_kind = base[: -len("List")] or None
        items = b.list_at(body, "items", "$")
        paths = [f"items[{i}]" for i in range(len(items))]
    elif base in _SUPPORTED_ITEM_KINDS:
        default_kind, items, paths = base, [body], ["$"]
    else:
        raise ParseError(
            f"kind {_short(base)} is neither a List nor a Service, Node, Pod, IPAddressPool or L2Advertisement",
            source=SOURCE,
            target=_clean(record.target),
        )

    counts: dict[str, int] = {}
    if default_kind in ("Service", "Node"):
        counts[default_kind] = 0
    kubernetes_cluster_ip: str | None = None

    for item, path in zip(items, paths, strict=True):
        if not isinstance(item, dict):
            b.error(path, f"expected an object, got {_type_name(item)}")
            continue
        item_kind = item.get("kind", default_kind)
        if item_kind is None:
            b.error(f"{path}.kind", "missing (items of a generic List must name their kind)")
            continue
        if not isinstance(item_kind, str):
            b.error(f"{path}.kind", f"expected a string, got {_type_name(item_kind)}")
            continue
        if item_kind not in _SUPPORTED_ITEM_KINDS:
            continue  # `kubectl get all` style lists: other kinds are not inventory we keep
        if item_kind in ("Service", "Node"):
            counts.setdefault(item_kind, 0)
        meta = b.dict_at(item, "metadata", path)
        if meta is None:
            b.error(f"{path}.metadata", "missing")
            continue
        name = _required_text(b, meta, "name", f"{path}.metadata")
        if name is None:
            continue
        if item_kind == "Node":
            _node(b, item, path, name)
            counts["Node"] += 1
            continue
        namespace = _required_text(b, meta, "namespace", f"{path}.metadata")
        if namespace is None:
            continue
        if item_kind == "IPAddressPool":
            _ip_address_pool(b, item, path, namespace, name)
        elif item_kind == "L2Advertisement":
            _l2_advertisement(b, item, path, namespace, name)
        elif item_kind == "Service":
            if namespace == "default" and name == "kubernetes":
                spec = b.dict_at(item, "spec", path) or {}
                cip = spec.get("clusterIP")
                if isinstance(cip, str):
                    kubernetes_cluster_ip = b.ip(cip, f"{path}.spec.clusterIP")
            if _service(b, item, path, namespace, name):
                counts["Service"] += 1
        else:
            _pod(b, item, path, namespace, name)

    _control_plane(b, record, kubernetes_cluster_ip)
    if "Service" in counts:
        b.sample(METRIC_SERVICES_LB, {}, float(counts["Service"]))
    if "Node" in counts:
        b.sample(METRIC_NODES, {}, float(counts["Node"]))
    return b


def _required_text(b: _Builder, meta: dict[str, Any], key: str, path: str) -> str | None:
    value = meta.get(key)
    if value is None or value == "":
        b.error(f"{path}.{key}", "missing or empty")
        return None
    return b.text(value, f"{path}.{key}")


def _control_plane(b: _Builder, record: RawRecord, kubernetes_cluster_ip: str | None) -> None:
    endpoint = record.labels.get("control_plane_endpoint", "").strip()
    if not endpoint:
        return
    host = _endpoint_host(endpoint)
    ip = b.ip(host, "labels.control_plane_endpoint")
    if ip is None or ip == kubernetes_cluster_ip:
        return
    b.observe(ip, OwnerKind.CONTROL_PLANE, f"{b.cluster or b.host}/apiserver")


def _endpoint_host(endpoint: str) -> str:
    """The host part of ``https://10.0.0.5:6443``, ``10.0.0.5:6443``, ``[fd00::5]:6443`` or an IP."""
    text = endpoint
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0]
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text


def _service(b: _Builder, item: dict[str, Any], path: str, namespace: str, name: str) -> bool:
    """Emit a LoadBalancer service's IPs; ``True`` when it is a LoadBalancer service."""
    spec = b.dict_at(item, "spec", path) or {}
    if spec.get("type") != "LoadBalancer":
        return False
    owner = f"{namespace}/{name}"
    origins: dict[str, set[str]] = {}

    status = b.dict_at(item, "status", path) or {}
    lb = b.dict_at(status, "loadBalancer", f"{path}.status") or {}
    for i, ingress in enumerate(b.list_at(lb, "ingress", f"{path}.status.loadBalancer")):
        ipath = f"{path}.status.loadBalancer.ingress[{i}]"
        if not isinstance(ingress, dict):
            b.error(ipath, f"expected an object, got {_type_name(ingress)}")
            continue
        if ingress.get("ip") is None:
            continue  # hostname-only ingress (cloud LBs): no address to account for
        ip = b.ip(ingress["ip"], f"{ipath}.ip")
        if ip is not None:
            origins.setdefault(ip, set()).add("status")

    requested = spec.get("loadBalancerIP")
    if requested is not None and requested != "":
        ip = b.ip(requested, f"{path}.spec.loadBalancerIP")
        if ip is not None:
            origins.setdefault(ip, set()).add("spec")

    ports = _ports(b, spec, path)
    for ip, where in origins.items():
        b.observe(ip, OwnerKind.SERVICE, owner)
        b.sample(
            METRIC_SERVICE_LB_IP_INFO,
            {"namespace": namespace, "service": name, "ip": ip, "ports": ports, "origin": ",".join(sorted(where))},
            1.0,
        )
    return True


def _ports(b: _Builder, spec: dict[str, Any], path: str) -> str:
    """``80/TCP,443/TCP`` in spec order: the front-end ports HAProxy maps for this VIP."""
    out: list[str] = []
    for i, port in enumerate(b.list_at(spec, "ports", f"{path}.spec")):
        ppath = f"{path}.spec.ports[{i}]"
        if not isinstance(port, dict):
            b.error(ppath, f"expected an object, got {_type_name(port)}")
            continue
        number = port.get("port")
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
            b.error(f"{ppath}.port", "expected a port number 1-65535")
            continue
        protocol = port.get("protocol", "TCP")
        if not isinstance(protocol, str) or not protocol.isalpha() or len(protocol) > 8:
            b.error(f"{ppath}.protocol", "expected TCP, UDP or SCTP")
            continue
        out.append(f"{number}/{protocol}")
    return ",".join(out)


def _node(b: _Builder, item: dict[str, Any], path: str, name: str) -> None:
    meta = item["metadata"]
    labels: dict[str, str] = {}
    raw_labels = b.dict_at(meta, "labels", f"{path}.metadata") or {}
    for key, value in raw_labels.items():
        if isinstance(value, str) and value.isascii():  # what b.text accepts, without its path
            labels[key] = value
            continue
        text = b.text(value, f"{path}.metadata.labels[{key!r}]")
        if text is not None:
            labels[key] = text
    kind = (
        OwnerKind.LOAD_BALANCER
        if is_lb_node(name, labels, name_pattern=b.name_pattern, label_rules=b.label_rules)
        else OwnerKind.NODE
    )

    status = b.dict_at(item, "status", path) or {}
    for i, addr in enumerate(b.list_at(status, "addresses", f"{path}.status")):
        apath = f"{path}.status.addresses[{i}]"
        if not isinstance(addr, dict):
            b.error(apath, f"expected an object, got {_type_name(addr)}")
            continue
        if addr.get("type") not in _NODE_IP_TYPES:
            continue  # Hostname, InternalDNS, ExternalDNS
        ip = b.ip(addr.get("address"), f"{apath}.address")
        if ip is not None:
            b.observe(ip, kind, name)

    spec = b.dict_at(item, "spec", path) or {}
    cidrs: list[tuple[Any, str]] = [
        (c, f"{path}.spec.podCIDRs[{i}]") for i, c in enumerate(b.list_at(spec, "podCIDRs", f"{path}.spec"))
    ]
    if not cidrs and spec.get("podCIDR") not in (None, ""):
        cidrs = [(spec["podCIDR"], f"{path}.spec.podCIDR")]
    for value, cpath in cidrs:
        text = b.text(value, cpath)
        if text is None:
            continue
        network = _normalize_cidr(text)
        if network is None:
            b.error(cpath, f"not a CIDR: {_short(text)}")
            continue
        b.sample(METRIC_NODE_POD_CIDR_INFO, {"node": name, "pod_cidr": network}, 1.0)


def _pod(b: _Builder, item: dict[str, Any], path: str, namespace: str, name: str) -> None:
    spec = b.dict_at(item, "spec", path) or {}
    if spec.get("hostNetwork") is True:
        return
    status = b.dict_at(item, "status", path) or {}
    if status.get("phase") in _FINISHED_POD_PHASES:
        return
    owner = f"{namespace}/{name}"
    pod_ips = b.list_at(status, "podIPs", f"{path}.status")
    if pod_ips:
        for i, entry in enumerate(pod_ips):
            epath = f"{path}.status.podIPs[{i}]"
            if not isinstance(entry, dict):
                b.error(epath, f"expected an object, got {_type_name(entry)}")
                continue
            ip = b.ip(entry.get("ip"), f"{epath}.ip")
            if ip is not None:
                b.observe(ip, OwnerKind.POD, owner)
    elif status.get("podIP") not in (None, ""):
        ip = b.ip(status["podIP"], f"{path}.status.podIP")
        if ip is not None:
            b.observe(ip, OwnerKind.POD, owner)


def _address_range(text: str) -> tuple[str, str, int] | None:
    """A MetalLB ``spec.addresses`` entry (``10.0.0.0/28``, ``10.0.0.5-10.0.0.9``, one address
    as ``/32``) → (first, last, count); None when it is neither."""
    t = text.strip()
    try:
        if "-" in t:
            a, z = (ipaddress.ip_address(x.strip()) for x in t.split("-", 1))
            if a.version != z.version or int(z) < int(a):
                return None
            return str(a), str(z), int(z) - int(a) + 1
        net = ipaddress.ip_network(t, strict=False)
    except ValueError:
        return None
    return str(net.network_address), str(net.broadcast_address), net.num_addresses


def _flag(b: _Builder, spec: dict[str, Any], key: str, default: bool, path: str) -> str:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        b.error(f"{path}.spec.{key}", f"expected a boolean, got {_type_name(value)}")
        value = default
    return "true" if value else "false"


def _ip_address_pool(b: _Builder, item: dict[str, Any], path: str, namespace: str, name: str) -> None:
    spec = b.dict_at(item, "spec", path) or {}
    auto = _flag(b, spec, "autoAssign", True, path)  # MetalLB's defaults: autoAssign true,
    buggy = _flag(b, spec, "avoidBuggyIPs", False, path)  # avoidBuggyIPs false
    for i, entry in enumerate(b.list_at(spec, "addresses", f"{path}.spec")):
        epath = f"{path}.spec.addresses[{i}]"
        text = b.text(entry, epath)
        if text is None:
            continue
        rng = _address_range(text)
        if rng is None:
            b.error(epath, f"not a CIDR or an 'a-b' address range: {_short(text)}")
            continue
        first, last, count = rng
        b.sample(
            METRIC_METALLB_POOL_RANGE_INFO,
            {
                "namespace": namespace,
                "pool": name,
                "addresses": text.strip(),
                "first": first,
                "last": last,
                "auto_assign": auto,
                "avoid_buggy_ips": buggy,
            },
            float(count),
        )


def _l2_advertisement(b: _Builder, item: dict[str, Any], path: str, namespace: str, name: str) -> None:
    spec = b.dict_at(item, "spec", path) or {}
    pools: list[str] = []
    for i, entry in enumerate(b.list_at(spec, "ipAddressPools", f"{path}.spec")):
        text = b.text(entry, f"{path}.spec.ipAddressPools[{i}]")
        if text:
            pools.append(text)
    selectors = b.list_at(spec, "nodeSelectors", f"{path}.spec")
    b.sample(
        METRIC_METALLB_L2ADV_INFO,
        {
            "namespace": namespace,
            "advertisement": name,
            "pools": ",".join(pools) or "*",
            "node_selectors": json.dumps(selectors, separators=(",", ":"), sort_keys=True),
        },
        1.0,
    )
