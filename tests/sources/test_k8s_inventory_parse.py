"""The k8s inventory parser: golden outputs, what becomes what, error paths, and fuzzing.

Golden files live in ``collector/sources/k8s_inventory/testdata/expected/``; regenerate them with
``HCIWATCH_UPDATE_GOLDEN=1`` after an intended change and review the diff.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.catalog import Catalog
from collector.errors import ParseError
from collector.schema import IP_OBSERVATIONS_SCHEMA, SAMPLES_SCHEMA, ParseResult, RawRecord
from collector.sources.k8s_inventory.parse import parse_record

TESTDATA = Path(__file__).resolve().parents[2] / "collector" / "sources" / "k8s_inventory" / "testdata"
EXPECTED = TESTDATA / "expected"
TS = datetime(2024, 11, 20, 10, 0, tzinfo=UTC)
NETWORK = "aks-vnet-site1"
VIPS = {"wl-prod": "10.20.30.201", "wl-dev": "10.20.30.202"}
CATALOG = Catalog()


def record(body: bytes | str | dict[str, Any], *, cluster: str = "wl-prod", **labels: str) -> RawRecord:
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    return RawRecord(
        ts=TS,
        kind="k8s",
        target=f"https://{VIPS.get(cluster, '10.0.0.1')}:6443/api/v1/x",
        body=body,
        host=cluster,
        labels={"cluster": cluster, "network": NETWORK, **labels},
    )


def parse(rec: RawRecord) -> ParseResult:
    result = parse_record(rec, CATALOG)
    assert result.samples.schema.equals(SAMPLES_SCHEMA)
    assert result.ip_observations.schema.equals(IP_OBSERVATIONS_SCHEMA)
    return result


def rows(result: ParseResult) -> dict[str, Any]:
    """A JSON-comparable, order-independent view of a result."""
    obs = [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
        for row in result.ip_observations.to_pylist()
    ]
    samples = [
        {
            **{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()},
            "labels": dict(row["labels"]),
        }
        for row in result.samples.to_pylist()
    ]
    return {
        "ip_observations": sorted(obs, key=lambda r: json.dumps(r, sort_keys=True)),
        "samples": sorted(samples, key=lambda r: json.dumps(r, sort_keys=True)),
        "errors": [str(e) for e in result.errors],
    }


def observed(result: ParseResult) -> set[tuple[str, str, str]]:
    return {(r["ip"], r["owner_kind"], r["owner"]) for r in result.ip_observations.to_pylist()}


def samples_of(result: ParseResult, metric: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(r["labels"]), r["value"]) for r in result.samples.to_pylist() if r["metric"] == metric]


GOLDEN = [
    ("services_wl-prod.json", "wl-prod", True),
    ("nodes_wl-prod.json", "wl-prod", False),
    ("pods_wl-prod.json", "wl-prod", False),
    ("services_wl-dev.json", "wl-dev", True),
    ("nodes_wl-dev.json", "wl-dev", False),
    ("list_svc_nodes_wl-dev.json", "wl-dev", True),
    ("metallb_ipaddresspools_wl-arc.json", "wl-arc", False),
    ("metallb_l2advertisements_wl-arc.json", "wl-arc", False),
]


@pytest.mark.parametrize(("name", "cluster", "with_vip"), GOLDEN)
def test_golden(name: str, cluster: str, with_vip: bool) -> None:
    labels = {"control_plane_endpoint": f"https://{VIPS[cluster]}:6443"} if with_vip else {}
    got = rows(parse(record((TESTDATA / name).read_bytes(), cluster=cluster, **labels)))
    golden = EXPECTED / name
    if os.environ.get("HCIWATCH_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(golden.read_text())


def test_services_become_vip_observations_with_ports() -> None:
    result = parse(
        record((TESTDATA / "services_wl-prod.json").read_bytes(), control_plane_endpoint="https://10.20.30.201:6443")
    )
    assert result.errors == []
    assert observed(result) == {
        ("10.20.30.203", "service", "ingress-nginx/ingress-nginx-controller"),
        ("10.20.30.204", "service", "shop/storefront"),
        ("10.20.30.206", "service", "shop/cart"),  # loadBalancerIP and ingress agree: one row
        ("10.20.30.201", "control-plane", "wl-prod/apiserver"),
    }
    rows_ = result.ip_observations.to_pylist()
    assert {r["cluster"] for r in rows_} == {"wl-prod"}
    assert {r["network"] for r in rows_} == {NETWORK}
    assert {r["source"] for r in rows_} == {"k8s"}
    assert {r["ts"] for r in rows_} == {TS}
    info = {lbl["service"]: lbl for lbl, _ in samples_of(result, "k8s.service_lb_ip_info")}
    assert info["ingress-nginx-controller"]["ports"] == "80/TCP,443/TCP"
    assert info["cart"]["origin"] == "spec,status"
    assert samples_of(result, "k8s.services_loadbalancer") == [({"cluster": "wl-prod", "network": NETWORK}, 3.0)]


def test_pending_loadbalancer_is_counted_but_has_no_ip() -> None:
    result = parse(record((TESTDATA / "services_wl-dev.json").read_bytes(), cluster="wl-dev"))
    assert "dev/pending" not in {o for _, _, o in observed(result)}
    assert samples_of(result, "k8s.services_loadbalancer")[0][1] == 3.0


def test_nodes_and_the_haproxy_vm() -> None:
    result = parse(record((TESTDATA / "nodes_wl-prod.json").read_bytes()))
    assert result.errors == []
    kinds = {owner: kind for _, kind, owner in observed(result)}
    assert kinds["wl-prod-load-balancer-k7d2x"] == "load-balancer"
    assert kinds["moc-lq3m8x2kd7p"] == "node"
    assert kinds["moc-w4k9p2x7d1m"] == "node"
    assert samples_of(result, "k8s.nodes")[0][1] == 5.0
    cidrs = {lbl["node"]: lbl["pod_cidr"] for lbl, _ in samples_of(result, "k8s.node_pod_cidr_info")}
    assert cidrs["moc-l6b2n9w4r1t"] == "10.244.1.0/24"
    assert "wl-prod-load-balancer-k7d2x" not in cidrs


def _node(name: str, ip: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


@pytest.mark.parametrize(
    ("name", "labels", "rule_labels", "expected"),
    [
        ("wl-prod-load-balancer-k7d2x", {}, {}, "load-balancer"),
        ("haproxy-loadbalancer", {}, {}, "load-balancer"),
        ("myloadbalancerapp", {}, {}, "node"),
        ("moc-l6b2n9w4r1t", {"node-role.kubernetes.io/load-balancer": ""}, {}, "load-balancer"),
        ("moc-l6b2n9w4r1t", {"kubernetes.io/role": "load-balancer"}, {}, "load-balancer"),
        ("moc-l6b2n9w4r1t", {"kubernetes.io/role": "worker"}, {}, "node"),
        # configured rules replace the defaults
        ("lbvm-01", {}, {"lb_node_name_pattern": r"^lbvm-"}, "load-balancer"),
        ("wl-prod-load-balancer-k7d2x", {}, {"lb_node_name_pattern": ""}, "node"),
        ("moc-l1", {"site/role": "haproxy"}, {"lb_node_label": "site/role=haproxy"}, "load-balancer"),
        ("moc-l1", {"site/role": "worker"}, {"lb_node_label": "site/role=haproxy"}, "node"),
        ("moc-l1", {"node-role.kubernetes.io/load-balancer": ""}, {"lb_node_label": ""}, "node"),
    ],
)
def test_lb_node_rules(name: str, labels: dict[str, str], rule_labels: dict[str, str], expected: str) -> None:
    body = {"kind": "NodeList", "apiVersion": "v1", "items": [_node(name, "10.20.30.40", labels)]}
    result = parse(record(body, **rule_labels))
    assert observed(result) == {("10.20.30.40", expected, name)}


def test_bad_lb_pattern_is_reported_and_default_used() -> None:
    body = {"kind": "NodeList", "items": [_node("x-load-balancer-1", "10.0.0.9")]}
    result = parse(record(body, lb_node_name_pattern="(unclosed"))
    assert observed(result) == {("10.0.0.9", "load-balancer", "x-load-balancer-1")}
    assert any("lb_node_name_pattern" in str(e) for e in result.errors)


def test_pods_skip_host_network_and_finished() -> None:
    result = parse(record((TESTDATA / "pods_wl-prod.json").read_bytes()))
    assert result.errors == []
    owners = {owner for _, _, owner in observed(result)}
    assert "kube-system/kube-proxy-8m2wz" not in owners  # hostNetwork: the node's IP
    assert "shop/db-migrate-28871402-k2j9s" not in owners  # Succeeded: IP free for reuse
    assert ("fd00:10:244:2::8", "pod", "shop/cart-5b8d9f7c6d-q8t4n") in observed(result)
    assert result.samples.num_rows == 0  # a PodList carries no service/node counts


def test_generic_list_equals_typed_lists() -> None:
    vip = {"control_plane_endpoint": "10.20.30.202:6443"}
    generic = rows(parse(record((TESTDATA / "list_svc_nodes_wl-dev.json").read_bytes(), cluster="wl-dev", **vip)))
    svc = rows(parse(record((TESTDATA / "services_wl-dev.json").read_bytes(), cluster="wl-dev", **vip)))
    nodes = rows(parse(record((TESTDATA / "nodes_wl-dev.json").read_bytes(), cluster="wl-dev")))
    for key in ("ip_observations", "samples"):
        merged = sorted(svc[key] + nodes[key], key=lambda r: json.dumps(r, sort_keys=True))
        assert generic[key] == merged


def test_paginated_pages_add_up_to_the_full_list() -> None:
    p1 = json.loads((TESTDATA / "services_wl-prod_page1.json").read_text())
    p2 = json.loads((TESTDATA / "services_wl-prod_page2.json").read_text())
    full = json.loads((TESTDATA / "services_wl-prod.json").read_text())
    assert p1["metadata"]["continue"] and "continue" not in p2["metadata"]
    assert p1["items"] + p2["items"] == full["items"]


@pytest.mark.parametrize("kind", ["v1/List", "List"])
def test_list_kind_variants(kind: str) -> None:
    body = {"kind": kind, "items": [{"kind": "Node", **_node("n1", "10.0.0.1")}]}
    assert observed(parse(record(body))) == {("10.0.0.1", "node", "n1")}


def test_metallb_crds_become_declared_ranges() -> None:
    """IPAddressPool → one range sample per spec.addresses entry (CIDR / range, autoAssign and
    avoidBuggyIPs with MetalLB's defaults); a bad entry is an error with its JSON path, the rest kept."""
    result = parse(record((TESTDATA / "metallb_ipaddresspools_wl-arc.json").read_bytes(), cluster="wl-arc"))
    got = {
        (lab["pool"], lab["addresses"]): (lab["first"], lab["last"], lab["auto_assign"], lab["avoid_buggy_ips"], v)
        for lab, v in samples_of(result, "k8s.metallb_pool_range_info")
    }
    assert got == {
        ("lb-pool-1", "10.20.30.200-10.20.30.215"): ("10.20.30.200", "10.20.30.215", "true", "false", 16.0),
        ("expensive", "10.20.30.224/29"): ("10.20.30.224", "10.20.30.231", "false", "true", 8.0),
        ("expensive", "10.20.30.240-10.20.30.241"): ("10.20.30.240", "10.20.30.241", "false", "true", 2.0),
    }
    assert "items[1].spec.addresses[2]: not a CIDR or an 'a-b' address range" in str(result.errors[0])
    assert len(result.errors) == 1 and result.ip_observations.num_rows == 0
    body = {
        "kind": "IPAddressPoolList",
        "items": [{"metadata": {"name": "p", "namespace": "kube-system"}, "spec": {"addresses": ["10.0.0.0/30"]}}],
    }
    [(lab, v)] = samples_of(parse(record(body)), "k8s.metallb_pool_range_info")
    assert (lab["auto_assign"], lab["avoid_buggy_ips"], v) == ("true", "false", 4.0)  # MetalLB's defaults
    adv = samples_of(
        parse(record((TESTDATA / "metallb_l2advertisements_wl-arc.json").read_bytes(), cluster="wl-arc")),
        "k8s.metallb_l2advertisement_info",
    )
    assert {(lab["advertisement"], lab["pools"]) for lab, _v in adv} == {("l2-all", "lb-pool-1"), ("l2-default", "*")}


def test_single_object_is_accepted() -> None:
    body = {"kind": "Node", "apiVersion": "v1", **_node("n1", "10.0.0.1")}
    assert observed(parse(record(body))) == {("10.0.0.1", "node", "n1")}


def test_other_kinds_in_a_generic_list_are_ignored() -> None:
    body = {
        "kind": "List",
        "items": [{"kind": "Deployment", "metadata": {"name": "x"}}, {"kind": "Node", **_node("n1", "10.0.0.1")}],
    }
    result = parse(record(body))
    assert result.errors == [] and observed(result) == {("10.0.0.1", "node", "n1")}


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://10.20.30.201:6443", "10.20.30.201"),
        ("10.20.30.201:6443", "10.20.30.201"),
        ("10.20.30.201", "10.20.30.201"),
        ("https://[fd00::201]:6443", "fd00::201"),
        ("fd00::201", "fd00::201"),
    ],
)
def test_control_plane_endpoint_forms(endpoint: str, expected: str) -> None:
    result = parse(record({"kind": "ServiceList", "items": []}, control_plane_endpoint=endpoint))
    assert observed(result) == {(expected, "control-plane", "wl-prod/apiserver")}


