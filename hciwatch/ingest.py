"""Durable ingest for the service: admit → write-ahead log → parse → store → checkpoint.

What the service's sources hand to :meth:`DurableIngest.emit` is *accepted* only once it is in
the write-ahead log and fsynced (group commit); only then does ``emit`` return, so an MQTT
message is acknowledged and a scrape counted as stored after that point and not before. Records
are parsed in log order, their rows buffered in the store, and a flush writes Parquet files
tagged with the checkpoint it is about to commit, then commits it (see :mod:`collector.wal`).

Memory is bounded in bytes at the edge: the raw-record queue (``queue_max_bytes``) and the
store's unwritten rows (``buffer_max_bytes``, which only grows while writes fail). Past either
bound, or when the log is full or failing, a record is refused with a counted reason
(:class:`~collector.ingest_queue.IngestRefused`) instead of being dropped later.

Alert changes go into the outbox first (fsynced) and the ``alerts`` Parquet table is written from
the outbox by :class:`AlertTableWriter`, with its own cursor, so a crash can lose neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from collector.config import StoreSettings
from collector.errors import StoreError
from collector.faults import FaultState
from collector.ingest_queue import ByteBoundedQueue, IngestRefused
from collector.schema import RawRecord, alerts_table
from collector.sources.base import SourceSettings
from collector.store import Store
from collector.wal import GroupCommit, WalFull, WriteAheadLog, undo_uncommitted_flushes
from exporters.outbox import Outbox
from hciwatch.parse_pool import ParseOutcome

log = logging.getLogger(__name__)

RECORD_OVERHEAD = 256  # bytes a queued record costs beyond its body (object, labels, frame)
ALERTS_TABLE_SINK = "_alerts_table"
PREPARE_OFF_LOOP_BYTES = 1 << 20


class DurableIngest:
    """The WAL, the byte-bounded queue and the checkpointed flush, wired for one store."""

    @classmethod
    def from_settings(cls, data_dir: Path, store: Store, st: StoreSettings) -> DurableIngest:
        """With the ``[store]`` bounds (queue, buffer, write-ahead log) the service runs with."""
        return cls(
            data_dir,
            store,
            queue_max_bytes=st.queue_max_bytes,
            queue_max_records=st.queue_max_records,
            buffer_max_bytes=st.buffer_max_bytes,
            wal_max_bytes=st.wal_max_bytes,
            wal_segment_bytes=st.wal_segment_bytes,
        )

    def __init__(
        self,
        data_dir: Path,
        store: Store,
        *,
        queue_max_bytes: int,
        queue_max_records: int,
        buffer_max_bytes: int,
        wal_max_bytes: int,
        wal_segment_bytes: int,
        admit_timeout: float = 5.0,
    ) -> None:
        self.store = store
        self.wal = WriteAheadLog(Path(data_dir) / "wal", segment_bytes=wal_segment_bytes, max_bytes=wal_max_bytes)
        undo_uncommitted_flushes(data_dir, self.wal.checkpoint_seq, lake=store.lake, site=store.site)
        self.commit = GroupCommit(self.wal)
        self.queue: ByteBoundedQueue[tuple[int, RawRecord]] = ByteBoundedQueue(queue_max_bytes, queue_max_records)
        self.buffer_max_bytes = buffer_max_bytes
        self.admit_timeout = admit_timeout
        self.refused: Counter[str] = self.queue.refused
        self.ingested_seq = self.wal.checkpoint_seq
        self.checkpoint_fault = FaultState("wal checkpoint")

    # -- the edge (event loop) ---------------------------------------------------------------

    async def emit(self, rec: RawRecord) -> None:
        """Accept one record; returns once it is durable. Raises :class:`IngestRefused` instead."""
        if self.store.buffered_bytes() > self.buffer_max_bytes:
            self.refused["store_backlog"] += 1
            raise IngestRefused(
                f"store cannot write ({self.store.write_fault.code or 'behind'}) and holds "
                f"{self.store.buffered_bytes()} bytes of unwritten rows (bound {self.buffer_max_bytes})"
            )
        size = len(rec.body) + RECORD_OVERHEAD
        # encoding and checksumming a big scrape (35 MB: tens of ms) off the event loop
        prepared = await asyncio.to_thread(self.wal.prepare, rec) if len(rec.body) > PREPARE_OFF_LOOP_BYTES else None
        await self.queue.wait_for_room(size, self.admit_timeout)
        try:
            seq = self.wal.append(rec, prepared)  # no await between this and the enqueue: log order = parse order
        except WalFull as exc:
            self.refused["wal_full"] += 1
            raise IngestRefused(str(exc)) from exc
        except OSError as exc:
            self.refused["wal_error"] += 1
            raise IngestRefused(f"write-ahead log cannot write: {exc}") from exc
        self.queue.put_nowait((seq, rec), size)
        await self.commit.durable(seq)

    # -- the worker side (called under the service's pipeline lock) --------------------------

    def ingest(
        self,
        batch: list[tuple[int, RawRecord]],
        apply: Callable[[RawRecord], object],
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """Parse and buffer ``batch`` in log order; ``stop()`` ends it between records (what is
        left stays after the checkpoint in the log and is replayed at the next start)."""
        for seq, rec in batch:
            if stop is not None and stop():
                return
            try:
                apply(rec)
            except Exception:  # a parser/pipeline bug must not stop ingest; the record is counted
                log.exception("ingest of a %s record from %s failed", rec.kind, rec.target)
            self.ingested_seq = seq

    def flush(self) -> bool:
        """Write buffered rows tagged with the checkpoint they complete, then commit it.

        Never raises: a failure is recorded in the store's (or checkpoint's) fault state and the
        rows stay buffered (and in the log) for the next attempt. True when it all went through.
        """
        seq = self.ingested_seq
        try:
            self.store.flush(tag=self.wal.flush_tag(seq))
        except StoreError:
            return False
        if seq <= self.wal.checkpoint_seq:
            return True
        try:
            self.wal.checkpoint(seq)
        except OSError as exc:
            self.checkpoint_fault.failed(exc)
            return False
        self.checkpoint_fault.cleared()
        return True

    def retry_in(self) -> float:
        return max(self.store.write_fault.retry_in(), self.checkpoint_fault.retry_in())

    def replay(
        self, apply: Callable[[RawRecord], object], batch_rows: int, stop: Callable[[], bool] | None = None
    ) -> int:
        """Parse and store the records after the checkpoint (at start, before sources run).

        ``stop()`` ends it between records (SIGTERM during a long replay must not wait for all of
        it: what is left stays after the checkpoint and is replayed at the next start)."""
        n = 0
        for seq, rec in self.wal.replay():
            if stop is not None and stop():
                log.warning(
                    "wal: replay stopped by a stop request after %d records; the rest is replayed next start", n
                )
                break
            self.ingest([(seq, rec)], apply)
            n += 1
            if self.store.buffered_rows() >= batch_rows:
                self.flush()
        if n:
            self.flush()
            log.info("wal: replayed %d records accepted before the last stop", n)
        return n

    def faults(self) -> dict[str, FaultState]:
        return {"store": self.store.write_fault, "wal": self.wal.fault, "wal_checkpoint": self.checkpoint_fault}

    def close(self) -> None:
        self.wal.close()


_ENTRIES = pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))


@dataclass(frozen=True)
class _Limit:
    samples: int
    labels: int


class PayloadLimits:
    """Per-target ``sample_limit`` / ``label_limit`` (as Prometheus): a payload over either is
    refused whole with a precise reason, and its target counts as not up (``source_down``)."""

    def __init__(self, by_target: dict[str, _Limit]) -> None:
        self._by_target = by_target

    @classmethod
    def from_sources(cls, sources: Iterable[tuple[SourceSettings, list[str]]]) -> PayloadLimits:
        """From (settings, the targets records name) pairs: pull sources' ``targets()``."""
        out: dict[str, _Limit] = {}
        for settings, targets in sources:
            if settings.sample_limit or settings.label_limit:
                for target in targets:
                    out[target] = _Limit(settings.sample_limit, settings.label_limit)
        return cls(out)

    def check(self, rec: RawRecord, outcome: ParseOutcome) -> ParseOutcome:
        lim = self._by_target.get(rec.target)
        if lim is None or outcome.rejected is not None:
            return outcome
        n = outcome.samples.num_rows
        if lim.samples and n > lim.samples:
            return ParseOutcome(rejected=("sample_limit", f"{n} samples exceed sample_limit {lim.samples}"))
        if lim.labels and n:
            entries = outcome.samples.column("labels").cast(_ENTRIES)  # MAP has no length kernel
            most = pc.max(pc.list_value_length(entries)).as_py() or 0  # type: ignore[arg-type]
            if most > lim.labels:
                return ParseOutcome(
                    rejected=("label_limit", f"a sample has {most} labels, over label_limit {lim.labels}")
                )
        return outcome


