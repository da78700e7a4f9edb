"""``hciwatch import``: typeperf / relog CSV files into the store, the way a user expects a tool to.

* **Time order.** Files are read in the order of their first timestamp (not their names), and
  their chunks are merged by time, so the detectors see one timeline however the files were
  split (per host, per day).
* **One bad file costs that file.** A file that cannot be opened, has no PDH-CSV header or no data
  row is reported with the reason and skipped; the others are imported. Bad lines inside a good
  file cost those lines (counted per file, first messages shown).
* **Gaps are jumped, not walked.** The replay loop stops stepping through time that holds no
  records (:func:`hciwatch.pipeline.idle_gap`), so two files months apart import as fast as two
  adjacent ones: the cost follows the data, not the calendar.
* **Progress and a summary.** A progress bar (rows read of rows in the files) while it runs, and a
  table at the end: per file its time range, rows read, samples stored, lines skipped and why.
"""

from __future__ import annotations

import csv
import heapq
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from collector.errors import ParseError
from collector.schema import RawRecord, iso
from collector.sources.typeperf.parse import iter_typeperf_records, local_to_utc_ms, parse_header

HEAD_LINES = 200  # lines read to find a file's header and first timestamp
MESSAGES_PER_FILE = 5


@dataclass
class FileReport:
    """What happened to one input file."""

    path: Path
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    data_lines: int = 0
    problem: str | None = None  # the whole file was skipped, and why
    samples: int = 0
    records_rejected: int = 0
    lines_skipped: int = 0
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "first": iso(self.first_ts) if self.first_ts else None,
            "last": iso(self.last_ts) if self.last_ts else None,
            "rows": self.data_lines,
            "samples": self.samples,
            "chunks_rejected": self.records_rejected,
            "lines_skipped": self.lines_skipped,
            "problem": self.problem,
            "messages": self.messages,
        }


def _open(path: Path) -> io.TextIOWrapper:
    with path.open("rb") as fh:
        head = fh.read(4)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    elif head[:3] == b"\xef\xbb\xbf":
        encoding = "utf-8-sig"
    else:
        encoding = "cp1252"  # typeperf -o writes ANSI; every byte decodes, the CSV cells are ASCII
        try:
            with path.open(encoding="utf-8") as t:
                t.read(1 << 16)
            encoding = "utf-8"
        except UnicodeDecodeError:
            pass
    return open(path, encoding=encoding, errors="replace", newline="")


def survey(path: Path) -> FileReport:
    """Header check, first timestamp and data-line count of one file, without importing it."""
    rep = FileReport(path)
    try:
        with _open(path) as fh:
            header_seen = False
            bias = 0
            last_row = ""
            for line_no, raw in enumerate(fh, start=1):
                line = raw.strip("\r\n")
                if not line.strip():
                    continue
                if not header_seen:
                    try:
                        bias, _, _ = parse_header(next(csv.reader([line])))
                    except (ValueError, csv.Error, StopIteration) as exc:
                        rep.problem = f"line {line_no}: not a PDH-CSV header ({exc})"
                        return rep
                    header_seen = True
                    continue
                if not line.startswith('"'):
                    continue  # typeperf's closing status lines
                rep.data_lines += 1
                if rep.first_ts is None and line_no <= HEAD_LINES:
                    rep.first_ts = _row_time(line, bias)
                last_row = line
            if rep.data_lines:
                rep.last_ts = _row_time(last_row, bias) or _last_readable_time(path, bias)
    except OSError as exc:
        rep.problem = f"cannot read: {exc.strerror or exc}"
        return rep
    if not header_seen:
        rep.problem = "empty file (no PDH-CSV header)"
    elif rep.data_lines == 0:
        rep.problem = "no data rows after the header"
    elif rep.first_ts is None:
        rep.problem = f"no readable timestamp in the first {HEAD_LINES} lines"
    return rep


def _row_time(line: str, bias: int) -> datetime | None:
    try:
        cell = next(csv.reader([line]))[0]
        return datetime.fromtimestamp(local_to_utc_ms(cell, bias) / 1000, tz=UTC)
    except (ValueError, csv.Error, IndexError, StopIteration, OverflowError, OSError):
        return None


def _last_readable_time(path: Path, bias: int) -> datetime | None:
    """The newest readable row time (only needed when the last row is damaged)."""
    last: datetime | None = None
    with _open(path) as fh:
        for raw in fh:
            t = _row_time(raw.strip("\r\n"), bias) if raw.startswith('"') else None
            last = t or last
    return last


