"""The write-ahead log of raw records: what "accepted" means for ingest.

A record is acknowledged (MQTT PUBACK, a scrape counted as stored) only once it is in this log:
appended with a CRC-32C-style checksum (zlib's CRC-32) and fsynced by a group commit
(:class:`GroupCommit`: one ``fsync`` covers every record appended while the previous one ran, as
PostgreSQL and the Prometheus WAL batch theirs). Parquet is written from the parsed rows of the
logged records; after a flush the log records a *checkpoint* (every record up to seq ``c`` is in
Parquet) and deletes the segments it covers. On start the records after the checkpoint are
replayed into the store.

Idempotent replay: every Parquet file a flush writes carries the checkpoint it is about to commit
in its name (``part-...-w<c>-....parquet``). A crash after the files and before the checkpoint
leaves files tagged beyond the committed checkpoint; :func:`undo_uncommitted_flushes` deletes them
at start, and the replay writes those rows again, once.

On disk (``<data_dir>/wal/``)::

    00000000000000000001.log    records; the name is the seq of the first one
    checkpoint.json             {"seq": c}: records <= c are stored in Parquet

A record is ``<u32 length><u32 crc32(payload)><u64 seq>`` then the payload: a JSON header (time,
kind, target, host, labels, topic) and the body bytes. A torn tail (a crash in the middle of an
append, never acknowledged) is cut off when the log is opened; a damaged record in the middle
ends replay of that segment and is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from collector.faults import FaultState
from collector.lake import Lake
from collector.schema import TABLE_SCHEMAS, RawRecord

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<IIQ")  # payload length, crc32(payload), seq
_META_LEN = struct.Struct("<I")
_SUFFIX = ".log"
CHECKPOINT = "checkpoint.json"
MAX_RECORD_BYTES = 1 << 31


class WalFull(OSError):
    """The log reached its size bound: the record is refused at the edge (counted), not dropped later."""


def encode(rec: RawRecord) -> bytes:
    """The payload of one record (JSON header + body; the body is stored as is)."""
    meta = json.dumps(
        [rec.ts.isoformat(), rec.kind, rec.target, rec.host, dict(rec.labels), rec.topic],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return _META_LEN.pack(len(meta)) + meta + rec.body


def decode(payload: bytes) -> RawRecord:
    (n,) = _META_LEN.unpack_from(payload)
    ts, kind, target, host, labels, topic = json.loads(payload[4 : 4 + n])
    return RawRecord(
        ts=datetime.fromisoformat(ts),
        kind=kind,
        target=target,
        body=payload[4 + n :],
        host=host,
        labels=labels,
        topic=topic,
    )


@dataclass
class _Segment:
    first_seq: int
    path: Path
    size: int


@dataclass
class WalStats:
    appended: int = 0
    appended_bytes: int = 0
    fsyncs: int = 0
    replayed: int = 0
    corrupt: int = 0  # damaged records found when reading (never acknowledged or disk damage)
    refused_full: int = 0
    checkpoints: int = 0


class WriteAheadLog:
    """Append-only, segmented, checksummed log of raw records. Thread-safe."""

    def __init__(self, directory: Path, *, segment_bytes: int = 64 << 20, max_bytes: int = 4 << 30) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.stats = WalStats()
        self.fault = FaultState("wal")
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._fh: IO[bytes] | None = None
        self._unsynced: list[IO[bytes]] = []  # full segments still to fsync (see sync)
        self.directory.mkdir(parents=True, exist_ok=True)
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        self.checkpoint_seq = self._read_checkpoint()
        self.last_seq = self.checkpoint_seq
        self.synced_seq = self.checkpoint_seq
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            stem = path.name[: -len(_SUFFIX)]
            if stem.isdigit():
                self._segments.append(_Segment(int(stem), path, path.stat().st_size))
        if self._segments:
            last = self._segments[-1]
            good, last_seq = self._scan(last.path)
            if good != last.size:
                log.warning("wal: cut %d bytes of an unacknowledged partial append off %s", last.size - good, last.path)
                with open(last.path, "r+b") as fh:
                    fh.truncate(good)
                    os.fsync(fh.fileno())
                last.size = good
            self.last_seq = max(self.last_seq, last_seq if last_seq else last.first_seq - 1)
            self.synced_seq = self.last_seq

    # -- reading -----------------------------------------------------------------------------

    def _read_checkpoint(self) -> int:
        path = self.directory / CHECKPOINT
        if not path.exists():
            return 0
        try:
            return int(json.loads(path.read_text())["seq"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # the checkpoint is written atomically, so this is disk damage: replaying everything
            # retained is safe (uncommitted-flush files are undone by tag, older ones kept)
            log.error("wal: checkpoint %s unreadable (%s); replaying every retained record", path, exc)
            return 0

    def _records(self, path: Path) -> Iterator[tuple[int, int, bytes]]:
        """(end offset, seq, payload) of each intact record; stops at the first damaged one."""
        with open(path, "rb") as fh:
            data = fh.read()
        off = 0
        while off + _HEADER.size <= len(data):
            length, crc, seq = _HEADER.unpack_from(data, off)
            end = off + _HEADER.size + length
            if end > len(data):
                return
            payload = data[off + _HEADER.size : end]
            if zlib.crc32(payload) != crc:
                self.stats.corrupt += 1
                log.error(
                    "wal: damaged record at byte %d of %s (checksum mismatch); rest of segment skipped", off, path
                )
                return
            yield end, seq, payload
            off = end

    def _scan(self, path: Path) -> tuple[int, int]:
        good, last = 0, 0
        for end, seq, _ in self._records(path):
            good, last = end, seq
        return good, last

    def replay(self) -> Iterator[tuple[int, RawRecord]]:
        """Records after the checkpoint, in order, with their seqs."""
        for seg in list(self._segments):
            for _, seq, payload in self._records(seg.path):
                if seq > self.checkpoint_seq:
                    self.stats.replayed += 1
                    yield seq, decode(payload)

    # -- writing -----------------------------------------------------------------------------

    def disk_bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    @staticmethod
    def prepare(rec: RawRecord) -> tuple[bytes, int]:
        """The payload of ``rec`` and its checksum: the CPU part of an append, which a caller may
        run in a worker thread (a 35 MB scrape costs tens of milliseconds) before :meth:`append`."""
        payload = encode(rec)
        return payload, zlib.crc32(payload)

    def append(self, rec: RawRecord, prepared: tuple[bytes, int] | None = None) -> int:
        """Write one record (to the OS: it survives a killed process); returns its seq.

        Durable against power loss only after :meth:`sync`. Raises :class:`WalFull` at the size
        bound and ``OSError`` when the disk refuses; either way nothing was acknowledged.
        ``prepared`` is :meth:`prepare`'s result for ``rec`` when the caller computed it already.
        """
        payload, crc = prepared if prepared is not None else self.prepare(rec)
        with self._lock:
            size = sum(s.size for s in self._segments)
            if size + len(payload) > self.max_bytes and size > 0:
                self.stats.refused_full += 1
                raise WalFull(f"write-ahead log at its bound ({self.max_bytes} bytes)")
            seq = self.last_seq + 1
            header = _HEADER.pack(len(payload), crc, seq)
            try:
                fh = self._writer(seq)
                fh.write(header)
                fh.write(payload)  # not header + payload: that would copy a big body once more
                fh.flush()
            except OSError as exc:
                self._discard_partial()
                self.fault.failed(exc)
                raise
            n = len(header) + len(payload)
            self._segments[-1].size += n
            self.last_seq = seq
            self.stats.appended += 1
            self.stats.appended_bytes += n
            return seq

    def _writer(self, seq: int) -> IO[bytes]:
        if self._fh is None or not self._segments or self._segments[-1].size >= self.segment_bytes:
            if self._fh is not None:  # fsynced and closed by the next sync(), not here on the event loop
                self._unsynced.append(self._fh)
                self._fh = None
            if not self._segments or self._segments[-1].size > 0 or self._segments[-1].first_seq != seq:
                path = self.directory / f"{seq:020d}{_SUFFIX}"
                self._fh = open(path, "ab")  # noqa: SIM115 - kept open for appends
                self._segments.append(_Segment(seq, path, 0))
                _fsync_dir(self.directory)
            else:
                self._fh = open(self._segments[-1].path, "ab")  # noqa: SIM115
        return self._fh

    def _discard_partial(self) -> None:
        """After a failed write, cut the segment back to its last whole record."""
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()
        if self._segments:
            seg = self._segments[-1]
            try:
                with open(seg.path, "r+b") as out:
                    out.truncate(seg.size)
                    os.fsync(out.fileno())  # the whole records before the failed one, which sync() will not see
            except OSError:
                pass  # cut again (or dropped as a torn tail) at the next open

    def sync(self) -> int:
        """fsync what was appended; returns the highest seq now durable.

        The fsync runs on a duplicate of the segment's descriptor *outside* the lock: appends
        happen on the event loop thread, and holding the lock through an fsync of a 35 MB scrape
        stalled the loop (``/healthz``) for as long as the disk took. A segment closed meanwhile
        was fsynced by whoever closed it, so syncing the duplicate still covers ``target``.
        """
        with self._lock:
            target = self.last_seq
            fh = self._fh
            if target <= self.synced_seq:
                return self.synced_seq
            closing, self._unsynced = self._unsynced, []
            try:
                fd = os.dup(fh.fileno()) if fh is not None else None
            except OSError as exc:
                self._unsynced = closing + self._unsynced
                self.fault.failed(exc)
                raise
        try:
            for old in closing:
                os.fsync(old.fileno())
            if fd is not None:
                os.fsync(fd)
        except OSError as exc:
            with self._lock:
                self._unsynced = closing + self._unsynced  # tried again by the next sync
                self.fault.failed(exc)
            raise
        finally:
            if fd is not None:
                os.close(fd)
        for old in closing:
            with contextlib.suppress(OSError):
                old.close()
        with self._lock:
            self.stats.fsyncs += 1
            self.synced_seq = max(self.synced_seq, target)
            if not self.fault.ok:
                self.fault.cleared()
            return self.synced_seq

    def checkpoint(self, seq: int) -> None:
        """Records up to ``seq`` are in Parquet: persist that, delete the segments it covers."""
        tmp = self.directory / f"{CHECKPOINT}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"seq": seq}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.directory / CHECKPOINT)
        _fsync_dir(self.directory)
        with self._lock:
            self.checkpoint_seq = seq
            self.stats.checkpoints += 1
            keep: list[_Segment] = []
            for i, seg in enumerate(self._segments):
                nxt = self._segments[i + 1].first_seq if i + 1 < len(self._segments) else self.last_seq + 1
                active = i == len(self._segments) - 1
                if nxt - 1 <= seq and not active:
                    seg.path.unlink(missing_ok=True)
                else:
                    keep.append(seg)
            if len(keep) == 1 and self.last_seq <= seq and keep[0].size >= self.segment_bytes // 4:
                # the active segment is fully stored: start a fresh one so it can go next time
                if self._fh is not None:
                    self._fh.close()
                    self._fh = None
                keep[0].path.unlink(missing_ok=True)
                keep = []
            self._segments = keep

    def close(self) -> None:
        with self._lock:
            for old in self._unsynced:
                with contextlib.suppress(OSError):
                    os.fsync(old.fileno())
                    old.close()
            self._unsynced = []
            if self._fh is not None:
                try:
                    os.fsync(self._fh.fileno())
                finally:
                    self._fh.close()
                    self._fh = None

    def flush_tag(self, seq: int) -> str:
        """The tag a flush committing checkpoint ``seq`` puts into its Parquet file names."""
        return f"w{seq}"


def undo_uncommitted_flushes(
    data_dir: Path,
    checkpoint_seq: int,
    *,
    prefix: str = "w",
    tables: tuple[str, ...] | None = None,
    lake: Lake | None = None,
    site: str = "",
) -> int:
    """Delete Parquet files written by a flush whose checkpoint was never committed.

    Their rows are still in the log after the checkpoint and are written again by the replay,
    so removing them is what makes the replay idempotent. ``prefix`` names the log the tags
    refer to (``w``: this WAL; ``o``: the outbox, for the alerts table). Returns how many.
    """
    tagged = re.compile(rf"-{re.escape(prefix)}(\d+)-[0-9a-f]+\.parquet$")
    removed = 0
    if lake is not None and not lake.local:  # the files are in object storage (the WAL stays local)
        for name in tables if tables is not None else tuple(TABLE_SCHEMAS):
            for f in lake.files(name, sites={site} if site else None):
                m = tagged.search(f.path.rsplit("/", 1)[-1])
                if m and int(m.group(1)) > checkpoint_seq:
                    lake.delete_file(f.path)
                    removed += 1
        if removed:
            log.warning("removed %d Parquet files of a write interrupted before its checkpoint", removed)
        return removed
    base = Path(lake.root) if lake is not None else Path(data_dir)  # a local lake may be elsewhere
    for table_dir in sorted(base.iterdir()) if base.is_dir() else []:
        if not table_dir.is_dir() or (tables is not None and table_dir.name not in tables):
            continue
        for path in [
            *table_dir.glob(f"date=*/part-*-{prefix}*.parquet"),
            *table_dir.glob(f"site=*/date=*/part-*-{prefix}*.parquet"),
        ]:
            m = tagged.search(path.name)
            if m and int(m.group(1)) > checkpoint_seq:
                path.unlink(missing_ok=True)
                removed += 1
    if removed:
        log.warning("removed %d Parquet files of a write interrupted before its checkpoint", removed)
    return removed


class GroupCommit:
    """Acknowledge after fsync, with one fsync per batch of waiting appends (group commit).

    ``await durable(seq)`` returns once ``seq`` is fsynced. A single task runs the fsyncs in a
    worker thread: appends that arrive while one runs are covered by the next, so the fsync rate
    adapts to the disk (one per ~fsync latency under load, none when idle).
    """

    def __init__(self, wal: WriteAheadLog) -> None:
        self.wal = wal
        self._wake = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run(), name="wal-group-commit")
        return self._task

    async def durable(self, seq: int) -> None:
        """Return once ``seq`` is fsynced; raises ``RuntimeError`` when no commit task runs (it
        would never come: the caller must fail, not wait forever)."""
        if seq <= self.wal.synced_seq:
            return
        if self._task is None or self._task.done():
            raise RuntimeError("write-ahead log group commit is not running")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        self._wake.set()
        await fut

    async def _run(self) -> None:
        try:
            await self._commit_loop()
        finally:  # cancelled at stop: nobody may wait for an fsync that will not come
            waiters, self._waiters = self._waiters, []
            for _, fut in waiters:
                if not fut.done():
                    fut.set_exception(RuntimeError("write-ahead log group commit stopped"))

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                done = await asyncio.to_thread(self.wal.sync)
            except Exception as exc:  # OSError is a disk fault; anything else must not end the commits either
                if not isinstance(exc, OSError):
                    self.wal.fault.failed(exc)
                await asyncio.sleep(max(self.wal.fault.retry_in(), 0.05))
                self._wake.set()
                continue
            still: list[tuple[int, asyncio.Future[None]]] = []
            for seq, fut in self._waiters:
                if seq <= done:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((seq, fut))
            self._waiters = still
            if still:
                self._wake.set()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
