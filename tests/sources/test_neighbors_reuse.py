"""The neighbours parser's per-target row outcomes give exactly what the careful parser gives.

Every case parses a sequence of tables of one target with reuse on (the per-target cache filling
as in a collector or a replay) and each table again with reuse off (``HCIWATCH_PARSE_REUSE=0``:
every row normalized, the table built the plain way), and compares: the IPC bytes of the table
(schema, values, dictionaries, timestamps), the error texts, or the rejection. Sequences: every
neighbour table of the source's testdata and of the conformance corpus, with rows changed,
dropped, reordered and repeated; the ``neighbors`` records of a capture of the demo site
(``lab``); values Python calls equal but the parser does not (``1``/``1.0``/``true``, ``0.0``/
``-0.0``); hypothesis-made tables drawn from a small pool of rows so rows recur between polls.
A spy shows which keys the row normalization reads (the cache keys on them), and that known rows
are not normalized again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.catalog import Catalog
from collector.schema import RawRecord
from collector.sources.neighbors import _reuse
from collector.sources.neighbors import parse as neighbors
from collector.sources.skeletons import SkeletonCache
from collector.text import ORJSON
from tests.fixtures import reuse_equality

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = ROOT / "collector" / "sources" / "neighbors" / "testdata"
CASES = json.loads((TESTDATA / "cases.json").read_text())
TABLES = {
    p.name: p.read_bytes()
    for p in sorted(
        [
            *(
                TESTDATA / c["file"]
                for c in json.loads((TESTDATA / "cases.json").read_text())
                if c["kind"] == "neighbors"
            ),
            *(ROOT / "tests" / "conformance" / "corpus").glob("*neigh*.json"),
        ]
    )
}
TS = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
CATALOG = Catalog()
FUZZ = settings(suppress_health_check=list(HealthCheck))

Outcome = reuse_equality.Outcome


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    _reuse.CACHE.clear()
    yield
    _reuse.CACHE.clear()


def record(body: bytes | str, k: int = 0, **labels: str) -> RawRecord:
    return RawRecord(
        ts=TS + timedelta(seconds=30 * k),
        kind="neighbors",
        target="exec:ip -j neigh",
        body=body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body,
        host="hci-node-01",
        labels=labels,
    )


def outcome(rec: RawRecord, monkeypatch: pytest.MonkeyPatch, reuse: bool) -> Outcome:
    return reuse_equality.outcome(neighbors.parse_record, CATALOG, rec, monkeypatch, reuse)


def check(records: list[RawRecord], monkeypatch: pytest.MonkeyPatch) -> None:
    reuse_equality.check(neighbors.parse_record, CATALOG, records, monkeypatch)


def variants(rows: list[Any]) -> list[list[Any]]:
    """A table as later polls may show it: the same, states moved, rows dropped, moved, added."""
    moved = [dict(r, state="stale") if isinstance(r, dict) and "state" in r else r for r in rows]
    flipped = [dict(r, State=4) if isinstance(r, dict) and "State" in r else r for r in rows]
    return [rows, rows, moved, flipped, rows[1:], rows[::-1], rows + rows[:2], [], rows, moved]


# ---------------------------------------------------------------------------------------------
# Real-format tables
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TABLES))
def test_corpus_tables_over_polls(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    body = TABLES[name]
    records = [record(body, 0), record(body, 1)]  # the very bytes (UTF-16, CRLF, BOM) twice
    doc = json.loads(body.decode("utf-16") if body[:2] in (b"\xff\xfe", b"\xfe\xff") else body.decode("utf-8-sig"))
    rows = doc if isinstance(doc, list) else [doc]
    records += [record(json.dumps(v), k + 2) for k, v in enumerate(variants(rows))]
    records += [record(body, 20, cluster="aks-1"), record(body, 21, cluster="aks-1", network="n")]
    check(records, monkeypatch)


def test_demo_capture_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``neighbors`` record of an hour of the demo site (duplicate IP, failover) in order."""
    records = [r for r in reuse_equality.demo_hour() if r.kind == "neighbors"]
    assert len(records) > 200
    check(records, monkeypatch)


