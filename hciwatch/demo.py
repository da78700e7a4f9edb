"""``make demo`` / ``hciwatch demo``: a simulated Azure Local site replayed through the whole flow.

The lab generates 8 h of real-format telemetry (windows_exporter text, HAProxy CSV, Kubernetes
lists, neighbour rows) with every scripted incident and confounder squeezed into it (the lab's
compact script; the 48 h script took minutes on a 2-core machine, the 8 h one about 35 s of
CPU); ``--hours`` scales the script; the demo records it as a capture file and replays
each record through the whole flow on a virtual clock as it is generated (one pass, no read-back),
with the matching config next to it, then prints the alerts and leaves the data directory for the
user to query (or to replay the capture again).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

import lab
from hciwatch.config import parse_config
from hciwatch.pipeline import replay_records, summarize

MARKER = ".hciwatch-demo"
DEMO_SCRAPE_INTERVAL = timedelta(seconds=60)
DEMO_HOURS = 8.0
"""Default simulated span: every incident fits (compact script) and the main job stays under a minute."""


def demo_config_text(scenario: Any) -> str:
    """The TOML config a user would write for the simulated site (kept in the data dir)."""
    lines = [
        "# Config for the simulated site of `hciwatch demo` (its networks mirror the lab's IP plan).",
        'data_dir = "."',
        "",
        "[site]",
        'name = "demo-azure-local"',
        'environment = "demo"',
        "",
    ]
    if getattr(scenario.site, "ip_plan", "22h2") != "22h2":
        lines += ["[analytics.pools]", f'ip_plan = "{scenario.site.ip_plan}"', ""]
    for net in lab.network_config(scenario):
        lines.append("[[networks]]")
        tables: list[str] = []
        for k, v in net.items():
            if v is None:
                continue
            if isinstance(v, dict):
                lines.append(f"{k} = {{ {', '.join(f'{a} = {json.dumps(b)}' for a, b in v.items())} }}")
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:  # [[networks.metallb_pools]] sub-tables, after the network's own keys
                    tables.append(f"[[networks.{k}]]")
                    tables += [f"{a} = {json.dumps(b)}" for a, b in item.items()]
            elif isinstance(v, list):
                lines.append(f"{k} = [{', '.join(repr(x).replace(chr(39), chr(34)) for x in v)}]")
            elif isinstance(v, str):
                lines.append(f'{k} = "{v}"')
            else:
                lines.append(f"{k} = {v}")
        lines.append("")
        if tables:
            lines += [*tables, ""]
    return "\n".join(lines) + "\n"


def _prepare_dir(data_dir: Path) -> None:
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            from hciwatch.errorpolicy import UsageError

            raise UsageError(
                f"{data_dir} exists and was not written by hciwatch demo (no {MARKER} in it); it is left alone",
                fix="choose another --data-dir (the demo deletes and recreates its own)",
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("created by hciwatch demo; safe to delete\n")


def run_demo(data_dir: Path, *, hours: float | None, seed: int, console: Console, errconsole: Console) -> int:
    started = time.monotonic()
    data_dir = data_dir.resolve()
    _prepare_dir(data_dir)
    # 60 s scrapes (a common windows_exporter interval) and the compact script keep the main job
    # of `make demo` under a minute on two idle cores
    span = DEMO_HOURS if hours is None else hours
    if span < 1.0:
        from hciwatch.errorpolicy import UsageError

        raise UsageError(f"--hours {span:g} is too short for the demo script", fix="use --hours 1 or more")
    scenario = dataclasses.replace(lab.compact_scenario(seed=seed, hours=span), interval=DEMO_SCRAPE_INTERVAL)
    capture = data_dir / "capture.jsonl.zst"
    cfg_path = data_dir / "demo-config.toml"
    text = demo_config_text(scenario)
    cfg_path.write_text(text)
    cfg = parse_config(tomllib.loads(text), text, file=str(cfg_path), path=cfg_path)
    console.print(
        f"[bold]1/3[/] simulating {_span(scenario.duration)} of an Azure Local site "
        f"({len(scenario.site.hosts)} HCI hosts, {len(scenario.site.clusters)} clusters), "
        f"recording it to {capture.name} and replaying it as it is generated through "
        "parse → store → detectors → alerts …"
    )
    # the detectors run at the service's own cadence (evaluation_interval), so the demo's alert
    # times are the ones the live service would stamp
    total = int(scenario.duration / cfg.analytics.evaluation_interval)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=errconsole,
    ) as progress:
        task = progress.add_task("virtual time", total=total)

        def tick(now: Any) -> None:
            progress.update(task, advance=1, description=f"virtual time {now:%Y-%m-%d %H:%M} UTC")

        result = replay_records(
            lab.CaptureTee(scenario, capture),
            cfg,
            data_dir,
            data_dir / "alerts.jsonl",
            on_progress=tick,
        )
        progress.update(task, completed=total)

    summary = summarize(result)
    console.print("[bold]2/3[/] results")
    t = Table(title="what was stored", show_header=False)
    for k in ("records_read", "records_rejected", "samples_stored", "ip_observations_stored", "evaluations"):
        t.add_row(k, f"{summary[k]:,}")
    console.print(t)
    # one block per change (not a table): readable at 80 columns, the summary wraps as prose
    console.print(f"[bold]alert state changes ({len(result.alerts)})[/]")
    for a in result.alerts:
        res = ", ".join(f"{k}={v}" for k, v in sorted(a.resource.items()))
        style = "red" if a.status.value == "firing" else "green"
        console.print(
            f"  {a.changed_at:%m-%d %H:%M} [{style}]{a.status.value:<8}[/] {a.severity.value} {a.kind.value}  {res}"
        )
        console.print(f"      {a.summary}", markup=False, highlight=False)
    for msg in result.stats.rejects[:10]:
        console.print(f"  rejected: {msg}", markup=False)
    console.print("[bold]3/3[/] report")
    from hciwatch.report import write_report

    report = write_report(data_dir, data_dir / "report.html", site="demo-azure-local", ingest_summary=summary)
    console.print(
        f"  {report.path} ({report.bytes / 1e6:.2f} MB, {report.seconds:.1f} s): pools with forecasts, "
        "duplicate-IP timeline, congestion heat strip, alerts; one self-contained file, "
        "open it in any browser (it makes no network request)"
    )
    console.print(f"\nfinished in {time.monotonic() - started:.1f} s. Data kept in {data_dir}")
    for line in follow_up_hints(data_dir, capture, cfg_path):
        print(line)  # plain print: a terminal soft-wraps it, so a pasted command stays one command
    return 0


def _span(d: timedelta) -> str:
    """``12 h`` / ``90 min`` rather than ``2 days, 0:00:00``."""
    minutes = round(d.total_seconds() / 60)
    return f"{minutes // 60:g} h" if minutes % 60 == 0 else f"{minutes} min"


def _short(p: Path) -> str:
    """A path relative to the working directory when it is under it (shorter commands to paste)."""
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def follow_up_hints(data_dir: Path, capture: Path, cfg_path: Path) -> list[str]:
    """What to try next: each command is one line, short enough for 80 columns where it can be."""
    d = _short(data_dir)
    exe = ".venv/bin/hciwatch" if Path(".venv/bin/hciwatch").exists() else "hciwatch"
    return [
        "Next steps (one command per line):",
        f"  {exe} alerts --data-dir {d} --status open",
        f"  {exe} sql --data-dir {d} 'SELECT * FROM pool_usage LIMIT 5'",
        f"  {exe} report --data-dir {d} --out report.html",
        "The DuckDB CLI (pip install duckdb-cli), from the data dir (relative paths):",
        f"  cd {d} && duckdb -readonly catalog.duckdb",
        "Replay the recorded capture (same alerts, byte for byte):",
        f"  {exe} replay {_short(capture)} --config {_short(cfg_path)} --data-dir /tmp/replay",
    ]
