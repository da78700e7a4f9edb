"""Delivery of the outbox to one sink: read from its cursor, batch, export, commit or retry.

The log itself (append, cursors, bounds) is :mod:`exporters.outbox`. Policies (documented for
operators in ``exporters/README.md``):

* **Retries.** A retryable failure is retried with exponential backoff and full jitter
  (``uniform(0, min(backoff_max, backoff_initial * 2**attempt))``), or after exactly the delay the
  peer asked for (``ExportResult.retry_after``, capped at one hour).
* **Non-retryable failures are skipped.** A batch the peer says can never succeed (HTTP 400, a
  gRPC INVALID_ARGUMENT, ...) is logged at ERROR, counted in ``skipped`` and passed, so one
  poison batch cannot block a sink forever. Retrying it would not help, and the changes are
  still in the outbox history, the alerts table and every other sink.
* **Order and independence.** One batch at a time per sink, each sink in its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from collector.schema import Alert
from collector.settings.retry import Backoff
from exporters.base import Exporter, ExportResult
from exporters.outbox import Outbox, SinkCounters
from exporters.settings import SinkSettings

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class DeliveryPolicy:
    """Batching and retry knobs of one sink (``SinkSettings`` carries the configured values)."""

    max_batch: int = 100
    max_wait: float = 0.5
    backoff_initial: float = 1.0
    backoff_max: float = 60.0

    @classmethod
    def from_settings(cls, s: SinkSettings) -> DeliveryPolicy:
        return cls(s.max_batch, s.max_wait, s.backoff_initial, s.backoff_max)


class OutboxDispatcher:
    """Delivers one sink's stream: read from its cursor, batch, export, commit or retry.

    ``sleep`` (retry waits) and ``rng`` (jitter) are injectable so tests can check Retry-After
    and backoff without waiting. Batch filling (``max_wait``) uses the event loop's own timer.
    """

    def __init__(
        self,
        outbox: Outbox,
        exporter: Exporter,
        policy: DeliveryPolicy | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if exporter.name not in outbox.sinks:
            raise ValueError(
                f"sink {exporter.name!r} was not declared when the outbox was opened "
                f"(declared: {', '.join(outbox.sinks) or 'none'})"
            )
        self.outbox = outbox
        self.exporter = exporter
        self.name = exporter.name
        self.policy = policy or DeliveryPolicy()
        self._sleep = sleep
        self._backoff = Backoff(self.policy.backoff_initial, self.policy.backoff_max, rng=rng or random.Random())
        self._wall_clock = wall_clock
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.retry_delays: list[float] = []  # every retry wait, for tests and debugging

    @property
    def counters(self) -> SinkCounters:
        return self.outbox.counters[self.name]

    def _notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake.set)

    def start(self) -> asyncio.Task[None]:
        """Run :meth:`run` as a task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"outbox:{self.name}")
        return self._task

    async def stop(self) -> None:
        """Cancel the delivery task; an in-flight batch is re-sent after restart."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Deliver until cancelled; never raises for sink failures."""
        self._loop = asyncio.get_running_loop()
        self.outbox.add_listener(self._notify)
        try:
            await self._start_exporter()
            batch: list[tuple[int, Alert]] = []
            while True:
                if not batch:
                    batch = await self._next_batch()
                cursor = self.outbox.cursor(self.name)
                batch = [r for r in batch if r[0] >= cursor]  # the disk bound may have moved it
                if not batch:
                    continue
                if await self._deliver(batch):
                    batch = []
        finally:
            self.outbox.remove_listener(self._notify)

    async def _start_exporter(self) -> None:
        while True:
            try:
                await self.exporter.start()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self._backoff.next_delay(None)
                self.counters.last_error = f"start failed: {type(exc).__name__}: {exc}"
                log.warning(
                    "sink %s: could not start (%s: %s); retrying in %.1fs", self.name, type(exc).__name__, exc, delay
                )
                self.retry_delays.append(delay)
                await self._sleep(delay)

    async def _next_batch(self) -> list[tuple[int, Alert]]:
        loop = asyncio.get_running_loop()
        limit = self.policy.max_batch
        while True:
            self._wake.clear()
            batch = self.outbox.read(self.name, limit)
            if batch:
                break
            await self._wake.wait()
        deadline = loop.time() + self.policy.max_wait
        while len(batch) < limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wake.clear()
            more = self.outbox.read(self.name, limit - len(batch), start=batch[-1][0] + 1)
            if more:
                batch.extend(more)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)
        return batch

    async def _commit(self, next_seq: int) -> None:
        """Move the cursor in a worker thread: it fsyncs, and on the event loop that stalled the
        API (``/healthz``) for as long as a busy disk took. A cursor that cannot be written
        (full disk) is not fatal: the changes after it are delivered again later (at least once)."""
        try:
            await asyncio.to_thread(self.outbox.commit, self.name, next_seq)
        except OSError as exc:
            log.warning("sink %s: delivery cursor not saved (%s); those changes may be sent again", self.name, exc)

    async def _deliver(self, batch: Sequence[tuple[int, Alert]]) -> bool:
        """One export attempt; True when the batch is done with (delivered or skipped)."""
        alerts = [a for _, a in batch]
        try:
            result = await self.exporter.export(alerts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an exporter bug must not kill delivery
            log.exception("sink %s: exporter raised instead of returning a result", self.name)
            result = ExportResult.failure(f"{type(exc).__name__}: {exc}")
        c = self.counters
        if result.ok:
            c.delivered += len(batch)  # counted before the cursor moves: whoever sees lag 0 sees these
            c.batches += 1
            c.last_success = self._wall_clock()
            self._backoff.attempt = 0
            await self._commit(batch[-1][0] + 1)
            return True
        c.failures += 1
        c.last_error = result.error
        if not result.retryable:
            c.skipped += len(batch)
            log.error(
                "sink %s: permanent failure, skipping %d alert changes (seq %d-%d): %s",
                self.name,
                len(batch),
                batch[0][0],
                batch[-1][0],
                result.error,
            )
            self._backoff.attempt = 0
            await self._commit(batch[-1][0] + 1)
            return True
        delay = self._backoff.next_delay(result.retry_after)
        self.retry_delays.append(delay)
        log.warning(
            "sink %s: export of %d alert changes failed (attempt %d): %s; retrying in %.1fs",
            self.name,
            len(batch),
            self._backoff.attempt,
            result.error,
            delay,
        )
        await self._sleep(delay)
        return False
