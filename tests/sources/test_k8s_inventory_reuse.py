"""The k8s parser's reuse of a target's previous list gives exactly what the careful parser gives.

Every case parses a sequence of records of one target with reuse on (the per-target cache filling
as in a collector or a replay) and each record again with reuse off (``HCIWATCH_PARSE_REUSE=0``,
``json.loads`` and the plain table builders), and compares: the IPC bytes of both tables (schema,
values, dictionaries, timestamps), the error texts, or the rejection. Sequences: every List of the
source's testdata and of the conformance corpus with its metadata changed, items changed and
labels changed; the ``k8s`` records of a capture of the demo site (``lab``); hypothesis-made
lists, formats and label changes; nesting around the recursion limit. Spies show the fast paths
are taken, so the comparisons do test them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.catalog import Catalog
from collector.schema import RawRecord
from collector.sources.k8s_inventory import _reuse
from collector.sources.k8s_inventory import parse as k8s
from tests.fixtures import reuse_equality

ROOT = Path(__file__).resolve().parents[2]
LISTS = {
    p.name: p.read_bytes()
    for p in sorted(
        [
            *(ROOT / "collector" / "sources" / "k8s_inventory" / "testdata").glob("*.json"),
            *(ROOT / "tests" / "conformance" / "corpus").glob("*k8s*.json"),
        ]
    )
}
TS = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
CATALOG = Catalog()

Outcome = reuse_equality.Outcome


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    _reuse.CACHE.clear()
    yield
    _reuse.CACHE.clear()


def record(body: bytes | str, k: int = 0, *, rv: str = "1", **labels: str) -> RawRecord:
    return RawRecord(
        ts=TS + timedelta(seconds=60 * k),
        kind="k8s",
        target="https://10.20.30.201:6443/api/v1/nodes",
        body=body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body,
        host="wl-prod",
        labels={"cluster": "wl-prod", "network": "vnet-1", "resource_version": rv, **labels},
    )


def outcome(rec: RawRecord, monkeypatch: pytest.MonkeyPatch, reuse: bool) -> Outcome:
    return reuse_equality.outcome(k8s.parse_record, CATALOG, rec, monkeypatch, reuse)


def check(records: list[RawRecord], monkeypatch: pytest.MonkeyPatch) -> None:
    reuse_equality.check(k8s.parse_record, CATALOG, records, monkeypatch)


def with_meta(body: bytes, meta: Any) -> bytes:
    """The same List (same text) with another top-level metadata value, kubectl's layout kept."""
    doc = json.loads(body)
    indent = 4 if body.lstrip().startswith(b"{\n") else None
    doc["metadata"] = meta
    return json.dumps(doc, indent=indent).encode()


