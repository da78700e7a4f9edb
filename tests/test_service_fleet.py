"""``hciwatch run`` with ``[fleet]``: two services for one site over one Azurite lake.

Only the lease holder collects and evaluates the site's domain; the other stands by (no scrape, no
detector pass, "standby" on ``/readyz``). When the owner stops, the standby takes the domain over,
loads the lifecycle state the owner saved into the lease blob and continues its incidents without
firing them again. The lease backend going down is a fault state on ``/readyz`` that clears when it
comes back, and an owner that cannot renew stops evaluating before its lease could be taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

import lab
from collector.domains import owner
from collector.schema import Alert
from hciwatch.config import load_config
from hciwatch.service import Service
from tests.fixtures.loopback import free_port, serve
from tests.fixtures.object_stores import ObjectStore, StoppableAzurite


async def _target() -> tuple[web.AppRunner, int]:
    scen = lab.Scenario(duration=timedelta(minutes=2), interval=timedelta(seconds=60))
    body = next(r.body for r in lab.generate(scen) if r.kind == "prometheus")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/plain")

    return await serve({"/metrics": metrics})


DEAD = free_port()  # nothing listens here: the same dead target (same fingerprint) at every instance


def _config(tmp: Path, name: str, store: ObjectStore, url: str, port: int, *, dead: int = DEAD) -> Path:
    lake = "\n".join(f'{k} = "{v}"' for k, v in store.lake_settings().items())
    path = tmp / f"{name}.toml"
    path.write_text(f"""
data_dir = "{tmp / name}"
[site]
name = "east"
[store]
flush_interval = 0.5
[store.lake]
url = "{url}"
{lake}
[fleet]
enabled = true
instance = "{name}"
lease_duration = 15
renew_interval = 0.5
member_ttl = 2
[[sources]]
type = "windows"
targets = ["127.0.0.1:{port}"]
interval = 0.5
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
hold = "1m"
[api]
listen = "127.0.0.1:{free_port()}"
allow_unauthenticated = true
""")
    return path


async def _until(cond: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        res = cond()
        if res if isinstance(res, bool) else await res:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


async def _readyz(svc: Service) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{svc.port}/readyz") as r:
        body: dict[str, Any] = await r.json()
        return body


def _firing(svc: Service) -> list[str]:
    return [a.kind.value for a in svc.pipeline.manager.firing()]


async def test_standby_takes_the_domain_over_without_refiring(azurite: ObjectStore, tmp_path: Path) -> None:
    url = azurite.url(azurite.new_bucket())
    first, second = ("hw-a", "hw-b") if owner("east", ["hw-a", "hw-b"]) == "hw-a" else ("hw-b", "hw-a")
    runner, port = await _target()
    a = Service(load_config(_config(tmp_path, first, azurite, url, port)))
    b = Service(load_config(_config(tmp_path, second, azurite, url, port)))
    changes: list[Alert] = []
    b.pipeline.alert_sinks.append(changes.extend)  # what the second instance's passes emit
    try:
        await a.start()
        await _until(lambda: a.ownership is not None and a.ownership.owns("east"), "the first instance owns east")
        await b.start()
        await _until(lambda: "source_down" in _firing(a), "the owner fires source_down for the dead target")
        standby = await _readyz(b)
        assert standby["fleet"]["standby"] == ["east"] and standby["fleet"]["owned"] == {}
        assert sorted(standby["fleet"]["members"]) == sorted([first, second])
        assert b.pipeline.stats.evaluations == 0 and not any(h.fetches for h in b.scheduler.health.values())

        await a.stop()  # a clean stop releases the lease: no wait for its expiry
        await _until(lambda: b.evaluations_owned > 0, "the standby evaluates east after the handover")
        owner_view = await _readyz(b)
        assert owner_view["fleet"]["owned"] == {"east": 2}, owner_view
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{b.port}/metrics") as r:
            assert 'hciwatch_fleet_domain_epoch{domain="east"} 2.0' in await r.text()
        await _until(lambda: any(h.fetches for h in b.scheduler.health.values()), "the new owner scrapes")
        assert "source_down" in _firing(b), "the incident continues at the new owner"
        await asyncio.sleep(3)  # several passes, with the dead target failing again at the new owner
        refired = [a for a in changes if a.kind.value == "source_down" and a.status.value == "firing"]
        assert refired == [], "the new owner carried the incident on instead of firing it again"
    finally:
        await b.stop()
        if a.ownership is not None and a.ownership.owns("east"):
            await a.stop()
        await runner.cleanup()


async def test_lease_backend_down_is_a_fault_that_clears(azurite_stoppable: StoppableAzurite, tmp_path: Path) -> None:
    store = azurite_stoppable
    url = store.url(store.new_bucket())
    runner, port = await _target()
    svc = Service(load_config(_config(tmp_path, "hw-a", store, url, port)))
    try:
        await svc.start()
        await _until(lambda: svc.evaluations_owned > 0, "the instance owns and evaluates east")
        await asyncio.to_thread(store.stop)
        await _until(lambda: not svc.ownership.fault.ok if svc.ownership else False, "the lease fault shows")
        down = await _readyz(svc)
        assert not down["ready"] and not down["faults"]["fleet_lease"]["ok"], down
        await asyncio.to_thread(store.start)
        await _until(lambda: svc.ownership.fault.ok if svc.ownership else False, "the lease fault clears")
        up = await _readyz(svc)
        # still the owner: the same lease renewed, or (when the outage outlasted it) taken again, epoch + 1
        assert up["faults"]["fleet_lease"]["ok"] and list(up["fleet"]["owned"]) == ["east"], up
        before = svc.evaluations_owned
        await _until(lambda: svc.evaluations_owned > before, "evaluation goes on")
    finally:
        await svc.stop()
        await runner.cleanup()
