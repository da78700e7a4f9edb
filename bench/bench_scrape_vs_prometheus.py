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
import itertools
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


async def _worker(url: str, data_dir: Path, seconds: float, wal: bool) -> None:
    """The service's ingest path for one target, minus the detectors' window.

    With ``wal`` (the default): ``DurableIngest.emit`` (write-ahead log append + group-commit
    fsync; the scrape counts as stored only then) → ``ingest`` → ``parse_one`` → ``Store.append``,
    flushed through the WAL checkpoint at the service's defaults (``batch_rows`` rows buffered or
    every ``flush_interval`` seconds). Without: parse and store only (the issue's first figure).
    """
    from collector.catalog import DEFAULT_CATALOG
    from collector.config import StoreSettings
    from collector.schema import RawRecord
    from collector.sources.prometheus.source import PrometheusScraper, PrometheusSettings
    from collector.store import Store
    from hciwatch.ingest import DurableIngest
    from hciwatch.parse_pool import parse_one

    parts = urllib.parse.urlsplit(url)
    settings = PrometheusSettings(type="prometheus", targets=[parts.netloc], timeout=10.0, labels={"cluster": "bench"})
    scraper = PrometheusScraper(settings)
    st = StoreSettings()
    store = Store(data_dir, batch_rows=st.batch_rows, auto_flush=False)
    ing = DurableIngest.from_settings(data_dir, store, st)
    commit = ing.commit.start()
    target = scraper.targets()[0]
    samples = 0

    def apply(rec: RawRecord) -> None:
        nonlocal samples
        out = parse_one(rec, DEFAULT_CATALOG)
        store.append("samples", out.samples)
        samples += out.samples.num_rows

    async def once() -> None:
        (rec,) = await scraper.fetch(target)
        if wal:
            await ing.emit(rec)  # logged and fsynced: acknowledged
            batch = [ing.queue.get_nowait()]
            ing.ingest(batch, apply)
            if store.buffered_rows() >= st.batch_rows:
                ing.flush()
        else:
            apply(rec)
            if store.buffered_rows() >= st.batch_rows:
                store.flush()

    def flush() -> None:
        ing.flush() if wal else store.flush()

    await once()  # warm-up: imports, connection, first parse
    flush()
    print("ready", flush=True)
    sys.stdin.readline()  # the parent has read our baseline CPU
    samples = 0
    start = time.monotonic()
    next_tick = start
    next_flush = start + st.flush_interval
    scrapes = missed = 0
    while time.monotonic() - start < seconds:
        await once()
        scrapes += 1
        now = time.monotonic()
        if now >= next_flush:
            flush()
            next_flush += st.flush_interval
        next_tick += 1.0
        while next_tick < now:  # an overrun skips ticks, as Prometheus does
            next_tick += 1.0
            missed += 1
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    flush()
    await scraper.close()
    commit.cancel()
    print(
        json.dumps(
            {
                "samples": samples,
                "scrapes": scrapes,
                "missed_ticks": missed,
                "files": store.stats.files_written,
                "bytes": store.stats.bytes_written,
                "wal_fsyncs": ing.wal.stats.fsyncs,
                "wal_bytes": ing.wal.stats.appended_bytes,
            }
        ),
        flush=True,
    )
    sys.stdin.readline()  # stay alive until the parent has read our CPU and RSS
    ing.close()


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
    ap.add_argument("--no-wal", action="store_true", help="hciwatch without the write-ahead log (parse + store only)")
    ap.add_argument("--code", type=Path, help="import hciwatch from this checkout (a before/after run)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        if args.code:  # only the worker imports the other checkout; the bench itself stays this one
            sys.path.insert(0, str(args.code.resolve()))
        asyncio.run(_worker(args.worker, Path(args.data_dir), args.seconds, not args.no_wal))
        return 0

    if not (Path(__file__).resolve().parent.parent / "collector" / "store.py").exists():
        raise SystemExit("collector/store.py does not exist yet: this benchmark needs the Parquet store")
    prom_bin = _ensure_prometheus()
    from aiohttp import web

    from bench.bench_prom_parse import generate_payload, vary_values

    body = generate_payload(args.samples)
    # the same series with new values on every request, as a real target serves them (an
    # identical body every second would flatter both scrapers' caches and compressors)
    variants = [vary_values(body, k) for k in range(4)]
    served = itertools.count()
    payload_port, prom_port = free_port(), free_port()

    async def handler(_: web.Request) -> web.Response:
        return web.Response(
            body=variants[next(served) % len(variants)],
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

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
            *(["--no-wal"] if args.no_wal else []),
            *(["--code", str(args.code)] if args.code else []),
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
        head_series = _prom_self_metric(prom_port, "prometheus_tsdb_head_series")
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
    mode = "with the write-ahead log" if not args.no_wal else "without the write-ahead log"
    print(f"window {elapsed:.1f} s, payload {len(body) / 1e6:.1f} MB, {per_scrape} samples/scrape, hciwatch {mode}")
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
    if "wal_fsyncs" in result:
        print(f"hciwatch WAL: {result['wal_bytes'] / 1e6:.0f} MB appended, {result['wal_fsyncs']} fsyncs")
    bps_p = rss_p * 2**20 / head_series if head_series else float("nan")
    bps_w = rss_w * 2**20 / per_scrape
    print(
        f"peak RSS per active series: prometheus {bps_p:,.0f} B ({head_series:,.0f} head series), "
        f"hciwatch {bps_w:,.0f} B ({per_scrape:,} series)"
    )
    print(f"ratio CPU s/M (hciwatch / prometheus): {per_m_w / per_m_p:.2f}")
    print(f"ratio peak RSS (hciwatch / prometheus): {rss_w / rss_p:.2f}")
    print(
        f"RESULT ingest cpu_per_m_hciwatch={per_m_w:.3f} cpu_per_m_prometheus={per_m_p:.3f} "
        f"rss_mib_hciwatch={rss_w:.0f} rss_mib_prometheus={rss_p:.0f} "
        f"bytes_per_series_hciwatch={bps_w:.0f} bytes_per_series_prometheus={bps_p:.0f} "
        f"wal={int(not args.no_wal)} missed_ticks={result['missed_ticks']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