def _file_records(rep: FileReport, chunk_rows: int) -> Iterator[RawRecord]:
    """The file's chunks; a failure mid-file ends this file only and is recorded on its report."""
    try:
        yield from iter_typeperf_records(rep.path, chunk_rows=chunk_rows)
    except (ParseError, OSError) as exc:
        rep.problem = f"stopped reading: {exc}"


def ordered_records(reports: Iterable[FileReport], chunk_rows: int = 10_000) -> Iterator[RawRecord]:
    """Every good file's chunks merged into one time-ordered stream (files in first-timestamp order)."""
    good = sorted((r for r in reports if r.problem is None), key=lambda r: (r.first_ts, str(r.path)))
    return heapq.merge(*(_file_records(r, chunk_rows) for r in good), key=lambda rec: rec.ts)


@dataclass
class ImportResult:
    files: list[FileReport]
    summary: dict[str, Any]

    @property
    def exit_code(self) -> int:
        """0 all imported cleanly, 1 something was skipped (a file or lines), 2 nothing imported."""
        if not any(f.problem is None and f.samples for f in self.files):
            return 2
        return 1 if any(f.problem or f.lines_skipped or f.records_rejected for f in self.files) else 0


def run_import(
    paths: Iterable[str | Path],
    cfg: Any,
    data_dir: Path,
    *,
    progress_console: Console | None = None,
    chunk_rows: int = 10_000,
    workers: int | None = None,
) -> ImportResult:
    """Import the files through the whole flow (store and detectors); see the module docstring."""
    from hciwatch.pipeline import replay_records, summarize

    reports = [survey(Path(p)) for p in paths]
    total = sum(r.data_lines for r in reports if r.problem is None)
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeRemainingColumn(),
        console=progress_console,
        transient=True,
        disable=progress_console is None,
    )

    def counted(records: Iterator[RawRecord], task: Any) -> Iterator[RawRecord]:
        for rec in records:
            yield rec
            progress.advance(task, rec.body.count(b'\n"'))  # data rows start with a quote

    with progress:
        task = progress.add_task("import", total=total)
        result = replay_records(counted(ordered_records(reports, chunk_rows), task), cfg, data_dir, workers=workers)
    stats = result.stats
    for rep in reports:
        target = str(rep.path)
        rep.samples = stats.samples_by_target.get(target, 0)
        rep.records_rejected = stats.rejected_by_target.get(target, 0)
        rep.lines_skipped = stats.errors_by_target.get(target, 0)
        rep.messages = [m for m in stats.rejects if f"[{target}]" in m][:MESSAGES_PER_FILE]
    # in the order they were imported (time), the skipped ones last
    reports.sort(key=lambda r: (r.problem is not None, r.first_ts or datetime.max.replace(tzinfo=UTC), str(r.path)))
    summary = {**summarize(result), "files": [r.to_json() for r in reports]}
    return ImportResult(reports, summary)


def problem_lines(result: ImportResult) -> list[str]:
    """Why each skipped file was skipped, then the first messages about skipped lines, per file."""
    out = [f"{f.path}: skipped: {f.problem}" for f in result.files if f.problem]
    for f in result.files:
        out += [f"{f.path}: {m}" for m in f.messages]
    return out


def summary_table(result: ImportResult) -> Table:
    """Per file: time range, rows, samples stored, what was skipped (the reasons follow the table)."""
    t = Table(title="import summary")
    for col in ("file", "from (UTC)", "to (UTC)", "rows", "samples", "skipped", "status"):
        t.add_column(col, overflow="fold", justify="right" if col in ("rows", "samples", "skipped") else "left")
    for f in result.files:
        status = "[red]skipped[/]" if f.problem else ("[yellow]partly[/]" if f.lines_skipped else "[green]ok[/]")
        t.add_row(
            f.path.name,
            f"{f.first_ts:%Y-%m-%d %H:%M:%S}" if f.first_ts else "",
            f"{f.last_ts:%Y-%m-%d %H:%M:%S}" if f.last_ts else "",
            str(f.data_lines),
            str(f.samples),
            str(f.lines_skipped + f.records_rejected),
            status,
        )
    s = result.summary
    t.caption = (
        f"{s['samples_stored']} samples stored, {s['skipped_parts']} lines skipped, "
        f"{s['records_rejected']} chunks rejected, {s['evaluations']} detector passes, "
        f"{sum(a for a in s['alerts'].values())} alert changes"
    )
    return t
