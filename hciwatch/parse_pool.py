"""Parsing records in worker processes while the main process stores and evaluates.

Replay spends most of its time in the parsers (pure functions of a record and the catalog) and
the rest storing rows and running the detectors, which must stay in order in one process. A
pool of worker processes parses chunks of records ahead of the consumer and hands results back
in input order, so the outcome is byte-for-byte the same as parsing inline; only the wall time
changes. Work per row that the consumer would do on the critical path is done in the workers
where it can be: they count a capture block's lines and cut each record's samples by the
detectors' metric sets (:data:`FeedSets`), so the consumer appends instead of sorting rows.
Workers are not forked from the parent (it holds DuckDB and Arrow threads, which a
``fork`` would copy mid-flight): a replay's workers are forked from a ``forkserver`` that has
imported the parsers once (:func:`worker_context`), the service's one offload worker is spawned.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import multiprocessing.forkserver
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from collector.capture import (
    READ_FAULTS,
    CaptureItem,
    CaptureStream,
    iter_line_parts,
    joined,
    order_error,
    parse_line,
    read_error,
    split_lines,
)
from collector.catalog import Catalog, UserMapping
from collector.errors import CaptureError, ParseError
from collector.registry import get_parser
from collector.schema import (
    EMPTY_IP_OBSERVATIONS,
    EMPTY_SAMPLES,
    IP_OBSERVATIONS_SCHEMA,
    SAMPLES_SCHEMA,
    RawRecord,
)
from hciwatch import shm_handoff

log = logging.getLogger(__name__)

T = TypeVar("T")

FeedSets = tuple[frozenset[str], ...]
"""Metric sets whose samples the consumer wants apart, in this order (the detectors':
``analytics.engine.Engine.feed_sets``). A pool given them hands each set's rows of a record's
samples over too, cut in the worker (:func:`_split`), so the consumer does not sort every row
again to keep the few the detectors read (~4 % of a demo capture's samples)."""


@dataclass(frozen=True, slots=True)
class ChunkSplit:
    """A chunk's samples cut by the metric sets ``sets``: per set, the rows in it (as one table)
    and, per record of the chunk, how many of those come before it (one more entry: all).

    Shared by the chunk's records (a record names it and its index, :attr:`ParseOutcome.split`),
    so handing a record on costs no per-record slice or tuple (:class:`SplitRuns`).
    """

    sets: FeedSets
    tables: list[pa.Table]
    starts: list[list[int]]

    def rows(self, first: int, stop: int) -> list[pa.Table | None]:
        """Per set, the rows of records ``first`` … ``stop - 1`` (None: none)."""
        out: list[pa.Table | None] = []
        for table, at in zip(self.tables, self.starts, strict=True):
            lo, hi = at[first], at[stop]
            out.append(table.slice(lo, hi - lo) if hi > lo else None)
        return out


@dataclass
class ParseOutcome:
    """A parser's verdict on one record, in a form that crosses a process boundary.

    ``rejected`` is ``(reason, why)`` when the whole record was refused; ``errors`` are the
    messages of skipped parts of an otherwise good payload.
    """

    samples: pa.Table = field(default_factory=lambda: EMPTY_SAMPLES)
    ip_observations: pa.Table = field(default_factory=lambda: EMPTY_IP_OBSERVATIONS)
    errors: list[str] = field(default_factory=list)
    rejected: tuple[str, str] | None = None
    # set by a pool: (the chunk's whole table, this record's first row in it) per table, so that a
    # consumer can hand consecutive records on as one slice (:class:`RowRuns`); never pickled
    samples_origin: tuple[pa.Table, int] | None = None
    ip_observations_origin: tuple[pa.Table, int] | None = None
    # set by a pool given feed sets: the chunk's split and this record's index in it
    split: tuple[ChunkSplit, int] | None = None

    @property
    def sample_rows(self) -> int:
        """``samples.num_rows`` (a pooled outcome knows it without cutting its slice)."""
        return int(self.samples.num_rows)

    @property
    def ip_observation_rows(self) -> int:
        """``ip_observations.num_rows``, likewise."""
        return int(self.ip_observations.num_rows)


class _PooledOutcome(ParseOutcome):
    """A record's outcome as a pool hands it back: its rows are cut from the chunk's tables only
    when someone reads ``samples`` or ``ip_observations``.

    A replay never does (it hands on the chunk's rows by origin, :class:`RowRuns`), and the two
    ``Table.slice`` calls per record were most of the consumer's cost of a pool's results
    (~10 µs a record, 8,208 records for the 8 h capture).
    """

    def __init__(
        self,
        samples: tuple[pa.Table, int, int],
        ip_observations: tuple[pa.Table, int, int],
        errors: list[str],
        rejected: tuple[str, str] | None,
        split: tuple[ChunkSplit, int] | None = None,
    ) -> None:
        # (the chunk's table, first row, rows): not through ParseOutcome.__init__ (no slices)
        self.split = split
        self._s = samples
        self._i = ip_observations
        self._samples: pa.Table | None = None
        self._ips: pa.Table | None = None
        self.errors = errors
        self.rejected = rejected
        self.samples_origin = samples[:2] if samples[2] else None
        self.ip_observations_origin = ip_observations[:2] if ip_observations[2] else None

    @property
    def samples(self) -> pa.Table:
        if self._samples is None:
            table, at, n = self._s
            self._samples = table.slice(at, n) if n else EMPTY_SAMPLES
        return self._samples

    @samples.setter
    def samples(self, value: pa.Table) -> None:
        self._samples = value
        self._s = (value, 0, value.num_rows)
        self.samples_origin = None  # the rows are no longer the chunk's: consumers take the table
        self.split = None  # nor are its split rows those of the new table

    @property
    def ip_observations(self) -> pa.Table:
        if self._ips is None:
            table, at, n = self._i
            self._ips = table.slice(at, n) if n else EMPTY_IP_OBSERVATIONS
        return self._ips

    @ip_observations.setter
    def ip_observations(self, value: pa.Table) -> None:
        self._ips = value
        self._i = (value, 0, value.num_rows)
        self.ip_observations_origin = None

    @property
    def sample_rows(self) -> int:
        return self._s[2] if self._samples is None else int(self._samples.num_rows)

    @property
    def ip_observation_rows(self) -> int:
        return self._i[2] if self._ips is None else int(self._ips.num_rows)


def parse_one(rec: RawRecord, catalog: Catalog) -> ParseOutcome:
    """Parse one record; never raises (a parser bug is reported as a rejection, not a crash)."""
    try:
        parser = get_parser(rec.kind)
    except KeyError as exc:
        return ParseOutcome(rejected=("unknown kind", str(exc.args[0])))
    try:
        result = parser(rec, catalog)
    except ParseError as exc:
        return ParseOutcome(rejected=("parse error", f"{rec.kind}: {exc}"))
    except Exception as exc:  # a parser bug must not stop the flow; it is counted and shown
        log.exception("parser for %s crashed on %s", rec.kind, rec.target)
        return ParseOutcome(rejected=("parser crash", f"{rec.kind}: internal error {exc!r}"))
    return ParseOutcome(result.samples, result.ip_observations, [str(e) for e in result.errors])


# what a pool yields per item, and one chunk in flight
Parsed = tuple[RawRecord | None, T, ParseOutcome | None]
_Chunk = tuple[list[tuple[RawRecord | None, T]], "Future[_ChunkResult]"]

_worker_catalog: Catalog | None = None
_worker_sets: FeedSets = ()

PRELOAD = (
    "__main__",
    "hciwatch.parse_pool",
    "collector.sources.prometheus.parse",
    "collector.sources.haproxy.parse",
    "collector.sources.k8s_inventory.parse",
    "collector.sources.neighbors.parse",
)
"""What the forkserver imports before it forks a worker: every module the parse of a demo
capture needs (numpy, pyarrow and pyarrow.compute come with them). A spawned worker spent ~0.3
CPU-s importing them (plus its interpreter's teardown at exit, which a forked child skips with
``os._exit``); forked from the forkserver, each worker starts with them at no cost.
``"__main__"`` is multiprocessing's own default entry. On Python 3.11 it imports nothing: the
parent hands the forkserver its script as ``init_main_from_path``, a key ``forkserver.main`` does
not read (nor does it read ``sys_path``: the forkserver imports from its own ``sys.path``, which
``PYTHONPATH`` sets). Each forked worker still runs the parent's script as ``__mp_main__``
(multiprocessing's ``prepare``); for the ``hciwatch`` console script that imports ``hciwatch.cli``
over the preloaded parsers, ~0.03 CPU-s (its commands import what they need when they run)."""


def worker_context() -> BaseContext:
    """The start method of replay's parse workers: a ``forkserver`` that preloads :data:`PRELOAD`.

    The forkserver is started from a clean interpreter (not a fork of this one, which holds DuckDB
    and Arrow threads mid-flight); after its imports it runs only the threads of OpenBLAS and the
    allocator, which both re-initialise in a forked child (Python 3.12 warns about forking with
    threads: check this when moving past 3.11). It is started once per process, on the first pool,
    and stays until this process exits (the service does not use it: its one offload worker is
    spawned). Environment variables a module reads at import (``HCIWATCH_PARSE_REUSE_BYTES``) keep
    the value they had when the forkserver started. Where there is no forkserver (not POSIX), or
    it cannot start a worker (:meth:`ParsePool._start`), ``spawn``.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


PRESTART_MIN_FILE_BYTES = 256 << 10
"""A capture file this big on disk is worth starting the forkserver for before the replay sets
up (a zstd capture of :data:`START_BYTES` of lines is ~200 kB; a smaller file is parsed inline)."""


def prestart_workers(workers: int, capture: Path | None) -> None:
    """Start the forkserver now, when a replay of ``capture`` will fork workers from it.

    Why: its imports (~0.3 CPU-s) then run on the other core while this process builds the store
    and the detectors, instead of later, while it waits for its first worker (measured: 0.22 s of
    a 3.0 s replay of the 8 h demo capture spent waiting for the forkserver). Starting it does
    not wait for it; a forkserver that cannot start is found (and replaced) by
    :meth:`ParsePool._start` as before.
    """
    if workers <= 0 or capture is None:
        return
    try:
        if capture.stat().st_size < PRESTART_MIN_FILE_BYTES:
            return
        if worker_context().get_start_method() == "forkserver":
            multiprocessing.forkserver.ensure_running()
    except OSError as exc:  # the pool tries again, and falls back to spawn, when it starts
        log.debug("forkserver not started ahead of the replay: %r", exc)


def _init_worker(mappings: list[UserMapping], environ: dict[str, str] | None = None, sets: FeedSets = ()) -> None:
    """A worker's catalog and feed sets; and the parent's environment as it is now, when given.

    A forked worker inherits the forkserver's environment, which is the parent's at the time the
    forkserver started; the parsers read switches from it at call time (``HCIWATCH_PARSE_REUSE``),
    so the parent's current one is put in place, as a spawned worker would have it.
    """
    global _worker_catalog, _worker_sets
    _worker_sets = sets
    if environ is not None and environ != os.environ:
        os.environ.clear()
        os.environ.update(environ)
    _worker_catalog = Catalog(mappings)


@dataclass
class _ChunkResult:
    """One chunk's outcomes as two Arrow IPC streams plus per-record row counts.

    Pickling Arrow tables one by one costs about as much CPU as parsing them (measured: 2.3 s
    to pickle and 1.3 s to unpickle what took 2.6 s to parse); one IPC stream per table and
    chunk costs a twentieth of that. With ``shm`` set the streams are in a shared-memory file
    (:mod:`hciwatch.shm_handoff`) and ``samples``/``ip_observations`` are empty.
    """

    samples: bytes
    ip_observations: bytes
    rows: list[tuple[int, int]]  # per record: samples, ip observations
    errors: list[list[str]]
    rejected: list[tuple[str, str] | None]
    absent: list[bool]  # no record was given (a bad capture line)
    shm: tuple[str, list[int]] | None = None  # the file and its streams' lengths (two, then the split's)
    split: list[bytes] = field(default_factory=list)  # per feed set, its rows of samples (without shm)
    split_rows: list[list[int]] = field(default_factory=list)  # per feed set: per record (not absent), rows


def _combined(tables: list[pa.Table]) -> pa.Table | None:
    """The chunk's tables as one record batch: one set of dictionaries instead of one per record,
    and one slice per record on the reading side instead of one IPC batch to decode."""
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return pa.concat_tables(parts).unify_dictionaries().combine_chunks()


def _to_ipc(table: pa.Table | None, schema: pa.Schema) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        if table is not None:
            writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _parse_chunk(records: list[RawRecord | None], shm_dir: str | None = None) -> _ChunkResult:
    catalog = _worker_catalog
    assert catalog is not None, "worker not initialised"
    return _chunk_result(records, catalog, shm_dir, _worker_sets)


def _split(samples: pa.Table | None, rows: list[int], sets: FeedSets) -> tuple[list[pa.Table | None], list[list[int]]]:
    """Per set: the rows of ``samples`` whose metric is in it (None: none), and how many of
    each record's ``rows`` those are. The same rows, in the same order, as the engine's own
    filter (``Engine.feed``) keeps; a null metric is in no set."""
    tables: list[pa.Table | None] = []
    counts: list[list[int]] = []
    if samples is None or not samples.num_rows:
        return [None] * len(sets), [[0] * len(rows) for _ in sets]
    ends = np.cumsum(rows)
    starts = ends - np.asarray(rows, np.int64)
    for mask in _set_masks(samples.column("metric"), sets):
        if mask is None:
            tables.append(None)
            counts.append([0] * len(rows))
            continue
        kept = np.concatenate(([0], np.cumsum(mask)))  # rows kept before each row
        counts.append((kept[ends] - kept[starts]).tolist())
        tables.append(samples.filter(pa.array(mask)) if kept[-1] else None)
    return tables, counts


def _set_masks(metric: pa.ChunkedArray[Any], sets: FeedSets) -> list[npt.NDArray[np.bool_] | None]:
    """Per set, "metric in set" for every row (None: no row is). A chunk's metric column is one
    dictionary array: each set is tested against its ~150 entries, not its ~30,000 rows
    (a quarter of the cost of ``pc.is_in`` over the column)."""
    arr = metric.chunk(0) if metric.num_chunks == 1 else None
    if not isinstance(arr, pa.DictionaryArray) or arr.null_count:  # any other column: row by row
        value_type = metric.type.value_type if pa.types.is_dictionary(metric.type) else metric.type
        out: list[npt.NDArray[np.bool_] | None] = []
        for values in sets:
            mask = pc.is_in(metric, value_set=pa.array(sorted(values), value_type))
            m = np.asarray(mask.to_numpy(), bool)
            out.append(m if m.any() else None)
        return out
    idx: npt.NDArray[Any] | None = None
    masks: list[npt.NDArray[np.bool_] | None] = []
    for values in sets:
        entry = pc.is_in(arr.dictionary, value_set=pa.array(sorted(values), arr.dictionary.type))
        hit = np.asarray(entry.to_numpy(zero_copy_only=False), bool)
        if not hit.any():
            masks.append(None)
            continue
        if idx is None:
            idx = arr.indices.to_numpy()
        masks.append(hit[idx])
    return masks


def _chunk_result(
    records: Sequence[RawRecord | None], catalog: Catalog, shm_dir: str | None, sets: FeedSets = ()
) -> _ChunkResult:
    outs = [None if r is None else parse_one(r, catalog) for r in records]
    done = [o or ParseOutcome() for o in outs]
    samples = _combined([o.samples for o in done])
    ips = _combined([o.ip_observations for o in done])
    split, split_rows = _split(samples, [o.samples.num_rows for o in outs if o is not None], sets)
    streams = [(samples, SAMPLES_SCHEMA), (ips, IP_OBSERVATIONS_SCHEMA), *((t, SAMPLES_SCHEMA) for t in split)]
    shm = None
    if shm_dir is not None:
        shm = shm_handoff.write_streams(Path(shm_dir), streams)
    return _ChunkResult(
        samples=b"" if shm else _to_ipc(samples, SAMPLES_SCHEMA),
        ip_observations=b"" if shm else _to_ipc(ips, IP_OBSERVATIONS_SCHEMA),
        rows=[(o.samples.num_rows, o.ip_observations.num_rows) for o in done],
        errors=[o.errors for o in done],
        rejected=[o.rejected for o in done],
        absent=[o is None for o in outs],
        shm=shm,
        split=[] if shm else [_to_ipc(t, schema) for t, schema in streams[2:]],
        split_rows=split_rows,
    )


# one non-blank capture line: its number, and its record's (ts, kind, target, host) or its error's
# (reason, target); the record itself stays in the worker (the consumer needs no body)
_Line = tuple[int, tuple[datetime, str, str, str] | None, tuple[str, str] | None]


def _block_lines(
    file: str, data: bytes, first_line: int, kinds: frozenset[str] | None
) -> tuple[list[_Line], list[RawRecord], int]:
    """Decode and check a block's lines (numbered from ``first_line``) as
    :func:`collector.capture.read_capture` does, all but the order check (it needs every line
    before; the consumer does it); and how many lines the block holds, blank ones included."""
    lines: list[_Line] = []
    records: list[RawRecord] = []
    raws = split_lines(data)
    for i, raw in enumerate(raws):
        item = parse_line(raw, file=file, line=first_line + i, kinds=kinds)
        if item is None:
            continue
        if item.record is None:
            assert item.error is not None
            lines.append((item.line, None, (item.error.reason, item.error.target)))
        else:
            r = item.record
            lines.append((item.line, (r.ts, r.kind, r.target, r.host), None))
            records.append(r)
    return lines, records, len(raws)


def _parse_block(
    file: str,
    data: bytes,
    kinds: frozenset[str] | None,
    shm_dir: str | None,
    block_file: tuple[str, int] | None = None,
) -> tuple[list[_Line], int, _ChunkResult]:
    """In a worker: a block of capture lines read and parsed (the consumer decodes no JSON).

    Its lines are numbered from 1 and counted here: the consumer, which takes the blocks in
    order, adds the lines of the blocks before (it never scans a block for newlines itself).
    With ``block_file`` the lines are at the start of that shared-memory file, this long
    (:class:`shm_handoff.BlockFiles`), not in ``data``."""
    catalog = _worker_catalog
    assert catalog is not None, "worker not initialised"
    if block_file is not None:
        data = shm_handoff.take_block(*block_file)
    lines, records, n = _block_lines(file, data, 1, kinds)
    return lines, n, _chunk_result(records, catalog, shm_dir, _worker_sets)


def _outcomes(res: _ChunkResult, sets: FeedSets = ()) -> list[ParseOutcome | None]:
    """The chunk's outcomes, record by record; with the rows of each of ``sets`` (the feed sets
    the workers were given) when the chunk carries them."""
    if res.shm is not None:
        samples, ips, *split = shm_handoff.read_streams(*res.shm)
    else:
        samples = pa.ipc.open_stream(res.samples).read_all()
        ips = pa.ipc.open_stream(res.ip_observations).read_all()
        split = [pa.ipc.open_stream(b).read_all() for b in res.split]
    out: list[ParseOutcome | None] = []
    s_at = i_at = 0
    if not sets or len(split) != len(sets):  # no split asked for (or not this chunk's): rows only
        for (ns, ni), errors, rejected, absent in zip(res.rows, res.errors, res.rejected, res.absent, strict=True):
            if absent:
                out.append(None)
                continue
            out.append(_PooledOutcome((samples, s_at, ns), (ips, i_at, ni), errors, rejected))
            s_at += ns
            i_at += ni
        return out
    chunk = ChunkSplit(sets, split, [[0, *itertools.accumulate(rows)] for rows in res.split_rows])
    k = 0
    for (ns, ni), errors, rejected, absent in zip(res.rows, res.errors, res.rejected, res.absent, strict=True):
        if absent:
            out.append(None)
            continue
        out.append(_PooledOutcome((samples, s_at, ns), (ips, i_at, ni), errors, rejected, (chunk, k)))
        k += 1
        s_at += ns
        i_at += ni
    return out


class RowRuns:
    """Consecutive records' tables of one kind, gathered as few slices as possible.

    A pool hands back each chunk of records as one table; a record's rows are a slice of it. Runs
    of records from the same chunk are handed on as one slice again (no copy), so the consumer
    pays its per-table costs (``nbytes`` is ~50 µs a table) per chunk, not per record.
    """

    def __init__(self) -> None:
        self._pieces: list[pa.Table] = []
        self._parent: pa.Table | None = None
        self._start = self._stop = 0
        self.rows = 0

    def add(self, table: pa.Table, origin: tuple[pa.Table, int] | None = None) -> None:
        """Append ``table`` (rows ``origin[1]``… of ``origin[0]`` when a pool says so)."""
        if origin is not None:
            self.add_rows(origin, table.num_rows)
            return
        self.rows += table.num_rows
        self._close_run()
        self._pieces.append(table)

    def add_rows(self, origin: tuple[pa.Table, int], rows: int) -> None:
        """Append rows ``origin[1]``… (``rows`` of them) of ``origin[0]``, a pool's chunk table."""
        self.rows += rows
        if origin[0] is self._parent and origin[1] == self._stop:
            self._stop += rows
            return
        self._close_run()
        self._parent, self._start, self._stop = origin[0], origin[1], origin[1] + rows

    def _close_run(self) -> None:
        if self._parent is not None:
            self._pieces.append(self._parent.slice(self._start, self._stop - self._start))
            self._parent = None

    def take(self) -> pa.Table | None:
        """Everything added since the last call, in order, as one table (None if nothing)."""
        self._close_run()
        pieces, self._pieces, self.rows = self._pieces, [], 0
        if not pieces:
            return None
        return pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)


