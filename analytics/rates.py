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
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

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

    def __init__(self, metrics: Sequence[str], extra: Mapping[str, str] | None = None, *,
                 slice_ms: int = 300_000) -> None:
        self.extra = dict(extra or {})
        self.slice_us = slice_ms * 1000
        self.sql_all = series_sql(metrics, extra, only_keys=False)
        self.sql_keys = series_sql(metrics, extra, only_keys=True)
        self.index: dict[int, int] = {}
        self.meta: pa.Table | None = None

    def __len__(self) -> int:
        return len(self.index)

    def resolve(self, con: Any, keys: npt.NDArray[np.uint64], lo_us: int, hi_us: int) -> npt.NDArray[np.int64]:
        """Series ids of the keys, querying metadata for keys never seen before."""
        enc = pa.array(keys, pa.uint64()).dictionary_encode()
        uniq = np.asarray(enc.dictionary.to_numpy(), np.uint64)
        codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
        unknown = [int(x) for x in uniq if int(x) not in self.index]
        if unknown and len(unknown) > 2000:
            # many new series (a cold start): every series shows up within a scrape gap, so read
            # their metadata from the first slice of the window instead of all of it
            self._fetch(con, self.sql_all, {"lo_us": lo_us, "hi_us": min(hi_us, lo_us + self.slice_us)})
            unknown = [x for x in unknown if x not in self.index]
        if unknown:
            self._fetch(con, self.sql_keys if len(unknown) <= 2000 else self.sql_all,
                        {"lo_us": lo_us, "hi_us": hi_us, "keys": unknown})
        lookup = np.fromiter((self.index.get(int(x), -1) for x in uniq), np.int64, uniq.size)
        return np.asarray(lookup[codes], np.int64)

    def _fetch(self, con: Any, sql: str, params: dict[str, Any]) -> None:
        tbl = query_table(con, sql, params)
        ks = tbl.column("k").to_pylist()
        fresh = [i for i, k in enumerate(ks) if k not in self.index]
        if not fresh:
            return
        add = tbl.take(pa.array(fresh))
        # few distinct hosts/metrics: dictionary-encode so per-row filters downstream are cheap
        for name in ("host", "metric"):
            i = add.schema.get_field_index(name)
            add = add.set_column(i, name, add.column(name).combine_chunks().dictionary_encode())
        base = 0 if self.meta is None else self.meta.num_rows
        for j, i in enumerate(fresh):
            self.index[ks[i]] = base + j
        if self.meta is None:
            self.meta = add
        else:
            merged = pa.concat_tables([self.meta, add.cast(self.meta.schema)]).combine_chunks()
            for name in ("host", "metric"):  # one dictionary per column again
                i = merged.schema.get_field_index(name)
                col = merged.column(name).cast(pa.string()).combine_chunks().dictionary_encode()
                merged = merged.set_column(i, name, col)
            self.meta = merged

    def columns(self, sids: npt.NDArray[np.int64], names: Sequence[str]) -> dict[str, pa.Array]:
        if self.meta is None:
            raise ValueError("no series resolved yet")
        idx = pa.array(sids)
        return {n: self.meta.column(n).take(idx) for n in names}


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

    def _empty(self) -> pa.Table:
        cols: dict[str, pa.Array] = {
            "sid": pa.array([], pa.int64()), "bucket": pa.array([], pa.int64()),
            "rate": pa.array([], pa.float64()), "inc": pa.array([], pa.float64()),
            "span_ms": pa.array([], pa.float64()), "mean": pa.array([], pa.float64()),
            "host": pa.array([], pa.string()), "metric": pa.array([], pa.string()),
        }
        for c in self.registry.extra:
            cols[c] = pa.array([], pa.string())
        return pa.table(cols)

    def process(self, con: Any, raw: pa.Table, lo_us: int, hi_us: int) -> pa.Table:
        n = raw.num_rows
        if n == 0:
            return self._empty()
        keys = np.asarray(raw.column("k").to_numpy(), np.uint64)
        sid = self.registry.resolve(con, keys, lo_us, hi_us)
        ok = sid >= 0
        if not ok.all():  # a series whose metadata vanished between the two queries: skip it
            sid, raw = sid[ok], raw.filter(pa.array(ok))
            n = raw.num_rows
            if n == 0:
                return self._empty()
        grow = len(self.registry) - self.last_t.size
        if grow > 0:
            self.last_t = np.concatenate([self.last_t, np.full(grow, -1, np.int64)])
            self.last_v = np.concatenate([self.last_v, np.full(grow, np.nan)])
        t = np.asarray(raw.column("t").to_numpy(), np.int64)
        v = np.asarray(raw.column("value").to_numpy(), np.float64)
        # one int64 sort key: series id high, time within the call low (a call spans < 2^31 ms)
        t0 = int(t.min())
        order = np.argsort((sid << 31) | (t - t0), kind="stable") if int(t.max()) - t0 < (1 << 31) \
            else np.lexsort((t, sid))
        k, t, v = sid[order], t[order], v[order]
        first = np.r_[True, k[1:] != k[:-1]]
        last = np.r_[k[1:] != k[:-1], True]
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
        bucket = -(-t // self.step) * self.step
        use = fresh & np.isfinite(v)
        starts = np.nonzero(np.r_[True, (k[1:] != k[:-1]) | (bucket[1:] != bucket[:-1])])[0]
        inc = np.add.reduceat(np.where(valid, dv, 0.0), starts)
        span = np.add.reduceat(np.where(valid, dt, 0.0), starts)
        nval = np.add.reduceat(use.astype(np.float64), starts)
        total = np.add.reduceat(np.where(use, v, 0.0), starts)
        mean = np.where(nval > 0, total / np.maximum(nval, 1), np.nan)
        rate = np.where(span > 0, inc * 1000.0 / np.where(span > 0, span, 1.0), np.nan)
        # remember each series' newest sample
        lk, lt, lv = k[last], t[last], v[last]
        newer = lt > self.last_t[lk]
        self.last_t[lk[newer]] = lt[newer]
        self.last_v[lk[newer]] = lv[newer]
        keep = (span > 0) | (nval > 0)
        sids = k[starts][keep]
        out: dict[str, pa.Array] = {
            "sid": pa.array(sids), "bucket": pa.array(bucket[starts][keep]), "rate": pa.array(rate[keep]),
            "inc": pa.array(np.where(span > 0, inc, np.nan)[keep]), "span_ms": pa.array(span[keep]),
            "mean": pa.array(mean[keep]),
        }
        out.update(self.registry.columns(sids, ["host", "metric", *self.registry.extra]))
        return pa.table(out)


COUNTER_RATES_VIEW = """
SELECT ts, source, host, metric,
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
    WINDOW w AS (PARTITION BY source, host, metric, labels ORDER BY ts)
)
"""


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
