"""Helpers for the API tests: alerts, a Hive-layout Parquet store written with pyarrow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from collector.schema import (
    SAMPLES_SCHEMA,
    Alert,
    AlertKind,
    AlertStatus,
    IpObservation,
    OwnerKind,
    Sample,
    Severity,
    fingerprint,
    ip_observations_table,
    samples_table,
)

TOKEN = "s3cr3t-token-for-tests"
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def make_alert(
    n: int = 0,
    *,
    kind: AlertKind = AlertKind.DUPLICATE_IP,
    status: AlertStatus = AlertStatus.FIRING,
    host: str = "hci-node-01",
    network: str = "lbnet",
    severity: Severity = Severity.SEV1,
) -> Alert:
    resource = {"host": host, "network": network, "ip": f"10.0.0.{n}"}
    starts = T0 + timedelta(minutes=n)
    return Alert(
        fingerprint=fingerprint(kind.value, resource),
        kind=kind,
        status=status,
        severity=severity,
        starts_at=starts,
        resource=resource,
        summary=f"alert {n}",
        evidence={"n": n},
        ends_at=starts + timedelta(minutes=5) if status is AlertStatus.RESOLVED else None,
    )


def write_store(data_dir: Path, n_samples: int = 50) -> None:
    """Real Parquet files in the store's Hive layout, written with pyarrow."""
    samples = [
        Sample(
            ts=T0 + timedelta(seconds=i),
            source="windows",
            host=f"hci-node-0{i % 3 + 1}",
            metric="nic_bytes_received_total",
            value=float(i),
            labels=(("nic", "eth0"),),
        )
        for i in range(n_samples)
    ]
    table = samples_table(samples)
    assert table.schema == SAMPLES_SCHEMA
    part = data_dir / "samples" / "date=2026-11-20"
    part.mkdir(parents=True)
    pq.write_table(table, part / "part-0.parquet")
    # A second day, plus a hidden temporary file the store may leave while writing: never read.
    day2 = data_dir / "samples" / "date=2026-11-21"
    day2.mkdir()
    pq.write_table(
        samples_table(
            [Sample(ts=T0 + timedelta(days=1), source="haproxy", host="lb-01", metric="haproxy_up", value=1.0)]
        ),
        day2 / "part-0.parquet",
    )
    pq.write_table(table, day2 / ".part-1.parquet.abcd.tmp")
    obs = ip_observations_table(
        [
            IpObservation(
                ts=T0,
                ip="10.0.0.5",
                owner_kind=OwnerKind.SERVICE,
                owner="default/web",
                source="k8s",
                cluster="c1",
                network="lbnet",
            )
        ]
    )
    ip_part = data_dir / "ip_observations" / "date=2026-11-20"
    ip_part.mkdir(parents=True)
    pq.write_table(obs, ip_part / "part-0.parquet")


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def arrow_table(body: bytes) -> pa.Table:
    return pa.ipc.open_stream(body).read_all()
