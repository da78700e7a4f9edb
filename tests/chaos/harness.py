"""The chaos harness: ``hciwatch run`` as a child process, loopback peers it talks to, fault injectors,
and the bookkeeping that turns what happened into one table row.

Every scenario runs the real service against a target whose every scrape carries its own number
(``chaos_scrape_seq N``) and a flapping target that makes ``source_down`` fire and resolve (alert
changes to follow), with a webhook sink served here. A scenario ends the same way: ``kill -9``,
then *accepted* is read from disk (what the write-ahead log and Parquet hold: acknowledgement waits
for the log, so nothing outside it was ever acknowledged; alert changes: what the outbox holds),
the service is started again (recovery time = start until ``/readyz`` is 200 with the log
replayed), stopped with SIGTERM, and *stored* / *delivered* are read back.

lost = accepted but not stored; duplicates = stored more than once; for alert changes, lost counts
outbox changes missing from the alerts table or from the webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
from aiohttp import web

from collector.wal import WriteAheadLog

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Row:
    """One line of the chaos table."""

    fault: str
    accepted: int = 0
    stored: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    recovery_s: float = 0.0
    alerts_accepted: int = 0
    alerts_lost: int = 0
    note: str = ""

    HEADER = (
        f"{'fault':<34} {'accepted':>8} {'stored':>8} {'delivered':>9} {'lost':>5} {'dups':>5} "
        f"{'recovery_s':>10} {'alerts acc/lost':>15}  note"
    )

    def line(self) -> str:
        return (
            f"{self.fault:<34} {self.accepted:>8} {self.stored:>8} {self.delivered:>9} {self.lost:>5} "
            f"{self.duplicates:>5} {self.recovery_s:>10.2f} {f'{self.alerts_accepted}/{self.alerts_lost}':>15}  "
            f"{self.note}"
        )


def print_table(rows: list[Row]) -> str:
    text = "\n".join([Row.HEADER, *(r.line() for r in rows)])
    print(text, flush=True)
    return text


@dataclass
class Peers:
    """The counter target, the flapping target and the webhook receiver, all on loopback."""

    served: int = 0
    flap_down: bool = False
    big_series: int = 0  # when > 0, /big serves this many series
    served_big: int = 0
    sink_down: bool = False
    received: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    port: int = 0
    _runner: web.AppRunner | None = None
    _flapper: asyncio.Task[None] | None = None
    _big_body: list[bytes] = field(default_factory=list)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/flap", self._flap)
        app.router.add_get("/big", self._big)
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self._flapper = asyncio.create_task(self._flap_loop())

    async def _flap_loop(self) -> None:
        while True:
            await asyncio.sleep(1.5)
            self.flap_down = not self.flap_down

    async def stop(self) -> None:
        if self._flapper is not None:
            self._flapper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flapper
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        self.served += 1
        return web.Response(text=f"chaos_scrape_seq {self.served}\n", content_type="text/plain")

    async def _flap(self, _: web.Request) -> web.Response:
        if self.flap_down:
            return web.Response(status=503, text="down")
        return web.Response(text="chaos_flap 1\n", content_type="text/plain")

    async def _big(self, _: web.Request) -> web.Response:
        self.served_big += 1
        if len(self._big_body) != self.big_series:  # built once per size: the peer must not be the bottleneck
            self._big_body = [f'chaos_big{{series="{i}"}} {i}\n'.encode() for i in range(self.big_series)]
        return web.Response(body=b"".join(self._big_body), content_type="text/plain")

    async def _hook(self, request: web.Request) -> web.Response:
        if self.sink_down:
            return web.Response(status=503, text="sink outage")
        doc = await request.json()
        docs = doc if isinstance(doc, list) else [doc]
        for d in docs:
            data = d.get("data", d)
            ctx = data.get("alertContext", {})
            self.received[
                (data["essentials"]["originAlertId"], ctx.get("status", ""), ctx.get("changedDateTime", ""))
            ] += 1
        return web.Response(status=200)


def write_config(
    work: Path,
    peers: Peers,
    *,
    data_dir: Path | None = None,
    big: bool = False,
    big_interval: float = 1.0,
    big_url: str = "",
    extra: str = "",
    sources: str = "",
) -> Path:
    api_port = free_port()
    data = data_dir or (work / "data")
    big_src = (
        f"""
