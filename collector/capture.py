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
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import zstandard

from collector.errors import CaptureError
from collector.schema import RawRecord, iso, parse_iso
from collector.text import ORJSON

REQUIRED = ("ts", "kind", "target")


_ORJSON: Any = ORJSON


def _open_write(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".zst"):
        raw = open(path, "wb")  # noqa: SIM115 - closed through the text wrapper
        stream = zstandard.ZstdCompressor(level=10).stream_writer(raw, closefd=True)
        return io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
    return open(path, "w", encoding="utf-8", newline="\n")


class TruncatedStream(Exception):
    """A compressed capture ended in the middle of a frame."""


DECOMPRESS_STEP = 64 << 10
"""Compressed bytes fed to zstd per call. A capture compresses ~25:1, so a 1 MiB step came back
as one ~25 MB piece (and its split copy): the reader's peak memory, for no speed (measured)."""


def _iter_blocks(path: Path, chunk: int = DECOMPRESS_STEP) -> Iterator[bytes]:
    """Yield the (decompressed) contents of a plain or zstd file, piece by piece.

    zstd frames are decoded by hand so a file cut off mid-frame is *detected* (the streaming
    reader would just stop) and reported, instead of silently losing its tail.
    """
    with open(path, "rb") as raw:
        if not path.name.endswith(".zst"):
            yield from iter(lambda: raw.read(max(chunk, 1 << 20)), b"")
            return
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


def _iter_lines(path: Path) -> Iterator[bytes]:
    """Yield raw lines (with their newline, the last one maybe without) of a plain or zstd file."""
    buf = b""
    for block in _iter_blocks(path):
        buf += block
        *lines, buf = buf.split(b"\n")
        for ln in lines:
            yield ln + b"\n"
    if buf:
        yield buf


def split_lines(data: bytes) -> list[bytes]:
    """``data`` (whole lines, as :func:`iter_line_data` gives them) as :func:`_iter_lines` yields them."""
    lines = [ln + b"\n" for ln in data.split(b"\n")]
    last = lines.pop()
    if last != b"\n":  # the file's last line without its newline
        lines.append(last[:-1])
    return lines


READ_FAULTS = (TruncatedStream, zstandard.ZstdError, OSError)
"""What reading a capture file on may raise (:func:`read_error` turns it into the last item)."""


def iter_line_data(path: Path, block_bytes: int = 1 << 20) -> Iterator[bytes]:
    """The file as pieces of about ``block_bytes`` of whole lines (the last line without its
    newline, if so, alone), not numbered: a replay's parse workers split them into lines anyway
    and count them there (:meth:`hciwatch.parse_pool.ParsePool.parse_capture`), so the reading
    process does not scan every byte once more for newlines.

    Raises what :func:`_iter_lines` raises, after every whole line read before the fault.
    """
    for parts in iter_line_parts(path, block_bytes):
        yield joined(parts)


def joined(parts: list[bytes | memoryview]) -> bytes:
    """A piece of :func:`iter_line_parts` as one ``bytes`` (a piece of one part: that part)."""
    return parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else b"".join(parts)


