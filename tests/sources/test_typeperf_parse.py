"""typeperf / relog PDH-CSV: golden files, time zones, streaming chunks, and fuzzing."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.catalog import DEFAULT_CATALOG
from collector.errors import ParseError
from collector.registry import get_parser
from collector.schema import SAMPLES_SCHEMA, ParseResult, RawRecord, iso, parse_iso
from collector.sources.typeperf.parse import (
    iter_typeperf_records,
    local_to_utc_ms,
    parse_counter_path,
    parse_record,
)

TESTDATA = Path(__file__).resolve().parents[2] / "collector" / "sources" / "typeperf" / "testdata"
T0 = datetime(2024, 5, 29, 16, 30, tzinfo=UTC)
CASES = json.loads((TESTDATA / "cases.json").read_text())
HEADER = '"(PDH-CSV 4.0) (Coordinated Universal Time)(0)","\\\\N1\\RDMA Activity(nic a)\\RDMA Completion Queue Errors"'


def rec(body: bytes | str, labels: dict[str, str] | None = None) -> RawRecord:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return RawRecord(ts=T0, kind="typeperf-csv", target="perf.csv", body=data, labels=labels or {})


def as_json(result: ParseResult) -> dict[str, Any]:
    samples = [
        {
            "ts": iso(r["ts"]),
            "source": r["source"],
            "host": r["host"],
            "metric": r["metric"],
            "labels": dict(r["labels"]),
            "value": r["value"],
        }
        for r in result.samples.to_pylist()
    ]
    return {"samples": samples, "errors": [str(e) for e in result.errors]}


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_golden(case: dict[str, Any]) -> None:
    record = RawRecord(
        ts=parse_iso(case["ts"]),
        kind="typeperf-csv",
        target=case["file"],
        body=(TESTDATA / case["file"]).read_bytes(),
        labels=case.get("labels", {}),
    )
    result = get_parser("typeperf-csv")(record, DEFAULT_CATALOG)
    assert result.samples.schema.equals(SAMPLES_SCHEMA)
    got = as_json(result)
    expected_file = TESTDATA / (case["file"] + ".expected.json")
    if os.environ.get("HCIWATCH_UPDATE_GOLDEN") or not expected_file.exists():
        expected_file.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    assert got == json.loads(expected_file.read_text())


def test_truncated_last_line_is_an_error_with_its_line_and_the_rest_is_kept() -> None:
    r = parse_record(rec((TESTDATA / "typeperf_hci.csv").read_bytes()), DEFAULT_CATALOG)
    [err] = r.errors
    assert isinstance(err, ParseError) and err.line == 5
    assert r.samples.num_rows == 8 + 7 + 7  # blanks skipped


def test_bias_converts_local_time_to_utc() -> None:
    # EDT (bias 240): 12:26:40 local = 16:26:40 UTC; W. Europe DST (bias -120): 18:26 local = 16:26 UTC
    assert local_to_utc_ms("05/29/2024 12:26:40.123", 240) == 1717000000123
    assert local_to_utc_ms("05/29/2024 18:26:40.123", -120) == 1717000000123
    with pytest.raises(ValueError):
        local_to_utc_ms("2024-05-29 12:26:40", 0)


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        (
            "\\\\HCI-NODE1\\RDMA Activity(Mellanox ConnectX-6 Dx Adapter)\\RDMA Inbound Bytes/sec",
            ("HCI-NODE1", "RDMA Activity", "Mellanox ConnectX-6 Dx Adapter", "RDMA Inbound Bytes/sec"),
        ),
        (
            "\\\\N\\SMB Client Shares(\\\\fs(1)\\share)\\Avg. sec/Read",
            ("N", "SMB Client Shares", "\\\\fs(1)\\share", "Avg. sec/Read"),
        ),
        ("\\\\N\\Memory\\Available MBytes", ("N", "Memory", None, "Available MBytes")),
        ("\\Memory\\Available MBytes", ("", "Memory", None, "Available MBytes")),
    ],
)
def test_counter_paths(path: str, parts: tuple[str, str, str | None, str]) -> None:
    cp = parse_counter_path(path)
    assert (cp.host, cp.obj, cp.instance, cp.counter) == parts


def test_bad_header_raises() -> None:
    with pytest.raises(ParseError, match="PDH-CSV") as ei:
        parse_record(rec('"Time","x"\r\n"1","2"\r\n'), DEFAULT_CATALOG)
    assert ei.value.line == 1
    with pytest.raises(ParseError, match="empty"):
        parse_record(rec(b"\r\n\r\n"), DEFAULT_CATALOG)


def test_console_capture_chatter_is_ignored() -> None:
    body = (
        "\r\n" + HEADER + '\r\n"05/29/2024 16:26:40.000","3"\r\nExiting, please wait...\r\n'
        "The command completed successfully.\r\n"
    )
    r = parse_record(rec(body), DEFAULT_CATALOG)
    assert not r.errors
    [row] = r.samples.to_pylist()
    assert (row["host"], row["metric"], dict(row["labels"]), row["value"]) == (
        "N1",
        "rdma.cq_errors_total",
        {"nic": "nic a"},
        3.0,
    )


def test_row_problems_are_errors() -> None:
    body = HEADER + '\r\n"05/29/2024 16:26:40.000","3","4"\r\n"bad time","3"\r\n"05/29/2024 16:26:41.000","x"\r\n'
    r = parse_record(rec(body), DEFAULT_CATALOG)
    assert [
        (e.line, "extra" in str(e) or "timestamp" in str(e) or "non-numeric" in str(e))
        for e in r.errors
        if isinstance(e, ParseError)
    ] == [(2, True), (3, True), (4, True)]


def test_iter_chunks_keep_file_line_numbers(tmp_path: Path) -> None:
    src = (TESTDATA / "typeperf_hci.csv").read_bytes()
    path = tmp_path / "big.csv"
    path.write_bytes(src)
    records = list(iter_typeperf_records(path, chunk_rows=2))
    assert [r.labels["first_line"] for r in records] == ["2", "4"]
    assert records[0].ts == datetime(2024, 5, 29, 16, 26, 40, 123000, tzinfo=UTC)
    results = [parse_record(r, DEFAULT_CATALOG) for r in records]
    errors = [e for res in results for e in res.errors]
    assert [e.line for e in errors if isinstance(e, ParseError)] == [5]
    whole = parse_record(rec(src), DEFAULT_CATALOG)
    assert sum(r.samples.num_rows for r in results) == whole.samples.num_rows


def test_iter_utf16_file_and_big_file_streaming(tmp_path: Path) -> None:
    records = list(iter_typeperf_records(TESTDATA / "relog_utf16.csv", chunk_rows=1))
    assert len(records) == 2
    assert all(r.kind == "typeperf-csv" and r.body.startswith(b'"(PDH-CSV') for r in records)
    path = tmp_path / "long.csv"
    with path.open("w", newline="") as fh:
        fh.write(HEADER + "\r\n")
        for i in range(5000):
            fh.write(f'"05/29/2024 16:{i // 60 % 60:02d}:{i % 60:02d}.000","{i}"\r\n')
    chunks = list(iter_typeperf_records(path, chunk_rows=1000))
    assert len(chunks) == 5
    assert sum(parse_record(c, DEFAULT_CATALOG).samples.num_rows for c in chunks) == 5000


# ---------------------------------------------------------------------------------------------
# Fuzz
# ---------------------------------------------------------------------------------------------

_cell = st.sampled_from(
    [
        "1.5",
        " ",
        "",
        "x",
        "1e308",
        "nan",
        "-0",
        "05/29/2024 16:26:40.000",
        "13/45/2024 99:99:99.999",
        "01/01/0001 00:00:00.000",
        "12/31/9999 23:59:59.999",
    ]
) | st.text(max_size=6)
_header_cell = st.sampled_from(
    [
        "(PDH-CSV 4.0) (UTC)(0)",
        "(PDH-CSV 4.0) (X)(-1500)",
        "(PDH-CSV 4.0) (Maroc (heure d'été))(-60)",
        "(PDH-CSV 4.0)",  # typeperf printing to the console: no time zone
        "\\\\PC\\Netzwerkschnittstelle(NIC)\\Empfangene Bytes/s",
        "\\\\N\\RDMA Activity(a)\\RDMA Completion Queue Errors",
        "\\\\N\\Memory\\Available MBytes",
        "\\\\N\\Obj(",
        "\\\\N",
        "\\\\N\\Mellanox WinOF-2 Port QoS(x Prio 9)\\Rcv Pause Frames",
    ]
) | st.text(max_size=10)


def _csv_line(cells: list[str]) -> str:
    return ",".join('"' + c.replace('"', '""') + '"' for c in cells)


@pytest.mark.timeout(1800)  # the 10,000-example fuzz profile on a shared CI box
@given(
    st.lists(_header_cell, min_size=1, max_size=4),
    st.lists(st.lists(_cell, min_size=0, max_size=5), max_size=5),
    st.booleans(),
    st.integers(0, 40),
)
def test_fuzz_csv_structure(header: list[str], rows: list[list[str]], utf16: bool, cut: int) -> None:
    text = "\r\n".join([_csv_line(header), *(_csv_line(r) for r in rows)])
    if cut:
        text = text[:-cut]
    body = (b"\xff\xfe" + text.encode("utf-16-le", "surrogatepass")) if utf16 else text.encode("utf-8", "surrogatepass")
    try:
        result = parse_record(rec(body, labels={"first_line": "7"}), DEFAULT_CATALOG)
    except ParseError:
        return
    assert result.samples.schema.equals(SAMPLES_SCHEMA)
    assert all(isinstance(e, ParseError) for e in result.errors)


@pytest.mark.timeout(1800)  # the 10,000-example fuzz profile on a shared CI box
@given(st.binary(max_size=300))
def test_fuzz_bytes(body: bytes) -> None:
    try:
        result = parse_record(rec(body), DEFAULT_CATALOG)
    except ParseError:
        return
    assert result.samples.schema.equals(SAMPLES_SCHEMA)
