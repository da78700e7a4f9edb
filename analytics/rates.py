"""Per-step values of any canonical metric, whatever form the agent delivered it in.

One SQL builder serves every detector (and the analyst view ``counter_rates``):

* raw cumulative counters (``*_total``) become per-second rates from consecutive samples of the
  same series (source, host, metric, labels). A drop in value is a counter reset (agent or host
  restart): that interval is dropped, never turned into a negative or a huge rate. An interval
  longer than ``max_rate_gap`` (scrape gap) is dropped too: no interpolation across gaps.
* formatted rates (``*_per_sec``, Telegraf's default) and gauges are taken as they are.

Rows are grouped onto a fixed step grid: the interval ending at ``t`` belongs to the step ending
at ``ceil(t / step) * step``. Each call reads only rows newer than the previous call; the last
sample of every series is remembered (:class:`StepAccumulator`), and per-series metadata (host,
metric, label-derived columns) is fetched once per new series (:class:`SeriesRegistry`), so the
per-row work in DuckDB is a hash and a filter.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from collector.arrow_copy import owned
from collector.catalog import DEFAULT_CATALOG

_CANONICAL = DEFAULT_CATALOG.all_canonical()


def sql_str(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def is_counter(metric: str) -> bool:
    """Whether a canonical metric is a raw cumulative counter (judged by its rate)."""
    d = _CANONICAL.get(metric)
    if d is not None:
        return d.counter
    return metric.endswith("_total")


def metric_forms(metric: str) -> list[str]:
    """The stored metric names one configured name stands for.

    A counter base without suffix (``smb.client.requests``) means both its raw (``_total``) and
    formatted (``_per_sec``) forms; any other name means itself.
    """
    if metric in _CANONICAL or metric.endswith(("_total", "_per_sec")):
        return [metric]
    forms = [f for f in (metric + "_total", metric + "_per_sec") if f in _CANONICAL]
    return forms or [metric]


SERIES_KEY = "hash(CAST(source AS VARCHAR), CAST(host AS VARCHAR), CAST(metric AS VARCHAR), labels)"


def window_sql(metrics: Sequence[str]) -> str:
    """SQL reading the raw samples of the given metrics with ``ts`` in (``$lo_us``, ``$hi_us``].

    Columns: ``k`` (the series' identity: a hash of source, host, metric and labels), ``t`` (ms)
    and ``value`` — nothing per row that is constant per series (see :func:`series_sql`), so the
    scan stays cheap however many samples arrive. Feed it to :class:`StepAccumulator`.
    """
    metric_list = ", ".join(sql_str(m) for m in metrics)
    return f"""
SELECT {SERIES_KEY} AS k, epoch_ms(ts) AS t, value
FROM samples
WHERE ts > make_timestamptz($lo_us) AND ts <= make_timestamptz($hi_us) AND metric IN ({metric_list})
"""


def series_sql(metrics: Sequence[str], extra: Mapping[str, str] | None = None, *, only_keys: bool) -> str:
    """SQL giving, once per series, ``k``, ``host``, ``metric`` and the ``extra`` columns
    (expressions over ``labels``/``host``/``metric``). With ``only_keys`` it is limited to the keys
    in ``$keys`` (a UBIGINT list)."""
    metric_list = ", ".join(sql_str(m) for m in metrics)
    cols = "".join(f", {expr} AS {alias}" for alias, expr in (extra or {}).items())
    keys = f" AND {SERIES_KEY} IN (SELECT unnest($keys::UBIGINT[]))" if only_keys else ""
    return f"""
SELECT DISTINCT ON (k) {SERIES_KEY} AS k, CAST(host AS VARCHAR) AS host, CAST(metric AS VARCHAR) AS metric{cols}
FROM samples
WHERE ts > make_timestamptz($lo_us) AND ts <= make_timestamptz($hi_us) AND metric IN ({metric_list}){keys}
"""


class SeriesRegistry:
    """Per-series metadata (host, metric, label-derived columns), fetched once per new series."""

    def __init__(
        self, metrics: Sequence[str], extra: Mapping[str, str] | None = None, *, slice_ms: int = 300_000
    ) -> None:
        self.extra = dict(extra or {})
        self.slice_us = slice_ms * 1000
        self.sql_all = series_sql(metrics, extra, only_keys=False)
        self.sql_keys = series_sql(metrics, extra, only_keys=True)
        self.index: dict[int, int] = {}
        self.meta: pa.Table | None = None
        # the index as sorted arrays, for vectorised lookups of many keys
        self._sorted_keys = np.zeros(0, np.uint64)
        self._sorted_ids = np.zeros(0, np.int64)
        self.generation = 0  # bumps when series are renumbered (:meth:`retain`): ids handed out are stale
        # dictionary columns of ``meta`` as (codes with nulls at 0, validity or None, dictionary),
        # decoded once per ``meta`` (see :meth:`columns`)
        self._decoded: dict[str, tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_] | None, pa.Array[Any]] | None] = {}
        # the last :meth:`columns` call: (meta it read, names, ids (a copy), columns made)
        self._columns_memo: (
            tuple[pa.Table, tuple[str, ...], npt.NDArray[np.int64], dict[str, pa.Array[Any] | pa.ChunkedArray[Any]]]
            | None
        ) = None

    def __len__(self) -> int:
        return len(self.index)

    def known_ids(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Series id of each key (−1 for a key never resolved), without fetching anything."""
        return self._lookup(keys)

    def resolve(self, con: Any, keys: npt.NDArray[np.uint64], lo_us: int, hi_us: int) -> npt.NDArray[np.int64]:
        """Series ids of the keys, querying metadata for keys never seen before."""
        enc = pa.array(keys, pa.uint64()).dictionary_encode()
        uniq = np.asarray(enc.dictionary.to_numpy(), np.uint64)
        codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
        lookup = self._lookup(uniq)
        if (lookup >= 0).all():
            return np.asarray(lookup[codes], np.int64)
        unknown = [int(x) for x in uniq[lookup < 0]]
        if unknown and len(unknown) > 2000:
            # many new series (a cold start): every series shows up within a scrape gap, so read
            # their metadata from the first slice of the window instead of all of it
            self._fetch(con, self.sql_all, {"lo_us": lo_us, "hi_us": min(hi_us, lo_us + self.slice_us)})
            unknown = [x for x in unknown if x not in self.index]
        if unknown:
            self._fetch(
                con,
                self.sql_keys if len(unknown) <= 2000 else self.sql_all,
                {"lo_us": lo_us, "hi_us": hi_us, "keys": unknown},
            )
        return np.asarray(self._lookup(uniq)[codes], np.int64)

    def _lookup(self, uniq: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Series id of each key (−1 when unknown)."""
        sk = self._sorted_keys
        if sk.size == 0:
            return np.full(uniq.size, -1, np.int64)
        pos = np.minimum(np.searchsorted(sk, uniq), sk.size - 1)
        return np.asarray(np.where(sk[pos] == uniq, self._sorted_ids[pos], -1), np.int64)

    def _fetch(self, con: Any, sql: str, params: dict[str, Any]) -> None:
        tbl = query_table(con, sql, params)
        ks = cast(list[int], tbl.column("k").to_pylist())  # series keys are never null
        fresh = [i for i, k in enumerate(ks) if k not in self.index]
        if not fresh:
            return
        add = tbl.take(pa.array(fresh))
        # few distinct values per column: dictionary-encode, so the per-row columns handed to the
        # detectors are int32 indices (cheap to take and filter; masks are decided per entry)
        names = ["host", "metric", *self.extra]
        for name in names:
            i = add.schema.get_field_index(name)
            add = add.set_column(i, name, _dict(add.column(name)))
        base = 0 if self.meta is None else self.meta.num_rows
        for j, i in enumerate(fresh):
            self.index[ks[i]] = base + j
        keys = np.concatenate([self._sorted_keys, np.array([ks[i] for i in fresh], np.uint64)])
        ids = np.concatenate([self._sorted_ids, np.arange(base, base + len(fresh), dtype=np.int64)])
        order = np.argsort(keys, kind="stable")
        self._sorted_keys, self._sorted_ids = keys[order], ids[order]
        self._decoded = {}
        if self.meta is None:
            self.meta = add
        else:
            cols: dict[str, pa.Array[Any]] = {}
            for name in self.meta.column_names:  # one dictionary per column again
                both = [self.meta.column(name), add.column(name)]
                if name in names:
                    cols[name] = _dict(
                        pa.chunked_array([c for b in both for c in b.cast(pa.string()).chunks], pa.string())
                    )
                else:
                    cols[name] = pa.chunked_array(
                        [c for b in both for c in b.cast(self.meta.schema.field(name).type).chunks]
                    ).combine_chunks()
            self.meta = pa.table(cols)

    def columns(
        self, sids: npt.NDArray[np.int64], names: Sequence[str]
    ) -> dict[str, pa.Array[Any] | pa.ChunkedArray[Any]]:
        """The metadata columns of the given series, one row per id.

        Why: the step table gathers every metadata column at every pass; a dictionary column's
        codes are decoded to numpy once per ``meta``, so a pass gathers them with numpy and wraps
        them around the same dictionary (the values ``take`` would give) instead of one Arrow
        kernel call per column.
        """
        meta = self.meta
        if meta is None:
            raise ValueError("no series resolved yet")
        memo = self._columns_memo
        if (
            memo is not None
            and memo[0] is meta
            and memo[1] == tuple(names)
            and memo[2].size == sids.size
            and np.array_equal(memo[2], sids)
        ):
            # the same series as the last pass (a steady site steps every series once a pass): the
            # same columns (Arrow arrays are immutable); one numpy comparison instead of a gather
            # and two Arrow constructions per column
            return dict(memo[3])
        out: dict[str, pa.Array[Any] | pa.ChunkedArray[Any]] = {}
        for n in names:
            if n not in self._decoded:
                self._decoded[n] = _decode_dict(meta.column(n))
            dec = self._decoded[n]
            if dec is None:
                out[n] = meta.column(n).take(sids)
                continue
            codes, valid, dictionary = dec
            idx = codes[sids]
            ind: Any = pa.array(idx) if valid is None else pa.array(idx, mask=~valid[sids])  # int32 codes
            out[n] = pa.DictionaryArray.from_arrays(ind, dictionary, safe=False)  # codes of a valid column
        self._columns_memo = (meta, tuple(names), np.array(sids, np.int64), dict(out))
        return out

    def retain(self, sids: npt.NDArray[np.int64]) -> None:
        """Keep only these series (renumbered 0..n−1 in the given order); forget the rest."""
        if self.meta is None:
            return
        meta = self.meta.take(np.asarray(sids, np.int64))
        for name in ["host", "metric", *self.extra]:
            i = meta.schema.get_field_index(name)
            meta = meta.set_column(i, name, _dict(meta.column(name)))
        self.meta = meta
        self._decoded = {}
        self.generation += 1
        ks = np.asarray(meta.column("k").to_numpy(), np.uint64)
        self.index = {int(k): i for i, k in enumerate(ks.tolist())}
        order = np.argsort(ks, kind="stable")
        self._sorted_keys, self._sorted_ids = ks[order], np.arange(ks.size, dtype=np.int64)[order]


# Separators that never occur in metric names, label names or values the parsers accept.
_SEP_KV, _SEP_LABELS, _SEP_FIELDS = "\x1f", "\x1e", "\x1d"
_ID_COLUMNS = ("source", "host", "metric", "labels")
_HEAD_COLUMNS = ("source", "host", "metric")
_NO_KEYS = np.zeros(0, np.uint64)
LAYOUTS_MAX = 16_384  # chunk layouts remembered (about one per scraped target)
LAYOUTS_MAX_BYTES = 128 << 20  # and the identity columns they hold (the rest is re-keyed)
LAYOUT_VARIANTS_MAX = 8  # row counts remembered per first row (a fed batch's target mix varies)
_ENTRIES = pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))
FED_NEW_SERIES_VIEW = (
    "CREATE OR REPLACE VIEW _fed_new_series AS "
    "SELECT ts, source, host, metric, map_from_entries(labels) AS labels, value, _i FROM _fed_new"
)


def series_strings(samples: pa.Table) -> pa.Array[Any]:
    """One string per row naming its series (source, host, metric and labels in their order),
    built by Arrow kernels: the identity :data:`SERIES_KEY` hashes, without a query."""
    labels: Any = samples.column("labels").combine_chunks()  # a MapArray (the stubs do not say so)
    join: Any = pc.binary_join_element_wise
    kv = join(labels.keys, labels.items, _SEP_KV, null_handling="replace", null_replacement="\x00")
    joined = pc.binary_join(pa.ListArray.from_arrays(labels.offsets, kv), _SEP_LABELS)
    parts = [samples.column(c).combine_chunks().cast(pa.string()) for c in ("source", "host", "metric")]
    out: pa.Array[Any] = join(*parts, joined, _SEP_FIELDS)
    return out


class SeriesKeys:
    """Series keys of fed rows (the engine's fed mode), with no query for series already seen.

    Each row's series string (:func:`series_strings`) is looked up once per distinct value in a
    dict; only a series never seen before costs a DuckDB query, on one row of it, which gives its
    :data:`SERIES_KEY` hash — the very key the SQL path uses, so state built by a cold start from
    the store carries on — and its metadata for the :class:`SeriesRegistry`.
    """

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self._view_ready = False
        # chunk layouts seen before: ((source, host, metric of the first row), row count) → the last
        # such chunk's identity columns and their keys (see :meth:`chunk_keys`). A few row counts
        # per first row: a replay's pass batches the records of several targets, and which targets
        # fall in a pass alternates between a handful of mixes (each keyed afresh at every change
        # when one entry per first row was kept); capped, so a target whose series count drifts
        # replaces its oldest count instead of adding one per count
        self._layouts: OrderedDict[
            tuple[tuple[Any, ...], int], tuple[list[pa.ChunkedArray[Any]], npt.NDArray[np.uint64]]
        ] = OrderedDict()
        self._variants: dict[tuple[Any, ...], list[int]] = {}  # first row → its remembered row counts
        # (id(a remembered layout's keys), column) → that dictionary column's codes (see _layout_hit)
        self._decoded: dict[tuple[int, int], _DictCodes] = {}
        self._layout_bytes = 0
        self.layout_hits = 0
        self.layout_misses = 0
        # series ids of remembered layouts' keys, by the keys array's identity (the array a hit hands
        # back): (that array, registry generation, ids); only while the layout is remembered
        self._sid_memo: dict[int, tuple[npt.NDArray[np.uint64], int, npt.NDArray[np.int64]]] = {}
        self._lay_of: dict[int, tuple[tuple[Any, ...], int]] = {}  # id(a remembered layout's keys) → its layout

    def __len__(self) -> int:
        return len(self.ids)

    def chunk_keys(
        self, chunks: Sequence[pa.Table], con: Any, registry: SeriesRegistry
    ) -> list[npt.NDArray[np.uint64]]:
        """Series keys of each fed chunk (one parsed record's rows each).

        Why: a target sends the same series in the same order scrape after scrape, so a chunk
        whose identity columns (source, host, metric, labels) equal those of the last chunk of
        the same layout gets that chunk's keys back after one C++ comparison per column — no
        series string is built and no row is hashed. Other chunks go through :meth:`keys`
        together. Equality is exact (Arrow compares the values), so a hit is never a guess.
        """
        out: list[npt.NDArray[np.uint64] | None] = [None] * len(chunks)
        todo: list[int] = []
        for i, c in enumerate(chunks):
            if c.num_rows:
                # the layout key: the first row's source, host and metric (three scalars cost less
                # than gathering every chunk's first row into one table and decoding it)
                lay = tuple(c.column(name)[0].as_py() for name in _HEAD_COLUMNS)
                hit = self._layout_hit(lay, c)
                if hit is not None:
                    out[i] = hit
                    continue
            todo.append(i)
        self.layout_hits += len(chunks) - len(todo)
        self.layout_misses += len(todo)
        if todo:
            parts = [chunks[i] for i in todo]
            ks = self.keys(pa.concat_tables(parts), con, registry) if sum(p.num_rows for p in parts) else _NO_KEYS
            at = 0
            for i, part in zip(todo, parts, strict=True):
                k = ks[at : at + part.num_rows]
                at += part.num_rows
                out[i] = k
                if part.num_rows:
                    self._remember(part, k)
        return [k if k is not None else _NO_KEYS for k in out]

    def _layout_hit(self, lay: tuple[Any, ...], chunk: pa.Table) -> npt.NDArray[np.uint64] | None:
        entry = self._layouts.get((lay, chunk.num_rows))
        if entry is None:
            return None
        cols, keys = entry
        if len(keys) != chunk.num_rows:
            return None
        for j, (name, col) in enumerate(zip(_ID_COLUMNS, cols, strict=True)):
            mine = chunk.column(name)
            if mine.equals(col):
                continue
            # Arrow compares a dictionary column's codes and dictionary, not its values: a batch of
            # the same rows whose dictionary was built in another order (another mix of records
            # before it) is equal only decoded: compared by codes mapped across the dictionaries
            if not (pa.types.is_dictionary(mine.type) and pa.types.is_dictionary(col.type)):
                return None
            codes = self._decoded.get((id(keys), j))
            if codes is None:
                codes = self._decoded[(id(keys), j)] = _DictCodes(col)
                self._layout_bytes += codes.nbytes  # within the layouts' memory bound
            before = codes.nbytes
            same = codes.same_values(mine)
            self._layout_bytes += codes.nbytes - before  # the other dictionary it now remembers
            if not same:
                return None
        return keys

    def _remember(self, chunk: pa.Table, keys: npt.NDArray[np.uint64]) -> None:
        head = tuple(chunk.column(c)[0].as_py() for c in _HEAD_COLUMNS)
        lay = (head, chunk.num_rows)
        size = sum(chunk.column(c).nbytes for c in _ID_COLUMNS)
        if size > LAYOUTS_MAX_BYTES // 4:  # a chunk this big (a replay run of records) is not a layout
            return
        # copies: a parsed chunk is a slice of its worker's shared-memory mapping, which a held
        # slice would keep mapped for as long as the layout is remembered
        cols = [pa.chunked_array([owned(chunk.column(c))]) for c in _ID_COLUMNS]
        size = sum(c.nbytes for c in cols)  # what _forget_layout takes back (a slice can count more)
        self._forget_layout(lay)
        counts = self._variants.setdefault(head, [])
        if len(counts) >= LAYOUT_VARIANTS_MAX:
            self._forget_layout((head, counts[0]))
            counts = self._variants.setdefault(head, [])
        counts.append(chunk.num_rows)
        self._layouts[lay] = (cols, keys)
        self._lay_of[id(keys)] = lay
        self._layout_bytes += size
        while len(self._layouts) > LAYOUTS_MAX or self._layout_bytes > LAYOUTS_MAX_BYTES:
            self._forget_layout(next(iter(self._layouts)))

    def _forget_layout(self, lay: tuple[tuple[Any, ...], int]) -> None:
        old = self._layouts.pop(lay, None)
        if old is None:
            return
        self._layout_bytes -= sum(c.nbytes for c in old[0])
        self._sid_memo.pop(id(old[1]), None)
        self._lay_of.pop(id(old[1]), None)
        for j in range(len(_ID_COLUMNS)):
            decoded = self._decoded.pop((id(old[1]), j), None)
            if decoded is not None:
                self._layout_bytes -= decoded.nbytes
        counts = self._variants.get(lay[0])
        if counts is not None:
            counts.remove(lay[1])
            if not counts:
                del self._variants[lay[0]]

    def sids(
        self, chunk_keys: Sequence[npt.NDArray[np.uint64]], registry: SeriesRegistry
    ) -> npt.NDArray[np.int64] | None:
        """Series ids of the keys of fed chunks (concatenated in order), or None when some key has
        no id yet (the caller resolves them, fetching metadata).

        Why: a remembered layout hands back the same keys array scrape after scrape, so its ids
        are looked up once, not once per pass (the lookup is a hash of every row's key).
        """
        gen = registry.generation
        out: list[npt.NDArray[np.int64] | None] = []
        todo: list[int] = []
        for i, k in enumerate(chunk_keys):
            memo = self._sid_memo.get(id(k))
            if memo is not None and memo[0] is k and memo[1] == gen:
                out.append(memo[2])
            else:
                out.append(None)
                todo.append(i)
        if todo:
            ids = registry.known_ids(np.concatenate([chunk_keys[i] for i in todo]))
            if (ids < 0).any():
                return None
            at = 0
            for i in todo:
                k = chunk_keys[i]
                part = ids[at : at + k.size]
                at += k.size
                out[i] = part
                lay = self._lay_of.get(id(k))
                entry = None if lay is None else self._layouts.get(lay)
                if entry is not None and entry[1] is k:
                    self._sid_memo[id(k)] = (k, gen, part)
        done = [x for x in out if x is not None]
        return np.concatenate(done) if done else np.zeros(0, np.int64)

    def keys(self, samples: pa.Table, con: Any, registry: SeriesRegistry) -> npt.NDArray[np.uint64]:
        enc = series_strings(samples).dictionary_encode()
        uniq = cast(list[str], enc.dictionary.to_pylist())
        codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
        get = self.ids.get
        found = [get(u) for u in uniq]
        missing = [i for i, x in enumerate(found) if x is None]
        if missing:
            _, first = np.unique(codes, return_index=True)  # first row of every distinct series
            rep = samples.take(np.asarray(first[missing], np.int64))
            for i, k in zip(missing, self._learn(rep, con, registry), strict=True):
                self.ids[uniq[i]] = k
                found[i] = k
        return np.asarray(np.array(found, np.uint64)[codes], np.uint64)

    def _learn(self, rep: pa.Table, con: Any, registry: SeriesRegistry) -> list[int]:
        i = rep.schema.get_field_index("labels")
        rep = rep.set_column(i, pa.field("labels", _ENTRIES), rep.column("labels").cast(_ENTRIES))
        rep = rep.append_column("_i", pa.array(np.arange(rep.num_rows, dtype=np.int64)))
        con.register("_fed_new", rep)
        try:
            if not self._view_ready:
                con.execute(FED_NEW_SERIES_VIEW)
                self._view_ready = True
            ks = query_table(con, f"SELECT _i, {SERIES_KEY} AS k FROM _fed_new_series ORDER BY _i")
            keys = cast(list[int], ks.column("k").to_pylist())
            unknown = [k for k in keys if k not in registry.index]
            if unknown:
                t = rep.column("ts").cast(pa.int64())
                registry._fetch(
                    con,
                    registry.sql_all.replace("FROM samples", "FROM _fed_new_series"),
                    {"lo_us": (int(pc.min(t).as_py()) - 1) * 1000, "hi_us": int(pc.max(t).as_py()) * 1000},
                )
        finally:
            con.unregister("_fed_new")
        return keys

    def retain(self, keys: set[int]) -> None:
        """Forget the series strings of every key not in ``keys`` (and every chunk layout: one
        could hand back a forgotten key)."""
        self.ids = {s: k for s, k in self.ids.items() if k in keys}
        self._layouts.clear()
        self._variants.clear()
        self._decoded.clear()
        self._layout_bytes = 0
        self._sid_memo.clear()
        self._lay_of.clear()


def dictionary_codes(arr: pa.DictionaryArray[Any, Any]) -> npt.NDArray[np.int64]:
    """Each row's code into the dictionary, -1 for a null row. (``indices.fill_null(-1)`` costs
    ~0.15 ms on a few hundred rows with nulls; numpy gives the indices with nulls as NaN.)"""
    ind = arr.indices
    raw = ind.to_numpy(zero_copy_only=False)
    if not ind.null_count:
        return np.asarray(raw, np.int64)
    out = np.full(raw.size, -1, np.int64)
    ok = ~np.isnan(raw)
    out[ok] = raw[ok]
    return out


class _DictCodes:
    """A remembered dictionary column as numpy codes (−1 for null) and its dictionary, to tell
    whether another dictionary column holds the same values row for row.

    Why: Arrow's ``equals`` on dictionary columns compares codes and dictionaries, so a batch of
    the same rows whose dictionary was built in another order (another mix of records before
    it) is unequal; decoding both to strings (a cast per column and pass) settled it. Mapping
    the other dictionary's entries onto this one (once per distinct dictionary: the next pass's
    usually equals the last one's) and comparing codes in numpy gives the same answer. Entries
    map to the first equal entry here, so a dictionary holding a value twice can only make a
    match fail (a layout miss, keyed afresh), never make unequal rows look equal.
    """

    def __init__(self, col: pa.ChunkedArray[Any]) -> None:
        arr: Any = col.combine_chunks()
        self.dictionary: pa.Array[Any] = arr.dictionary
        self.codes = dictionary_codes(arr)
        self._seen: pa.Array[Any] | None = None  # the last other dictionary mapped, and its map
        self._remap = np.zeros(0, np.int64)
        self._identity = False

    @property
    def nbytes(self) -> int:
        """Memory held, the last other dictionary and its map included (they change per match)."""
        seen = 0 if self._seen is None else self._seen.nbytes
        return int(self.codes.nbytes + self.dictionary.nbytes + seen + self._remap.nbytes)

    def same_values(self, other: pa.ChunkedArray[Any]) -> bool:
        """Whether ``other`` (a dictionary column) decodes to the same values, nulls included."""
        if len(other) != self.codes.size:
            return False
        arr: Any = other.chunk(0) if other.num_chunks == 1 else other.combine_chunks()
        dictionary = arr.dictionary
        if dictionary.type != self.dictionary.type:
            return False  # values of another type (a miss: the chunk is keyed afresh)
        if self._seen is None or not self._seen.equals(dictionary):
            found = pc.index_in(dictionary, value_set=self.dictionary)  # null: not a value here
            remap = np.asarray(found.fill_null(-2).to_numpy(zero_copy_only=False), np.int64)
            self._seen = owned(dictionary)  # a copy: it may be a slice of a shared-memory chunk
            self._identity = bool((remap == np.arange(remap.size)).all())
            self._remap = np.append(remap, -1)  # the last entry: a null row
        other_codes = dictionary_codes(arr)
        if other_codes.size and int(other_codes.min()) < 0:
            other_codes = np.where(other_codes < 0, self._remap.size - 1, other_codes)
            return bool(np.array_equal(self._remap[other_codes], self.codes))
        if self._identity:  # entries at the same places: the codes themselves must match
            return bool(np.array_equal(other_codes, self.codes))
        return bool(np.array_equal(self._remap[other_codes], self.codes))


def _decode_dict(
    col: pa.ChunkedArray[Any],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_] | None, pa.Array[Any]] | None:
    """A one-chunk int32 dictionary column as (codes with nulls at 0, validity or None,
    dictionary); None for any other column (gathered by ``take`` then)."""
    if col.num_chunks != 1 or not pa.types.is_dictionary(col.type) or col.type.index_type != pa.int32():
        return None
    arr: Any = col.chunk(0)
    nulls = arr.null_count
    codes = np.asarray((arr.indices.fill_null(0) if nulls else arr.indices).to_numpy(zero_copy_only=False), np.int32)
    valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool) if nulls else None
    return codes, valid, arr.dictionary


def _dict(col: pa.ChunkedArray[Any] | pa.Array[Any]) -> pa.DictionaryArray[Any, Any]:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(pa.string())
    out: pa.DictionaryArray[Any, Any] = arr.dictionary_encode()
    return out


def epoch_ms(col: pa.ChunkedArray[Any]) -> npt.NDArray[np.int64]:
    """A ``ts`` column as int64 ms since the epoch: a millisecond timestamp without nulls is
    viewed (a cast is a kernel call per column, paid by every detector's reads each pass)."""
    if len(col) and pa.types.is_timestamp(col.type) and col.type.unit == "ms" and not col.null_count:
        arr = col.chunk(0) if col.num_chunks == 1 else col
        return np.asarray(arr.to_numpy(), "datetime64[ms]").view(np.int64)
    return np.asarray(col.cast(pa.int64()).to_numpy(), np.int64)


def in_set(col: pa.ChunkedArray[Any] | pa.Array[Any], values: Collection[str]) -> npt.NDArray[np.bool_]:
    """Row mask "value in values"; for a dictionary column decided once per dictionary entry."""
    return in_sets(col, [values])[0]


class _EntryMasks:
    """Per-entry masks of the dictionaries :func:`in_sets` saw last, by dictionary content.

    Why: the step table's columns share the registry's dictionaries pass after pass, and a parsed
    table's metric dictionary repeats scrape after scrape; one C++ comparison of the dictionary
    then replaces decoding it to Python strings and testing each against the set. Equality is
    exact (Arrow compares the values), and the entries are held, so a hit is never a guess.
    """

    MAX = 8

    def __init__(self) -> None:
        self.seen: list[tuple[pa.Array[Any], dict[Any, npt.NDArray[np.bool_]]]] = []
        self._lock = threading.Lock()  # shared by every engine in the process (the service's threads)

    def masks(self, dictionary: pa.Array[Any]) -> dict[Any, npt.NDArray[np.bool_]]:
        """The mask memo of this dictionary's content (a fresh one for a dictionary not seen)."""
        with self._lock:
            for i, (d, memo) in enumerate(self.seen):
                if d.equals(dictionary):
                    if i:
                        self.seen.insert(0, self.seen.pop(i))
                    return memo
            memo = {}
            # a copy: the dictionary may be a slice of a shared-memory chunk it would keep mapped
            self.seen.insert(0, (owned(dictionary), memo))
            del self.seen[self.MAX :]
            return memo


_ENTRY_MASKS = _EntryMasks()


def _set_key(values: Collection[str]) -> Any:
    """A hashable stand-in for a value set (frozensets and tuples are their own)."""
    return values if isinstance(values, (frozenset, tuple)) else frozenset(values)


def in_sets(
    col: pa.ChunkedArray[Any] | pa.Array[Any], value_sets: Sequence[Collection[str]]
) -> list[npt.NDArray[np.bool_]]:
    """:func:`in_set` for several value sets over one column, decoding the column once (the
    engine sorts every fed table's rows into two sets this way)."""
    arr = col if not isinstance(col, pa.ChunkedArray) else col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    if not isinstance(arr, pa.DictionaryArray):
        return [
            np.asarray(pc.is_in(arr, value_set=pa.array(list(values), arr.type)).to_numpy(zero_copy_only=False), bool)
            for values in value_sets
        ]
    memo = _ENTRY_MASKS.masks(arr.dictionary)
    names: list[Any] | None = None
    idx: npt.NDArray[np.int64] | None = None
    valid: npt.NDArray[np.bool_] | None = None
    nulls = arr.null_count
    out: list[npt.NDArray[np.bool_]] = []
    for values in value_sets:
        key = _set_key(values)
        entry = memo.get(key)
        if entry is None:
            if names is None:
                names = arr.dictionary.to_pylist()
            want = key if isinstance(key, frozenset) else frozenset(key)  # values may be one-shot
            entry = np.fromiter((v in want for v in names), np.bool_, len(names))
            memo[key] = entry
        if not entry.any():
            out.append(np.zeros(len(arr), bool))
            continue
        if idx is None:
            ind = arr.indices.fill_null(0) if nulls else arr.indices
            idx = np.asarray(ind.to_numpy(zero_copy_only=False))
        mask = entry[idx]
        if nulls:
            if valid is None:
                valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool)
            mask = mask & valid
        out.append(np.asarray(mask, bool))
    return out


_I64 = npt.NDArray[np.int64]
_F64 = npt.NDArray[np.float64]
_B = npt.NDArray[np.bool_]


@dataclass(slots=True)
class RawRows:
    """Raw sample rows as numpy columns (the engine's fed mode hands these to
    :meth:`StepAccumulator.process` instead of an Arrow table it would decode again).

    ``k`` series key, ``t`` ms, ``value``; ``sid`` the series ids when all are known already.
    """

    k: npt.NDArray[np.uint64]
    t: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    sid: npt.NDArray[np.int64] | None = None

    @property
    def num_rows(self) -> int:
        return int(self.t.size)


class StepAccumulator:
    """Raw samples → one row per (series, step), remembering each series' last sample.

    Because the last sample of every series is kept, each call needs only the rows that arrived
    since the previous one. :meth:`process` returns ``sid`` (series id from the registry),
    ``bucket`` (step end, ms), ``rate`` (per-second rate over the series' valid intervals ending in
    the step — meaningful for counters), ``inc`` (counter increase), ``span_ms`` (valid interval
    time) and ``mean`` (mean sample value — gauges and formatted rates), plus ``host``,
    ``metric`` and the registry's extra columns. An interval is valid when time advanced by at
    most ``gap_ms`` and the value did not drop (a drop is a counter reset: that interval is
    skipped, not rated).
    """

    def __init__(self, step_ms: int, gap_ms: int, registry: SeriesRegistry) -> None:
        self.step = step_ms
        self.gap = gap_ms
        self.registry = registry
        self.last_t = np.full(0, -1, np.int64)
        self.last_v = np.full(0, np.nan)
        self._pruned_at = 0
        self._empty_table: pa.Table | None = None
        self._order_memo: tuple[_I64, _I64, _I64] | None = None  # (series ids, sorted, order)

    def retain(self, sids: npt.NDArray[np.int64]) -> None:
        """Keep the last samples of these series only (renumbered as :meth:`SeriesRegistry.retain`)."""
        self.last_t = self.last_t[sids]
        self.last_v = self.last_v[sids]

    def _empty(self) -> pa.Table:
        if self._empty_table is None:  # tables are immutable: one serves every empty call
            self._empty_table = self._build_empty()
        return self._empty_table

    def _build_empty(self) -> pa.Table:
        cols: dict[str, pa.Array[Any]] = {
            "sid": pa.array([], pa.int64()),
            "bucket": pa.array([], pa.int64()),
            "rate": pa.array([], pa.float64()),
            "inc": pa.array([], pa.float64()),
            "span_ms": pa.array([], pa.float64()),
            "mean": pa.array([], pa.float64()),
            "host": pa.array([], pa.string()),
            "metric": pa.array([], pa.string()),
        }
        for c in self.registry.extra:
            cols[c] = pa.array([], pa.string())
        return pa.table(cols)

    def process(self, con: Any, raw: pa.Table | RawRows, lo_us: int, hi_us: int) -> pa.Table:
        n = raw.num_rows
        if n == 0:
            return self._empty()
        if isinstance(raw, RawRows):
            keys, t, v, sid_known = raw.k, raw.t, raw.value, raw.sid
        else:
            keys = np.asarray(raw.column("k").to_numpy(), np.uint64)
            t = np.asarray(raw.column("t").to_numpy(), np.int64)
            v = np.asarray(raw.column("value").to_numpy(), np.float64)
            sid_known = np.asarray(raw.column("sid").to_numpy(), np.int64) if "sid" in raw.column_names else None
        # ids known already (fed rows: SeriesKeys.sids), else resolved (fetching new series' metadata)
        sid = sid_known if sid_known is not None else self.registry.resolve(con, keys, lo_us, hi_us)
        ok = sid >= 0
        if not ok.all():  # a series whose metadata vanished between the two queries: skip it
            sid, t, v = sid[ok], t[ok], v[ok]
            n = int(sid.size)
            if n == 0:
                return self._empty()
        grow = len(self.registry) - self.last_t.size
        if grow > 0:
            self.last_t = np.concatenate([self.last_t, np.full(grow, -1, np.int64)])
            self.last_v = np.concatenate([self.last_v, np.full(grow, np.nan)])
        memo = self._order_memo  # the last call's series ids, sorted, and their order (see _general)
        if memo is not None and memo[0].size == n and np.array_equal(memo[0], sid):
            k, order = memo[1], memo[2]
            t, v = t[order], v[order]
            inc, span, nval, mean, rate, bucket, fresh = self._one_per_series(k, t, v)
            self.last_t[k[fresh]] = t[fresh]  # the newer samples: those newer than their series' last
            self.last_v[k[fresh]] = v[fresh]
            starts: npt.NDArray[np.int64] | slice = slice(None)
        else:
            k, t, v, inc, span, nval, mean, rate, bucket, starts = self._general(sid, t, v)
        keep = (span > 0) | (nval > 0)
        inc = np.where(span > 0, inc, np.nan)
        sids, buckets = k[starts], bucket[starts]
        if not keep.all():
            sids, buckets = sids[keep], buckets[keep]
            rate, inc, span, mean = rate[keep], inc[keep], span[keep], mean[keep]
        out: dict[str, pa.Array[Any] | pa.ChunkedArray[Any]] = {
            "sid": pa.array(sids),
            "bucket": pa.array(buckets),
            "rate": pa.array(rate),
            "inc": pa.array(inc),
            "span_ms": pa.array(span),
            "mean": pa.array(mean),
        }
        out.update(self.registry.columns(sids, ["host", "metric", *self.registry.extra]))
        return pa.table(out)

    def _one_per_series(self, k: _I64, t: _I64, v: _F64) -> tuple[_F64, _F64, _F64, _F64, _F64, _I64, _B]:
        """(inc, span, nval, mean, rate, bucket, fresh) of rows sorted by series id, one row per
        series: :meth:`_general`'s arithmetic where every row is its series' first and last row
        and its own (series, step) group."""
        prev_t = self.last_t[k]
        prev_v = self.last_v[k]
        fresh = t > prev_t
        dt = (t - prev_t).astype(np.float64)
        dv = v - prev_v
        valid = fresh & (prev_t >= 0) & (dt <= self.gap) & np.isfinite(dv) & (dv >= 0)
        bucket = -(-t // self.step) * self.step
        use = fresh & np.isfinite(v)
        inc = np.where(valid, dv, 0.0)
        span = np.where(valid, dt, 0.0)
        total = np.where(use, v, 0.0)
        nval = use.astype(np.float64)
        mean = np.where(nval > 0, total / np.maximum(nval, 1), np.nan)
        rate = np.where(span > 0, inc * 1000.0 / np.where(span > 0, span, 1.0), np.nan)
        return inc, span, nval, mean, rate, bucket, fresh

    def _general(
        self, sid: _I64, t: _I64, v: _F64
    ) -> tuple[_I64, _I64, _F64, _F64, _F64, _F64, _F64, _F64, _I64, _I64]:
        """Rows sorted by (series id, time) and summed per (series, step): (k, t, v sorted, inc,
        span, nval, mean, rate, bucket, starts of the groups); remembers each series' newest
        sample. When every series had one row, remembers the order for the next call
        (``_order_memo``: a steady site sends the same series pass after pass)."""
        n = int(sid.size)
        # one int64 sort key: series id high, time within the call low (a call spans < 2^31 ms)
        t0 = int(t.min())
        order = (
            np.argsort((sid << 31) | (t - t0), kind="stable") if int(t.max()) - t0 < (1 << 31) else np.lexsort((t, sid))
        )
        k, t, v = sid[order], t[order], v[order]
        brk = k[1:] != k[:-1]
        self._order_memo = (np.array(sid, np.int64), k, np.asarray(order, np.int64)) if brk.all() else None
        del order
        first = np.empty(n, bool)
        first[0] = True
        first[1:] = brk
        last = np.empty(n, bool)
        last[-1] = True
        last[:-1] = brk
        del brk
        prev_t = np.empty(n, np.int64)
        prev_v = np.empty(n, np.float64)
        prev_t[1:], prev_v[1:] = t[:-1], v[:-1]
        prev_t[first] = self.last_t[k[first]]
        prev_v[first] = self.last_v[k[first]]
        # rows not newer than their predecessor (late or repeated samples) are dropped
        fresh = t > prev_t
        dt = (t - prev_t).astype(np.float64)
        dv = v - prev_v
        valid = fresh & (prev_t >= 0) & (dt <= self.gap) & np.isfinite(dv) & (dv >= 0)
        del prev_t, prev_v
        bucket = -(-t // self.step) * self.step
        use = fresh & np.isfinite(v)
        group = first.copy()
        group[1:] |= bucket[1:] != bucket[:-1]
        starts = np.flatnonzero(group)
        del group
        inc = np.where(valid, dv, 0.0)
        span = np.where(valid, dt, 0.0)
        total = np.where(use, v, 0.0)
        nval = use.astype(np.float64)
        if starts.size < n:  # several samples per (series, step): sum them (else each row is its group)
            inc = np.add.reduceat(inc, starts)
            span = np.add.reduceat(span, starts)
            nval = np.add.reduceat(nval, starts)
            total = np.add.reduceat(total, starts)
        del dt, dv, valid, use
        mean = np.where(nval > 0, total / np.maximum(nval, 1), np.nan)
        rate = np.where(span > 0, inc * 1000.0 / np.where(span > 0, span, 1.0), np.nan)
        # remember each series' newest sample
        lk, lt, lv = k[last], t[last], v[last]
        newer = lt > self.last_t[lk]
        self.last_t[lk[newer]] = lt[newer]
        self.last_v[lk[newer]] = lv[newer]
        return k, t, v, inc, span, nval, mean, rate, bucket, starts


def counter_rates_sql(*, fleet: bool = False) -> str:
    """The ``counter_rates`` view body; ``fleet`` keys every series by ``site`` as well (two sites'
    ``hci-node-01`` are two hosts, so a lag never reaches across sites)."""
    s = "site, " if fleet else ""
    return f"""
SELECT {s}ts, source, host, metric,
       CASE WHEN suffix(metric, '_total') THEN metric[1:-7]
            WHEN suffix(metric, '_per_sec') THEN metric[1:-9] ELSE metric END AS base,
       labels,
       CASE WHEN suffix(metric, '_per_sec') THEN value
            WHEN dv >= 0 AND dt_ms > 0 AND dt_ms <= 300000 THEN dv * 1000.0 / dt_ms END AS rate_per_sec,
       dv < 0 AS counter_reset, dt_ms > 300000 AS after_gap
FROM (
    SELECT *, value - lag(value) OVER w AS dv, epoch_ms(ts) - epoch_ms(lag(ts) OVER w) AS dt_ms
    FROM samples
    WHERE suffix(metric, '_total') OR suffix(metric, '_per_sec')
    WINDOW w AS (PARTITION BY {s}source, host, metric, labels ORDER BY ts)
)
"""


COUNTER_RATES_VIEW = counter_rates_sql()


def query_table(con: Any, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
    """Run a query with the named parameters it uses and return an Arrow table.

    The DB-API path (``execute``) is used: for the small incremental results analytics reads it
    is several times cheaper per call than building a relation (DuckDB warns about one extra copy
    of the rows, which is irrelevant at these sizes).
    """
    used = {k: v for k, v in (params or {}).items() if re.search(rf"\${k}\b", sql)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*extra copy.*")
        cur = con.execute(sql, used) if used else con.execute(sql)
        fetch = getattr(cur, "to_arrow_table", None) or getattr(cur, "fetch_arrow_table", None)
        if fetch is None:
            raise TypeError(f"{type(con).__name__} cannot return Arrow tables")
        table = fetch()
    if isinstance(table, pa.RecordBatchReader):
        table = table.read_all()
    if not isinstance(table, pa.Table):
        raise TypeError(f"query returned {type(table).__name__}, not an Arrow table")
    return table
