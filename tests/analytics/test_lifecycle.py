"""AlertManager: pending/for, hold, no flapping, escalation, stable fingerprints, persistence."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from analytics.findings import Finding
from analytics.lifecycle import AlertManager
from analytics.settings import AnalyticsSettings
from collector.schema import AlertKind, AlertStatus, Severity, fingerprint

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def _f(
    active: bool = True,
    sev: Severity = Severity.SEV2,
    value: float = 1.0,
    kind: AlertKind = AlertKind.DUPLICATE_IP,
    ip: str = "10.0.0.5",
) -> Finding:
    return Finding(
        kind,
        {"network": "net-a", "ip": ip},
        sev,
        f"dup {ip} v={value}",
        {"value": value, "scenario": "lb_ip_shared_across_clusters"},
        active=active,
    )


def _settings(for_: str = "2m", hold: str = "5m") -> AnalyticsSettings:
    return AnalyticsSettings.model_validate(dict(lifecycle={"duplicate_ip": {"for": for_, "hold": hold}}))


def test_pending_then_firing_then_resolved_after_hold() -> None:
    am = AlertManager(_settings())
    assert am.update([_f()], T0) == []  # pending
    assert am.pending() and not am.firing()
    assert am.update([_f()], T0 + M) == []
    [fire] = am.update([_f(value=2.0)], T0 + 2 * M)
    assert fire.status is AlertStatus.FIRING and fire.starts_at == T0 + 2 * M
    assert fire.evidence["value"] == 2.0 and "same port" in fire.runbook
    assert fire.fingerprint == fingerprint("duplicate_ip", {"network": "net-a", "ip": "10.0.0.5"})
    assert am.update([_f()], T0 + 3 * M) == []  # no duplicate firing for one incident
    assert am.update([_f(active=False, value=0.0)], T0 + 4 * M) == []  # clearing, within hold
    assert am.update([], T0 + 8 * M) == []
    [res] = am.update([], T0 + 9 * M)
    assert res.status is AlertStatus.RESOLVED and res.ends_at == T0 + 9 * M
    assert res.starts_at == fire.starts_at and res.fingerprint == fire.fingerprint
    assert res.evidence["value"] == 0.0, "the resolution carries the last evidence"
    assert res.evidence["condition_cleared_at"] == "2026-03-01T08:04:00.000Z"


def test_condition_gone_while_pending_never_alerts() -> None:
    am = AlertManager(_settings(for_="5m"))
    for k in range(4):
        assert am.update([_f()], T0 + k * M) == []
    assert am.update([], T0 + 4 * M) == []
    assert not am.pending() and not am.firing()


def test_value_hovering_at_threshold_does_not_flap() -> None:
    am = AlertManager(_settings(for_="0s", hold="10m"))
    changes = []
    for k in range(120):  # active every other evaluation for two hours
        changes += am.update([_f(active=k % 2 == 0)], T0 + k * M)
    assert [c.status for c in changes] == [AlertStatus.FIRING]
    for k in range(120, 140):
        changes += am.update([], T0 + k * M)
    assert [c.status for c in changes] == [AlertStatus.FIRING, AlertStatus.RESOLVED]


@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_never_two_firings_without_a_resolution(pattern: list[bool]) -> None:
    am = AlertManager(_settings(for_="2m", hold="3m"))
    statuses = []
    for k, active in enumerate(pattern):
        statuses += [c.status for c in am.update([_f()] if active else [], T0 + k * M)]
    for a, b in itertools.pairwise(statuses):
        assert a != b, statuses  # strictly alternating firing / resolved


def test_escalation_emits_a_new_firing_change_deescalation_does_not() -> None:
    am = AlertManager(_settings(for_="0s"))
    [a] = am.update([_f(sev=Severity.SEV2)], T0)
    [b] = am.update([_f(sev=Severity.SEV0)], T0 + M)
    assert (a.severity, b.severity) == (Severity.SEV2, Severity.SEV0)
    assert b.status is AlertStatus.FIRING and b.starts_at == a.starts_at and b.fingerprint == a.fingerprint
    assert am.update([_f(sev=Severity.SEV3)], T0 + 2 * M) == []
    assert am.firing()[0].severity is Severity.SEV0


def test_pending_keeps_worst_severity_seen() -> None:
    am = AlertManager(_settings(for_="2m"))
    am.update([_f(sev=Severity.SEV1)], T0)
    am.update([_f(sev=Severity.SEV3)], T0 + M)
    [a] = am.update([_f(sev=Severity.SEV3)], T0 + 2 * M)
    assert a.severity is Severity.SEV1


def test_state_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "alerts.json"
    am = AlertManager(_settings(for_="0s", hold="5m"), path)
    [fire] = am.update([_f(), _f(ip="10.0.0.9", kind=AlertKind.IP_POOL_OVERLAP)], T0)[:1]
    assert path.exists()
    doc = json.loads(path.read_text())
    assert {a["fingerprint"] for a in doc["alerts"]} >= {fire.fingerprint}
    am2 = AlertManager(_settings(for_="0s", hold="5m"), path)  # restarted service
    assert am2.update([_f()], T0 + M) == [], "a firing alert is not fired again after a restart"
    assert am2.update([], T0 + 2 * M) == []
    resolved = am2.update([], T0 + 8 * M)
    assert {r.fingerprint for r in resolved} >= {fire.fingerprint}
    assert all(r.status is AlertStatus.RESOLVED for r in resolved)
    assert json.loads(path.read_text())["alerts"] == []
    assert not list(path.parent.glob("*.tmp")), "atomic write leaves no temporary files"


def test_unreadable_state_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    path.write_text("{not json")
    am = AlertManager(_settings(), path)
    assert am.states == {}
    assert (tmp_path / "alerts.json.corrupt").exists()


def test_fingerprint_ignores_values_and_key_order() -> None:
    a = Finding(AlertKind.EASTWEST_CONGESTION, {"host": "n1"}, Severity.SEV2, "x", {"z": 9.0})
    b = Finding(AlertKind.EASTWEST_CONGESTION, {"host": "n1"}, Severity.SEV1, "y", {"z": 99.0})
    c = Finding(AlertKind.DUPLICATE_IP, {"ip": "1.2.3.4", "network": "n"}, Severity.SEV1, "x")
    d = Finding(AlertKind.DUPLICATE_IP, {"network": "n", "ip": "1.2.3.4"}, Severity.SEV1, "x")
    assert a.fingerprint == b.fingerprint and c.fingerprint == d.fingerprint != a.fingerprint


def test_lifecycle_defaults_cover_every_kind_and_accept_partial_overrides() -> None:
    s = AnalyticsSettings.model_validate(dict(lifecycle={"eastwest_congestion": {"hold": "20m"}}))
    assert set(s.lifecycle) == set(AlertKind)
    assert s.policy(AlertKind.EASTWEST_CONGESTION).hold == timedelta(minutes=20)
    assert s.policy(AlertKind.EASTWEST_CONGESTION).for_ == timedelta(minutes=2)  # default kept
    assert s.policy(AlertKind.DUPLICATE_IP).for_ == timedelta(minutes=1)


def test_widening_scope_is_announced_once_and_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"

    def cong(hosts: tuple[str, ...]) -> Finding:
        return Finding(
            AlertKind.EASTWEST_CONGESTION,
            {"host": hosts[0]},
            Severity.SEV1,
            "storm",
            {"hosts": list(hosts)},
            scope={"host": hosts},
        )

    am = AlertManager(AnalyticsSettings.model_validate({"lifecycle": {"eastwest_congestion": {"for": "0s"}}}), path)
    [a] = am.update([cong(("n1",))], T0)
    assert a.evidence["scope"] == {"host": ["n1"]}
    [b] = am.update([cong(("n1", "n2"))], T0 + M)
    assert b.status is AlertStatus.FIRING and b.fingerprint == a.fingerprint and b.starts_at == a.starts_at
    assert b.evidence["scope"] == {"host": ["n1", "n2"]}
    assert am.update([cong(("n1", "n2"))], T0 + 2 * M) == []
    assert am.update([cong(("n1",))], T0 + 3 * M) == [], "narrowing is not news"
    am2 = AlertManager(AnalyticsSettings.model_validate({"lifecycle": {"eastwest_congestion": {"for": "0s"}}}), path)
    assert am2.update([cong(("n1", "n2"))], T0 + 4 * M) == [], "the announced scope was persisted"
    [c] = am2.update([cong(("n1", "n3"))], T0 + 5 * M)
    assert c.evidence["scope"] == {"host": ["n1", "n2", "n3"]}


def test_identical_incidents_at_two_sites_get_different_fingerprints() -> None:
    """The same duplicate IP on the same network name at two sites is two incidents."""
    fired = {}
    for site in ("site-east", "site-west"):
        am = AlertManager(_settings(for_="0s"), site=site)
        [alert] = am.update([_f()], T0)
        assert alert.resource == {"site": site, "network": "net-a", "ip": "10.0.0.5"}
        fired[site] = alert.fingerprint
    assert fired["site-east"] != fired["site-west"]
    assert fired["site-east"] == fingerprint(
        "duplicate_ip", {"site": "site-east", "network": "net-a", "ip": "10.0.0.5"}
    )


def test_state_from_before_site_fingerprints_keeps_open_incidents_ids(tmp_path: Path) -> None:
    """Migration: an incident firing at the upgrade continues under its old id, resolves once,
    and the next incident of the same resource gets the site-scoped id."""
    path = tmp_path / "alerts.json"
    old = AlertManager(_settings(for_="0s"), path)  # as before the upgrade: no site
    [fire] = old.update([_f()], T0)
    old_fp = fire.fingerprint
    assert "site" not in fire.resource
    new = AlertManager(_settings(for_="0s"), path, site="site-east")
    assert new.update([_f()], T0 + M) == [], "no re-fire of the open incident"
    assert new.update([], T0 + 2 * M) == []  # condition gone; resolves after the 5 min hold
    [res] = new.update([], T0 + 7 * M)
    assert res.status is AlertStatus.RESOLVED and res.fingerprint == old_fp
    assert res.resource["site"] == "site-east"
    [again] = new.update([_f()], T0 + 8 * M)
    assert again.fingerprint != old_fp
    assert again.fingerprint == fingerprint("duplicate_ip", {"site": "site-east", "network": "net-a", "ip": "10.0.0.5"})
    # a restart after the migration still finds the open incident
    again_reloaded = AlertManager(_settings(for_="0s"), path, site="site-east")
    assert again_reloaded.update([_f()], T0 + 9 * M) == []