[[sources]]
type = "prometheus"
name = "big"
targets = ["{big_url or f"http://127.0.0.1:{peers.port}/big"}"]
interval = {big_interval}
timeout = 10.0
"""
        if big
        else ""
    )
    cfg = work / "hciwatch.toml"
    cfg.write_text(f"""
data_dir = "{data}"
[store]
flush_interval = 0.5
[[sources]]
type = "prometheus"
name = "counter"
targets = ["http://127.0.0.1:{peers.port}/metrics"]
interval = 0.05
timeout = 2.0
[[sources]]
type = "prometheus"
name = "flappy"
targets = [{", ".join(f'"http://127.0.0.1:{peers.port}/flap?t={i}"' for i in range(6))}]
interval = 0.2
timeout = 1.0
down_after = 0.3
{big_src}
{sources}
[analytics]
evaluation_interval = "1s"
[analytics.lifecycle.source_down]
for = "0s"
hold = "0s"
[[exporters]]
type = "webhook"
name = "hook"
url = "http://127.0.0.1:{peers.port}/hook"
max_wait = 0.0
[api]
listen = "127.0.0.1:{api_port}"
allow_unauthenticated = true
header_timeout = 1.0
max_connections = 256
{extra}
""")
    return cfg


def api_port(cfg: Path) -> int:
    for line in cfg.read_text().splitlines():
        if line.startswith("listen"):
            return int(line.split(":")[-1].strip().strip('"'))
    raise ValueError("no listen line")


class Child:
    """``hciwatch run`` in its own process (so that it can be killed for real)."""

    def __init__(self, cfg: Path, log_path: Path, prefix: list[str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.cfg = cfg
        self.verbose = ["-v"]  # INFO: the stop phases and their times land in the log
        self.port = api_port(cfg)
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "hciwatch.cli", *self.verbose, "run", "--config", str(cfg)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )

    async def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until /readyz answers 200 (bounded by ``timeout``)."""
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as http:
            while time.monotonic() - t0 < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"hciwatch exited with {self.proc.returncode}")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.get(
                        f"http://127.0.0.1:{self.port}/readyz", timeout=aiohttp.ClientTimeout(total=2)
                    ) as r:
                        if r.status == 200:
                            return time.monotonic() - t0
                await asyncio.sleep(0.1)
        raise TimeoutError(f"/readyz not 200 within {timeout:g}s")

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.port}/readyz", timeout=aiohttp.ClientTimeout(total=5)) as r,
        ):
            return r.status, await r.json()

    def _dump_stacks(self) -> None:
        """Before killing a hung child, put its Python stacks (py-spy, when installed) into its log:
        a hang that happens one run in several must leave evidence behind."""
        found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if found is None:
            return
        spy = Path(found)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [str(spy), "dump", "--locals", "--pid", str(self.proc.pid)], capture_output=True, timeout=30
            )
            self.log.write(b"\n--- py-spy dump of the hung child ---\n" + out.stdout + out.stderr)
            self.log.flush()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    async def term(self, timeout: float = 90.0) -> float:
        """SIGTERM; seconds until the process exited."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None and time.monotonic() - t0 < timeout:
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            self._dump_stacks()
            self.kill9()
            raise TimeoutError(f"no exit within {timeout:g}s of SIGTERM")
        self.log.close()
        return time.monotonic() - t0


# -- bookkeeping ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counted:
    """What a row counts: a metric whose value numbers each accepted record, and how to read
    those numbers out of a raw record body still in the write-ahead log."""

    metric: str = "chaos_scrape_seq"
    line_prefix: str = "chaos_scrape_seq "  # exposition line: "<metric> <value>"

    def from_body(self, body: bytes) -> list[int]:
        out = []
        for line in body.decode("utf-8", "replace").splitlines():
            if line.startswith(self.line_prefix):
                out.append(int(float(line[len(self.line_prefix) :].split()[0].rstrip("i"))))
        return out


SCRAPES = Counted()
MQTT_SEQ = Counted("chaos_mqtt.seq", "chaos_mqtt,host=chaos seq=")  # influx line protocol as Telegraf sends it


def _values_in_parquet(data: Path, counted: Counted) -> list[int]:
    glob = str(data / "samples" / "**" / "*.parquet")  # site=*/date=*/ (and the layout before sites)
    con = duckdb.connect()
    rows = con.execute(f"SELECT value FROM read_parquet('{glob}') WHERE metric = ?", [counted.metric]).fetchall()
    return [int(v) for (v,) in rows]


def accepted_scrapes(data: Path, counted: Counted = SCRAPES) -> set[int]:
    """What was acknowledged: the records in the write-ahead log and in Parquet (the process is dead)."""
    values = set(_values_in_parquet(data, counted))
    wal_dir = data / "wal"
    if wal_dir.exists():
        for _, rec in WriteAheadLog(wal_dir).replay():
            values.update(counted.from_body(rec.body))
    return values


def stored_scrapes(data: Path, counted: Counted = SCRAPES) -> list[int]:
    return _values_in_parquet(data, counted)


def outbox_changes(data: Path) -> set[tuple[str, str, str]]:
    """Alert changes the outbox accepted (fsynced) — every one must reach the table and the sink."""
    out: set[tuple[str, str, str]] = set()
    for seg in sorted((data / "outbox").glob("segment-*.jsonl")):
        for raw in seg.read_bytes().splitlines():
            with contextlib.suppress(ValueError, KeyError):
                a = json.loads(raw)["alert"]
                out.add((a["fingerprint"], a["status"], a["ts"]))
    return out


def alert_rows(data: Path) -> list[tuple[str, str, str]]:
    glob = str(data / "alerts" / "**" / "*.parquet")
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT fingerprint, CAST(status AS VARCHAR), strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%g') "
        f"FROM read_parquet('{glob}')"
    ).fetchall()
    return [(f, s, t) for f, s, t in rows]


def _norm_ts(ts: str) -> str:
    """ISO text from JSON (``...Z``, ms) and DuckDB (ms) compared on the same footing."""
    return ts.replace("Z", "").replace("+00:00", "")[:23]


def settle(
    row: Row,
    data: Path,
    accepted: set[int],
    alerts_accepted: set[tuple[str, str, str]],
    peers: Peers,
    counted: Counted = SCRAPES,
    second_sink: Callable[[], set[tuple[str, str, str]]] | None = None,
) -> Row:
    """Counts for one row; with ``second_sink`` an alert change missing there is lost too."""
    stored = stored_scrapes(data, counted)
    row.accepted = len(accepted)
    row.stored = len(accepted & set(stored))  # scrapes after the restart are not counted
    row.lost = len(accepted - set(stored))
    row.duplicates = len(stored) - len(set(stored))
    table = {(f, s, _norm_ts(t)) for f, s, t in alert_rows(data)}
    acc = {(f, s, _norm_ts(t)) for f, s, t in alerts_accepted}
    hooked = {(f, s, _norm_ts(t)) for f, s, t in peers.received}
    row.alerts_accepted = len(acc)
    row.alerts_lost = len(acc - table) + len(acc - hooked)
    row.delivered = len(acc & hooked)
    if second_sink is not None:
        other = {(f, s, _norm_ts(t)) for f, s, t in second_sink()}
        row.alerts_lost += len(acc - other)
        row.note = f"second sink got {len(acc & other)}/{len(acc)}"
    return row
