"""The Parquet store: atomic files, partitions, compaction with crash recovery, retention, views."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from collector.errors import StoreError
from collector.schema import Sample, samples_table
from collector.store import CATALOG_FILE, JOURNAL, Store

T0 = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


def _rows(n: int, start: datetime = T0, step: timedelta = timedelta(minutes=1)) -> list[Sample]:
    return [
        Sample(start + i * step, "windows", f"h{i % 3}", "net.bytes_received_total", float(i), (("nic", "eth0"),))
        for i in range(n)
    ]


def test_flush_writes_date_partitions_and_views_see_them(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.append("samples", samples_table(_rows(240)))  # crosses midnight
    files = store.flush()
    assert {f.parent.name for f in files} == {"date=2026-11-20", "date=2026-11-21"}
    con = store.connect()
    assert con.execute("SELECT count(*), count(DISTINCT date) FROM samples").fetchone() == (240, 2)
    # the catalog file is a plain DuckDB database any client can open read-only, from the data dir
    # (its globs are relative, so a moved or copied data dir keeps working)
    cat = duckdb.connect(str(tmp_path / CATALOG_FILE), read_only=True)
    cat.execute(f"SET file_search_path = '{tmp_path}'")  # what `cd <data_dir>` gives a shell user
    assert cat.execute("SELECT count(*) FROM samples").fetchone() == (240,)
    assert cat.execute("SELECT count(*) FROM alerts").fetchone() == (0,)


def test_a_one_day_batch_is_named_and_placed_as_the_row_by_row_split_does(tmp_path: Path) -> None:
    """The one-day fast path (a min/max instead of a day column) gives the careful path's file."""
    from collector.store import _one_day

    for start, n, want_day in ((T0, 60, "2026-11-20"), (T0 + timedelta(hours=3), 60, "2026-11-21")):
        table = samples_table(_rows(n, start))
        assert _one_day(table.column("ts")) == (
            date.fromisoformat(want_day),
            int(start.timestamp() * 1000),
        )
        store = Store(tmp_path / want_day)
        store.append("samples", table)
        (file,) = store.flush()
        assert file.parent.name == f"date={want_day}"
        assert f"-{int(start.timestamp() * 1000)}-" in file.name  # the first ts in ms, as before
        assert pq.read_table(file).num_rows == n
    assert _one_day(samples_table(_rows(240)).column("ts")) is None  # crosses midnight: careful path
    before_epoch = samples_table(_rows(2, datetime(1969, 12, 31, 23, 0, tzinfo=UTC)))
    assert _one_day(before_epoch.column("ts")) is None


def test_batches_flush_automatically_and_buffer_is_reported(tmp_path: Path) -> None:
    store = Store(tmp_path, batch_rows=100)
    store.append("samples", samples_table(_rows(50)))
    assert store.buffered_rows() == 50
    store.append("samples", samples_table(_rows(60)))
    assert store.buffered_rows() == 0
    assert store.stats.rows_written["samples"] == 110


def test_write_behind_stores_the_same_rows_and_reports_a_failed_write(tmp_path: Path) -> None:
    store = Store(tmp_path / "a", batch_rows=100, write_behind=True)
    for i in range(5):
        store.append("samples", samples_table(_rows(70, T0 + timedelta(hours=i))))
    store.close()  # waits for the batch in flight, then writes the rest
    con = store.connect()
    assert con.execute("SELECT count(*), sum(value) FROM samples").fetchone() == (350, 5 * sum(range(70)))
    # a write that fails in the background surfaces at the next append or flush, not silently
    broken = Store(tmp_path / "b", batch_rows=10, write_behind=True)
    (tmp_path / "b" / "samples" / "date=2026-11-20").write_text("a file where a partition directory goes")
    broken.append("samples", samples_table(_rows(20)))
    with pytest.raises(StoreError, match="cannot write"):
        broken.flush()


