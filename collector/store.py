"""The Parquet store: batched, atomic, Hive-partitioned writes and the DuckDB catalog of views.

Layout: see :mod:`collector.store_layout` (shared with the readers in :mod:`collector.store_read`);
files go to a :class:`collector.lake.Lake`: the data dir by default, or Azure Blob/ADLS or S3, under
``<table>/site=<site>/date=<day>/``. The catalog (local disk only) holds views only, with globs
relative to the data dir, in DuckDB storage v1.0.0: ``cd <data_dir> && duckdb -readonly
catalog.duckdb`` works with any DuckDB >= 1.0.

Why it is built this way:

* **Atomic files.** On local disk each file is written under a hidden temporary name in its final
  directory, fsynced, renamed into place, and the directory fsynced; on object storage it is
  uploaded in one piece to its final name (an upload is atomic, a rename would be a copy). A
  reader therefore only ever sees whole files, and a crash loses at most the batch being written.
* **One prefix per site, one name per writer.** ``site=<site>/`` keeps a fleet's sites apart in one
  lake; file names carry the writer id and a random suffix, so two writers (or one restarted)
  never overwrite each other's files.
* **Views, not tables.** ``catalog.duckdb`` holds only views over the Parquet globs, written once
  (and whenever the analyst views change). The service never keeps it open, so an analyst can hold
  it in their DuckDB client while the service writes.
* **Compaction is journaled** (local disk; on object storage partitions are left as written).
  Merging a partition's small files writes the merged file first and a
  journal naming the files it replaces; the swap (hide sources, reveal merged file) is replayed from
  the journal on the next start if the process died half-way, so data is never duplicated or lost
  across a crash. A query racing the swap itself may miss that partition for an instant; it never
  reads a partial file.
* **A failed write is a state, not a death.** When a write fails (full disk, descriptor limit,
  I/O error, read-only remount) the rows that were not written go back to the front of the
  buffer, :attr:`Store.write_fault` records the fault (logged once per state change), and the
  next flush retries them; automatic flushes from :meth:`Store.append` wait for the fault's
  backoff. Nothing accepted is dropped here; the caller bounds the buffer
  (:meth:`Store.buffered_bytes`) and sheds load at its edge.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collector.catalog import DEFAULT_CATALOG
from collector.errors import StoreError
from collector.faults import FaultState
from collector.lake import Lake, fsync_dir, write_bytes_atomic, writer_id
from collector.schema import TABLE_SCHEMAS
from collector.store_layout import (
    CATALOG_FILE,
    EMPTY_DATE,
    EMPTY_PARTITION,
    LAKE_POINTER,
    PARTITION_DIR,
    glob_files,
    reader_schema,
    site_glob,
    table_glob,
    view_sql,
    write_parquet_atomic,
)
from collector.unmapped import unmapped_metrics_view

__all__ = [
    "CATALOG_FILE",
    "EMPTY_FILE",
    "EMPTY_PARTITION",
    "JOURNAL",
    "Store",
    "StoreStats",
    "concat",
    "table_glob",
    "view_sql",
    "write_parquet_atomic",
]

log = logging.getLogger(__name__)

EMPTY_FILE = "part-empty.parquet"
JOURNAL = "_compaction.json"
CATALOG_STORAGE = "v1.0.0"
"""Storage format of the catalog: readable by every DuckDB from 1.0 on (the CLI on PyPI lags the library)."""


def _sql_str(p: Path | str) -> str:
    return str(p).replace("'", "''")


_fsync_dir = fsync_dir


def _file_id(path: Path) -> tuple[int, int] | None:
    """Inode and modification time: a file replaced or rewritten since has another."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class _PartialWrite(Exception):
    """A write failed after ``remaining`` (the rows not stored yet) was cut from its batch."""

    def __init__(self, remaining: pa.Table, error: StoreError) -> None:
        super().__init__(str(error))
        self.remaining = remaining
        self.error = error


@dataclass
class StoreStats:
    """Counters the service exports about the store (also handy in tests)."""

    rows_written: dict[str, int] = field(default_factory=dict)
    files_written: int = 0
    bytes_written: int = 0
    flushes: int = 0
    compactions: int = 0
    files_deleted: int = 0


