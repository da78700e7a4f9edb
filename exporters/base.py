"""The Exporter protocol every sink implements, and the result it reports per batch.

The outbox (:mod:`exporters.outbox`) owns delivery guarantees: it hands each sink batches of
alert state changes in order, and advances that sink's cursor only on success. A sink therefore
only has to say, per batch, "taken", "try again (maybe after N s)" or "never going to work".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from collector.schema import Alert


@dataclass(frozen=True, slots=True)
class ExportResult:
    """Outcome of one ``export`` call.

    Attributes:
        ok: the whole batch was accepted by the peer.
        retryable: on failure, whether a later retry can succeed (5xx, timeouts, 429).
        retry_after: seconds the peer asked us to wait (``Retry-After``), if it said.
        error: a one-line reason, safe to log (never contains secrets).
    """

    ok: bool
    retryable: bool = True
    retry_after: float | None = None
    error: str = ""

    @classmethod
    def success(cls) -> ExportResult:
        return cls(ok=True)

    @classmethod
    def failure(cls, error: str, *, retryable: bool = True, retry_after: float | None = None) -> ExportResult:
        return cls(ok=False, retryable=retryable, retry_after=retry_after, error=error)


@runtime_checkable
class Exporter(Protocol):
    """A destination for alert state changes (and, optionally, metrics).

    ``start`` and ``shutdown`` are idempotent; ``shutdown`` is safe without ``start``.
    ``export`` must not raise for peer failures: it returns a failed :class:`ExportResult`.
    """

    name: str

    async def start(self) -> None: ...

    async def export(self, batch: Sequence[Alert]) -> ExportResult: ...

    async def healthcheck(self) -> bool: ...

    async def shutdown(self) -> None: ...


class ThreadedSdkExporter:
    """Shared behaviour of sinks built on a blocking SDK (OpenTelemetry, Azure Monitor).

    Subclasses implement ``_export_sync``; it runs in a worker thread so the SDK's blocking HTTP
    or gRPC call never stalls the event loop. Health is the outcome of the last export: these
    sinks send no probe traffic of their own.
    """

    _healthy: bool = True

    def _export_sync(self, batch: Sequence[Alert]) -> ExportResult:
        raise TypeError(f"{type(self).__name__} must implement _export_sync")

    async def export(self, batch: Sequence[Alert]) -> ExportResult:
        result = await asyncio.to_thread(self._export_sync, list(batch))
        self._healthy = result.ok
        return result

    async def healthcheck(self) -> bool:
        """Whether the last export succeeded (no probe traffic of its own)."""
        return self._healthy
