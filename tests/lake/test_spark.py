"""Spark reads the lake hciwatch writes, and agrees with DuckDB (``make spark``; not in ``make test``).

pyspark in local mode on a JDK (Debian's OpenJDK 17), bound to 127.0.0.1, UI off. It reads the
same files two ways: plain Hive partition discovery (``spark.read.parquet``) and the tables
:func:`hciwatch.fleet.spark_ddl` generates (what the README tells Fabric/Synapse users to run),
then row counts per table and a fleet-wide aggregate are compared with DuckDB's answer through
``hciwatch sql --lake``'s path (:func:`hciwatch.query.run_query`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.lake import Lake
from hciwatch.fleet import fleet_views, spark_ddl
from hciwatch.query import run_query
from tests.lake.fleet_synth import write_fleet

pytestmark = [pytest.mark.slow, pytest.mark.spark]

SITES = 5
AGGREGATE = """
SELECT site, count(DISTINCT host) AS hosts, count(*) AS n, round(sum(value), 3) AS total
FROM {samples} WHERE metric = 'pfc.rx_pause_frames_total' GROUP BY site ORDER BY site
"""


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    if shutil.which("java") is None:
        pytest.fail("java is not installed: apt-get install -y openjdk-17-jre-headless (make spark-deps)")
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        pytest.fail("pyspark is not installed: pip install '.[spark]' (make spark)")
    session = (
        SparkSession.builder.master("local[1]")
        .appName("hciwatch-lake-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    root = tmp_path_factory.mktemp("spark-lake")
    lake = Lake.open(str(root / "lake"))
    write_fleet(lake, SITES, root / "work", minutes=60)
    return lake


def _duck(lake: Lake, sql: str) -> list[tuple[Any, ...]]:
    table = run_query(Path("."), sql, extra_views=fleet_views(lake), lake=lake).table
    return [tuple(r.values()) for r in table.to_pylist()]


def test_spark_reads_the_lake_like_duckdb(spark: Any, lake: Lake) -> None:
    for name in ("samples", "ip_observations", "alerts"):
        df = spark.read.parquet(f"file://{lake.root}/{name}")
        assert {"site", "date"} <= set(df.columns)
        spark_rows = df.filter("date > DATE'1970-01-01'").count()
        [(duck_rows,)] = _duck(lake, f"SELECT count(*) FROM {name} WHERE date > DATE '1970-01-01'")
        assert spark_rows == duck_rows, name
    samples = spark.read.parquet(f"file://{lake.root}/samples")
    samples.createOrReplaceTempView("lake_samples")
    got = [tuple(r) for r in spark.sql(AGGREGATE.format(samples="lake_samples")).collect()]
    want = _duck(lake, AGGREGATE.format(samples="samples"))
    assert len(want) == SITES and got == want


def test_the_generated_spark_ddl_works(spark: Any, lake: Lake) -> None:
    for stmt in spark_ddl(f"file://{lake.root}").split(";"):
        sql = "\n".join(line.split("--", 1)[0] for line in stmt.splitlines()).strip()
        if sql:
            spark.sql(sql)
    got = [tuple(r) for r in spark.sql(AGGREGATE.format(samples="hciwatch_samples")).collect()]
    assert got == _duck(lake, AGGREGATE.format(samples="samples"))
    [(n,)] = [tuple(r) for r in spark.sql("SELECT count(*) FROM hciwatch_ip_observations").collect()]
    assert n == _duck(lake, "SELECT count(*) FROM ip_observations")[0][0]
