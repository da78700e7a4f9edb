"""The store's read API: every reader of stored data opens it here, and only here.

Readers are the SQL API and ``hciwatch sql`` (:mod:`hciwatch.query`), the operator views
(:mod:`hciwatch.report`), alert history (``hciwatch alerts``, the eval harness) and anything that
wants rows of a time range. Why one module: how a stored table is found (which files are whole
and visible), opened (Arrow dataset or DuckDB ``read_parquet``) and limited to a time range is
decided in one place; a reader over a :class:`collector.lake.Lake` on object storage (a fleet's
lake: ``hciwatch sql --lake URL``) offers the same methods, every table an Arrow dataset over the
lake's filesystem (DuckDB needs no network extension). The writer (:mod:`collector.store`) shares
only the on-disk names of :mod:`collector.store_layout`.

Three kinds of access:

* **Arrow** — :meth:`StoreReader.dataset` (one table over its committed files) and
  :meth:`StoreReader.read_range` (rows of ``[start, end]``, whole partitions pruned by ``date``).
* **Sandboxed SQL** for analysts — :meth:`StoreReader.sandbox`, see below.
* **Trusted SQL** for the service's own readers — :meth:`StoreReader.window` (views limited to a
  time range), :meth:`StoreReader.extent`, :meth:`StoreReader.alert_history` and
  :meth:`StoreReader.analyst_views` (what ``catalog.duckdb`` records).

The sandbox (verified on DuckDB 2.0.0; ``tests/api/test_query.py`` proves each refusal):

1. **Tables without file access from SQL.** ``SET enable_external_access = false`` also stops
   *existing* views over ``read_parquet('<dir>/**/*.parquet')`` from reading their files (DuckDB
   2.0 binds views lazily). DuckDB's ``allowed_directories`` would re-open the data directory, but
   then user SQL could ``glob``/``read_blob`` anything under it, and ``duckdb_views()``, the
   ``filename`` column and ``current_setting('allowed_directories')`` would reveal server paths.
   Instead each table is opened in Python as a ``pyarrow.dataset`` (Hive ``site=``/``date=``
   partitioning, the canonical schema from :mod:`collector.schema` plus ``site VARCHAR`` and
   ``date DATE``, so files of the layout before sites read with ``site`` NULL and old files with fewer
   columns read as NULLs) and registered with ``con.register``. DuckDB scans it through the Arrow
   C stream with projection and filter pushdown (a ``date`` predicate prunes partitions); SQL never
   touches a path. A table with no files yet is an empty Arrow table of the same schema. Extra
   views (name → ``SELECT`` text, trusted, from the server) are created before the lock-down.
2. **Then lock**, in this order: ``python_enable_replacements = false`` (SQL cannot reach Python
   objects by variable name), ``TimeZone = 'UTC'``, ``threads``, ``max_memory``,
   ``temp_directory = ''`` (no spill files: DuckDB otherwise adds its temp directory to the allowed
   directories, and it can only be changed while external access is on), no extension
   auto-install/auto-load, ``disabled_filesystems = 'LocalFileSystem'``,
   ``enable_external_access = false`` (no files, URLs, INSTALL/LOAD, ATTACH of files) and last
   ``lock_configuration = true`` (any later ``SET``/``RESET`` fails).

Which statements may run on the sandbox, and with what limits, is :mod:`hciwatch.query`'s job.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from collector.errors import ConfigError
from collector.lake import Lake
from collector.schema import TABLE_SCHEMAS, Alert, AlertKind, AlertStatus, Severity, iso, utc
from collector.store_layout import (
    CATALOG_FILE,
    EMPTY_DATE,
    LAKE_POINTER,
    glob_files,
    reader_schema,
    site_glob,
    table_glob,
    view_sql,
)

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CREATE_VIEW = re.compile(r"(?is)^\s*CREATE\s+(OR\s+REPLACE\s+)?VIEW\s+\S+\s+AS\s+")


def table_schema(name: str) -> pa.Schema:
    """The schema a reader sees for a stored table: the stored schema plus ``site`` and ``date``."""
    return reader_schema(TABLE_SCHEMAS[name])


def _ts_literal(ts: datetime) -> str:
    return f"TIMESTAMPTZ '{iso(ts)}'"


class StoreReader:
    """Read-only access to one data directory or lake (see the module docstring for what it offers).

    Cheap to create: nothing is opened until a method is called, and every connection it returns
    is the caller's to close. ``lake`` (default: the data dir) is where the tables are; ``sites``
    limits every table to those sites (default: all, the fleet view of a shared lake).
    """

    def __init__(self, data_dir: Path | str, *, lake: Lake | None = None, sites: Collection[str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.sites = set(sites) if sites is not None else None
        pointer = self.data_dir / LAKE_POINTER
        if lake is None and pointer.is_file():
            # the service writes to a lake elsewhere: read its own site there
            try:
                doc = json.loads(pointer.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{pointer} is not readable: {exc}") from None
            lake, site = Lake.from_pointer(doc)
            self.sites = {site} if sites is None else self.sites
        self.lake = lake if lake is not None else Lake.local_dir(self.data_dir)

    # -- what is there -------------------------------------------------------------------------

    def is_store(self) -> bool:
        """True when the directory looks like an hciwatch data dir (a ``samples`` table exists)."""
        return self.has_table("samples")

    def has_table(self, name: str) -> bool:
        """True when the store has ever initialised table ``name`` here."""
        return self.lake.has_table(name)

    def files(self, name: str) -> list[str]:
        """The committed Parquet files of one table, oldest partition first.

        Only ``<table>/[site=<s>/]date=YYYY-MM-DD/*.parquet`` counts; hidden files (the store's
        temporary and staged files start with a dot) are skipped, so a reader never sees a partial file.
        """
        return [f.path for f in self.lake.files(name, sites=self.sites)]

    def analyst_views(self) -> dict[str, str]:
        """Analyst view name → ``SELECT`` body, as ``catalog.duckdb`` records them (may be empty).

        The catalog is opened read-only and closed at once, so the service writing next to it is
        never blocked; a catalog that cannot be opened counts as recording nothing.
        """
        cat = self.data_dir / CATALOG_FILE
        if not self.lake.local or not cat.exists():
            return {}
        try:
            con = duckdb.connect(str(cat), read_only=True)
            try:
                rows = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
            finally:
                con.close()
        except duckdb.Error as exc:  # a damaged catalog costs only the analyst views; the tables still work
            log.warning(
                "%s cannot be read (%s); its views are skipped. Delete it: the next run or replay rewrites it",
                cat,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            return {}
        return {
            str(name): _CREATE_VIEW.sub("", str(sql)).rstrip().rstrip(";")
            for name, sql in rows
            if name not in TABLE_SCHEMAS
        }

    # -- Arrow ---------------------------------------------------------------------------------

    def dataset(self, name: str) -> ds.Dataset | pa.Table:
        """One stored table as an Arrow dataset over its committed files (an empty table if none)."""
        return self.lake.dataset(name, table_schema(name), sites=self.sites)

    def read_range(
        self,
        name: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rows of one table with ``start <= ts <= end`` (either bound may be open), in file order.

        The ``date`` partition is filtered too, so files of other days are never opened.
        """
        data = self.dataset(name)
        ts_type = TABLE_SCHEMAS[name].field("ts").type
        conds: list[ds.Expression] = []
        if start is not None:
            lo = utc(start)
            conds += [ds.field("ts") >= pa.scalar(lo, ts_type), ds.field("date") >= pa.scalar(lo.date(), pa.date32())]
        if end is not None:
            hi = utc(end)
            conds += [ds.field("ts") <= pa.scalar(hi, ts_type), ds.field("date") <= pa.scalar(hi.date(), pa.date32())]
        cond: ds.Expression | None = None
        for c in conds:
            cond = c if cond is None else cond & c
        cols = list(columns) if columns is not None else None
        if isinstance(data, pa.Table):
            table = data if cond is None else data.filter(cond)
            return table.select(cols) if cols is not None else table
        return data.to_table(columns=cols, filter=cond)

    # -- trusted SQL ---------------------------------------------------------------------------

    def scan_sql(self, name: str) -> str:
        """DuckDB ``SELECT`` over one local table's files (``site``, ``date`` included), for trusted
        connections; only the layouts that have files are scanned (an empty glob is an error)."""
        if not self.lake.local:
            raise ValueError(f"{self.lake.url} is not local: use source() with a connection")
        base = Path(self.lake.root)
        legacy, sited = table_glob(base, name), site_glob(base, name)
        sql = view_sql(base, name, legacy=bool(glob_files(legacy)), sited=bool(glob_files(sited)))
        if self.sites is not None:
            wanted = ", ".join("'" + x.replace("'", "''") + "'" for x in sorted(self.sites)) or "NULL"
            sql = f"SELECT * FROM ({sql}) WHERE site IN ({wanted})"
        return sql

    def source(self, con: duckdb.DuckDBPyConnection, name: str) -> str:
        """A ``SELECT`` over one table for trusted SQL on ``con``: local files by glob, a lake on
        object storage through an Arrow dataset registered on ``con``."""
        if self.lake.local:
            return self.scan_sql(name)
        con.register(f"_lake_{name}", self.dataset(name))
        return f"SELECT * FROM _lake_{name}"

    def connect(self, *, threads: int = 2) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory connection (UTC, ``threads`` workers) with nothing registered yet."""
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"SET threads = {int(threads)}")
            con.execute("SET TimeZone = 'UTC'")
        except BaseException:
            con.close()
            raise
        return con

    def window(
        self,
        start: datetime | None,
        end: datetime | None,
        *,
        views: Mapping[str, str] | None = None,
        unbounded: Collection[str] = (),
        threads: int = 2,
    ) -> duckdb.DuckDBPyConnection:
        """A connection with one view per stored table, limited to ``[start, end]``.

        Args:
            views: stored table → view name (default: every table under its own name).
            unbounded: tables shown whole whatever the range (e.g. ``alerts``: an incident open
                at the start began before it).
            threads: DuckDB worker threads.

        Each limited view carries a ``date`` predicate too, so whole partitions are skipped; a
        table the store never initialised here is an empty view of the right shape.
        """
        con = self.connect(threads=threads)
        try:
            for name, view in (views or {n: n for n in TABLE_SCHEMAS}).items():
                if not _IDENT.match(view):
                    raise ValueError(f"view name {view!r} is not a plain identifier")
                whole = name in unbounded
                sql = self._range_sql(con, name, None if whole else start, None if whole else end)
                if sql is None:
                    con.register(f"_empty_{name}", TABLE_SCHEMAS[name].empty_table())
                    sql = f"SELECT *, NULL::DATE AS date FROM _empty_{name}"
                con.execute(f"CREATE VIEW {view} AS {sql}")
        except BaseException:
            con.close()
            raise
        return con

    def _range_sql(
        self, con: duckdb.DuckDBPyConnection, name: str, start: datetime | None, end: datetime | None
    ) -> str | None:
        if not self.has_table(name):
            return None
        where = []
        if start is not None:
            where += [f"ts >= {_ts_literal(start)}", f"date >= DATE '{start.date().isoformat()}'"]
        if end is not None:
            where += [f"ts <= {_ts_literal(end)}", f"date <= DATE '{end.date().isoformat()}'"]
        return f"SELECT * FROM ({self.source(con, name)})" + (" WHERE " + " AND ".join(where) if where else "")

    def extent(self, names: Sequence[str] = ("samples", "ip_observations")) -> tuple[datetime, datetime] | None:
        """First and last ``ts`` stored in ``names`` (None when they hold no rows)."""
        names = [n for n in names if self.has_table(n)]
        if not names:
            return None
        con = self.connect(threads=2)
        try:
            parts = [
                f"SELECT min(ts) AS lo, max(ts) AS hi FROM ({self.source(con, n)}) WHERE date > DATE '{EMPTY_DATE}'"
                for n in names
            ]
            row = con.execute(f"SELECT min(lo), max(hi) FROM ({' UNION ALL '.join(parts)})").fetchone()
        finally:
            con.close()
        if row is None or row[0] is None or row[1] is None:
            return None
        return utc(row[0]).astimezone(UTC), utc(row[1]).astimezone(UTC)

    def alert_history(self, *, status: str | None = None, kind: str | None = None) -> list[Alert]:
        """Stored alert state changes in time order.

        ``status="open"`` keeps the last change of each incident still firing; ``"firing"`` or
        ``"resolved"`` keep changes of that status; ``kind`` keeps one alert kind.
        """
        if not self.has_table("alerts"):
            return []
        con = self.connect(threads=2)
        try:
            rows = con.execute(
                "SELECT ts, fingerprint, kind, status, severity, map_entries(resource), summary, evidence, "
                f"runbook, starts_at, ends_at FROM ({self.source(con, 'alerts')}) "
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

    # -- sandboxed SQL -------------------------------------------------------------------------

    def sandbox(
        self, *, threads: int, max_memory: str, extra_views: Mapping[str, str] | None = None
    ) -> duckdb.DuckDBPyConnection:
        """A fresh, locked-down in-memory connection over every stored table (see the module docstring).

        Raises:
            ValueError: an extra view name is not a plain identifier.
            duckdb.Error: a view or setting could not be installed (the message may name paths).
        """
        con = duckdb.connect(":memory:")
        try:
            for name in TABLE_SCHEMAS:
                con.register(name, self.dataset(name))
            for name, body in (extra_views or {}).items():
                if not _IDENT.match(name):
                    raise ValueError(f"extra view name {name!r} is not a plain identifier")
                con.execute(f'CREATE TEMP VIEW "{name}" AS {body}')
            _lock_down(con, threads=threads, max_memory=max_memory)
        except BaseException:
            con.close()
            raise
        return con


def _lock_down(con: duckdb.DuckDBPyConnection, *, threads: int, max_memory: str) -> None:
    # Order matters: temp_directory and extension settings can only change while external
    # access is still on, and nothing can change after lock_configuration.
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", max_memory.strip(), re.IGNORECASE):
        raise ValueError(f"max_memory must look like '512MB' or '2GiB', got {max_memory!r}")
    for stmt in (
        "SET python_enable_replacements = false",
        "SET TimeZone = 'UTC'",
        f"SET threads = {int(threads)}",
        f"SET max_memory = '{max_memory.strip()}'",
        "SET temp_directory = ''",
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        "SET disabled_filesystems = 'LocalFileSystem'",
        "SET enable_external_access = false",
        "SET lock_configuration = true",
    ):
        con.execute(stmt)
