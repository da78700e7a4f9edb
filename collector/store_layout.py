"""Where the store keeps things: the one description both its writer and its readers use.

Layout (the lake, :mod:`collector.lake`: a local directory by default, or object storage)::

    <root>/<table>/site=<site>/date=YYYY-MM-DD/part-<writer>-<first ts ms>-<seq>[-<tag>]-<rand>.parquet
    <root>/<table>/site=<site>/date=1970-01-01/part-empty.parquet   (zero rows: keeps views valid)
    <root>/<table>/date=YYYY-MM-DD/part-….parquet    (the layout before sites: still read, site NULL;
                                                      a store without a site still writes it)
    <root>/<table>/date=1970-01-01/part-empty.parquet (only in that layout)
    <data_dir>/catalog.duckdb                         (local disk only; views only)
    <data_dir>/lake.json                              (object storage: where the lake is, for readers)

Why a module of its own: :mod:`collector.store` (writing) and :mod:`collector.store_read` (every
reader) must agree on these names, and neither should import the other's machinery to learn them.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pyarrow as pa

from collector.lake import DATE_FIELD, SITE_FIELD, write_parquet_atomic

__all__ = [
    "CATALOG_FILE",
    "EMPTY_DATE",
    "EMPTY_PARTITION",
    "LAKE_POINTER",
    "PARTITION_DIR",
    "PARTITION_FIELD",
    "SITE_DIR",
    "SITE_FIELD",
    "glob_files",
    "site_glob",
    "table_glob",
    "view_sql",
    "write_parquet_atomic",
]

EMPTY_PARTITION = "date=1970-01-01"
EMPTY_DATE = "1970-01-01"
CATALOG_FILE = "catalog.duckdb"
#: In a data dir whose Parquet lives in a lake elsewhere: the lake's URL, credential references and site.
LAKE_POINTER = "lake.json"

#: The Hive partition column every stored table gets on read (``site`` comes before it).
PARTITION_FIELD = DATE_FIELD
PARTITION_DIR = re.compile(r"^date=\d{4}-\d{2}-\d{2}$")
SITE_DIR = re.compile(r"^site=[A-Za-z0-9][A-Za-z0-9._-]*$")


def table_glob(data_dir: Path, name: str) -> str:
    """The glob of one table's files in the layout before sites (``<table>/date=*/``)."""
    return str(data_dir / name / "date=*" / "*.parquet")


def site_glob(data_dir: Path, name: str) -> str:
    """The glob of one table's files in the site layout (``<table>/site=*/date=*/``)."""
    return str(data_dir / name / "site=*" / "date=*" / "*.parquet")


def glob_files(pattern: str) -> list[str]:
    """Visible local files matching a glob of the layout (``*`` stays within one path segment)."""
    return [p for p in glob.glob(pattern) if not Path(p).name.startswith(".")]


def _q(text: str) -> str:
    return text.replace("'", "''")


def view_sql(data_dir: Path, name: str, *, legacy: bool = True, sited: bool = True) -> str:
    """``SELECT`` over one local table's Parquet files: stored columns, then ``site`` and ``date``.

    DuckDB refuses one ``read_parquet`` over files with different Hive keys, so each layout has its
    own scan and the two are unioned by name (the layout before sites reads as ``site`` NULL).
    A glob that matches no file is an error in DuckDB: pass only the layouts that have files (the
    store writes an empty file into each layout it uses).
    """
    parts: list[str] = []
    if sited:
        parts.append(
            f"SELECT * FROM read_parquet('{_q(site_glob(data_dir, name))}', hive_partitioning = true, "
            "union_by_name = true, hive_types = {'site': VARCHAR, 'date': DATE})"
        )
    if legacy or not parts:
        glob = _q(table_glob(data_dir, name))
        parts.append(
            f"SELECT * EXCLUDE (date), NULL::VARCHAR AS site, date FROM read_parquet('{glob}', "
            "hive_partitioning = true, union_by_name = true, hive_types = {'date': DATE})"
        )
    return parts[0] if len(parts) == 1 else "SELECT * FROM (" + ") UNION ALL BY NAME (".join(parts) + ")"


def reader_schema(stored: pa.Schema) -> pa.Schema:
    """What a reader sees of a stored table: its columns, then ``site`` and ``date``."""
    return stored.append(SITE_FIELD).append(DATE_FIELD)
