"""Runs every detector over the store, incrementally, on a fixed step grid.

``Engine.evaluate(con, now)`` is called every ``evaluation_interval`` of (virtual or wall) time.
It analyses the complete steps between its cursor and ``now − settle`` — reading only rows with
``ts`` in that window (plus ``max_rate_gap`` before it, so counters find their predecessor) — and
returns the findings of all detectors. Baselines, holdings and usage histories live in memory and
are updated from the new rows only, which keeps a call cheap however long the store's history.

Calling less often is fine: a call catches up over every step since the last one, exactly as if
it had been called at each step. The first call after a (re)start reads ``bootstrap_window`` of
history to rebuild baselines and trends (in chunks, so memory stays bounded); alert state itself
is restored by :class:`analytics.lifecycle.AlertManager`.

``con`` is any DuckDB connection with ``samples`` and ``ip_observations`` views or tables in the
hciwatch schemas; the engine never writes to it.

Fed mode (what replay and the service use): instead of handing the engine a connection over a
window of recent rows at every pass, the flow hands it each parsed table as it arrives
(:meth:`Engine.feed`). The engine keeps only the rows of the metrics it watches, and only until
the pass that analyses them (:meth:`Engine.evaluate_fed`), so a pass scans exactly the rows that
arrived since the previous one — not the window again — while the same step, baseline and
holding state carries everything older. A replay's parse workers cut each record's samples by
:attr:`Engine.feed_sets` already, so there the engine only appends what it is handed.
Both modes give the same findings (``tests/replay`` and
``tests/analytics/test_engine_fed.py`` check it); the connection mode stays for cold start
(bootstrap from the store) and the analyst-side tools.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from analytics.anomaly import SERIES_EXPR, MetricAnomalyDetector
from analytics.congestion import CONGESTION_METRICS, PRIORITY_EXPR, SUB_EXPR, CongestionDetector, CongestionScore
from analytics.duplicate_ip import LB_INFO_EXPR, LB_INFO_METRIC, DuplicateIpDetector
from analytics.findings import Finding
from analytics.ip_pools import POOL_EXPR, POOL_METRICS, SCOPE_EXPR, PoolDetector, PoolStat
from analytics.networks import NetworkIndex, NetworkLike, NetworkPlan, compile_networks, declare_metallb_range
from analytics.observations import HELD_SQL, NEIGHBOR_SQL, ObservationTracker, split_observations
from analytics.overlap import OverlapDetector
from analytics.rates import (
    RawRows,
    SeriesKeys,
    SeriesRegistry,
    StepAccumulator,
    epoch_ms,
    in_sets,
    query_table,
    sql_str,
    window_sql,
)
from analytics.settings import AnalyticsSettings
from collector.schema import TABLE_SCHEMAS, to_ms

# Samples are read and stepped in pieces of about this much data time (a whole number of steps):
# a catch-up over an hour of a large site then works on arrays of a few MB that the allocator
# reuses, instead of touching fresh memory for one huge array per column.
SAMPLE_CHUNK_MS = 600_000
STALE_MIN = 1000  # fewer stale series than this are not worth a compaction

# MetalLB ranges the clusters declare (IPAddressPool CRDs read by the Kubernetes inventory)
DECLARED_RANGES_SQL = """
SELECT DISTINCT labels['cluster'] AS cluster, labels['network'] AS network, labels['pool'] AS pool,
       labels['addresses'] AS addresses,
       labels['auto_assign'] AS auto_assign
FROM samples
WHERE ts > make_timestamptz($lo_us) AND ts <= make_timestamptz($hi_us)
  AND metric = 'k8s.metallb_pool_range_info'
"""
DECLARED_RANGES_METRIC = "k8s.metallb_pool_range_info"
_DECLARED_SET = frozenset([DECLARED_RANGES_METRIC])


def ts_ms(table: pa.Table) -> npt.NDArray[np.int64]:
    """A table's ``ts`` column as int64 ms since the epoch (viewed, not cast: :func:`epoch_ms`)."""
    return epoch_ms(table.column("ts"))


