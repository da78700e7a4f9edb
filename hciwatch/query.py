"""Run analysts' SQL read-only over the Parquet store, with limits, for the HTTP API.

Every query gets a FRESH in-memory DuckDB connection that lives only for that query, so nothing a
query does (temporary objects, the enum types PIVOT creates) outlives it or is seen by another.

How the lock-down works, and what was verified on DuckDB 2.0.0 (tests/api/test_query.py proves
each refusal):

1. **The sandbox.** The connection comes from :meth:`collector.store_read.StoreReader.sandbox`:
   every stored table registered as an Arrow dataset (SQL never touches a path, and
   ``duckdb_views()`` shows only ``python_arrow_scan()``), the server's extra views created, then
   the configuration locked (no files, URLs, extensions, spill files or later ``SET``); its
   docstring says what was verified and why views over ``read_parquet`` could not be used.
2. **Limits on the connection:** ``threads`` and ``max_memory`` from :class:`QueryLimits`.
3. **Only one read-only statement.** DuckDB's own parser (``con.extract_statements``) must find
   exactly one statement of type SELECT (which in DuckDB 2.0 covers WITH, VALUES, TABLE,
   FROM-first, DESCRIBE, SHOW, SUMMARIZE, UNPIVOT and PIVOT with an ``IN`` list) or EXPLAIN,
   whose inner statement (after ``EXPLAIN [ANALYZE]`` and an optional ``(options)`` group) is
   checked the same way, because ``EXPLAIN ANALYZE`` executes it. A PIVOT without an ``IN`` list
   parses as a MULTI statement (DuckDB first creates an enum of the pivot values), and so does a
   COPY/CREATE/INSERT around such a PIVOT; a MULTI is accepted only if DuckDB's tokenizer shows
   it starts with a read keyword, contains PIVOT/UNPIVOT, and has no write/admin keyword outside
   parentheses. Everything else (INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, COPY, ATTACH,
   DETACH, INSTALL, LOAD, SET, RESET, PRAGMA, CALL, EXPORT, IMPORT, VACUUM, transactions,
   PREPARE/EXECUTE) is refused before execution. ``query('…')`` inside a SELECT accepts only a
   SELECT (DuckDB's rule), and ``getenv`` does not exist outside the DuckDB CLI.
4. **Limits.** Rows are streamed (``to_arrow_reader``) and reading stops at the row limit + 1,
   which sets ``truncated``; a result larger than ``max_result_bytes`` is refused. A timer
   thread calls ``con.interrupt()`` at the time limit (verified to stop a running scan within
   milliseconds); ``max_memory`` bounds DuckDB's buffers and ``threads`` its parallelism.
5. **Safe errors.** A refused file/network access gets a fixed message (DuckDB's would name a
   server directory, e.g. its extension directory); other DuckDB messages (syntax, binder) are
   passed on with the data directory and other server paths replaced by placeholders.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from collector.errors import HciwatchError
from collector.lake import Lake
from collector.store_read import StoreReader

log = logging.getLogger(__name__)

_READ_TYPES = {duckdb.StatementType.SELECT}
_READ_FIRST_WORDS = {
    "select",
    "with",
    "values",
    "from",
    "table",
    "describe",
    "show",
    "summarize",
    "pivot",
    "unpivot",
    "pivot_wider",
    "pivot_longer",
}
_WRITE_WORDS = {
    "insert",
    "update",
    "delete",
    "create",
    "drop",
    "alter",
    "copy",
    "attach",
    "detach",
    "install",
    "load",
    "force",
    "set",
    "reset",
    "pragma",
    "call",
    "export",
    "import",
    "vacuum",
    "checkpoint",
    "begin",
    "commit",
    "rollback",
    "abort",
    "start",
    "use",
    "prepare",
    "execute",
    "deallocate",
    "truncate",
    "merge",
    "grant",
    "revoke",
    "comment",
    "analyze",
    "update_extensions",
}
_ACCESS_DENIED = (
    "file and network access is disabled in queries: read the views "
    "(samples, ip_observations, alerts, ...) instead of files, URLs or extensions"
)


class QueryError(HciwatchError):
    """A query was refused or failed; ``str()`` is safe to show to the caller.

    Attributes:
        kind: ``bad_query`` (empty, syntax error, not a single read-only statement, bad limit),
            ``execution`` (binder/type/runtime error, result too large, out of memory),
            ``timeout`` (stopped at the time limit), ``internal`` (our bug or the store).
    """

    def __init__(self, message: str, *, kind: str = "execution") -> None:
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Resource limits for one query (the API's ``[api.query]`` settings).

    Attributes:
        default_rows: rows returned when the caller names no limit.
        max_rows: the largest limit a caller may ask for.
        timeout_s: wall-clock budget; the query is interrupted after it.
        max_memory: DuckDB ``max_memory`` for the query connection (e.g. ``"1GB"``).
        threads: DuckDB worker threads for the query.
        max_concurrent: queries run at once by the API; more wait (up to ``timeout_s``).
        max_sql_bytes: longest accepted SQL text.
        max_result_bytes: largest result (Arrow bytes) returned.
    """

    default_rows: int = 10_000
    max_rows: int = 100_000
    timeout_s: float = 30.0
    max_memory: str = "1GB"
    threads: int = 2
    max_concurrent: int = 2
    max_sql_bytes: int = 65_536
    max_result_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        problems = []
        if self.default_rows < 1:
            problems.append(f"default_rows must be at least 1, got {self.default_rows}")
        if self.max_rows < self.default_rows:
            problems.append(f"max_rows ({self.max_rows}) must be >= default_rows ({self.default_rows})")
        if not self.timeout_s > 0:
            problems.append(f"timeout_s must be positive, got {self.timeout_s}")
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", self.max_memory.strip(), re.IGNORECASE):
            problems.append(f"max_memory must look like '512MB' or '2GiB', got {self.max_memory!r}")
        if self.threads < 1 or self.max_concurrent < 1:
            problems.append("threads and max_concurrent must be at least 1")
        if self.max_sql_bytes < 16 or self.max_result_bytes < 1024:
            problems.append("max_sql_bytes must be >= 16 and max_result_bytes >= 1024")
        if problems:
            raise ValueError("; ".join(problems))

    def resolve_rows(self, requested: int | None) -> int:
        """The row limit for a request: default when absent, refused when out of range."""
        if requested is None:
            return self.default_rows
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise QueryError(f"limit must be a positive integer, got {requested!r}", kind="bad_query")
        if requested > self.max_rows:
            raise QueryError(f"limit {requested} is above the maximum of {self.max_rows} rows", kind="bad_query")
        return requested