# ---------------------------------------------------------------------------------------------
# Real-format lists
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LISTS))
def test_corpus_lists_metadata_items_and_labels_changed(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    body = LISTS[name]
    doc = json.loads(body)
    changed = copy.deepcopy(doc)
    for item in changed.get("items") or []:
        if isinstance(item, dict) and isinstance(item.get("metadata"), dict):
            item["metadata"]["resourceVersion"] = "999999"  # a heartbeat: nothing the rows show
    removed = dict(doc, items=(doc.get("items") or [])[1:])
    records = [
        record(body, 0),
        record(body, 1),  # the very same text
        record(with_meta(body, {"resourceVersion": "2"}), 2, rv="2"),
        record(with_meta(body, {"resourceVersion": "3", "continue": ""}), 3, rv="3"),
        record(json.dumps(changed), 4, rv="4"),
        record(json.dumps(changed), 5, rv="5"),
        record(json.dumps(removed), 6, rv="6"),
        record(body, 7, rv="7"),
        record(body, 8, rv="8", control_plane_endpoint="10.20.30.201"),  # other labels: other entry
        record(body, 9, rv="9", lb_node_name_pattern="moc-"),
        record(body, 10, rv="10", lb_node_name_pattern="("),
        record(body, 11, rv="11", source="k8s-b"),
        record(body, 12, rv="12"),
    ]
    check(records, monkeypatch)


def test_demo_capture_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``k8s`` record of an hour of the demo site (scale-out, leaked services, reboots) in order."""
    records = [r for r in reuse_equality.demo_hour() if r.kind == "k8s"]
    assert len(records) > 300
    check(records, monkeypatch)


# ---------------------------------------------------------------------------------------------
# The fast paths are taken (so the comparisons above test them)
# ---------------------------------------------------------------------------------------------


NODES = LISTS["nodes_wl-prod.json"]


def test_same_list_but_metadata_is_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    k8s.parse_record(record(with_meta(NODES, {"resourceVersion": "76"}), 0, rv="76"), CATALOG)
    monkeypatch.setattr(k8s, "_walk", _forbidden)
    monkeypatch.setattr(_reuse, "split_top", _forbidden)
    result = k8s.parse_record(record(with_meta(NODES, {"resourceVersion": "77"}), 1, rv="77"), CATALOG)
    assert result.ip_observations.num_rows > 0
    assert set(result.ip_observations.column("ts").to_pylist()) == {TS + timedelta(seconds=60)}


def test_same_rows_reuse_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = json.loads(NODES)
    k8s.parse_record(record(NODES, 0), CATALOG)
    doc["items"][0]["status"]["conditions"] = [{"type": "Ready", "lastHeartbeatTime": "2026-11-20T10:01:00Z"}]
    monkeypatch.setattr(_reuse, "tables", _forbidden)
    k8s.parse_record(record(json.dumps(doc), 1, rv="2"), CATALOG)


def test_changed_rows_are_never_served_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = json.loads(NODES)
    k8s.parse_record(record(NODES, 0), CATALOG)
    for address in doc["items"][0]["status"]["addresses"]:
        if address["type"] == "InternalIP":
            address["address"] = "10.99.99.99"
    result = k8s.parse_record(record(json.dumps(doc), 1, rv="2"), CATALOG)
    assert "10.99.99.99" in result.ip_observations.column("ip").to_pylist()


def _forbidden(*args: object, **kwargs: object) -> Any:
    raise AssertionError("the fast path should not get here")


# ---------------------------------------------------------------------------------------------
# Hand-made edges
# ---------------------------------------------------------------------------------------------

SVC: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"type": "LoadBalancer", "ports": [{"port": 1, "protocol": "TCP"}]},
    "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}]}},
}


def _svc_list(port: Any, meta: Any = None, **top: Any) -> str:
    svc = copy.deepcopy(SVC)
    svc["spec"]["ports"][0]["port"] = port
    return json.dumps({"kind": "ServiceList", "metadata": meta or {"resourceVersion": "1"}, "items": [svc], **top})


def _meta_as(text: str) -> str:
    """A Service list whose metadata value is ``text`` (any JSON, or not JSON)."""
    return _svc_list(80).replace('{"resourceVersion": "1"}', text)


@pytest.mark.parametrize(
    "bodies",
    [
        # equal in Python, not to the parser
        [_svc_list(1), _svc_list(True), _svc_list(1.0), _svc_list(1)],
        # the metadata value: nested, a number, null, a string, an array, missing, twice
        [_svc_list(80, {"resourceVersion": "1", "x": [[{"a": None}]]}), _svc_list(80, {"resourceVersion": "2"})],
        [
            _meta_as("12"),
            _meta_as("13"),
        ],
        [
            _meta_as("1"),
            _meta_as("12"),
        ],
        [
            _meta_as("null"),
            _meta_as("[]"),
        ],
        [
            _meta_as('"a"'),
            _meta_as('"a"}'),
        ],
        [_svc_list(80).replace('"metadata": {"resourceVersion": "1"}, ', ""), _svc_list(80)],
        [_svc_list(80, meta={"a": 1}, metadata2=1).replace("metadata2", "metadata"), _svc_list(80, meta={"a": 2})],
        # the metadata value ends where a longer one would: must be one whole value
        [
            _meta_as("1"),
            _meta_as("1 2"),
        ],
        # whitespace, BOM, trailing text, a second document, a List kind changed
        [_svc_list(80), " " + _svc_list(80) + "\n", "\ufeff" + _svc_list(80), _svc_list(80) + "x", _svc_list(80) * 2],
        [_svc_list(80), _svc_list(80).replace("ServiceList", "NodeList"), _svc_list(80).replace("ServiceList", "List")],
        # items repeated, kind repeated, not an object, invalid JSON
        [_svc_list(80, items2=[]).replace("items2", "items"), _svc_list(80, kind2="X").replace("kind2", "kind")],
        [_svc_list(80), "[]", "{", '{"kind": "ServiceList", "items": [', "", "null", _svc_list(80)],
        ['{"kind": "ServiceList", "items": {}}', '{"kind": "ServiceList", "items": null}', '{"kind": 5, "items": []}'],
        # single objects are parsed every time
        [json.dumps({"kind": "Service", **SVC}), json.dumps({"kind": "Service", **SVC})],
        # lone surrogates and escapes
        [_svc_list(80).replace("web", "w\\ud800b"), _svc_list(80).replace("web", "w\\u0065b"), _svc_list(80)],
    ],
)
def test_edges(bodies: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    records = [record(b, k, rv=str(k)) for k, b in enumerate(bodies)]
    check(records + records, monkeypatch)


def test_nesting_around_the_recursion_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a deep body is too deep must not depend on the path taken (see ``_reuse``)."""
    limit = sys.getrecursionlimit()
    for depth in range(limit - 60, limit + 3, 3):
        deep = "[" * depth + "]" * depth
        records = [
            record(_meta_as("[]"), 0),
            record(_meta_as(deep), 1),
            record('{"kind": "List", "items": [' + deep + "]}", 2),
        ]
        check(records, monkeypatch)


def test_memory_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_reuse, "CACHE", _reuse.SkeletonCache(max_bytes=40_000))
    for i in range(20):
        k8s.parse_record(dataclasses.replace(record(NODES, i), target=f"t{i}"), CATALOG)
        assert _reuse.CACHE.nbytes <= 40_000
    assert 0 < len(_reuse.CACHE._entries) < 20
    big = json.loads(NODES)
    big["items"] *= 50
    k8s.parse_record(dataclasses.replace(record(json.dumps(big), 99), target="big"), CATALOG)
    assert _reuse.CACHE.nbytes <= 40_000


