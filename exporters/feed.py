"""In-process alert feed: current firing state, a ring of recent changes, and live subscribers.

The HTTP API serves ``GET /api/v1/alerts`` and the Server-Sent Events stream from this object;
the outbox delivers to it like to any other sink, so it sees exactly the changes every other sink
sees, in the same order.

Why it is shaped this way:

* **Sequence numbers are SSE ids.** Every change gets the next integer; a reconnecting
  ``EventSource`` sends the last id it saw (``Last-Event-ID``) and gets the changes after it from
  the ring. The first number is taken from the wall clock in microseconds (injectable), so ids
  keep increasing across service restarts: a client coming back with an id from the previous
  process is recognised as "older than the ring" (a *gap*) instead of silently getting nothing
  until the new counter catches up. Microseconds stay below 2**53 until the year 2255, so
  JavaScript clients read them exactly.
* **Export never waits for a subscriber.** Each subscriber has a bounded queue; when it is full
  the subscriber is dropped (logged once, with its peer and queue size), its stream ends, and the
  client reconnects with ``Last-Event-ID`` to replay what it missed from the ring. A slow browser
  tab therefore costs memory bounded by ``queue_size`` and never delays the outbox.
* **Replay and live delivery cannot overlap or leave a hole.** ``subscribe`` snapshots the ring
  and registers the queue in one synchronous step (no ``await`` between them) on the event loop
  that also runs ``export``, so every change is either in the replay backlog or in the queue,
  exactly once.

Pure asyncio, no I/O; all methods must be called from the event loop thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from collector.schema import Alert, AlertStatus, utc
from exporters.base import ExportResult

log = logging.getLogger(__name__)

DEFAULT_RING_SIZE = 10_000
DEFAULT_QUEUE_SIZE = 1_000


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One alert state change with its feed sequence number (the SSE ``id``)."""

    seq: int
    alert: Alert


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which changes a reader wants; an empty set means "any".

    ``networks`` and ``hosts`` match the ``network`` and ``host`` resource labels of the alert;
    ``since`` keeps changes at or after that time (the change time, ``Alert.changed_at``).
    """

    kinds: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    networks: frozenset[str] = frozenset()
    hosts: frozenset[str] = frozenset()
    since: datetime | None = None

    def __post_init__(self) -> None:
        if self.since is not None:
            object.__setattr__(self, "since", utc(self.since))

    def matches(self, alert: Alert) -> bool:
        if self.kinds and alert.kind.value not in self.kinds:
            return False
        if self.statuses and alert.status.value not in self.statuses:
            return False
        if self.networks and alert.resource.get("network") not in self.networks:
            return False
        if self.hosts and alert.resource.get("host") not in self.hosts:
            return False
        return self.since is None or alert.changed_at >= self.since


ANY = AlertFilter()


class Subscription:
    """One live reader of the feed: a replay backlog, then live changes.

    Iterate with ``async for event in sub`` (ends when the subscriber is dropped or the feed
    closes it), or call :meth:`next` which returns ``None`` at the end. Leaving the ``with`` /
    ``async with`` block (or calling :meth:`close`) unsubscribes.

    Attributes:
        gap: set when the requested replay start is older than the ring holds, as
            ``(requested_after, oldest_available_seq)``; the reader missed changes it cannot get.
        dropped: the feed dropped this reader because its queue overflowed.
    """

    def __init__(
        self,
        feed: AlertFeed,
        sub_id: int,
        peer: str,
        backlog: deque[FeedEvent],
        filters: AlertFilter,
        queue_size: int,
        gap: tuple[int, int] | None,
    ) -> None:
        self._feed = feed
        self.id = sub_id
        self.peer = peer
        self.filters = filters
        self.gap = gap
        self.dropped = False
        self._backlog = backlog
        self._queue: asyncio.Queue[FeedEvent | None] = asyncio.Queue(maxsize=queue_size)
        self._ended = False

    def _offer(self, event: FeedEvent) -> bool:
        """Queue a live change; False when the queue is full (the caller drops us)."""
        if self._ended:
            return True
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    def _end(self) -> None:
        """Stop delivery: discard what is queued and wake the reader with the end marker."""
        if self._ended:
            return
        self._ended = True
        self._backlog.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def next(self) -> FeedEvent | None:
        """The next change for this reader, or ``None`` when the subscription has ended."""
        if self._backlog:
            return self._backlog.popleft()
        return await self._queue.get()

    def close(self) -> None:
        self._end()
        self._feed._unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[FeedEvent]:
        return self

    async def __anext__(self) -> FeedEvent:
        event = await self.next()
        if event is None:
            raise StopAsyncIteration
        return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AlertFeed:
    """An :class:`exporters.base.Exporter` that keeps alert state in memory and fans it out.

    Args:
        ring_size: how many recent changes are kept for ``recent`` and SSE replay.
        queue_size: per-subscriber queue bound; a subscriber that falls this far behind is dropped.
        first_seq: sequence number of the first change (default: wall-clock microseconds, see
            the module docstring); tests pass a small number.
    """

    def __init__(
        self,
        *,
        ring_size: int = DEFAULT_RING_SIZE,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        first_seq: int | None = None,
        name: str = "feed",
    ) -> None:
        if ring_size < 1:
            raise ValueError(f"feed ring_size must be at least 1, got {ring_size}")
        if queue_size < 1:
            raise ValueError(f"feed queue_size must be at least 1, got {queue_size}")
        self.name = name
        self.ring_size = ring_size
        self.queue_size = queue_size
        self._next_seq = time.time_ns() // 1000 if first_seq is None else first_seq
        self._ring: deque[FeedEvent] = deque(maxlen=ring_size)
        self._firing: dict[str, FeedEvent] = {}
        self._subs: dict[int, Subscription] = {}
        self._sub_ids = itertools.count(1)
        self.changes_total = 0
        self.dropped_total = 0

    # -- Exporter protocol ---------------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to connect to; present for the Exporter protocol."""

    async def export(self, batch: Sequence[Alert]) -> ExportResult:
        self.publish(batch)
        return ExportResult.success()

    async def healthcheck(self) -> bool:
        return True

    async def shutdown(self) -> None:
        """End every live subscription (their streams finish); state is kept for reads."""
        self.close_subscribers()

    # -- writing -------------------------------------------------------------------------------

    def publish(self, alerts: Iterable[Alert]) -> list[FeedEvent]:
        """Record changes and hand them to subscribers; never blocks. Returns the new events."""
        events: list[FeedEvent] = []
        for alert in alerts:
            event = FeedEvent(self._next_seq, alert)
            self._next_seq += 1
            self.changes_total += 1
            self._ring.append(event)
            if alert.status is AlertStatus.FIRING:
                self._firing[alert.fingerprint] = event
            else:
                self._firing.pop(alert.fingerprint, None)
            events.append(event)
            for sub in list(self._subs.values()):
                if sub.filters.matches(alert) and not sub._offer(event):
                    self._drop(sub)
        return events

    def _drop(self, sub: Subscription) -> None:
        self.dropped_total += 1
        sub.dropped = True
        log.warning(
            "alert feed: dropping subscriber #%d (%s): %d changes queued and not read; the client "
            "is too slow and must reconnect with Last-Event-ID to replay from the ring",
            sub.id,
            sub.peer or "in-process",
            self.queue_size,
        )
        sub._end()
        self._subs.pop(sub.id, None)

    # -- reading -------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest change (one less than the first when there is none)."""
        return self._next_seq - 1

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    @property
    def firing_count(self) -> int:
        return len(self._firing)

    def firing(self, filters: AlertFilter = ANY) -> list[FeedEvent]:
        """Alerts firing now (their latest change), most severe first, then oldest first."""
        events = [e for e in self._firing.values() if filters.matches(e.alert)]
        events.sort(key=lambda e: (e.alert.severity.rank, e.alert.starts_at, e.seq))
        return events

    def recent(self, filters: AlertFilter = ANY, limit: int = 100) -> list[FeedEvent]:
        """The newest ``limit`` changes that match, newest first."""
        out: list[FeedEvent] = []
        if limit <= 0:
            return out
        for event in reversed(self._ring):
            if filters.matches(event.alert):
                out.append(event)
                if len(out) >= limit:
                    break
        return out

    def subscribe(self, *, after: int | None = None, filters: AlertFilter = ANY, peer: str = "") -> Subscription:
        """Start receiving changes; with ``after``, first replay ring changes newer than it.

        ``after`` is the last sequence number the reader has (SSE ``Last-Event-ID``). If the ring
        no longer reaches back that far, everything it holds is replayed and
        :attr:`Subscription.gap` says so.
        """
        backlog: deque[FeedEvent] = deque()
        gap: tuple[int, int] | None = None
        if after is not None and self._ring:
            oldest = self._ring[0].seq
            if after < oldest - 1:
                gap = (after, oldest)
            backlog.extend(e for e in self._ring if e.seq > after and filters.matches(e.alert))
        sub = Subscription(self, next(self._sub_ids), peer, backlog, filters, self.queue_size, gap)
        self._subs[sub.id] = sub
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subs.pop(sub.id, None)

    def close_subscribers(self) -> None:
        """End all live subscriptions (service shutdown: lets SSE responses finish)."""
        for sub in list(self._subs.values()):
            sub._end()
        self._subs.clear()
