"""Neighbour rows and Windows Tcpip events: golden payloads, shapes, and fuzzing."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.catalog import DEFAULT_CATALOG
from collector.errors import ParseError
from collector.registry import get_parser
from collector.schema import IP_OBSERVATIONS_SCHEMA, SAMPLES_SCHEMA, ParseResult, RawRecord, iso, parse_iso
from collector.sources.neighbors.parse import event_time_ms, parse_event_record, parse_record

# Rich nested strategies can trip size health checks under the 10,000-example fuzz profile.
FUZZ = settings(suppress_health_check=list(HealthCheck))
TESTDATA = Path(__file__).resolve().parents[2] / "collector" / "sources" / "neighbors" / "testdata"
T0 = datetime(2024, 5, 29, 16, 30, tzinfo=UTC)
CASES = json.loads((TESTDATA / "cases.json").read_text())


def rec(
    body: bytes | str, kind: str = "neighbors", host: str = "lb-vm-1", labels: dict[str, str] | None = None
) -> RawRecord:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return RawRecord(ts=T0, kind=kind, target="exec:ip -j neigh", body=data, host=host, labels=labels or {})


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
    obs = [{**r, "ts": iso(r["ts"])} for r in result.ip_observations.to_pylist()]
    return {"samples": samples, "ip_observations": obs, "errors": [str(e) for e in result.errors]}


def check_tables(result: ParseResult) -> None:
    assert result.samples.schema.equals(SAMPLES_SCHEMA)
    assert result.ip_observations.schema.equals(IP_OBSERVATIONS_SCHEMA)
    assert all(isinstance(e, ParseError) for e in result.errors)


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_golden(case: dict[str, Any]) -> None:
    record = RawRecord(
        ts=parse_iso(case["ts"]),
        kind=case["kind"],
        target=case["file"],
        body=(TESTDATA / case["file"]).read_bytes(),
        host=case["host"],
        labels=case.get("labels", {}),
    )
    result = get_parser(case["kind"])(record, DEFAULT_CATALOG)
    check_tables(result)
    got = as_json(result)
    expected_file = TESTDATA / (case["file"] + ".expected.json")
    if os.environ.get("HCIWATCH_UPDATE_GOLDEN") or not expected_file.exists():
        expected_file.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    assert got == json.loads(expected_file.read_text())


def _obs(result: ParseResult) -> list[tuple[str, str | None, str]]:
    return [(o["ip"], o["mac"], o["owner"]) for o in result.ip_observations.to_pylist()]


def test_ip_neigh_skips_rows_that_prove_nothing() -> None:
    r = parse_record(rec((TESTDATA / "ip_neigh_hci.json").read_bytes(), host="lb"), DEFAULT_CATALOG)
    ips = [ip for ip, _, _ in _obs(r)]
    assert "10.20.0.60" not in ips and "10.20.0.61" not in ips  # FAILED / INCOMPLETE, no lladdr
    assert "224.0.0.251" not in ips  # multicast
    assert ("10.20.0.50", "00:15:5d:0a:0b:0c", "lb/eth0") in _obs(r)
    assert "fd00:20::50" in ips
    assert not r.errors


def test_get_netneighbor_states_and_zones() -> None:
    r = parse_record(rec((TESTDATA / "get_netneighbor_ps51.json").read_bytes(), host="HCI-NODE1"), DEFAULT_CATALOG)
    got = _obs(r)
    alias = "vEthernet (ConvergedSwitch(compute_management))"
    assert ("10.20.0.50", "00:15:5d:0a:0b:0c", f"HCI-NODE1/{alias}") in got
    assert ("10.20.0.51", "00:15:5d:0a:0b:0d", f"HCI-NODE1/{alias}") in got  # Stale still counts
    assert all(ip not in ("10.20.0.60", "10.20.0.255") for ip, _, _ in got)  # unreachable, broadcast
    smb = "HCI-NODE1/vSMB(ConvergedSwitch(storage)#SMB1)"
    assert ("fe80::215:5dff:fe0a:b0c", "00:15:5d:0a:0b:0c", smb) in got
    assert len(got) == 3


def test_single_object_and_computer_name() -> None:
    r = parse_record(rec((TESTDATA / "get_netneighbor_ps7_single.json").read_bytes(), host=""), DEFAULT_CATALOG)
    assert _obs(r) == [("10.20.0.50", "00:15:5d:0a:0b:0e", "HCI-NODE2/Ethernet 2")]


def test_rows_errors_name_the_row_and_labels_fill_columns() -> None:
    r = parse_record(
        rec((TESTDATA / "rows.json").read_bytes(), labels={"cluster": "c1", "network": "n1"}), DEFAULT_CATALOG
    )
    assert len(r.errors) == 2
    assert str(r.errors[0]).startswith("neighbors:") and "[3]" in str(r.errors[0])
    assert "not a MAC" in str(r.errors[1])
    rows = r.ip_observations.to_pylist()
    assert {(o["cluster"], o["network"], o["source"]) for o in rows} == {("c1", "n1", "neighbors")}
    assert [o["owner"] for o in rows] == ["lb-vm-1/eth0", "lb-vm-2/eth0"]


@pytest.mark.parametrize("body", [b"not json", b"42", b'"text"', b"[1, 2]", b'[{"foo": 1}]', b"\xff\xfe\x00"])
def test_garbage_raises(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_record(rec(body), DEFAULT_CATALOG)


def test_empty_array_is_fine() -> None:
    assert parse_record(rec(b"[]"), DEFAULT_CATALOG).ip_observations.num_rows == 0


def test_utf16_powershell_file() -> None:
    body = "\ufeff" + json.dumps(
        {"IPAddress": "10.1.1.1", "LinkLayerAddress": "00-11-22-33-44-55", "InterfaceAlias": "Ethernet", "State": 5}
    )
    r = parse_record(rec(body.encode("utf-16-le")), DEFAULT_CATALOG)
    assert _obs(r) == [("10.1.1.1", "00:11:22:33:44:55", "lb-vm-1/Ethernet")]


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


def test_events_become_conflict_observations_and_samples() -> None:
    r = parse_event_record(rec((TESTDATA / "events.json").read_bytes(), kind="event", host=""), DEFAULT_CATALOG)
    obs = r.ip_observations.to_pylist()
    assert [(o["ip"], o["mac"], o["owner"], o["owner_kind"]) for o in obs] == [
        ("10.20.0.50", "00:15:5d:0a:0b:0e", "HCI-NODE1/tcpip-4199", "event"),
        ("10.20.0.51", "00:15:5d:0a:0b:0f", "HCI-NODE2/tcpip-4198", "event"),  # from the message text
    ]
    assert obs[1]["ts"] == datetime(2024, 5, 29, 16, 26, 41, tzinfo=UTC)
    metrics = [(s["metric"], s["value"]) for s in r.samples.to_pylist()]
    assert metrics.count(("event.tcpip_address_conflict", 1.0)) == 2
    assert ("event.records_ignored", 1.0) in metrics


def test_get_winevent_insertion_strings() -> None:
    r = parse_event_record(rec((TESTDATA / "get_winevent_ps51.json").read_bytes(), kind="event"), DEFAULT_CATALOG)
    obs = r.ip_observations.to_pylist()
    assert [(o["ip"], o["mac"], o["owner"]) for o in obs] == [
        ("10.20.0.50", "00:15:5d:0a:0b:0e", "HCI-NODE1.contoso.local/tcpip-4199"),
        ("10.20.0.50", "00:15:5d:0a:0b:0c", "HCI-NODE2.contoso.local/tcpip-4199"),  # byte[] MAC
    ]
    assert obs[0]["ts"] == datetime(2024, 5, 29, 16, 26, 41, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("/Date(1717000001250)/", 1717000001250),
        ("2024-05-29T18:26:41.2500000+02:00", 1717000001250),
        ("2024-05-29T16:26:41.25Z", 1717000001250),
        (1717000001.25, 1717000001250),
        (1717000001250, 1717000001250),
    ],
)
def test_event_time_formats(value: Any, ms: int) -> None:
    assert event_time_ms(value) == ms


def test_bad_tcpip_event_is_an_error_not_a_crash() -> None:
    body = json.dumps(
        [
            {"provider": "Tcpip", "id": 4199, "time": "yesterday", "message": "x"},
            {"provider": "Tcpip", "id": 4199, "time": "2024-05-29T16:26:41Z", "message": "no ip"},
        ]
    )
    with pytest.raises(ParseError, match="no usable row"):
        parse_event_record(rec(body, kind="event"), DEFAULT_CATALOG)


# ---------------------------------------------------------------------------------------------
# Fuzz
# ---------------------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
_json = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
_addr = st.sampled_from(["10.0.0.1", "fe80::1%3", "::", "255.255.255.255", "224.0.0.1", "1.2.3", ""])
_maclike = (
    st.sampled_from(["00-11-22-33-44-55", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "0011223344", "00:00:00:00:00:00"])
    | _scalars
    | st.lists(st.integers(-1, 300), max_size=7)
)
_small = _scalars | st.lists(_scalars, max_size=3)
_row = st.fixed_dictionaries(
    {},
    optional={
        "ip": _addr | _small,
        "mac": _maclike,
        "interface": _small,
        "state": _small | st.sampled_from(["stale", "failed"]),
        "dst": _addr | _small,
        "lladdr": _maclike,
        "dev": _small,
        "IPAddress": _addr | _json,
        "LinkLayerAddress": _maclike,
        "InterfaceAlias": _small,
        "State": st.integers(-2, 9) | _small,
        "host": _small,
        "PSComputerName": _small,
    },
)
_event = st.fixed_dictionaries(
    {},
    optional={
        "provider": st.sampled_from(["Tcpip", "tcpip", "Other"]) | _small,
        "ProviderName": _small,
        "id": st.sampled_from([4198, 4199, 7036, "4199"]) | _small,
        "Id": _small,
        "time": _small | st.sampled_from(["/Date(1717000001250)/", "/Date(-99999999999999999)/", "2024-13-01"]),
        "TimeCreated": _json,
        "host": _small,
        "MachineName": _small,
        "message": _small | st.text(max_size=200),
        "ip": _addr | _small,
        "mac": _maclike,
        "Properties": st.lists(st.fixed_dictionaries({"Value": _maclike | _addr}), max_size=3) | _json,
    },
)


def _fuzz(parser: Any, body: bytes | str, kind: str) -> None:
    try:
        result = parser(rec(body, kind=kind), DEFAULT_CATALOG)
    except ParseError:
        return
    check_tables(result)


@pytest.mark.timeout(1800)  # the 10,000-example fuzz profile on a shared CI box
@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_bytes(body: bytes) -> None:
    _fuzz(parse_record, body, "neighbors")
    _fuzz(parse_event_record, body, "event")


@pytest.mark.timeout(1800)  # the 10,000-example fuzz profile on a shared CI box
@FUZZ
@given(st.one_of(_json, _row, st.lists(_row, max_size=4)))
def test_fuzz_neighbor_rows(doc: Any) -> None:
    _fuzz(parse_record, json.dumps(doc), "neighbors")


@pytest.mark.timeout(1800)  # the 10,000-example fuzz profile on a shared CI box
@FUZZ
@given(st.one_of(_json, _event, st.lists(_event, max_size=4)))
def test_fuzz_events(doc: Any) -> None:
    _fuzz(parse_event_record, json.dumps(doc), "event")
