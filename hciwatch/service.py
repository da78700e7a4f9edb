"""The daemon (``hciwatch run``) and live capture (``hciwatch capture``).

Wiring, in the order data flows::

    Scheduler (pull targets, push sources) ──emit──▶ write-ahead log (fsync = accepted, acked)
        │                                                 │ byte-bounded queue
        │                                                 ▼
        │                                      Pipeline: parse, limits, Store buffers
        │                                                 │ flush: tagged Parquet, then checkpoint
        └─ target health ─▶ source_down findings ─┐       ▼
                                                   └──▶ Pipeline.evaluate (every interval)
                                                                   │ alert state changes
                                                                   ▼
                                                 Outbox (fsync = accepted) ──▶ one dispatcher per sink
                                                                 └──────────▶ alerts Parquet table

Pipeline work runs in a worker thread under one lock (parsing and detectors are CPU work and
must not stall the event loop that serves the API and keeps sockets alive). Every I/O loop keeps
a fault state (:mod:`collector.faults`): a full disk or the descriptor limit is retried with
backoff, shown on ``/readyz`` and ``/metrics``, and recovered from without a restart (see
:mod:`hciwatch.ingest`). SIGTERM/SIGINT stop the sources, parse what is queued for a bounded
time (the rest is in the log and replayed at start), flush, save the alert state, give the sinks
a short grace to deliver and shut everything down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from analytics.findings import Finding
from analytics.views import analyst_views
from collector.capture import CaptureWriter
from collector.config import resolve_secret
from collector.errors import ConfigError, StoreError
from collector.faults import FaultState, cancel_and_wait, loop_fault, supervise
from collector.lake import Lake
from collector.registry import get_source_spec
from collector.scheduler import Scheduler
from collector.schema import Alert, AlertKind, RawRecord, Severity, iso
from collector.sources.base import PullSource, PushSource
from collector.store import Store
from exporters.base import Exporter
from exporters.delivery import DeliveryPolicy, OutboxDispatcher
from exporters.feed import AlertFeed
from exporters.outbox import Outbox
from exporters.registry import build_exporter
from exporters.service_metrics import MetricsSnapshot, PipelineHealth
from hciwatch.api import create_app
from hciwatch.api_plan import add_plan_routes
from hciwatch.api_server import GuardedSite, HttpCounters, ServerLimits, make_runner
from hciwatch.buildinfo import hciwatch_version
from hciwatch.config import AppConfig
from hciwatch.dashboard_metrics import analytics_snapshot, build_metric_exporters, pipeline_health
from hciwatch.fleet import write_site_manifest
from hciwatch.ingest import ALERTS_TABLE_SINK, AlertTableWriter, DurableIngest, PayloadLimits
from hciwatch.ownership import DomainOwnership
from hciwatch.parse_pool import OffloadParser
from hciwatch.pipeline import Pipeline
from hciwatch.query import QueryLimits
from hciwatch.query_worker import QueryWorkers
from hciwatch.redact import redact
from hciwatch.selfmetrics import HciwatchCollector
from hciwatch.silences import SilenceStore, SilencingExporter

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5.0  # sinks get at most this (and never past STOP_DEADLINE_S) to deliver at stop
STOP_DEADLINE_S = 8.0  # SIGTERM to exit, everything included (the bound is 10 s; systemd's is 60 s)
STOP_TASKS_S = 2.0  # cancelled loops that have not ended by then are abandoned (logged with their stacks)
EXIT_WATCHDOG_S = 12.0  # from the stop request to a forced exit, whatever still runs (see _exit_watchdog)
STOP_WORKER_S = 3.0  # an in-flight parse or flush gets this long; then it is abandoned (the WAL has it)
MAX_UNSENT_ALERTS = 100_000
DRAIN_BUDGET_S = 1.0  # SIGTERM: parse queued records this long; the WAL keeps the rest
DRAIN_MAX_RECORD_BYTES = 1 << 20
CONSUME_BATCH_BYTES = 8 << 20  # one worker call parses at most about this much (shutdown waits for it)
MAINTENANCE_EVERY_S = 3600.0


def build_sources(cfg: AppConfig) -> tuple[list[PullSource], list[PushSource]]:
    """Instantiate every configured source through its registered spec."""
    pull: list[PullSource] = []
    push: list[PushSource] = []
    for settings in cfg.sources:
        spec = get_source_spec(settings.type)
        src = spec.factory(settings)
        if isinstance(src, PushSource):
            push.append(src)
        elif isinstance(src, PullSource):
            pull.append(src)
        else:  # a registered factory returned something else: a bug in that source
            raise ConfigError(f"source type {settings.type!r} built an object that is neither pull nor push")
    return pull, push


def source_down_findings(scheduler: Scheduler, now: datetime) -> list[Finding]:
    """One active ``source_down`` finding per target failing longer than its ``down_after``."""
    out = []
    for h in scheduler.down_targets(now):
        out.append(
            Finding(
                kind=AlertKind.SOURCE_DOWN,
                resource={"source": h.source, "target": h.target},
                severity=Severity.SEV2,
                summary=f"{h.source} target {h.target} failing since {h.down_since():%Y-%m-%d %H:%M} UTC "
                f"({h.consecutive_failures} failed fetches, {h.parse_errors} refused payloads): {h.down_reason()}",
                evidence={
                    "last_error": h.down_reason(),
                    "failing_since": h.down_since(),
                    "consecutive_failures": h.consecutive_failures,
                    "last_success": h.last_success,
                },
            )
        )
    return out


def target_health(
    scheduler: Scheduler, parse_errors: Mapping[str, int], parsed: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """One row per configured target for the live page, dead and never-scraped ones included.

    A target that answers but whose payloads give nothing and only parse errors (an HTTP 200 with
    garbage) is not "up": its state says so.
    """
    out = []
    for h in sorted(scheduler.health.values(), key=lambda x: (x.source, x.target)):
        state = "not scraped yet" if not h.fetches else ("up" if h.consecutive_failures == 0 else "down")
        if state == "up" and parsed is not None and parse_errors.get(h.target) and not parsed.get(h.target):
            state = "answering, unparsable"
        out.append(
            {
                "source": h.source,
                "target": redact(h.target),
                "state": state,
                "last_success": iso(h.last_success) if h.last_success else None,
                "last_attempt": iso(h.last_attempt) if h.last_attempt else None,
                "consecutive_failures": h.consecutive_failures,
                "fetches": h.fetches,
                "failures": h.failures,
                "parse_errors": int(parse_errors.get(h.target, 0)),
                "last_error": redact(h.last_error),
            }
        )
    return out


class Service:
    """Everything ``hciwatch run`` starts, owned in one place so shutdown is orderly."""

    def __init__(self, cfg: AppConfig) -> None:
        self.cfg = cfg
        self.data_dir = cfg.data_dir
        token = resolve_secret(cfg.api.token_file, what="api.token_file")
        if token is None and not cfg.api.allow_unauthenticated:
            raise ConfigError(
                "api.token_file is required (the HTTP API needs a bearer token for anything "
                "but /healthz and /readyz); set api.allow_unauthenticated = true only for "
                "local testing"
            )
        self.token = token
        self.views = analyst_views(cfg.collector.networks)
        self.silences = SilenceStore(self.data_dir)
        st = cfg.collector.store
        self.store = Store(
            self.data_dir,
            batch_rows=st.batch_rows,
            retention_days=st.retention_days,
            extra_views=self.views,
            auto_flush=False,  # flushes go through the WAL checkpoint (DurableIngest.flush)
            site=cfg.collector.site.name,
            lake=Lake.open(st.lake.url, st.lake) if st.lake.url else None,
            writer=st.lake.writer,
        )
        write_site_manifest(self.store.lake, cfg)  # the fleet views count this site against its own pools
        self.ingest = DurableIngest.from_settings(self.data_dir, self.store, st)
        self.feed = AlertFeed()
        self.exporters: list[Exporter] = [
            self.feed,  # the live page shows silenced changes (marked); paging sinks do not get them
            *(SilencingExporter(build_exporter(s), self.silences) for s in cfg.exporters),
        ]
        self.outbox = Outbox(
            self.data_dir,
            [e.name for e in self.exporters] + [ALERTS_TABLE_SINK],
            max_bytes=cfg.outbox.max_bytes,
            segment_bytes=cfg.outbox.segment_bytes,
        )
        policies = {s.name: DeliveryPolicy.from_settings(s) for s in cfg.exporters}
        policies[self.feed.name] = DeliveryPolicy(max_wait=0.0)  # live views want changes at once
        self.dispatchers = [OutboxDispatcher(self.outbox, e, policies.get(e.name)) for e in self.exporters]
        self.alerts_table = AlertTableWriter(self.outbox, self.store)
        self.outbox_fault = FaultState("outbox")
        self.evaluation_fault = FaultState("evaluation")
        self._stopping = False
        self._inflight: asyncio.Future[Any] | None = None
        self.loop_faults: dict[str, FaultState] = {}  # the service's own supervised loops
        self._replaying = False
        self.abandoned: list[str] = []  # what the last stop() gave up waiting for (see run_service)
        self._unsent: list[Alert] = []  # alert changes the outbox could not take yet (disk fault)
        self.pipeline = Pipeline(
            cfg,
            self.store,
            alert_sinks=[self._to_outbox],
            state_path=self.data_dir / "alert_state.json",
            bootstrap_from_store=True,
            store_alerts=False,  # the alerts table is written from the outbox (AlertTableWriter)
            flush_store=self.ingest.flush,
            window_max_bytes=st.window_max_bytes,
        )
        self.domain = cfg.domain.id
        # [fleet]: this instance collects and evaluates its domain only while it holds the lease
        self.ownership = (
            DomainOwnership.from_settings(cfg.fleet, [self.domain], st.lake.url, st.lake) if cfg.fleet.enabled else None
        )
        self._scheduler_task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # for the worker thread's hand-offs
        # [fleet]: true from a completed takeover (state loaded, detectors rebuilt) until the loss;
        # holding the lease alone is not enough, or a pass could run on the standby's stale state
        self._serving = False
        self.evaluations_owned = 0  # passes whose state the lease accepted (fleet mode)
        self.parser = OffloadParser(self.pipeline.catalog.user_mappings)  # big scrapes off the event loop's lock
        pull, push = build_sources(cfg)
        self.queue = self.ingest.queue
        self.scheduler = Scheduler(pull, push, self.ingest.emit)
        self.limits = PayloadLimits.from_sources((src.settings, src.targets()) for src in pull)
        self.sources: list[Any] = [*pull, *push]
        self.registry = CollectorRegistry()
        self.registry.register(
            HciwatchCollector(
                pipeline=lambda: self.pipeline.stats,
                scheduler=lambda: self.scheduler,
                store=lambda: self.store,
                outbox=self.outbox.stats,
                queue_depth=self.queue.qsize,
                snapshot=lambda: self._dashboard_snapshot(),
                reliability=self._reliability,
            )
        )
        self._analytics_snapshot = analytics_snapshot(self.pipeline, PipelineHealth())
        self.metric_exporters = build_metric_exporters(cfg, self._dashboard_snapshot)
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None
        self.server_limits = ServerLimits(
            max_connections=cfg.api.max_connections,
            header_timeout=cfg.api.header_timeout,
            keepalive_timeout=cfg.api.keepalive_timeout,
            body_timeout=cfg.api.body_timeout,
        )
        self.http_counters = HttpCounters()
        self.query_workers = QueryWorkers(workers=2, memory_bytes=cfg.api.query_memory_bytes)

    def _dashboard_snapshot(self) -> MetricsSnapshot:
        """Called by the metrics SDK's thread: detector numbers as of the last evaluation, live counters."""
        health = pipeline_health(self.pipeline, self.queue.qsize(), self.outbox.stats())
        return dataclasses.replace(self._analytics_snapshot, pipeline=health)

    def _ingest_stats(self) -> dict[str, Any]:
        """Parse counters for the live page's "what was collected" header (they are not stored)."""
        s = self.pipeline.stats
        return {
            "records_read": s.records_read,
            "records_rejected": s.records_rejected,
            "reject_reasons": dict(s.reject_reasons),
            "skipped_parts": s.line_errors,
            "samples_stored": s.samples_stored,
            "ip_observations_stored": s.ip_observations_stored,
            "targets": target_health(
                self.scheduler,
                s.rejected_by_target + s.errors_by_target,
                s.samples_by_target + s.ip_observations_by_target,
            ),
        }

    def _evaluate(self, now: datetime) -> None:
        self.pipeline.evaluate(now)
        self._analytics_snapshot = analytics_snapshot(self.pipeline, PipelineHealth())

    def _to_outbox(self, changes: Sequence[Alert]) -> None:
        """Alert changes count as accepted once the outbox has fsynced them; each is logged once.

        Every change goes to the outbox (the alerts table, the history, is written from it); sinks
        are wrapped in :class:`SilencingExporter`, so a change an active silence matches reaches none.

        While the outbox's disk fails, changes wait here (in order, bounded) and go first next time.
        With ``[fleet]`` on, changes of a domain this instance no longer owns are refused (fencing:
        the new owner carries the incident on).
        """
        if changes and not self._serves():
            log.warning("fleet: %d alert change(s) of %s refused: no longer its owner", len(changes), self.domain)
            self._fenced_off()
            return
        for a in changes:
            # the site is this instance's own (named in the start banner): not repeated per line
            res = ",".join(f"{k}={v}" for k, v in sorted(a.resource.items()) if k != "site")
            log.info("alert %s %s %s [%s]: %s", a.status.value, a.severity.value, a.kind.value, res, a.summary)
        self.silences.filter(changes)  # records (on the silence) and logs what the sinks will not get
        self._unsent.extend(changes)
        if not self._unsent or not self.outbox_fault.due():
            return
        try:
            self.outbox.append(self._unsent)
        except OSError as exc:
            self.outbox_fault.failed(exc)
            if len(self._unsent) > MAX_UNSENT_ALERTS:
                dropped = len(self._unsent) - MAX_UNSENT_ALERTS
                del self._unsent[:dropped]
                self.outbox.dropped += dropped
                log.error("outbox unwritable: dropped the %d oldest unsent alert changes", dropped)
            return
        self.outbox_fault.cleared()
        self._unsent.clear()

    def _faults(self) -> dict[str, FaultState]:
        return {
            **self.ingest.faults(),
            "outbox": self.outbox_fault,
            "alerts_table": self.alerts_table.fault,
            "evaluation": self.evaluation_fault,
            **({"fleet_lease": self.ownership.fault} if self.ownership is not None else {}),
            **{f"loop {name}": f for name, f in self.loop_faults.items() if not f.ok},
            **{f"loop {name}": f for name, f in self.scheduler.faults().items()},
        }

    def _reliability(self) -> dict[str, Any]:
        """Fault states, refusals and WAL counters for /metrics."""
        return {
            "faults": self._faults(),
            "refused": dict(self.ingest.refused),
            "wal": self.ingest.wal.stats,
            "wal_bytes": self.ingest.wal.disk_bytes(),
            "queue_bytes": self.queue.nbytes(),
            "buffered_bytes": self.store.buffered_bytes(),
            "http": self.http_counters,
            "window_shed_rows": self.pipeline.shed_rows,
            **({} if self.ownership is None else {"fleet": {**self.ownership.describe(), "domains": [self.domain]}}),
        }

    # -- readiness -----------------------------------------------------------------------------

    async def readiness(self) -> dict[str, Any]:
        writable = os.access(self.data_dir, os.W_OK)
        sinks: dict[str, bool] = {}
        for e in self.exporters:
            try:
                sinks[e.name] = bool(await asyncio.wait_for(e.healthcheck(), timeout=2.0))
            except Exception:
                sinks[e.name] = False
        faults = {name: f.describe() for name, f in self._faults().items()}
        healthy = all(f["ok"] for f in faults.values())
        # Sinks are reported, never gating: a Collector outage must not take the UI out of its Service
        # (the outbox keeps the changes and delivers them when the sink is back).
        # not ready while the log of the last run is replayed: queries would miss those records
        ready = writable and healthy and bool(self.sources) and not self._replaying
        fleet = {} if self.ownership is None else {"fleet": self.ownership.describe()}
        return {
            **fleet,
            "ready": ready,
            "replaying": self._replaying,
            "store_writable": writable and healthy,
            "faults": faults,
            "sources_configured": len(self.sources),
            "sinks": sinks,
        }

    # -- loops ---------------------------------------------------------------------------------

    async def _consume(self) -> None:
        batch_rows = self.cfg.collector.store.batch_rows
        while True:
            item = await self.queue.get()
            batch = [item]
            size = len(item[1].body)
            while not self.queue.empty() and len(batch) < 256 and size < CONSUME_BATCH_BYTES:
                batch.append(self.queue.get_nowait())
                size += len(batch[-1][1].body)
            async with self._lock:
                await self._in_worker(self._ingest_batch, batch)
                if self.store.buffered_rows() >= batch_rows and self.store.write_fault.due():
                    await self._in_worker(self.ingest.flush)

    async def _in_worker(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run pipeline work in a thread; a cancelled caller still leaves it to finish (tracked), so
        shutdown never runs beside it."""
        self._inflight = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        await asyncio.shield(self._inflight)

    def _ingest_batch(self, batch: list[tuple[int, RawRecord]]) -> None:
        self.ingest.ingest(batch, self._apply, stop=lambda: self._stopping)

    def _apply(self, rec: RawRecord) -> None:
        """Parse, enforce the source's sample/label limits, store; the verdict goes to target health."""
        outcome = self.limits.check(rec, self.parser.parse(rec, self.pipeline.catalog))
        self.pipeline.apply(rec, outcome)
        now = datetime.now(UTC)
        for h in self.scheduler.health_for(rec.target):
            h.parsed(now, outcome.rejected[1] if outcome.rejected else "")

    async def _flush_loop(self) -> None:
        interval = self.cfg.collector.store.flush_interval
        while True:
            retry = self.ingest.retry_in()
            await asyncio.sleep(min(interval, retry) if retry > 0 else interval)
            async with self._lock:
                await self._in_worker(self.ingest.flush)
            if self._unsent:
                async with self._lock:
                    await self._in_worker(self._to_outbox, [])

    async def _evaluate_loop(self) -> None:
        step = self.cfg.analytics.evaluation_interval.total_seconds()
        while True:
            await asyncio.sleep(step)
            await self.evaluate_once(datetime.now(UTC))

    async def evaluate_once(self, now: datetime) -> bool:
        """One detector pass at ``now``; False when skipped (``[fleet]``: the domain is not ours)."""
        if not self._serves():
            return False
        self.pipeline.add_findings(source_down_findings(self.scheduler, now))
        async with self._lock:
            try:
                await self._in_worker(self._evaluate_and_save, now)
            except Exception as exc:  # a pass that fails must not end evaluation for good
                self.evaluation_fault.failed(exc)
            else:
                self.evaluation_fault.cleared()
        return True

    def _serves(self) -> bool:
        """Whether this instance evaluates its domain now (always, without ``[fleet]``)."""
        return self.ownership is None or (self._serving and self.ownership.owns(self.domain))

    def _evaluate_and_save(self, now: datetime) -> None:
        """A pass; with ``[fleet]`` the lifecycle state then goes to the lease blob (fenced write)."""
        self._evaluate(now)
        if self.ownership is None:
            return
        if self.ownership.save_state(self.domain, self.pipeline.manager.to_bytes()):
            self.evaluations_owned += 1
        else:
            self._fenced_off()

    def _fenced_off(self) -> None:
        """From the worker thread: this pass's output or state was refused, so its in-memory
        lifecycle state may hold changes nobody received. Give the domain up; if it comes back,
        it comes back as a gain, rebuilt from the state the lease blob holds."""
        assert self.ownership is not None and self._loop is not None
        self.ownership.drop(self.domain)
        self._loop.call_soon_threadsafe(self._on_loss)

    # -- network-domain ownership (see hciwatch.ownership) ---------------------------------------

    async def _ownership_loop(self) -> None:
        """Acquire/renew the domain's lease every ``renew_interval``; react to gain and loss."""
        own = self.ownership
        assert own is not None
        while True:
            try:
                change = await asyncio.to_thread(own.tick)
            except Exception as exc:  # storage down: a state, retried; held domains expire safely
                own.fault.failed(exc)
                if not own.owns(self.domain):
                    self._on_loss()
                await asyncio.sleep(min(own.renew_interval, max(own.fault.retry_in(), 0.5)))
                continue
            own.fault.cleared()
            if self.domain in change.lost:
                self._on_loss()
            if self.domain in change.gained:
                try:
                    await self._on_gain()
                except Exception as exc:  # state or lake unreadable: give the lease up, retry as a gain
                    own.fault.failed(exc)
                    self._on_loss()
                    await asyncio.to_thread(own.drop, self.domain)
            await asyncio.sleep(own.renew_interval)

    async def _on_gain(self) -> None:
        """New owner: rebuild detectors from the lake, continue the last owner's incidents, collect."""
        assert self.ownership is not None
        state = await asyncio.to_thread(self.ownership.load_state, self.domain)
        async with self._lock:
            try:
                await self._in_worker(self.pipeline.rebuild_from_store, state)
            except ValueError as exc:  # unreadable (another version?): continue from this instance's own
                log.error(
                    "fleet: the last owner's lifecycle state of %s is unusable (%s); keeping ours", self.domain, exc
                )
                await self._in_worker(self.pipeline.rebuild_from_store, None)
                state = None
        self._serving = True
        log.info(
            "fleet: evaluating domain %s (epoch %d)%s",
            self.domain,
            self.ownership.epoch(self.domain),
            ", lifecycle state of the last owner loaded" if state else "",
        )
        self._start_sources()

    def _on_loss(self) -> None:
        """Lost (or handed back): stop evaluating and collecting."""
        self._serving = False
        if self._scheduler_task is not None:
            self._scheduler_task.cancel()
            self._scheduler_task = None
            log.warning("fleet: domain %s lost; its sources are stopped", self.domain)

    def _start_sources(self) -> None:
        if self._scheduler_task is None or self._scheduler_task.done():
            fault = self.loop_faults.setdefault("scheduler", loop_fault("scheduler"))
            task = supervise("scheduler", self.scheduler.run, fault)
            self._scheduler_task = asyncio.create_task(task, name="scheduler")

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_EVERY_S)
            async with self._lock:
                try:
                    await self._in_worker(self._maintain)
                except (OSError, StoreError) as exc:  # a full disk must not end maintenance for good
                    log.warning("maintenance failed (%s); retried in %.0f s", exc, MAINTENANCE_EVERY_S)

    def _maintain(self) -> None:
        removed = self.store.apply_retention()
        for name in ("samples", "ip_observations", "alerts"):
            self.store.compact(name, min_files=self.cfg.collector.store.compact_min_files)
        if removed:
            log.info("retention removed %d partitions", removed)
        self.pipeline.manager.save()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        from hciwatch.preflight import parse_listen

        host, port = parse_listen(self.cfg.api.listen)
        self._loop = asyncio.get_running_loop()
        api = self.cfg.api
        limits = QueryLimits(
            default_rows=min(10_000, api.query_row_limit), max_rows=api.query_row_limit, timeout_s=api.query_timeout
        )
        app = create_app(
            data_dir=self.data_dir,
            feed=self.feed,
            token=self.token,
            readiness=self.readiness,
            metrics_registry=self.registry,
            query_limits=limits,
            allow_unauthenticated=api.allow_unauthenticated,
            extra_views=self.store.extra_views,
            site=self.cfg.collector.site.name,
            ingest_stats=self._ingest_stats,
            query_workers=self.query_workers,
            body_timeout=api.body_timeout,
            silences=self.silences,
        )
        add_plan_routes(
            app, data_dir=self.data_dir, networks=self.cfg.collector.networks, pools=self.cfg.analytics.pools
        )
        self._runner = make_runner(app, self.server_limits, self.http_counters)
        await self._runner.setup()
        await GuardedSite(
            self._runner, host or "127.0.0.1", int(port), limits=self.server_limits, counters=self.http_counters
        ).start()
        self._replaying = True
        try:
            async with self._lock:  # records accepted before the last stop or crash, once
                await asyncio.to_thread(
                    self.ingest.replay, self._apply, self.cfg.collector.store.batch_rows, self._stop.is_set
                )
        finally:
            self._replaying = False
        for d in self.dispatchers:
            self._tasks.append(d.start())
        self._tasks.append(self.ingest.commit.start())
        self.alerts_table.notify()  # changes an earlier run accepted but did not write yet
        loops: dict[str, Callable[[], Awaitable[object]]] = {
            "alerts-table": self.alerts_table.run,
            "consume": self._consume,
            "flush": self._flush_loop,
            "evaluate": self._evaluate_loop,
            "maintenance": self._maintenance_loop,
        }
        if self.ownership is None:
            loops["scheduler"] = self.scheduler.run
        else:  # the sources run while this instance owns its domain (started on gain)
            loops["ownership"] = self._ownership_loop
        for name, body in loops.items():  # none may die silently: a crash is logged, shown on /readyz, restarted
            fault = self.loop_faults.setdefault(name, loop_fault(name))
            self._tasks.append(asyncio.create_task(supervise(name, body, fault), name=name))
        log.info(
            "hciwatch %s running: site %s, %d source(s), %d sink(s), data in %s, API and live page on http://%s:%d/",
            hciwatch_version(),
            self.cfg.collector.site.name,
            len(self.sources),
            len(self.exporters),
            self.data_dir,
            host,
            self.port,
        )

    @property
    def port(self) -> int:
        """The bound API port (useful when configured as port 0)."""
        assert self._runner is not None
        for site in self._runner.sites:
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                return int(server.sockets[0].getsockname()[1])
        raise RuntimeError("API not started")

    def request_stop(self) -> None:
        self._stop.set()

    async def wait(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        """Bounded shutdown: exits within ``STOP_DEADLINE_S`` and loses nothing acknowledged.

        Everything acknowledged is already fsynced in the write-ahead log (or the outbox), so
        stop does what is cheap and useful within its deadline (parse what waits, flush Parquet,
        save the alert state, let sinks deliver) and abandons, with a log line naming it, what
        does not end in time: a loop that ignores its cancellation, a parse of a 35 MB payload in
        the worker thread, a slow flush. Abandoned pipeline work is replayed from the log at the
        next start, as after ``kill -9``; :func:`run_service` then exits without waiting for it.
        """
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        deadline = t0 + STOP_DEADLINE_S

        def left(cap: float) -> float:
            return max(0.0, min(cap, deadline - loop.time()))

        producers = self._tasks[len(self.dispatchers) :]
        if self._scheduler_task is not None:
            producers.append(self._scheduler_task)
        self._stopping = True  # ingest ends between records; what is left is replayed at start
        self.abandoned = [f"task {n}" for n in await cancel_and_wait(producers, STOP_TASKS_S, "stop")]
        busy = not await self._worker_idle(left(STOP_WORKER_S))
        if busy:
            self.abandoned.append("pipeline worker (parse or flush in progress)")
            log.warning(
                "stop: pipeline work still running after %.1f s abandoned; what it held is in the "
                "write-ahead log and replayed at the next start",
                loop.time() - t0,
            )
        self._stopping = busy  # an abandoned batch keeps ending between records; the drain below needs False
        log.info("stop: sources and loops stopped after %.1f s", loop.time() - t0)
        if not busy:
            try:
                # a second of the deadline is kept for the sinks and closing sockets
                async with asyncio.timeout_at(max(deadline - 1.0, loop.time() + 0.5)):
                    await self._save_pipeline(deadline)
            except TimeoutError:
                self.abandoned.append("store flush / state save")
                log.warning("stop: flush and state save abandoned at the deadline; the WAL replays them at start")
            else:
                log.info("stop: store flushed and state saved after %.1f s", loop.time() - t0)
        if self.ownership is not None:  # a clean stop hands the domain over at once (no expiry wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.to_thread(self.ownership.release_all), left(2.0) or 0.1)
        await self._drain_sinks(left(SHUTDOWN_GRACE_S))
        consumers = self._tasks[: len(self.dispatchers)]  # the sinks' delivery tasks (what is left is re-sent)
        self.abandoned += [f"task {n}" for n in await cancel_and_wait(consumers, left(1.0) or 0.1, "stop")]
        for e in self.exporters:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(e.shutdown(), left(2.0) or 0.1)
        for m in self.metric_exporters:  # a last collection with the final numbers, then stop
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(_flush_and_shutdown, m), left(2.0) or 0.1)
        for src in self.sources:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(src.close(), left(1.0) or 0.1)
        if self._inflight is None or self._inflight.done():  # else an abandoned thread may still append
            self.outbox.close()
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runner.cleanup(), left(2.0) or 0.1)
        self.query_workers.close()
        self.parser.close()
        if self.abandoned:
            log.warning("stop: done after %.1f s; abandoned: %s", loop.time() - t0, ", ".join(self.abandoned))
        else:
            log.info("stop: done after %.1f s", loop.time() - t0)

    async def _worker_idle(self, timeout: float) -> bool:
        """Wait (bounded) for the in-flight pipeline work; True when none runs any more."""
        if self._inflight is None or self._inflight.done():
            return True
        await asyncio.wait([self._inflight], timeout=timeout)
        return self._inflight.done()

    async def _save_pipeline(self, deadline: float) -> None:
        """Parse what waits (bounded), flush, hand unsent alert changes to the outbox, save state.

        Runs under the pipeline lock; the caller bounds it. What is not done in time stays in the
        write-ahead log and the outbox, which were fsynced when the records were acknowledged.
        """
        loop = asyncio.get_running_loop()
        async with self._lock:
            drain_end = min(loop.time() + DRAIN_BUDGET_S, deadline)
            while not self.queue.empty() and loop.time() < drain_end:
                item = self.queue.get_nowait()
                if len(item[1].body) > DRAIN_MAX_RECORD_BYTES:
                    break  # a big payload (and what follows it) is replayed from the WAL at start
                await self._in_worker(self._ingest_batch, [item])
            await self._in_worker(self.ingest.flush)  # what fails stays in the WAL for the next start
            await self._in_worker(self._to_outbox, [])
            with contextlib.suppress(OSError, StoreError):
                await self._in_worker(self.alerts_table.write_pending)
            await self._in_worker(self.pipeline.close)
            self.ingest.close()
            self._analytics_snapshot = analytics_snapshot(self.pipeline, PipelineHealth())

    async def _drain_sinks(self, grace: float) -> None:
        deadline = asyncio.get_running_loop().time() + grace
        while any(self.outbox.lag(e.name) for e in self.exporters):
            if asyncio.get_running_loop().time() > deadline:
                log.warning("shutting down with undelivered alert changes; they are re-sent after restart")
                return
            await asyncio.sleep(0.1)


