"""typeperf / relog PDH-CSV → samples (pure parser) and a chunked file reader for imports.

The format (``typeperf -f CSV``, ``relog -f CSV``, Performance Monitor "comma separated" logs)::

    "(PDH-CSV 4.0) (W. Europe Daylight Time)(-120)","\\\\HCI-NODE1\\RDMA Activity(X)\\RDMA Inbound Bytes/sec"
    "05/29/2024 14:00:00.123","1234567.5"

* the first header cell names the time zone and its *bias* in minutes (UTC = local + bias, the
  Win32 ``TIME_ZONE_INFORMATION`` convention, daylight saving already included: Eastern Daylight
  Time is ``(240)``); every timestamp is local time in that zone, ``MM/DD/YYYY HH:MM:SS.mmm``.
  typeperf printing to the console writes ``"(PDH-CSV 4.0)"`` with no zone at all (seen in real
  captures); those times are read as UTC and one error at the header says so, rather than
  refusing the file;
* each other header cell is a full counter path ``\\\\HOST\\Object(Instance)\\Counter`` (the
  instance may itself contain ``\\`` and parentheses, e.g. SMB shares ``(\\\\fs\\share)``);
* a value cell holding a blank (``" "``) or nothing means "no data for this interval".

Values are *formatted* (per-second rates, average seconds), so counters map through
``catalog.lookup_pdh(obj, counter, raw=False)``; unmapped counters keep the native name
``<Object>\\<Counter>``. Host comes from the path, labels ``{"instance": ...}`` are normalized
like every other Windows source.

Files from relog may be UTF-16 with a BOM; console captures of typeperf may begin with a blank
line and end with status lines (``The command completed successfully.``), which are skipped.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.catalog import Catalog, normalize_windows_labels
from collector.errors import ParseError
from collector.rows import SampleRows, clean
from collector.schema import ParseResult, RawRecord, to_ms

SOURCE = "typeperf"
PARSER = "typeperf"
KIND = "typeperf-csv"
# Record label naming the file line of the first data row (set by iter_typeperf_records) so
# errors in a chunk point at the right line of the original file.
FIRST_LINE_LABEL = "first_line"
# Set on the first chunk only, so header problems are reported once, at the file's line.
HEADER_LINE_LABEL = "header_line"
CONTROL_LABELS = frozenset({"source", FIRST_LINE_LABEL, HEADER_LINE_LABEL})

_HEADER = re.compile(r"^\(PDH-CSV (?P<ver>[0-9.]+)\)\s*(?:(?P<tz>.*?)\s*\((?P<bias>[-+]?\d{1,5})\))?\s*$")
NO_ZONE = (
    "no time zone in the PDH-CSV header (typeperf writes none when it prints to the console): "
    "times are read as UTC; save with 'typeperf -f CSV -o FILE' to keep the zone"
)
_TIME = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\s*$")


@dataclass(frozen=True, slots=True)
class CounterPath:
    """One parsed header cell."""

    host: str
    obj: str
    instance: str | None
    counter: str


def parse_counter_path(path: str) -> CounterPath:
    """``\\\\HOST\\Object(Instance)\\Counter`` → parts; ``ValueError`` naming the problem."""
    p = path.strip()
    host = ""
    if p.startswith("\\\\"):
        rest = p[2:]
        sep = rest.find("\\")
        if sep <= 0:
            raise ValueError(f"counter path has no object after the host: {path[:120]!r}")
        host, p = rest[:sep], rest[sep:]
    if not p.startswith("\\"):
        raise ValueError(f"counter path must start with \\\\HOST\\ or \\: {path[:120]!r}")
    body = p[1:]
    paren = body.find("(")
    first_sep = body.find("\\")
    if paren != -1 and (first_sep == -1 or paren < first_sep):
        # Object(Instance)\Counter: the instance ends at the last ")\" (instances may hold "\")
        close = body.rfind(")\\")
        if close < paren:
            raise ValueError(f"unbalanced instance parentheses in counter path: {path[:120]!r}")
        obj, instance, counter = body[:paren], body[paren + 1 : close], body[close + 2 :]
    else:
        if first_sep == -1:
            raise ValueError(f"counter path has no counter name: {path[:120]!r}")
        obj, instance, counter = body[:first_sep], None, body[first_sep + 1 :]
    if not obj.strip() or not counter.strip():
        raise ValueError(f"counter path lacks an object or counter name: {path[:120]!r}")
    return CounterPath(host, obj.strip(), instance, counter.strip())


def decode_csv(data: bytes) -> str:
    """UTF-16 (relog, with BOM), UTF-8 with or without BOM, else Windows-1252 (ANSI typeperf)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", "replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def parse_header(cells: list[str]) -> tuple[int, list[CounterPath | None], list[str]]:
    """Header row → (bias minutes, counter per column, problems); ``ValueError`` if not PDH-CSV."""
    if not cells:
        raise ValueError("empty header row")
    m = _HEADER.match(cells[0].strip())
    if not m:
        raise ValueError(f"first header cell is not '(PDH-CSV 4.0) (<time zone>)(<bias>)': {cells[0][:80]!r}")
    columns: list[CounterPath | None] = []
    problems: list[str] = []
    if m.group("bias") is None:  # console typeperf: "(PDH-CSV 4.0)" alone, local times of an unknown zone
        bias = 0
        problems.append(NO_ZONE)
    else:
        bias = int(m.group("bias"))
    if abs(bias) > 24 * 60:
        raise ValueError(f"time zone bias {bias} minutes is out of range")
    for i, cell in enumerate(cells[1:], start=2):
        try:
            columns.append(parse_counter_path(cell))
        except ValueError as exc:
            columns.append(None)
            problems.append(f"column {i}: {exc}")
    return bias, columns, problems


