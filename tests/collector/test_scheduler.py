"""The scheduler survives what it did not expect, and stops when asked (issue 12's chaos hang).

The chaos rows found a restarted service that stopped scraping about two seconds after start
and then ignored SIGTERM. The scheduler ran its loops in an ``asyncio.TaskGroup`` and a pull
loop caught only ``IngestRefused`` around ``emit``: any other exception from the ingest side (a
``RuntimeError`` from the WAL's group commit, an ``OSError``) ended that loop, the group then
cancelled every other loop (scraping stopped), and a loop whose cancellation was swallowed by
Python 3.11's ``asyncio.wait_for`` kept the group, and with it ``stop()``, waiting for ever.

These tests inject those failures with in-process sources (no peer is involved: the subject is
the scheduler's own supervision). They wait for conditions with a bound, never for a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from collector.faults import FaultState, cancel_and_wait, loop_fault, supervise
from collector.scheduler import Scheduler, SchedulerSettings
from collector.schema import RawRecord
from collector.sources.base import SourceSettings


class CountingSource:
    """A pull source answering every fetch at once with one record naming its target."""

    def __init__(self, name: str, targets: list[str]) -> None:
        self.name = name
        self.settings = SourceSettings(type="prometheus", name=name, interval=0.01, timeout=1.0, jitter=0.0)
        self._targets = targets
        self.fetches: dict[str, int] = dict.fromkeys(targets, 0)

    def targets(self) -> list[str]:
        return list(self._targets)

    async def fetch(self, target: str) -> list[RawRecord]:
        self.fetches[target] += 1
        return [RawRecord(ts=datetime.now(UTC), kind="prometheus", target=target, body=b"x 1\n")]

    async def close(self) -> None:
        return None


async def _until(cond: Callable[[], bool], what: str, bound: float = 10.0) -> None:
    """Wait for ``cond`` at most ``bound`` seconds (a bound against hangs, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + bound
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"not within {bound:g}s: {what}")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "exc", [RuntimeError("write-ahead log group commit stopped"), OSError(5, "Input/output error")]
)
async def test_an_unexpected_emit_error_restarts_its_loop_and_spares_the_others(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    src = CountingSource("s", ["bad", "good"])
    failures = {"left": 3}
    stored: list[str] = []

    async def emit(rec: RawRecord) -> None:
        if rec.target == "bad" and failures["left"] > 0:
            failures["left"] -= 1
            raise exc
        stored.append(rec.target)

    sched = Scheduler([src], [], emit, settings=SchedulerSettings(min_backoff=0.01, max_backoff=0.05))
    task = asyncio.create_task(sched.run())
    try:
        # the crash is a state: the target is failing, the loop's fault is on /readyz
        await _until(lambda: bool(sched.faults()), "the crashed loop reported as a fault")
        h = sched.health[("s", "bad")]
        assert "internal error" in h.last_error
        assert "pull:s:bad" in sched.faults()
        # the sibling never stopped, and the crashed loop came back and stores again
        seen_good = stored.count("good")
        await _until(lambda: stored.count("good") > seen_good + 5, "the other target still scraped")
        await _until(lambda: "bad" in stored, "the crashed loop restarted and stored again")
        assert not task.done(), "run() must not end because one loop crashed"
    finally:
        task.cancel()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
    crash_logs = [r for r in caplog.records if "loop pull:s:bad crashed" in r.getMessage()]
    assert len(crash_logs) == 1, "the traceback is logged once per streak, not once per restart"
    assert crash_logs[0].exc_info is not None


async def test_cancelling_run_is_bounded_even_when_a_loop_ignores_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SIGTERM half of the hang: stop must not wait for ever on a loop that does not end."""
    release = asyncio.Event()

    class Stubborn(CountingSource):
        async def fetch(self, target: str) -> list[RawRecord]:
            self.fetches[target] += 1
            while True:  # swallows every cancellation, as wait_for's race did on 3.11
                try:
                    await release.wait()
                    return []
                except asyncio.CancelledError:
                    continue

    async def emit(_: RawRecord) -> None:
        return None

    src = Stubborn("st", ["t"])
    sched = Scheduler([src], [], emit, settings=SchedulerSettings(stop_grace=0.2))
    task = asyncio.create_task(sched.run())
    await _until(lambda: src.fetches["t"] > 0, "the stubborn fetch started")
    task.cancel()
    try:
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, "cancelling the scheduler hung on a loop that ignored its cancellation"
        assert any("did not stop" in r.getMessage() and "pull:st:t" in r.getMessage() for r in caplog.records)
    finally:
        release.set()


async def test_supervise_logs_once_marks_the_fault_and_clears_it_when_stable() -> None:
    runs = {"n": 0}
    crashes: list[BaseException] = []

    async def body() -> None:
        runs["n"] += 1
        if runs["n"] <= 2:
            raise ValueError(f"crash {runs['n']}")
        await asyncio.sleep(3600)

    fault: FaultState = loop_fault("demo")
    fault.min_delay = fault.max_delay = 0.01
    task = asyncio.create_task(supervise("demo", body, fault, on_crash=crashes.append, stable_s=0.05))
    try:
        await _until(lambda: runs["n"] == 3, "restarted after two crashes")
        assert [str(c) for c in crashes] == ["crash 1", "crash 2"]
        assert fault.faults_total == 1 and fault.failures_total == 2
        await _until(lambda: fault.ok, "fault cleared once the restarted loop ran stable")
    finally:
        names = await cancel_and_wait([task], 5.0, "test")
    assert names == [] and task.cancelled()


async def test_supervise_restarts_a_loop_ended_by_a_cancellation_nobody_requested() -> None:
    runs = {"n": 0}

    async def body() -> None:
        runs["n"] += 1
        if runs["n"] == 1:
            raise asyncio.CancelledError  # a stray cancel (a timeout's leftover), not a stop request
        await asyncio.sleep(3600)

    fault = loop_fault("stray")
    fault.min_delay = fault.max_delay = 0.01
    task = asyncio.create_task(supervise("stray", body, fault))
    try:
        await _until(lambda: runs["n"] == 2, "restarted after the stray cancellation")
        assert not task.done()
    finally:
        await cancel_and_wait([task], 5.0, "test")


async def test_a_cancel_arriving_as_a_fetch_completes_is_not_swallowed() -> None:
    """The root cause of the chaos hang, made deterministic.

    On Python 3.11 ``asyncio.wait_for`` returns the result instead of raising when the task is
    cancelled in the loop iteration in which the awaited fetch completes. The pull loop then went
    on to ``emit``, whose fsync wait the stopping service never answered (the group commit was
    cancelled too), so the loop never ended and neither did ``stop()``: SIGTERM was "ignored".
    A 20-scrapes-a-second target makes that iteration likely in a few runs of the chaos rows.
    """
    gate = asyncio.Event()
    forever = asyncio.Event()

    class Gated(CountingSource):
        async def fetch(self, target: str) -> list[RawRecord]:
            await gate.wait()
            return await super().fetch(target)

    async def emit(_: RawRecord) -> None:
        await forever.wait()  # a stopped group commit: nobody will acknowledge

    sched = Scheduler([Gated("g", ["t"])], [], emit, settings=SchedulerSettings(stop_grace=0.2))
    run = asyncio.create_task(sched.run())
    await _until(lambda: any(t.get_name() == "pull:g:t" for t in asyncio.all_tasks()), "the pull loop started")
    (pull,) = [t for t in asyncio.all_tasks() if t.get_name() == "pull:g:t"]
    for _ in range(5):  # into the fetch's wait
        await asyncio.sleep(0)
    gate.set()  # the fetch completes in the next iteration ...
    await asyncio.sleep(0)
    pull.cancel()  # ... and the stop request arrives in the same one
    try:
        done, _ = await asyncio.wait([pull], timeout=5)
        assert done, "the pull loop swallowed its cancellation and waits in emit for ever"
    finally:
        forever.set()
        run.cancel()
        await asyncio.wait([run], timeout=10)


async def test_supervise_does_not_restart_a_loop_that_was_asked_to_stop() -> None:
    """A loop whose cancel was swallowed and which then fails (its fsync wait refused because the
    service is stopping) must end, not be restarted into a stopping service."""
    runs = {"n": 0}

    async def body() -> None:
        runs["n"] += 1
        with contextlib.suppress(asyncio.CancelledError):  # swallowed, as wait_for's race does
            await asyncio.sleep(3600)
        raise RuntimeError("write-ahead log group commit stopped")

    task = asyncio.create_task(supervise("swallower", body, loop_fault("swallower")))
    await _until(lambda: runs["n"] == 1, "started")
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done and task.cancelled() and runs["n"] == 1
