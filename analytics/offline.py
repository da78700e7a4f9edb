"""Offline anomaly scoring of one series from a CSV file (``hciwatch anomalies FILE.csv``).

The same baseline machinery as the live ``metric_anomaly`` detector, applied causally: each row is
scored only from the rows before it (rolling median/MAD over the last ``window_points`` values,
hour-of-day once the history spans ``tod_min_days`` days), so the output is what the service
would have said at that moment. Sensitivity and N-of-M failing periods work as in Azure Monitor's
dynamic thresholds. ``is_anomaly`` marks the first row of each anomalous *episode* once; the
episode lasts until ``of_periods`` consecutive rows are back within 0.6 × the threshold, and its
rows are withheld from the baseline while it is open: learned once it closes (the robust median
and MAD keep a rare incident from moving the baseline, while behaviour that recurs often, such as
routine write bursts, becomes normal), or once it has lasted ``relearn_after`` (default 1 day: a
lasting level shift is the new normal). Violations that never make an episode are learned once
the series has been quiet for ``of_periods`` rows. The live detector does the same.

Series made only of non-negative integers (event counts) get a Poisson floor on their spread, so
going from 0 to 1 is not an anomaly but 0 to 20 is.

Output columns: ``timestamp,value,score,is_anomaly`` — the input's timestamp and value text, the
robust z-score (empty while there is no baseline yet or the value is missing) and true/false.
"""

from __future__ import annotations

import csv
import math
import sys
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import numpy as np

from analytics.anomaly import CLEAR_RATIO, to_learn, violates
from analytics.baselines import median_mad
from analytics.settings import BaselineSettings, Sensitivity
from collector.errors import ParseError

SOURCE = "anomalies-csv"


@dataclass(frozen=True, slots=True)
class AnomalyRun:
    """What :func:`anomalies_csv` did."""

    rows: int
    scored: int
    episodes: int
    first_ts: datetime | None
    last_ts: datetime | None


