"""``hciwatch`` command line: run | demo | replay | capture | import | sql | alerts | report |
check-config | eval | anomalies.

Each command validates its configuration first (the same validation ``check-config`` prints) and
exits non-zero with precise messages when it is wrong. Heavy modules are imported per command so
``hciwatch --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from collector.errors import ConfigError, HciwatchError

console = Console(stderr=False, highlight=False)
errconsole = Console(stderr=True, highlight=False)


def _duration(text: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 90s, 10m, 2h, 1d)")
    n = float(m.group(1))
    unit = m.group(2) or "s"
    mult = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return timedelta(seconds=n * mult)


def _load_config(path: str | None, data_dir: str | None = None) -> Any:
    from hciwatch.config import default_config, load_config

    cfg = load_config(path) if path else default_config()
    if data_dir:
        from dataclasses import replace

        col = cfg.collector.model_copy(update={"data_dir": str(Path(data_dir).resolve())})
        cfg = replace(cfg, collector=col)
    return cfg


def _print_config_error(exc: ConfigError) -> None:
    errconsole.print(f"[bold red]config error[/]: {exc}")
    for p in exc.problems:
        errconsole.print(f"  {p}", markup=False)


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    console.print(
        f"[green]OK[/] {args.config}: {len(cfg.collector.networks)} network(s), "
        f"{len(cfg.sources)} source(s), {len(cfg.exporters)} exporter(s)"
    )
    return 0


def _alerts_table(alerts: Sequence[Any], title: str) -> Table:
    t = Table(title=title, show_lines=False)
    for col in ("changed (UTC)", "status", "sev", "kind", "resource", "summary"):
        t.add_column(col, overflow="fold")
    for a in alerts:
        res = ", ".join(f"{k}={v}" for k, v in sorted(a.resource.items()))
        style = "red" if a.status.value == "firing" else "green"
        t.add_row(
            a.changed_at.strftime("%Y-%m-%d %H:%M"),
            f"[{style}]{a.status.value}[/]",
            a.severity.value,
            a.kind.value,
            res,
            a.summary,
        )
    return t


def _summary_table(summary: dict[str, Any], rejects: list[str]) -> Table:
    t = Table(title="replay summary", show_header=False)
    t.add_column("what")
    t.add_column("value", overflow="fold")
    for k, v in summary.items():
        t.add_row(k, json.dumps(v) if isinstance(v, dict) else str(v))
    return t


def _replay(args: argparse.Namespace, captures: list[Path], cfg: Any, data_dir: Path, alerts_out: Path | None) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from collector.capture import read_captures
    from collector.registry import parser_kinds
    from hciwatch.pipeline import replay_records

    items = read_captures(captures, known_kinds=parser_kinds())
    if args.quiet:
        return replay_records(items, cfg, data_dir, alerts_out)
    with Progress(
        TextColumn("[bold]replay[/] {task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=errconsole,
        transient=True,
    ) as progress:
        task = progress.add_task("starting", total=None)

        def tick(now: Any) -> None:
            progress.update(task, description=now.strftime("%Y-%m-%d %H:%M UTC"), advance=1)

        return replay_records(items, cfg, data_dir, alerts_out, on_progress=tick)


def cmd_replay(args: argparse.Namespace) -> int:
    from hciwatch.pipeline import summarize

    cfg = _load_config(args.config, args.data_dir)
    captures = [Path(p) for p in args.captures]
    for p in captures:
        if not p.exists():
            errconsole.print(f"[red]error[/]: capture file not found: {p}")
            return 2
    data_dir = cfg.data_dir
    result = _replay(args, captures, cfg, data_dir, Path(args.alerts_jsonl) if args.alerts_jsonl else None)
    summary = summarize(result)
    if args.format == "json":
        print(json.dumps({**summary, "rejected": result.stats.rejects}, indent=2))
        return 0
    console.print(_summary_table(summary, result.stats.rejects))
    if result.stats.rejects:
        console.print(f"[yellow]rejected records / skipped parts (first {len(result.stats.rejects)}):[/]")
        for msg in result.stats.rejects:
            console.print(f"  {msg}", markup=False)
    if result.alerts:
        console.print(_alerts_table(result.alerts, "alert state changes"))
    console.print(f'data: {data_dir}   query: hciwatch sql --data-dir {data_dir} "SELECT ..."')
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from hciwatch.demo import run_demo

    return run_demo(Path(args.data_dir), hours=args.hours, seed=args.seed, console=console, errconsole=errconsole)


def cmd_sql(args: argparse.Namespace) -> int:
    from collector.catalog import DEFAULT_CATALOG
    from collector.unmapped import unmapped_metrics_view
    from hciwatch.query import QueryError, QueryLimits, run_query
    from hciwatch.sql_format import rich_table, write_csv, write_json_lines

    if not (Path(args.data_dir) / "samples").is_dir():
        errconsole.print(f"[red]error[/]: {args.data_dir} is not an hciwatch data dir (no samples/ in it)")
        return 2
    limits = QueryLimits(max_rows=max(args.limit, 10_000), timeout_s=args.timeout)
    try:
        result = run_query(
            Path(args.data_dir),
            args.query,
            limit=args.limit,
            limits=limits,
            extra_views={**unmapped_metrics_view(DEFAULT_CATALOG), **_stored_views(Path(args.data_dir))},
        )
    except QueryError as exc:
        errconsole.print(f"[red]query error[/]: {exc}")
        return 2

    table = result.table
    if args.format == "csv":
        write_csv(table, sys.stdout)
    elif args.format == "json":
        write_json_lines(table, sys.stdout)
    else:
        console.print(rich_table(table))
    if getattr(result, "truncated", False):
        errconsole.print(f"[yellow]truncated to {args.limit} rows (use --limit)[/]")
    return 0


def _stored_views(data_dir: Path) -> dict[str, str]:
    """The analyst views recorded in the data dir's catalog (pool_usage, ip_conflicts, …)."""
    import duckdb

    from collector.store import CATALOG_FILE

    cat = data_dir / CATALOG_FILE
    if not cat.exists():
        return {}
    con = duckdb.connect(str(cat), read_only=True)
    try:
        rows = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
    finally:
        con.close()
    out = {}
    for name, sql in rows:
        if name in ("samples", "ip_observations", "alerts"):
            continue
        body = re.sub(r"(?is)^\s*CREATE\s+(OR\s+REPLACE\s+)?VIEW\s+\S+\s+AS\s+", "", sql).rstrip().rstrip(";")
        out[name] = body
    return out


