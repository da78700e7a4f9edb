"""Where the store keeps things on disk: the one description both its writer and its readers use.

Layout::

    <data_dir>/<table>/date=YYYY-MM-DD/part-<first ts ms>-<seq>-<rand>.parquet
    <data_dir>/<table>/date=1970-01-01/part-empty.parquet   (zero rows: keeps views valid before data)
    <data_dir>/catalog.duckdb                                (views only; analysts open it with any client)

Why a module of its own: :mod:`collector.store` (writing) and :mod:`collector.store_read` (every
reader) must agree on these names, and neither should import the other's machinery to learn them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

EMPTY_PARTITION = "date=1970-01-01"
EMPTY_DATE = "1970-01-01"
CATALOG_FILE = "catalog.duckdb"

#: The Hive partition column every stored table gets on read.
PARTITION_FIELD = pa.field("date", pa.date32())
PARTITION_DIR = re.compile(r"^date=\d{4}-\d{2}-\d{2}$")


def table_glob(data_dir: Path, name: str) -> str:
    """The glob DuckDB reads one stored table from."""
    return str(data_dir / name / "*" / "*.parquet")


def view_sql(data_dir: Path, name: str) -> str:
    """``SELECT`` over one stored table's Parquet files (Hive ``date`` column included)."""
    glob = table_glob(data_dir, name).replace("'", "''")
    return (
        f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true, "
        f"hive_types = {{'date': DATE}})"
    )
