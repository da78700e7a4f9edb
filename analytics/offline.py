"""Offline anomaly scoring of one series from a CSV file (``hciwatch anomalies FILE.csv``).

The same detector as the live ``metric_anomaly`` rule (:mod:`analytics.detector`), applied
causally: each row is scored only from the rows before it, so the output is what the service would
have said at that moment. ``is_anomaly`` marks the first row of each anomalous episode once.

Real exports are messy. The policy (default) keeps every row in the output, in input order, and
says in the ``note`` column what was done with it; a summary per kind goes to stderr:

==============  =====================================================================================
note            policy
==============  =====================================================================================
out_of_order    timestamp earlier than an earlier row (a clock change, a merged export): scored in
                arrival order, as the service would have seen it
duplicate       same timestamp as the previous or the latest row: a repeated sample, not scored nor learned
after_gap       more than ``GAP_STEPS`` × the usual step after the latest row: scored, but its step
                is not compared with the value before the gap
missing         empty / nan / null / none value: not scored
not_numeric     a value that is not a number: not scored
bad_timestamp   a timestamp that is neither ISO-8601 nor epoch seconds/ms: not scored
short_row       fewer fields than the columns need: not scored
==============  =====================================================================================

``strict=True`` (``--strict``) refuses the file at the first such row (except ``missing`` and
``after_gap``, which are normal) with a :class:`collector.errors.ParseError` naming the line. In
both modes the whole file is read and scored before anything is written: an error never leaves a
half-written output.

Output columns: ``timestamp,value,score,is_anomaly,note`` — the input's timestamp and value text,
the detector's surprise score (empty while it has too little history or the row is not scored),
``true``/``false`` and the note.
"""

from __future__ import annotations

import csv
import itertools
import math
import statistics
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from analytics.detector import StreamDetector
from analytics.settings import Sensitivity
from collector.errors import ParseError

SOURCE = "anomalies-csv"
GAP_STEPS = 3.0  # a step this many times the usual one is a gap
SEASON_PROBE = 25  # rows whose spacing sets the daily cycle (the detector's cold start is shorter)
MAX_SEASON = 20_000  # rows per day above which the seasonal feature is off (sub-5-second data)
MISSING = ("", "nan", "null", "none", "na", "n/a")
NOTE_TEXT = {
    "out_of_order": "row(s) earlier than a previous row, scored in arrival order",
    "duplicate": "row(s) repeating the latest timestamp, not scored",
    "after_gap": "gap(s) in the data, the step across each is not judged",
    "missing": "row(s) with a missing value, not scored",
    "not_numeric": "row(s) with a value that is not a number, not scored",
    "bad_timestamp": "row(s) with an unreadable timestamp, not scored",
    "short_row": "row(s) with too few fields, not scored",
}
STRICT_REFUSES = ("out_of_order", "duplicate", "not_numeric", "bad_timestamp", "short_row")


@dataclass(slots=True)
class AnomalyRun:
    """What :func:`anomalies_csv` did; ``notes`` counts rows per note kind (first line kept)."""

    rows: int
    scored: int
    episodes: int
    first_ts: datetime | None
    last_ts: datetime | None
    notes: dict[str, list[int]] = field(default_factory=dict)  # kind -> [count, first line]

    def warnings(self, target: str) -> list[str]:
        """One human line per kind of flagged row (for stderr)."""
        return [
            f"warning: {target}: {n} {NOTE_TEXT[kind]} (first at line {line})"
            for kind, (n, line) in sorted(self.notes.items())
        ]


def parse_ts(text: str) -> datetime | None:
    """ISO-8601 (``Z`` allowed, naive = UTC) or epoch seconds/milliseconds; None if neither."""
    t = text.strip()
    try:
        num = float(t)
    except ValueError:
        num = math.nan
    if math.isfinite(num):
        return datetime.fromtimestamp(num / 1000 if abs(num) >= 1e11 else num, tz=UTC)
    try:
        dt = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(slots=True)
class _Row:
    line: int
    ts_text: str
    v_text: str
    ts: datetime | None
    value: float | None
    note: str = ""


def _refuse(row: _Row, kind: str, target: str) -> ParseError:
    why = {
        "out_of_order": f"timestamp {row.ts_text!r} is earlier than a previous row (sort the file by time)",
        "duplicate": f"timestamp {row.ts_text!r} repeats the latest one",
        "not_numeric": f"value {row.v_text!r} is not a number",
        "bad_timestamp": f"timestamp {row.ts_text!r} is neither ISO-8601 nor epoch seconds/milliseconds",
    }.get(kind, "row has too few fields")
    return ParseError(why, source=SOURCE, target=target, line=row.line)


def usual_step(stamps: list[datetime]) -> float:
    """The median positive spacing of ``stamps`` in seconds (0 when it cannot be told)."""
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps) if b > a]
    return statistics.median(steps) if steps else 0.0