ROW = {"ip": "10.0.0.5", "mac": "00:15:5d:0a:0b:0c", "interface": "eth0", "state": "reachable"}
PS = {"IPAddress": "10.0.0.6", "LinkLayerAddress": "00-15-5D-0A-0B-0D", "InterfaceAlias": "vEthernet", "State": 5}
NEIGH = {"dst": "10.0.0.7", "dev": "eth0", "lladdr": "00:15:5d:0a:0b:0e", "state": ["REACHABLE"]}


@pytest.mark.parametrize(
    "tables",
    [
        # equal in Python, not to the parser
        [[dict(PS, State=1)], [dict(PS, State=True)], [dict(PS, State=1.0)], [dict(PS, State=1)]],
        [[dict(PS, ifIndex=0, InterfaceAlias=None)], [dict(PS, ifIndex=False, InterfaceAlias=None)]],
        [[dict(ROW, mac=0.0)], [dict(ROW, mac=-0.0)], [dict(ROW, mac=float("nan"))], [dict(ROW, mac=0)]],
        [[dict(PS, LinkLayerAddress=[0, 1, 2, 3, 4, 5])], [dict(PS, LinkLayerAddress=[False, True, 2, 3, 4, 5])]],
        [[dict(PS, LinkLayerAddress=[0, 1, 2, 3, 4, 5.0])], [dict(PS, LinkLayerAddress=[0, 1, 2, 3, 4, 5])]],
        [[dict(NEIGH, state=["FAILED", "REACHABLE"])], [dict(NEIGH, state=["FAILED", 1])], [NEIGH]],
        # null versus absent, the same row twice, a row that is not an object, objects where read
        [[dict(ROW, state=None, State="failed")], [dict(ROW, State="failed")], [ROW, ROW, 5, None, [ROW]]],
        [[dict(ROW, host={"a": 1})], [dict(ROW, host={"a": 2})], [dict(ROW, interface=[{"x": 1}])]],
        # keys the parser does not read, shapes changing under one key set, host fallback
        [[dict(ROW, extra={"a": 1})], [dict(ROW, extra={"a": 2})], [dict(ROW, extra=1)], [dict(ROW, host="lb")]],
        [[ROW, PS, NEIGH], [PS, NEIGH, ROW], [dict(ROW, IPAddress="10.0.0.9")], [dict(PS, dst="10.0.0.1")]],
        # only errors (rejected), only skipped, errors among observations
        [[dict(ROW, ip="999.1.1.1")], [dict(ROW, ip="999.1.1.1"), ROW], [dict(ROW, mac=None)], [dict(ROW, ip="")]],
        # lone surrogates, escapes, zones
        [[dict(ROW, interface="e\ud800")], [dict(ROW, interface="e\udc00")], [dict(ROW, ip="fe80::1%eth0")]],
    ],
)
def test_edges(tables: list[list[Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    records = [record(json.dumps(t), k) for k, t in enumerate(tables + tables)]
    records += [record(json.dumps({"value": tables[0], "Count": len(tables[0])}), 99), record(json.dumps(ROW), 100)]
    check(records, monkeypatch)


_PLAIN_BODY = json.dumps([ROW, dict(ROW, ip="10.0.0.8", state=None)])


@pytest.mark.parametrize(
    "body",
    [
        _PLAIN_BODY.encode(),  # what orjson decodes (plain rows)
        b"\xef\xbb\xbf" + _PLAIN_BODY.encode(),  # a BOM: json's way
        _PLAIN_BODY.encode("utf-16"),
        b"  \r\n" + _PLAIN_BODY.encode() + b"\n ",
        b"",
        b"   ",
        b"5",
        b'"x"',
        b"null",
        b"[]",
        b"{}",
        b"[1, 2]",
        b"[[]]",
        _PLAIN_BODY.replace('"reachable"', '"re\\ud800"').encode(),  # an escaped lone surrogate
        _PLAIN_BODY.replace('"eth0"', '"e\\ud83d\\ude00"').encode(),  # a pair
        _PLAIN_BODY.replace('"reachable"', "NaN", 1).encode(),
        _PLAIN_BODY.replace('"reachable"', "9" * 30, 1).encode(),  # an integer past 64 bits
        _PLAIN_BODY.replace('"reachable"', "1e400", 1).encode(),
        _PLAIN_BODY.replace("eth0", "eth\xff").encode("latin-1"),  # not UTF-8
        _PLAIN_BODY.replace("eth0", "eth\u00e9").encode(),
        _PLAIN_BODY.encode()[:-3],  # truncated
        _PLAIN_BODY.encode() + b"x",
        json.dumps({"value": [ROW], "Count": 1}).encode(),
        json.dumps({"value": [ROW]}).encode(),  # no Count: one row that is an object of a list
        json.dumps({"value": {"a": "b"}, "Count": 1}).encode(),
        json.dumps({"value": [ROW, "x"], "Count": 2}).encode(),
        json.dumps(dict(ROW, ip="10.0.0.1", ip2="x")).encode(),
        b'[{"ip":"10.0.0.5","ip":"10.0.0.6","mac":"00:15:5d:0a:0b:0c","state":"reachable"}]',  # a key twice
    ],
)
def test_bodies_decoded_fast_or_carefully(body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain rows are decoded by orjson (when installed), every other body by ``json``: the same."""
    check([record(_PLAIN_BODY, 0), record(body, 1), record(body, 2), record(_PLAIN_BODY, 3)], monkeypatch)


# ---------------------------------------------------------------------------------------------
# What the cache relies on
# ---------------------------------------------------------------------------------------------


class _Spy(dict[str, Any]):
    """A row that records which keys are read."""

    read: set[str] = set()  # noqa: RUF012 - one shared record of reads is the point

    def get(self, key: str, default: Any = None) -> Any:
        _Spy.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        _Spy.read.add(str(key))
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        _Spy.read.add(key)
        return super().__getitem__(key)


@pytest.mark.parametrize(
    "row",
    [ROW, PS, NEIGH, dict(ROW, ip="x"), dict(PS, LinkLayerAddress=None), {"z": 1}, dict(ROW, host="h", dev="d")],
)
def test_normalization_reads_only_the_keyed_fields(row: dict[str, Any]) -> None:
    _Spy.read = set()
    list(neighbors.neighbor_rows([_Spy(row)]))
    assert _Spy.read <= set(_reuse.READ_KEYS)


def test_known_rows_are_not_normalized_again(monkeypatch: pytest.MonkeyPatch) -> None:
    table = [ROW, dict(ROW, ip="10.0.0.8", state="stale")]
    neighbors.parse_record(record(json.dumps(table), 0), CATALOG)
    neighbors.parse_record(record(json.dumps([dict(ROW, state="stale"), table[1]]), 1), CATALOG)
    monkeypatch.setattr(neighbors, "_outcomes", _forbidden)
    monkeypatch.setattr(_reuse, "table", _forbidden)
    result = neighbors.parse_record(record(json.dumps(table), 2), CATALOG)  # ROW back to reachable
    assert result.ip_observations.num_rows == 2


def test_changed_rows_are_never_served_from_the_cache() -> None:
    neighbors.parse_record(record(json.dumps([ROW]), 0), CATALOG)
    result = neighbors.parse_record(record(json.dumps([dict(ROW, mac="00:15:5d:00:00:01")]), 1), CATALOG)
    assert result.ip_observations.column("mac").to_pylist() == ["00:15:5d:00:00:01"]


def _forbidden(*args: object, **kwargs: object) -> Any:
    raise AssertionError("the fast path should not get here")


def test_memory_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_reuse, "CACHE", SkeletonCache(max_bytes=60_000))
    body = json.dumps([dict(ROW, ip=f"10.0.{i // 250}.{i % 250}") for i in range(30)])
    for i in range(20):
        neighbors.parse_record(dataclasses.replace(record(body, i), target=f"t{i}"), CATALOG)
        assert _reuse.CACHE.nbytes <= 60_000
    assert 0 < len(_reuse.CACHE._entries) < 20


def test_outcomes_kept_per_target_are_bounded() -> None:
    """An entry flipping states is kept, but a table that changes completely every poll does not
    pile up outcomes: at most KEEP times the table's rows (plus 64), plus the table's own."""
    for k in range(30):
        body = json.dumps([dict(ROW, ip=f"10.{k}.0.{i}") for i in range(10)])
        neighbors.parse_record(record(body, k), CATALOG)
        sk = next(iter(_reuse.CACHE._entries.values()))
        assert len(sk.outcomes) <= _reuse.KEEP * 10 + 64 + 10


# ---------------------------------------------------------------------------------------------
# Hypothesis
# ---------------------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers(-2, 9) | st.sampled_from([0.0, -0.0, 1.0, 5.0]) | st.text(max_size=4)
_addr = st.sampled_from(["10.0.0.1", "10.0.0.2", "fe80::1%3", "::", "255.255.255.255", "224.0.0.1", "1.2.3", ""])
_mac = st.sampled_from(["00-11-22-33-44-55", "00:11:22:33:44:56", "ff:ff:ff:ff:ff:ff", "001122334457", ""]) | (
    _scalars | st.lists(st.integers(0, 255) | st.booleans(), min_size=5, max_size=7)
)
_small = _scalars | st.lists(_scalars, max_size=2) | st.fixed_dictionaries({"a": _scalars})
_state = st.sampled_from(["stale", "reachable", "failed", ["REACHABLE"], ["FAILED", "STALE"], 5, 1]) | _small
_row = st.fixed_dictionaries(
    {},
    optional={
        "ip": _addr | _small,
        "mac": _mac,
        "interface": st.sampled_from(["eth0", "eth1"]) | _small,
        "state": _state,
        "dst": _addr,
        "lladdr": _mac,
        "dev": _small,
        "IPAddress": _addr,
        "LinkLayerAddress": _mac,
        "InterfaceAlias": _small,
        "ifIndex": _small,
        "State": _state,
        "host": _small,
        "PSComputerName": _small,
        "other": _small,
    },
)
_plain_row = st.fixed_dictionaries(
    {"ip": _addr, "mac": st.sampled_from(["00:11:22:33:44:55", "00:11:22:33:44:56", "zz"])},
    optional={"interface": st.sampled_from(["eth0", "eth1"]), "state": st.sampled_from(["stale", "failed"])},
)


@FUZZ
@given(
    st.lists(_row | _plain_row | _scalars, min_size=1, max_size=6),
    st.lists(st.lists(st.integers(0, 5), max_size=6), min_size=1, max_size=5),
    st.sampled_from([{}, {"cluster": "c"}]),
)
def test_hypothesis_polls(pool: list[Any], tables: list[list[int]], labels: dict[str, str]) -> None:
    """Tables made of rows from a small pool, so rows recur (and change) between polls."""
    _reuse.CACHE.clear()
    with pytest.MonkeyPatch.context() as monkeypatch:
        records = [
            record(json.dumps([pool[i % len(pool)] for i in picks]), k, **labels) for k, picks in enumerate(tables)
        ]
        check(records, monkeypatch)


@pytest.mark.skipif(ORJSON is None, reason="orjson is not installed")
def test_plain_rows_take_the_fast_decoder_and_others_do_not() -> None:
    fast = _reuse.fast_rows(record(_PLAIN_BODY))
    assert fast is not None and fast[0] == json.loads(_PLAIN_BODY)
    assert _reuse.fast_rows(record(json.dumps([dict(ROW, State=5)]))) is None  # a number: json's way
    assert _reuse.fast_rows(record(b"\xef\xbb\xbf" + _PLAIN_BODY.encode())) is None