def test_control_plane_equal_to_kubernetes_cluster_ip_is_not_a_vip() -> None:
    body = json.loads((TESTDATA / "services_wl-prod.json").read_text())
    result = parse(record(body, control_plane_endpoint="https://10.96.0.1:443"))
    assert all(kind != "control-plane" for _, kind, _ in observed(result))


def test_control_plane_hostname_is_an_error_not_a_crash() -> None:
    result = parse(record({"kind": "ServiceList", "items": []}, control_plane_endpoint="https://api.local:6443"))
    assert observed(result) == set()
    assert "labels.control_plane_endpoint" in str(result.errors[0])


def test_errors_name_the_json_path_and_keep_the_rest() -> None:
    body = {
        "kind": "ServiceList",
        "items": [
            {
                "metadata": {"name": "ok", "namespace": "a"},
                "spec": {"type": "LoadBalancer"},
                "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}]}},
            },
            {
                "metadata": {"name": "bad", "namespace": "a"},
                "spec": {"type": "LoadBalancer"},
                "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.6"}, {"ip": "10.0.0.999"}]}},
            },
            "not an object",
            {"spec": {"type": "LoadBalancer"}},
            {"metadata": {"name": "nons"}, "spec": {"type": "LoadBalancer"}},
            {
                "metadata": {"name": "ports", "namespace": "a"},
                "spec": {"type": "LoadBalancer", "loadBalancerIP": 7, "ports": [{"port": 70000}, "x"]},
                "status": {"loadBalancer": {"ingress": "10.0.0.7"}},
            },
            {
                "metadata": {"name": "host", "namespace": "a"},
                "spec": {"type": "LoadBalancer"},
                "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}},
            },
        ],
    }
    result = parse(record(body))
    assert observed(result) == {("10.0.0.5", "service", "a/ok"), ("10.0.0.6", "service", "a/bad")}
    messages = [str(e) for e in result.errors]
    expected_paths = [
        "items[1].status.loadBalancer.ingress[1].ip: not an IP address",
        "items[2]: expected an object",
        "items[3].metadata: missing",
        "items[4].metadata.namespace: missing",
        "items[5].status.loadBalancer.ingress: expected a list",
        "items[5].spec.loadBalancerIP: expected a string",
        "items[5].spec.ports[0].port: expected a port number",
        "items[5].spec.ports[1]: expected an object",
    ]
    for path in expected_paths:
        assert any(path in m for m in messages), (path, messages)
    assert len(messages) == len(expected_paths)
    for err in result.errors:
        assert isinstance(err, ParseError)
        assert err.source == "k8s" and err.target.endswith("/api/v1/x")
    # every LoadBalancer service with metadata is counted, even the broken ones
    assert samples_of(result, "k8s.services_loadbalancer")[0][1] == 4.0


