"""The read-only query runner: real Parquet in the Hive layout, every refusal, limits, lock-down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from collector.schema import TABLE_SCHEMAS
from hciwatch.query import QueryError, QueryLimits, connect, run_query
from tests.api.helpers import T0, make_alert

LIMITS = QueryLimits(timeout_s=20)


def q(data_dir: Path, sql: str, extra_views: dict[str, str] | None = None) -> list[dict[str, Any]]:
    result = run_query(data_dir, sql, limits=LIMITS, extra_views=extra_views)
    rows: list[dict[str, Any]] = result.table.to_pylist()
    return rows


def test_select_over_hive_parquet(data_dir: Path) -> None:
    rows = q(
        data_dir, "SELECT date, host, count(*) AS n, sum(value) AS total FROM samples GROUP BY ALL ORDER BY date, host"
    )
    assert rows[0]["date"].isoformat() == "2026-11-20"
    assert [(r["host"], r["n"]) for r in rows] == [
        ("hci-node-01", 17),
        ("hci-node-02", 17),
        ("hci-node-03", 16),
        ("lb-01", 1),
    ]
    # the hidden temporary file in date=2026-11-21 is never read
    assert q(data_dir, "SELECT count(*) AS n FROM samples")[0]["n"] == 51


def test_types_and_partition_pruning(data_dir: Path) -> None:
    rows = q(
        data_dir,
        "SELECT typeof(ts) AS t, typeof(host) AS h, typeof(labels) AS l, "
        "labels['nic'] AS nic FROM samples WHERE date = DATE '2026-11-20' LIMIT 1",
    )
    assert rows == [{"t": "TIMESTAMP WITH TIME ZONE", "h": "VARCHAR", "l": "MAP(VARCHAR, VARCHAR)", "nic": "eth0"}]
    assert q(data_dir, "SELECT ip, owner_kind, network FROM ip_observations") == [
        {"ip": "10.0.0.5", "owner_kind": "service", "network": "lbnet"}
    ]


def test_empty_table_has_the_stored_columns(data_dir: Path, tmp_path: Path) -> None:
    rows = q(data_dir, "SELECT count(*) AS n FROM alerts")
    assert rows == [{"n": 0}]
    cols = [r["column_name"] for r in q(data_dir, "DESCRIBE alerts")]
    assert cols == [*TABLE_SCHEMAS["alerts"].names, "site", "date"]
    # a data dir that does not exist yet behaves like an empty store
    assert q(tmp_path / "nowhere", "SELECT count(*) AS n FROM samples") == [{"n": 0}]


def test_extra_views(data_dir: Path) -> None:
    views = {"node_samples": "SELECT * FROM samples WHERE host LIKE 'hci-node-%'"}
    assert q(data_dir, "SELECT count(*) AS n FROM node_samples", extra_views=views) == [{"n": 50}]
    with pytest.raises(QueryError, match="plain identifier"):
        q(data_dir, "SELECT 1", extra_views={"bad name; DROP": "SELECT 1"})


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 AS x",
        "WITH a AS (SELECT 1 AS x) SELECT * FROM a",
        "VALUES (1)",
        "FROM samples SELECT host LIMIT 1",
        "DESCRIBE samples",
        "SHOW TABLES",
        "SUMMARIZE ip_observations",
        "PIVOT samples ON host USING count(*) GROUP BY metric",
        "PIVOT samples ON host IN ('lb-01') USING count(*) GROUP BY metric",
        "WITH s AS (SELECT host, value FROM samples) PIVOT s ON host USING sum(value)",
        "UNPIVOT (SELECT 1 AS a, 2 AS b) ON a, b",
        "EXPLAIN SELECT * FROM samples",
        "EXPLAIN ANALYZE SELECT count(*) FROM samples",
        "SELECT * FROM query('SELECT 42 AS x')",
        "-- a comment\nSELECT 1;",
    ],
)
def test_read_only_statements_run(data_dir: Path, sql: str) -> None:
    run_query(data_dir, sql, limits=LIMITS)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("INSERT INTO samples VALUES (1)", "INSERT"),
        ("UPDATE samples SET value = 0", "UPDATE"),
        ("DELETE FROM samples", "DELETE"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("CREATE MACRO m() AS 1", "CREATE"),
        ("CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')", "CREATE"),
        ("DROP VIEW samples", "DROP"),
        ("ALTER VIEW samples RENAME TO s2", "ALTER"),
        ("COPY (SELECT 1) TO '{out}'", "COPY"),
        ("COPY samples FROM '/etc/passwd'", "COPY"),
        ("EXPORT DATABASE '{outdir}'", "EXPORT"),
        ("ATTACH '{out}.db' AS x", "ATTACH"),
        ("ATTACH ':memory:' AS x", "ATTACH"),
        ("DETACH memory", "DETACH"),
        ("INSTALL httpfs", "LOAD"),
        ("LOAD httpfs", "LOAD"),
        ("FORCE INSTALL httpfs", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("RESET lock_configuration", "SET"),
        ("SET VARIABLE x = 1", "SET"),
        ("USE memory", "SET"),
        ("PRAGMA version", "PRAGMA"),
        ("PRAGMA enable_profiling", "PRAGMA"),
        ("CALL pragma_version()", "CALL"),
        ("CHECKPOINT", "CALL"),
        ("VACUUM", "VACUUM"),
        ("BEGIN TRANSACTION", "TRANSACTION"),
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("UPDATE EXTENSIONS", "statement type"),
        ("SELECT 1; SELECT 2", "one statement"),
        ("SELECT 1; DROP VIEW samples", "one statement"),
        ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{out}'", "COPY"),
        ("EXPLAIN (FORMAT json) INSERT INTO samples VALUES (1)", "INSERT"),
        ("COPY (PIVOT samples ON host USING count(*)) TO '{out}'", "COPY"),
        ("CREATE TABLE t AS PIVOT samples ON host USING count(*)", "CREATE"),
        ("", "empty"),
        ("   -- only a comment", "empty"),
    ],
)
def test_writes_and_admin_statements_refused(data_dir: Path, tmp_path: Path, sql: str, why: str) -> None:
    out = tmp_path / "exfil.csv"
    sql = sql.format(out=out, outdir=tmp_path / "export")
    with pytest.raises(QueryError) as err:
        run_query(data_dir, sql, limits=LIMITS)
    assert err.value.kind == "bad_query"
    assert why in str(err.value)
    assert not out.exists() and not (tmp_path / "export").exists() and not Path(f"{out}.db").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_blob('/etc/hostname')",
        "SELECT * FROM read_parquet('{outside}')",
        "SELECT * FROM '{outside}'",
        "SELECT * FROM read_parquet('{data}/samples/date=2026-11-20/part-0.parquet')",
        "SELECT * FROM glob('{data}/**')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM read_json('/proc/self/environ')",
        "SELECT * FROM read_parquet('https://example.invalid/x.parquet')",
        "SELECT * FROM read_csv('s3://bucket/key.csv')",
        "SELECT * FROM duckdb_extensions()",
        "SELECT * FROM query('SELECT * FROM read_csv(''/etc/passwd'')')",
    ],
)
def test_file_and_network_access_refused(data_dir: Path, tmp_path: Path, sql: str) -> None:
    outside = tmp_path / "outside.parquet"
    pq.write_table(TABLE_SCHEMAS["samples"].empty_table(), outside)
    sql = sql.format(outside=outside, data=data_dir)
    with pytest.raises(QueryError) as err:
        run_query(data_dir, sql, limits=LIMITS)
    assert "file and network access is disabled" in str(err.value)
    assert str(tmp_path) not in str(err.value)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM query('COPY (SELECT 1) TO ''/tmp/x.csv''')",
        "SELECT getenv('HOME')",
    ],
)
def test_other_escapes_fail(data_dir: Path, sql: str) -> None:
    with pytest.raises(QueryError):
        run_query(data_dir, sql, limits=LIMITS)


def test_errors_keep_duckdb_text_but_no_server_paths(data_dir: Path) -> None:
    with pytest.raises(QueryError, match="syntax error") as err:
        run_query(data_dir, "SELEC 1", limits=LIMITS)
    assert err.value.kind == "bad_query"
    with pytest.raises(QueryError, match='"nope" not found') as err:
        run_query(data_dir, "SELECT nope FROM samples", limits=LIMITS)
    assert err.value.kind == "execution"
    assert str(data_dir) not in str(err.value)


def test_no_server_paths_in_catalog_or_settings(data_dir: Path) -> None:
    text = str(q(data_dir, "SELECT * FROM duckdb_views()")) + str(q(data_dir, "SELECT * FROM duckdb_settings()"))
    assert str(data_dir) not in text
    assert str(data_dir.parent) not in text


def test_lock_down_is_in_force(data_dir: Path) -> None:
    """Even bypassing the statement check, the connection itself refuses changes and file access."""
    con = connect(data_dir, LIMITS)
    try:
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("RESET lock_configuration")
        with pytest.raises(duckdb.Error):
            con.execute("ATTACH '/tmp/hciwatch-should-not-exist.db' AS x")
        with pytest.raises(duckdb.PermissionException):
            con.execute("SELECT * FROM read_text('/etc/hostname')")
        with pytest.raises(duckdb.Error):
            con.execute("INSTALL httpfs")
        assert con.execute("SELECT count(*) FROM samples").fetchone() == (51,)
    finally:
        con.close()
    assert not Path("/tmp/hciwatch-should-not-exist.db").exists()


def test_duckdb_views_over_files_stop_working_after_lock(data_dir: Path) -> None:
    """Pins the DuckDB 2.0 behaviour that made us register Arrow datasets instead of file views."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(
            f"CREATE VIEW s AS SELECT * FROM read_parquet('{data_dir}/samples/*/*.parquet', hive_partitioning = true)"
        )
        assert con.execute("SELECT count(*) FROM s").fetchone() == (51,)
        con.execute("SET enable_external_access = false")
        with pytest.raises(duckdb.PermissionException):
            con.execute("SELECT count(*) FROM s").fetchone()
    finally:
        con.close()