@dataclass(frozen=True, slots=True)
class QueryResult:
    """What a query returned: at most the row limit, and whether more rows existed."""

    table: pa.Table
    truncated: bool
    elapsed_s: float


# ---------------------------------------------------------------------------------------------
# Statement checks
# ---------------------------------------------------------------------------------------------


def _tokens(sql: str) -> list[tuple[str, str]]:
    """(text, kind) of each token per DuckDB's tokenizer; comments dropped."""
    raw = duckdb.tokenize(sql)
    out: list[tuple[str, str]] = []
    for i, (pos, kind) in enumerate(raw):
        end = raw[i + 1][0] if i + 1 < len(raw) else len(sql)
        name = getattr(kind, "name", str(kind))
        if name == "comment":
            continue
        out.append((sql[pos:end].strip(), name))
    return out


def _check_multi(sql: str) -> None:
    """Accept a MULTI statement only when it is a top-level read of a PIVOT (see docstring)."""
    toks = _tokens(sql)
    depth = 0
    first: str | None = None
    has_pivot = False
    for text, kind in toks:
        word = text.lower()
        if kind == "operator":
            if first is None and "(" in text:
                first = "("
            depth += text.count("(") - text.count(")")
            continue
        if kind != "keyword":
            continue
        if first is None:
            first = word
        if word in ("pivot", "unpivot", "pivot_wider", "pivot_longer"):
            has_pivot = True
        if depth == 0 and word in _WRITE_WORDS:
            raise QueryError(
                f"only read-only statements are allowed; found {word.upper()} in a PIVOT statement "
                "(if it is a column alias, quote it)",
                kind="bad_query",
            )
    if not has_pivot or first not in _READ_FIRST_WORDS | {"("}:
        raise QueryError(
            "only a single read-only statement is allowed (SELECT, WITH, VALUES, FROM, "
            "DESCRIBE, SHOW, SUMMARIZE, PIVOT, EXPLAIN)",
            kind="bad_query",
        )


