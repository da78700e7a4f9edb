"""The flow in one object: parse → store → analytics window → detectors → alert manager → sinks.

Service mode and replay share this class; only who calls :meth:`Pipeline.ingest` and what clock
decides when :meth:`Pipeline.evaluate` runs differ. Each parsed table goes to the store (the
durable copy) and is fed to the engine, which keeps the rows of the metrics it watches until the
next pass analyses them: a pass costs what arrived since the last one, never a re-scan of Parquet
or of a window. ``incremental=False`` keeps the former path — a bounded in-memory window of recent
rows registered in DuckDB and re-queried at every pass — to prove both give the same findings.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from analytics.findings import Finding
from analytics.lifecycle import AlertManager
from collector.capture import CaptureItem, CaptureStream
from collector.catalog import Catalog, UserMapping
from collector.errors import CaptureError
from collector.schema import TABLE_SCHEMAS, Alert, RawRecord, alerts_table, iso
from collector.store import Store
from collector.unmapped import unmapped_metrics_view
from hciwatch.config import AppConfig
from hciwatch.parse_pool import (
    FeedSets,
    ParseOutcome,
    ParsePool,
    RowRuns,
    SplitRuns,
    default_workers,
    parse_one,
    prestart_workers,
)

if TYPE_CHECKING:
    from analytics.engine import Engine

log = logging.getLogger(__name__)

AlertSink = Callable[[Sequence[Alert]], None]


@dataclass
class PipelineStats:
    """What the flow has done; printed by replay and exported as the service's own metrics."""

    records_read: int = 0
    records_rejected: int = 0
    reject_reasons: Counter[str] = field(default_factory=Counter)
    rejects: list[str] = field(default_factory=list)  # first few precise messages
    line_errors: int = 0  # skipped parts of otherwise good payloads
    samples_stored: int = 0
    ip_observations_stored: int = 0
    records_by_kind: Counter[str] = field(default_factory=Counter)
    evaluations: int = 0
    idle_skips: int = 0  # replay jumps over spans without records
    samples_by_target: Counter[str] = field(default_factory=Counter)
    ip_observations_by_target: Counter[str] = field(default_factory=Counter)
    rejected_by_target: Counter[str] = field(default_factory=Counter)
    errors_by_target: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)  # "kind/status" → count
    max_kept_messages: int = 50

    def reject(self, reason: str, message: str) -> None:
        self.records_rejected += 1
        self.reject_reasons[reason] += 1
        if len(self.rejects) < self.max_kept_messages:
            self.rejects.append(message)


class Window:
    """Recent rows of one table, kept as Arrow chunks and trimmed by age.

    ``convert`` reshapes each chunk once as it arrives (not the whole window at every pass).
    """

    def __init__(
        self,
        name: str,
        span: timedelta,
        convert: Callable[[pa.Table], pa.Table] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.name = name
        self.span = span
        # memory bound: past it the oldest chunks go first (a 1M-series target must not take the
        # window, and the service, past its budget); detectors then see less history, counted
        self.max_bytes = max_bytes
        self.bytes = 0
        self.shed_rows = 0
        self._convert = convert
        self._chunks: list[tuple[datetime, pa.Table]] = []
        self._dirty = True
        self._empty = TABLE_SCHEMAS[name].empty_table()
        if convert is not None:
            self._empty = convert(self._empty)
        self._table: pa.Table = self._empty

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            newest = pc.max(table.column("ts")).as_py()
            chunk = self._convert(table) if self._convert else table
            self._chunks.append((newest, chunk))
            self.bytes += chunk.nbytes
            self._dirty = True
            while self.max_bytes is not None and self.bytes > self.max_bytes and len(self._chunks) > 1:
                _, old = self._chunks.pop(0)
                self.bytes -= old.nbytes
                self.shed_rows += old.num_rows

    def trim(self, now: datetime) -> None:
        cutoff = now - self.span
        keep = [(t, tb) for t, tb in self._chunks if t >= cutoff]
        if len(keep) != len(self._chunks):
            self._chunks = keep
            self.bytes = sum(tb.nbytes for _, tb in keep)
            self._dirty = True

    def table(self) -> pa.Table:
        if self._dirty:
            chunks = [tb for _, tb in self._chunks]
            self._table = pa.concat_tables(chunks) if chunks else self._empty
            self._dirty = False
        return self._table

    @property
    def rows(self) -> int:
        return sum(tb.num_rows for _, tb in self._chunks)


# DuckDB imports an Arrow MAP column an order of magnitude slower than the same data as a list of
# key/value structs, and converts the whole column before filters apply. The window therefore
# hands labels over as entries and rebuilds the MAP in a view, i.e. only for rows that pass the
# detectors' filters (time range, metric).
SAMPLES_WINDOW_VIEW = """
CREATE OR REPLACE VIEW samples AS
SELECT ts, source, host, metric, map_from_entries(labels) AS labels, value FROM _samples_window
"""
_ENTRIES = pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))