def local_to_utc_ms(text: str, bias_minutes: int) -> int:
    """``MM/DD/YYYY HH:MM:SS.mmm`` local time with the header's bias → epoch ms (UTC)."""
    m = _TIME.match(text)
    if not m:
        raise ValueError(f"timestamp {text[:40]!r} is not MM/DD/YYYY HH:MM:SS.mmm")
    mon, day, year, hh, mm, ss, frac = m.groups()
    micro = int((frac or "0").ljust(6, "0"))
    local = datetime(int(year), int(mon), int(day), int(hh), int(mm), int(ss), micro, tzinfo=UTC)
    return to_ms(local + timedelta(minutes=bias_minutes))


class _Columns:
    """Per-column mapping resolved once per header: canonical (or native) name, host, labels."""

    def __init__(self, columns: list[CounterPath | None], catalog: Catalog, extra: dict[str, str]) -> None:
        self.entries: list[tuple[int, str, str, dict[str, str], float] | None] = []
        for idx, cp in enumerate(columns, start=1):
            if cp is None:
                self.entries.append(None)
                continue
            md = catalog.lookup_pdh(cp.obj, cp.counter, raw=False)
            divisor = md.divisor if md is not None else 1.0
            metric = md.name if md is not None else f"{cp.obj}\\{cp.counter}"
            labels = dict(extra)
            if cp.instance is not None:
                labels["instance"] = cp.instance
            self.entries.append(
                (
                    idx,
                    clean(metric),
                    clean(cp.host),
                    {clean(k): clean(v) for k, v in normalize_windows_labels(metric, labels).items()},
                    divisor,
                )
            )


def _is_chatter(line: str) -> bool:
    """typeperf console status lines: unquoted, no comma (``Exiting, please wait...`` has one)."""
    s = line.strip()
    return not s.startswith('"') and ("," not in s or s.lower().startswith("exiting"))


def parse_record(record: RawRecord, catalog: Catalog) -> ParseResult:
    """A whole PDH-CSV body (or one chunk from :func:`iter_typeperf_records`) → samples."""
    target = record.target
    text = decode_csv(record.body)
    source = clean(record.labels.get("source", "")) or SOURCE
    first_line = _int_label(record, FIRST_LINE_LABEL)
    header_label = _int_label(record, HEADER_LINE_LABEL)
    extra = {k: v for k, v in record.labels.items() if k not in CONTROL_LABELS}
    lines = text.splitlines()
    # header = first non-blank line
    h = 0
    while h < len(lines) and not lines[h].strip():
        h += 1
    if h == len(lines):
        raise ParseError("empty typeperf CSV (no header row)", source=PARSER, target=target)
    try:
        header_cells = _split(lines[h])
        bias, columns, problems = parse_header(header_cells)
    except (ValueError, csv.Error) as exc:
        raise ParseError(f"bad PDH-CSV header: {exc}", source=PARSER, target=target, line=h + 1) from None
    # A chunk (first_line set) reports header problems only when it is the file's first chunk.
    header_line_no: int | None = header_label or (None if first_line else h + 1)

    # In a chunk, line numbers continue from the file's: data row k sits at first_line + k.
    def file_line(i: int) -> int:
        return first_line + (i - h - 1) if first_line else i + 1

    errors: list[Exception] = [
        ParseError(p, source=PARSER, target=target, line=header_line_no) for p in problems if header_line_no is not None
    ]
    resolved = _Columns(columns, catalog, extra)
    ncols = len(header_cells)
    rows = SampleRows()
    for i in range(h + 1, len(lines)):
        line = lines[i]
        if not line.strip() or _is_chatter(line):
            continue
        try:
            cells = _split(line)
        except csv.Error as exc:
            errors.append(
                ParseError(
                    f"unreadable CSV row ({exc}); truncated line?", source=PARSER, target=target, line=file_line(i)
                )
            )
            continue
        if len(cells) != ncols:
            why = "truncated line?" if len(cells) < ncols else "extra columns"
            errors.append(
                ParseError(
                    f"row has {len(cells)} columns, header has {ncols} ({why})",
                    source=PARSER,
                    target=target,
                    line=file_line(i),
                )
            )
            continue
        try:
            ts = local_to_utc_ms(cells[0], bias)
        except (ValueError, OverflowError) as exc:
            errors.append(ParseError(str(exc), source=PARSER, target=target, line=file_line(i)))
            continue
        bad: list[int] = []
        for col, entry in enumerate(resolved.entries, start=1):
            if entry is None:
                continue
            cell = cells[col].strip()
            if not cell:
                continue  # missing interval
            try:
                value = float(cell)
            except ValueError:
                bad.append(col + 1)
                continue
            if value != value or value in (float("inf"), float("-inf")):
                bad.append(col + 1)
                continue
            _, metric, host, labels, divisor = entry
            rows.add(ts, source, host, metric, labels, value / divisor)
        if bad:
            errors.append(
                ParseError(
                    f"non-numeric value in column(s) {', '.join(map(str, bad[:10]))}",
                    source=PARSER,
                    target=target,
                    line=file_line(i),
                )
            )
    return ParseResult(samples=rows.table(), errors=errors)


