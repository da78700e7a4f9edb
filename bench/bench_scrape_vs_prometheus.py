"""Benchmark: scrape → parse → store, hciwatch against Prometheus itself, on the same endpoint.

An aiohttp server on 127.0.0.1 (in this process, not measured) serves the ~176k-sample, ~20 MB
windows_exporter-like payload of ``bench_prom_parse.py``. Two scrapers hit it every second:

* Debian's ``prometheus`` (``/usr/bin/prometheus``; ``apt-get install -y prometheus`` if missing),
  TSDB in a temporary directory, ``scrape_interval: 1s``, web UI on a free 127.0.0.1 port;
* hciwatch's own path in a separate Python process: ``PrometheusScraper.fetch`` →
  ``parse_record`` → ``Store.append("samples", ...)``, flushing Parquet every 10 s.

After both have warmed up, a window of ``--seconds`` (default 60) is measured: CPU seconds of each
process from ``/proc/<pid>/stat`` (utime + stime), peak RSS from ``/proc/<pid>/status`` (VmHWM),
and samples stored (Prometheus: ``prometheus_tsdb_head_samples_appended_total`` read from its own
``/metrics`` — it does not scrape itself here, so the count is not polluted — cross-checked with
``sum_over_time(scrape_samples_scraped{job="bench"}[window])`` from ``/api/v1/query``;
hciwatch: rows handed to the store). It prints CPU seconds per million samples and the ratios.

    .venv/bin/python bench/bench_scrape_vs_prometheus.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMETHEUS = "/usr/bin/prometheus"
APPENDED = "prometheus_tsdb_head_samples_appended_total"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------------------------
# the hciwatch worker (runs in its own process)
# ---------------------------------------------------------------------------------------------


async def _worker(url: str, data_dir: Path, seconds: float) -> None:
    from collector.catalog import DEFAULT_CATALOG
    from collector.sources.prometheus.parse import parse_record
    from collector.sources.prometheus.source import PrometheusScraper, PrometheusSettings
    from collector.store import Store

    parts = urllib.parse.urlsplit(url)
    settings = PrometheusSettings(type="prometheus", targets=[parts.netloc], timeout=10.0, labels={"cluster": "bench"})
    scraper = PrometheusScraper(settings)
    store = Store(data_dir, batch_rows=50_000_000)
    target = scraper.targets()[0]

    async def once() -> int:
        (rec,) = await scraper.fetch(target)
        result = parse_record(rec, DEFAULT_CATALOG)
        store.append("samples", result.samples)
        return int(result.samples.num_rows)

    await once()  # warm-up: imports, connection, first parse
    store.flush()
    print("ready", flush=True)
    sys.stdin.readline()  # the parent has read our baseline CPU
    start = time.monotonic()
    next_tick = start
    next_flush = start + 10.0
    samples = scrapes = missed = 0
    while time.monotonic() - start < seconds:
        samples += await once()
        scrapes += 1
        now = time.monotonic()
        if now >= next_flush:
            store.flush()
            next_flush += 10.0
        next_tick += 1.0
        while next_tick < now:  # an overrun skips ticks, as Prometheus does
            next_tick += 1.0
            missed += 1
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    store.flush()
    await scraper.close()
    print(
        json.dumps(
            {
                "samples": samples,
                "scrapes": scrapes,
                "missed_ticks": missed,
                "files": store.stats.files_written,
                "bytes": store.stats.bytes_written,
            }
        ),
        flush=True,
    )
    sys.stdin.readline()  # stay alive until the parent has read our CPU and RSS


# ---------------------------------------------------------------------------------------------
# the parent: payload server, Prometheus, measurement
# ---------------------------------------------------------------------------------------------


def _prom_query(port: int, query: str) -> float:
    """One number from Prometheus' query API (0 when the result is empty)."""
    q = urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?{q}", timeout=5) as resp:
        data = json.load(resp)
    result = data["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def _prom_self_metric(port: int, name: str) -> float:
    """Sum of a metric on Prometheus' own /metrics (it does not scrape itself in this setup)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_for(pred: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if callable(pred) and pred():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def _ensure_prometheus() -> str:
    if os.path.exists(PROMETHEUS):
        return PROMETHEUS
    print("installing Debian prometheus (apt-get install -y prometheus) ...", flush=True)
    subprocess.run(
        ["apt-get", "install", "-y", "prometheus"],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return PROMETHEUS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="hciwatch scrape-to-store vs Prometheus")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    ap.add_argument("--samples", type=int, default=176_000, help="samples in the served payload")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        asyncio.run(_worker(args.worker, Path(args.data_dir), args.seconds))
        return 0

    if not (Path(__file__).resolve().parent.parent / "collector" / "store.py").exists():
        raise SystemExit("collector/store.py does not exist yet: this benchmark needs the Parquet store")
    prom_bin = _ensure_prometheus()
    from aiohttp import web

    from bench.bench_prom_parse import generate_payload

    body = generate_payload(args.samples)
    payload_port, prom_port = free_port(), free_port()

    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    app = web.Application()
    app.router.add_get("/metrics", handler)

    import threading

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", payload_port).start())
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    _wait_for(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{payload_port}/metrics", timeout=5).status == 200,
        30,
        "the payload server",
    )

    tmp = Path(tempfile.mkdtemp(prefix="hciwatch-bench-"))
    cfg = tmp / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: bench\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{payload_port}']\n"
    )
    prom = subprocess.Popen(
        [
            prom_bin,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--worker",
            f"http://127.0.0.1:{payload_port}/metrics",
            "--data-dir",
            str(tmp / "store"),
            "--seconds",
            str(args.seconds),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: _prom_self_metric(prom_port, APPENDED) > 0, 120, "Prometheus' first scrape")
        assert worker.stdout is not None and worker.stdin is not None
        if worker.stdout.readline().strip() != "ready":
            raise SystemExit("the hciwatch worker failed to start")
        time.sleep(3)  # let Prometheus settle too
        p0 = _prom_self_metric(prom_port, APPENDED)
        cpu_p0, cpu_w0 = cpu_seconds(prom.pid), cpu_seconds(worker.pid)
        t0 = time.monotonic()
        worker.stdin.write("go\n")
        worker.stdin.flush()
        result = json.loads(worker.stdout.readline())
        cpu_w1 = cpu_seconds(worker.pid)
        elapsed = time.monotonic() - t0
        cpu_p1 = cpu_seconds(prom.pid)
        p1 = _prom_self_metric(prom_port, APPENDED)
        window = max(1, round(elapsed))
        scraped_q = _prom_query(prom_port, f'sum_over_time(scrape_samples_scraped{{job="bench"}}[{window}s])')
        failed_q = _prom_query(
            prom_port, f'count_over_time(up{{job="bench"}}[{window}s]) - sum_over_time(up{{job="bench"}}[{window}s])'
        )
        rss_p, rss_w = peak_rss_mib(prom.pid), peak_rss_mib(worker.pid)
        worker.stdin.write("bye\n")
        worker.stdin.flush()
    finally:
        prom.terminate()
        worker.terminate()
        prom.wait(timeout=30)
        worker.wait(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        shutil.rmtree(tmp, ignore_errors=True)

    prom_samples = p1 - p0
    ours_samples = float(result["samples"])
    cpu_p, cpu_w = cpu_p1 - cpu_p0, cpu_w1 - cpu_w0
    per_m_p = cpu_p / (prom_samples / 1e6) if prom_samples else float("nan")
    per_m_w = cpu_w / (ours_samples / 1e6) if ours_samples else float("nan")
    per_scrape = sum(1 for ln in body.split(b"\n") if ln and not ln.startswith(b"#"))
    print(f"window {elapsed:.1f} s, payload {len(body) / 1e6:.1f} MB, {per_scrape} samples/scrape")
    print(f"{'':22s}{'samples':>12s}{'CPU s':>9s}{'CPU s/M':>9s}{'peak RSS MiB':>14s}")
    print(f"{'prometheus ' + '2.x':22s}{prom_samples:12,.0f}{cpu_p:9.1f}{per_m_p:9.2f}{rss_p:14.0f}")
    print(f"{'hciwatch':22s}{ours_samples:12,.0f}{cpu_w:9.1f}{per_m_w:9.2f}{rss_w:14.0f}")
    print(
        f"hciwatch scrapes: {result['scrapes']}, missed ticks: {result['missed_ticks']}, "
        f"parquet files: {result['files']} ({result['bytes'] / 1e6:.1f} MB)"
    )
    print(
        f"prometheus: /api/v1/query sum_over_time(scrape_samples_scraped) = {scraped_q:,.0f}, "
        f"failed scrapes = {failed_q:.0f}"
    )
    print(f"ratio CPU s/M (hciwatch / prometheus): {per_m_w / per_m_p:.2f}")
    print(f"ratio peak RSS (hciwatch / prometheus): {rss_w / rss_p:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
