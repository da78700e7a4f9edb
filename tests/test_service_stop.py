"""``hciwatch run``'s loops are supervised and its stop is bounded (issue 12's chaos hang).

A service loop that raises something nobody expected used to end silently (``/readyz`` 200,
nothing in the log); a task that did not end when cancelled made ``stop()`` wait for ever. Both
are injected here into a real service scraping a loopback target.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

import aiohttp
import pytest

import hciwatch.service as service_mod
from hciwatch.config import load_config
from hciwatch.service import Service
from tests.fixtures.loopback import free_port
from tests.test_service_faults import _config, _counter_target, _poll


async def test_a_crashing_loop_is_reported_restarted_and_stop_abandons_a_stuck_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(service_mod, "STOP_TASKS_S", 0.5)
    runner, port, served = await _counter_target()
    api_port = free_port()
    svc = Service(load_config(_config(tmp_path, port, api_port)))
    real_flush = svc.ingest.flush
    crashes = {"left": 3}
    released = False

    def flaky_flush() -> bool:
        if crashes["left"] > 0:
            crashes["left"] -= 1
            raise RuntimeError("injected: a bug in the flush path")
        return real_flush()

    svc.ingest.flush = flaky_flush  # type: ignore[method-assign]
    await svc.start()
    base = f"http://127.0.0.1:{api_port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def crashed_and_reported() -> bool:
                async with http.get(f"{base}/readyz") as r:
                    body = await r.json()
                    return r.status == 503 and "loop flush" in body.get("faults", {})

            await _poll(crashed_and_reported, "/readyz 503 naming the crashed flush loop")

            async def recovered() -> bool:
                async with http.get(f"{base}/readyz") as r:
                    return r.status == 200 and crashes["left"] == 0

            await _poll(recovered, "the flush loop restarted and its fault cleared")
        crash_logs = [r for r in caplog.records if "loop flush crashed" in r.getMessage()]
        assert len(crash_logs) == 1 and crash_logs[0].exc_info is not None  # once per streak, with traceback

        async def stubborn() -> None:  # a task that ignores its cancellation (until the test ends)
            while not released:
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    continue

        svc._tasks.append(asyncio.create_task(stubborn(), name="stubborn"))
    finally:
        await asyncio.wait_for(svc.stop(), 30)  # bounded: the stubborn task is abandoned, not awaited
        await runner.cleanup()
    assert "task stubborn" in svc.abandoned
    assert any("stubborn did not stop" in r.getMessage() for r in caplog.records)
    assert served, "the target was scraped"
    released = True
    await asyncio.wait(svc._tasks, timeout=10)


async def test_a_run_that_ends_in_time_does_not_leave_its_exit_watchdog_armed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forced exit is for a stop that hangs; after a stop that ended (here: a start that
    failed on a taken port) the calling process lives on. An armed timer used to end the pytest
    process (exit 1, no summary) 12 s after an in-process `hciwatch run` row."""
    exits: list[int] = []
    monkeypatch.setattr(service_mod, "EXIT_WATCHDOG_S", 0.2)
    monkeypatch.setattr(os, "_exit", exits.append)
    runner, port, _ = await _counter_target()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        cfg = load_config(_config(tmp_path, port, taken.getsockname()[1]))
        with pytest.raises(OSError, match="address already in use"):
            await service_mod.run_service(cfg)
        await asyncio.sleep(0.6)
    finally:
        taken.close()
        await runner.cleanup()
    assert exits == []