def test_row_limit_truncates_and_says_so(data_dir: Path) -> None:
    res = run_query(data_dir, "SELECT * FROM samples ORDER BY ts", limit=7, limits=LIMITS)
    assert res.truncated and res.table.num_rows == 7
    res = run_query(data_dir, "SELECT * FROM samples", limit=51, limits=LIMITS)
    assert not res.truncated and res.table.num_rows == 51
    res = run_query(data_dir, "SELECT * FROM range(1000000000000)", limits=QueryLimits(default_rows=100, timeout_s=20))
    assert res.truncated and res.table.num_rows == 100  # streamed: stops reading at the limit


@pytest.mark.parametrize("limit", [0, -1, 100_001])
def test_bad_limits(data_dir: Path, limit: int) -> None:
    with pytest.raises(QueryError, match="limit") as err:
        run_query(data_dir, "SELECT 1", limit=limit, limits=LIMITS)
    assert err.value.kind == "bad_query"


def test_long_query_is_interrupted(data_dir: Path) -> None:
    with pytest.raises(QueryError, match="time limit") as err:
        run_query(data_dir, "SELECT count(*) FROM range(1000000000000) a, samples b", limits=QueryLimits(timeout_s=0.5))
    assert err.value.kind == "timeout"


def test_result_size_limit(data_dir: Path) -> None:
    with pytest.raises(QueryError, match="larger than"):
        run_query(
            data_dir, "SELECT repeat('x', 10000) AS s FROM range(1000)", limits=QueryLimits(max_result_bytes=100_000)
        )


