"""Memory bounded by bytes, not counts: the detectors' window and the store's unwritten rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.schema import Sample, samples_table
from collector.store import Store
from hciwatch.pipeline import Window

T0 = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


def test_the_window_sheds_its_oldest_chunks_past_its_byte_budget() -> None:
    one = samples_table(Sample(T0, "prometheus", "h", "wide", float(j), {"series": str(j)}) for j in range(1000)).nbytes
    win = Window("samples", timedelta(hours=1), max_bytes=3 * one)
    for i in range(10):
        win.add(
            samples_table(
                Sample(T0 + timedelta(seconds=i), "prometheus", "h", "wide", float(j), {"series": str(j)})
                for j in range(1000)
            )
        )
    assert win.bytes <= 3 * one
    assert win.rows == 3000 and win.shed_rows == 7000
    assert win.table().num_rows == 3000


def test_store_reports_unwritten_bytes_for_the_edge_to_bound(tmp_path: Path) -> None:
    store = Store(tmp_path, auto_flush=False)
    table = samples_table(Sample(T0, "prometheus", "h", "m", 1.0, {"k": "v"}) for _ in range(100))
    store.append("samples", table)
    assert store.buffered_bytes() == table.nbytes
    store.flush()
    assert store.buffered_bytes() == 0
