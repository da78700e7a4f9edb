"""The report's time window and the step its series are downsampled to.

A view is only useful if it opens fast on an edge-site laptop, so every series is cut to at most
:data:`MAX_POINTS` buckets: the step is the smallest "round" duration (5 min, 10 min, … 1 day)
that fits the window in that many, never finer than the 5-minute resolution the analyst views
and the pool trend work at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.schema import utc
from collector.store_read import StoreReader

MAX_POINTS = 600
NICE_STEPS_S = (300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400)
DEFAULT_SPAN = timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class Window:
    """``[start, end]`` in UTC and the bucket width of every downsampled series."""

    start: datetime
    end: datetime
    step_s: int

    @property
    def start_s(self) -> float:
        return self.start.timestamp()

    @property
    def end_s(self) -> float:
        return self.end.timestamp()


def step_for(span: timedelta) -> int:
    """The smallest nice step that keeps ``span`` within :data:`MAX_POINTS` buckets."""
    need = span.total_seconds() / MAX_POINTS
    for s in NICE_STEPS_S:
        if s >= need:
            return s
    return int(-(-need // 86400) * 86400)


def data_extent(data_dir: Path) -> tuple[datetime, datetime] | None:
    """First and last ``ts`` stored in samples / ip_observations (None for an empty store)."""
    return StoreReader(data_dir).extent(("samples", "ip_observations"))


def resolve_window(
    data_dir: Path, start: datetime | None, end: datetime | None, default_span: timedelta = DEFAULT_SPAN
) -> Window:
    """The window to show: what was asked, else the last ``default_span`` of the stored data.

    Raises:
        ValueError: ``start`` is not before ``end``.
    """
    extent = data_extent(data_dir) if start is None or end is None else None
    if end is None:
        end = extent[1] if extent else datetime.now(UTC)
    if start is None:
        start = end - default_span
        if extent and extent[0] > start:
            start = extent[0]
    start, end = utc(start).astimezone(UTC), utc(end).astimezone(UTC)
    if start >= end and extent is not None and extent[0] == extent[1]:
        start = end - timedelta(seconds=NICE_STEPS_S[0])  # a single scrape still gets a window
    if start >= end:
        raise ValueError(f"the window is empty: from {start.isoformat()} is not before to {end.isoformat()}")
    return Window(start, end, step_for(end - start))