def cmd_alerts(args: argparse.Namespace) -> int:
    from hciwatch.alerts_view import load_alerts

    alerts = load_alerts(Path(args.data_dir), status=args.status, kind=args.kind)
    if args.format == "json":
        for a in alerts:
            print(a.to_json_line())
    else:
        console.print(_alerts_table(alerts, f"alerts in {args.data_dir}"))
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    import asyncio

    from hciwatch.service import capture

    cfg = _load_config(args.config)
    n = asyncio.run(capture(cfg, Path(args.out), args.duration.total_seconds()))
    console.print(f"captured {n} records to {args.out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from hciwatch.service import run_service

    cfg = _load_config(args.config)
    return asyncio.run(run_service(cfg))


def cmd_import(args: argparse.Namespace) -> int:
    from hciwatch.importer import problem_lines, run_import, summary_table

    cfg = _load_config(args.config, args.data_dir)
    progress = None if args.no_progress or args.format == "json" else errconsole
    result = run_import(args.files, cfg, cfg.data_dir, progress_console=progress)
    if args.format == "json":
        print(json.dumps(result.summary, indent=2))
        return result.exit_code
    console.print(summary_table(result))
    for line in problem_lines(result):
        console.print(line, markup=False, soft_wrap=True)
    console.print(f'data: {cfg.data_dir}   query: hciwatch sql --data-dir {cfg.data_dir} "SELECT ..."')
    return result.exit_code


def cmd_eval(args: argparse.Namespace) -> int:
    from hciwatch.evaluate import run_eval

    rc: int = run_eval([Path(p) for p in args.scenarios], console=console, fmt=args.format)
    return rc


def cmd_anomalies(args: argparse.Namespace) -> int:
    from analytics.offline import anomalies_csv

    if not Path(args.file).exists():
        errconsole.print(f"[red]error[/]: file not found: {args.file}")
        return 2
    anomalies_csv(
        args.file,
        sys.stdout,
        time_col=args.time_col,
        value_col=args.value_col,
        sensitivity=args.sensitivity,
        relearn_after=args.relearn_after,
    )
    return 0


def _duration_arg(text: str) -> Any:
    from analytics.settings import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30m, 6h, 1d): {exc}") from None


