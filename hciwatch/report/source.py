"""The report's read-only DuckDB connection over one data directory and time range.

Opened through the store's read API (:meth:`collector.store_read.StoreReader.window`). Why not
open ``catalog.duckdb`` itself: its views name the Parquet files by absolute path, so a data
directory that was copied or moved (a report built on a laptop from a site's data) would read
nothing. The stored tables are therefore re-declared over *this* directory, and only the analyst
views' bodies (``pool_usage`` and ``ip_conflicts``, which carry the site's configured pools and
clusters) are taken from the catalog (:meth:`~collector.store_read.StoreReader.analyst_views`).

Why ``samples`` is not the whole table here: reading the ``labels`` MAP column is what makes a
scan of a 48 h site take seconds, and ``pool_usage`` reads labels only for the MetalLB/Calico
pool gauges. So on this connection ``samples`` holds just those gauge rows (an empty table on the
many sites that have none, checked with a scan of the cheap ``metric`` column), and the report's
own queries read ``all_samples``, never touching ``labels``. Every view is limited to the range
asked for, with a ``date`` predicate so whole partitions are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import duckdb

from collector.store_read import StoreReader

POOL_GAUGES = (
    "metallb.addresses_in_use",
    "metallb.addresses_total",
    "calico.ipam.allocations_in_use",
    "calico.ipam.ippool_size",
    "calico.ipam.ippool_reserved",
)
USED_VIEWS = ("pool_usage", "ip_conflicts")
_TABLE_VIEWS = {"samples": "all_samples", "ip_observations": "ip_observations", "alerts": "alerts"}


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
    reader = StoreReader(Path(data_dir).resolve())
    con = reader.window(start, end, views=_TABLE_VIEWS, unbounded=("alerts",), threads=threads)
    try:
        gauges = ", ".join(f"'{m}'" for m in POOL_GAUGES)
        has_gauges = con.execute(f"SELECT count(*) FROM all_samples WHERE metric IN ({gauges})").fetchone()
        if has_gauges and has_gauges[0]:
            con.execute(f"CREATE TEMP TABLE samples AS SELECT * FROM all_samples WHERE metric IN ({gauges})")
        else:
            con.execute("CREATE VIEW samples AS SELECT * FROM all_samples WHERE false")
        views = dict(extra_views) if extra_views is not None else reader.analyst_views()
        if not all(v in views for v in USED_VIEWS):
            from analytics.views import ANALYST_VIEWS

            views = {**ANALYST_VIEWS, **views}
        for name in USED_VIEWS:
            con.execute(f"CREATE VIEW {name} AS {views[name]}")
    except BaseException:
        con.close()
        raise
    return con
