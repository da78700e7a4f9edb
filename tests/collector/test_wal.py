"""The write-ahead log: round trip, torn tails, damage, bounds, checkpoints and idempotent replay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.ingest_queue import ByteBoundedQueue, IngestRefused
from collector.schema import RawRecord
from collector.store import Store
from collector.wal import GroupCommit, WalFull, WriteAheadLog, undo_uncommitted_flushes
from hciwatch.ingest import DurableIngest

T0 = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)


def _rec(i: int) -> RawRecord:
    body = f'hciwatch_test_total{{i="{i}"}} {i}\n'.encode()
    return RawRecord(ts=T0 + timedelta(seconds=i), kind="prometheus", target=f"t{i % 3}", body=body, host="h1")


def test_records_round_trip_with_their_metadata(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    rec = RawRecord(
        ts=T0, kind="mqtt", target="broker", body=b"\x00\xffbinary", host="h", labels={"a": "b"}, topic="x/y"
    )
    assert wal.append(rec) == 1
    wal.close()
    assert list(WriteAheadLog(tmp_path).replay()) == [(1, rec)]


def test_a_torn_tail_is_cut_and_a_damaged_record_is_counted(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    for i in range(5):
        wal.append(_rec(i))
    wal.close()
    seg = next(tmp_path.glob("*.log"))
    size = seg.stat().st_size
    with open(seg, "ab") as fh:
        fh.write(b"\x40\x00\x00\x00partial")  # a crash in the middle of an append
    reopened = WriteAheadLog(tmp_path)
    assert seg.stat().st_size == size
    assert [s for s, _ in reopened.replay()] == [1, 2, 3, 4, 5]
    assert reopened.append(_rec(9)) == 6  # numbering continues after the good records
    reopened.close()
    data = bytearray(seg.read_bytes())
    data[size // 2] ^= 0xFF  # flip a byte inside the third record
    seg.write_bytes(bytes(data))
    damaged = WriteAheadLog(tmp_path)
    seqs = [s for s, _ in damaged.replay()]
    assert seqs[:2] == [1, 2] and 5 not in seqs
    assert damaged.stats.corrupt >= 1


def test_the_bound_refuses_instead_of_dropping(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_bytes=300)
    wal.append(_rec(1))
    wal.append(_rec(2))
    with pytest.raises(WalFull):
        for i in range(10):
            wal.append(_rec(i))
    assert wal.stats.refused_full == 1


def test_checkpoint_deletes_covered_segments_only(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=200)
    for i in range(20):
        wal.append(_rec(i))
    assert len(list(tmp_path.glob("*.log"))) > 3
    wal.checkpoint(10)
    assert next(s for s, _ in WriteAheadLog(tmp_path).replay()) == 11
    wal.checkpoint(20)
    wal.close()
    assert list(WriteAheadLog(tmp_path).replay()) == []


async def test_group_commit_acknowledges_after_fsync(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    gc = GroupCommit(wal)
    task = gc.start()
    try:
        seqs = [wal.append(_rec(i)) for i in range(50)]
        await asyncio.wait_for(asyncio.gather(*(gc.durable(s) for s in seqs)), timeout=10)
        assert wal.synced_seq == 50
        assert 1 <= wal.stats.fsyncs <= 50
    finally:
        task.cancel()
        wal.close()


async def test_byte_bounded_queue_admits_by_bytes_and_refuses_after_its_timeout() -> None:
    q: ByteBoundedQueue[int] = ByteBoundedQueue(max_bytes=1000, max_items=100)
    await q.wait_for_room(5000)  # larger than the bound but the queue is empty: admitted alone
    q.put_nowait(1, 5000)
    with pytest.raises(IngestRefused, match="queue full"):
        await q.wait_for_room(10, timeout=0.05)
    assert q.refused["queue_full"] == 1
    waiter = asyncio.create_task(q.wait_for_room(10, timeout=10))
    await asyncio.sleep(0)
    assert await q.get() == 1
    await asyncio.wait_for(waiter, timeout=10)


def _stored(data: Path) -> list[tuple[int, int]]:
    rows = Store(data).connect().execute("SELECT CAST(value AS INT) v, count(*) FROM samples GROUP BY v ORDER BY v")
    return [(int(v), int(n)) for v, n in rows.fetchall()]


def _durable(data: Path) -> tuple[DurableIngest, Store, Callable[[RawRecord], None]]:
    from collector.catalog import Catalog
    from hciwatch.parse_pool import parse_one

    store = Store(data, auto_flush=False)
    ing = DurableIngest(
        data,
        store,
        queue_max_bytes=1 << 20,
        queue_max_records=100,
        buffer_max_bytes=1 << 20,
        wal_max_bytes=1 << 24,
        wal_segment_bytes=1 << 12,
    )
    catalog = Catalog(())

    def apply(rec: RawRecord) -> None:
        out = parse_one(rec, catalog)
        store.append("samples", out.samples)

    return ing, store, apply


def test_replay_after_a_crash_between_parquet_and_checkpoint_stores_each_record_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ing, store, apply = _durable(data)
    batch = [(ing.wal.append(_rec(i)), _rec(i)) for i in range(30)]
    ing.ingest(batch[:10], apply)
    assert ing.flush()  # checkpoint 10 committed
    ing.ingest(batch[10:20], apply)
    store.flush(tag=ing.wal.flush_tag(20))  # the Parquet files of the next flush ... then a crash
    ing.close()
    # records 21..30 were accepted (in the log) but never parsed
    again, _, apply = _durable(data)  # start: undo the uncommitted flush, replay 11..30
    assert again.replay(apply, batch_rows=1000) == 20
    assert _stored(data) == [(i, 1) for i in range(30)]
    again.close()
    third, _, apply = _durable(data)  # a second start replays nothing
    assert third.replay(apply, batch_rows=1000) == 0
    assert _stored(data) == [(i, 1) for i in range(30)]


def test_undo_only_touches_files_beyond_the_checkpoint(tmp_path: Path) -> None:
    part = tmp_path / "samples" / "date=2026-11-20"
    part.mkdir(parents=True)
    for name in ("part-1-000001-w5-abc123.parquet", "part-1-000002-w9-abc123.parquet", "part-1-000003-abc.parquet"):
        (part / name).write_bytes(b"x")
    assert undo_uncommitted_flushes(tmp_path, 5) == 1
    assert sorted(p.name for p in part.iterdir()) == ["part-1-000001-w5-abc123.parquet", "part-1-000003-abc.parquet"]


async def test_group_commit_survives_a_non_os_error_and_never_leaves_a_waiter_hanging(tmp_path: Path) -> None:
    """Issue 12's hang: the commit task caught only OSError. Anything else ended it, and every
    later ``emit`` awaited an fsync that would never come (scraping stopped, silently)."""
    wal = WriteAheadLog(tmp_path / "wal")
    gc = GroupCommit(wal)
    real_sync = wal.sync
    calls = {"n": 0}

    def flaky_sync() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("I/O operation on closed file")
        return real_sync()

    wal.sync = flaky_sync  # type: ignore[method-assign]
    task = gc.start()
    try:
        await asyncio.wait_for(gc.durable(wal.append(_rec(1))), 10)  # bound against the old hang
        assert calls["n"] >= 2 and wal.synced_seq == 1
        assert wal.fault.ok or wal.fault.code == "ValueError"
        # a waiter left when the commit task stops is failed, not left waiting for ever
        wal.sync = lambda: (_ for _ in ()).throw(OSError(5, "Input/output error"))  # type: ignore[method-assign]
        waiter = asyncio.create_task(gc.durable(wal.append(_rec(2))))
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(RuntimeError, match="group commit stopped"):
        await asyncio.wait_for(waiter, 10)
    with pytest.raises(RuntimeError, match="not running"):
        await gc.durable(wal.append(_rec(3)))


def test_a_full_segment_is_fsynced_by_sync_not_on_the_appending_thread(tmp_path: Path) -> None:
    """Appends run on the event loop: rolling to a new segment must not fsync there (a 64 MB
    segment of 35 MB scrapes stalled ``/healthz``); the next ``sync`` covers the old segments."""
    wal = WriteAheadLog(tmp_path / "wal", segment_bytes=200)
    prepared = wal.prepare(_rec(1))
    seqs = [wal.append(_rec(1), prepared)] + [wal.append(_rec(i)) for i in range(2, 8)]
    assert len(list((tmp_path / "wal").glob("*.log"))) > 1
    assert wal._unsynced, "full segments wait for the group commit's fsync"
    fsyncs_before = wal.stats.fsyncs
    assert wal.sync() == seqs[-1]
    assert not wal._unsynced and wal.stats.fsyncs == fsyncs_before + 1
    wal.close()
    assert [seq for seq, _ in WriteAheadLog(tmp_path / "wal").replay()] == seqs


def test_a_stop_request_ends_the_replay_between_records_and_the_rest_waits_in_the_log(tmp_path: Path) -> None:
    """SIGTERM during a long replay (35 MB scrapes take seconds each) must not wait for all of it."""
    data = tmp_path / "data"
    ing, _, apply = _durable(data)
    for i in range(10):
        ing.wal.append(_rec(i))
    ing.close()
    again, _, apply = _durable(data)
    done = {"n": 0}

    def counting(rec: RawRecord) -> None:
        done["n"] += 1
        apply(rec)

    assert again.replay(counting, batch_rows=1000, stop=lambda: done["n"] >= 4) == 4
    again.close()
    third, _, apply = _durable(data)  # the next start replays the other six, once
    assert third.replay(apply, batch_rows=1000) == 6
    assert _stored(data) == [(i, 1) for i in range(10)]
