"""Golden and edge-case tests of the pure HAProxy parsers (no HAProxy process needed).

Golden files sit next to their inputs in ``collector/sources/haproxy/testdata``. To regenerate
them after a deliberate change, run with ``HCIWATCH_UPDATE_GOLDEN=1``: the test rewrites the file
and fails, so a regeneration can never pass silently; review the diff, then run again.
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.catalog import DEFAULT_CATALOG, HAPROXY_CSV
from collector.errors import ParseError
from collector.schema import IP_OBSERVATIONS_SCHEMA, SAMPLES_SCHEMA, IpObservation, ParseResult, RawRecord
from collector.sources.haproxy.parse import (
    HAPROXY_INFO,
    NUMERIC_COLUMNS,
    TEXT_COLUMNS,
    parse_info_record,
    parse_record,
    status_is_up,
)

TESTDATA = Path(__file__).resolve().parents[2] / "collector" / "sources" / "haproxy" / "testdata"
TS = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
LABELS = {"cluster": "hci-1", "network": "vnet-1"}
UPDATE = os.environ.get("HCIWATCH_UPDATE_GOLDEN") == "1"

Key = tuple[str, tuple[tuple[str, str], ...]]


def record(
    body: bytes | str, *, kind: str = "haproxy-csv", labels: dict[str, str] | None = None, host: str = "lb-vm-1"
) -> RawRecord:
    return RawRecord(
        ts=TS,
        kind=kind,
        target="unix:///run/haproxy/admin.sock",
        host=host,
        labels=LABELS if labels is None else labels,
        body=body.encode() if isinstance(body, str) else body,
    )


def parse(body: bytes | str, **kw: Any) -> ParseResult:
    return parse_record(record(body, **kw), DEFAULT_CATALOG)


def samples_by_key(result: ParseResult) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for row in result.samples.to_pylist():
        key = (row["metric"], tuple(sorted(row["labels"])))
        assert key not in out, f"duplicate series {key}"
        out[key] = row["value"]
    return out


def row_values(result: ParseResult, proxy: str, server: str) -> dict[str, float]:
    """metric → value for one row (the haproxy.up sample included)."""
    out = {}
    for row in result.samples.to_pylist():
        labels = dict(row["labels"])
        if labels["proxy"] == proxy and labels["server"] == server:
            out[row["metric"]] = row["value"]
    return out


def up_labels(result: ParseResult, proxy: str, server: str) -> dict[str, str]:
    for row in result.samples.to_pylist():
        labels = dict(row["labels"])
        if row["metric"] == "haproxy.up" and labels["proxy"] == proxy and labels["server"] == server:
            return labels
    raise AssertionError(f"no haproxy.up for {proxy}/{server}")


def read_csv(body: str) -> list[dict[str, str]]:
    lines = [ln for ln in body.splitlines() if ln.strip()]
    assert lines[0].startswith("# ")
    return list(csv.DictReader([lines[0][2:], *lines[1:]]))


def write_csv(header: list[str], rows: list[list[str]], *, trailing: bool = True) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    end = [""] if trailing else []
    buf.write("# " + ",".join(header + end) + "\n")
    for r in rows:
        w.writerow(r + end)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Golden files
# ---------------------------------------------------------------------------------------------


def golden_text(result: ParseResult) -> str:
    samples = sorted(
        (
            {"metric": r["metric"], "labels": dict(sorted(r["labels"])), "value": r["value"]}
            for r in result.samples.to_pylist()
        ),
        key=lambda s: (s["metric"], json.dumps(s["labels"], sort_keys=True)),
    )
    ips = sorted(
        (
            {k: r[k] for k in ("ip", "owner_kind", "owner", "cluster", "network", "source")}
            for r in result.ip_observations.to_pylist()
        ),
        key=lambda o: (o["owner"], o["ip"]),
    )
    lines = ["{", '"samples": [']
    lines += [json.dumps(s, sort_keys=True) + ("," if i < len(samples) - 1 else "") for i, s in enumerate(samples)]
    lines += ["],", '"ip_observations": [']
    lines += [json.dumps(o, sort_keys=True) + ("," if i < len(ips) - 1 else "") for i, o in enumerate(ips)]
    lines += ["],", '"errors": ' + json.dumps([str(e) for e in result.errors]), "}", ""]
    return "\n".join(lines)


GOLDEN_CASES = [
    ("show_stat_2.6.12.csv", "haproxy-csv"),
    ("stats_page_2.6.12.csv", "haproxy-csv"),
    ("reference_fields_2.6.0.csv", "haproxy-csv"),
    ("show_info_2.6.12.txt", "haproxy-info"),
]


@pytest.mark.parametrize(("name", "kind"), GOLDEN_CASES)
def test_golden(name: str, kind: str) -> None:
    rec = record((TESTDATA / name).read_bytes(), kind=kind)
    parser = parse_record if kind == "haproxy-csv" else parse_info_record
    result = parser(rec, DEFAULT_CATALOG)
    assert result.samples.schema == SAMPLES_SCHEMA
    assert result.ip_observations.schema == IP_OBSERVATIONS_SCHEMA
    assert result.errors == []
    got = golden_text(result)
    golden = TESTDATA / (name.rsplit(".", 1)[0] + ".golden.json")
    if UPDATE:
        golden.write_text(got)
        pytest.fail(f"rewrote {golden.name}; review the diff and rerun without HCIWATCH_UPDATE_GOLDEN")
    assert golden.exists(), f"{golden} missing: run once with HCIWATCH_UPDATE_GOLDEN=1"
    assert got == golden.read_text()


CSV_FILES = ["show_stat_2.6.12.csv", "stats_page_2.6.12.csv", "reference_fields_2.6.0.csv"]


@pytest.mark.parametrize("name", CSV_FILES)
def test_every_mapped_column_matches_an_independent_csv_read(name: str) -> None:
    """Each row's canonical metrics equal the columns as Python's csv module reads them."""
    body = (TESTDATA / name).read_text()
    result = parse(body)
    series = samples_by_key(result)
    type_names = {"0": "frontend", "1": "backend", "2": "server", "3": "listener"}
    checked = 0
    for row in read_csv(body):
        rtype = type_names[row["type"]]
        base = {**LABELS, "proxy": row["pxname"], "server": row["svname"], "type": rtype}
        labels = tuple(sorted(base.items()))
        for column, metric in HAPROXY_CSV.items():
            value = row.get(column, "")
            name_ = metric.name if (column, rtype) != ("act", "server") else "haproxy.csv.act"
            if value == "":
                assert (name_, labels) not in series
            else:
                assert series[(name_, labels)] == float(value), (row["pxname"], row["svname"], column)
                checked += 1
        up = dict(base, status=row["status"])
        if row.get("check_status"):
            up["check_status"] = row["check_status"].lstrip("* ")
        want_up = 1.0 if status_is_up(row["status"]) else 0.0
        assert series[("haproxy.up", tuple(sorted(up.items())))] == want_up
    assert checked > 50


def test_real_capture_content() -> None:
    result = parse((TESTDATA / "show_stat_2.6.12.csv").read_bytes())
    assert up_labels(result, "k8s-apiserver-nodes", "control-plane-3")["status"] == "DOWN"
    assert up_labels(result, "k8s-apiserver-nodes", "control-plane-3")["check_status"] == "L4CON"
    assert row_values(result, "k8s-apiserver-nodes", "control-plane-3")["haproxy.up"] == 0.0
    assert row_values(result, "k8s-apiserver-nodes", "control-plane-1")["haproxy.up"] == 1.0
    assert up_labels(result, "svc-ingress-nginx-443-nodes", "worker-1")["status"] == "no check"
    assert row_values(result, "svc-ingress-nginx-443-nodes", "worker-1")["haproxy.up"] == 1.0
    fe = row_values(result, "k8s-apiserver", "FRONTEND")
    assert fe["haproxy.sessions_total"] == 5 and fe["haproxy.bytes_in_total"] == 75
    # identifiers and text are never metrics; unmapped numbers keep their native name
    metrics = set(result.samples.column("metric").to_pylist())
    assert not {"haproxy.csv.pid", "haproxy.csv.iid", "haproxy.csv.sid", "haproxy.csv.type"} & metrics
    assert {"haproxy.csv.smax", "haproxy.csv.lastchg", "haproxy.csv.h1_bytes_in"} <= metrics
    owners = {(o["owner_kind"], o["owner"]) for o in result.ip_observations.to_pylist()}
    assert ("haproxy-server", "k8s-apiserver-nodes/control-plane-3") in owners
    assert ("haproxy-frontend", "k8s-apiserver/sock-1") in owners
    assert all(
        o["cluster"] == "hci-1" and o["network"] == "vnet-1" and o["source"] == "haproxy"
        for o in result.ip_observations.to_pylist()
    )


def test_reference_layout_details() -> None:
    """The 2.6 field list: IPv6 addr, quoted text, transitional and MAINT (via) statuses."""
    result = parse((TESTDATA / "reference_fields_2.6.0.csv").read_bytes())
    assert result.errors == []
    ips = {o["owner"]: (o["ip"], o["owner_kind"]) for o in result.ip_observations.to_pylist()}
    assert ips["k8s-apiserver-nodes/control-plane-3"] == ("fd00:10::13", "haproxy-server")
    assert ips["k8s-apiserver/sock-1"] == ("10.0.0.100", "haproxy-frontend")
    assert ips["svc-default-web-80-nodes/worker-1"] == ("10.0.0.21", "haproxy-server")
    assert up_labels(result, "k8s-apiserver-nodes", "control-plane-2")["status"] == "UP 1/3"
    assert up_labels(result, "k8s-apiserver-nodes", "control-plane-2")["check_status"] == "L4TOUT"
    assert row_values(result, "k8s-apiserver-nodes", "control-plane-2")["haproxy.up"] == 1.0
    maint = up_labels(result, "k8s-apiserver-nodes", "control-plane-3")
    assert maint["status"] == "MAINT (via k8s-apiserver-nodes/control-plane-1)"
    assert row_values(result, "k8s-apiserver-nodes", "control-plane-3")["haproxy.up"] == 0.0
    drain = row_values(result, "svc-default-web-80-nodes", "worker-1")
    assert drain["haproxy.up"] == 0.0 and drain["haproxy.csv.check_code"] == 503
    # `act` counts servers on a backend but is a flag on a server row
    assert row_values(result, "k8s-apiserver-nodes", "BACKEND")["haproxy.active_servers"] == 2
    assert "haproxy.active_servers" not in row_values(result, "k8s-apiserver-nodes", "control-plane-1")
    assert row_values(result, "k8s-apiserver-nodes", "control-plane-1")["haproxy.csv.act"] == 1
    assert row_values(result, "k8s-apiserver-nodes", "control-plane-3")["haproxy.csv.lastsess"] == -1


# ---------------------------------------------------------------------------------------------
# Header handling: by name, missing, extra and trailing columns
# ---------------------------------------------------------------------------------------------


def _capture_table() -> tuple[list[str], list[list[str]]]:
    text = (TESTDATA / "show_stat_2.6.12.csv").read_text()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0][2:].split(",")[:-1]
    rows = [next(csv.reader([ln]))[:-1] for ln in lines[1:]]
    return header, rows


def test_columns_are_read_by_name_not_position() -> None:
    header, rows = _capture_table()
    baseline = samples_by_key(parse(write_csv(header, rows)))
    order = list(range(len(header)))[::-1]  # reversed: every column moves
    shuffled = write_csv([header[i] for i in order], [[r[i] for i in order] for r in rows])
    result = parse(shuffled)
    assert result.errors == []
    assert samples_by_key(result) == baseline


def test_missing_columns_are_tolerated() -> None:
    header, rows = _capture_table()
    drop = {"type", "addr", "scur", "check_status", "-", "h1_bytes_in"}
    keep = [i for i, h in enumerate(header) if h not in drop]
    result = parse(write_csv([header[i] for i in keep], [[r[i] for i in keep] for r in rows]))
    assert result.errors == []
    assert result.ip_observations.num_rows == 0
    metrics = set(result.samples.column("metric").to_pylist())
    assert "haproxy.current_sessions" not in metrics and "haproxy.sessions_total" in metrics
    # without `type`, the row type comes from svname
    assert up_labels(result, "k8s-apiserver", "FRONTEND")["type"] == "frontend"
    assert up_labels(result, "k8s-apiserver-nodes", "BACKEND")["type"] == "backend"
    assert up_labels(result, "k8s-apiserver-nodes", "control-plane-1")["type"] == "server"


def test_unknown_columns_numbers_kept_text_ignored() -> None:
    header, rows = _capture_table()
    result = parse(write_csv([*header, "future_count", "future_text"], [[*r, "7", "some words"] for r in rows]))
    assert result.errors == []
    fe = row_values(result, "k8s-apiserver", "FRONTEND")
    assert fe["haproxy.csv.future_count"] == 7
    assert not any("future_text" in m for m in fe)


@pytest.mark.parametrize("trailing", [True, False])
def test_trailing_empty_column_optional(trailing: bool) -> None:
    header, rows = _capture_table()
    baseline = samples_by_key(parse(write_csv(header, rows)))
    result = parse(write_csv(header, rows, trailing=trailing))
    assert result.errors == []
    assert samples_by_key(result) == baseline


def test_rows_with_and_without_trailing_comma_under_one_header() -> None:
    text = "# pxname,svname,scur,status,type,\nfe,FRONTEND,3,OPEN,0,\nfe2,FRONTEND,4,OPEN,0\n"
    result = parse(text)
    assert result.errors == []
    assert row_values(result, "fe2", "FRONTEND")["haproxy.current_sessions"] == 4


def test_empty_fields_give_no_sample() -> None:
    result = parse("# pxname,svname,scur,slim,status,type\nfe,FRONTEND,,100,,0\n")
    assert row_values(result, "fe", "FRONTEND") == {"haproxy.session_limit": 100.0}


def test_quoted_text_fields_with_commas() -> None:
    text = '# pxname,svname,check_desc,scur,status,type\nbe,s1,"timeout, at step 1 ""connect""",2,DOWN,2\n'
    result = parse(text)
    assert result.errors == []
    assert row_values(result, "be", "s1") == {"haproxy.current_sessions": 2.0, "haproxy.up": 0.0}


