"""A private, read-only DuckDB connection over one data directory and time range, for the views' model.

Why not open ``catalog.duckdb`` itself: its views name the Parquet files by absolute path, so a
data directory that was copied or moved (a report built on a laptop from a site's data) would
read nothing. The stored tables are therefore re-declared over *this* directory with the store's
own ``view_sql``, and only the analyst views' bodies (``pool_usage`` and ``ip_conflicts``, which
carry the site's configured pools and clusters) are taken from the catalog, opened read-only and
closed at once so the service writing next to it is never blocked.

Why ``samples`` is not the whole table here: reading the ``labels`` MAP column is what makes a
scan of a 48 h site take seconds, and ``pool_usage`` reads labels only for the MetalLB/Calico
pool gauges. So on this connection ``samples`` holds just those gauge rows (an empty table on the
many sites that have none, checked with a scan of the cheap ``metric`` column), and the report's
own queries read ``all_samples``, never touching ``labels``. Every view is limited to the range
asked for, with a ``date`` predicate so whole partitions are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import duckdb

from collector.schema import TABLE_SCHEMAS, iso
from collector.store import CATALOG_FILE, view_sql

_CREATE_VIEW = re.compile(r"(?is)^\s*CREATE\s+(OR\s+REPLACE\s+)?VIEW\s+\S+\s+AS\s+")
POOL_GAUGES = (
    "metallb.addresses_in_use",
    "metallb.addresses_total",
    "calico.ipam.allocations_in_use",
    "calico.ipam.ippool_size",
    "calico.ipam.ippool_reserved",
)
USED_VIEWS = ("pool_usage", "ip_conflicts")


def stored_analyst_views(data_dir: Path) -> dict[str, str]:
    """Analyst view name → ``SELECT`` body, as recorded in the data dir's catalog (may be empty)."""
    cat = Path(data_dir) / CATALOG_FILE
    if not cat.exists():
        return {}
    try:
        con = duckdb.connect(str(cat), read_only=True)
    except duckdb.Error:
        return {}
    try:
        rows = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
    finally:
        con.close()
    out: dict[str, str] = {}
    for name, sql in rows:
        if name in TABLE_SCHEMAS:
            continue
        out[str(name)] = _CREATE_VIEW.sub("", str(sql)).rstrip().rstrip(";")
    return out


def _lit(ts: datetime) -> str:
    return f"TIMESTAMPTZ '{iso(ts)}'"


def _table_sql(data_dir: Path, name: str, start: datetime | None, end: datetime | None) -> str:
    if not (data_dir / name).is_dir():
        return ""
    where = []
    if start is not None:
        where += [f"ts >= {_lit(start)}", f"date >= DATE '{start.date().isoformat()}'"]
    if end is not None:
        where += [f"ts <= {_lit(end)}", f"date <= DATE '{end.date().isoformat()}'"]
    body = view_sql(data_dir, name)
    return f"SELECT * FROM ({body})" + (" WHERE " + " AND ".join(where) if where else "")


def connect(
    data_dir: Path,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    extra_views: Mapping[str, str] | None = None,
    threads: int = 2,
) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with ``all_samples``, ``ip_observations``, ``alerts`` (all tables
    limited to ``[start, end]`` except ``alerts``, which is whole: an incident open at the start
    began before it), the pool-gauge ``samples`` subset and the analyst views the report uses.

    ``extra_views`` (the service passes its own) wins over what the catalog records.
    """
    data_dir = Path(data_dir).resolve()
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET threads = {int(threads)}")
        con.execute("SET TimeZone = 'UTC'")
        for name, view in (("samples", "all_samples"), ("ip_observations", "ip_observations"), ("alerts", "alerts")):
            sql = _table_sql(data_dir, name, None if name == "alerts" else start, None if name == "alerts" else end)
            if not sql:  # a data dir the store never initialised: an empty table of the right shape
                con.register(f"_empty_{name}", TABLE_SCHEMAS[name].empty_table())
                sql = f"SELECT *, NULL::DATE AS date FROM _empty_{name}"
            con.execute(f"CREATE VIEW {view} AS {sql}")
        gauges = ", ".join(f"'{m}'" for m in POOL_GAUGES)
        has_gauges = con.execute(f"SELECT count(*) FROM all_samples WHERE metric IN ({gauges})").fetchone()
        if has_gauges and has_gauges[0]:
            con.execute(f"CREATE TEMP TABLE samples AS SELECT * FROM all_samples WHERE metric IN ({gauges})")
        else:
            con.execute("CREATE VIEW samples AS SELECT * FROM all_samples WHERE false")
        views = dict(extra_views) if extra_views is not None else stored_analyst_views(data_dir)
        if not all(v in views for v in USED_VIEWS):
            from analytics.views import ANALYST_VIEWS

            views = {**ANALYST_VIEWS, **views}
        for name in USED_VIEWS:
            con.execute(f"CREATE VIEW {name} AS {views[name]}")
    except BaseException:
        con.close()
        raise
    return con
