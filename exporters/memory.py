"""An exporter that keeps what it is given in memory: the reference sink for tests and the lab.

It can be told to fail its next N exports (retryable or not, with a Retry-After), which is how
the outbox's retry, skip and ordering rules are tested without a network peer.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.schema import Alert
from exporters.base import ExportResult
from exporters.settings import MemorySettings


class MemoryExporter:
    """Stores every accepted batch in :attr:`batches` (in delivery order)."""

    def __init__(
        self, name: str = "memory", *, fail_times: int = 0, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        self.name = name
        self.batches: list[list[Alert]] = []
        self.attempts = 0
        self.started = False
        self.closed = False
        self._fail_left = fail_times
        self._retryable = retryable
        self._retry_after = retry_after

    @classmethod
    def from_settings(cls, s: MemorySettings) -> MemoryExporter:
        return cls(name=s.name, fail_times=s.fail_times)

    @property
    def alerts(self) -> list[Alert]:
        """Every accepted alert change, flattened, in delivery order."""
        return [a for batch in self.batches for a in batch]

    def fail_next(self, times: int, *, retryable: bool = True, retry_after: float | None = None) -> None:
        """Make the next ``times`` exports fail the given way."""
        self._fail_left = times
        self._retryable = retryable
        self._retry_after = retry_after

    async def start(self) -> None:
        self.started = True

    async def export(self, batch: Sequence[Alert]) -> ExportResult:
        self.attempts += 1
        if self._fail_left > 0:
            self._fail_left -= 1
            return ExportResult.failure(
                "memory sink told to fail", retryable=self._retryable, retry_after=self._retry_after
            )
        self.batches.append(list(batch))
        return ExportResult.success()

    async def healthcheck(self) -> bool:
        return self._fail_left == 0

    async def shutdown(self) -> None:
        self.closed = True
