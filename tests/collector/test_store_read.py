"""The store's read API over files the real Store wrote: listing, time ranges, extent, alert history,
the report's window connection and the analysts' sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from collector.schema import Alert, AlertKind, AlertStatus, Sample, Severity, alerts_table, samples_table
from collector.store import Store
from collector.store_read import StoreReader

T0 = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


def _samples(n: int, start: datetime = T0) -> list[Sample]:
    return [
        Sample(
            start + timedelta(minutes=i), "windows", f"h{i % 3}", "net.bytes_received_total", float(i), (("nic", "e0"),)
        )
        for i in range(n)
    ]


def _alert(n: int, status: AlertStatus) -> Alert:
    starts = T0 + timedelta(minutes=n)
    return Alert(
        fingerprint=f"fp{n}",
        kind=AlertKind.DUPLICATE_IP,
        status=status,
        severity=Severity.SEV1,
        starts_at=starts,
        resource={"ip": f"10.0.0.{n}"},
        summary=f"alert {n}",
        evidence={"n": n},
        ends_at=starts + timedelta(minutes=30) if status is AlertStatus.RESOLVED else None,
    )


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    store = Store(tmp_path / "data", extra_views={"busy_hosts": "SELECT host FROM samples WHERE value > 100"})
    store.append("samples", samples_table(_samples(240)))  # 22:00 on the 20th to 02:00 on the 21st
    store.append(
        "alerts",
        alerts_table([_alert(1, AlertStatus.FIRING), _alert(2, AlertStatus.FIRING), _alert(1, AlertStatus.RESOLVED)]),
    )
    store.close()
    store.write_catalog()
    return tmp_path / "data"


def test_files_skip_hidden_and_non_partition_entries(data_dir: Path) -> None:
    part = data_dir / "samples" / "date=2026-11-21"
    (part / ".part-x.parquet.tmp").write_bytes(b"partial")
    (part / ".staged.parquet").write_bytes(b"partial")
    (data_dir / "samples" / "notes").mkdir()
    files = StoreReader(data_dir).files("samples")
    assert [Path(f).parent.name for f in files] == ["date=1970-01-01", "date=2026-11-20", "date=2026-11-21"]
    assert not any(Path(f).name.startswith(".") for f in files)


def test_read_range_keeps_the_bounds_and_prunes_days(data_dir: Path) -> None:
    reader = StoreReader(data_dir)
    assert reader.read_range("samples").num_rows == 240
    day2 = reader.read_range("samples", T0 + timedelta(hours=2), columns=["ts", "value"])
    assert day2.column_names == ["ts", "value"]
    assert day2.num_rows == 120 and min(day2.column("value").to_numpy()) == 120.0
    middle = reader.read_range("samples", T0 + timedelta(minutes=10), T0 + timedelta(minutes=19))
    assert sorted(middle.column("value").to_numpy().tolist()) == [float(i) for i in range(10, 20)]
    naive_end = reader.read_range("samples", end=(T0 + timedelta(minutes=4)).replace(tzinfo=None))
    assert naive_end.num_rows == 5  # naive bounds are UTC
    assert StoreReader(data_dir.parent / "nothing").read_range("samples").num_rows == 0


def test_extent_ignores_the_empty_partition(data_dir: Path, tmp_path: Path) -> None:
    assert StoreReader(data_dir).extent() == (T0, T0 + timedelta(minutes=239))
    Store(tmp_path / "fresh").close()
    assert StoreReader(tmp_path / "fresh").extent() is None
    assert StoreReader(tmp_path / "absent").extent() is None


def test_alert_history_filters(data_dir: Path, tmp_path: Path) -> None:
    reader = StoreReader(data_dir)
    history = reader.alert_history()
    assert [(a.fingerprint, a.status.value) for a in history] == [
        ("fp1", "firing"),
        ("fp2", "firing"),
        ("fp1", "resolved"),
    ]
    assert history[0].resource == {"ip": "10.0.0.1"} and history[0].evidence == {"n": 1}
    assert [a.fingerprint for a in reader.alert_history(status="open")] == ["fp2"]
    assert [a.fingerprint for a in reader.alert_history(status="resolved")] == ["fp1"]
    assert reader.alert_history(kind="vip_pool_exhaustion") == []
    assert StoreReader(tmp_path / "absent").alert_history() == []


def test_analyst_views_come_from_the_catalog(data_dir: Path, tmp_path: Path) -> None:
    views = StoreReader(data_dir).analyst_views()
    assert views["busy_hosts"] == 'SELECT host FROM samples WHERE ("value" > 100)'
    assert not set(views) & {"samples", "ip_observations", "alerts"}  # the tables are re-declared by readers
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "catalog.duckdb").write_bytes(b"not a database")
    assert StoreReader(tmp_path / "broken").analyst_views() == {}


def test_window_limits_tables_but_not_the_unbounded_ones(data_dir: Path) -> None:
    con = StoreReader(data_dir).window(
        T0 + timedelta(hours=3),
        None,
        views={"samples": "s", "alerts": "a", "ip_observations": "o"},
        unbounded=["alerts"],
    )
    try:
        assert con.execute("SELECT count(*), min(value) FROM s").fetchone() == (60, 180.0)
        assert con.execute("SELECT count(*) FROM a").fetchone() == (3,)
        assert con.execute("SELECT count(*) FROM o").fetchone() == (0,)
        assert con.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)
    finally:
        con.close()
    with pytest.raises(ValueError, match="plain identifier"):
        StoreReader(data_dir).window(None, None, views={"samples": "x; DROP"})


def test_sandbox_reads_tables_and_refuses_files(data_dir: Path) -> None:
    con = StoreReader(data_dir).sandbox(
        threads=1, max_memory="256MB", extra_views={"n": "SELECT count(*) FROM samples"}
    )
    try:
        assert con.execute("SELECT * FROM n").fetchone() == (240,)
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"SELECT * FROM read_parquet('{data_dir}/samples/*/*.parquet')")
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
    finally:
        con.close()
    with pytest.raises(ValueError, match="max_memory"):
        StoreReader(data_dir).sandbox(threads=1, max_memory="1GB'; SET x = '1")
