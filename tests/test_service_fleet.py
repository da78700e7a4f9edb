"""``hciwatch run`` with ``[fleet]``: two services for one site over one Azurite lake.

Only the lease holder collects and evaluates the site's domain; the other stands by (no scrape, no
detector pass, "standby" on ``/readyz``). When the owner stops, the standby takes the domain over,
loads the lifecycle state the owner saved into the lease blob and continues its incidents without
firing them again. The lease backend going down is a fault state on ``/readyz`` that clears when it
comes back, and an owner that cannot renew stops evaluating before its lease could be taken.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

import lab
from collector.domains import owner
from collector.schema import Alert
from hciwatch.config import load_config
from hciwatch.service import Service
from tests.fixtures.fleet_config import fleet_instance_config
from tests.fixtures.loopback import free_port, serve
from tests.fixtures.mosquitto import MosquittoBroker
from tests.fixtures.object_stores import ObjectStore, StoppableAzurite


async def _target() -> tuple[web.AppRunner, int]:
    scen = lab.Scenario(duration=timedelta(minutes=2), interval=timedelta(seconds=60))
    body = next(r.body for r in lab.generate(scen) if r.kind == "prometheus")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/plain")

    return await serve({"/metrics": metrics})


DEAD = free_port()  # nothing listens here: the same dead target (same fingerprint) at every instance


def _config(
    tmp: Path, name: str, store: ObjectStore, url: str, port: int, *, dead: int = DEAD, extra: str = ""
) -> Path:
    live = f'[[sources]]\ntype = "windows"\ntargets = ["127.0.0.1:{port}"]\ninterval = 0.5'
    return fleet_instance_config(tmp, name, store, url, dead=dead, hold="1m", sources=live, extra=extra)


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


async def test_a_takeover_that_fails_gives_the_lease_up_and_no_pass_runs_before_it_completes(
    azurite: ObjectStore, tmp_path: Path
) -> None:
    """Holding the lease is not enough to evaluate: no pass runs until the last owner's state is
    loaded and the detectors are rebuilt; a takeover whose state read fails is a fault, the lease
    is given up and the next round takes the domain again as a gain."""
    url = azurite.url(azurite.new_bucket())
    runner, port = await _target()
    svc = Service(load_config(_config(tmp_path, "hw-a", azurite, url, port)))
    assert svc.ownership is not None
    own = svc.ownership
    real_load = own.load_state
    attempts: list[bool] = []
    gate = threading.Event()

    def load_state(domain: str) -> bytes | None:
        attempts.append(own.owns(domain))
        if len(attempts) == 1:
            raise OSError("lease blob unreachable")
        gate.wait(30)  # the second takeover waits here: the lease is held, the state not loaded yet
        return real_load(domain)

    own.load_state = load_state  # type: ignore[method-assign]
    try:
        await svc.start()
        await _until(lambda: len(attempts) >= 2, "the failed takeover is retried as a gain")
        assert attempts == [True, True]
        assert own.owns("east") and not await svc.evaluate_once(datetime.now(UTC)), "no pass before the state"
        assert svc.evaluations_owned == 0
        gate.set()
        await _until(lambda: svc.evaluations_owned > 0, "evaluation starts once the takeover completes")
        assert own.fault.ok
    finally:
        gate.set()
        await svc.stop()
        await runner.cleanup()


async def test_the_next_owner_resumes_the_domains_mqtt_session(
    azurite: ObjectStore, mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """Per-site topics, one persistent session per domain: what Telegraf published while the domain
    changed hands is ingested by the next owner; another site's topic by neither."""
    import aiomqtt

    broker = mosquitto_broker
    url = azurite.url(azurite.new_bucket())
    first, second = ("hw-a", "hw-b") if owner("east", ["hw-a", "hw-b"]) == "hw-a" else ("hw-b", "hw-a")
    runner, port = await _target()
    mqtt = f"""
[[sources]]
type = "mqtt"
name = "telegraf"
server = "{broker.url}"
username = "{broker.username}"
password_file = "{broker.password_file}"
topics = ["telegraf/{{site}}/#"]
client_id = "hciwatch-{{domain}}"
topic_template = "telegraf/{{site}}/{{host}}/{{measurement}}"
"""
    a = Service(load_config(_config(tmp_path, first, azurite, url, port, extra=mqtt)))
    b = Service(load_config(_config(tmp_path, second, azurite, url, port, extra=mqtt)))

    def mqtt_records(svc: Service) -> int:
        return svc.pipeline.stats.records_by_kind.get("mqtt", 0)

    async def publish(topic: str, seq: int) -> None:
        async with aiomqtt.Client(
            broker.host, broker.port, username=broker.username, password=broker.password, clean_session=True
        ) as pub:
            await pub.publish(topic, f"net,host=hci-node-01 seq={seq}i 1717000000000000000", qos=1)

    try:
        await a.start()
        await b.start()
        await _until(lambda: a.evaluations_owned > 0, "the first instance owns east")
        await _until(lambda: any(getattr(s, "subscribed", False) for s in a.sources), "its MQTT session is up")
        await publish("telegraf/east/hci-node-01/net", 0)
        await publish("telegraf/west/hci-node-01/net", 100)
        await _until(lambda: mqtt_records(a) >= 1, "the owner ingests the east message")
        # acknowledged to the broker once the write-ahead log has it (a record is parsed a moment
        # earlier): stopping before that would make the broker send it again to the next owner,
        # the documented at-least-once duplicate
        await _until(lambda: sum(s.stats.emitted for s in a.sources if s.name == "telegraf") == 1, "acked")
        await a.stop()  # hands over; until the next owner connects, the broker queues for the session
        for i in range(1, 4):
            await publish("telegraf/east/hci-node-01/net", i)
        await _until(lambda: mqtt_records(b) >= 3, "the next owner ingests what was queued")
        await asyncio.sleep(1.0)
        assert (mqtt_records(a), mqtt_records(b)) == (1, 3), "nothing lost, nothing twice, no west message"
        assert b.pipeline.stats.records_by_kind.get("mqtt", 0) == 3
    finally:
        await b.stop()
        if a.ownership is not None and a.ownership.owns("east"):
            await a.stop()
        await runner.cleanup()
