"""The repeated-scrape path (``_reuse``) gives exactly what the full parser gives.

Each case parses a first payload (which leaves the target's skeleton), then a second one with
reuse on, and compares it with a cold full parse of the second payload: same tables (values,
timestamps, labels, schema), same errors, same exceptions. Bodies are the real-format corpus
under ``collector/sources/*/testdata`` with values rewritten, plus hand-made edge cases.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.catalog import DEFAULT_CATALOG
from collector.errors import ParseError
from collector.schema import ParseResult, RawRecord
from collector.sources.prometheus import _reuse
from collector.sources.prometheus.parse import parse_record

TS = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2] / "collector" / "sources"
CORPUS = {
    p.name: p.read_bytes()
    for folder in ("prometheus", "windows", "kube_proxy", "calico", "metallb")
    for p in sorted((ROOT / folder / "testdata").glob("*.prom"))
}
_VALUE = re.compile(rb"(\}|^[a-zA-Z_:][a-zA-Z0-9_:]*) ([0-9][0-9.e+-]*)\r?$", re.M)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    _reuse.CACHE.clear()
    yield
    _reuse.CACHE.clear()


def record(body: bytes, k: int = 0, **labels: str) -> RawRecord:
    return RawRecord(
        ts=TS + timedelta(seconds=30 * k), kind="prometheus", target="h1:9182", host="h1", body=body, labels=labels
    )


def outcome(rec: RawRecord) -> tuple[str, ParseResult | None]:
    try:
        return "", parse_record(rec, DEFAULT_CATALOG)
    except ParseError as exc:
        return str(exc), None


def assert_same_as_cold(first: bytes, second: bytes, **labels: str) -> int:
    """Parse ``first`` then ``second`` (reuse on) and ``second`` cold; returns the cache hits."""
    outcome(record(first, 0, **labels))
    hits = _reuse.CACHE.hits
    warm_err, warm = outcome(record(second, 1, **labels))
    hit = _reuse.CACHE.hits - hits
    _reuse.CACHE.clear()
    cold_err, cold = outcome(record(second, 1, **labels))
    assert warm_err == cold_err
    if cold is None or warm is None:
        assert cold is None and warm is None
        return hit
    assert warm.samples.schema == cold.samples.schema
    assert warm.samples.drop_columns(["value"]).equals(cold.samples.drop_columns(["value"]))
    w, c = (t.column("value").to_numpy() for t in (warm.samples, cold.samples))
    assert np.array_equal(w, c, equal_nan=True)  # NaN samples are kept (and unequal to themselves)
    assert warm.ip_observations.equals(cold.ip_observations)
    assert [str(e) for e in warm.errors] == [str(e) for e in cold.errors]
    warm.samples.validate(full=True)
    return hit


def bump(body: bytes, by: int = 1) -> bytes:
    return _VALUE.sub(lambda m: m.group(1) + b" " + str(int(float(m.group(2))) + by).encode(), body)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_with_new_values_is_reused_and_equal(name: str) -> None:
    body = CORPUS[name]
    assert_same_as_cold(body, bump(body), cluster="c1")


def test_a_repeated_windows_scrape_is_a_hit() -> None:
    body = CORPUS["windows_exporter.prom"] if "windows_exporter.prom" in CORPUS else next(iter(CORPUS.values()))
    assert assert_same_as_cold(body, bump(body, 3), cluster="c1", network="n1") == 1


def test_label_less_lines_in_the_middle_keep_row_order() -> None:
    first = b'a_total{x="1"} 1\nplain_gauge 5\nb_total{y="2"} 2\nother 7\n'
    second = b'a_total{x="1"} 10\nplain_gauge 50\nb_total{y="2"} 20\nother 70\n'
    assert assert_same_as_cold(first, second) == 1


@pytest.mark.parametrize(
    "second",
    [
        b'a_total{x="2"} 1\nplain 5\n',  # a label value changed
        b'a_total{x="1"} 1 1700000000000\nplain 5\n',  # a timestamp appeared
        b'a_total{x="1"}  1\nplain 5\n',  # odd spacing: the exact path decides
        b'a_total{x="1"} nope\nplain 5\n',  # a bad value: reported exactly as by the full parser
        b'a_total{x="1"} 1\nplain 5\n# TYPE plain gauge\n',  # one more line
        b'a_total{x="1"} 1\r\nplain 0x1p3\r\n',  # CRLF and a hex float
        b'a_total{x="1"} 1\nplain -nan\n',  # Arrow reads it, Go's grammar does not
        b'a_total{x="1"} -nan\nplain +Inf\n',
        b'a_total{x="1"} 1e999\nplain 1e999\n',
        b'a_total{x="1"} 1\nplain\n',  # a value missing
        b"",
    ],
)
def test_a_changed_payload_is_parsed_in_full(second: bytes) -> None:
    assert_same_as_cold(b'a_total{x="1"} 1\nplain 5\n', second)


def test_other_targets_and_labels_do_not_share_a_skeleton() -> None:
    body = b'a_total{x="1"} 1\n'
    outcome(record(body, 0, cluster="c1"))
    hits = _reuse.CACHE.hits
    warm = parse_record(record(body, 1, cluster="c2"), DEFAULT_CATALOG)
    assert _reuse.CACHE.hits == hits
    assert warm.samples.column("labels").to_pylist() == [[("x", "1"), ("cluster", "c2")]]


def test_the_cache_is_bounded_in_bytes() -> None:
    cache = _reuse.SkeletonCache(max_bytes=1)
    outcome(record(b'a_total{x="1"} 1\n'))
    sk = _reuse.CACHE.get(record(b""), DEFAULT_CATALOG)
    assert sk is not None
    cache.put(record(b""), sk)
    assert cache.nbytes == 0


def test_reuse_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HCIWATCH_PARSE_REUSE", "0")
    body = b'a_total{x="1"} 1\n'
    outcome(record(body, 0))
    outcome(record(body, 1))
    assert _reuse.CACHE.hits == 0


@given(st.sampled_from(sorted(CORPUS)), st.binary(max_size=64), st.integers(min_value=0, max_value=10**6))
def test_fuzz_reuse_equals_the_full_parser(name: str, junk: bytes, cut: int) -> None:
    """The first payload is a corpus file, the second the same file with a random splice."""
    _reuse.CACHE.clear()
    body = CORPUS[name]
    at = cut % (len(body) + 1)
    assert_same_as_cold(body, body[:at] + junk + body[at + len(junk) :])