def _parse_ts(text: str, line: int, target: str) -> datetime:
    t = text.strip()
    try:
        num = float(t)
    except ValueError:
        num = math.nan
    if math.isfinite(num):
        return datetime.fromtimestamp(num / 1000 if abs(num) >= 1e11 else num, tz=UTC)
    try:
        dt = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    except ValueError as exc:
        raise ParseError(
            f"timestamp {text!r} is neither ISO-8601 nor epoch seconds/milliseconds",
            source=SOURCE,
            target=target,
            line=line,
        ) from exc
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class CausalScorer:
    """Scores one value at a time against the values before it."""

    def __init__(self, cfg: BaselineSettings, window_points: int = 720, tod_points: int = 360) -> None:
        self.cfg = cfg
        self.window: deque[float] = deque(maxlen=max(cfg.min_points, window_points))
        self.tod: dict[int, deque[tuple[int, float]]] = {}
        self.tod_points = tod_points
        self.refresh_every = max(1, self.window.maxlen // 100) if self.window.maxlen else 1
        self._since = self.refresh_every
        self._stats: tuple[float, float] = (math.nan, math.nan)
        self.integers = True
        self._tod_version = [0] * 24  # bumped on every learn into that hour's slot
        self._tod_stats: dict[int, tuple[int, float, float]] = {}  # hour -> (version, median, σ)

    def score(self, ts: datetime, value: float) -> float:
        hour = ts.hour
        med, sig = math.nan, math.nan
        slot = self.tod.get(hour)
        if (
            self.cfg.time_of_day
            and slot is not None
            and len(slot) >= self.cfg.tod_min_points
            and len({d for d, _ in slot}) >= self.cfg.tod_min_days
        ):
            cached = self._tod_stats.get(hour)
            if cached is None or cached[0] != self._tod_version[hour]:
                cached = (self._tod_version[hour], *median_mad(np.fromiter((v for _, v in slot), np.float64)))
                self._tod_stats[hour] = cached
            _, med, sig = cached
        elif len(self.window) >= self.cfg.min_points:
            if self._since >= self.refresh_every:
                self._stats = median_mad(np.fromiter(self.window, np.float64))
                self._since = 0
            med, sig = self._stats
        if not math.isfinite(med):
            return math.nan
        floor = max(self.cfg.relative_floor * abs(med), 1e-12)
        if self.integers:
            floor = max(floor, math.sqrt(max(med, 1.0)))
        return (value - med) / max(sig, floor)

    def learn(self, ts: datetime, value: float) -> None:
        self.window.append(value)
        self._since += 1
        if self.integers and (value < 0 or value != int(value)):
            self.integers = False
        slot = self.tod.setdefault(ts.hour, deque(maxlen=self.tod_points))
        slot.append((int(ts.timestamp() // 86400), value))
        self._tod_version[ts.hour] += 1


def anomalies_csv(
    in_path: str | Path,
    out_stream: TextIO,
    time_col: str = "timestamp",
    value_col: str = "value",
    sensitivity: str | Sensitivity = Sensitivity.MEDIUM,
    *,
    min_failing_periods: int = 3,
    of_periods: int = 5,
    direction: str = "both",
    baselines: BaselineSettings | None = None,
    relearn_after: timedelta = timedelta(days=1),
) -> AnomalyRun:
    """Score a CSV series causally and write ``timestamp,value,score,is_anomaly`` rows.

    Raises :class:`collector.errors.ParseError` (with the line) for a missing column, an
    unparseable timestamp or value, or timestamps that go backwards.
    """
    sens = Sensitivity(sensitivity)
    if not 1 <= min_failing_periods <= of_periods:
        raise ValueError("need 1 <= min_failing_periods <= of_periods")
    if direction not in ("up", "down", "both"):
        raise ValueError(f"direction must be up, down or both, not {direction!r}")
    cfg = baselines or BaselineSettings()
    target = str(in_path)
    fh: TextIO = sys.stdin if target == "-" else open(in_path, newline="", encoding="utf-8-sig")  # noqa: SIM115
    try:
        return _run(
            fh,
            out_stream,
            target,
            time_col,
            value_col,
            sens.z,
            min_failing_periods,
            of_periods,
            direction,
            cfg,
            relearn_after,
        )
    finally:
        if fh is not sys.stdin:
            fh.close()


def _run(
    fh: TextIO,
    out: TextIO,
    target: str,
    time_col: str,
    value_col: str,
    zf: float,
    n: int,
    m: int,
    direction: str,
    cfg: BaselineSettings,
    relearn_after: timedelta,
) -> AnomalyRun:
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
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["timestamp", "value", "score", "is_anomaly"])
    scorer = CausalScorer(cfg)
    flags: deque[bool] = deque(maxlen=m)
    in_episode, quiet = False, 0
    held: deque[tuple[datetime, float]] = deque(maxlen=scorer.window.maxlen)  # withheld from the baseline
    onset = datetime.min.replace(tzinfo=UTC)
    rows = scored = episodes = 0
    first: datetime | None = None
    last: datetime | None = None
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) <= max(ti, vi):
            raise ParseError(
                f"row has {len(row)} fields, needs {max(ti, vi) + 1}", source=SOURCE, target=target, line=line_no
            )
        ts_text, v_text = row[ti], row[vi]
        ts = _parse_ts(ts_text, line_no, target)
        if last is not None and ts < last:
            raise ParseError(
                f"timestamp {ts_text!r} is earlier than the previous row (sort the file by time)",
                source=SOURCE,
                target=target,
                line=line_no,
            )
        first = first or ts
        last = ts
        rows += 1
        vt = v_text.strip()
        if vt == "" or vt.lower() in ("nan", "null", "none"):
            writer.writerow([ts_text, v_text, "", "false"])
            continue
        try:
            value = float(vt)
        except ValueError:
            raise ParseError(f"value {v_text!r} is not a number", source=SOURCE, target=target, line=line_no) from None
        if not math.isfinite(value):
            writer.writerow([ts_text, v_text, "", "false"])
            continue
        z = scorer.score(ts, value)
        is_new = False
        if math.isfinite(z):
            scored += 1
            bad = violates(z, zf, direction)
            flags.append(bad)
            quiet = 0 if violates(z, zf * CLEAR_RATIO, direction) else quiet + 1
            if not in_episode and sum(flags) >= n:
                in_episode, is_new, onset = True, True, ts
                episodes += 1
            elif in_episode and quiet >= m:
                in_episode = False
                flags.clear()
            relearn = in_episode and relearn_after > timedelta(0) and ts - onset >= relearn_after
            for h_ts, h_value in to_learn(
                held, ts, value, bad=bad, active=in_episode, relearn=relearn, settled=not in_episode and quiet >= m
            ):
                scorer.learn(h_ts, h_value)
        else:
            scorer.learn(ts, value)
        writer.writerow(
            [
                ts_text,
                v_text,
                "" if not math.isfinite(z) else f"{max(-1e9, min(1e9, z)):.3f}",
                "true" if is_new else "false",
            ]
        )
    return AnomalyRun(rows, scored, episodes, first, last)