def _labels_as_entries(table: pa.Table) -> pa.Table:
    i = table.schema.get_field_index("labels")
    return table.set_column(i, pa.field("labels", _ENTRIES), table.column("labels").cast(_ENTRIES))


DEFER_MAX_ROWS = 65_536
"""Rows gathered under ``defer_rows`` are committed at least this often (a store-only backfill
has no passes to commit before; the store's own batch is larger)."""


class Pipeline:
    """Wires one configured flow. Not thread-safe: call from one task/thread."""

    def __init__(
        self,
        cfg: AppConfig,
        store: Store,
        *,
        alert_sinks: Iterable[AlertSink] = (),
        state_path: Path | None = None,
        bootstrap_from_store: bool = False,
        call_interval: timedelta | None = None,
        store_alerts: bool = True,
        flush_store: Callable[[], object] | None = None,
        window_max_bytes: int | None = None,
        incremental: bool = True,
        defer_rows: bool = False,
        feed_engine: bool = True,
    ) -> None:
        """``defer_rows`` (replay): rows of consecutive records are gathered and handed to the
        store and the engine as one table just before the next pass (:meth:`commit_rows`) instead
        of record by record — the same rows in the same order, one slice per parse chunk
        (:class:`~hciwatch.parse_pool.RowRuns`), at a fraction of the per-table cost. Incremental
        mode only: the former window trims by chunk. ``feed_engine=False`` (a store-only
        backfill) keeps no rows for the detectors."""
        if defer_rows and not incremental:
            raise ValueError("defer_rows needs the incremental engine (the re-query window trims per chunk)")
        self.cfg = cfg
        self.store = store
        self.catalog = Catalog(
            UserMapping(m.native, m.canonical, m.unit, m.counter) for m in cfg.collector.metric_mappings
        )
        if self.catalog.user_mappings:  # mapped names are not "unmapped" in the store's view
            store.write_catalog(unmapped_metrics_view(self.catalog))
        self._window_max_bytes = window_max_bytes
        # a store-only flow builds the detectors only if a pass is asked for after all: their
        # imports (scikit-learn, SciPy) are ~100 MB and a second of start-up it does not need
        self._engine: Engine | None = self._new_engine() if feed_engine else None
        self.incremental = incremental
        self.manager = AlertManager(cfg.analytics, state_path, site=cfg.collector.site.name)
        self.alert_sinks = list(alert_sinks)
        self.stats = PipelineStats()
        # The service writes the alerts table from its outbox and flushes through its WAL
        # checkpoint; replay keeps the direct path.
        self.store_alerts = store_alerts
        self._flush_store = flush_store
        a = cfg.analytics
        # The engine is incremental (it keeps each series' last sample itself): each pass reads only
        # the steps since its last call, so the window needs those plus settle and a margin.
        # ``call_interval``: how often evaluate() is really called (replay may call less often).
        every = max(a.evaluation_interval, call_interval or a.evaluation_interval)
        span = a.settle + 2 * every + timedelta(minutes=1)
        self.windows = (
            {}
            if incremental
            else {
                "samples": Window("samples", span, _labels_as_entries, window_max_bytes),
                "ip_observations": Window("ip_observations", span, max_bytes=window_max_bytes),
            }
        )
        self._bootstrap_from_store = bootstrap_from_store
        self._con: duckdb.DuckDBPyConnection | None = None
        self._external_findings: list[Finding] = []
        self._views_ready = False
        self.defer_rows = defer_rows
        self.feed_engine = feed_engine
        self._pending = {"samples": RowRuns(), "ip_observations": RowRuns()}
        self._split = SplitRuns()  # the pending samples' rows the engine keeps, cut by the workers

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The window re-query's DuckDB connection (``incremental=False``), opened on first use:
        an incremental flow never queries it, and opening one is ~40 ms of a replay's start."""
        if self._con is None:
            self._con = duckdb.connect(":memory:")
            self._con.execute("SET threads TO 2")
        return self._con

    def _new_engine(self) -> Engine:
        from analytics.engine import Engine

        return Engine(self.cfg.analytics, self.cfg.collector.networks, fed_max_bytes=self._window_max_bytes)

    @property
    def engine(self) -> Engine:
        """The detectors (built on first use when the flow was made with ``feed_engine=False``)."""
        if self._engine is None:
            self._engine = self._new_engine()
        return self._engine

    @engine.setter
    def engine(self, value: Engine) -> None:
        self._engine = value

    # -- ingest --------------------------------------------------------------------------------

    def ingest(self, rec: RawRecord, *, where: str = "") -> bool:
        """Parse one raw record and store what it yields; False when it was rejected."""
        return self.apply(rec, parse_one(rec, self.catalog), where=where)

    def apply(self, rec: RawRecord, outcome: ParseOutcome, *, where: str = "") -> bool:
        """Store what parsing ``rec`` gave (parsed here or in a :class:`ParsePool` worker)."""
        self.stats.records_read += 1
        self.stats.records_by_kind[rec.kind] += 1
        loc = f"{where} " if where else ""
        if outcome.rejected is not None:
            reason, why = outcome.rejected
            self.stats.reject(reason, f"{loc}[{rec.target}] {why}")
            self.stats.rejected_by_target[rec.target] += 1
            return False
        if outcome.errors:
            self.stats.line_errors += len(outcome.errors)
            self.stats.errors_by_target[rec.target] += len(outcome.errors)
            for err in outcome.errors[:3]:
                if len(self.stats.rejects) < self.stats.max_kept_messages:
                    self.stats.rejects.append(f"{loc}[{rec.target}] {rec.kind}: skipped part: {err}")
        ns, ni = outcome.sample_rows, outcome.ip_observation_rows
        if self.defer_rows:
            # a pool's outcome is handed on by origin (its slice is never cut, see _PooledOutcome)
            pending = self._pending
            if ns:
                if outcome.samples_origin is not None:
                    pending["samples"].add_rows(outcome.samples_origin, ns)
                else:
                    pending["samples"].add(outcome.samples)
            if ns or outcome.split is not None:  # (a record without samples keeps a run of them going)
                self._split.add(outcome.split)
            if ni:
                if outcome.ip_observations_origin is not None:
                    pending["ip_observations"].add_rows(outcome.ip_observations_origin, ni)
                else:
                    pending["ip_observations"].add(outcome.ip_observations)
            if pending["samples"].rows + pending["ip_observations"].rows >= DEFER_MAX_ROWS:
                self.commit_rows()
        else:
            if ns:
                self._store_rows("samples", outcome.samples)
            if ni:
                self._store_rows("ip_observations", outcome.ip_observations)
        stats = self.stats
        stats.samples_stored += ns
        stats.ip_observations_stored += ni
        stats.samples_by_target[rec.target] += ns
        stats.ip_observations_by_target[rec.target] += ni
        return True

    def _store_rows(
        self, name: str, table: pa.Table, split: tuple[FeedSets, list[pa.Table | None]] | None = None
    ) -> None:
        self.store.append(name, table)
        if not self.feed_engine:
            return
        if self.incremental:
            self.engine.feed(name, table, split)
        else:
            self.windows[name].add(table)

    def feed_sets(self) -> FeedSets:
        """The metric sets a parse pool should cut this flow's samples by (:class:`ParsePool`'s
        ``feed_sets``): the engine's when rows are gathered for it, else none."""
        if not (self.defer_rows and self.feed_engine and self.incremental):
            return ()
        return self.engine.feed_sets

    def commit_rows(self) -> None:
        """Hand the rows gathered under ``defer_rows`` to the store and the engine, in order."""
        for name, runs in self._pending.items():
            table = runs.take()
            split = self._split.take() if name == "samples" else None
            if table is not None:
                self._store_rows(name, table, split)

    def add_findings(self, findings: Iterable[Finding]) -> None:
        """Findings made outside the detectors (source_down from the scheduler) for the next pass."""
        self._external_findings.extend(findings)

    # -- evaluate ------------------------------------------------------------------------------

    def evaluate(self, now: datetime) -> list[Alert]:
        """Run every detector at ``now``; returns (and dispatches) the alert state changes."""
        self.commit_rows()
        for name, win in self.windows.items():
            win.trim(now)
            self.con.register(f"_{name}_window", win.table())
        if self.incremental:
            self._views_ready = True  # the engine reads what it was fed, not these views
        if not self._views_ready:
            self.con.execute(SAMPLES_WINDOW_VIEW)
            self.con.execute("CREATE OR REPLACE VIEW ip_observations AS SELECT * FROM _ip_observations_window")
            self._views_ready = True
        if self._bootstrap_from_store:
            # first pass after a (re)start: the engine rebuilds baselines from stored history
            self.flush_store()
            # the window is read once (on object storage: downloaded once, not once per chunk);
            # a read that fails (lake unreachable) leaves the flag set, so the next pass retries it
            cfg = self.cfg.analytics
            since = now - cfg.bootstrap_window - cfg.settle - cfg.evaluation_interval
            store_con, scratch = self.store.connect_window(since)
            self._bootstrap_from_store = False
            try:
                if self.incremental:  # rows fed meanwhile are in the store: the engine drops them
                    findings = list(self.engine.evaluate_fed(now, store_con))
                else:
                    findings = list(self.engine.evaluate(store_con, now))
            finally:
                store_con.close()
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)
        elif self.incremental:
            findings = list(self.engine.evaluate_fed(now))
        else:
            findings = list(self.engine.evaluate(self.con, now))
        findings.extend(self._external_findings)
        self._external_findings.clear()
        changes = self.manager.update(findings, now)
        self.stats.evaluations += 1
        if changes:
            if self.store_alerts:
                self.store.append("alerts", alerts_table(changes))
            for a in changes:
                self.stats.alerts[f"{a.kind.value}/{a.status.value}"] += 1
            for sink in self.alert_sinks:
                sink(changes)
        return changes

    def rebuild_from_store(self, state: bytes | None) -> None:
        """Start over as a network domain's new owner: detectors from stored history, lifecycle from ``state``.

        The engine's baselines and fed rows are dropped (they may be from before this instance
        lost the domain, or empty on a standby) and rebuilt at the next pass from the store (one
        bootstrap read of the lake); ``state`` is the lifecycle state the last owner saved (None:
        keep this instance's own), so its open incidents continue instead of firing again.
        """
        if self._engine is not None:
            self._engine.close()
        self._engine = self._new_engine()
        self._bootstrap_from_store = True
        self._external_findings.clear()
        if state is not None:
            self.manager.load_bytes(state)

    def flush_store(self) -> None:
        """Write buffered rows now (through the owner's checkpointed flush when it has one)."""
        self.commit_rows()
        if self._flush_store is None:
            self.store.flush()
        else:
            self._flush_store()

    def close(self) -> None:
        self.commit_rows()
        if self._flush_store is None:
            self.store.close()
        else:  # the owner flushed; rows a failed write kept are in its log and replayed at start
            self.store.close(flush=False)
        self.manager.save()
        if self._con is not None:
            self._con.close()
        if self._engine is not None:
            self._engine.close()

    @property
    def shed_rows(self) -> int:
        """Rows dropped unanalysed to keep the memory bound (window or fed rows)."""
        fed = self._engine.fed.values() if self._engine is not None else ()
        return sum(w.shed_rows for w in self.windows.values()) + sum(f.shed_rows for f in fed)


