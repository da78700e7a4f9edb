"""The chaos scenarios: each injects one fault into a running ``hciwatch run`` and returns a table row.

``python -m tests.chaos.run`` (``make chaos``) runs the full profile and prints the table; the test
suite runs a short profile of the same scenarios (``tests/chaos/test_chaos.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from tests.chaos.harness import (
    MQTT_SEQ,
    SCRAPES,
    Child,
    Counted,
    Peers,
    Row,
    accepted_scrapes,
    outbox_changes,
    settle,
    write_config,
)
from tests.fixtures.mosquitto import MOSQUITTO, MosquittoBroker, make_certs
from tests.fixtures.mounts import mount_tmpfs, umount
from tests.fixtures.otlp_receiver import OtlpReceiver

During = Callable[[Child], Awaitable[str]]


@dataclass
class Profile:
    """How hard to push: the suite's short profile and ``make chaos``'s full one."""

    kill_rounds: int = 3
    fault_s: float = 3.0
    idle_clients: int = 200
    big_series: int = 20_000


QUICK = Profile(kill_rounds=2, fault_s=2.0, idle_clients=50, big_series=5_000)
FULL = Profile(kill_rounds=12, fault_s=6.0, idle_clients=3000, big_series=1_000_000)


async def run_scenario(
    name: str,
    work: Path,
    peers: Peers,
    during: During,
    *,
    rounds: int = 1,
    data_dir: Path | None = None,
    big: bool = False,
    prefix: list[str] | None = None,
    after_kill: Callable[[], None] | None = None,
    term_under_load: bool = False,
    counted: Counted = SCRAPES,
    sources: str = "",
    second_sink: Callable[[], set[tuple[str, str, str]]] | None = None,
) -> Row:
    """Start, inject, ``kill -9`` (``rounds`` times); read what was accepted; restart; stop; settle.

    With ``term_under_load`` the last round ends with SIGTERM instead (the issue's "SIGTERM drains
    and exits within 10 s under that load"); the exit time is in the note.
    """
    work.mkdir(parents=True, exist_ok=True)
    peers.received.clear()
    cfg = write_config(work, peers, data_dir=data_dir, big=big, sources=sources)
    data = data_dir or work / "data"
    notes: list[str] = []
    log = work / "hciwatch.log"
    start_s = 0.0
    for i in range(rounds):
        child = Child(cfg, log, prefix)
        term = term_under_load and i == rounds - 1
        try:
            start_s = max(start_s, await child.wait_ready())
            note = await during(child)
            if term:
                note = f"{note}; SIGTERM under load exit {await child.term():.1f}s".lstrip("; ")
        finally:
            if child.proc.poll() is None:
                child.kill9()
        if after_kill is not None:
            after_kill()
        if note:
            notes.append(note)
    accepted = accepted_scrapes(data, counted)
    alerts_accepted = outbox_changes(data)
    child = Child(cfg, log)
    try:
        recovery = await child.wait_ready()
        for _ in range(100):  # bounded (~10 s): resent alert changes reach the webhook (and the second sink)
            want = {(f, s) for f, s, _ in alerts_accepted}
            if want <= {(f, s) for f, s, _ in peers.received} and (
                second_sink is None or want <= {(f, s) for f, s, _ in second_sink()}
            ):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the alerts table writer runs after the outbox append
    finally:
        stop_s = await child.term()
    row = settle(Row(name), data, accepted, alerts_accepted, peers, counted, second_sink)
    row.recovery_s = recovery
    notes.append(f"cold start {start_s:.1f}s; SIGTERM exit {stop_s:.1f}s")
    lines = log.read_text(errors="replace").count("\n") if log.exists() else 0
    notes.append(f"{lines} log lines")
    row.note = "; ".join([*notes, row.note] if row.note else notes)
    return row


async def kill9_during_ingest_and_export(work: Path, peers: Peers, profile: Profile) -> Row:
    rng = random.Random(7)

    async def during(_: Child) -> str:
        await asyncio.sleep(rng.uniform(2.0, 4.0))  # scrapes, flushes and alert changes in flight
        return ""

    return await run_scenario(
        f"kill -9 x{profile.kill_rounds} (ingest+export)", work, peers, during, rounds=profile.kill_rounds
    )


async def _recover_time(child: Child, timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, ValueError):
            status, _ = await child.readyz()
            if status == 200:
                return time.monotonic() - t0
        await asyncio.sleep(0.1)
    return float("inf")


async def full_disk(work: Path, peers: Peers, profile: Profile) -> Row | str:
    mnt = work / "tmpfs"
    why = mount_tmpfs(mnt, "24m")
    if why:
        return f"full disk skipped: cannot mount a small tmpfs ({why})"
    try:

        async def during(child: Child) -> str:
            await asyncio.sleep(1.0)
            filler = mnt / "filler"
            with open(filler, "wb") as fh, contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * (1 << 16))
                    fh.flush()
            await asyncio.sleep(profile.fault_s)
            status, body = await child.readyz()
            faults = ",".join(f"{k}:{v.get('error')}" for k, v in body.get("faults", {}).items() if not v.get("ok"))
            filler.unlink()
            rec = await _recover_time(child)
            await asyncio.sleep(1.0)
            return f"readyz {status} ({faults or 'no fault'}) while full; self-recovered in {rec:.1f}s"

        return await run_scenario("full disk (24 MiB tmpfs)", work, peers, during, data_dir=mnt / "data")
    finally:
        umount(mnt)


def _nofile(pid: int) -> tuple[str, str]:
    with open(f"/proc/{pid}/limits") as fh:
        for line in fh:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    raise RuntimeError("no open-files limit in /proc")


async def descriptor_exhaustion(work: Path, peers: Peers, profile: Profile) -> Row | str:
    if shutil.which("prlimit") is None:
        return "descriptor exhaustion skipped: prlimit(1) not installed"

    async def during(child: Child) -> str:
        await asyncio.sleep(1.0)
        pid = child.proc.pid
        used = len(os.listdir(f"/proc/{pid}/fd"))
        soft, hard = _nofile(pid)  # only the soft limit moves: raising a hard limit needs CAP_SYS_RESOURCE
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={used + 1}:{hard}"], check=True)
        await asyncio.sleep(profile.fault_s)
        subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:{hard}"], check=True)
        rec = await _recover_time(child)
        await asyncio.sleep(1.0)
        return f"nofile={used + 1} for {profile.fault_s:g}s; self-recovered in {rec:.1f}s"

    return await run_scenario("descriptor exhaustion (prlimit)", work, peers, during)


async def sink_outage(work: Path, peers: Peers, profile: Profile) -> Row:
    async def during(_: Child) -> str:
        peers.sink_down = True
        await asyncio.sleep(profile.fault_s + 3.0)  # alert changes pile up in the outbox; kill -9 in the outage
        return ""

    def end_outage() -> None:
        peers.sink_down = False

    try:
        return await run_scenario("webhook outage + kill -9", work, peers, during, after_kill=end_outage)
    finally:
        peers.sink_down = False


async def idle_clients(work: Path, peers: Peers, profile: Profile) -> Row:
    async def during(child: Child) -> str:
        socks: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        refused = 0
        for i in range(profile.idle_clients):
            try:
                r, w = await asyncio.open_connection("127.0.0.1", child.port)
            except OSError:
                refused += 1
                continue
            if i % 2:
                w.write(b"GET /api/v1/alerts HTTP/1.1\r\nHost: x\r\nX-Partial: ")  # a header never finished
            socks.append((r, w))
        answer = await _recover_time(child)  # over the cap it must wait for the header deadline
        await asyncio.sleep(profile.fault_s)
        closed = 0
        for r, _ in socks:  # over the cap: closed (reset) at once; the rest at the header deadline (1 s here)
            try:
                if await asyncio.wait_for(r.read(), timeout=5) == b"":
                    closed += 1
            except (ConnectionError, OSError):
                closed += 1
            except TimeoutError:
                pass
        for _, w in socks:
            w.close()
        return (
            f"{len(socks)} idle/partial conns ({refused} refused): /readyz 200 after {answer * 1000:.0f} ms, "
            f"{closed} closed by the server (cap or header deadline)"
        )

    return await run_scenario(f"{profile.idle_clients} idle/slow clients", work, peers, during)


async def big_series_target(work: Path, peers: Peers, profile: Profile) -> Row:
    peers.big_series = profile.big_series

    async def during(child: Child) -> str:
        rss = []
        for _ in range(int(profile.fault_s * 2) + 4):
            await asyncio.sleep(0.5)
            with open(f"/proc/{child.proc.pid}/status") as fh:
                rss += [int(line.split()[1]) // 1024 for line in fh if line.startswith("VmRSS")]
        return f"{profile.big_series} series/s target: max RSS {max(rss)} MiB"

    try:
        return await run_scenario(
            f"{profile.big_series}-series target", work, peers, during, big=True, term_under_load=True
        )
    finally:
        peers.big_series = 0


async def _publish(broker: MosquittoBroker, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """Telegraf's part: QoS 1 messages numbered 1, 2, ... every 20 ms, reconnecting while the broker
    is down. A number is used once (a publish that failed is not repeated), so a stored
    duplicate can only come from a redelivery."""
    import aiomqtt  # the MQTT source's own client library

    seq = 0
    while not stop.is_set():
        try:
            async with aiomqtt.Client(
                broker.host, broker.port, username=broker.username, password=broker.password, timeout=2
            ) as client:
                while not stop.is_set():
                    seq += 1
                    line = f"{MQTT_SEQ.line_prefix}{seq}i {time.time_ns()}\n"
                    await client.publish("telegraf/chaos/chaos_mqtt", line.encode(), qos=1)
                    counts["acked"] += 1  # PUBACK from the broker
                    await asyncio.sleep(0.02)
        except (aiomqtt.MqttError, OSError):
            counts["publish_failures"] += 1
            await asyncio.sleep(0.2)


async def mqtt_broker_restart(work: Path, peers: Peers, profile: Profile) -> Row | str:
    """A real Mosquitto (persistent session, QoS 1) killed (SIGKILL) and started again while
    Telegraf-style messages flow; hciwatch reconnects by itself and nothing it accepted is lost."""
    if not Path(MOSQUITTO).exists() or shutil.which("openssl") is None:
        return "MQTT broker restart skipped: mosquitto and openssl are needed (make debian-deps)"
    work.mkdir(parents=True, exist_ok=True)
    (work / "broker").mkdir(exist_ok=True)
    certs = await asyncio.to_thread(make_certs, work / "certs")
    broker = MosquittoBroker(work / "broker", certs)
    await asyncio.to_thread(broker.start)
    sources = f"""
[[sources]]
type = "mqtt"
name = "broker"
server = "{broker.url}"
topics = ["telegraf/#"]
client_id = "hciwatch-chaos"
clean_session = false
username = "{broker.username}"
password_file = "{broker.password_file}"
backoff_initial = 0.2
backoff_max = 1.0
timeout = 2.0
"""
    counts = {"acked": 0, "publish_failures": 0}

    async def during(_: Child) -> str:
        stop = asyncio.Event()
        pub = asyncio.create_task(_publish(broker, stop, counts))
        try:
            await asyncio.sleep(2.0)
            await asyncio.to_thread(broker.kill)
            t0 = time.monotonic()
            await asyncio.sleep(profile.fault_s)
            await asyncio.to_thread(broker.start)
            down = time.monotonic() - t0
            await asyncio.sleep(3.0)  # the source reconnects (backoff <= 1 s) and the queue drains
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(pub, return_exceptions=True), 10)
        return f"broker SIGKILLed, down {down:.1f}s; {counts['acked']} publishes acked by the broker"

    try:
        return await run_scenario(
            "MQTT broker kill -9 + restart", work, peers, during, counted=MQTT_SEQ, sources=sources
        )
    finally:
        await asyncio.to_thread(broker.stop)


def _otlp_alert_changes(receiver: OtlpReceiver) -> set[tuple[str, str, str]]:
    """(fingerprint, status, change time) of every alert change the OTLP receiver got as a log record."""
    out = set()
    for rec in receiver.logs:
        a = rec.attributes
        if "hciwatch.alert.fingerprint" in a:
            ts = datetime.fromtimestamp(rec.time_unix_nano / 1e9, UTC).isoformat()
            out.add((str(a["hciwatch.alert.fingerprint"]), str(a["hciwatch.alert.status"]), ts))
    return out


async def otlp_outage(work: Path, peers: Peers, profile: Profile) -> Row:
    """The second sink type out: a real OTLP receiver (gRPC) answering UNAVAILABLE, with a
    ``kill -9`` in the outage; every alert change the outbox accepted must reach it afterwards."""
    receiver = OtlpReceiver()
    receiver.start()
    sink = f"""
[[exporters]]
type = "otlp"
name = "otel"
endpoint = "{receiver.grpc_endpoint}"
metrics = false
max_wait = 0.0
"""

    async def during(_: Child) -> str:
        receiver.set_unavailable(True)
        await asyncio.sleep(profile.fault_s + 3.0)  # changes pile up in the outbox; kill -9 in the outage
        return f"{receiver.refused} OTLP exports refused in the outage"

    try:
        return await run_scenario(
            "OTLP receiver outage + kill -9",
            work,
            peers,
            during,
            sources=sink,
            after_kill=lambda: receiver.set_unavailable(False),
            second_sink=lambda: _otlp_alert_changes(receiver),
        )
    finally:
        await asyncio.to_thread(receiver.close)


SCENARIOS = [
    kill9_during_ingest_and_export,
    full_disk,
    descriptor_exhaustion,
    sink_outage,
    idle_clients,
    big_series_target,
    mqtt_broker_restart,
    otlp_outage,
]


async def run_all(work: Path, profile: Profile, only: list[str] | None = None) -> tuple[list[Row], list[str]]:
    peers = Peers()
    await peers.start()
    rows: list[Row] = []
    skipped: list[str] = []
    try:
        for scen in SCENARIOS:
            if only and scen.__name__ not in only:
                continue
            out = await scen(work / scen.__name__, peers, profile)
            if isinstance(out, Row):
                rows.append(out)
            else:
                skipped.append(out)
    finally:
        await peers.stop()
    return rows, skipped


__all__ = ["FULL", "QUICK", "SCENARIOS", "Profile", "errno", "run_all"]
