"""Capture files: the replay format (a public contract — keep it stable).

JSON Lines, optionally zstd-compressed (``.jsonl`` / ``.jsonl.zst``), one record per line,
sorted by ``ts``::

    {"ts": "2026-11-20T10:00:00.000Z", "kind": "prometheus", "target": "hci-node-01:9182",
     "host": "hci-node-01", "labels": {"cluster": "hci-1"}, "body": "<payload exactly as received>"}

Optional fields: ``topic`` (MQTT records), ``body_b64`` instead of ``body`` when the payload was
not valid UTF-8 (so captures stay byte-exact). Readers report each bad line precisely (file,
line, target, why) and go on; they never stop at the first problem.
"""

from __future__ import annotations

import base64
import heapq
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from collector.errors import CaptureError
from collector.schema import RawRecord, iso, parse_iso

REQUIRED = ("ts", "kind", "target")


def _open_write(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".zst"):
        raw = open(path, "wb")  # noqa: SIM115 - closed through the text wrapper
        stream = zstandard.ZstdCompressor(level=10).stream_writer(raw, closefd=True)
        return io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
    return open(path, "w", encoding="utf-8", newline="\n")


class TruncatedStream(Exception):
    """A compressed capture ended in the middle of a frame."""


def _iter_lines(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    """Yield raw lines (with their newline, the last one maybe without) of a plain or zstd file.

    zstd frames are decoded by hand so a file cut off mid-frame is *detected* (the streaming
    reader would just stop) and reported, instead of silently losing its tail.
    """
    with open(path, "rb") as raw:
        if path.name.endswith(".zst"):

            def blocks() -> Iterator[bytes]:
                dctx = zstandard.ZstdDecompressor()
                dobj = dctx.decompressobj()
                pending = b""
                while True:
                    data = pending or raw.read(chunk)
                    pending = b""
                    if not data:
                        if not dobj.eof:
                            raise TruncatedStream("compressed stream ends mid-frame (file truncated?)")
                        return
                    out = dobj.decompress(data)
                    if out:
                        yield out
                    if dobj.eof:
                        pending = dobj.unused_data
                        if not pending:
                            nxt = raw.read(chunk)
                            if not nxt:
                                return
                            pending = nxt
                        dobj = dctx.decompressobj()

            source: Iterator[bytes] = blocks()
        else:
            source = iter(lambda: raw.read(chunk), b"")
        buf = b""
        for block in source:
            buf += block
            *lines, buf = buf.split(b"\n")
            for ln in lines:
                yield ln + b"\n"
        if buf:
            yield buf


def record_to_json(rec: RawRecord) -> dict[str, Any]:
    """The capture-line object for one record (key order fixed for byte-stable files)."""
    obj: dict[str, Any] = {
        "ts": iso(rec.ts),
        "kind": rec.kind,
        "target": rec.target,
        "host": rec.host,
        "labels": dict(sorted(rec.labels.items())),
    }
    if rec.topic is not None:
        obj["topic"] = rec.topic
    try:
        obj["body"] = rec.body.decode("utf-8")
    except UnicodeDecodeError:
        obj["body_b64"] = base64.b64encode(rec.body).decode("ascii")
    return obj


class CaptureWriter:
    """Appends records to a capture file; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh = _open_write(self.path)
        self.count = 0

    def write(self, rec: RawRecord) -> None:
        self._fh.write(json.dumps(record_to_json(rec), ensure_ascii=False, separators=(",", ":")))
        self._fh.write("\n")
        self.count += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_capture(path: Path, records: Iterable[RawRecord]) -> int:
    """Write records (already time-sorted) to ``path``; returns how many."""
    with CaptureWriter(path) as w:
        for rec in records:
            w.write(rec)
        return w.count


def record_from_json(obj: Any, *, file: str, line: int) -> RawRecord:
    """Validate one decoded capture line; raises :class:`CaptureError` naming the problem."""
    if not isinstance(obj, dict):
        raise CaptureError(f"a record must be a JSON object, got {type(obj).__name__}", file=file, line=line)
    target: str = obj["target"] if isinstance(obj.get("target"), str) else ""
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise CaptureError(f"missing field(s) {', '.join(missing)}", file=file, line=line, target=target)
    for key in ("ts", "kind", "target"):
        if not isinstance(obj[key], str):
            raise CaptureError(f"field {key!r} must be a string", file=file, line=line, target=target)
    try:
        ts = parse_iso(obj["ts"])
    except ValueError as exc:
        raise CaptureError(f"bad ts: {exc}", file=file, line=line, target=target) from None
    if "body" in obj:
        if not isinstance(obj["body"], str):
            raise CaptureError("field 'body' must be a string", file=file, line=line, target=target)
        body = obj["body"].encode("utf-8")
    elif "body_b64" in obj:
        try:
            body = base64.b64decode(obj["body_b64"], validate=True)
        except (ValueError, TypeError) as exc:
            raise CaptureError(f"bad body_b64: {exc}", file=file, line=line, target=target) from None
    else:
        raise CaptureError("missing field body (or body_b64)", file=file, line=line, target=target)
    labels = obj.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str | int | float) for v in labels.values()):
        raise CaptureError("field 'labels' must be an object of strings", file=file, line=line, target=target)
    host = obj.get("host") or ""
    topic = obj.get("topic")
    if not isinstance(host, str) or (topic is not None and not isinstance(topic, str)):
        raise CaptureError("fields 'host' and 'topic' must be strings", file=file, line=line, target=target)
    return RawRecord(
        ts=ts,
        kind=obj["kind"],
        target=obj["target"],
        host=host,
        labels={str(k): str(v) for k, v in labels.items()},
        body=body,
        topic=topic,
    )


@dataclass(frozen=True, slots=True)
class CaptureItem:
    """One line of a capture file: a record, or the error that line produced."""

    file: str
    line: int
    record: RawRecord | None
    error: CaptureError | None


def read_capture(path: Path, *, known_kinds: Iterable[str] | None = None) -> Iterator[CaptureItem]:
    """Yield every line of one capture file as a record or a precise error.

    Out-of-order records (``ts`` earlier than the previous good record) are reported and
    skipped: a virtual clock cannot run backwards. A truncated or corrupt compressed stream
    ends the file with one error for the line where it broke.
    """
    kinds = set(known_kinds) if known_kinds is not None else None
    name = str(path)
    last_ts = None
    line_no = 0
    lines = _iter_lines(Path(path))
    while True:
        try:
            raw_line = next(lines)
        except StopIteration:
            return
        except FileNotFoundError as exc:
            yield CaptureItem(name, 0, None, CaptureError(f"cannot open: {exc.strerror}", file=name, line=0))
            return
        except (TruncatedStream, zstandard.ZstdError, OSError) as exc:
            yield CaptureItem(
                name, line_no + 1, None, CaptureError(f"unreadable data: {exc}", file=name, line=line_no + 1)
            )
            return
        line_no += 1
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield CaptureItem(
                name, line_no, None, CaptureError(f"not UTF-8 at byte {exc.start}", file=name, line=line_no)
            )
            continue
        if not line.strip():
            continue
        text = line.rstrip("\r\n")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            truncated = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated")
            why = "truncated JSON" if truncated else f"invalid JSON ({exc})"
            yield CaptureItem(name, line_no, None, CaptureError(why, file=name, line=line_no))
            continue
        try:
            rec = record_from_json(obj, file=name, line=line_no)
        except CaptureError as err:
            yield CaptureItem(name, line_no, None, err)
            continue
        if kinds is not None and rec.kind not in kinds:
            yield CaptureItem(
                name,
                line_no,
                None,
                CaptureError(
                    f"unknown kind {rec.kind!r}; known kinds: {', '.join(sorted(kinds))}",
                    file=name,
                    line=line_no,
                    target=rec.target,
                ),
            )
            continue
        if last_ts is not None and rec.ts < last_ts:
            yield CaptureItem(
                name,
                line_no,
                None,
                CaptureError(
                    f"out of order: ts {iso(rec.ts)} is before the previous record's {iso(last_ts)}",
                    file=name,
                    line=line_no,
                    target=rec.target,
                ),
            )
            continue
        last_ts = rec.ts
        yield CaptureItem(name, line_no, rec, None)


def read_captures(paths: Iterable[Path], *, known_kinds: Iterable[str] | None = None) -> Iterator[CaptureItem]:
    """Merge several capture files by time (each must be sorted); errors come through in place."""
    kinds = list(known_kinds) if known_kinds is not None else None
    streams = [read_capture(Path(p), known_kinds=kinds) for p in paths]
    if len(streams) == 1:
        yield from streams[0]
        return

    def keyed(i: int, it: Iterator[CaptureItem]) -> Iterator[tuple[float, int, int, CaptureItem]]:
        last = float("-inf")
        for item in it:
            # errors keep the time of the last good record so they surface in place
            if item.record is not None:
                last = item.record.ts.timestamp()
            yield (last, i, item.line, item)

    for _, _, _, item in heapq.merge(*(keyed(i, s) for i, s in enumerate(streams))):
        yield item
