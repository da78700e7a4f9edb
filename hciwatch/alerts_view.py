"""Reading stored alert state changes back (for ``hciwatch alerts`` and the eval harness)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from collector.schema import Alert, AlertKind, AlertStatus, Severity
from collector.store import view_sql


def load_alerts(data_dir: Path, *, status: str | None = None, kind: str | None = None) -> list[Alert]:
    """Alert state changes in time order; ``status="open"`` keeps incidents not yet resolved."""
    con = duckdb.connect(":memory:")
    try:
        rows = con.execute(
            f"SELECT ts, fingerprint, kind, status, severity, map_entries(resource), summary, evidence, "
            f"runbook, starts_at, ends_at FROM ({view_sql(Path(data_dir), 'alerts')}) "
            "ORDER BY ts, fingerprint, status"
        ).fetchall()
    finally:
        con.close()
    alerts = [
        Alert(
            fingerprint=r[1],
            kind=AlertKind(r[2]),
            status=AlertStatus(r[3]),
            severity=Severity(r[4]),
            resource={e["key"]: e["value"] for e in r[5]},
            summary=r[6],
            evidence=json.loads(r[7]),
            runbook=r[8],
            starts_at=r[9],
            ends_at=r[10],
            ts=r[0],
        )
        for r in rows
    ]
    if status == "open":
        last: dict[str, Alert] = {}
        for a in alerts:
            last[a.fingerprint] = a
        return [a for a in last.values() if a.status is AlertStatus.FIRING]
    if status:
        alerts = [a for a in alerts if a.status.value == status]
    if kind:
        alerts = [a for a in alerts if a.kind.value == kind]
    return alerts
