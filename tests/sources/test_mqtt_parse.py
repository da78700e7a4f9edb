"""Telegraf-over-MQTT parser: golden payloads, format details, and fuzzing (only ParseError escapes)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.catalog import DEFAULT_CATALOG, Catalog
from collector.errors import ParseError
from collector.registry import get_parser
from collector.schema import IP_OBSERVATIONS_SCHEMA, SAMPLES_SCHEMA, ParseResult, RawRecord, iso, parse_iso
from collector.sources.mqtt.parse import (
    compile_topic_template,
    iter_line_protocol,
    json_timestamp_ms,
    normalize_topic_template,
    parse_record,
    topic_values,
)

# Rich nested strategies can trip size health checks under the 10,000-example fuzz profile.
FUZZ = settings(suppress_health_check=list(HealthCheck))
TESTDATA = Path(__file__).resolve().parents[2] / "collector" / "sources" / "mqtt" / "testdata"
T0 = datetime(2024, 5, 29, 16, 26, 45, tzinfo=UTC)
CAT: Catalog = DEFAULT_CATALOG


def rec(
    body: bytes | str,
    topic: str = "telegraf/HCI-NODE1/win_perf_counters",
    labels: dict[str, str] | None = None,
    host: str = "",
) -> RawRecord:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return RawRecord(
        ts=T0, kind="mqtt", target="mqtt://broker:1883", body=data, topic=topic, labels=labels or {}, host=host
    )


def as_json(result: ParseResult) -> dict[str, Any]:
    """A stable JSON view of a parse result (golden files)."""
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
    obs = [{**r, "ts": iso(r["ts"])} for r in result.ip_observations.to_pylist()]
    return {"samples": samples, "ip_observations": obs, "errors": [str(e) for e in result.errors]}


def check_tables(result: ParseResult) -> None:
    assert result.samples.schema.equals(SAMPLES_SCHEMA)
    assert result.ip_observations.schema.equals(IP_OBSERVATIONS_SCHEMA)
    assert all(isinstance(e, ParseError) for e in result.errors)


CASES = json.loads((TESTDATA / "cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_golden(case: dict[str, Any]) -> None:
    body = (TESTDATA / case["file"]).read_bytes()
    record = RawRecord(
        ts=parse_iso(case["ts"]),
        kind="mqtt",
        target="mqtt://broker:1883",
        body=body,
        topic=case["topic"],
        labels=case.get("labels", {}),
    )
    result = get_parser("mqtt")(record, CAT)
    check_tables(result)
    got = as_json(result)
    expected_file = TESTDATA / (case["file"] + ".expected.json")
    if os.environ.get("HCIWATCH_UPDATE_GOLDEN") or not expected_file.exists():
        expected_file.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    assert got == json.loads(expected_file.read_text())


# ---------------------------------------------------------------------------------------------
# JSON serializer
# ---------------------------------------------------------------------------------------------


def test_json_single_maps_formatted_fields_and_uses_payload_time() -> None:
    body = json.dumps(
        {
            "fields": {"RDMA_Inbound_Bytes_persec": 5.0, "Mystery_Field": 1},
            "name": "win_perf_counters",
            "tags": {"host": "agent", "source": "HCI-NODE7", "objectname": "RDMA Activity", "instance": "NIC 1"},
            "timestamp": 1717000000,
        }
    )
    r = parse_record(rec(body), CAT)
    rows = {row["metric"]: row for row in r.samples.to_pylist()}
    assert set(rows) == {"rdma.inbound_bytes_per_sec", "win_perf_counters.Mystery_Field"}
    mapped = rows["rdma.inbound_bytes_per_sec"]
    assert mapped["host"] == "HCI-NODE7"  # source tag wins over the agent's host tag
    assert dict(mapped["labels"]) == {"nic": "NIC 1"}
    assert mapped["ts"] == datetime(2024, 5, 29, 16, 26, 40, tzinfo=UTC)
    # unmapped keep objectname/instance so analysts can still find them
    assert dict(rows["win_perf_counters.Mystery_Field"]["labels"]) == {
        "objectname": "RDMA Activity",
        "instance": "NIC 1",
    }


def test_json_raw_avg_timer_ticks_become_seconds() -> None:
    body = json.dumps(
        {
            "fields": {"Avg._sec/Data_Request_Raw": 20_000_000},
            "name": "w",
            "tags": {"objectname": "SMB Client Shares", "instance": "\\\\fs\\s", "host": "h"},
            "timestamp": 1717000000,
        }
    )
    [row] = parse_record(rec(body), CAT).samples.to_pylist()
    assert row["metric"] == "smb.client.request_seconds_total"
    assert row["value"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("value", "expected_ms"),
    [
        (1717000000, 1717000000000),
        (1717000000.5, 1717000000500),
        (1717000000123, 1717000000123),
        (1717000000123456, 1717000000123),
        (1717000000123456789, 1717000000123),
        ("2024-05-29T16:26:40.123Z", 1717000000123),
        ("2024-05-29T18:26:40+02:00", 1717000000000),
        ("1717000000", 1717000000000),
    ],
)
def test_json_timestamp_units_inferred(value: Any, expected_ms: int) -> None:
    assert json_timestamp_ms(value) == expected_ms


def test_json_array_of_metrics_and_bad_items_are_errors() -> None:
    body = json.dumps(
        [
            {"fields": {"x": 1}, "name": "m", "tags": {"host": "a"}, "timestamp": 1717000000},
            {"fields": [1, 2], "name": "m", "tags": {}},
            {"fields": {"y": "text"}, "name": "m", "tags": {"host": "a"}},
            "nonsense",
        ]
    )
    r = parse_record(rec(body), CAT)
    assert [row["metric"] for row in r.samples.to_pylist()] == ["m.x"]  # string fields are not samples
    assert len(r.errors) == 2
    assert "[1].fields" in str(r.errors[0])
    assert "[3]" in str(r.errors[1])


def test_json_all_items_bad_raises() -> None:
    with pytest.raises(ParseError, match="fields"):
        parse_record(rec(json.dumps({"name": "m", "fields": 3})), CAT)


def test_invalid_json_raises_with_position() -> None:
    with pytest.raises(ParseError) as ei:
        parse_record(rec('{"metrics": [ {"fields": }'), CAT)
    assert ei.value.line == 1 and ei.value.offset is not None
    assert "invalid JSON" in str(ei.value)


def test_json_without_timestamp_uses_record_time() -> None:
    body = json.dumps({"fields": {"x": 1}, "name": "m", "tags": {}})
    [row] = parse_record(rec(body), CAT).samples.to_pylist()
    assert row["ts"] == T0
    assert row["host"] == "HCI-NODE1"  # from the default topic template


# ---------------------------------------------------------------------------------------------
# Line protocol
# ---------------------------------------------------------------------------------------------


def test_line_protocol_escapes() -> None:
    text = (
        "my\\ meas\\,ure,tag\\ key=va\\=l\\,ue,inst=\\\\srv\\share "
        'f\\ 1=1i,f\\=2=2u,s="a \\"b\\" \\\\ c",b=T,e=-1.5e-3 1717000000000000000\n'
    )
    [(m, line, _, why)] = list(iter_line_protocol(text))
    assert m is not None, why
    assert m.name == "my meas,ure"
    assert m.tags == {"tag key": "va=l,ue", "inst": "\\\\srv\\share"}
    assert m.fields == {"f 1": 1, "f=2": 2, "s": 'a "b" \\ c', "b": True, "e": -1.5e-3}
    assert m.ts_ms == 1717000000000
    assert line == 1


def test_line_protocol_multiline_string_and_line_numbers() -> None:
    text = 'a x="one\ntwo" 1717000000000000000\n\n# comment\nb y=1 1717000000000000000\nc z=\nd w=2\n'
    out = list(iter_line_protocol(text))
    assert [(m.name if m else None, line) for m, line, _, _ in out] == [("a", 1), ("b", 5), (None, 6), ("d", 7)]
    assert out[0][0] is not None and out[0][0].fields["x"] == "one\ntwo"


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("m", "field set"),
        ("m f", "'='"),
        ("m f=", "value of field"),
        ("m f=abc", "invalid field value"),
        ("m f=1 abc", "invalid timestamp"),
        ("m f=1 12345678901234567890", "invalid timestamp"),
        ('m f="open', "unterminated string"),
        ("m,t f=1", "'=' after tag key"),
        ("m,t= f=1", "value of tag"),
        ("m f=1i2", "invalid field value"),
        ("m f=99999999999999999999i", "int64"),
        ("m f=1 1 2", "unexpected text"),
    ],
)
def test_line_protocol_errors(line: str, why: str) -> None:
    [(m, lineno, _, message)] = list(iter_line_protocol(line))
    assert m is None
    assert why in message
    assert lineno == 1


def test_partial_bad_lines_are_errors_with_line_numbers() -> None:
    body = (TESTDATA / "influx_partial_bad.lp").read_bytes()
    r = parse_record(rec(body), CAT)
    assert r.samples.num_rows == 2
    assert [e.line for e in r.errors if isinstance(e, ParseError)] == [2, 3]
    assert all(e.offset is not None for e in r.errors if isinstance(e, ParseError))


def test_garbage_raises_parse_error_with_line() -> None:
    with pytest.raises(ParseError) as ei:
        parse_record(rec(b"this is not telemetry\n"), CAT)
    assert ei.value.line == 1


def test_empty_body_is_empty_result() -> None:
    r = parse_record(rec(b"  \n"), CAT)
    assert r.samples.num_rows == 0 and not r.errors


def test_invalid_utf8_is_reported_and_rest_parsed() -> None:
    r = parse_record(rec(b"m,host=h\xff f=1 1717000000000000000\n"), CAT)
    assert r.samples.num_rows == 1
    assert r.errors and "UTF-8" in str(r.errors[0])


def test_line_protocol_without_timestamp_uses_record_time_and_labels_from_record() -> None:
    r = parse_record(rec(b"cpu,host=h1 usage=3\n", labels={"cluster": "hci-1", "source": "lab"}), CAT)
    [row] = r.samples.to_pylist()
    assert row["ts"] == T0
    assert row["source"] == "lab"
    assert dict(row["labels"]) == {"cluster": "hci-1"}


# ---------------------------------------------------------------------------------------------
# Topics and layouts
# ---------------------------------------------------------------------------------------------


def test_topic_template_recovers_host_and_tags() -> None:
    assert topic_values("telegraf/HCI-NODE1/rdma", "telegraf/{host}/{measurement}") == {
        "host": "HCI-NODE1",
        "measurement": "rdma",
    }
    assert topic_values("telegraf/rdma", "telegraf/{host}/{measurement}") == {}
    go = 'site/{{ .Tag "cluster" }}/{{ .Tag "host" }}/{{ .Name }}'
    assert normalize_topic_template(go) == "site/{cluster}/{host}/{measurement}"
    assert topic_values("site/c1/n1/m", go) == {"cluster": "c1", "host": "n1", "measurement": "m"}
    assert compile_topic_template("a/{x}/{x}").match("a/1/1")
    assert not compile_topic_template("a/{x}/{x}").match("a/1/2")


def test_host_from_topic_when_tags_lack_it() -> None:
    body = b"rdma_activity,objectname=RDMA\\ Activity,instance=N RDMA_Active_Connections=3 1717000000000000000"
    [row] = parse_record(rec(body, topic="telegraf/HCI-NODE9/rdma_activity"), CAT).samples.to_pylist()
    assert row["host"] == "HCI-NODE9"
    assert row["metric"] == "rdma.active_connections"


def test_field_layout_value_per_topic() -> None:
    r = parse_record(
        rec(
            b"1520",
            topic="site/HCI-NODE1/mlx_qos/Rcv_Pause_Frames",
            labels={"topic_template": "site/{host}/{measurement}"},
        ),
        CAT,
    )
    [row] = r.samples.to_pylist()
    assert (row["host"], row["metric"], row["value"]) == ("HCI-NODE1", "mlx_qos.Rcv_Pause_Frames", 1520.0)
    t = "site/{host}/{objectname}/{measurement}"
    r2 = parse_record(
        rec(b"7", topic="site/N1/RDMA Activity/rdma/RDMA_Completion_Queue_Errors", labels={"topic_template": t}), CAT
    )
    assert r2.samples.to_pylist()[0]["metric"] == "rdma.cq_errors_total"


def test_evidence_arrays_are_routed() -> None:
    nb = (TESTDATA / "neighbors_over_mqtt.json").read_bytes()
    r = parse_record(rec(nb, topic="telegraf/HCI-NODE1/neighbors"), CAT)
    [obs] = r.ip_observations.to_pylist()
    assert obs["owner_kind"] == "neighbor" and obs["owner"] == "HCI-NODE1/vEthernet (compute_management)"
    ev = (TESTDATA / "events_over_mqtt.json").read_bytes()
    r2 = parse_record(rec(ev, topic="telegraf/HCI-NODE1/tcpip_events"), CAT)
    [obs2] = r2.ip_observations.to_pylist()
    assert obs2["owner"] == "HCI-NODE1/tcpip-4199" and obs2["mac"] == "00:15:5d:0a:0b:0e"


# ---------------------------------------------------------------------------------------------
# Fuzz: nothing but ParseError may escape, and the tables always match the schema
# ---------------------------------------------------------------------------------------------


def _fuzz(body: bytes | str, topic: str = "telegraf/h/m", labels: dict[str, str] | None = None) -> None:
    try:
        result = parse_record(rec(body, topic=topic, labels=labels), CAT)
    except ParseError:
        return
    check_tables(result)


@pytest.mark.timeout(1800)  # the 10,000-example fuzz profile on a shared CI box
@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_bytes(body: bytes) -> None:
    _fuzz(body)


_lp_char = st.sampled_from(list('ab =,\\"\n\r\t#iu0123456789.-eE+Tf'))
_lp_text = st.lists(_lp_char, max_size=120).map("".join)


@pytest.mark.timeout(1800)  # the 10,000-example fuzz profile on a shared CI box
@FUZZ
@given(_lp_text, st.text(max_size=30))
def test_fuzz_line_protocol_alphabet(body: str, topic: str) -> None:
    _fuzz(body, topic=topic)


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_json = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=12,
)
_metric = st.fixed_dictionaries(
    {},
    optional={
        "fields": _json
        | st.dictionaries(st.sampled_from(["RDMA_Inbound_Bytes_persec", "x", "y_Raw"]), _scalars, max_size=3),
        "name": _json | st.text(max_size=5),
        "tags": _json
        | st.dictionaries(
            st.sampled_from(["host", "source", "objectname", "instance"]),
            _scalars | st.sampled_from(["RDMA Activity"]),
            max_size=4,
        ),
        "timestamp": _json | st.integers() | st.floats(),
        "ip": _scalars,
        "IPAddress": _scalars,
        "provider": _scalars,
        "metrics": _json,
    },
)


@pytest.mark.timeout(1800)  # the 10,000-example fuzz profile on a shared CI box
@FUZZ
@given(
    st.one_of(
        _json,
        _metric,
        st.lists(_metric, max_size=3),
        st.fixed_dictionaries({"metrics": st.lists(_metric, max_size=3) | _json}),
    )
)
def test_fuzz_json_shapes(doc: Any) -> None:
    _fuzz(json.dumps(doc, allow_nan=True))


@pytest.mark.timeout(1800)  # the 10,000-example fuzz profile on a shared CI box
@FUZZ
@given(st.text(max_size=40), st.text(max_size=40))
def test_fuzz_topic_template(topic: str, template: str) -> None:
    _fuzz(b"1.5", topic=topic, labels={"topic_template": template})