class AlertTableWriter:
    """Writes the ``alerts`` Parquet table from the outbox, as one more cursor on it.

    Each batch is written as a Parquet file tagged with the outbox seq after it; the cursor is
    committed after the file. A file whose tag is beyond the committed cursor (a crash in
    between) is deleted at start and its changes written again, so the table has every change
    exactly once.
    """

    def __init__(self, outbox: Outbox, store: Store, *, batch: int = 10_000) -> None:
        self.outbox = outbox
        self.store = store
        self.batch = batch
        self.fault = FaultState("alerts table")
        self._wake = asyncio.Event()
        committed = outbox.cursor(ALERTS_TABLE_SINK)
        undo_uncommitted_flushes(
            store.data_dir, committed - 1, prefix="o", tables=("alerts",), lake=store.lake, site=store.site
        )

    def write_pending(self) -> int:
        """Write what the outbox holds beyond the cursor; returns how many changes (raises OSError/StoreError)."""
        done = 0
        while True:
            rows = self.outbox.read(ALERTS_TABLE_SINK, self.batch)
            if not rows:
                return done
            end = rows[-1][0] + 1
            self.store.write_now("alerts", alerts_table([a for _, a in rows]), tag=f"o{end - 1}")
            self.outbox.commit(ALERTS_TABLE_SINK, end)
            done += len(rows)

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

        self.outbox.add_listener(wake)
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                try:
                    await asyncio.to_thread(self.write_pending)
                except (OSError, StoreError) as exc:
                    delay = self.fault.failed(exc)
                    with contextlib.suppress(OSError, StoreError):  # files of the failed batch, rewritten next time
                        undo_uncommitted_flushes(
                            self.store.data_dir,
                            self.outbox.cursor(ALERTS_TABLE_SINK) - 1,
                            prefix="o",
                            tables=("alerts",),
                            lake=self.store.lake,
                            site=self.store.site,
                        )
                    await asyncio.sleep(delay)
                    self._wake.set()
                else:
                    self.fault.cleared()
        finally:
            self.outbox.remove_listener(wake)