async def run_service(cfg: AppConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    svc = Service(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, svc.request_stop)
    try:  # a failed start (port taken) still closes what was opened
        await svc.start()
        await svc.wait()
    finally:
        watchdog = _exit_watchdog(EXIT_WATCHDOG_S)
        try:
            await svc.stop()
        finally:
            if not svc.abandoned:
                # stop ended in time: a caller in this process (a test, an embedding) lives on and
                # must not be killed; the interpreter's join of leftover threads is guarded instead
                watchdog.cancel()
                _watchdog_at_thread_shutdown(EXIT_WATCHDOG_S)
    if svc.abandoned:
        # Work stop() gave up on still runs in a thread, and the interpreter would wait for it at
        # exit (a parse of a 35 MB payload: seconds). Everything acknowledged is in the fsynced
        # write-ahead log and is replayed at the next start, so exiting now loses nothing.
        logging.shutdown()
        os._exit(0)
    return 0


def _exit_watchdog(seconds: float) -> threading.Timer:
    """Exit the process ``seconds`` after the stop request even if something still holds it.

    Why: stop() is bounded, but the interpreter then joins every non-daemon thread a library
    left behind (a process pool's manager thread, an executor's worker) and one that never ends
    would make SIGTERM hang until systemd's SIGKILL. Nothing acknowledged depends on it: the
    write-ahead log and the outbox were fsynced when each record and alert change was accepted.
    """

    def force() -> None:
        busy = [t.name for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
        sys.stderr.write(
            f"hciwatch: still running {seconds:g} s after the stop request (threads: {', '.join(busy)}); "
            "exiting now (the write-ahead log holds everything acknowledged)\n"
        )
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()
    return timer


_shutdown_guarded = False


def _watchdog_at_thread_shutdown(seconds: float) -> None:
    """Arm :func:`_exit_watchdog` when the interpreter starts joining non-daemon threads at exit.

    ``threading._register_atexit`` (CPython; what ``concurrent.futures`` uses) runs before that
    join, unlike ``atexit``, which runs after it and so could not stop a hang there. Once per process.
    """
    global _shutdown_guarded
    register = getattr(threading, "_register_atexit", None)
    if _shutdown_guarded or register is None:
        return
    with contextlib.suppress(RuntimeError):  # already shutting down
        register(_exit_watchdog, seconds)
        _shutdown_guarded = True


def _flush_and_shutdown(exporter: Any) -> None:
    exporter.force_flush()
    exporter.shutdown()


# ---------------------------------------------------------------------------------------------
# capture
# ---------------------------------------------------------------------------------------------


class ReorderingWriter:
    """Writes records in time order although concurrent targets emit slightly out of order.

    Records are held for ``hold`` of capture time and written sorted; anything arriving later
    than that is written with its time raised to the last written one (and counted), so the
    capture stays sorted as the format requires.
    """

    def __init__(self, writer: CaptureWriter, hold: timedelta = timedelta(seconds=30)) -> None:
        self.writer = writer
        self.hold = hold
        self._heap: list[tuple[datetime, int, RawRecord]] = []
        self._seq = 0
        self._last: datetime | None = None
        self.late = 0

    def add(self, rec: RawRecord) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (rec.ts, self._seq, rec))
        newest = max(rec.ts, self._heap[0][0])
        while self._heap and self._heap[0][0] <= newest - self.hold:
            self._write(heapq.heappop(self._heap)[2])

    def _write(self, rec: RawRecord) -> None:
        if self._last is not None and rec.ts < self._last:
            self.late += 1
            rec = RawRecord(
                ts=self._last,
                kind=rec.kind,
                target=rec.target,
                body=rec.body,
                host=rec.host,
                labels=rec.labels,
                topic=rec.topic,
            )
        self._last = rec.ts
        self.writer.write(rec)

    def close(self) -> None:
        while self._heap:
            self._write(heapq.heappop(self._heap)[2])
        self.writer.close()


async def capture(cfg: AppConfig, out: Path, duration_s: float) -> int:
    """Record the configured sources into a capture file for ``duration_s`` seconds."""
    pull, push = build_sources(cfg)
    if not pull and not push:
        raise ConfigError("no [[sources]] configured: nothing to capture")
    writer = ReorderingWriter(CaptureWriter(out))

    async def emit(rec: RawRecord) -> None:
        writer.add(rec)

    scheduler = Scheduler(pull, push, emit)
    task = asyncio.create_task(scheduler.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=duration_s)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    sources: list[PullSource | PushSource] = [*pull, *push]
    for src in sources:
        with contextlib.suppress(Exception):
            await src.close()
    writer.close()
    for h in scheduler.health.values():
        if h.failures:
            log.warning("%s %s: %d failed fetches (last: %s)", h.source, h.target, h.failures, h.last_error)
    return writer.writer.count