def season_rows(step_s: float) -> int:
    """Rows per day for rows ``step_s`` seconds apart (0 = no usable daily cycle)."""
    rows = round(86400 / step_s) if step_s > 0 else 0
    return rows if 2 <= rows <= MAX_SEASON else 0


def _value(text: str) -> tuple[float | None, str]:
    """(value, "") or (None, why it is not one)."""
    if text.lower() in MISSING:
        return None, "missing"
    try:
        v = float(text)
    except ValueError:
        return None, "not_numeric"
    return (v, "") if math.isfinite(v) else (None, "missing")


def _read(fh: TextIO, target: str, time_col: str, value_col: str, strict: bool) -> list[_Row]:
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        raise ParseError("empty file (expected a header row)", source=SOURCE, target=target, line=1) from None
    cols = [h.strip() for h in header]
    for c in (time_col, value_col):
        if c not in cols:
            raise ParseError(
                f"no column {c!r} in header (columns: {', '.join(cols)})", source=SOURCE, target=target, line=1
            )
    ti, vi = cols.index(time_col), cols.index(value_col)
    out: list[_Row] = []
    newest: datetime | None = None
    prev: datetime | None = None
    for line_no, rec in enumerate(reader, start=2):
        if not rec or all(not c.strip() for c in rec):
            continue
        if len(rec) <= max(ti, vi):
            row = _Row(line_no, rec[ti] if len(rec) > ti else "", rec[vi] if len(rec) > vi else "", None, None)
            row.note = "short_row"
        else:
            row = _Row(line_no, rec[ti], rec[vi], parse_ts(rec[ti]), None)
            vt = rec[vi].strip()
            if row.ts is None:
                row.note = "bad_timestamp"
            elif row.ts in (prev, newest):
                row.note = "duplicate"
            elif newest is not None and row.ts < newest:
                row.note = "out_of_order"
            if row.ts is not None:
                prev = row.ts
                newest = row.ts if newest is None else max(newest, row.ts)
            if row.note in ("", "out_of_order"):  # a value worth reading (the row may be scored)
                row.value, bad = _value(vt)
                row.note = bad or row.note
        if strict and row.note in STRICT_REFUSES:
            raise _refuse(row, row.note, target)
        out.append(row)
    return out


def anomalies_csv(
    in_path: str | Path,
    out_stream: TextIO,
    time_col: str = "timestamp",
    value_col: str = "value",
    sensitivity: str | Sensitivity = Sensitivity.MEDIUM,
    *,
    direction: str = "both",
    strict: bool = False,
) -> AnomalyRun:
    """Score a CSV series causally and write ``timestamp,value,score,is_anomaly,note`` rows.

    Raises :class:`collector.errors.ParseError` (with the line) for a missing column, and in
    ``strict`` mode for any row the module docstring's policy would flag (before writing anything).
    """
    sens = Sensitivity(sensitivity)
    target = str(in_path)
    fh: TextIO = sys.stdin if target == "-" else open(in_path, newline="", encoding="utf-8-sig")  # noqa: SIM115
    try:
        rows = _read(fh, target, time_col, value_col, strict)
    finally:
        if fh is not sys.stdin:
            fh.close()
    probe = [r.ts for r in rows[:SEASON_PROBE] if r.ts is not None]
    usual = usual_step(probe)
    det = StreamDetector(sens, season=season_rows(usual), direction=direction)
    origin = probe[0] if probe else datetime.min.replace(tzinfo=UTC)
    run = AnomalyRun(len(rows), 0, 0, None, None)
    out: list[list[str]] = []
    newest: datetime | None = None
    for r in rows:
        score = ""
        alert = False
        gap = r.ts is not None and newest is not None and (r.ts - newest).total_seconds() > GAP_STEPS * usual
        if gap and not r.note and usual > 0:
            r.note = "after_gap"
            det.forget_previous()
        if r.ts is not None:
            run.first_ts = run.first_ts or r.ts
            run.last_ts = r.ts
            newest = r.ts if newest is None else max(newest, r.ts)
        if r.value is not None and r.ts is not None:
            clock = (r.ts - origin).total_seconds() / usual if usual > 0 else None  # rows since the first
            step = det.update(r.value, clock)
            if step.score == step.score:
                run.scored += 1
                score = f"{min(step.score, 1e9):.3f}"
            alert = step.alert
            run.episodes += alert
        if r.note:
            seen = run.notes.setdefault(r.note, [0, r.line])
            seen[0] += 1
        out.append([r.ts_text, r.v_text, score, "true" if alert else "false", r.note])
    writer = csv.writer(out_stream, lineterminator="\n")
    writer.writerow(["timestamp", "value", "score", "is_anomaly", "note"])
    writer.writerows(out)
    return run