def test_header_after_leading_text_and_second_header() -> None:
    text = "garbage first line\n# pxname,svname,scur,type\nfe,FRONTEND,1,0\n# pxname,svname,type,scur\nbe,BACKEND,1,9\n"
    result = parse(text)
    assert [e.line for e in result.errors if isinstance(e, ParseError)] == [1]
    assert row_values(result, "fe", "FRONTEND") == {"haproxy.current_sessions": 1.0}
    assert row_values(result, "be", "BACKEND") == {"haproxy.current_sessions": 9.0}


# ---------------------------------------------------------------------------------------------
# Broken input
# ---------------------------------------------------------------------------------------------


def test_wrong_field_count_is_a_line_error_and_rest_kept() -> None:
    text = "# pxname,svname,scur,type,\nfe,FRONTEND,1,0,\nbe,BACKEND,1,1,extra,\nshort,FRONTEND\nfe2,FRONTEND,2,0,\n"
    result = parse(text)
    errors = [e for e in result.errors if isinstance(e, ParseError)]
    assert [e.line for e in errors] == [3, 4]
    assert "5 fields but the header has 4" in str(errors[0])
    assert all(e.source == "haproxy" and e.target == "unix:///run/haproxy/admin.sock" for e in errors)
    assert row_values(result, "fe2", "FRONTEND") == {"haproxy.current_sessions": 2.0}
    assert row_values(result, "be", "BACKEND") == {}


