"""Runs every source: one task per pull target, one supervised task per push source.

Pull targets are polled on their interval with jitter (so 500 hosts do not all scrape on the same
second), each fetch bounded by the source's timeout; failures back off exponentially with full
jitter up to ``max_backoff`` (the shared policy of :mod:`collector.settings.retry`), starting from
the target's interval. Records go through ``emit``, which awaits a bounded queue: when the
store falls behind, scrapes slow down instead of memory growing. Target health (last success,
consecutive failures, down since) feeds ``source_down`` alerts and ``/readyz``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collector.errors import FetchError, SourceError
from collector.faults import FaultState, cancel_and_wait, loop_fault, raise_if_cancelling, supervise
from collector.ingest_queue import IngestRefused
from collector.settings.retry import full_jitter
from collector.sources.base import Emit, PullSource, PushSource

log = logging.getLogger(__name__)


@dataclass
class TargetHealth:
    """Health of one (source, target) pair."""

    source: str
    target: str
    down_after: float
    last_success: datetime | None = None
    last_attempt: datetime | None = None
    last_error: str = ""
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    fetches: int = 0
    failures: int = 0
    records: int = 0
    refused: int = 0  # fetches whose records the ingest side refused (bounds, WAL fault)
    refusing: bool = False
    parse_errors: int = 0  # payloads the parser refused (HTML, garbage, over sample/label limits)
    last_parse_error: str = ""
    parse_failing_since: datetime | None = None

    def ok(self, now: datetime, n_records: int) -> None:
        self.last_success = now
        self.last_attempt = now
        self.consecutive_failures = 0
        self.failing_since = None
        self.last_error = ""
        self.fetches += 1
        self.records += n_records

    def fail(self, now: datetime, why: str) -> None:
        self.last_attempt = now
        self.consecutive_failures += 1
        self.failures += 1
        self.fetches += 1
        self.last_error = why
        if self.failing_since is None:
            self.failing_since = now

    def parsed(self, now: datetime, error: str = "") -> None:
        """The parser's verdict on a payload this target answered: a target answering HTML or
        garbage with HTTP 200 is reachable but not *up*."""
        if error:
            self.parse_errors += 1
            self.last_parse_error = error
            if self.parse_failing_since is None:
                self.parse_failing_since = now
        else:
            self.parse_failing_since = None
            self.last_parse_error = ""

    @property
    def up(self) -> bool:
        return not self.consecutive_failures and self.parse_failing_since is None

    def down_since(self) -> datetime | None:
        """Since when the target fails (fetches, or payloads that cannot be parsed)."""
        times = [t for t in (self.failing_since, self.parse_failing_since) if t is not None]
        return min(times) if times else None

    def down_reason(self) -> str:
        return self.last_error or (f"payload refused: {self.last_parse_error}" if self.last_parse_error else "")

    def is_down(self, now: datetime) -> bool:
        """Failing (fetch or parse) continuously for longer than ``down_after`` seconds."""
        since = self.down_since()
        return since is not None and (now - since).total_seconds() >= self.down_after


@dataclass
class SchedulerSettings:
    max_backoff: float = 300.0
    min_backoff: float = 1.0
    stop_grace: float = 1.5  # cancelled loops that have not ended after this are abandoned (logged)


@dataclass
class Scheduler:
    """Drives pull and push sources until cancelled."""

    pull: list[PullSource]
    push: list[PushSource]
    emit: Emit
    settings: SchedulerSettings = field(default_factory=SchedulerSettings)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    health: dict[tuple[str, str], TargetHealth] = field(default_factory=dict)
    loop_faults: dict[str, FaultState] = field(default_factory=dict)
    _by_target: dict[str, list[TargetHealth]] | None = None

    def __post_init__(self) -> None:
        for src in self.pull:
            for tgt in src.targets():
                self.health[(src.name, tgt)] = TargetHealth(src.name, tgt, src.settings.down_after)
        for psrc in self.push:
            self.health[(psrc.name, psrc.name)] = TargetHealth(psrc.name, psrc.name, psrc.settings.down_after)

    async def run(self) -> None:
        """Run until cancelled; one failing target never affects another.

        Every loop is supervised (:func:`collector.faults.supervise`): an exception nobody
        expected (from a source, or from ``emit`` during a store or WAL fault) is logged once,
        marks the target failing and the loop's fault (``/readyz``), and the loop restarts. No
        TaskGroup: one loop's crash must not cancel its siblings. Cancelling ``run`` cancels every
        loop and waits for them at most ``stop_grace`` seconds (what is left is logged, abandoned).
        """
        tasks: list[asyncio.Task[None]] = []
        for src in self.pull:
            for tgt in src.targets():
                name = f"pull:{src.name}:{tgt}"
                tasks.append(asyncio.create_task(self._supervised_pull(name, src, tgt), name=name))
        for psrc in self.push:
            name = f"push:{psrc.name}"
            tasks.append(asyncio.create_task(self._supervised_push(name, psrc), name=name))
        try:
            if tasks:  # not gather: a cancelled gather waits for its children, i.e. for ever for a stuck one
                await asyncio.wait(tasks)
        finally:
            await cancel_and_wait(tasks, self.settings.stop_grace, "scheduler stop")

    def _supervised_pull(self, name: str, src: PullSource, target: str) -> Coroutine[Any, Any, None]:
        h = self.health[(src.name, target)]
        fault = self.loop_faults.setdefault(name, loop_fault(name))
        return supervise(
            name,
            lambda: self._pull_loop(src, target),
            fault,
            on_crash=lambda exc: h.fail(self.now(), f"internal error: {exc!r}"),
        )

    def _supervised_push(self, name: str, src: PushSource) -> Coroutine[Any, Any, None]:
        h = self.health[(src.name, src.name)]
        fault = self.loop_faults.setdefault(name, loop_fault(name))
        return supervise(
            name,
            lambda: self._push_loop(src),
            fault,
            on_crash=lambda exc: h.fail(self.now(), f"internal error: {exc!r}"),
        )

    def faults(self) -> dict[str, FaultState]:
        """Loops that crashed and are being restarted (healthy ones are left out: 500 targets)."""
        return {name: f for name, f in self.loop_faults.items() if not f.ok}

    def _backoff(self, failures: int, interval: float) -> float:
        s = self.settings
        return full_jitter(failures, max(s.min_backoff, interval), s.max_backoff, self.rng, floor=s.min_backoff)

    async def _pull_loop(self, src: PullSource, target: str) -> None:
        st = src.settings
        h = self.health[(src.name, target)]
        await self.sleep(self.rng.uniform(0, st.interval * max(st.jitter, 0.0)))
        while True:
            raise_if_cancelling()
            started = time.monotonic()
            try:
                async with asyncio.timeout(st.timeout):  # not wait_for: it can swallow a cancel on 3.11
                    records = await src.fetch(target)
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                h.fail(self.now(), f"timed out after {st.timeout:g}s")
            except FetchError as exc:
                h.fail(self.now(), exc.reason)
            except SourceError as exc:
                h.fail(self.now(), str(exc))
            except Exception as exc:  # a source bug must not kill the scheduler
                log.exception("source %s crashed fetching %s", src.name, target)
                h.fail(self.now(), f"internal error: {exc!r}")
            else:
                try:
                    for rec in records:
                        await self.emit(rec)
                except IngestRefused as exc:  # not stored: counted by the ingest side, not a target failure
                    h.refused += 1
                    if not h.refusing:  # once per streak: a long fault must not flood the log
                        log.warning("%s %s: scrapes not stored: %s", src.name, target, exc)
                    h.refusing = True
                else:
                    if h.refusing:
                        log.warning("%s %s: scrapes stored again", src.name, target)
                    h.refusing = False
                    h.ok(self.now(), len(records))
            if h.consecutive_failures:
                delay = min(
                    self._backoff(h.consecutive_failures - 1, st.interval), max(st.interval, self.settings.max_backoff)
                )
                log.warning("%s %s: %s (retry in %.1fs)", src.name, target, h.last_error, delay)
            else:
                spent = time.monotonic() - started
                delay = max(0.0, st.interval - spent) + self.rng.uniform(-1, 1) * st.jitter * st.interval / 2
            await self.sleep(max(0.0, delay))

    async def _push_loop(self, src: PushSource) -> None:
        h = self.health[(src.name, src.name)]

        async def counted(rec: Any) -> None:
            await self.emit(rec)
            h.ok(self.now(), 1)

        while True:
            raise_if_cancelling()
            try:
                await src.run(counted)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                h.fail(self.now(), str(exc))
                delay = self._backoff(h.consecutive_failures - 1, 5.0)
                log.warning("push source %s stopped: %s (restart in %.1fs)", src.name, exc, delay)
                await self.sleep(delay)

    def health_for(self, target: str) -> list[TargetHealth]:
        """Health entries of every source scraping ``target`` (usually one)."""
        if self._by_target is None:
            self._by_target = {}
            for h in self.health.values():
                self._by_target.setdefault(h.target, []).append(h)
        return self._by_target.get(target, [])

    def down_targets(self, now: datetime | None = None) -> list[TargetHealth]:
        """Targets failing for longer than their ``down_after``."""
        t = now or self.now()
        return [h for h in self.health.values() if h.is_down(t)]
