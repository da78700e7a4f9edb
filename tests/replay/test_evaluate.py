"""``hciwatch eval`` scoring rules on hand-made alert streams (no replay needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from collector.schema import Alert, AlertKind, AlertStatus, Severity, fingerprint, iso
from hciwatch.evaluate import score

T0 = datetime(2026, 11, 17, 12, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def _alert(
    at: datetime,
    host: str,
    scope: list[str] | None = None,
    status: AlertStatus = AlertStatus.FIRING,
    starts: datetime | None = None,
) -> Alert:
    res = {"host": host}
    ev: dict[str, Any] = {"scope": {"host": scope}} if scope else {}
    return Alert(
        fingerprint=fingerprint("eastwest_congestion", res),
        kind=AlertKind.EASTWEST_CONGESTION,
        status=status,
        severity=Severity.SEV1,
        starts_at=starts or at,
        resource=res,
        summary="storm",
        evidence=ev,
        ends_at=at if status is AlertStatus.RESOLVED else None,
        ts=at,
    )


def _incident(host: str, start: datetime, **extra: str) -> dict[str, Any]:
    return {
        "incident": "pfc_storm",
        "kind": "eastwest_congestion",
        "resource": {"host": host, **extra},
        "start": iso(start),
        "end": iso(start + 30 * M),
    }


def test_a_widened_incident_detects_the_spread_host_at_the_change_that_announced_it() -> None:
    expected = {
        "incidents": [_incident("n2", T0, nic="Mellanox", priority="3"), _incident("n3", T0 + 6 * M, priority="3")]
    }
    alerts = [_alert(T0 + 2 * M, "n2", ["n2"]), _alert(T0 + 10 * M, "n2", ["n2", "n3"], starts=T0 + 2 * M)]
    s = score("x", alerts, expected, T0 + 2 * timedelta(hours=1))
    assert (s.detected, s.missed, s.false_alerts) == (2, [], [])
    assert sorted(s.ttd_s) == [120.0, 240.0]
    assert s.alerts == 1, "one incident, counted once"


def test_an_alert_on_another_host_is_a_false_alert_and_the_incident_a_miss() -> None:
    expected = {"incidents": [_incident("n2", T0)]}
    s = score("x", [_alert(T0 + 2 * M, "n1", ["n1"])], expected, T0 + timedelta(hours=1))
    assert s.detected == 0 and len(s.missed) == 1 and len(s.false_alerts) == 1
    assert s.precision == 0.0 and s.recall == 0.0


def test_a_firing_long_after_the_incident_does_not_count() -> None:
    expected = {"incidents": [_incident("n2", T0)]}
    s = score("x", [_alert(T0 + 2 * timedelta(hours=1), "n2")], expected, T0 + 3 * timedelta(hours=1))
    assert s.detected == 0 and s.false_alerts
