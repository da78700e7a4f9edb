"""The data model: validation, JSON and Arrow round trips, stable fingerprints."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from collector.schema import (
    ALERTS_SCHEMA,
    IP_OBSERVATIONS_SCHEMA,
    SAMPLES_SCHEMA,
    Alert,
    AlertKind,
    AlertStatus,
    IpObservation,
    OwnerKind,
    Sample,
    Severity,
    alerts_table,
    fingerprint,
    ip_observations_table,
    iso,
    normalize_mac,
    parse_iso,
    samples_table,
)

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _alert(status: AlertStatus = AlertStatus.FIRING) -> Alert:
    res = {"network": "aks-net", "ip": "10.0.0.60"}
    return Alert(
        fingerprint=fingerprint("duplicate_ip", res),
        kind=AlertKind.DUPLICATE_IP,
        status=status,
        severity=Severity.SEV1,
        starts_at=T0,
        resource=res,
        summary="10.0.0.60 held by two services",
        evidence={"owners": ["a/b", "c/d"], "score": float("nan"), "at": T0},
        runbook="redeploy",
        ends_at=T0 + timedelta(hours=1) if status is AlertStatus.RESOLVED else None,
    )


def test_alert_json_round_trip_is_exact() -> None:
    for status in AlertStatus:
        a = _alert(status)
        line = a.to_json_line()
        back = Alert.from_json(json.loads(line))
        assert back.to_json_line() == line
        assert back == a


def test_alert_evidence_is_json_clean() -> None:
    a = _alert()
    assert a.evidence["score"] is None  # NaN cannot be JSON
    assert a.evidence["at"] == "2026-11-20T10:00:00.000Z"


def test_alert_rejects_inconsistent_state() -> None:
    with pytest.raises(ValueError, match="resolved alert needs ends_at"):
        Alert(
            fingerprint="x",
            kind=AlertKind.SOURCE_DOWN,
            status=AlertStatus.RESOLVED,
            severity=Severity.SEV3,
            starts_at=T0,
            resource={},
            summary="s",
        )
    with pytest.raises(ValueError):
        Alert(
            fingerprint="x",
            kind="no_such_kind",  # type: ignore[arg-type]
            status=AlertStatus.FIRING,
            severity=Severity.SEV3,
            starts_at=T0,
            resource={},
            summary="s",
        )


def test_fingerprint_ignores_label_order_and_values_outside_resource() -> None:
    assert fingerprint("k", {"a": "1", "b": "2"}) == fingerprint("k", {"b": "2", "a": "1"})
    assert fingerprint("k", {"a": "1"}) != fingerprint("j", {"a": "1"})


def test_ip_observation_normalizes() -> None:
    o = IpObservation(
        ts=T0,
        ip=" 10.0.0.5 ",
        owner_kind=OwnerKind.NEIGHBOR,
        owner="h/eth0",
        source="neighbors",
        mac="00-15-5D-0A-0B-0C",
    )
    assert o.ip == "10.0.0.5" and o.mac == "00:15:5d:0a:0b:0c"
    with pytest.raises(ValueError):
        IpObservation(ts=T0, ip="10.0.0.300", owner_kind=OwnerKind.NODE, owner="n", source="k8s")
    with pytest.raises(ValueError):
        normalize_mac("00:11:22")


def test_tables_have_the_stored_schemas() -> None:
    s = samples_table([Sample(T0, "windows", "h1", "net.bytes_received_total", 5, {"nic": "a"})])
    assert s.schema == SAMPLES_SCHEMA
    assert s.column("labels").to_pylist() == [[("nic", "a")]]
    o = ip_observations_table([IpObservation(T0, "10.0.0.5", OwnerKind.NODE, "n1", "k8s", cluster="c1")])
    assert o.schema == IP_OBSERVATIONS_SCHEMA
    a = alerts_table([_alert(), _alert(AlertStatus.RESOLVED)])
    assert a.schema == ALERTS_SCHEMA
    assert a.column("ends_at").null_count == 1
    assert pa.types.is_timestamp(a.schema.field("ts").type)


def test_iso_round_trip_and_errors() -> None:
    assert parse_iso(iso(T0)) == T0
    assert parse_iso("2026-11-20T12:00:00+02:00") == T0
    with pytest.raises(ValueError, match="no timezone"):
        parse_iso("2026-11-20T10:00:00")
    with pytest.raises(ValueError, match="not an ISO"):
        parse_iso("yesterday")


def test_a_normalised_record_equals_the_record_built_the_careful_way() -> None:
    """``RawRecord.normalised`` sets the fields by hand (no ``__post_init__``): a field added to
    the record later must be set there too, or a pooled record would lack it."""
    import dataclasses
    from datetime import UTC, datetime

    from collector.schema import RawRecord

    ts = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    careful = RawRecord(ts=ts, kind="prometheus", target="hci-node-01:9182", body=b"", host="hci-node-01")
    fast = RawRecord.normalised(ts, "prometheus", "hci-node-01:9182", "hci-node-01")
    fields = {f.name for f in dataclasses.fields(RawRecord)}
    assert fields == {"ts", "kind", "target", "body", "host", "labels", "topic"}
    assert fast == careful