@pytest.mark.parametrize("bad", ["abc", "1e5", "nan", "1_000", " 5", "0x10", "inf", "--1"])
def test_non_number_in_numeric_column_costs_that_cell_only(bad: str) -> None:
    text = f"# pxname,svname,scur,stot,status,type\nfe,FRONTEND,1,{bad},OPEN,0\nok,FRONTEND,2,3,OPEN,0\n"
    result = parse(text)
    assert len(result.errors) == 1
    err = result.errors[0]
    assert isinstance(err, ParseError) and err.line == 2
    assert "'stot'" in str(err) and "fe/FRONTEND" in str(err)
    # the rest of the row survives: its other metric and haproxy.up
    assert row_values(result, "fe", "FRONTEND") == {"haproxy.current_sessions": 1.0, "haproxy.up": 1.0}
    assert row_values(result, "ok", "FRONTEND")["haproxy.sessions_total"] == 3


def test_non_number_type_is_a_line_error() -> None:
    result = parse("# pxname,svname,scur,type\nfe,FRONTEND,1,frontend\n")
    assert len(result.errors) == 1 and "type" in str(result.errors[0])
    assert result.samples.num_rows == 0


def test_unknown_type_number_is_kept_as_label() -> None:
    result = parse("# pxname,svname,scur,type\nx,y,1,7\n")
    assert result.errors == []
    assert samples_by_key(result) == {
        ("haproxy.current_sessions", tuple(sorted({**LABELS, "proxy": "x", "server": "y", "type": "7"}.items()))): 1.0
    }