def iter_line_parts(path: Path, block_bytes: int = 1 << 20) -> Iterator[list[bytes | memoryview]]:
    """:func:`iter_line_data`'s pieces, each as the decompressed parts it is made of, not joined.

    Why: a reader that writes a piece somewhere (a replay hands each to a parse worker through a
    shared-memory file, :class:`hciwatch.shm_handoff.BlockFiles`) writes the parts one after the
    other, and the join's copy of every byte (~0.13 s of the 48 h capture's 358 MiB) is not made.
    A ``memoryview`` part refers to a decompressed part the next piece's first part is cut from.

    Raises what :func:`_iter_lines` raises, after every whole line read before the fault.
    """
    parts: list[bytes | memoryview] = []  # read, not yet in a piece: whole lines then a part of one
    size = 0
    fault: Exception | None = None
    try:
        for piece in _iter_blocks(path):
            parts.append(piece)
            size += len(piece)
            if size < block_bytes:
                continue
            cut = piece.rfind(b"\n") + 1
            if cut == 0:  # no line ends in this piece: wait for one (a line longer than a block)
                continue
            if cut == len(piece):
                yield parts
                parts, size = [], 0
                continue
            yield [*parts[:-1], memoryview(piece)[:cut]]
            parts = [piece[cut:]]
            size = len(piece) - cut
    except READ_FAULTS as exc:
        fault = exc  # reported after the whole lines read before it, as line by line
    data = b"".join(parts)
    cut = data.rfind(b"\n") + 1
    if cut:
        yield [data[:cut] if cut < len(data) else data]
    if fault is not None:
        raise fault
    if cut < len(data):  # the last line without its newline (not after a fault: it may be cut)
        yield [data[cut:]]


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
        body = obj["body"].encode("utf-8")  # no lone surrogate: parse_line refused those
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


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A JSON escape of a UTF-16 surrogate: valid JSON, but alone (not as a pair) it decodes to a
string no UTF-8 encoder (nor Arrow) accepts, which would stop the flow far from this line."""


def plain_record(obj: Any) -> RawRecord | None:
    """The record of a decoded line of the usual shape — every field :func:`record_from_json`
    reads is a string (labels: an object of strings), the body in ``body`` — else None.

    Exactly what :func:`record_from_json` makes of such an object, with less checking: it is only
    the common case, anything else goes the careful way.
    """
    if type(obj) is not dict:
        return None
    get = obj.get
    ts, kind, target, body = get("ts"), get("kind"), get("target"), get("body")
    host, labels, topic = get("host"), get("labels"), get("topic")
    if (
        type(ts) is not str
        or type(kind) is not str
        or type(target) is not str
        or type(body) is not str
        or (host is not None and type(host) is not str)
        or (topic is not None and type(topic) is not str)
        or (labels is not None and (type(labels) is not dict or not all(type(v) is str for v in labels.values())))
    ):
        return None
    try:
        when = parse_iso(ts)
    except ValueError:
        return None
    return RawRecord(
        ts=when, kind=kind, target=target, host=host or "", labels=labels or {}, body=body.encode("utf-8"), topic=topic
    )


def _fast_item(raw_line: bytes, *, file: str, line: int, kinds: Collection[str] | None) -> CaptureItem | None:
    """:func:`parse_line`'s item for a good line of the usual shape, decoded by orjson; None for
    any other line (orjson refuses it, or a field is not a string), which the careful way reads.

    Where orjson and :mod:`json` disagree (numbers: ``NaN``, integers past 64 bits; lone
    surrogates, which orjson refuses and the careful way reports), no field read here is a
    number, and an accepted line has no lone surrogate, so the record is the careful one's.
    """
    try:
        obj = _ORJSON.loads(raw_line)
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        return None
    rec = plain_record(obj)
    if rec is None:
        return None
    if kinds is not None and rec.kind not in kinds:
        return None  # the careful way words the error
    return CaptureItem(file, line, rec, None)


def parse_line(raw_line: bytes, *, file: str, line: int, kinds: Collection[str] | None) -> CaptureItem | None:
    """One capture line as a record or the precise error it gives (None: a blank line).

    Everything but the order check, which needs the lines before (:func:`order_error`); a
    replay's parse workers call this on their blocks of lines, :func:`read_capture` line by line.
    Good lines of the usual shape are decoded by orjson when it is installed (:func:`_fast_item`,
    a third of :mod:`json`'s CPU); every other line, and every error, the careful way.
    """
    if _ORJSON is not None:
        item = _fast_item(raw_line, file=file, line=line, kinds=kinds)
        if item is not None:
            return item
    return careful_line(raw_line, file=file, line=line, kinds=kinds)


def careful_line(raw_line: bytes, *, file: str, line: int, kinds: Collection[str] | None) -> CaptureItem | None:
    """:func:`parse_line` with :mod:`json` only: the reference the fast path is tested against."""
    try:
        text = raw_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return CaptureItem(file, line, None, CaptureError(f"not UTF-8 at byte {exc.start}", file=file, line=line))
    if not text.strip():
        return None
    text = text.rstrip("\r\n")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated")
        why = "truncated JSON" if truncated else f"invalid JSON ({exc})"
        return CaptureItem(file, line, None, CaptureError(why, file=file, line=line))
    except ValueError as exc:  # valid JSON the decoder refuses: an integer of more than 4,300 digits
        return CaptureItem(file, line, None, CaptureError(f"invalid JSON ({exc})", file=file, line=line))
    except RecursionError:
        why = "invalid JSON (nested too deeply to decode)"
        return CaptureItem(file, line, None, CaptureError(why, file=file, line=line))
    if _SURROGATE_ESCAPE.search(text) is not None:  # rare: most lines skip the re-encode
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            why = "invalid JSON (a \\u escape stands for a lone surrogate, not a character)"
            return CaptureItem(file, line, None, CaptureError(why, file=file, line=line))
    try:
        rec = record_from_json(obj, file=file, line=line)
    except CaptureError as err:
        return CaptureItem(file, line, None, err)
    if kinds is not None and rec.kind not in kinds:
        why = f"unknown kind {rec.kind!r}; known kinds: {', '.join(sorted(kinds))}"
        return CaptureItem(file, line, None, CaptureError(why, file=file, line=line, target=rec.target))
    return CaptureItem(file, line, rec, None)


def order_error(ts: datetime, target: str, last_ts: datetime | None, *, file: str, line: int) -> CaptureError | None:
    """The error for a record earlier than the previous good one (a virtual clock cannot run backwards)."""
    if last_ts is None or ts >= last_ts:
        return None
    why = f"out of order: ts {iso(ts)} is before the previous record's {iso(last_ts)}"
    return CaptureError(why, file=file, line=line, target=target)


def read_error(exc: BaseException, *, file: str, lines_read: int) -> CaptureItem:
    """The one item that ends a file that could not be read on (after ``lines_read`` lines)."""
    if isinstance(exc, FileNotFoundError):
        return CaptureItem(file, 0, None, CaptureError(f"cannot open: {exc.strerror}", file=file, line=0))
    line = lines_read + 1
    return CaptureItem(file, line, None, CaptureError(f"unreadable data: {exc}", file=file, line=line))


class CaptureStream(Iterator[CaptureItem]):
    """:func:`read_capture`'s items, read lazily; ``path`` and ``kinds`` tell a replay that it may
    hand the file's lines to its parse workers instead (:meth:`ParsePool.parse_capture`) as long
    as nothing has been read yet (``started``)."""

    def __init__(self, path: Path, kinds: frozenset[str] | None) -> None:
        self.path = Path(path)
        self.kinds = kinds
        self.started = False
        self._items: Iterator[CaptureItem] | None = None

    def __iter__(self) -> CaptureStream:
        return self

    def __next__(self) -> CaptureItem:
        if self._items is None:
            self.started = True
            self._items = _read_capture(self.path, self.kinds)
        return next(self._items)


def read_capture(path: Path, *, known_kinds: Iterable[str] | None = None) -> CaptureStream:
    """Yield every line of one capture file as a record or a precise error.

    Out-of-order records (``ts`` earlier than the previous good record) are reported and
    skipped: a virtual clock cannot run backwards. A truncated or corrupt compressed stream
    ends the file with one error for the line where it broke.
    """
    return CaptureStream(Path(path), frozenset(known_kinds) if known_kinds is not None else None)


def _read_capture(path: Path, kinds: frozenset[str] | None) -> Iterator[CaptureItem]:
    name = str(path)
    last_ts = None
    line_no = 0
    lines = _iter_lines(path)
    while True:
        try:
            raw_line = next(lines)
        except StopIteration:
            return
        except READ_FAULTS as exc:
            yield read_error(exc, file=name, lines_read=line_no)
            return
        line_no += 1
        item = parse_line(raw_line, file=name, line=line_no, kinds=kinds)
        if item is None:
            continue
        if item.record is not None:
            err = order_error(item.record.ts, item.record.target, last_ts, file=name, line=line_no)
            if err is not None:
                yield CaptureItem(name, line_no, None, err)
                continue
            last_ts = item.record.ts
        yield item


def read_captures(paths: Iterable[Path], *, known_kinds: Iterable[str] | None = None) -> Iterator[CaptureItem]:
    """Merge several capture files by time (each must be sorted); errors come through in place.

    One file comes back as its :class:`CaptureStream` (a replay may read it in its workers).
    """
    kinds = list(known_kinds) if known_kinds is not None else None
    streams = [read_capture(Path(p), known_kinds=kinds) for p in paths]
    if len(streams) == 1:
        return streams[0]
    return _merged(streams)


def _merged(streams: list[CaptureStream]) -> Iterator[CaptureItem]:
    def keyed(i: int, it: Iterator[CaptureItem]) -> Iterator[tuple[float, int, int, CaptureItem]]:
        last = float("-inf")
        for item in it:
            # errors keep the time of the last good record so they surface in place
            if item.record is not None:
                last = item.record.ts.timestamp()
            yield (last, i, item.line, item)

    for _, _, _, item in heapq.merge(*(keyed(i, s) for i, s in enumerate(streams))):
        yield item
