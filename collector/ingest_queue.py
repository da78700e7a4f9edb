"""The ingest queue, bounded in bytes as well as records.

A record count says nothing about memory: one scrape of a 1M-series target is ~35 MB, a
neighbour-table line is 100 bytes. This queue admits an item only while the bytes waiting stay
under ``max_bytes`` (an item larger than the whole bound is admitted alone, into an empty queue,
so it cannot wait forever). :meth:`wait_for_room` returns with room available and the caller then
enqueues with :meth:`put_nowait` without awaiting in between, so the order in which records were
written to the write-ahead log is the order they are parsed in (the WAL checkpoint relies on it).
Waiting is bounded by ``timeout``: past it the record is refused with a counted reason instead
of stalling its producer forever.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from typing import Generic, TypeVar

from collector.errors import SourceError

T = TypeVar("T")


class IngestRefused(SourceError):
    """A record was not accepted (queue full for too long, write-ahead log full or failing).

    Nothing was acknowledged: an MQTT message stays with the broker, a scrape is not counted
    as stored. ``reason`` is the counted reason.
    """


class ByteBoundedQueue(Generic[T]):
    """FIFO of (item, size) bounded by total size and count; one consumer, many producers."""

    def __init__(self, max_bytes: int, max_items: int) -> None:
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._not_empty = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.refused: Counter[str] = Counter()

    def qsize(self) -> int:
        return len(self._items)

    def nbytes(self) -> int:
        return self._bytes

    def empty(self) -> bool:
        return not self._items

    def has_room(self, size: int) -> bool:
        if not self._items:
            return True
        return len(self._items) < self.max_items and self._bytes + size <= self.max_bytes

    async def wait_for_room(self, size: int, timeout: float | None = None) -> None:
        """Return once ``size`` bytes fit; raises :class:`IngestRefused` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.has_room(size):
            self._room.clear()
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                self.refused["queue_full"] += 1
                raise IngestRefused(
                    f"ingest queue full ({self._bytes} bytes, {len(self._items)} records) for {timeout:g}s"
                )
            try:
                async with asyncio.timeout(left):  # not wait_for: it can swallow a cancel on 3.11
                    await self._room.wait()
            except TimeoutError:
                continue

    def put_nowait(self, item: T, size: int) -> None:
        self._items.append((item, size))
        self._bytes += size
        self._not_empty.set()

    async def get(self) -> T:
        while not self._items:
            self._not_empty.clear()
            await self._not_empty.wait()
        return self.get_nowait()

    def get_nowait(self) -> T:
        item, size = self._items.popleft()
        self._bytes -= size
        if not self._items:
            self._not_empty.clear()
        self._room.set()
        return item
