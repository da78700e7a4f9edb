"""``hciwatch run`` through a full disk: ingest goes on into the WAL, the fault shows on /readyz and
/metrics and once in the log, and the store catches up by itself when space returns.

Before the write-ahead log and fault states, the first failed Parquet write ended the flush loop
for good, /readyz stayed 200 and nothing was logged.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

import aiohttp
import pyarrow as pa
import pytest
from aiohttp import web

import collector.store as store_mod
from hciwatch.config import load_config
from hciwatch.service import Service
from tests.fixtures.loopback import free_port, serve


class SwitchableDisk:
    """Parquet writes raise ``OSError(ENOSPC)`` while ``full`` is set."""

    def __init__(self) -> None:
        self.full = False
        self.refused = 0
        self._real = store_mod.write_parquet_atomic

    def __call__(self, table: pa.Table, final: Path, **kw: int) -> None:
        if self.full:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final))
        self._real(table, final, **kw)


async def _counter_target() -> tuple[web.AppRunner, int, list[int]]:
    """A loopback target whose every scrape carries its own number (to count losses exactly)."""
    served: list[int] = []

    async def metrics(_: web.Request) -> web.Response:
        served.append(len(served) + 1)
        return web.Response(text=f"chaos_scrape_seq {served[-1]}\n", content_type="text/plain")

    runner, port = await serve({"/metrics": metrics})
    return runner, port, served


def _config(tmp_path: Path, target_port: int, api_port: int) -> Path:
    cfg = tmp_path / "hciwatch.toml"
    cfg.write_text(f"""
data_dir = "data"
[store]
flush_interval = 0.2
[[sources]]
type = "prometheus"
targets = ["http://127.0.0.1:{target_port}/metrics"]
interval = 0.1
timeout = 2.0
[api]
listen = "127.0.0.1:{api_port}"
allow_unauthenticated = true
""")
    return cfg


async def _poll(check: object, what: str, attempts: int = 150) -> None:
    for _ in range(attempts):  # bounded: ~30 s
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_full_disk_is_a_state_reported_and_recovered_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    disk = SwitchableDisk()
    monkeypatch.setattr(store_mod, "write_parquet_atomic", disk)
    runner, port, served = await _counter_target()
    api_port = free_port()
    svc = Service(load_config(_config(tmp_path, port, api_port)))
    caplog.set_level(logging.INFO)
    await svc.start()
    base = f"http://127.0.0.1:{api_port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def stored_some() -> bool:
                return svc.store.stats.rows_written.get("samples", 0) > 0

            await _poll(stored_some, "first rows stored")
            disk.full = True

            async def fault_reported() -> bool:
                async with http.get(f"{base}/readyz") as r:
                    body = await r.json()
                    return r.status == 503 and body["faults"]["store"].get("error") == "ENOSPC"

            await _poll(fault_reported, "/readyz to report ENOSPC")
            accepted_during = svc.ingest.wal.stats.appended

            async def still_accepting() -> bool:
                return svc.ingest.wal.stats.appended > accepted_during + 5 and disk.refused >= 3

            await _poll(still_accepting, "ingest to go on into the WAL and writes to be retried")
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
            assert 'hciwatch_io_fault{component="store",error="ENOSPC"} 1.0' in text
            disk.full = False

            async def recovered() -> bool:
                async with http.get(f"{base}/readyz") as r:
                    return r.status == 200 and svc.store.buffered_rows() == 0

            await _poll(recovered, "the store to catch up by itself")
    finally:
        await svc.stop()
        await runner.cleanup()
    # stop parses what waits only within its drain budget (on a loaded machine the last scrape can
    # stay in the write-ahead log): the promise is that a restart replays it, so check after one
    again = Service(load_config(_config(tmp_path, port, api_port)))
    await again.start()
    try:

        async def replayed() -> bool:
            return not again._replaying

        await _poll(replayed, "the write-ahead log replay at restart")
    finally:
        await again.stop()
    values = [
        int(v)
        for (v,) in again.store.connect()
        .execute("SELECT value FROM samples WHERE metric = 'chaos_scrape_seq'")
        .fetchall()
    ]
    assert len(values) == len(set(values)), "a scrape was stored twice"
    appended = svc.ingest.wal.stats.appended
    assert len(values) == appended, f"{appended} scrapes accepted, {len(values)} stored"
    assert set(values) <= set(served)
    entered = [r for r in caplog.records if "I/O fault ENOSPC" in r.getMessage()]
    assert len(entered) == 1, [r.getMessage() for r in entered]
    assert any("store: recovered from ENOSPC" in r.getMessage() for r in caplog.records)
