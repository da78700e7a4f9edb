"""Drive Engine + AlertManager over synthetic tables the way the replay pipeline does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from analytics.engine import Engine
from analytics.findings import Finding
from analytics.lifecycle import AlertManager
from analytics.networks import NetworkLike
from analytics.settings import AnalyticsSettings
from collector.schema import IP_OBSERVATIONS_SCHEMA, SAMPLES_SCHEMA, Alert, AlertStatus, from_ms

MIN = 60_000
HOUR = 3_600_000


def connect(samples: pa.Table | None = None, ip_observations: pa.Table | None = None) -> Any:
    """In-memory DuckDB with native ``samples`` / ``ip_observations`` tables (fast, like Parquet)."""
    con = duckdb.connect()
    con.execute("SET threads = 1")  # tiny incremental queries: thread hand-offs cost more than they gain
    for name, tbl, schema in (
        ("samples", samples, SAMPLES_SCHEMA),
        ("ip_observations", ip_observations, IP_OBSERVATIONS_SCHEMA),
    ):
        con.register(f"{name}_src", ds.dataset(tbl if tbl is not None else schema.empty_table()))
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM {name}_src ORDER BY ts")
        con.unregister(f"{name}_src")
    return con


def connect_parquet(
    tmp: Path, samples: pa.Table | None = None, ip_observations: pa.Table | None = None, rows_per_file: int = 100_000
) -> Any:
    """DuckDB views over Hive-style Parquet files, as the store lays them out."""
    con = duckdb.connect()
    for name, tbl, schema in (
        ("samples", samples, SAMPLES_SCHEMA),
        ("ip_observations", ip_observations, IP_OBSERVATIONS_SCHEMA),
    ):
        d = tmp / name / "date=2026-01-01"
        d.mkdir(parents=True, exist_ok=True)
        t = (tbl if tbl is not None else schema.empty_table()).sort_by("ts")
        for i in range(0, max(t.num_rows, 1), rows_per_file):
            pq.write_table(
                t.slice(i, rows_per_file), d / f"part-{i // rows_per_file:05d}.parquet", row_group_size=20_000
            )
        con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{tmp / name}/*/*.parquet', hive_partitioning = false)"
        )
    return con


def settings(**kw: Any) -> AnalyticsSettings:
    """Settings from plain values as a config file would give them (durations as text)."""
    kw.setdefault("bootstrap_window", "1h")
    return AnalyticsSettings.model_validate(kw)


@dataclass
class Run:
    alerts: list[tuple[int, Alert]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    history: dict[int, list[Finding]] = field(default_factory=dict)
    engine: Engine | None = None
    manager: AlertManager | None = None

    def firing(self, kind: str | None = None) -> list[tuple[int, Alert]]:
        return [
            (t, a) for t, a in self.alerts if a.status is AlertStatus.FIRING and (kind is None or a.kind.value == kind)
        ]

    def findings_at(self, t: int, kind: str) -> list[Finding]:
        """Findings of the last evaluation at or before t."""
        times = [x for x in self.history if x <= t]
        return [f for f in self.history[max(times)] if f.kind.value == kind] if times else []

    def resolved(self, kind: str | None = None) -> list[tuple[int, Alert]]:
        return [
            (t, a)
            for t, a in self.alerts
            if a.status is AlertStatus.RESOLVED and (kind is None or a.kind.value == kind)
        ]


def schedule(
    start: int, end: int, fine: Sequence[tuple[int, int]] = (), coarse: int = 30 * MIN, step: int = MIN
) -> list[int]:
    """Evaluation times: every ``coarse`` ms, and every ``step`` inside the fine windows."""
    times = set(range(start + step, end + 1, coarse))
    for a, z in fine:
        a = max(start + step, (a // step) * step)
        times.update(range(a, min(end, z) + 1, step))
    times.add((end // step) * step)
    return sorted(times)


def replay(
    con: Any,
    start: int,
    end: int,
    *,
    networks: Sequence[NetworkLike] = (),
    settings: AnalyticsSettings | None = None,
    fine: Sequence[tuple[int, int]] = (),
    coarse: int = 60 * MIN,
    step: int = MIN,
    engine: Engine | None = None,
    manager: AlertManager | None = None,
    state_path: Path | None = None,
) -> Run:
    s = settings or AnalyticsSettings.model_validate({"bootstrap_window": "1h"})
    eng = engine or Engine(s, networks)
    am = manager or AlertManager(s, state_path)
    run = Run(engine=eng, manager=am)
    for t in schedule(start, end, fine, coarse, step):
        findings = eng.evaluate(con, from_ms(t))
        run.findings = findings
        run.history[t] = findings
        for a in am.update(findings, from_ms(t)):
            run.alerts.append((t, a))
    return run
