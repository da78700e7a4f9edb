"""``hciwatch run`` end to end: a windows_exporter-format target scraped on a schedule, stored,
queried through the token-protected API, a dead target raising ``source_down``, and a clean
shutdown that flushes what was accepted.

windows_exporter cannot run here, so the target is an aiohttp server on 127.0.0.1 serving the
lab's windows_exporter-format payload (see lab/hosts.py for how it is built).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

import lab
from hciwatch.config import load_config
from hciwatch.service import Service
from tests.fixtures.loopback import free_port, serve


async def _serve_lab_metrics() -> tuple[bytes, web.AppRunner, int]:
    """A loopback HTTP target serving one lab windows_exporter payload at /metrics."""
    scen = lab.Scenario(duration=timedelta(minutes=2), interval=timedelta(seconds=60))
    body = next(r.body for r in lab.generate(scen) if r.kind == "prometheus")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/plain")

    runner, port = await serve({"/metrics": metrics})
    return body, runner, port


async def test_service_scrapes_stores_serves_and_flushes_on_stop(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="hciwatch.service")
    _, runner, port = await _serve_lab_metrics()
    dead = free_port()  # nothing listens here
    api_port = free_port()
    (tmp_path / "token").write_text("t0ken-for-tests\n")
    cfg_path = tmp_path / "hciwatch.toml"
    cfg_path.write_text(f"""
data_dir = "data"
[store]
flush_interval = 0.5
[[sources]]
type = "windows"
targets = ["127.0.0.1:{port}"]
interval = 0.5
timeout = 2.0
[[sources]]
type = "windows"
name = "dead-host"
targets = ["127.0.0.1:{dead}"]
interval = 0.5
timeout = 0.5
down_after = 1.0
[analytics]
evaluation_interval = "1s"
[analytics.lifecycle.source_down]
for = "0s"
hold = "1s"
[api]
listen = "127.0.0.1:{api_port}"
token_file = "{tmp_path / "token"}"
""")
    cfg = load_config(cfg_path)
    svc = Service(cfg)
    await svc.start()
    base = f"http://127.0.0.1:{api_port}"
    auth = {"Authorization": "Bearer t0ken-for-tests"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 401
            rows = 0
            for _ in range(100):  # bounded: at most ~20 s
                await asyncio.sleep(0.2)
                async with http.post(
                    f"{base}/api/v1/query", headers=auth, json={"sql": "SELECT count(*) AS n FROM samples"}
                ) as r:
                    assert r.status == 200, await r.text()
                    rows = (await r.json())["rows"][0][0]
                async with http.get(f"{base}/api/v1/alerts?state=firing", headers=auth) as r:
                    firing = await r.json()
                if rows > 0 and any(a["kind"] == "source_down" for a in firing["alerts"]):
                    break
            assert rows > 0, "no samples reached the store through the API"
            assert any(
                a["kind"] == "source_down" and a["resource"]["source"] == "dead-host" for a in firing["alerts"]
            ), firing
            async with http.get(f"{base}/metrics", headers=auth) as r:
                text = await r.text()
            assert "hciwatch_pipeline_samples_in_total" in text and "hciwatch_target_up" in text
            assert 'hciwatch_build_info{duckdb="' in text
            assert "hciwatch 0." in caplog.text and "API and live page on http://127.0.0.1:" in caplog.text  # banner
            assert "alert firing Sev2 source_down [source=dead-host" in caplog.text  # one line per change
    finally:
        await svc.stop()
        await runner.cleanup()
    # everything accepted before the stop is on disk
    store_rows = svc.store.connect().execute("SELECT count(*) FROM samples").fetchone()
    assert store_rows is not None and store_rows[0] >= rows
    assert (tmp_path / "data" / "alert_state.json").exists()


def _write_scrape_config(tmp_path: Path, port: int, interval: float, extra: str = "") -> Path:
    """A config scraping one windows_exporter-format target on loopback, plus ``extra`` TOML."""
    cfg_path = tmp_path / "hciwatch.toml"
    cfg_path.write_text(f"""
data_dir = "data"
[[sources]]
type = "windows"
targets = ["127.0.0.1:{port}"]
interval = {interval}
{extra}""")
    return cfg_path


async def test_capture_records_live_targets_and_replay_reproduces_them(tmp_path: Path) -> None:
    from collector.capture import read_capture
    from hciwatch.pipeline import replay_records
    from hciwatch.service import capture

    body, runner, port = await _serve_lab_metrics()
    cfg_path = _write_scrape_config(tmp_path, port, 0.3)
    cfg = load_config(cfg_path)
    out = tmp_path / "live.jsonl.zst"
    try:
        n = await capture(cfg, out, 1.5)
    finally:
        await runner.cleanup()
    assert n >= 2
    items = list(read_capture(out, known_kinds=["prometheus"]))
    assert all(i.error is None for i in items)
    assert all(i.record is not None and i.record.body == body for i in items)
    res = replay_records(items, cfg, tmp_path / "replayed")
    assert res.stats.records_rejected == 0
    assert res.stats.samples_stored > 0 and res.stats.records_read == n


async def test_service_pushes_dashboard_metrics_through_otlp(tmp_path: Path, otlp_receiver: Any) -> None:
    """``metrics = true`` on an OTLP sink: pool fill, firing alerts and pipeline counters arrive at a
    real OTLP receiver (the last collection is flushed on stop)."""
    from hciwatch.demo import demo_config_text
    from hciwatch.pipeline import replay_records

    _, runner, port = await _serve_lab_metrics()
    scen = lab.Scenario(duration=timedelta(minutes=2), interval=timedelta(seconds=60))
    networks = demo_config_text(scen).split("[[networks]]", 1)[1]
    cfg_path = _write_scrape_config(
        tmp_path,
        port,
        0.5,
        f"""
[analytics]
evaluation_interval = "1s"
[analytics.pools]
bucket = "1s"
[api]
listen = "127.0.0.1:{free_port()}"
allow_unauthenticated = true
[[exporters]]
type = "otlp"
endpoint = "{otlp_receiver.grpc_endpoint}"
metrics = true
metrics_interval = 3600
[[networks]]
{networks}""",
    )
    cfg = load_config(cfg_path)
    # The Kubernetes API cannot run here: the lab's ServiceList/NodeList payloads, stamped two and
    # one minutes ago, are replayed into the data dir first; the service's first evaluation
    # rebuilds the pools' holders from that stored history, as after a restart.
    now = datetime.now(UTC)
    inventory = [
        dataclasses.replace(r, ts=now - timedelta(seconds=secs))
        for secs in (120, 60)
        for r in lab.generate(scen)
        if r.kind == "k8s"
    ]
    inventory.sort(key=lambda r: r.ts)
    replay_records(inventory, cfg, cfg.data_dir)
    svc = Service(cfg)
    await svc.start()
    try:
        for _ in range(60):  # bounded: at most ~12 s
            await asyncio.sleep(0.2)
            if svc.pipeline.stats.evaluations >= 2 and svc._analytics_snapshot.pools:
                break
    finally:
        await svc.stop()
        await runner.cleanup()
    samples_in = otlp_receiver.latest("hciwatch.pipeline.samples_in")
    assert samples_in and next(iter(samples_in.values())) == svc.pipeline.stats.samples_stored > 0
    firing = otlp_receiver.latest("hciwatch.alerts.firing")
    assert (("kind", "duplicate_ip"),) in firing
    sizes = otlp_receiver.latest("hciwatch.pool.size")
    want = {((("network", p.network), ("pool", p.pool))): p.size for p in svc.pipeline.engine.pool_stats()}
    assert want and sizes == want
