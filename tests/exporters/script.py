"""A scripted sequence of alert state changes shared by the exporter tests and the child process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collector.schema import Alert, AlertKind, AlertStatus, Severity, fingerprint

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)

_INCIDENTS: list[tuple[AlertKind, Severity, dict[str, str], str]] = [
    (
        AlertKind.VIP_POOL_EXHAUSTION,
        Severity.SEV1,
        {"network": "clusternet-a", "pool": "vip"},
        "VIP pool of clusternet-a is 95% used",
    ),
    (
        AlertKind.DUPLICATE_IP,
        Severity.SEV0,
        {"ip": "10.0.0.20", "network": "clusternet-a"},
        "10.0.0.20 is claimed by two MACs",
    ),
    (
        AlertKind.EASTWEST_CONGESTION,
        Severity.SEV2,
        {"host": "hci-node-02", "adapter": "SMB1"},
        "PFC pause storm on hci-node-02 SMB1",
    ),
    (
        AlertKind.SOURCE_DOWN,
        Severity.SEV3,
        {"source": "haproxy", "target": "lb-1:9000"},
        "haproxy lb-1:9000 has not answered for 5 min",
    ),
    (
        AlertKind.METRIC_ANOMALY,
        Severity.SEV4,
        {"host": "hci-node-01", "metric": "smb_client_latency_seconds"},
        "SMB latency is unusual",
    ),
]


def scripted_alerts(cycles: int = 2) -> list[Alert]:
    """Every incident fires and resolves ``cycles`` times, interleaved across incidents."""
    out: list[Alert] = []
    t = T0
    for cycle in range(cycles):
        starts: dict[int, datetime] = {}
        for i, (kind, sev, res, summary) in enumerate(_INCIDENTS):
            t += timedelta(seconds=30)
            starts[i] = t
            out.append(
                Alert(
                    fingerprint=fingerprint(kind.value, res),
                    kind=kind,
                    status=AlertStatus.FIRING,
                    severity=sev,
                    starts_at=t,
                    resource=res,
                    summary=summary,
                    evidence={"cycle": cycle, "value": 0.5 + i, "hosts": ["hci-node-01"]},
                    runbook=f"https://runbooks.example/{kind.value}",
                )
            )
        for i, (kind, sev, res, summary) in enumerate(_INCIDENTS):
            t += timedelta(seconds=45)
            out.append(
                Alert(
                    fingerprint=fingerprint(kind.value, res),
                    kind=kind,
                    status=AlertStatus.RESOLVED,
                    severity=sev,
                    starts_at=starts[i],
                    ends_at=t,
                    resource=res,
                    summary=f"resolved: {summary}",
                    evidence={"cycle": cycle, "value": 0.1},
                )
            )
    return out


def many_alerts(n: int) -> list[Alert]:
    """``n`` changes over a handful of fingerprints (firing/resolved alternating per fingerprint)."""
    out: list[Alert] = []
    state: dict[int, datetime | None] = {}
    for k in range(n):
        i = k % 7
        res = {"host": f"hci-node-{i:02d}", "adapter": "SMB1"}
        t = T0 + timedelta(seconds=k)
        start = state.get(i)
        if start is None:
            state[i] = t
            out.append(
                Alert(
                    fingerprint=fingerprint("eastwest_congestion", res),
                    kind=AlertKind.EASTWEST_CONGESTION,
                    status=AlertStatus.FIRING,
                    severity=Severity.SEV2,
                    starts_at=t,
                    resource=res,
                    summary=f"change {k}",
                    evidence={"k": k},
                )
            )
        else:
            state[i] = None
            out.append(
                Alert(
                    fingerprint=fingerprint("eastwest_congestion", res),
                    kind=AlertKind.EASTWEST_CONGESTION,
                    status=AlertStatus.RESOLVED,
                    severity=Severity.SEV2,
                    starts_at=start,
                    ends_at=t,
                    resource=res,
                    summary=f"change {k}",
                    evidence={"k": k},
                )
            )
    return out


def change_key(a: Alert) -> tuple[str, str, str]:
    """Identity of one state change across sinks (fingerprint, status, when)."""
    return (a.fingerprint, a.status.value, a.changed_at.isoformat())