def test_key_leaves_out_only_the_resource_version() -> None:
    a, b = record(NODES, rv="1"), record(NODES, rv="2")
    assert _reuse.CACHE.key(a) == _reuse.CACHE.key(b)
    assert _reuse.CACHE.key(a) != _reuse.CACHE.key(record(NODES, rv="1", network="vnet-2"))
    assert _reuse.CACHE.key(a) != _reuse.CACHE.key(dataclasses.replace(a, host="wl-dev"))


# ---------------------------------------------------------------------------------------------
# Hypothesis
# ---------------------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers(-2, 70000) | st.sampled_from([0.0, -0.0, 1.0, 80.0, 1e300])
_values = st.sampled_from(
    ["LoadBalancer", "InternalIP", "10.0.0.1", "10.0.0.2", "fd00::1", "10.0.0.0/24", "TCP", "UDP", "x", "\ud800"]
)
_leaf = _scalars | _values
_port = st.fixed_dictionaries({"port": _leaf}, optional={"protocol": _leaf})


def _in_default(service: dict[str, Any]) -> dict[str, Any]:
    return {**service, "metadata": {**service["metadata"], "namespace": "default"}}


_service = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries({"name": st.sampled_from(["a", "b", "kubernetes"]) | _leaf}),
        "spec": st.fixed_dictionaries(
            {"type": st.sampled_from(["LoadBalancer", "ClusterIP"])},
            optional={"ports": st.lists(_port, max_size=2), "loadBalancerIP": _leaf, "clusterIP": _leaf},
        ),
    },
    optional={
        "status": st.fixed_dictionaries(
            {"loadBalancer": st.fixed_dictionaries({"ingress": st.lists(st.fixed_dictionaries({"ip": _leaf}))})}
        )
    },
).map(_in_default)
_address = st.fixed_dictionaries({"type": st.sampled_from(["InternalIP", "Hostname"]), "address": _leaf})
_node = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {"name": st.sampled_from(["n1", "wl-load-balancer-x"]) | _leaf},
            optional={"labels": st.dictionaries(st.sampled_from(["kubernetes.io/role", "a"]), _leaf, max_size=2)},
        ),
        "status": st.fixed_dictionaries({"addresses": st.lists(_address, max_size=2)}),
    },
    optional={"spec": st.fixed_dictionaries({}, optional={"podCIDRs": st.lists(_leaf, max_size=2), "podCIDR": _leaf})},
)
_items = st.lists(_service | _node | _leaf, max_size=3)
_meta = st.none() | st.fixed_dictionaries({"resourceVersion": st.sampled_from(["1", "2", "3"])}) | _leaf
_kind = st.sampled_from(["ServiceList", "NodeList", "List", "Service"])
_layout = st.sampled_from([None, 2, "compact"])
_labels = st.fixed_dictionaries(
    {"resource_version": st.sampled_from(["1", "2"])},
    optional={"control_plane_endpoint": st.sampled_from(["10.0.0.1", "10.0.0.2:6443", "x"])},
)


def _dump(kind: str, meta: Any, items: Any, layout: int | str | None, meta_first: bool) -> str:
    parts = [("kind", kind), ("metadata", meta), ("items", items)] if meta_first else [("kind", kind), ("items", items)]
    if not meta_first:
        parts.append(("metadata", meta))
    if layout == "compact":
        return json.dumps(dict(parts), separators=(",", ":"))
    return json.dumps(dict(parts), indent=layout)


@given(
    st.lists(_items, min_size=1, max_size=3),
    st.lists(
        st.tuples(st.integers(0, 2), _kind, _meta, _layout, st.booleans(), _labels),
        min_size=1,
        max_size=6,
    ),
)
def test_hypothesis_sequences(items_pool: list[Any], steps: list[Any]) -> None:
    _reuse.CACHE.clear()
    with pytest.MonkeyPatch.context() as monkeypatch:
        records = [
            dataclasses.replace(
                record(_dump(kind, meta, items_pool[i % len(items_pool)], layout, first), k),
                labels={"cluster": "wl-prod", **labels},
            )
            for k, (i, kind, meta, layout, first, labels) in enumerate(steps)
        ]
        check(records, monkeypatch)


def test_fast_readers_without_stack_room_defer_to_the_careful_parser() -> None:
    """A stack with no room for the fast readers' margin gives "not the fast path", never a
    RecursionError that would be counted as a parser crash (found by review)."""
    from collector.sources.k8s_inventory import _reuse

    assert _reuse._deeper(10**6, lambda: "fast", "careful") == "careful"
    assert _reuse._deeper(3, lambda: "fast", "careful") == "fast"