def test_killed_writer_never_leaves_a_file_that_breaks_a_query(tmp_path: Path) -> None:
    """SIGKILL a process in the middle of writing big batches: queries see only whole files.

    (Rows of one batch fall in one date partition here, so each batch is exactly one file.)
    """
    script = textwrap.dedent(f"""
        import sys, os
        sys.path.insert(0, {str(Path.cwd())!r})
        from datetime import datetime, timedelta, UTC
        from collector.schema import Sample, samples_table
        from collector.store import Store
        store = Store({str(tmp_path)!r}, batch_rows=10**9)
        t0 = datetime(2026, 11, 20, tzinfo=UTC)
        batch = samples_table([Sample(t0 + timedelta(milliseconds=i), "windows", "h", "m", float(i),
                                      {{"k": "v" * 50}}) for i in range(200_000)])
        print("ready", flush=True)
        while True:
            store.append("samples", batch)
            store.flush()
            print("flushed", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    assert proc.stdout.readline().strip() == "flushed"  # at least one whole file exists
    time.sleep(0.15)  # let it get into the middle of the next write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store(tmp_path)  # start-up removes stray temporaries
    assert not list(tmp_path.glob("samples/*/.*.tmp"))
    con = store.connect()
    n = con.execute("SELECT count(*) FROM samples").fetchone()
    assert n is not None and n[0] > 0 and n[0] % 200_000 == 0


def test_compaction_merges_sorts_and_recovers_from_a_crash(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for i in range(10):
        store.append("samples", samples_table(_rows(10, start=datetime(2026, 11, 18, tzinfo=UTC) + timedelta(hours=i))))
        store.flush()
    part = tmp_path / "samples" / "date=2026-11-18"
    assert len(list(part.glob("part-*.parquet"))) == 10
    assert store.compact("samples", min_files=8, before=date(2026, 11, 22)) == 1
    files = list(part.glob("part-*.parquet"))
    assert len(files) == 1
    assert pq.read_table(files[0]).num_rows == 100
    assert store.connect().execute("SELECT count(*) FROM samples").fetchone() == (100,)

    # simulate a crash after the merged file was staged and the journal written, before the swap
    for i in range(8):
        store.append("samples", samples_table(_rows(5, start=datetime(2026, 11, 17, tzinfo=UTC) + timedelta(hours=i))))
        store.flush()
    part = tmp_path / "samples" / "date=2026-11-17"
    sources = sorted(p.name for p in part.glob("part-*.parquet"))
    merged = pq.read_table([part / s for s in sources])
    staged = part / ".part-merged.parquet.staged"
    pq.write_table(merged, staged)
    (part / JOURNAL).write_text(
        json.dumps({"target": "part-merged.parquet", "staged": staged.name, "sources": sources})
    )
    Store(tmp_path)  # recovery on start
    assert [p.name for p in part.glob("*.parquet")] == ["part-merged.parquet"]
    assert not (part / JOURNAL).exists()
    assert Store(tmp_path).connect().execute("SELECT count(*) FROM samples").fetchone() == (140,)


def test_retention_drops_old_partitions_but_keeps_the_schema_seed(tmp_path: Path) -> None:
    store = Store(tmp_path, retention_days=1)
    store.append("samples", samples_table(_rows(3, start=T0 - timedelta(days=5))))
    store.append("samples", samples_table(_rows(3)))
    store.flush()
    assert store.apply_retention(now=T0) == 1
    assert store.connect().execute("SELECT count(*) FROM samples").fetchone() == (3,)


def test_bad_rows_are_refused_with_the_table_named(tmp_path: Path) -> None:
    import pyarrow as pa

    store = Store(tmp_path)
    with pytest.raises(StoreError, match="samples"):
        store.append("samples", pa.table({"x": [1]}))
    with pytest.raises(StoreError, match="unknown table"):
        store.append("nope", pa.table({"x": [1]}))
    assert os.listdir(tmp_path / "samples") == ["date=1970-01-01"]


def test_the_catalog_is_rewritten_only_when_its_views_or_its_file_changed(tmp_path: Path) -> None:
    """A replay's closing ``write_catalog`` with the views the store wrote at start costs no DuckDB
    write; other views, a deleted or a replaced file are written again."""
    store = Store(tmp_path)
    cat = tmp_path / CATALOG_FILE
    first = cat.stat()
    assert store.write_catalog()
    assert (cat.stat().st_ino, cat.stat().st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert store.write_catalog({"answer": "SELECT 42 AS a"})
    assert cat.stat().st_ino != first.st_ino
    cat.unlink()
    assert store.write_catalog() and cat.exists()
    cat.write_bytes(b"not a catalog")  # someone else's file there now
    assert store.write_catalog()
    con = duckdb.connect(str(cat), read_only=True)
    assert con.execute("SELECT * FROM answer").fetchall() == [(42,)]
    con.close()
    store.close()
