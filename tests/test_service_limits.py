"""Targets that answer 200 with something unusable are not "up": an HTML login page, a payload over
``sample_limit`` or ``label_limit``. Each is counted per target, refused whole with a precise reason,
and raises ``source_down`` saying why. Before, an HTML 200 counted as a healthy scrape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiohttp import web

from hciwatch.config import load_config
from hciwatch.service import Service
from tests.fixtures.loopback import free_port, serve


async def _targets() -> tuple[web.AppRunner, int]:
    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html><body>Please log in</body></html>\n", content_type="text/html")

    async def many(_: web.Request) -> web.Response:
        return web.Response(text="".join(f'wide{{i="{i}"}} {i}\n' for i in range(50)), content_type="text/plain")

    async def labelled(_: web.Request) -> web.Response:
        labels = ",".join(f'l{i}="v"' for i in range(12))
        return web.Response(text=f"tall{{{labels}}} 1\n", content_type="text/plain")

    return await serve({"/html": html, "/many": many, "/labelled": labelled})


async def test_html_and_over_limit_payloads_count_per_target_and_raise_source_down(tmp_path: Path) -> None:
    runner, port = await _targets()
    api_port = free_port()
    cfg = tmp_path / "hciwatch.toml"
    common = "interval = 0.2\ntimeout = 2.0\ndown_after = 0.5\n"
    cfg.write_text(f"""
data_dir = "data"
[[sources]]
type = "prometheus"
name = "html"
targets = ["http://127.0.0.1:{port}/html"]
{common}
[[sources]]
type = "prometheus"
name = "many"
targets = ["http://127.0.0.1:{port}/many"]
sample_limit = 10
{common}
[[sources]]
type = "prometheus"
name = "labelled"
targets = ["http://127.0.0.1:{port}/labelled"]
label_limit = 8
{common}
[analytics]
evaluation_interval = "1s"
[analytics.lifecycle.source_down]
for = "0s"
hold = "1s"
[api]
listen = "127.0.0.1:{api_port}"
allow_unauthenticated = true
""")
    svc = Service(load_config(cfg))
    await svc.start()
    base = f"http://127.0.0.1:{api_port}"
    try:
        async with aiohttp.ClientSession() as http:
            firing: dict[str, str] = {}
            for _ in range(100):  # bounded: ~20 s
                await asyncio.sleep(0.2)
                async with http.get(f"{base}/api/v1/alerts?state=firing&kind=source_down") as r:
                    firing = {a["resource"]["source"]: a["summary"] for a in (await r.json())["alerts"]}
                if len(firing) == 3:
                    break
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
    finally:
        await svc.stop()
        await runner.cleanup()
    assert set(firing) == {"html", "many", "labelled"}, firing
    assert "no valid sample" in firing["html"]
    assert "50 samples exceed sample_limit 10" in firing["many"]
    assert "12 labels, over label_limit 8" in firing["labelled"]
    for name in ("html", "many", "labelled"):
        assert f'hciwatch_target_up{{source="{name}",target="http://127.0.0.1:{port}/{name}"}} 0.0' in text
    assert 'hciwatch_pipeline_parse_errors_total{reason="sample_limit"}' in text
    assert 'hciwatch_pipeline_parse_errors_total{reason="label_limit"}' in text
    rows = svc.store.connect().execute("SELECT count(*) FROM samples WHERE metric IN ('wide', 'tall')").fetchone()
    assert rows == (0,)  # refused whole, as Prometheus does