class SplitRuns:
    """The split rows (:attr:`ParseOutcome.split`) of the records a :class:`RowRuns` of samples
    gathers, as runs of consecutive records of one chunk (one slice per set and run).

    :meth:`take` gives them only when every record with samples since the last call came with
    them, cut by the same sets: a record parsed inline has none, and the consumer then sorts
    the rows itself, as without a split.
    """

    def __init__(self) -> None:
        self.sets: FeedSets | None = None
        self._pieces: list[list[pa.Table]] = []  # per set
        self._chunk: ChunkSplit | None = None
        self._first = self._stop = 0  # the open run: records first … stop - 1 of _chunk
        self._whole = True

    def add(self, split: tuple[ChunkSplit, int] | None) -> None:
        """Append a record's split (None: a record with samples but no split)."""
        if split is None:
            self._whole = False
            return
        chunk, k = split
        if chunk is self._chunk and k == self._stop:
            self._stop += 1
            return
        if self.sets is None or chunk.sets != self.sets:
            if self.sets is not None:
                self._whole = False  # other sets than this batch's first record's: not its split
                return
            self.sets = chunk.sets
            self._pieces = [[] for _ in chunk.sets]
        self._close_run()
        self._chunk, self._first, self._stop = chunk, k, k + 1

    def _close_run(self) -> None:
        if self._chunk is not None:
            for pieces, part in zip(self._pieces, self._chunk.rows(self._first, self._stop), strict=True):
                if part is not None:
                    pieces.append(part)
            self._chunk = None

    def take(self) -> tuple[FeedSets, list[pa.Table | None]] | None:
        """Per set, everything added since the last call as one table (None: no rows); None
        when some record came without its split."""
        self._close_run()
        tables = [None if not p else p[0] if len(p) == 1 else pa.concat_tables(p) for p in self._pieces]
        out = (self.sets, tables) if self._whole and self.sets is not None else None
        # the next batch takes its first record's sets (an engine rebuilt with other sets, or
        # another pool, gets its splits used again instead of the consumer's sort for good)
        self.sets, self._pieces, self._whole = None, [], True
        return out


