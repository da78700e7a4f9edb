"""Property tests: whatever bytes arrive, the HAProxy parsers return rows or raise ParseError.

Three generators: CSV built from real column names with missing/extra/garbage cells and wrong
field counts; mutations (truncation, byte edits, other encodings) of the real 2.6 capture; and
arbitrary bytes. ``HYPOTHESIS_PROFILE=fuzz`` runs 10,000 cases each.
"""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from collector.catalog import DEFAULT_CATALOG
from collector.errors import ParseError
from collector.schema import IP_OBSERVATIONS_SCHEMA, SAMPLES_SCHEMA, ParseResult, RawRecord
from collector.sources.haproxy.parse import NUMERIC_COLUMNS, TEXT_COLUMNS, parse_info_record, parse_record

TESTDATA = Path(__file__).resolve().parents[2] / "collector" / "sources" / "haproxy" / "testdata"
CAPTURE = (TESTDATA / "show_stat_2.6.12.csv").read_bytes()
INFO = (TESTDATA / "show_info_2.6.12.txt").read_bytes()
COLUMNS = sorted(NUMERIC_COLUMNS | TEXT_COLUMNS)
TS = datetime(2026, 11, 20, tzinfo=UTC)


def run_csv(body: bytes) -> ParseResult | None:
    rec = RawRecord(ts=TS, kind="haproxy-csv", target="fuzz", body=body, host="lb", labels={"cluster": "c"})
    try:
        result = parse_record(rec, DEFAULT_CATALOG)
    except ParseError:
        return None
    check(result)
    for row in result.samples.to_pylist():
        labels = dict(row["labels"])
        assert {"proxy", "server", "type", "cluster"} <= set(labels)
    return result


def run_info(body: bytes) -> None:
    rec = RawRecord(ts=TS, kind="haproxy-info", target="fuzz", body=body, host="lb")
    with contextlib.suppress(ParseError):
        check(parse_info_record(rec, DEFAULT_CATALOG))


def check(result: ParseResult) -> None:
    assert result.samples.schema == SAMPLES_SCHEMA
    assert result.ip_observations.schema == IP_OBSERVATIONS_SCHEMA
    assert all(v is not None and math.isfinite(v) for v in result.samples.column("value").to_pylist())
    assert all(isinstance(e, ParseError) for e in result.errors)


cell = st.one_of(
    st.just(""),
    st.integers(min_value=-(2**64), max_value=2**64).map(str),
    st.sampled_from(
        [
            "UP",
            "DOWN",
            "MAINT (via a/b)",
            "no check",
            "UP 1/3",
            "OPEN",
            "nan",
            "1e3",
            "-",
            "10.0.0.1:80",
            "[fd00::1]:443",
            "[::1",
            '"quoted, text"',
            '"',
            "L4OK",
            "* L7OK",
        ]
    ),
    st.text(max_size=20),
)
column_name = st.one_of(st.sampled_from(COLUMNS), st.text(max_size=12))


@st.composite
def csv_payloads(draw: st.DrawFn) -> bytes:
    header = draw(st.lists(column_name, min_size=0, max_size=40))
    if draw(st.booleans()):
        header = ["pxname", "svname", *header]
    width = len(header)
    rows = draw(st.lists(st.lists(cell, min_size=max(0, width - 2), max_size=width + 2), max_size=8))
    trailing = "," if draw(st.booleans()) else ""
    prefix = draw(st.sampled_from(["# ", "#", "", "garbage\n# "]))
    text = prefix + ",".join(header) + trailing + "\n" + "".join(",".join(r) + trailing + "\n" for r in rows)
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):
        data = data[: draw(st.integers(min_value=0, max_value=len(data)))]
    return data


@given(csv_payloads())
def test_csv_structured(body: bytes) -> None:
    run_csv(body)


@st.composite
def mutated_capture(draw: st.DrawFn) -> bytes:
    data = bytearray(CAPTURE)
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "truncate"]))
        at = draw(st.integers(min_value=0, max_value=len(data)))
        if op == "delete":
            del data[at : at + draw(st.integers(min_value=1, max_value=200))]
        elif op == "insert":
            data[at:at] = draw(
                st.one_of(st.binary(max_size=30), st.sampled_from([b",", b"\n", b'"', b"# ", b"\xff\xfe", b"\r\n"]))
            )
        elif op == "replace" and at < len(data):
            data[at] = draw(st.integers(min_value=0, max_value=255))
        else:
            del data[at:]
    if draw(st.booleans()):
        encoding = draw(st.sampled_from(["utf-16-le", "utf-32"]))
        return bytes(data).decode("utf-8", errors="replace").encode(encoding)
    return bytes(data)


@given(mutated_capture())
def test_csv_mutated_real_capture(body: bytes) -> None:
    result = run_csv(body)
    if body == CAPTURE:
        assert result is not None and result.errors == []


@given(st.binary(max_size=2000))
def test_csv_arbitrary_bytes(body: bytes) -> None:
    run_csv(body)


@given(
    st.one_of(
        st.binary(max_size=1000),
        st.builds(
            lambda cut, junk: INFO[:cut] + junk + INFO[cut:],
            st.integers(min_value=0, max_value=len(INFO)),
            st.binary(max_size=40),
        ),
        st.lists(
            st.tuples(st.sampled_from(["CurrConns", "Version", "Idle_pct", "Name", "x", ""]), st.text(max_size=15)),
            max_size=10,
        ).map(lambda kv: "\n".join(f"{k}: {v}" for k, v in kv).encode("utf-8", errors="replace")),
    )
)
def test_info_never_raises_anything_else(body: bytes) -> None:
    run_info(body)