def _iso_time(text: str) -> Any:
    from collector.schema import parse_iso

    try:
        return parse_iso(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r} (e.g. 2026-11-16T00:00Z)") from exc


def cmd_report(args: argparse.Namespace) -> int:
    from hciwatch.report import write_report

    data_dir = Path(args.data_dir)
    if not (data_dir / "samples").is_dir():
        errconsole.print(f"[red]error[/]: {data_dir} is not an hciwatch data dir (no samples/ in it)")
        return 2
    try:
        stats = write_report(data_dir, Path(args.out), args.start, args.end, site=args.site)
    except ValueError as exc:
        errconsole.print(f"[red]error[/]: {exc}")
        return 2
    console.print(
        f"report written: {stats.path} ({stats.bytes / 1e6:.2f} MB in {stats.seconds:.1f} s; "
        f"{stats.pools} pool(s), {stats.duplicate_ip_incidents} duplicate-IP incident(s), "
        f"{stats.congestion_hosts} host(s) in the heat strips, {stats.alert_changes} alert change(s))"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hciwatch",
        description=(
            "Telemetry collector and anomaly detector for AKS on Azure Local / Azure Stack HCI: "
            "VIP pool exhaustion, duplicate IPs, east-west (RDMA/PFC) congestion."
        ),
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("run", help="run the service: sources, store, detectors, exporters, HTTP API")
    s.add_argument("--config", required=True)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("demo", help="simulate an Azure Local site for 48 h and replay it through the flow")
    s.add_argument("--data-dir", default="demo-data")
    s.add_argument("--hours", type=float, default=48.0)
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("replay", help="replay capture files through the whole flow on a virtual clock")
    s.add_argument("captures", nargs="+", metavar="CAPTURE")
    s.add_argument("--config")
    s.add_argument("--data-dir")
    s.add_argument("--alerts-jsonl", help="write every alert state change as a JSON line here")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("capture", help="record live sources into a capture file")
    s.add_argument("--config", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--duration", type=_duration, default=timedelta(minutes=10))
    s.set_defaults(func=cmd_capture)

    s = sub.add_parser("import", help="import typeperf/relog CSV files into the store (in time order)")
    s.add_argument("files", nargs="+")
    s.add_argument("--config")
    s.add_argument("--data-dir")
    s.add_argument("--format", choices=("table", "json"), default="table", help="summary format")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("sql", help="run a read-only SQL query over the store")
    s.add_argument("query")
    s.add_argument("--data-dir", default="data")
    s.add_argument("--format", choices=("table", "csv", "json"), default="table")
    s.add_argument("--limit", type=int, default=10_000)
    s.add_argument("--timeout", type=float, default=60.0, help="seconds before the query is interrupted")
    s.set_defaults(func=cmd_sql)

    s = sub.add_parser("alerts", help="list stored alert state changes")
    s.add_argument("--data-dir", default="data")
    s.add_argument("--status", choices=("firing", "resolved", "open"))
    s.add_argument("--kind")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.set_defaults(func=cmd_alerts)

    s = sub.add_parser("report", help="write the operator views of a window as one self-contained HTML file")
    s.add_argument("--data-dir", default="data")
    s.add_argument("--out", default="report.html")
    s.add_argument(
        "--from", dest="start", type=_iso_time, metavar="ISO", help="window start (default: 48 h before the end)"
    )
    s.add_argument("--to", dest="end", type=_iso_time, metavar="ISO", help="window end (default: the newest data)")
    s.add_argument("--site", help="site name for the header")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("check-config", help="validate a config file and print every problem")
    s.add_argument("config")
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("eval", help="replay scenario folders and score the detectors")
    s.add_argument("scenarios", nargs="+", metavar="SCENARIO_DIR")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("anomalies", help="score one series from a CSV, causally")
    s.add_argument("file")
    s.add_argument("--time-col", default="timestamp")
    s.add_argument("--value-col", default="value")
    s.add_argument("--sensitivity", choices=("low", "medium", "high"), default="medium")
    s.add_argument(
        "--relearn-after",
        type=_duration_arg,
        default="1d",
        metavar="DURATION",
        help="an anomaly lasting this long becomes the new normal (e.g. 6h, 1d; 0 = never). Default 1d.",
    )
    s.set_defaults(func=cmd_anomalies)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        rc: int = args.func(args)
        return rc
    except ConfigError as exc:
        _print_config_error(exc)
        return 2
    except HciwatchError as exc:
        errconsole.print(f"[red]error[/]: {exc}", markup=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