BLOCK_BYTES = 1 << 20
"""Capture lines per worker task (~90 demo records): few enough tasks that the per-task costs
(a pickle, an IPC stream, a mapping) stay small, small enough to keep both workers busy."""
START_BYTES = 4 << 20
"""A capture with less than this of lines is read and parsed inline: starting the workers costs
more than they would save."""


def default_workers() -> int:
    """Worker processes worth starting here: none on one core (the main process parses).

    ``HCIWATCH_PARSE_WORKERS`` overrides it (0 parses inline).
    """
    env = os.environ.get("HCIWATCH_PARSE_WORKERS", "").strip()
    if env.isdigit():
        return int(env)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 2 if cores >= 2 else 0


class ParsePool:
    """Order-preserving parse-ahead over an iterable of ``(record, payload)`` pairs.

    ``payload`` travels alongside untouched (the caller's location string, say); a ``None``
    record passes through with a ``None`` outcome (a capture line that held no record). The
    first ``start_after`` records are parsed inline and the workers start only after them (the
    first pool of a process starts the forkserver, ~0.3 CPU-s of imports), so small inputs and
    one-core machines (``workers == 0``) pay nothing.
    Chunks keep the per-task overhead of pickling small; at most ``ahead`` chunks are in flight,
    which bounds memory however long the input is.
    """

    def __init__(
        self,
        mappings: Iterable[UserMapping],
        *,
        workers: int,
        chunk: int = 64,
        ahead: int = 6,
        start_after: int = 500,
        block_bytes: int = BLOCK_BYTES,
        start_bytes: int = START_BYTES,
        feed_sets: FeedSets = (),
    ) -> None:
        """``feed_sets``: the workers also hand over each set's rows of every record's samples
        (:attr:`ParseOutcome.split`; records parsed inline carry none)."""
        self._mappings = list(mappings)
        self._feed_sets = feed_sets
        self.workers = workers
        self.start_after = start_after
        self.chunk = chunk
        self.block_bytes = block_bytes
        self.start_bytes = start_bytes
        self.ahead = max(ahead, workers * 2)
        self._inline = Catalog(self._mappings)
        self._pool: ProcessPoolExecutor | None = None
        self._shm: Path | None = None
        self._complete = True  # every input given was read to its end (no task can be running)

    @property
    def feed_sets(self) -> FeedSets:
        """The sets the workers cut by, fixed for the pool's life: the workers get them when
        they start, and a chunk's split is labelled with them when it is taken."""
        return self._feed_sets

    def __enter__(self) -> ParsePool:
        return self

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is not None:  # a second input through the same pool: the same workers
            return self._pool
        self._shm = shm_handoff.open_dir()
        ctx = worker_context()
        self._pool = self._executor(ctx)
        if ctx.get_start_method() != "spawn":
            try:  # a forkserver that died (a preloaded module that raised) fails here, not mid-replay
                self._pool.submit(_started).result(timeout=START_TIMEOUT_S)
            except (OSError, EOFError, BrokenProcessPool, FuturesTimeout) as exc:
                log.warning("parse workers could not start from the forkserver (%r); spawning them instead", exc)
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._executor(multiprocessing.get_context("spawn"))
        return self._pool

    def _executor(self, ctx: BaseContext) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(self._mappings, dict(os.environ), self.feed_sets),
        )

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self._pool is not None:
            # after a whole input every task is done: the workers exit on their own while the
            # caller goes on (a spawned one's interpreter teardown takes ~0.1-0.4 s; a forked one
            # leaves with os._exit); after an error or an input given up
            # part way (a break), wait for the ones still parsing before their hand-off dir goes
            self._pool.shutdown(wait=exc_type is not None or not self._complete, cancel_futures=True)
            self._pool = None
        shm_handoff.close_dir(self._shm)
        self._shm = None

    def parse(self, items: Iterable[tuple[RawRecord | None, T]]) -> Iterator[Parsed[T]]:
        """Yield every item with its outcome, in input order."""
        self._complete = False
        it = iter(items)
        inline = self.start_after if self.workers > 0 else None
        for n, (rec, payload) in enumerate(it, 1):
            yield rec, payload, None if rec is None else parse_one(rec, self._inline)
            if inline is not None and n >= inline:
                break
        else:
            self._complete = True
            return
        pool = self._start()
        shm = str(self._shm) if self._shm is not None else None
        pending: deque[_Chunk[T]] = deque()
        batch: list[tuple[RawRecord | None, T]] = []
        for item in it:
            batch.append(item)
            if len(batch) >= self.chunk:
                pending.append((batch, pool.submit(_parse_chunk, [r for r, _ in batch], shm)))
                batch = []
                while len(pending) >= self.ahead:
                    yield from _drain_one(pending, self.feed_sets)
        if batch:
            pending.append((batch, pool.submit(_parse_chunk, [r for r, _ in batch], shm)))
        while pending:
            yield from _drain_one(pending, self.feed_sets)
        self._complete = True

    def parse_capture(self, stream: CaptureStream) -> Iterator[Parsed[str | CaptureError]]:
        """What ``parse(located read_capture items)`` yields, but the workers read the lines.

        The main process only decompresses the file and cuts it into blocks of whole lines; a
        worker splits, decodes and checks them (:func:`collector.capture.parse_line`) and parses
        the records, so the consumer never decodes the ~11 kB of JSON per record nor pickles the
        record back out. The order check needs every line before, so it is done here, on the
        results, in input order. A record's ``where`` is ``file:line``; the records a worker
        parsed carry ``ts``, ``kind``, ``target`` and ``host`` only — no body, labels or topic
        (the consumer has the rows; :meth:`Pipeline.apply` reads no more). A file of less than
        ``start_bytes`` is read and parsed inline (no worker is started for it), a larger one goes
        to the workers from its first block on: no warm-up parsing in this process.
        """
        self._complete = False
        name = str(stream.path)
        blocks = iter_line_parts(stream.path, self.block_bytes)
        order = _Order(name, self.feed_sets)
        head: list[list[bytes | memoryview]] = []
        size = 0
        for block in _until_fault(blocks, order):
            head.append(block)
            size += sum(map(len, block))
            if size >= self.start_bytes:
                break
        if self.workers == 0 or size < self.start_bytes:
            for block in itertools.chain(head, _until_fault(blocks, order)):
                yield from order.inline(joined(block), stream.kinds, self._inline)
            yield from order.fault()
            self._complete = True
            return
        pool = self._start()
        shm = str(self._shm) if self._shm is not None else None
        files = shm_handoff.BlockFiles(self._shm) if self._shm is not None else None
        pending: deque[tuple[Future[tuple[list[_Line], int, _ChunkResult]], str | None]] = deque()
        for block in itertools.chain(head, _until_fault(blocks, order)):
            # through a shared-memory file when it can be written, else the joined bytes by pipe
            file = files.write(block) if files is not None else None
            data = b"" if file is not None else joined(block)
            pending.append((pool.submit(_parse_block, name, data, stream.kinds, shm, file), file and file[0]))
            while len(pending) >= self.ahead:
                yield from _drained(order, pending.popleft(), files)
        while pending:
            yield from _drained(order, pending.popleft(), files)
        yield from order.fault()
        self._complete = True


