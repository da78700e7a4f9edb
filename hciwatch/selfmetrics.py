"""The service's own metrics in Prometheus form (``/metrics``), read live from the parts' counters.

A custom collector reads the counters the parts already keep (pipeline stats, scheduler health,
store stats, outbox stats) at scrape time, so the hot paths never touch prometheus-client objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class HciwatchCollector(Collector):
    """Exposes hciwatch_* series from callables that return the current state."""

    def __init__(
        self,
        *,
        pipeline: Callable[[], Any],
        scheduler: Callable[[], Any],
        store: Callable[[], Any],
        outbox: Callable[[], dict[str, Any]],
        queue_depth: Callable[[], int],
        reliability: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._scheduler = scheduler
        self._store = store
        self._outbox = outbox
        self._queue_depth = queue_depth
        self._reliability = reliability

    def collect(self) -> Iterator[Any]:
        p = self._pipeline()
        c = CounterMetricFamily("hciwatch_records", "Raw records received, by kind", labels=["kind"])
        for kind, n in sorted(p.records_by_kind.items()):
            c.add_metric([kind], n)
        yield c
        r = CounterMetricFamily("hciwatch_records_rejected", "Records rejected, by reason", labels=["reason"])
        for reason, n in sorted(p.reject_reasons.items()):
            r.add_metric([reason], n)
        yield r
        yield CounterMetricFamily(
            "hciwatch_parse_skipped_parts", "Bad lines/items skipped inside payloads", value=p.line_errors
        )
        yield CounterMetricFamily("hciwatch_samples_stored", "Samples accepted for storage", value=p.samples_stored)
        yield CounterMetricFamily(
            "hciwatch_ip_observations_stored", "IP observations accepted", value=p.ip_observations_stored
        )
        yield CounterMetricFamily("hciwatch_evaluations", "Detector passes run", value=p.evaluations)
        a = CounterMetricFamily("hciwatch_alert_changes", "Alert state changes", labels=["kind", "status"])
        for key, n in sorted(p.alerts.items()):
            kind, _, status = key.partition("/")
            a.add_metric([kind, status], n)
        yield a
        yield GaugeMetricFamily(
            "hciwatch_ingest_queue_depth", "Raw records waiting for the parser", value=self._queue_depth()
        )

        s = self._scheduler()
        if s is not None:
            up = GaugeMetricFamily("hciwatch_target_up", "1 when the last fetch succeeded", labels=["source", "target"])
            fails = CounterMetricFamily("hciwatch_target_fetch_failures", "Failed fetches", labels=["source", "target"])
            perr = CounterMetricFamily(
                "hciwatch_target_parse_errors",
                "Payloads the parser refused (HTML, garbage, over sample_limit/label_limit)",
                labels=["source", "target"],
            )
            for h in s.health.values():
                up.add_metric([h.source, h.target], 1.0 if getattr(h, "up", not h.consecutive_failures) else 0.0)
                fails.add_metric([h.source, h.target], h.failures)
                perr.add_metric([h.source, h.target], getattr(h, "parse_errors", 0))
            yield up
            yield fails
            yield perr

        st = self._store()
        yield CounterMetricFamily("hciwatch_store_files_written", "Parquet files written", value=st.stats.files_written)
        yield CounterMetricFamily("hciwatch_store_bytes_written", "Parquet bytes written", value=st.stats.bytes_written)
        yield GaugeMetricFamily(
            "hciwatch_store_buffered_rows", "Rows accepted but not yet on disk", value=st.buffered_rows()
        )

        ob = self._outbox()
        if ob:
            yield CounterMetricFamily(
                "hciwatch_outbox_appended", "Alert changes accepted into the outbox", value=ob.get("appended", 0)
            )
            yield CounterMetricFamily(
                "hciwatch_outbox_dropped", "Alert changes dropped by the disk bound", value=ob.get("dropped", 0)
            )
            lag = GaugeMetricFamily("hciwatch_outbox_lag", "Undelivered alert changes per sink", labels=["sink"])
            delivered = CounterMetricFamily("hciwatch_export_delivered", "Alert changes delivered", labels=["sink"])
            failures = CounterMetricFamily("hciwatch_export_failures", "Failed export calls", labels=["sink"])
            for name, sink in sorted((ob.get("sinks") or {}).items()):
                lag.add_metric([name], sink.get("lag", 0))
                delivered.add_metric([name], sink.get("delivered", 0))
                failures.add_metric([name], sink.get("failures", 0))
            yield lag
            yield delivered
            yield failures
        if self._reliability is not None:
            yield from _reliability_metrics(self._reliability())


def _reliability_metrics(r: dict[str, Any]) -> Iterator[Any]:
    """I/O fault states, refused records and write-ahead log counters."""
    fault = GaugeMetricFamily(
        "hciwatch_io_fault", "1 while an I/O component fails (store, wal, outbox, ...)", labels=["component", "error"]
    )
    errors = CounterMetricFamily("hciwatch_io_fault_errors", "Failed I/O attempts", labels=["component"])
    for name, f in sorted(r["faults"].items()):
        fault.add_metric([name, f.code], 0.0 if f.ok else 1.0)
        errors.add_metric([name], f.failures_total)
    yield fault
    yield errors
    refused = CounterMetricFamily(
        "hciwatch_ingest_refused", "Records refused at the edge (not acknowledged), by reason", labels=["reason"]
    )
    for reason, n in sorted(r["refused"].items()):
        refused.add_metric([reason], n)
    yield refused
    w = r["wal"]
    yield CounterMetricFamily("hciwatch_wal_appended", "Records written to the write-ahead log", value=w.appended)
    yield CounterMetricFamily("hciwatch_wal_fsyncs", "Group-commit fsyncs of the write-ahead log", value=w.fsyncs)
    yield CounterMetricFamily("hciwatch_wal_replayed", "Records replayed from the log at start", value=w.replayed)
    yield CounterMetricFamily("hciwatch_wal_corrupt", "Damaged log records found", value=w.corrupt)
    yield GaugeMetricFamily("hciwatch_wal_bytes", "Write-ahead log size on disk", value=r["wal_bytes"])
    yield GaugeMetricFamily("hciwatch_ingest_queue_bytes", "Raw record bytes waiting", value=r["queue_bytes"])
    yield GaugeMetricFamily(
        "hciwatch_store_buffered_bytes", "Row bytes accepted but not yet in Parquet", value=r["buffered_bytes"]
    )
    yield CounterMetricFamily(
        "hciwatch_window_shed_rows",
        "Rows the detectors' window dropped early to stay under window_max_bytes",
        value=r.get("window_shed_rows", 0),
    )
    h = r.get("http")
    if h is not None:
        yield GaugeMetricFamily("hciwatch_api_connections_open", "Open API connections", value=h.open)
        c = CounterMetricFamily(
            "hciwatch_api_connections_closed", "API connections closed by the guard, by reason", labels=["reason"]
        )
        c.add_metric(["over_cap"], h.refused)
        c.add_metric(["header_timeout"], h.header_timeouts)
        yield c
        yield CounterMetricFamily(
            "hciwatch_api_bad_requests", "Malformed HTTP requests answered 400 (not logged each)", value=h.bad_requests
        )
        yield CounterMetricFamily(
            "hciwatch_api_accept_errors", "Failed accept() calls (descriptor limit)", value=h.accept_errors
        )