@pytest.mark.parametrize(
    "body",
    [b"", b"\n\n", b"Unknown command: 'show stats'\n", b"pxname,svname,scur\nfe,FRONTEND,1\n", b"<html>x</html>"],
)
def test_no_header_raises(body: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse(body)
    assert "no HAProxy CSV header" in str(info.value)
    assert info.value.target == "unix:///run/haproxy/admin.sock"


def test_header_without_pxname_raises() -> None:
    with pytest.raises(ParseError, match="pxname/svname"):
        parse("# name,scur\nfe,1\n")


def test_invalid_utf8_is_reported_and_rest_kept() -> None:
    body = b"# pxname,svname,scur,type\nfe\xff\xfe,FRONTEND,1,0\nok,FRONTEND,2,0\n"
    result = parse(body)
    assert len(result.errors) == 1
    err = result.errors[0]
    assert isinstance(err, ParseError) and err.offset == body.index(b"\xff")
    assert row_values(result, "ok", "FRONTEND") == {"haproxy.current_sessions": 2.0}
    assert row_values(result, "fe\ufffd\ufffd", "FRONTEND") == {"haproxy.current_sessions": 1.0}


def test_crlf_and_bom() -> None:
    result = parse(b"\xef\xbb\xbf# pxname,svname,scur,type\r\nfe,FRONTEND,1,0\r\n")
    assert result.errors == []
    assert row_values(result, "fe", "FRONTEND") == {"haproxy.current_sessions": 1.0}


# ---------------------------------------------------------------------------------------------
# Labels, source, host
# ---------------------------------------------------------------------------------------------


def test_source_host_labels_and_timestamp() -> None:
    result = parse(
        "# pxname,svname,scur,type,addr\nbe,s1,1,2,10.1.2.3:80\n",
        labels={"cluster": "c9", "source": "lb-vm"},
        host="lbvm-7",
    )
    rows = result.samples.to_pylist()
    assert {r["source"] for r in rows} == {"lb-vm"}
    assert {r["host"] for r in rows} == {"lbvm-7"}
    assert {r["ts"] for r in rows} == {TS}
    assert dict(rows[0]["labels"]) == {"cluster": "c9", "proxy": "be", "server": "s1", "type": "server"}
    obs = result.ip_observations.to_pylist()
    assert obs == [
        {
            "ts": TS,
            "ip": "10.1.2.3",
            "mac": None,
            "owner_kind": "haproxy-server",
            "owner": "be/s1",
            "cluster": "c9",
            "network": None,
            "source": "lb-vm",
        }
    ]
    # the rows are valid value objects too
    IpObservation(
        ts=TS, ip=obs[0]["ip"], owner_kind=obs[0]["owner_kind"], owner=obs[0]["owner"], source=obs[0]["source"]
    )


def test_record_labels_never_override_payload_labels() -> None:
    result = parse(
        "# pxname,svname,scur,type,status\nbe,s1,1,2,UP\n",
        labels={"proxy": "x", "server": "y", "type": "z", "status": "w", "zone": "a"},
    )
    for row in result.samples.to_pylist():
        keys = [k for k, _ in row["labels"]]
        assert len(keys) == len(set(keys))
        labels = dict(row["labels"])
        got = (labels["proxy"], labels["server"], labels["type"], labels["zone"])
        assert got == ("be", "s1", "server", "a")


@pytest.mark.parametrize(
    ("addr", "ip"),
    [
        ("10.0.0.1:6443", "10.0.0.1"),
        ("[fd00::1]:443", "fd00::1"),
        ("10.0.0.1", "10.0.0.1"),
        ("fd00::2", "fd00::2"),
        ("0.0.0.0:80", None),
        ("[::]:80", None),
        ("unix@/run/x.sock", None),
        ("node-1.example:80", None),
        ("", None),
        ("[fd00::1", None),
    ],
)
def test_addr_forms(addr: str, ip: str | None) -> None:
    result = parse(f"# pxname,svname,type,addr\nbe,s1,2,{addr}\n")
    got = [o["ip"] for o in result.ip_observations.to_pylist()]
    assert got == ([ip] if ip else [])


def test_frontend_and_backend_addr_are_not_observations() -> None:
    result = parse("# pxname,svname,type,addr\nfe,FRONTEND,0,10.0.0.1:80\nbe,BACKEND,1,10.0.0.2:80\n")
    assert result.ip_observations.num_rows == 0


@pytest.mark.parametrize(
    ("status", "up"),
    [
        ("UP", True),
        ("OPEN", True),
        ("no check", True),
        ("UP 1/3", True),
        ("UP 2/3", True),
        ("DOWN", False),
        ("DOWN 1/2", False),
        ("MAINT", False),
        ("MAINT (via be/s1)", False),
        ("MAINT (resolution)", False),
        ("NOLB", False),
        ("NOLB 1/3", False),
        ("DRAIN", False),
        ("DRAIN (agent)", False),
        ("DOWN (agent)", False),
        ("STOP", False),
        ("FULL", False),
        ("up", False),
        ("UP 1/", False),
    ],
)
def test_status_is_up(status: str, up: bool) -> None:
    assert status_is_up(status) is up


def test_catalog_columns_are_numeric_columns() -> None:
    """A catalog entry for a text column would never produce a sample: catch it here."""
    assert set(HAPROXY_CSV) <= NUMERIC_COLUMNS
    assert not NUMERIC_COLUMNS & TEXT_COLUMNS


# ---------------------------------------------------------------------------------------------
# show info
# ---------------------------------------------------------------------------------------------


def info(body: bytes | str) -> ParseResult:
    return parse_info_record(record(body, kind="haproxy-info"), DEFAULT_CATALOG)


def test_info_real_capture() -> None:
    text = (TESTDATA / "show_info_2.6.12.txt").read_text()
    fields = dict(ln.split(": ", 1) for ln in text.splitlines() if ": " in ln)
    result = info(text)
    assert result.errors == []
    series = samples_by_key(result)
    base = tuple(sorted(LABELS.items()))
    for key, metric in HAPROXY_INFO.items():
        assert series[(metric.name, base)] == float(fields[key]), key
    version = tuple(sorted({**LABELS, "version": fields["Version"]}.items()))
    assert series[("haproxy.process.build_info", version)] == 1.0
    # every other numeric key is kept under its native name (none silently dropped)
    numeric = {k for k, v in fields.items() if k not in HAPROXY_INFO and v.strip().lstrip("-").isdigit()}
    assert numeric, "the capture has numeric keys the catalog does not map"
    for key in numeric:
        assert series[(f"haproxy.info.{key}", base)] == float(fields[key]), key
    assert len(series) == len(HAPROXY_INFO) + 1 + len(numeric)


def test_info_bad_lines_reported_rest_kept() -> None:
    result = info("Name: HAProxy\nCurrConns: many\nno colon here\nCumConns: 12\n")
    assert [e.line for e in result.errors if isinstance(e, ParseError)] == [2, 3]
    assert "CurrConns is not a number" in str(result.errors[0])
    assert samples_by_key(result) == {("haproxy.process.connections_total", tuple(sorted(LABELS.items()))): 12.0}


def test_info_stops_at_a_stat_block() -> None:
    text = (TESTDATA / "runtime_info_stat_2.6.12.txt").read_text()
    result = info(text)
    assert result.errors == []
    assert not any(m.startswith("haproxy.csv.") for m, _ in samples_by_key(result))
    assert {m for m, _ in samples_by_key(result) if m.startswith("haproxy.process.")} >= {
        d.name for d in HAPROXY_INFO.values()
    }


@pytest.mark.parametrize("body", [b"", b"Unknown command\n", b"foo: bar\n", b"# pxname,svname\n"])
def test_info_without_fields_raises(body: bytes) -> None:
    with pytest.raises(ParseError, match="show info"):
        info(body)