def _started() -> None:
    """A no-op task: its result says a worker runs (see :meth:`ParsePool._start`)."""


START_TIMEOUT_S = 120.0  # a first worker that has not run by then will not (a forkserver stuck at start)


def _drained(
    order: _Order,
    entry: tuple[Future[tuple[list[_Line], int, _ChunkResult]], str | None],
    files: shm_handoff.BlockFiles | None,
) -> Iterator[Parsed[str | CaptureError]]:
    """:meth:`_Order.drain` of a task; then its block's file (read by then) is free again."""
    fut, file = entry
    yield from order.drain(fut)
    if file is not None and files is not None:
        files.release(file)


def _until_fault(blocks: Iterator[T], order: _Order) -> Iterator[T]:
    """``blocks`` up to a read fault, which ``order`` keeps to report after the lines before it."""
    try:
        for block in blocks:  # noqa: UP028 - ``yield from`` would close ``blocks`` when a caller stops early
            yield block
    except READ_FAULTS as exc:
        order.read_fault = exc


class _Order:
    """The consumer's side of :meth:`ParsePool.parse_capture`: lines in order, the order check
    (a record earlier than the previous good one is refused, its rows dropped) and ``where``."""

    def __init__(self, file: str, sets: FeedSets = ()) -> None:
        self.file = file
        self.sets = sets
        self.last_ts: datetime | None = None
        self.lines_read = 0  # lines of the blocks taken so far
        self.read_fault: BaseException | None = None  # the file could not be read on after them

    def fault(self) -> Iterator[Parsed[str | CaptureError]]:
        """The item that ends a file that could not be read on (after every block was taken:
        the lines read before the fault are counted by then)."""
        if self.read_fault is not None:
            item: CaptureItem = read_error(self.read_fault, file=self.file, lines_read=self.lines_read)
            assert item.error is not None
            yield None, item.error, None

    def drain(self, entry: Future[tuple[list[_Line], int, _ChunkResult]]) -> Iterator[Parsed[str | CaptureError]]:
        """A worker's block: its lines with the outcomes it parsed (a late record's are dropped)."""
        lines, n, res = entry.result()
        base, self.lines_read = self.lines_read, self.lines_read + n
        outcomes = iter(_outcomes(res, self.sets))
        for line, meta, err in self._checked(lines, base):
            outcome = next(outcomes) if meta is not None else None  # each record was parsed
            if err is not None:  # a bad line, or a record out of order (its rows are dropped)
                yield None, err, None
                continue
            assert meta is not None and outcome is not None
            ts, kind, target, host = meta
            yield RawRecord.normalised(ts, kind, target, host), f"{self.file}:{line}", outcome

    def inline(
        self, data: bytes, kinds: frozenset[str] | None, catalog: Catalog
    ) -> Iterator[Parsed[str | CaptureError]]:
        """A block read and parsed here (a late record is not parsed, as line by line)."""
        lines, records, n = _block_lines(self.file, data, self.lines_read + 1, kinds)
        self.lines_read += n
        recs = iter(records)
        for line, meta, err in self._checked(lines):
            rec = next(recs) if meta is not None else None
            if err is not None:
                yield None, err, None
                continue
            assert rec is not None
            yield rec, f"{self.file}:{line}", parse_one(rec, catalog)

    def _checked(
        self, lines: list[_Line], base: int = 0
    ) -> Iterator[tuple[int, tuple[datetime, str, str, str] | None, CaptureError | None]]:
        """Each line (its number in the block plus ``base``) with its error, its own or "out of
        order", in input order (the order check)."""
        file = self.file
        for at, meta, err in lines:
            line = at + base
            if meta is None:
                assert err is not None
                yield line, None, CaptureError(err[0], file=file, line=line, target=err[1])
                continue
            late = order_error(meta[0], meta[2], self.last_ts, file=file, line=line)
            if late is None:
                self.last_ts = meta[0]
            yield line, meta, late