def _int_label(record: RawRecord, key: str) -> int:
    try:
        return max(0, int(record.labels.get(key, "0")))
    except ValueError:
        return 0


def _split(line: str) -> list[str]:
    """One CSV line → cells (typeperf never puts newlines inside a cell)."""
    reader = csv.reader([line], strict=True)
    for row in reader:
        return row
    return []


# ---------------------------------------------------------------------------------------------
# Streaming import of big files
# ---------------------------------------------------------------------------------------------


def _open_text(path: Path) -> io.TextIOWrapper:
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif head[:3] == b"\xef\xbb\xbf":
        encoding = "utf-8-sig"
    else:
        encoding = "utf-8"
    return open(path, encoding=encoding, errors="replace", newline="")


def iter_typeperf_records(
    path: str | Path, *, chunk_rows: int = 10_000, labels: dict[str, str] | None = None
) -> Iterator[RawRecord]:
    """Stream a (possibly huge) PDH-CSV file as ``typeperf-csv`` records of header + N rows.

    Memory stays bounded by ``chunk_rows``; each record carries its first data row's file line
    number (label ``first_line``) so errors point into the original file, and its ``ts`` is the
    first row's UTC time (or the previous chunk's when that row is unreadable).
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    p = Path(path)
    base_labels = dict(labels or {})
    with _open_text(p) as fh:
        header: str | None = None
        header_line = 0
        first_chunk = True
        bias = 0
        chunk: list[str] = []
        chunk_first = 0
        last_ts = datetime.fromtimestamp(0, tz=UTC)
        line_no = 0
        for raw in fh:
            line_no += 1
            line = raw.rstrip("\r\n")
            if header is None:
                if not line.strip():
                    continue
                header, header_line = line, line_no
                try:
                    bias, _, _ = parse_header(_split(line))
                except (ValueError, csv.Error) as exc:
                    raise ParseError(f"bad PDH-CSV header: {exc}", source=PARSER, target=str(p), line=line_no) from None
                continue
            if not chunk:
                chunk_first = line_no
            chunk.append(line)
            if len(chunk) >= chunk_rows:
                last_ts = _chunk_ts(chunk[0], bias, last_ts)
                yield _chunk_record(
                    p, header, chunk, chunk_first, last_ts, base_labels, header_line if first_chunk else 0
                )
                first_chunk = False
                chunk = []
        if header is None:
            raise ParseError("empty typeperf CSV (no header row)", source=PARSER, target=str(p))
        if chunk:
            last_ts = _chunk_ts(chunk[0], bias, last_ts)
            yield _chunk_record(p, header, chunk, chunk_first, last_ts, base_labels, header_line if first_chunk else 0)


def _chunk_ts(first_row: str, bias: int, fallback: datetime) -> datetime:
    try:
        cells = _split(first_row)
        return datetime.fromtimestamp(local_to_utc_ms(cells[0], bias) / 1000, tz=UTC)
    except (ValueError, csv.Error, IndexError, OverflowError, OSError):
        return fallback


def _chunk_record(
    path: Path, header: str, rows: list[str], first_line: int, ts: datetime, labels: dict[str, str], header_line: int
) -> RawRecord:
    body = ("\r\n".join([header, *rows]) + "\r\n").encode("utf-8")
    extra = {FIRST_LINE_LABEL: str(first_line)}
    if header_line:
        extra[HEADER_LINE_LABEL] = str(header_line)
    return RawRecord(ts=ts, kind=KIND, target=str(path), body=body, host="", labels={**labels, **extra})