def _chunks(lo: int, hi: int, size: int) -> Iterator[tuple[int, int]]:
    """(a, b] pieces of (lo, hi] whose ends fall on multiples of size (except the last)."""
    a = lo
    while a < hi:
        b = min(hi, (a // size + 1) * size)
        yield a, b
        a = b


class FedRows:
    """Rows of one table fed since they were last analysed, as Arrow chunks (one per fed table).

    Chunks stay as they were fed (never concatenated into one): a chunk is one parsed record,
    which lets :meth:`SeriesKeys.chunk_keys` recognise a target's repeated layout, and a chunk
    carries its series keys once computed, so rows kept for the next pass are not keyed twice.

    Bounded: past ``max_bytes`` the oldest chunks go first (counted in ``shed_rows``), as the
    pipeline's window did — a target with a million series must not take the service past its
    memory budget; the detectors then miss those rows, and the count says so.
    """

    def __init__(self, name: str, max_bytes: int | None) -> None:
        self.empty = TABLE_SCHEMAS[name].empty_table()
        self.max_bytes = max_bytes
        self.chunks: list[pa.Table] = []
        self.keys: list[npt.NDArray[np.uint64] | None] = []  # per chunk, once computed
        self.ts: list[npt.NDArray[np.int64]] = []  # per chunk: ts in ms (decoded once, at feed)
        self.spans: list[tuple[int, int]] = []  # per chunk: (min ts, max ts) in ms
        # per chunk: nbytes (asking Arrow again walks every buffer); only under a bound (0 without:
        # it is ~40 µs a table, and nothing else reads it)
        self.sizes: list[int] = []
        self.bytes = 0
        self.shed_rows = 0

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        ts = ts_ms(table)
        self.chunks.append(table)
        self.keys.append(None)
        self.ts.append(ts)
        self.spans.append((int(ts.min()), int(ts.max())))
        size = table.nbytes if self.max_bytes is not None else 0
        self.sizes.append(size)
        self.bytes += size
        while self.max_bytes is not None and self.bytes > self.max_bytes and len(self.chunks) > 1:
            old = self.chunks.pop(0)
            self.keys.pop(0)
            self.ts.pop(0)
            self.spans.pop(0)
            self.bytes -= self.sizes.pop(0)
            self.shed_rows += old.num_rows

    def table(self) -> pa.Table:
        if not self.chunks:
            return self.empty
        if len(self.chunks) == 1:
            return self.chunks[0]
        return pa.concat_tables(self.chunks)

    def values(self) -> npt.NDArray[np.float64]:
        """``value`` of every fed row, in :meth:`table` order."""
        vs = [np.asarray(c.column("value").to_numpy(), np.float64) for c in self.chunks]
        if len(vs) == 1:
            return vs[0]
        return np.concatenate(vs) if vs else np.zeros(0, np.float64)

    def ts_ms(self) -> npt.NDArray[np.int64]:
        """``ts`` (ms) of every fed row, in :meth:`table` order."""
        if len(self.ts) == 1:
            return self.ts[0]
        return np.concatenate(self.ts) if self.ts else np.zeros(0, np.int64)

    def series_keys(self, keys: SeriesKeys, con: Any, registry: SeriesRegistry) -> npt.NDArray[np.uint64]:
        """Series keys of every fed row (in :meth:`table` order), keying only new chunks."""
        todo = [i for i, k in enumerate(self.keys) if k is None]
        if todo:
            for i, k in zip(todo, keys.chunk_keys([self.chunks[i] for i in todo], con, registry), strict=True):
                self.keys[i] = k
        done = [k for k in self.keys if k is not None]
        return np.concatenate(done) if done else np.zeros(0, np.uint64)

    def series_sids(self, keys: SeriesKeys, registry: SeriesRegistry) -> npt.NDArray[np.int64] | None:
        """Series ids of every fed row (after :meth:`series_keys`), or None if some are unknown."""
        return keys.sids([k for k in self.keys if k is not None], registry)

    def forget_keys(self) -> None:
        """Key the chunks again at the next pass (after series were evicted)."""
        self.keys = [None] * len(self.chunks)

    def drop_through(self, hi_ms: int) -> None:
        """Forget rows with ``ts`` ≤ ``hi_ms`` (analysed, or too late to be)."""
        chunks: list[pa.Table] = []
        keys: list[npt.NDArray[np.uint64] | None] = []
        tss: list[npt.NDArray[np.int64]] = []
        spans: list[tuple[int, int]] = []
        sizes: list[int] = []
        for tbl, k, ts, (lo, hi), size in zip(self.chunks, self.keys, self.ts, self.spans, self.sizes, strict=True):
            if hi <= hi_ms:
                continue
            if lo > hi_ms:
                chunks.append(tbl)
                keys.append(k)
                tss.append(ts)
                spans.append((lo, hi))
                sizes.append(size)
                continue
            m = ts > hi_ms
            part = tbl.filter(pa.array(m))
            chunks.append(part)
            keys.append(None if k is None else k[m])
            tss.append(ts[m])
            spans.append((int(ts[m].min()), hi))
            sizes.append(part.nbytes if self.max_bytes is not None else 0)
        self.chunks, self.keys, self.ts, self.spans, self.sizes = chunks, keys, tss, spans, sizes
        self.bytes = sum(sizes)

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.chunks)


class _SqlReader:
    """Rows of a span read from a DuckDB connection (cold start, analyst tools, the former path)."""

    def __init__(self, con: Any, sql: str) -> None:
        self.con = con
        self.sql = sql

    def samples(self, lo_ms: int, hi_ms: int) -> pa.Table:
        return query_table(self.con, self.sql, {"lo_us": lo_ms * 1000, "hi_us": hi_ms * 1000})

    def observations(self, lo_ms: int, hi_ms: int) -> tuple[pa.Table, pa.Table]:
        window = {"lo_us": lo_ms * 1000, "hi_us": hi_ms * 1000}
        return query_table(self.con, HELD_SQL, window), query_table(self.con, NEIGHBOR_SQL, window)

    def declared_ranges(self, lo_ms: int, hi_ms: int) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.con.execute(
            DECLARED_RANGES_SQL, {"lo_us": lo_ms * 1000, "hi_us": hi_ms * 1000}
        ).fetchall()
        return rows


class _FedReader:
    """The same columns as :class:`_SqlReader`, computed in Arrow from the rows fed since the
    last pass: series keys come from :class:`SeriesKeys`, so DuckDB is asked only about series
    never seen before."""

    def __init__(self, engine: Engine, obs: pa.Table) -> None:
        t0 = time.perf_counter()
        self.con = engine._fed_connection()
        self.obs = obs
        self.declared = engine.fed["declared_ranges"].table()
        self.declared_ts = engine.fed["declared_ranges"].ts_ms()
        fed = engine.fed["samples"]
        if fed.chunks:
            self.k = fed.series_keys(engine.series, self.con, engine.registry)
            self.sid = fed.series_sids(engine.series, engine.registry)
            self.t = fed.ts_ms()
            self.v = fed.values()
        else:
            self.k = np.zeros(0, np.uint64)
            self.sid = None
            self.t = np.zeros(0, np.int64)
            self.v = np.zeros(0, np.float64)
        self.key_seconds = time.perf_counter() - t0

    def samples(self, lo_ms: int, hi_ms: int) -> RawRows:
        """The rows in (lo, hi] as numpy columns (what :meth:`StepAccumulator.process` reads)."""
        t, k, v, sid = self.t, self.k, self.v, self.sid
        if t.size and (int(t.min()) <= lo_ms or int(t.max()) > hi_ms):
            m = (t > lo_ms) & (t <= hi_ms)
            t, k, v = t[m], k[m], v[m]
            sid = None if sid is None else sid[m]
        return RawRows(k, t, v, sid)

    def observations(self, lo_ms: int, hi_ms: int) -> tuple[pa.Table, pa.Table]:
        return split_observations(self.obs, lo_ms, hi_ms)

    def declared_ranges(self, lo_ms: int, hi_ms: int) -> list[tuple[Any, ...]]:
        """:data:`DECLARED_RANGES_SQL` over the fed MetalLB range rows (a handful per scrape)."""
        tbl = self.declared
        if not tbl.num_rows:
            return []
        t = self.declared_ts
        out: set[tuple[Any, ...]] = set()
        for labels in tbl.filter((t > lo_ms) & (t <= hi_ms)).column("labels").to_pylist():
            d = dict(labels or [])
            out.add(tuple(d.get(k) for k in ("cluster", "network", "pool", "addresses", "auto_assign")))
        return list(out)


class Engine:
    """All detectors, one cursor. Not thread-safe: one caller evaluates at a time."""

    def __init__(
        self, settings: AnalyticsSettings, networks: Sequence[NetworkLike], *, fed_max_bytes: int | None = None
    ) -> None:
        self.settings = settings
        self.plans: list[NetworkPlan] = compile_networks(networks, settings.pools)
        self.index = NetworkIndex(self.plans)
        self.obs = ObservationTracker(settings)
        self.pools = PoolDetector(settings, self.plans, self.index)
        self.overlap = OverlapDetector(settings, self.plans, self.index)
        self.duplicates = DuplicateIpDetector(settings, self.index)
        self.congestion = CongestionDetector(settings)
        self.anomaly = MetricAnomalyDetector(settings)
        metrics = sorted(set(CONGESTION_METRICS) | set(POOL_METRICS) | set(self.anomaly.metrics) | {LB_INFO_METRIC})
        series = (
            (f"CASE WHEN metric IN ({', '.join(sql_str(m) for m in self.anomaly.metrics)}) THEN {SERIES_EXPR} END")
            if self.anomaly.metrics
            else "NULL::VARCHAR"
        )
        self.registry = SeriesRegistry(
            metrics,
            {
                "sub": SUB_EXPR,
                "priority": PRIORITY_EXPR,
                "pool": POOL_EXPR,
                "scope": SCOPE_EXPR,
                "series": series,
                "lbinfo": LB_INFO_EXPR,
            },
        )
        self.steps = StepAccumulator(settings.step_ms, int(settings.max_rate_gap.total_seconds() * 1000), self.registry)
        self.window_sql = window_sql(metrics)
        self.metrics = frozenset(metrics)
        # what :meth:`feed` sorts samples into, in this order: a parse pool given these cuts them
        # in its workers (the set follows the settings: anomaly metrics come from the config)
        self.feed_sets: tuple[frozenset[str], ...] = (_DECLARED_SET, self.metrics)
        self.fed = {
            "samples": FedRows("samples", fed_max_bytes),
            "ip_observations": FedRows("ip_observations", fed_max_bytes),
            "declared_ranges": FedRows("samples", fed_max_bytes),  # MetalLB IPAddressPool rows
        }
        self._fed_con: Any = None
        self.series = SeriesKeys()
        self.stale_ms = int(settings.max_rate_gap.total_seconds() * 1000) + 2 * settings.step_ms
        self.evicted_series = 0
        self.cursor: int | None = None
        self.last_eval_seconds = 0.0
        self.timings: dict[str, float] = {}

    def evaluate(self, con: Any, now: datetime) -> list[Finding]:
        """Analyse every complete step up to ``now`` (rows read from ``con``) and return the
        current findings."""
        return self._run(_SqlReader(con, self.window_sql), now)

    def _run(self, reader: _SqlReader | _FedReader, now: datetime) -> list[Finding]:
        t0 = time.perf_counter()
        s = self.settings
        step = s.step_ms
        hi = ((to_ms(now) - int(s.settle.total_seconds() * 1000)) // step) * step
        if self.cursor is None:
            boot = int(s.bootstrap_window.total_seconds() * 1000)
            self.cursor = ((hi - boot) // step) * step
        if hi < self.cursor:
            raise ValueError(
                f"evaluate() called with now={now.isoformat()} before the last evaluated step; "
                "use a new Engine to analyse an earlier time range"
            )
        timings: dict[str, float] = {}
        if hi > self.cursor:
            cur = self.cursor
            for a, b in _chunks(cur, hi, max(1, SAMPLE_CHUNK_MS // step) * step):
                raw = self._timed(timings, "samples_query", reader.samples, a, b)
                self._timed(timings, "declared_ranges", self._declared_ranges, reader.declared_ranges(a, b))
                tbl = self._timed(timings, "steps", self.steps.process, reader.con, raw, a * 1000, b * 1000)
                self._timed(timings, "congestion", self.congestion.process, tbl, b)
                self._timed(timings, "metric_anomaly", self.anomaly.process, tbl, b)
                self._timed(timings, "pool_metrics", self.pools.process_metrics, tbl)
                self._timed(timings, "lb_ports", self.duplicates.process_samples, tbl, b)
            held, nb = self._timed(timings, "ip_observations_query", reader.observations, cur, hi)
            self._timed(timings, "ip_observations", self.obs.fold, held, nb, hi, prune=False)
            bucket = self.pools.bucket_ms
            t = (cur // bucket + 1) * bucket
            while t <= hi:  # usage at every pool-bucket end in the window (past states included)
                self._timed(timings, "pool_usage", self.pools.sample_observed, self.obs, t)
                t += bucket
            self.obs.prune(hi)
            self.cursor = hi
        findings: list[Finding] = []
        findings += self._timed(timings, "pool_forecast", self.pools.evaluate, hi)
        findings += self._timed(timings, "overlap", self.overlap.evaluate, self.obs, hi)
        findings += self._timed(timings, "duplicate_ip", self.duplicates.evaluate, self.obs, hi)
        findings += self.congestion.findings()
        findings += self.anomaly.findings()
        self.timings = timings
        self.last_eval_seconds = time.perf_counter() - t0
        return findings

    def feed(
        self,
        name: str,
        table: pa.Table,
        split: tuple[tuple[frozenset[str], ...], Sequence[pa.Table | None]] | None = None,
    ) -> None:
        """Hand the engine rows as they arrive (``samples`` or ``ip_observations``).

        Samples of metrics no detector watches are dropped here, so the engine holds only what
        the next pass will read. ``split``: the rows of ``table`` in each of the sets it names,
        already cut (a replay's parse workers do it); used when those are :attr:`feed_sets`,
        else the engine sorts the rows itself.
        """
        if name == "samples" and split is not None and split[0] == self.feed_sets and table.num_rows:
            declared_rows, watched_rows = split[1]
            if declared_rows is not None:
                self.fed["declared_ranges"].add(declared_rows)
            if watched_rows is not None:
                self.fed["samples"].add(watched_rows)
            return
        if name == "samples" and table.num_rows:
            declared, mask = in_sets(table.column("metric"), [_DECLARED_SET, self.metrics])
            if declared.any():
                self.fed["declared_ranges"].add(table.filter(pa.array(declared)))
            if not mask.any():
                return
            if not mask.all():
                table = table.filter(pa.array(mask))
        self.fed[name].add(table)

    def evaluate_fed(self, now: datetime, con: Any = None) -> list[Finding]:
        """:meth:`evaluate` over the rows fed since the last pass, without a query (or over
        ``con`` — the store, at cold start); rows up to the new cursor are then forgotten."""
        try:
            if con is not None:
                return self.evaluate(con, now)
            t = time.perf_counter()
            reader = _FedReader(self, self.fed["ip_observations"].table())
            findings = self._run(reader, now)
            self.timings["series_keys"] = reader.key_seconds
            self.last_eval_seconds = time.perf_counter() - t
            return findings
        finally:
            if self.cursor is not None:
                for rows in self.fed.values():
                    rows.drop_through(self.cursor)
                self._evict_stale(self.cursor)

    def _evict_stale(self, now_ms: int) -> None:
        """Forget series whose newest sample is older than ``max_rate_gap`` + two steps.

        Their remembered sample can no longer pair with a new one (a longer gap gives no rate),
        so dropping the state changes no finding; a series that comes back is learnt afresh.
        Compacts only when a quarter of the series (and at least 1000) went stale, so the cost
        is amortised and memory follows the live series.
        """
        last_t = self.steps.last_t
        if last_t.size < STALE_MIN:
            return
        stale = last_t < now_ms - self.stale_ms
        n_stale = int(stale.sum())
        if n_stale < max(STALE_MIN, last_t.size // 4):
            return
        keep = np.flatnonzero(~stale)
        self.registry.retain(keep)
        self.steps.retain(keep)
        self.series.retain(set(self.registry.index))
        self.fed["samples"].forget_keys()  # rows kept for the next pass may name an evicted series
        self.evicted_series += n_stale

    def _fed_connection(self) -> Any:
        """A private DuckDB connection, used only to derive the metadata of series never seen
        before (the detectors' label expressions are SQL, shared with the analyst views)."""
        if self._fed_con is None:
            self._fed_con = duckdb.connect(":memory:")
            self._fed_con.execute("SET threads TO 1")
        return self._fed_con

    def close(self) -> None:
        """Release the fed-mode connection (the engine can still be used; it reopens)."""
        if self._fed_con is not None:
            self._fed_con.close()
            self._fed_con = None

    def _declared_ranges(self, rows: list[tuple[Any, ...]]) -> None:
        """Add the MetalLB ranges clusters declared in (lo, hi] to their network's plan, the pool
        detector and the overlap checks (AKS Arc: Microsoft says nothing else checks them). A range
        stays once declared: a deleted IPAddressPool keeps being accounted until a restart."""
        added = False
        for cluster, network, pool, addresses, auto in sorted(rows, key=lambda r: tuple(str(x) for x in r)):
            if not cluster or not pool or not addresses:
                continue
            plan = self.index.by_name.get(network or self.index.cluster_net.get(cluster, ""))
            if plan is None:
                continue  # a cluster on no configured network: nothing to account it against
            try:
                r = declare_metallb_range(plan, str(cluster), str(pool), str(addresses), auto_assign=auto != "false")
            except ValueError:
                continue  # the parser already reported the entry
            if r is not None:
                self.pools.add_range(plan, r)
                added = True
            self.pools.sync_reserves(plan)  # a configured pool the CRD says is autoAssign false
        if added:
            self.index.invalidate()
            self.overlap.refresh_config()

    def skip_idle(self, now: datetime) -> None:
        """Move the cursor to ``now`` without stepping through the time before it.

        For a span the caller knows holds no rows (a replay's gap between files months apart):
        stepping through it would cost one pass per step and find nothing. Baselines and
        histories are kept; rates never bridge the gap anyway (``max_rate_gap``).
        """
        s = self.settings
        hi = ((to_ms(now) - int(s.settle.total_seconds() * 1000)) // s.step_ms) * s.step_ms
        if self.cursor is not None and hi > self.cursor:
            self.obs.prune(hi)
            self.cursor = hi

    @staticmethod
    def _timed(timings: dict[str, float], name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t

    def pool_stats(self) -> list[PoolStat]:
        """Latest usage and forecast of every pool (for OTLP metrics / the API)."""
        return self.pools.snapshot()

    def congestion_scores(self) -> list[CongestionScore]:
        """Latest per-host congestion signals, baselines and scores (for OTLP metrics / the API)."""
        return self.congestion.snapshot()