def _drain_one(pending: deque[_Chunk[T]], sets: FeedSets = ()) -> Iterator[Parsed[T]]:
    batch, fut = pending.popleft()
    for (rec, payload), outcome in zip(batch, _outcomes(fut.result(), sets), strict=True):
        yield rec, payload, outcome


OFFLOAD_MIN_BYTES = 4 << 20  # a scrape this big parses for ~0.1 s or more: worth a process hop


def _parse_big(rec: RawRecord) -> _ChunkResult:
    """In the offload worker: parse, then give Arrow's freed pages back to the system (a 35 MB
    scrape's intermediates would otherwise stay in the worker's RSS between scrapes)."""
    try:
        return _parse_chunk([rec])
    finally:
        pa.default_memory_pool().release_unused()


class OffloadParser:
    """The service's parser: big payloads in one worker process, the rest inline.

    Parsing a 35 MB scrape in a thread of the service held the interpreter lock in long
    vectorised steps, so the event loop (``/healthz``, the API, MQTT acks) waited behind it: p99
    289 ms under a 1M-series target. One spawned worker takes those payloads instead; the
    result comes back as Arrow IPC (cheap to decode) and the calling thread waits without the
    lock. One worker, not several, so a target's parse-reuse state stays in one process and
    records stay in order. A dead worker (its memory, a kill) costs a log line and an inline
    parse of that record, and the next big record starts a new one.
    """

    def __init__(self, mappings: Iterable[UserMapping], *, min_bytes: int = OFFLOAD_MIN_BYTES) -> None:
        self._mappings = list(mappings)
        self.min_bytes = min_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self.offloaded = 0
        self.worker_failures = 0

    def parse(self, rec: RawRecord, catalog: Catalog) -> ParseOutcome:
        """Parse ``rec`` (the same outcome as :func:`parse_one`); blocks the calling thread only."""
        if len(rec.body) < self.min_bytes or self._closed:
            if self._closed:  # stopping: an abandoned batch must not parse on in the background
                raise RuntimeError("parser closed (the service is stopping; the record stays in the log)")
            return parse_one(rec, catalog)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(self._mappings,)
            )
        try:
            res = self._pool.submit(_parse_big, rec).result()
        except Exception as exc:  # BrokenProcessPool, a pickling or pipe error: parse it here instead
            if self._closed:
                raise RuntimeError("parser closed (the service is stopping; the record stays in the log)") from exc
            self.worker_failures += 1
            log.warning(
                "parse worker failed on a %d-byte %s record (%r); parsing it inline", len(rec.body), rec.kind, exc
            )
            self._discard()
            return parse_one(rec, catalog)
        self.offloaded += 1
        out = _outcomes(res)[0]
        return out if out is not None else ParseOutcome()

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker (without waiting for a parse in flight: its record is in the log)."""
        self._closed = True
        self._discard()
