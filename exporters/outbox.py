"""The durable outbox: alert state changes on disk, read by every sink from its own cursor.

This module is the log (append, read, cursors, bounds, recovery); :mod:`exporters.delivery`
is the loop that delivers it to a sink (batching, retries, backoff).

Why a log and not a queue in memory: an alert that fired while the OTLP collector or Azure was
unreachable must still arrive after the outage, even if hciwatch restarted in between. So the
alert manager hands each change to :meth:`Outbox.append`, which returns only after the change is
written and fsynced ("accepted"); each sink then reads the same ordered log from its own cursor.

On disk (``<data_dir>/outbox/``)::

    segment-00000000000000000000.jsonl   {"seq": 0, "alert": {...}}  one JSON line per change
    segment-00000000000000004711.jsonl   the name is the seq of its first line
    cursors/<sink>.json                  {"sink": "otlp", "next_seq": 4712}

Guarantees and policies (documented for operators in ``exporters/README.md``):

* **At least once.** A sink's cursor advances only after its exporter accepted the batch, and the
  cursor file is replaced atomically (tmp, fsync, rename, fsync dir). A crash between "exported"
  and "cursor committed" re-sends that batch after restart: duplicates are possible, loss is not.
* **Order.** Each sink reads one ordered stream, one batch at a time, so the changes of one
  fingerprint arrive in the order they happened (re-sends repeat a suffix, never reorder).
* **Independence.** Every sink has its own task; a slow or dead sink never delays the others or
  the caller of ``append`` (which only waits for the local disk).
* **Retries and skipped poison batches**: see :mod:`exporters.delivery`.
* **Bounded disk.** Segments every sink has passed are deleted. If the log still exceeds
  ``max_bytes`` (a sink has been down for long), the oldest segment is deleted anyway: every
  sink still behind it has its cursor moved past it, the lost changes are counted in that
  sink's ``dropped`` counter and logged at ERROR. Alert changes are small, so at the default
  256 MiB this takes millions of changes; the bound exists so a dead sink cannot fill the disk.
* **New sinks** start at the end of the log (they receive changes appended after they first
  appear, not the whole history).
* **Torn writes.** An append interrupted by a crash leaves at most a partial last line; it was
  never acknowledged, so it is cut off when the outbox is opened again.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from collector.schema import Alert
from exporters.settings import MiB

log = logging.getLogger(__name__)

_SEGMENT_PREFIX = "segment-"
_SEGMENT_SUFFIX = ".jsonl"


def _fsync_dir(path: Path) -> None:
    """Make a created/renamed/deleted directory entry durable (POSIX needs the dir fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _segment_name(first_seq: int) -> str:
    return f"{_SEGMENT_PREFIX}{first_seq:020d}{_SEGMENT_SUFFIX}"


@dataclass
class _Segment:
    first_seq: int
    path: Path
    size: int


@dataclass
class SinkCounters:
    """Delivery counters of one sink (cumulative since the process started, except ``lag``)."""

    delivered: int = 0  # alert changes accepted by the sink
    batches: int = 0  # successful export calls
    failures: int = 0  # failed export calls (retryable and not)
    skipped: int = 0  # changes passed over after a non-retryable failure
    dropped: int = 0  # changes deleted by the disk bound before this sink got them
    last_error: str = ""
    last_success: float | None = None  # time.time() of the last accepted batch


@dataclass
class _Reader:
    """A sink's read position: an open segment and the seq of the next line in it."""

    segment_first: int = -1
    handle: IO[bytes] | None = None
    next_seq: int = -1

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.handle = None
        self.segment_first = -1
        self.next_seq = -1


class Outbox:
    """Append-only, segmented, fsynced log of alert changes with one cursor per sink.

    ``append`` may be called from any thread; reads and cursor commits are meant for the
    event-loop thread that runs the :class:`OutboxDispatcher` tasks (all state sits behind one
    lock, so other threads are safe too).
    """

    def __init__(
        self,
        data_dir: Path,
        sinks: Iterable[str],
        *,
        max_bytes: int = 256 * MiB,
        segment_bytes: int = 4 * MiB,
        start: Literal["end", "oldest"] = "end",
    ) -> None:
        self.directory = Path(data_dir) / "outbox"
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        if segment_bytes * 2 > max_bytes:
            raise ValueError("segment_bytes must be at most half of max_bytes")
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []
        self._segments: list[_Segment] = []
        self._end_seq = 0
        self._writer: IO[bytes] | None = None
        self._cursors: dict[str, int] = {}
        self._readers: dict[str, _Reader] = {}
        self.counters: dict[str, SinkCounters] = {}
        self.appended = 0
        self.corrupt_lines = 0
        self.dropped = 0
        self._closed = False
        (self.directory / "cursors").mkdir(parents=True, exist_ok=True)
        self._load_segments()
        names = list(dict.fromkeys(sinks))
        for name in names:
            self._load_cursor(name, start)
        self._enforce_bounds()

    # -- opening ----------------------------------------------------------------------------

    def _load_segments(self) -> None:
        for path in sorted(self.directory.glob(f"{_SEGMENT_PREFIX}*{_SEGMENT_SUFFIX}")):
            digits = path.name[len(_SEGMENT_PREFIX) : -len(_SEGMENT_SUFFIX)]
            if not digits.isdigit():
                log.warning("outbox: ignoring unexpected file %s", path)
                continue
            self._segments.append(_Segment(int(digits), path, path.stat().st_size))
        self._segments.sort(key=lambda s: s.first_seq)
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        for tmp in (self.directory / "cursors").glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        if not self._segments:
            self._new_segment(0)
            return
        last = self._segments[-1]
        good, count = self._recover_tail(last.path, last.first_seq)
        if good != last.size:
            log.warning("outbox: cut %d bytes of an unacknowledged partial append off %s", last.size - good, last.path)
            with open(last.path, "r+b") as fh:
                fh.truncate(good)
                os.fsync(fh.fileno())
            last.size = good
        self._end_seq = last.first_seq + count
        self._writer = open(last.path, "ab")  # noqa: SIM115 - kept open for appends

    def _recover_tail(self, path: Path, first_seq: int) -> tuple[int, int]:
        """Byte length of the complete lines of the last segment, and how many there are.

        Only a trailing partial line can come from an interrupted append (appends write whole
        lines, then fsync); a damaged complete line keeps its seq and is skipped when read.
        """
        good = 0
        count = 0
        last = b""
        with open(path, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break
                good += len(raw)
                count += 1
                last = raw
        if count:
            try:
                seq = int(json.loads(last)["seq"])
            except (ValueError, KeyError, TypeError):
                seq = -1
            if seq != first_seq + count - 1:
                log.warning(
                    "outbox: %s: last record has seq %d, expected %d (damaged segment)",
                    path,
                    seq,
                    first_seq + count - 1,
                )
        return good, count

    def _load_cursor(self, name: str, start: str) -> None:
        self.counters[name] = SinkCounters()
        self._readers[name] = _Reader()
        path = self._cursor_path(name)
        oldest = self._segments[0].first_seq
        if path.exists():
            try:
                value = int(json.loads(path.read_text())["next_seq"])
            except (ValueError, KeyError, TypeError, OSError) as exc:
                log.error(
                    "outbox: cursor file %s unreadable (%s); sink %s restarts at the oldest "
                    "retained change (duplicates possible)",
                    path,
                    exc,
                    name,
                )
                value = oldest
            if value > self._end_seq:
                log.warning(
                    "outbox: cursor of sink %s (%d) is past the end of the log (%d); clamping",
                    name,
                    value,
                    self._end_seq,
                )
                value = self._end_seq
            value = max(value, oldest)
        else:
            value = self._end_seq if start == "end" else oldest
        self._cursors[name] = value
        self._write_cursor(name, value)

    # -- writing ----------------------------------------------------------------------------

    def _new_segment(self, first_seq: int) -> None:
        if self._writer is not None:
            self._writer.close()
        path = self.directory / _segment_name(first_seq)
        self._writer = open(path, "ab")  # noqa: SIM115 - kept open for appends
        _fsync_dir(self.directory)
        self._segments.append(_Segment(first_seq, path, path.stat().st_size))

    def append(self, alerts: Iterable[Alert]) -> int:
        """Write alert changes durably; returns the seq after the last one (the new end).

        When this returns, the changes are fsynced and will reach every sink at least once
        (unless the disk bound drops them first for a sink that stays down).
        """
        lines = [
            json.dumps({"seq": 0, "alert": a.to_json()}, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            for a in alerts
        ]
        if not lines:
            return self._end_seq
        with self._lock:
            if self._closed:
                raise RuntimeError("outbox is closed")
            active = self._segments[-1]
            if active.size >= self.segment_bytes:
                self._new_segment(self._end_seq)
                active = self._segments[-1]
            seq = self._end_seq
            buf = bytearray()
            for line in lines:
                # the seq placeholder keeps json.dumps out of the lock; patch the number in
                buf += line.replace('{"seq":0,', f'{{"seq":{seq},', 1).encode("utf-8") + b"\n"
                seq += 1
            assert self._writer is not None
            self._writer.write(buf)
            self._writer.flush()
            os.fsync(self._writer.fileno())
            active.size += len(buf)
            self._end_seq = seq
            self.appended += len(lines)
            self._enforce_bounds()
            listeners = list(self._listeners)
        for notify in listeners:
            notify()
        return seq

    async def append_async(self, alerts: Iterable[Alert]) -> int:
        """:meth:`append` off the event loop (the fsync then never stalls other tasks)."""
        batch = list(alerts)
        return await asyncio.to_thread(self.append, batch)

    # -- reading ----------------------------------------------------------------------------

    def _segment_index(self, seq: int) -> int:
        firsts = [s.first_seq for s in self._segments]
        return max(bisect.bisect_right(firsts, seq) - 1, 0)

    def read(self, sink: str, limit: int, *, start: int | None = None) -> list[tuple[int, Alert]]:
        """Up to ``limit`` changes from ``sink``'s cursor (or ``start``) on, with their seqs.

        Never waits; an empty list means the sink is caught up.
        """
        with self._lock:
            cursor = self._cursors[sink]
            start = cursor if start is None else max(start, cursor)
            end = self._end_seq
            if start >= end:
                return []
            reader = self._readers[sink]
            out: list[tuple[int, Alert]] = []
            seq = start
            while seq < end and len(out) < limit:
                idx = self._segment_index(seq)
                seg = self._segments[idx]
                seg_end = self._segments[idx + 1].first_seq if idx + 1 < len(self._segments) else end
                if reader.segment_first != seg.first_seq or reader.next_seq != seq or reader.handle is None:
                    self._position(reader, seg, seq)
                assert reader.handle is not None
                while seq < seg_end and len(out) < limit:
                    raw = reader.handle.readline()
                    if not raw.endswith(b"\n"):
                        # cannot happen for seq < end (appends are whole lines, then fsync)
                        reader.close()
                        return out
                    seq += 1
                    reader.next_seq = seq
                    alert = self._decode(raw, seg.path, seq - 1)
                    if alert is not None:
                        out.append((seq - 1, alert))
                if seq >= seg_end and seq < end:
                    reader.close()
            if not out and seq > start == cursor:
                self.commit(sink, seq)  # only unreadable records were there: step over them
            return out

    def _position(self, reader: _Reader, seg: _Segment, seq: int) -> None:
        reader.close()
        reader.handle = open(seg.path, "rb")  # noqa: SIM115 - cached between reads
        reader.segment_first = seg.first_seq
        for _ in range(seq - seg.first_seq):
            if not reader.handle.readline():
                break
        reader.next_seq = seq

    def _decode(self, raw: bytes, path: Path, seq: int) -> Alert | None:
        try:
            rec: dict[str, Any] = json.loads(raw)
            return Alert.from_json(rec["alert"])
        except (ValueError, KeyError, TypeError) as exc:
            self.corrupt_lines += 1
            log.error("outbox: %s: record seq %d is unreadable and is skipped: %s", path, seq, exc)
            return None

    # -- cursors ----------------------------------------------------------------------------

    def _cursor_path(self, sink: str) -> Path:
        return self.directory / "cursors" / f"{sink}.json"

    def _write_cursor(self, sink: str, value: int) -> None:
        path = self._cursor_path(sink)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(json.dumps({"sink": sink, "next_seq": value}).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def commit(self, sink: str, next_seq: int) -> None:
        """Record that ``sink`` has everything before ``next_seq`` (never moves backwards)."""
        with self._lock:
            if next_seq <= self._cursors[sink]:
                return
            next_seq = min(next_seq, self._end_seq)
            self._write_cursor(sink, next_seq)
            self._cursors[sink] = next_seq
            self._enforce_bounds()

    def cursor(self, sink: str) -> int:
        with self._lock:
            return self._cursors[sink]

    @property
    def end_seq(self) -> int:
        """The seq the next appended change will get."""
        with self._lock:
            return self._end_seq

    @property
    def sinks(self) -> list[str]:
        return list(self._cursors)

    def lag(self, sink: str) -> int:
        """Changes accepted but not yet delivered to ``sink``."""
        with self._lock:
            return self._end_seq - self._cursors[sink]

    @property
    def disk_bytes(self) -> int:
        with self._lock:
            return sum(s.size for s in self._segments)

    # -- bounds -----------------------------------------------------------------------------

    def _delete_oldest(self) -> None:
        seg = self._segments.pop(0)
        for reader in self._readers.values():
            if reader.segment_first == seg.first_seq:
                reader.close()
        seg.path.unlink(missing_ok=True)
        _fsync_dir(self.directory)

    def _enforce_bounds(self) -> None:
        """Delete consumed segments, then the oldest ones while over ``max_bytes`` (see module doc)."""
        with self._lock:
            low = min(self._cursors.values(), default=self._end_seq)
            while len(self._segments) > 1 and self._segments[1].first_seq <= low:
                self._delete_oldest()
            total = sum(s.size for s in self._segments)
            while total > self.max_bytes and len(self._segments) > 1:
                seg, seg_end = self._segments[0], self._segments[1].first_seq
                for name, cur in self._cursors.items():
                    if cur < seg_end:
                        lost = seg_end - max(cur, seg.first_seq)
                        self.counters[name].dropped += lost
                        self.dropped += lost
                        log.error(
                            "outbox: disk bound of %d bytes reached; sink %s loses %d undelivered "
                            "alert changes (seq %d-%d) because it is too far behind",
                            self.max_bytes,
                            name,
                            lost,
                            max(cur, seg.first_seq),
                            seg_end - 1,
                        )
                        self._write_cursor(name, seg_end)
                        self._cursors[name] = seg_end
                total -= seg.size
                self._delete_oldest()

    # -- wake-ups, stats, closing -------------------------------------------------------------

    def add_listener(self, notify: Callable[[], None]) -> None:
        """Call ``notify()`` (from the appending thread) after every successful append."""
        with self._lock:
            self._listeners.append(notify)

    def remove_listener(self, notify: Callable[[], None]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._listeners.remove(notify)

    def stats(self) -> dict[str, Any]:
        """Counters for the service's /metrics (plain numbers; the lead maps them to Prometheus)."""
        with self._lock:
            return {
                "appended": self.appended,
                "end_seq": self._end_seq,
                "disk_bytes": sum(s.size for s in self._segments),
                "segments": len(self._segments),
                "dropped": self.dropped,
                "corrupt_lines": self.corrupt_lines,
                "sinks": {
                    name: {
                        "delivered": c.delivered,
                        "batches": c.batches,
                        "failures": c.failures,
                        "skipped": c.skipped,
                        "dropped": c.dropped,
                        "lag": self._end_seq - self._cursors[name],
                        "cursor": self._cursors[name],
                        "last_error": c.last_error,
                        "last_success": c.last_success,
                    }
                    for name, c in self.counters.items()
                },
            }

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for reader in self._readers.values():
                reader.close()
            if self._writer is not None:
                self._writer.close()
                self._writer = None
