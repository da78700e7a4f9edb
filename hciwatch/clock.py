"""The one clock passed down the flow: wall time in service mode, virtual time in replay.

Replay drives a :class:`VirtualClock` from the records' own timestamps, so a 3-day capture
replays in seconds and yields the same alerts every time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    """Real UTC time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """Time that only moves when told to (never backwards)."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance_to(self, ts: datetime) -> None:
        if ts > self._now:
            self._now = ts