def test_items_not_a_list_is_an_error_entry() -> None:
    result = parse(record({"kind": "NodeList", "items": {"a": 1}}))
    assert observed(result) == set()
    assert "$.items: expected a list" in str(result.errors[0])


def test_null_items_is_an_empty_list() -> None:
    result = parse(record({"kind": "NodeList", "items": None}))
    assert result.errors == [] and samples_of(result, "k8s.nodes")[0][1] == 0.0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"\xff\xfe",
        b'{"items": []}',
        b'{"kind": "ConfigMap"}',
        b'{"kind": 5}',
        b"[" * 100_000,
    ],
)
def test_unparseable_bodies_raise_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_record(record(body), CATALOG)
    assert info.value.source == "k8s"


def test_record_source_label_overrides_source() -> None:
    result = parse(record({"kind": "NodeList", "items": [_node("n1", "10.0.0.1")]}, source="k8s-lab"))
    assert set(result.ip_observations.column("source").to_pylist()) == {"k8s-lab"}


# ---------------------------------------------------------------------------------------------
# Fuzzing: nothing but ParseError may escape, whatever the body
# ---------------------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)
_keys = st.sampled_from(
    [
        "kind",
        "items",
        "metadata",
        "name",
        "namespace",
        "spec",
        "status",
        "type",
        "loadBalancer",
        "ingress",
        "ip",
        "loadBalancerIP",
        "ports",
        "port",
        "protocol",
        "addresses",
        "address",
        "podCIDR",
        "podCIDRs",
        "podIPs",
        "podIP",
        "hostNetwork",
        "phase",
        "labels",
        "clusterIP",
    ]
)
_values = st.sampled_from(
    [
        "ServiceList",
        "NodeList",
        "PodList",
        "List",
        "v1/List",
        "Service",
        "Node",
        "Pod",
        "LoadBalancer",
        "InternalIP",
        "ExternalIP",
        "10.0.0.1",
        "fd00::1",
        "10.0.0.0/24",
        "default",
        "kubernetes",
        "Running",
        "Succeeded",
        "\ud800",
        "999.1.1.1",
    ]
)
_k8sish = st.recursive(
    _values | _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=6),
    max_leaves=60,
)