# ---------------------------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """What a replay did: counts, rejected records with reasons, every alert state change."""

    stats: PipelineStats
    alerts: list[Alert]
    first_ts: datetime | None
    last_ts: datetime | None
    data_dir: Path


def _jsonl_sink(fh: IO[str]) -> AlertSink:
    def sink(changes: Sequence[Alert]) -> None:
        for a in changes:
            fh.write(a.to_json_line() + "\n")
        fh.flush()

    return sink


def replay_records(
    items: Iterable[RawRecord | CaptureItem],
    cfg: AppConfig,
    data_dir: Path,
    alerts_out: Path | None = None,
    *,
    on_progress: Callable[[datetime], None] | None = None,
    extra_sinks: Iterable[AlertSink] = (),
    eval_every: timedelta | None = None,
    workers: int | None = None,
    incremental: bool = True,
    evaluate: bool = True,
) -> ReplayResult:
    """Push records through the whole flow on a virtual clock; deterministic for a given input.

    The detectors run at every ``analytics.evaluation_interval`` boundary the records' time
    crosses (or every ``eval_every``, a multiple of it, to replay faster: the engine analyses
    every step since its last call either way, so findings are the same and only the time an
    alert change is stamped with moves to the next call), and once more at the end.

    ``workers`` parser processes (default: 2 on a machine with two or more cores) parse ahead of
    the flow; results are applied in input order, so the outcome does not depend on it.
    ``incremental=False`` evaluates through the former window re-query (same findings; slower).
    ``evaluate=False`` stores only (a backfill or import of history): no detector pass, no alert;
    the stored rows are the same as with the detectors on.

    No write-ahead log here, on purpose: the capture file is the durable source and a replay is
    deterministic, so a replay that dies is simply run again into a fresh data dir (rows of the
    batch in flight are lost with the process, as the README's replay section says).
    """
    n_workers = default_workers() if workers is None else workers
    # the workers' forkserver imports the parsers on the other core while this process sets up
    prestart_workers(n_workers, items.path if isinstance(items, CaptureStream) and not items.started else None)
    from analytics.views import analyst_views

    store = Store(
        data_dir,
        batch_rows=cfg.collector.store.batch_rows,
        extra_views=analyst_views(cfg.collector.networks),
        write_behind=True,
        site=cfg.collector.site.name,
    )
    collected: list[Alert] = []
    sinks: list[AlertSink] = [collected.extend, *extra_sinks]
    out_fh = open(alerts_out, "w", encoding="utf-8") if alerts_out else None  # noqa: SIM115
    if out_fh is not None:
        sinks.append(_jsonl_sink(out_fh))
    pipe = Pipeline(
        cfg,
        store,
        alert_sinks=sinks,
        call_interval=eval_every,
        incremental=incremental,
        defer_rows=incremental,
        feed_engine=evaluate,
    )
    step = eval_every or cfg.analytics.evaluation_interval
    idle = idle_gap(cfg, step)
    next_eval: datetime | None = None
    first: datetime | None = None
    last: datetime | None = None
    try:
        with ParsePool(pipe.catalog.user_mappings, workers=n_workers, feed_sets=pipe.feed_sets()) as pool:
            # one capture file not read yet: the workers read its lines (the JSON decoding too)
            parsed = (
                pool.parse_capture(items)
                if isinstance(items, CaptureStream) and not items.started
                else pool.parse(_located(items))
            )
            for rec, where, outcome in parsed:
                if rec is None:
                    assert isinstance(where, CaptureError)
                    pipe.stats.records_read += 1
                    _reject_capture(pipe.stats, where)
                    continue
                assert outcome is not None and isinstance(where, str)
                if first is None:
                    first = rec.ts
                    next_eval = _align(rec.ts, step) + step
                assert next_eval is not None
                while rec.ts >= next_eval:
                    if not evaluate:  # store only: the clock just follows the records
                        next_eval = max(next_eval, _align(rec.ts, step))
                    elif last is not None and next_eval - last > idle and rec.ts - next_eval >= step:
                        # nothing arrived for `idle`: jump to the next record instead of a pass per step
                        next_eval = _align(rec.ts, step)
                        pipe.commit_rows()
                        pipe.engine.skip_idle(next_eval)
                        pipe.stats.idle_skips += 1
                    if evaluate:
                        pipe.evaluate(next_eval)
                    if on_progress:
                        on_progress(next_eval)
                    next_eval += step
                pipe.apply(rec, outcome, where=where)
                last = rec.ts
        if last is not None and evaluate:
            pipe.evaluate(last)
    finally:
        pipe.close()
        if out_fh is not None:
            out_fh.close()
    store.write_catalog()
    result = ReplayResult(pipe.stats, collected, first, last, Path(data_dir))
    _write_json_atomic(
        Path(data_dir) / INGEST_SUMMARY_FILE,
        {
            **summarize(result),
            "records_by_kind": dict(sorted(pipe.stats.records_by_kind.items())),
            "rejected": pipe.stats.rejects,
        },
    )
    return result


