"""The one retry policy: exponential backoff with full jitter, and ``Retry-After`` honoured.

Full jitter (``uniform(floor, min(max, initial * 2**attempt))``, the AWS Architecture Blog's
"Exponential Backoff And Jitter") spreads many clients that failed together over the whole window,
which is what matters when 500 targets or a fleet of collectors lose the same peer at once. When
the peer says how long to wait (HTTP ``Retry-After``, gRPC ``RetryInfo``) that delay is used
as given, capped at :data:`MAX_RETRY_AFTER`.

Scheduler retries, MQTT and Kubernetes reconnects and the outbox's sink retries all use
:class:`Backoff` (or :func:`full_jitter` where the attempt count is kept elsewhere); the random
source and the clock are injectable so tests check delays without waiting.

A retry library (tenacity, stamina) wraps a call in a retry loop; these loops also track health,
read ``Retry-After`` from results rather than exceptions and must stay cancellable at every
await, so only the delay policy is shared, here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_RETRY_AFTER = 3600.0
"""Longest delay a peer can ask for (a misconfigured ``Retry-After: 86400`` must not park a sink)."""


def full_jitter(attempt: int, initial: float, maximum: float, rng: random.Random, *, floor: float = 0.0) -> float:
    """Delay before retry number ``attempt`` (0-based): ``uniform(floor, min(maximum, initial * 2**attempt))``."""
    cap = min(maximum, initial * 2.0 ** min(max(attempt, 0), 62))
    return rng.uniform(min(floor, cap), cap)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds to wait: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds and seconds != float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - now, 0.0)


class Backoff:
    """Successive retry delays for one peer; :meth:`reset` after a success."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        floor: float = 0.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.floor = floor
        self.rng = rng or random.Random()
        self.clock = clock
        self.attempt = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """The delay before the next retry; the peer's ``retry_after`` (seconds) wins when given."""
        self.attempt += 1
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, MAX_RETRY_AFTER)
        return full_jitter(self.attempt - 1, self.initial, self.maximum, self.rng, floor=self.floor)

    def delay_for_header(self, retry_after_header: str | None) -> float:
        """:meth:`next_delay` honouring a raw ``Retry-After`` header value."""
        return self.next_delay(parse_retry_after(retry_after_header, self.clock()))

    def reset(self) -> None:
        self.attempt = 0


class RetrySettings(BaseModel):
    """``backoff_initial`` / ``backoff_max``: the retry keys of every sink and reconnecting source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backoff_initial: float = Field(
        default=1.0, gt=0, le=3600, description="first retry delay cap, seconds (full jitter)"
    )
    backoff_max: float = Field(default=60.0, gt=0, le=86_400, description="largest retry delay cap, seconds")

    @model_validator(mode="after")
    def _check_backoff(self) -> RetrySettings:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")
        return self

    def backoff(self, *, rng: random.Random | None = None, clock: Callable[[], float] = time.time) -> Backoff:
        """A fresh :class:`Backoff` with these bounds."""
        return Backoff(self.backoff_initial, self.backoff_max, rng=rng, clock=clock)