def _explained(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """The statement an EXPLAIN [ANALYZE] [(options)] wraps (ANALYZE executes it)."""
    raw = duckdb.tokenize(sql)
    starts = [pos for pos, kind in raw if getattr(kind, "name", str(kind)) != "comment"]
    idx = 1  # past EXPLAIN
    if idx < len(starts):
        word = sql[starts[idx] : starts[idx + 1] if idx + 1 < len(starts) else len(sql)].strip().lower()
        if word == "analyze":
            idx += 1
    if idx >= len(starts):
        raise QueryError("EXPLAIN needs a statement to explain", kind="bad_query")
    rest = sql[starts[idx] :]
    try:
        con.extract_statements(rest)
        return rest
    except (duckdb.Error, ValueError):
        pass
    if rest.startswith("("):  # EXPLAIN (FORMAT json) SELECT ...: skip the options group
        depth = 0
        for i, ch in enumerate(rest):
            depth += (ch == "(") - (ch == ")")
            if depth == 0:
                return rest[i + 1 :]
    return rest


def check_statement(con: duckdb.DuckDBPyConnection, sql: str, *, _depth: int = 0) -> None:
    """Raise :class:`QueryError` unless ``sql`` is exactly one read-only statement."""
    try:
        statements = con.extract_statements(sql)
        if len(statements) == 1:
            stype = statements[0].type
    except duckdb.Error as exc:
        raise QueryError(_clean_message(str(exc), ()), kind="bad_query") from None
    except ValueError:  # a statement type the Python enum does not know (e.g. UPDATE EXTENSIONS)
        raise QueryError(
            "only read-only statements are allowed; this statement type is not", kind="bad_query"
        ) from None
    if not statements:
        raise QueryError("the query is empty", kind="bad_query")
    if len(statements) > 1:
        raise QueryError(f"only one statement per query is allowed, found {len(statements)}", kind="bad_query")
    if stype in _READ_TYPES:
        return
    if stype == duckdb.StatementType.EXPLAIN and _depth < 4:
        check_statement(con, _explained(con, sql), _depth=_depth + 1)
        return
    if stype == duckdb.StatementType.MULTI:
        _check_multi(sql)
        return
    name = getattr(stype, "name", str(stype))
    raise QueryError(
        f"only read-only statements are allowed (SELECT, WITH, VALUES, FROM, DESCRIBE, "
        f"SHOW, SUMMARIZE, PIVOT, EXPLAIN); this statement is {name}",
        kind="bad_query",
    )


# ---------------------------------------------------------------------------------------------
# Data and connection
# ---------------------------------------------------------------------------------------------


def connect(
    data_dir: Path, limits: QueryLimits, extra_views: Mapping[str, str] | None = None, lake: Lake | None = None
) -> duckdb.DuckDBPyConnection:
    """A fresh, locked-down in-memory connection with the stored tables and extra views.

    ``lake``: read the tables there (every site of a fleet's lake) instead of ``data_dir``.
    """
    try:
        return StoreReader(data_dir, lake=lake).sandbox(
            threads=limits.threads, max_memory=limits.max_memory, extra_views=extra_views
        )
    except ValueError as exc:
        raise QueryError(str(exc), kind="internal") from None
    except duckdb.Error as exc:
        raise QueryError(
            "the query views could not be set up: " + _clean_message(str(exc), (data_dir,)), kind="internal"
        ) from None


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def _server_paths(data_dir: Path) -> list[str]:
    paths = {
        str(data_dir),
        str(data_dir.resolve()),
        str(Path.home()),
        str(Path.cwd()),
        sys.prefix,
        sys.exec_prefix,
        str(Path(duckdb.__file__).parent),
    }
    return sorted((p for p in paths if len(p) > 1), key=len, reverse=True)


def _clean_message(message: str, data_dirs: tuple[Path, ...]) -> str:
    """DuckDB's message without server paths (data dir → ``<data>``, others → ``<server>``)."""
    for d in data_dirs:
        for p in _server_paths(d):
            label = "<data>" if p in (str(d), str(d.resolve())) else "<server>"
            message = message.replace(p, label)
    message = message.strip()
    return message if len(message) <= 2000 else message[:2000] + " …"


class _Interrupter:
    """Interrupts a connection at the deadline unless the query finished first."""

    def __init__(self, con: duckdb.DuckDBPyConnection, timeout_s: float) -> None:
        self._con = con
        self._lock = threading.Lock()
        self._done = False
        self.fired = False
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            with contextlib.suppress(duckdb.Error):
                self._con.interrupt()

    def __enter__(self) -> _Interrupter:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()


def _is_vanished_file(message: str) -> bool:
    return "No such file" in message or "FileNotFound" in message or "does not exist" in message


def run_query(
    data_dir: Path,
    sql: str,
    *,
    limit: int | None = None,
    limits: QueryLimits | None = None,
    extra_views: Mapping[str, str] | None = None,
    lake: Lake | None = None,
) -> QueryResult:
    """Run one read-only statement over the store (or ``lake``); blocking (call it from a worker thread).

    Raises:
        QueryError: refused, failed, too large or stopped at the time limit; the message is safe
            to return to the caller.
    """
    limits = limits or QueryLimits()
    rows = limits.resolve_rows(limit)
    if not sql or not sql.strip():
        raise QueryError("the query is empty", kind="bad_query")
    if len(sql.encode("utf-8", "surrogatepass")) > limits.max_sql_bytes:
        raise QueryError(f"the query is longer than {limits.max_sql_bytes} bytes", kind="bad_query")
    data_dir = Path(data_dir)
    started = time.monotonic()
    for attempt in (1, 2):
        try:
            return _run_once(data_dir, sql, rows, limits, extra_views, started, lake)
        except _VanishedFile:
            # Compaction or retention replaced a file between listing and reading: list again.
            if attempt == 2:
                raise QueryError("the store changed under the query twice; try again", kind="execution") from None
    raise AssertionError("unreachable")


class _VanishedFile(Exception):
    pass


def _run_once(
    data_dir: Path,
    sql: str,
    rows: int,
    limits: QueryLimits,
    extra_views: Mapping[str, str] | None,
    started: float,
    lake: Lake | None = None,
) -> QueryResult:
    remaining = limits.timeout_s - (time.monotonic() - started)
    if remaining <= 0:
        raise QueryError(f"the query was stopped at the time limit of {limits.timeout_s:g} s", kind="timeout")
    con = connect(data_dir, limits, extra_views, lake)
    try:
        check_statement(con, sql)
        with _Interrupter(con, remaining) as timer:
            try:
                return _fetch(con, sql, rows, limits, started)
            except duckdb.InterruptException:
                raise QueryError(
                    f"the query was stopped at the time limit of {limits.timeout_s:g} s", kind="timeout"
                ) from None
            except duckdb.PermissionException:
                raise QueryError(_ACCESS_DENIED, kind="bad_query") from None
            except duckdb.OutOfMemoryException:
                raise QueryError(
                    f"the query needs more than the {limits.max_memory} memory limit", kind="execution"
                ) from None
            except duckdb.Error as exc:
                if timer.fired:
                    raise QueryError(
                        f"the query was stopped at the time limit of {limits.timeout_s:g} s", kind="timeout"
                    ) from None
                message = str(exc)
                if _is_vanished_file(message) and str(data_dir) in message:
                    raise _VanishedFile() from None
                kind = "bad_query" if isinstance(exc, duckdb.ParserException) else "execution"
                raise QueryError(_clean_message(message, (data_dir,)), kind=kind) from None
            except (pa.ArrowException, OSError) as exc:
                message = str(exc)
                if _is_vanished_file(message):
                    raise _VanishedFile() from None
                raise QueryError(_clean_message(message, (data_dir,)), kind="execution") from None
    finally:
        con.close()


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, rows: int, limits: QueryLimits, started: float) -> QueryResult:
    rel = con.sql(sql)
    if rel is None:  # statements without a result cannot pass check_statement; be safe anyway
        return QueryResult(pa.table({}), False, time.monotonic() - started)
    reader = rel.to_arrow_reader(min(rows + 1, 65_536))
    batches: list[pa.RecordBatch] = []
    count = 0
    size = 0
    truncated = False
    try:
        for batch in reader:
            if count + batch.num_rows > rows:
                batch = batch.slice(0, rows - count)
                truncated = True
            batches.append(batch)
            count += batch.num_rows
            size += batch.nbytes
            if size > limits.max_result_bytes:
                raise QueryError(
                    f"the result is larger than {limits.max_result_bytes} bytes; select fewer "
                    "columns or rows, or aggregate",
                    kind="execution",
                )
            if truncated:
                break
    finally:
        reader.close()
    table = pa.Table.from_batches(batches, schema=reader.schema)
    return QueryResult(table, truncated, time.monotonic() - started)