class Store:
    """Buffers Arrow tables per stored table and writes them as atomic Parquet files.

    Thread-safe: ``append`` may be called from the event loop while ``flush`` runs in a worker
    thread (the buffers are swapped under a lock, files are written outside it).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        batch_rows: int = 250_000,
        retention_days: int | None = None,
        extra_views: Mapping[str, str] | None = None,
        write_behind: bool = False,
        auto_flush: bool = True,
        site: str = "",
        lake: Lake | None = None,
        writer: str = "",
    ) -> None:
        """``site`` names the ``site=`` partition the store writes (empty: the layout before sites,
        local disk only); ``lake`` is where files go (default: ``data_dir``); ``writer`` is the
        writer id in file names (default: the host name)."""
        self.data_dir = Path(data_dir)
        self.lake = lake if lake is not None else Lake.local_dir(self.data_dir)
        self.site = site
        self.writer = writer_id(writer)
        if not self.lake.local and not site:
            raise StoreError(f"a store on {self.lake.url} needs a site name (it writes under site=<name>/)")
        # write_behind: a full batch is written by one background thread while the caller goes on
        # (Arrow releases the GIL while it encodes and compresses); one batch at most is in flight,
        # so a crash still loses no more than that batch plus the buffer.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store-writer") if write_behind else None
        self._in_flight: Future[list[Path]] | None = None
        self.batch_rows = batch_rows
        # auto_flush=False: the owner decides when to flush (the WAL-backed service flushes all
        # tables together so that one checkpoint covers them)
        self.auto_flush = auto_flush
        self.write_fault = FaultState("store")
        self.retention_days = retention_days
        # unmapped_metrics is always there (built-in catalog; a pipeline with user mappings replaces it)
        self.extra_views: dict[str, str] = {**unmapped_metrics_view(DEFAULT_CATALOG), **dict(extra_views or {})}
        self.stats = StoreStats()
        self._buffers: dict[str, list[pa.Table]] = {name: [] for name in TABLE_SCHEMAS}
        self._rows: dict[str, int] = dict.fromkeys(TABLE_SCHEMAS, 0)
        self._bytes: dict[str, int] = dict.fromkeys(TABLE_SCHEMAS, 0)
        # tables appended whose size is not in _bytes yet: ``nbytes`` of a slice of a larger table
        # is ~70 µs (a map column's value range is looked up), so it is paid when someone asks
        # (:meth:`buffered_bytes`), not per append; a replay never asks
        self._unsized: dict[str, list[pa.Table]] = {name: [] for name in TABLE_SCHEMAS}
        self._taken: dict[str, int] = dict.fromkeys(TABLE_SCHEMAS, 0)  # buffers taken for writing, per table
        self._lock = threading.Lock()
        self._seq = 0
        self._legacy: set[str] = set()
        self._sited: set[str] = set()
        # the views of this store's last catalog write, and that file's identity
        self._catalog_written: tuple[dict[str, str], tuple[int, int] | None] | None = None
        if not self.lake.local:
            self._sweep_windows()
        try:
            if self.lake.local:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            for name, schema in TABLE_SCHEMAS.items():
                # an empty file per layout in use: DuckDB views over its globs stay valid before data
                rel = f"{self.lake.partition_dir(name, EMPTY_DATE, site or None)}/{EMPTY_FILE}"
                if not self.lake.exists(rel):
                    self.lake.write_parquet(schema.empty_table(), rel)
                # files of the layout before sites (an upgraded data dir) stay in the views; a new
                # one gets none, so Spark and other Hive readers see one partition scheme only
                if self.lake.local and (not site or glob_files(table_glob(Path(self.lake.root), name))):
                    self._legacy.add(name)
                # and a store without a site (a library user, a test) still reads what sites wrote
                if self.lake.local and (site or glob_files(site_glob(Path(self.lake.root), name))):
                    self._sited.add(name)
                if self.lake.local:
                    for table_dir in self._local_table_dirs(name):
                        self._recover_compactions(table_dir)
        except (OSError, StoreError) as exc:
            raise StoreError(f"cannot initialise the store in {self.lake.url}: {exc}") from exc
        if self.lake.local:
            self.write_catalog()
        if Path(self.lake.root) != self.data_dir.resolve():
            self._write_pointer()  # readers of the data dir (API, report, sql --data-dir) follow it to the lake

    # -- writing -------------------------------------------------------------------------------

    def append(self, name: str, table: pa.Table) -> None:
        """Buffer rows for ``name``; flushes that table when ``batch_rows`` are buffered."""
        schema = TABLE_SCHEMAS.get(name)
        if schema is None:
            raise StoreError(f"unknown table {name!r}; tables: {', '.join(TABLE_SCHEMAS)}")
        if table.num_rows == 0:
            return
        if table.schema != schema:
            try:
                table = table.select(schema.names).cast(schema)
            except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise StoreError(f"rows for {name!r} do not match its schema: {exc}") from exc
        with self._lock:
            self._buffers[name].append(table)
            self._rows[name] += table.num_rows
            self._unsized[name].append(table)
            full = self._rows[name] >= self.batch_rows
        if full and self.auto_flush and self.write_fault.due():
            try:
                if self._writer is None:
                    self.flush(name)
                else:
                    self._write_behind(name)
            except StoreError:
                pass  # rows kept in the buffer, fault recorded (and logged once); retried later

    def _write_behind(self, name: str) -> None:
        assert self._writer is not None
        chunks = self._take(name)
        self._wait_in_flight()
        self._in_flight = self._writer.submit(self._write_chunks, name, chunks, "")

    def _wait_in_flight(self) -> None:
        """Block until the background batch is on disk (a failed one is back in the buffer)."""
        fut, self._in_flight = self._in_flight, None
        if fut is not None:
            with contextlib.suppress(StoreError):
                fut.result()

    def _take(self, name: str) -> list[pa.Table]:
        with self._lock:
            chunks, self._buffers[name] = self._buffers[name], []
            self._rows[name] = 0
            self._bytes[name] = 0
            self._unsized[name] = []
            self._taken[name] += 1
        return chunks

    def _restore(self, name: str, table: pa.Table) -> None:
        """Put rows a failed write did not store back at the front of the buffer (order kept)."""
        with self._lock:
            self._buffers[name].insert(0, table)
            self._rows[name] += table.num_rows
            self._bytes[name] += table.nbytes

    def buffered_rows(self, name: str | None = None) -> int:
        """Rows accepted but not yet on disk (queue depth for health metrics)."""
        with self._lock:
            return sum(self._rows.values()) if name is None else self._rows[name]

    def buffered_bytes(self) -> int:
        """Arrow bytes accepted but not yet on disk (what a memory budget bounds).

        The service asks from its event loop while the pipeline thread appends: the tables are
        sized outside the lock, and a size whose tables were taken meanwhile is dropped."""
        with self._lock:
            pending = {name: (tables, self._taken[name]) for name, tables in self._unsized.items() if tables}
            for name in pending:
                self._unsized[name] = []
        sizes = {name: sum(t.nbytes for t in tables) for name, (tables, _) in pending.items()}
        with self._lock:
            for name, (_, taken) in pending.items():
                if self._taken[name] == taken:  # still buffered
                    self._bytes[name] += sizes[name]
            return sum(self._bytes.values())

    def flush(self, name: str | None = None, *, tag: str = "") -> list[Path]:
        """Write buffered rows to disk now; returns the files written.

        ``tag`` goes into every file name (the WAL names the checkpoint a flush belongs to, so a
        flush that crashed before its checkpoint can be undone on start). On a failure every table
        is still attempted, unwritten rows stay buffered, and the first error is raised.
        """
        self._wait_in_flight()
        names = [name] if name else list(TABLE_SCHEMAS)
        written: list[Path] = []
        first_error: StoreError | None = None
        for n in names:
            try:
                written.extend(self._write_chunks(n, self._take(n), tag))
            except StoreError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return written

    def write_now(self, name: str, table: pa.Table, *, tag: str) -> list[Path]:
        """Write ``table`` at once, bypassing the buffers (raises :class:`StoreError`, keeps nothing).

        For writers with their own durable source and cursor (the alerts table from the outbox):
        on failure they undo by ``tag`` and retry the same rows.
        """
        if table.schema != TABLE_SCHEMAS[name]:
            table = table.select(TABLE_SCHEMAS[name].names).cast(TABLE_SCHEMAS[name])
        try:
            return self._write_partitions(name, table, tag)
        except _PartialWrite as exc:
            raise exc.error  # noqa: B904 - its __cause__ is the OSError already

    def _write_chunks(self, name: str, chunks: list[pa.Table], tag: str) -> list[Path]:
        if not chunks:
            return []
        # no combine_chunks(): Parquet writes a chunked table as it is, and a copy of the whole
        # buffer at flush time was the store's peak memory (scrapes share their label arrays).
        # One dictionary per column instead of one per chunk, though: the writer handles a changed
        # dictionary per chunk slowly (measured: 1.7x the write time for 1,576 replay chunks),
        # and unifying copies only the small index arrays.
        table = pa.concat_tables(chunks).unify_dictionaries() if len(chunks) > 1 else chunks[0]
        try:
            written = self._write_partitions(name, table, tag)
        except _PartialWrite as exc:
            self._restore(name, exc.remaining)
            self.write_fault.failed(exc.error)
            raise exc.error  # noqa: B904 - its __cause__ is the OSError already
        self.write_fault.cleared()
        if written:
            self.stats.flushes += 1
        return written

    def _write_partitions(self, name: str, table: pa.Table, tag: str = "") -> list[Path]:
        ts = table.column("ts")
        one_day = _one_day(ts)
        if one_day is not None:  # the common case: no day column, no hash of 250k dates
            days: pa.ChunkedArray[Any] | None = None
            ordered = [one_day[0]]
            uniq: list[date | None] = [one_day[0]]
        else:
            days = pc.cast(pc.cast(ts, pa.timestamp("ms")), pa.date32())
            uniq = pc.unique(days).to_pylist()
            ordered = sorted(d for d in uniq if d is not None)
        out: list[Path] = []
        for i, day in enumerate(ordered):
            if one_day is not None:
                part, first_ms = table, one_day[1]
            else:
                assert days is not None
                part = table if len(uniq) == 1 else table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
                first_ms = int(pc.min(pc.cast(part.column("ts"), pa.int64())).as_py() or 0)
            self._seq += 1
            fname = self.lake.new_name(self.writer, first_ms, self._seq, tag)
            rel = f"{self.lake.partition_dir(name, day.isoformat(), self.site or None)}/{fname}"
            path = Path(self.lake.path(rel))
            try:
                if self.lake.local:  # through this module's name: the fault tests replace it
                    write_parquet_atomic(part, path)
                    size = path.stat().st_size
                else:
                    size = self.lake.write_parquet(part, rel)
            except (OSError, StoreError) as exc:
                rest = ordered[i:]
                if i == 0:
                    remaining = table
                else:
                    assert days is not None  # several days: the careful path
                    remaining = table.filter(pc.is_in(days, value_set=pa.array(rest, pa.date32())))
                if isinstance(exc, StoreError):  # the lake said what failed already
                    error = exc
                else:
                    error = StoreError(f"cannot write {path}: {exc}")
                    error.__cause__ = exc  # keeps the errno for the fault state
                raise _PartialWrite(remaining, error) from exc
            self.stats.files_written += 1
            self.stats.bytes_written += size
            self.stats.rows_written[name] = self.stats.rows_written.get(name, 0) + part.num_rows
            out.append(path)
        return out

    def close(self, *, flush: bool = True) -> None:
        """Flush everything (unless the owner did); the store stays usable for reads afterwards."""
        if flush:
            self.flush()
        else:
            self._wait_in_flight()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    # -- maintenance ---------------------------------------------------------------------------

    def compact(self, name: str, *, min_files: int = 8, before: date | None = None) -> int:
        """Merge small files of each closed partition (older than ``before``, default today).

        Rows are sorted by (metric/kind, host, ts) where those columns exist, which makes later
        scans prune row groups well. Returns the number of partitions compacted.
        """
        before = before or datetime.now(UTC).date()
        done = 0
        if not self.lake.local:
            return 0  # object storage: no rename; `hciwatch compact` swaps through a manifest (collector.lake_compact)
        part_dirs = [p for d in self._local_table_dirs(name) for p in sorted(d.glob("date=*"))]
        for part_dir in part_dirs:
            if part_dir.name == EMPTY_PARTITION:
                continue
            try:
                day = date.fromisoformat(part_dir.name[5:])
            except ValueError:
                continue
            if day >= before:
                continue
            files = sorted(part_dir.glob("part-*.parquet"))
            if len(files) < min_files:
                continue
            table = pq.read_table(files, schema=TABLE_SCHEMAS[name])
            keys: list[tuple[str, Literal["ascending", "descending"]]] = [
                (c, "ascending") for c in ("metric", "host", "ip", "fingerprint", "ts") if c in table.column_names
            ]
            keytab = pa.table(
                {
                    c: (pc.cast(table[c], pa.string()) if pa.types.is_dictionary(table[c].type) else table[c])
                    for c, _ in keys
                }
            )
            table = table.take(pc.sort_indices(keytab, sort_keys=keys))
            day_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
            target = part_dir / f"part-{day_ms:013d}-compact-{secrets.token_hex(3)}.parquet"
            staged = part_dir / f".{target.name}.staged"
            write_parquet_atomic(table, staged)
            journal = {"target": target.name, "staged": staged.name, "sources": [f.name for f in files]}
            jpath = part_dir / JOURNAL
            tmpj = part_dir / f".{JOURNAL}.tmp"
            tmpj.write_text(json.dumps(journal))
            os.replace(tmpj, jpath)
            _fsync_dir(part_dir)
            self._finish_compaction(part_dir, journal)
            self.stats.compactions += 1
            done += 1
        return done

    def _finish_compaction(self, part_dir: Path, journal: Mapping[str, object]) -> None:
        staged = part_dir / str(journal["staged"])
        target = part_dir / str(journal["target"])
        sources = [part_dir / str(s) for s in journal["sources"]]  # type: ignore[attr-defined]
        if staged.exists():
            for src in sources:
                src.unlink(missing_ok=True)
                self.stats.files_deleted += 1
            os.replace(staged, target)
        (part_dir / JOURNAL).unlink(missing_ok=True)
        _fsync_dir(part_dir)

    def _local_table_dirs(self, name: str) -> list[Path]:
        """The directories holding ``date=`` partitions of one local table: the layout before
        sites and this store's own site (other sites' partitions are their writers' business)."""
        base = Path(self.lake.path(name))
        dirs = [base]
        if self.site:
            dirs.append(base / f"site={self.site}")
        return [d for d in dirs if d.is_dir()]

    def _recover_compactions(self, table_dir: Path) -> None:
        for jpath in table_dir.glob(f"date=*/{JOURNAL}"):
            try:
                journal = json.loads(jpath.read_text())
            except (OSError, ValueError):
                jpath.unlink(missing_ok=True)
                continue
            log.warning("finishing an interrupted compaction in %s", jpath.parent)
            self._finish_compaction(jpath.parent, journal)
        for stray in table_dir.glob("date=*/.*.tmp"):  # partial writes of a crashed process
            stray.unlink(missing_ok=True)

    def apply_retention(self, now: datetime | None = None) -> int:
        """Delete whole date partitions older than ``retention_days``; returns how many."""
        if not self.retention_days:
            return 0
        cutoff = (now or datetime.now(UTC)).date() - timedelta(days=self.retention_days)
        removed = 0
        for name in TABLE_SCHEMAS:
            if self.lake.local:
                for table_dir in self._local_table_dirs(name):
                    for part_dir in table_dir.glob("date=*"):
                        if part_dir.name != EMPTY_PARTITION and _day(part_dir.name, cutoff):
                            shutil.rmtree(part_dir, ignore_errors=True)
                            removed += 1
                continue
            # object storage: one prefix delete per expired day of this site
            base = f"{name}/site={self.site}"
            for part in self.lake.dirs(base):
                if part != EMPTY_PARTITION and _day(part, cutoff):
                    self.lake.delete_dir(f"{base}/{part}")
                    removed += 1
        return removed

    # -- reading -------------------------------------------------------------------------------

    def _view_body(self, base: Path, name: str) -> str:
        # each layout that has files (a glob matching nothing is an error in DuckDB)
        return view_sql(base, name, legacy=name in self._legacy, sited=name in self._sited)

    def view_statements(self) -> dict[str, str]:
        """``CREATE OR REPLACE VIEW`` statements for the stored tables plus extra views (local disk)."""
        base = Path(self.lake.root)
        stmts = {n: f"CREATE OR REPLACE VIEW {n} AS {self._view_body(base, n)}" for n in TABLE_SCHEMAS}
        for n, body in self.extra_views.items():
            stmts[n] = f"CREATE OR REPLACE VIEW {n} AS {body}"
        return stmts

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB connection with the views installed."""
        con = duckdb.connect(":memory:")
        self.refresh_views(con)
        return con

    def _sweep_windows(self) -> None:
        """Scratch dirs of :meth:`connect_window` left by a process killed mid-bootstrap (an hour
        old at least, so a bootstrap running now in another process on this data dir is spared)."""
        limit = time.time() - 3600
        for old in self.data_dir.glob(".window-*"):
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < limit:
                    shutil.rmtree(old, ignore_errors=True)

    def connect_window(self, since: datetime) -> tuple[duckdb.DuckDBPyConnection, Path | None]:
        """A connection for reading history from ``since`` on many times (a detector bootstrap).

        On object storage every query of :meth:`connect` lists and scans the lake again, and a
        bootstrap runs one query per chunk of its window: a takeover spent ~10 s re-reading the
        same hour. Here this site's rows from ``since`` on are read once into a DuckDB file in a
        scratch directory (on disk, so a large window does not have to fit in memory) whose
        tables the chunk queries then hit. Returns the connection and the scratch directory to
        delete after use (None on local disk, where :meth:`connect` reads local files already).
        """
        if self.lake.local:
            return self.connect(), None
        scratch = self.data_dir / f".window-{secrets.token_hex(4)}"
        scratch.mkdir(parents=True)
        con = duckdb.connect(str(scratch / "window.duckdb"))
        try:
            for n in TABLE_SCHEMAS:
                con.register("_window_src", self.lake.dataset(n, reader_schema(TABLE_SCHEMAS[n]), sites={self.site}))
                con.execute(f"CREATE TABLE {n} AS SELECT * FROM _window_src WHERE ts >= $since", {"since": since})
                con.unregister("_window_src")
            for n, body in self.extra_views.items():
                con.execute(f"CREATE OR REPLACE VIEW {n} AS {body}")
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            con.close()
            shutil.rmtree(scratch, ignore_errors=True)
            raise StoreError(f"cannot read the history window from {self.lake.url}: {exc}") from exc
        return con, scratch

    def refresh_views(self, con: duckdb.DuckDBPyConnection) -> None:
        """(Re)install the views on ``con`` (new files are picked up by the glob at query time).

        On object storage each table is this site's Arrow dataset (DuckDB scans it without any
        network extension), listed now: call again to see files written since.
        """
        if self.lake.local:
            for stmt in self.view_statements().values():
                con.execute(stmt)
            return
        for n in TABLE_SCHEMAS:
            con.register(f"_lake_{n}", self.lake.dataset(n, reader_schema(TABLE_SCHEMAS[n]), sites={self.site}))
            con.execute(f"CREATE OR REPLACE VIEW {n} AS SELECT * FROM _lake_{n}")
        for n, body in self.extra_views.items():
            con.execute(f"CREATE OR REPLACE VIEW {n} AS {body}")

    def _write_pointer(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(self.data_dir / LAKE_POINTER, json.dumps(self.lake.pointer(self.site)).encode())
        except OSError as exc:
            raise StoreError(f"cannot write {self.data_dir / LAKE_POINTER}: {exc}") from exc

    def write_catalog(self, extra_views: Mapping[str, str] | None = None) -> bool:
        """Write ``catalog.duckdb`` (views only). Returns False if another process holds it.

        The file is rebuilt under a temporary name and renamed, so an analyst never opens a
        half-written catalog; when an analyst has it open read-write on a platform that locks
        it, the rename still succeeds on POSIX and their session keeps the old views.
        """
        if extra_views:
            self.extra_views.update(extra_views)
        if not self.lake.local:
            return False  # DuckDB cannot read object storage without extensions; readers use datasets
        final = self.data_dir / CATALOG_FILE
        # Relative globs (a copied or moved data dir keeps working; clients run from the data dir)
        # in an old storage format (DuckDB CLIs older than this library can open it); relative
        # when the files are in the data dir (the default), else the lake's own path.
        inside = Path(self.lake.root) == self.data_dir.resolve()
        base = Path(".") if inside else Path(self.lake.root)
        stmts = {n: f"CREATE OR REPLACE VIEW {n} AS {self._view_body(base, n)}" for n in TABLE_SCHEMAS}
        stmts.update({n: f"CREATE OR REPLACE VIEW {n} AS {b}" for n, b in self.extra_views.items()})
        if self._catalog_written == (stmts, _file_id(final)):
            return True  # this store wrote these views and nobody replaced the file since: ~50 ms of DuckDB saved
        tmp = self.data_dir / f".{CATALOG_FILE}.{secrets.token_hex(3)}.tmp"
        try:
            con = duckdb.connect(":memory:")
            try:
                con.execute(f"SET file_search_path = '{_sql_str(self.data_dir)}'")
                con.execute(f"ATTACH '{_sql_str(tmp)}' AS hciwatch_catalog (STORAGE_VERSION '{CATALOG_STORAGE}')")
                con.execute("USE hciwatch_catalog")
                for stmt in stmts.values():
                    con.execute(stmt)
                con.execute("CHECKPOINT")
                con.execute("USE memory")
                con.execute("DETACH hciwatch_catalog")
            finally:
                con.close()
            os.replace(tmp, final)
            Path(str(tmp) + ".wal").unlink(missing_ok=True)
            self._catalog_written = (stmts, _file_id(final))
            return True
        except (duckdb.Error, OSError) as exc:
            log.warning("could not write %s: %s", final, exc)
            tmp.unlink(missing_ok=True)
            return False


_DAY_MS = 86_400_000
_EPOCH_DAY = date(1970, 1, 1)


def _one_day(ts: pa.ChunkedArray[Any]) -> tuple[date, int] | None:
    """The UTC day of every timestamp in ``ts`` and the first one in ms, when they all fall on
    one day (from 1970 on, no nulls); else None (the caller partitions row by row).

    One min/max pass instead of a date column and a hash of it: ~4 % of a replay's writer thread.
    """
    if len(ts) == 0 or ts.null_count:
        return None
    mm = pc.min_max(pc.cast(ts, pa.int64()))
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    if lo is None or hi is None or lo < 0 or lo // _DAY_MS != hi // _DAY_MS:
        return None
    return _EPOCH_DAY + timedelta(days=lo // _DAY_MS), int(lo)


def _day(part: str, cutoff: date) -> bool:
    """True when ``part`` is a ``date=`` partition older than ``cutoff``."""
    if not PARTITION_DIR.match(part):
        return False
    try:
        return date.fromisoformat(part[5:]) < cutoff
    except ValueError:
        return False


def concat(tables: Iterable[pa.Table], name: str) -> pa.Table:
    """Concatenate tables of one stored schema (empty input gives an empty table)."""
    lst = [t for t in tables if t.num_rows]
    if not lst:
        return TABLE_SCHEMAS[name].empty_table()
    return pa.concat_tables(lst)
