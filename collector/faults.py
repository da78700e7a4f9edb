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

import errno as errno_mod
import logging
import random
import time
from collections.abc import Callable
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
            log.error(
                "%s: I/O fault %s: %s; accepted data is kept and the write is retried with backoff",
                self.component,
                code,
                exc,
            )
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
