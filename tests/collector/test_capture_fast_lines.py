"""The fast reading of capture lines (orjson, usual shape) gives exactly the careful reading.

:func:`collector.capture.parse_line` decodes a good line of the usual shape with orjson when it
is installed and hands every other line to :func:`collector.capture.careful_line` (``json``).
Each line here — the lines of a generated demo hour, hand-made odd lines, hypothesis-made
mutations — must come out of both as the same record or the same error (text, file, line,
target). Without orjson the two are one path and the suite is skipped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.capture import CaptureItem, careful_line, parse_line, record_to_json
from collector.schema import RawRecord
from collector.text import ORJSON
from tests.fixtures.reuse_equality import demo_hour

pytestmark = pytest.mark.skipif(ORJSON is None, reason="orjson is not installed: one path only")

KINDS = frozenset({"prometheus", "haproxy-csv", "k8s", "mqtt", "neighbors", "event"})
GOOD = (
    '{"ts":"2026-11-20T10:00:00.000Z","kind":"prometheus","target":"h:9182","host":"h",'
    '"labels":{"c":"1"},"body":"a 1\\n"}'
)


def line_of(rec: RawRecord) -> bytes:
    return json.dumps(record_to_json(rec), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def same(raw: bytes, kinds: frozenset[str] | None = KINDS) -> CaptureItem | None:
    fast = parse_line(raw, file="f.jsonl", line=7, kinds=kinds)
    slow = careful_line(raw, file="f.jsonl", line=7, kinds=kinds)
    if slow is None or fast is None:
        assert fast is None and slow is None
        return None
    assert fast.record == slow.record
    assert (fast.file, fast.line) == (slow.file, slow.line)
    assert str(fast.error) == str(slow.error)
    if slow.error is not None:
        assert fast.error is not None and fast.error.target == slow.error.target
    return fast


def test_the_lines_of_a_demo_hour() -> None:
    recs = demo_hour()
    assert {r.kind for r in recs} >= {"prometheus", "haproxy-csv", "k8s", "neighbors"}
    for rec in recs:
        item = same(line_of(rec))
        assert item is not None and item.record == rec


def test_records_with_odd_fields_round_trip() -> None:
    ts = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    for rec in [
        RawRecord(ts, "mqtt", "tcp://b:1883", b'{"x":1}', "h", {"a": "b"}, topic="t/1"),
        RawRecord(ts, "haproxy-csv", "lb", b"\xff\xfe not UTF-8", ""),  # body_b64
        RawRecord(ts, "k8s", "api", 'é \U0001f600 \u2028 \x00 \\ "'.encode(), "h", {}),
        RawRecord(ts, "k8s", "api", b"", "", {"empty": ""}),
    ]:
        item = same(line_of(rec))
        assert item is not None and item.record == rec


@pytest.mark.parametrize(
    "line",
    [
        GOOD,
        GOOD + "\r\n",
        "  " + GOOD + " \t",
        "",
        "   ",
        "\u00a0",  # blank to str.strip
        GOOD[:-5],  # truncated
        "\ufeff" + GOOD,  # a BOM
        GOOD.replace('"a 1\\n"', '"a\\ud800 1"'),  # a lone surrogate
        GOOD.replace('"a 1\\n"', '"a \\ud83d\\ude00 1"'),  # a pair: a character
        GOOD.replace('"c":"1"', '"c":"\\udfff"'),
        GOOD.replace('"c":"1"', '"c":1'),  # labels of numbers: the careful way reads them
        GOOD.replace('"c":"1"', '"c":1.5,"d":true'),
        GOOD.replace('"c":"1"', '"c":' + "9" * 40),  # an integer past 64 bits
        GOOD.replace('"c":"1"', '"c":NaN'),
        GOOD.replace('"c":"1"', '"c":1e400'),
        GOOD.replace('"c":"1"', '"c":{"x":"y"}'),
        GOOD.replace('"labels":{"c":"1"}', '"labels":[]'),
        GOOD.replace('"labels":{"c":"1"}', '"labels":null'),
        GOOD.replace('"labels":{"c":"1"}', '"labels":"x"'),
        GOOD.replace('"host":"h"', '"host":0'),
        GOOD.replace('"host":"h"', '"host":null'),
        GOOD.replace('"host":"h"', '"host":5'),
        GOOD.replace('"host":"h",', ""),
        GOOD.replace('"host":"h"', '"host":"h","topic":7'),
        GOOD.replace('"host":"h"', '"host":"h","topic":null'),
        GOOD.replace('"host":"h"', '"host":"h","body_b64":"!!"'),  # body wins
        GOOD.replace('"body":"a 1\\n"', '"body_b64":"YSAx"'),
        GOOD.replace('"body":"a 1\\n"', '"body_b64":"!!"'),
        GOOD.replace('"body":"a 1\\n"', '"body":null'),
        GOOD.replace('"body":"a 1\\n"', '"body":7'),
        GOOD.replace(',"body":"a 1\\n"', ""),
        GOOD.replace('"kind":"prometheus"', '"kind":"smtp"'),  # unknown kind
        GOOD.replace('"kind":"prometheus"', '"kind":5'),
        GOOD.replace('"target":"h:9182"', '"target":null'),
        GOOD.replace('"ts":"2026-11-20T10:00:00.000Z",', ""),
        GOOD.replace("2026-11-20T10:00:00.000Z", "yesterday"),
        GOOD.replace("2026-11-20T10:00:00.000Z", "2026-11-20T10:00:00"),  # no timezone
        GOOD.replace("2026-11-20T10:00:00.000Z", "2026-11-20T12:00:00+02:00"),
        GOOD.replace("2026-11-20T10:00:00.000Z", " 2026-11-20T10:00:00z "),
        GOOD.replace('"host":"h"', '"host":"h","host":"g"'),  # a key twice: the last one
        GOOD.replace('"host":"h"', '"extra":[1,2.5,null,' + "1" * 30 + "]"),
        GOOD.replace('"a 1\\n"', '"a \\u0001 1"'),
        GOOD.replace('"a 1\\n"', '"a \x01 1"'),  # a raw control character
        GOOD + "x",  # text after the object
        GOOD + "\x00",
        "[1, 2]",
        "1" * 5000,
        "[" * 100_000 + "]" * 100_000,
        '"just a string"',
    ],
)
def test_odd_lines(line: str) -> None:
    same(line.encode("utf-8", "surrogatepass"))
    same(line.encode("utf-8", "surrogatepass"), kinds=None)


@pytest.mark.parametrize(
    "raw",
    [
        GOOD.encode().replace(b"a 1", b"a \xff 1"),  # not UTF-8
        GOOD.encode().replace(b"a 1", b"a \xed\xa0\x80 1"),  # an encoded surrogate
        GOOD.encode().replace(b"a 1", b"a \xc0\xaf 1"),  # an overlong form
        GOOD.encode().replace(b"a 1", "a \U0010ffff 1".encode()),
    ],
)
def test_odd_bytes(raw: bytes) -> None:
    same(raw)


@given(st.integers(min_value=0, max_value=10**6), st.binary(max_size=6))
def test_fuzz_spliced_lines(at: int, junk: bytes) -> None:
    """A good line with a few bytes replaced anywhere: mostly errors, some good records."""
    raw = GOOD.encode()
    i = at % (len(raw) + 1)
    same(raw[:i] + junk + raw[i + len(junk) :])


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@given(st.dictionaries(st.sampled_from(["ts", "kind", "target", "host", "labels", "topic", "body", "x"]), _json_values))
def test_fuzz_objects(obj: dict[str, object]) -> None:
    """Objects with any of the fields holding any JSON value."""
    base = json.loads(GOOD)
    base.update(obj)
    same(json.dumps(base, ensure_ascii=False).encode("utf-8", "surrogatepass"))
