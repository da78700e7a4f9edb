"""User SQL in worker processes with a hard memory limit, so a query cannot take the service down.

DuckDB's ``max_memory`` bounds its buffer manager, not everything a query allocates: two
``SELECT length(list(range)) FROM range(200000000)`` were refused yet took the service to 2.2 GB,
and ``repeat('x', 400000000)`` added 1.1 GB. Here every query runs (and is encoded to JSON or
Arrow) in a separate process whose data segment is capped with ``setrlimit(RLIMIT_DATA)`` at
its warmed-up size plus ``memory_bytes``; an allocation beyond that fails inside the worker (the
query gets a 422) or ends the worker (the pool is rebuilt; the query gets a 422), never the
service. A query still running at its time limit plus a grace period has its worker killed.
The result comes back as bytes already capped by ``QueryLimits.max_result_bytes``, decoded off
the event loop by the pool's thread, so ``/healthz`` stays responsive during a big result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import resource
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from collector.lake import LakeSettings
from hciwatch.query import QueryError, QueryLimits

log = logging.getLogger(__name__)

KILL_GRACE_S = 2.0
_MEMORY_MESSAGE = "the query needs more memory than the API allows for one query ({mib} MiB); aggregate or select less"
_budget_mib = 0  # set in each worker by _init_worker


@dataclass(frozen=True)
class EncodedResult:
    """A finished query: the encoded body and what the response headers say about it."""

    body: bytes
    rows: int
    truncated: bool


def _vm_data_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _init_worker(memory_bytes: int) -> None:
    """Warm up (imports, DuckDB's threads), then cap the data segment at that plus the budget."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute("SET threads TO 2")
    con.execute("SELECT 1").fetchall()
    con.close()
    global _budget_mib
    _budget_mib = memory_bytes >> 20
    limit = _vm_data_bytes() + memory_bytes
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _run(
    data_dir: Path,
    sql: str,
    limit: int | None,
    limits: QueryLimits,
    extra_views: Mapping[str, str] | None,
    arrow: bool,
    lake: LakeSettings | None = None,
) -> EncodedResult | tuple[str, str, bool]:
    """In the worker: run and encode; errors come back as ``(kind, message, recycle)`` (picklable).

    ``recycle``: the worker hit its memory cap; its allocator keeps the pages, so later queries
    (even thread starts) would fail in it: the parent replaces it.
    """
    from collector.errors import ConfigError
    from hciwatch.api_encode import run_and_encode

    try:
        result, body = run_and_encode(data_dir, sql, limit, limits, extra_views, arrow, lake)
    except QueryError as exc:
        if "memory" in str(exc).lower():
            return ("execution", _MEMORY_MESSAGE.format(mib=_budget_mib), True)
        return (exc.kind, str(exc), False)
    except MemoryError:
        return ("execution", _MEMORY_MESSAGE.format(mib=_budget_mib), True)
    except ConfigError as exc:  # the lake's credentials could not be read in the worker
        return ("internal", f"the lake cannot be opened: {exc}", False)
    return EncodedResult(body, result.table.num_rows, result.truncated)


def _ping() -> None:
    """Starts a worker process (the pool spawns on submit)."""


class QueryWorkers:
    """A small pool of memory-capped query processes (started lazily, rebuilt when one dies)."""

    def __init__(self, workers: int, memory_bytes: int) -> None:
        self.workers = workers
        self.memory_bytes = memory_bytes
        self._pool: ProcessPoolExecutor | None = None
        self.worker_deaths = 0
        self.killed_at_timeout = 0
        self.recycled = 0

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.memory_bytes,),
            )
        return self._pool

    def _discard_pool(self, *, kill: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            # A worker killed while writing a big result leaves half a message in the result pipe:
            # the pool's manager thread then waits for the rest for ever, and the interpreter joins
            # that thread at exit (SIGTERM "ignored" after a timed-out large query). The workers'
            # ends close as they die; closing ours too turns the wait into EOF, a broken pool.
            writer = getattr(getattr(pool, "_result_queue", None), "_writer", None)
            if writer is not None:
                with contextlib.suppress(OSError):
                    writer.close()
        pool.shutdown(wait=False, cancel_futures=True)

    async def run(
        self,
        data_dir: Path,
        sql: str,
        limit: int | None,
        limits: QueryLimits,
        extra_views: Mapping[str, str] | None,
        arrow: bool,
        lake: LakeSettings | None = None,
    ) -> EncodedResult:
        """Run one query in a worker (over ``lake`` when given); raises :class:`QueryError` with a
        message safe to return."""
        loop = asyncio.get_running_loop()
        pool = self._get_pool()
        try:
            fut = loop.run_in_executor(
                pool, _run, Path(data_dir), sql, limit, limits, dict(extra_views or {}), arrow, lake
            )
            out = await asyncio.wait_for(fut, limits.timeout_s + KILL_GRACE_S)
        except TimeoutError:
            self.killed_at_timeout += 1
            self._discard_pool(kill=True)
            raise QueryError(
                f"the query was stopped at the time limit of {limits.timeout_s:g} s", kind="timeout"
            ) from None
        except BrokenProcessPool:
            self.worker_deaths += 1
            log.warning("a query worker ended (most likely its memory limit); starting a new one")
            self._discard_pool(kill=True)
            raise QueryError(_MEMORY_MESSAGE.format(mib=self.memory_bytes >> 20), kind="execution") from None
        if isinstance(out, tuple):
            kind, message, recycle = out
            if recycle:
                self.recycled += 1
                self._discard_pool(kill=True)
                self._get_pool().submit(_ping)  # start the replacement now, not on the next query
            raise QueryError(message, kind=kind)
        return out

    def close(self) -> None:
        self._discard_pool(kill=True)