def test_sql_size_limit(data_dir: Path) -> None:
    with pytest.raises(QueryError, match="longer than"):
        run_query(data_dir, "SELECT 1 " + " " * 100, limits=QueryLimits(max_sql_bytes=64))


def test_limits_validated() -> None:
    with pytest.raises(ValueError, match="max_memory"):
        QueryLimits(max_memory="lots")
    with pytest.raises(ValueError, match="max_rows"):
        QueryLimits(default_rows=10, max_rows=5)


def test_alerts_table_readable(tmp_path: Path) -> None:
    from collector.schema import alerts_table

    part = tmp_path / "alerts" / f"date={T0.date().isoformat()}"
    part.mkdir(parents=True)
    pq.write_table(alerts_table([make_alert(1), make_alert(2)]), part / "part-0.parquet")
    rows = q(tmp_path, "SELECT kind, status, resource['host'] AS host FROM alerts ORDER BY ts")
    assert rows == [{"kind": "duplicate_ip", "status": "firing", "host": "hci-node-01"}] * 2


def test_file_replaced_between_listing_and_reading_is_retried(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction may delete a file the dataset listed; the query lists again once and succeeds."""
    from collector.store_read import StoreReader

    real_open = StoreReader.dataset
    calls: list[str] = []
    victim = data_dir / "samples" / "date=2026-11-21" / "part-9.parquet"

    def racing_open(self: StoreReader, name: str) -> object:
        if name == "samples" and not calls:
            pq.write_table(pq.read_table(data_dir / "samples" / "date=2026-11-21" / "part-0.parquet"), victim)
            listed = real_open(self, name)
            victim.unlink()  # gone before the scan
            calls.append(name)
            return listed
        return real_open(self, name)

    monkeypatch.setattr(StoreReader, "dataset", racing_open)
    assert q(data_dir, "SELECT count(*) AS n FROM samples") == [{"n": 51}]
    assert calls == ["samples"]
