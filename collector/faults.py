"""I/O faults as states, not deaths: one small tracker per I/O loop (store writer, WAL, outbox).

A full disk (``ENOSPC``), the descriptor limit (``EMFILE``), a failing device (``EIO``) or a
read-only remount (``EROFS``) must not stop a loop for good. The loop keeps what it accepted,
asks :meth:`FaultState.retry_in` how long to wait (exponential backoff with full jitter, capped),
tries again, and calls :meth:`FaultState.cleared` when an attempt succeeds. The state is what
``/readyz`` and ``/metrics`` report; the log gets one line per change of state (entering a fault,
a different errno, recovery), never one per attempt, so a fault that lasts hours cannot fill the
disk with log lines either.
"""

from __future__ import annotations

import asyncio
import errno as errno_mod
import io
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


def fault_code(exc: BaseException) -> str:
    """A short, stable name for what went wrong (``ENOSPC``, ``EMFILE``, ... or the type name).

    Walks ``__cause__`` so a :class:`~collector.errors.StoreError` raised ``from`` an ``OSError``
    is named after the OS error.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return errno_mod.errorcode.get(seen.errno, f"errno{seen.errno}")
        seen = seen.__cause__
    return type(exc).__name__


@dataclass
class FaultState:
    """Whether one I/O component currently fails, since when, why, and when to try again."""

    component: str
    min_delay: float = 0.5
    max_delay: float = 30.0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    code: str = ""  # "" while healthy
    message: str = ""
    since: float | None = None  # wall-clock time the current fault began
    attempts: int = 0  # failed attempts in the current fault
    failures_total: int = 0  # failed attempts since start (a counter for /metrics)
    faults_total: int = 0  # times the component entered a fault
    what: str = "I/O fault"  # how the log names a failure ("loop crashed" for a supervised loop)
    then: str = "accepted data is kept and the write is retried with backoff"
    _next_try: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.code

    def failed(self, exc: BaseException) -> float:
        """Record a failed attempt; returns the delay before the next one. Logs on a state change."""
        code = fault_code(exc)
        self.failures_total += 1
        self.attempts += 1
        if code != self.code:
            if not self.code:
                self.faults_total += 1
                self.since = self.wall()
            log.error("%s: %s %s: %s; %s", self.component, self.what, code, exc, self.then)
        self.code = code
        self.message = str(exc)
        delay = self.rng.uniform(self.min_delay, min(self.max_delay, self.min_delay * 2 ** min(self.attempts, 16)))
        self._next_try = self.clock() + delay
        return delay

    def cleared(self) -> None:
        """Record a successful attempt; logs the recovery once."""
        if self.code:
            assert self.since is not None
            log.warning(
                "%s: recovered from %s after %d failed attempts (%.0f s)",
                self.component,
                self.code,
                self.attempts,
                self.wall() - self.since,
            )
        self.code = ""
        self.message = ""
        self.since = None
        self.attempts = 0
        self._next_try = 0.0

    def due(self) -> bool:
        """True when healthy or the backoff after the last failure has passed."""
        return self.ok or self.clock() >= self._next_try

    def retry_in(self) -> float:
        """Seconds until the next attempt is due (0 when healthy)."""
        return 0.0 if self.ok else max(0.0, self._next_try - self.clock())

    def describe(self) -> dict[str, Any]:
        """The state as ``/readyz`` shows it."""
        if self.ok:
            return {"ok": True}
        return {
            "ok": False,
            "error": self.code,
            "message": self.message,
            "since": self.since,
            "attempts": self.attempts,
        }


def loop_fault(name: str) -> FaultState:
    """The fault state of one supervised loop (see :func:`supervise`)."""
    return FaultState(name, what="loop crashed", then="it is restarted with backoff", max_delay=10.0)


async def supervise(
    name: str,
    body: Callable[[], Awaitable[object]],
    fault: FaultState,
    *,
    on_crash: Callable[[BaseException], None] | None = None,
    stable_s: float = 10.0,
) -> None:
    """Run ``body()`` until it returns; when it raises, log it, mark ``fault`` and start it again.

    Why: a loop task (a scrape target, the consumer, the flusher) that dies from an exception
    nobody expected used to die silently: its data stopped while ``/readyz`` said 200, and a
    TaskGroup around it cancelled its siblings too. Here a crash is a state like an I/O fault:
    the traceback is logged once per streak (``fault`` logs the state changes), ``on_crash``
    lets the owner mark its own health (a target's ``source_down``), the loop is restarted after
    the fault's backoff, and the fault clears once the restarted body has run ``stable_s``
    seconds without crashing.

    A cancellation that nobody requested (``Task.cancelling() == 0``: a stray cancel left by a
    timeout) is a crash too; a requested one ends the loop.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    while True:
        handle = loop.call_later(stable_s, fault.cleared) if not fault.ok else None
        try:
            await body()
        except asyncio.CancelledError as exc:
            if task is None or task.cancelling():
                raise
            err: BaseException = RuntimeError(f"cancelled without a stop request: {exc!r}")
        except Exception as exc:
            if task is not None and task.cancelling():  # asked to stop (a cancel some code swallowed): stop
                raise asyncio.CancelledError from exc
            err = exc
        else:
            fault.cleared()
            return
        finally:
            if handle is not None:
                handle.cancel()
        if fault.ok:  # the traceback once per streak; a loop crashing every second must not flood the log
            log.error("loop %s crashed; restarting it", name, exc_info=err)
        delay = fault.failed(err)
        if on_crash is not None:
            try:
                on_crash(err)
            except Exception:  # the owner's bookkeeping must not end supervision
                log.exception("loop %s: marking the crash failed", name)
        await asyncio.sleep(delay)


def raise_if_cancelling() -> None:
    """Raise ``CancelledError`` when the current task was asked to stop.

    Why: on Python 3.11 ``asyncio.wait_for`` (and code built on it) can swallow a cancellation
    that arrives as the awaited operation completes; a loop that checks this at the top of each
    round stops anyway instead of running on and hanging whoever awaits it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], timeout: float, what: str) -> list[str]:
    """Cancel ``tasks`` and wait at most ``timeout`` seconds; returns the names of those abandoned.

    Why: shutdown awaited its tasks without a bound, so one task that did not end (a swallowed
    cancellation, a wait nobody would ever satisfy) made SIGTERM hang until systemd's kill. An
    abandoned task is logged with where it is waiting, so the hang is diagnosable, and stop goes on.
    """
    pending_in = [t for t in tasks if not t.done()]
    for t in pending_in:
        t.cancel()
    if not pending_in:
        return []
    _, pending = await asyncio.wait(pending_in, timeout=timeout)
    names = []
    for t in pending:
        buf = io.StringIO()
        t.print_stack(file=buf)
        names.append(t.get_name())
        log.error("%s: task %s did not stop within %.1f s; abandoned\n%s", what, t.get_name(), timeout, buf.getvalue())
        t.cancel()
    return names