IDLE_GAP = timedelta(hours=1)
"""After this long without records, a replay stops evaluating step by step and jumps to the next record."""


def idle_gap(cfg: AppConfig, step: timedelta) -> timedelta:
    """How long a replay keeps evaluating past its last record before it skips ahead.

    Long enough for alerts to resolve and for every rate window to close after the data ends;
    then a gap of days or months costs one jump, not a detector pass per minute.
    """
    a = cfg.analytics
    return max(IDLE_GAP, a.max_rate_gap + a.settle + 2 * step)


INGEST_SUMMARY_FILE = "ingest-summary.json"  # read by the report's "what was collected" header


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _located(items: Iterable[RawRecord | CaptureItem]) -> Iterator[tuple[RawRecord | None, str | CaptureError]]:
    """Records with where they came from; a bad capture line as ``(None, its error)``."""
    for item in items:
        if not isinstance(item, CaptureItem):
            yield item, ""
        elif item.error is not None:
            yield None, item.error
        else:
            assert item.record is not None
            yield item.record, f"{item.file}:{item.line}"


def _align(ts: datetime, step: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=ts.tzinfo)
    n = (ts - epoch) // step
    return epoch + n * step


def _reject_capture(stats: PipelineStats, err: CaptureError) -> None:
    reason = err.reason.split(":")[0].split("(")[0].strip()
    stats.reject(reason, str(err))


def summarize(result: ReplayResult) -> dict[str, Any]:
    """A JSON-able summary of a replay (printed by the CLI, asserted in tests)."""
    s = result.stats
    return {
        "records_read": s.records_read,
        "records_rejected": s.records_rejected,
        "reject_reasons": dict(sorted(s.reject_reasons.items())),
        "skipped_parts": s.line_errors,
        "samples_stored": s.samples_stored,
        "ip_observations_stored": s.ip_observations_stored,
        "evaluations": s.evaluations,
        "alerts": dict(sorted(s.alerts.items())),
        "from": iso(result.first_ts) if result.first_ts else None,
        "to": iso(result.last_ts) if result.last_ts else None,
    }


def iter_records(items: Iterable[CaptureItem]) -> Iterator[RawRecord]:
    """Only the good records of a capture stream."""
    for it in items:
        if it.record is not None:
            yield it.record
