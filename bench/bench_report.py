"""Benchmark: the operator views of a 48 h, 4-host site (``hciwatch report``), target < 5 s and < 3 MB.

The site is the one ``make demo`` simulates (4 HCI hosts with RDMA NICs, three clusters with
their HAProxy VMs, 48 h of real-format payloads at 60 s scrapes, every scripted incident) replayed
through the whole flow; an existing data directory can be given instead (``--data-dir``).

Printed:

* **model** — building the JSON model from the store (median of ``--runs``), with each section;
* **report** — model + HTML + writing the file, and the file's size;
* **browser** — from navigation to every view drawn in headless Chromium (Debian ``chromium``
  through Python playwright; skipped with a note when either is missing);
* **total** — report + browser: what an operator waits for after typing the command.

Run: ``.venv/bin/python bench/bench_report.py [--data-dir demo-data] [--runs 3]`` (2 cores). Generating
the site first takes a few minutes (the same as ``make demo``).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hciwatch.report import build_model, write_report

TARGET_S = 5.0
TARGET_BYTES = 3 * 1024 * 1024


def generate_site(data_dir: Path) -> float:
    """``make demo``'s site into ``data_dir``; returns the seconds it took."""
    from rich.console import Console

    from hciwatch.demo import run_demo

    quiet = Console(file=io.StringIO())
    started = time.perf_counter()
    run_demo(data_dir, hours=48, seed=7, console=quiet, errconsole=quiet)
    return time.perf_counter() - started


def browser_render_s(report: Path) -> float | None:
    binary = os.environ.get("HCIWATCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("browser: skipped (pip install playwright)")
        return None
    if not os.access(binary, os.X_OK):
        print("browser: skipped (apt-get install chromium)")
        return None
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=binary, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = ctx.new_page()
            page.set_viewport_size({"width": 1400, "height": 900})
            page.goto(report.as_uri())
            page.wait_for_selector("#app[data-rendered='1']", timeout=60_000)
            ms: Any = page.evaluate("performance.now()")  # since navigation start
            return float(ms) / 1000
        finally:
            ctx.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, help="an existing data dir (default: generate the demo site)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tmp = None
    if args.data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
        data_dir = tmp / "site"
        print(f"generating the 48 h, 4-host demo site in {data_dir} (takes a few minutes) …", flush=True)
        print(f"site: generated and replayed in {generate_site(data_dir):.1f} s")
    else:
        data_dir = args.data_dir
    try:
        timings: list[float] = []
        sections: list[dict[str, float]] = []
        model: dict[str, Any] = {}
        for _ in range(args.runs):
            started = time.perf_counter()
            model = build_model(data_dir)
            timings.append(time.perf_counter() - started)
            sections.append(model["timings_ms"])
        samples = model["collected"]["samples"]
        print(
            f"store: {samples:,} samples, {model['collected']['ip_observations']:,} IP observations, "
            f"{len(model['congestion']['hosts'])} hosts, {len(model['pools'])} pools, "
            f"{len(model['alerts'])} alert changes in the window"
        )
        print(
            f"model:   {statistics.median(timings):6.2f} s median of {args.runs} "
            f"(min {min(timings):.2f}, max {max(timings):.2f})"
        )
        for key in sections[0]:
            print(f"  {key:<16} {statistics.median(s[key] for s in sections):8.1f} ms")
        out = (tmp or Path(tempfile.mkdtemp(prefix="bench-report-"))) / "report.html"
        reports = []
        for _ in range(args.runs):
            reports.append(write_report(data_dir, out))
        report_s = statistics.median(r.seconds for r in reports)
        size = reports[-1].bytes
        print(
            f"report:  {report_s:6.2f} s median; {size / 1e6:.2f} MB "
            f"({'under' if size < TARGET_BYTES else 'OVER'} the 3 MB target)"
        )
        render = browser_render_s(out)
        if render is not None:
            total = report_s + render
            print(f"browser: {render:6.2f} s to every view drawn (headless Chromium)")
            print(f"total:   {total:6.2f} s ({'under' if total < TARGET_S else 'OVER'} the 5 s target)")
        if tmp is None:
            shutil.rmtree(out.parent, ignore_errors=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