def _assert_only_parse_errors(rec: RawRecord) -> None:
    try:
        result = parse_record(rec, CATALOG)
    except ParseError:
        return
    assert all(isinstance(e, ParseError) for e in result.errors)
    assert result.samples.schema.equals(SAMPLES_SCHEMA)
    assert result.ip_observations.schema.equals(IP_OBSERVATIONS_SCHEMA)


@given(st.binary(max_size=300))
def test_fuzz_random_bytes(body: bytes) -> None:
    _assert_only_parse_errors(record(body))


@given(_json)
def test_fuzz_any_json(value: Any) -> None:
    _assert_only_parse_errors(record(json.dumps(value)))


@given(_k8sish, st.sampled_from(["ServiceList", "NodeList", "PodList", "List"]))
def test_fuzz_kubernetes_shaped_json(items: Any, kind: str) -> None:
    body = {"kind": kind, "items": items if isinstance(items, list) else [items]}
    _assert_only_parse_errors(record(json.dumps(body)))


@given(_k8sish, st.text(max_size=20), st.text(max_size=20))
def test_fuzz_labels(items: Any, pattern: str, endpoint: str) -> None:
    body = {"kind": "List", "items": items if isinstance(items, list) else [items]}
    _assert_only_parse_errors(
        record(json.dumps(body), lb_node_name_pattern=pattern, control_plane_endpoint=endpoint, lb_node_label=pattern)
    )


@given(st.integers(min_value=1, max_value=5000))
def test_fuzz_deep_nesting(depth: int) -> None:
    inner = '{"kind": "List", "items": [' * depth + "]}" * depth
    _assert_only_parse_errors(record(inner))
