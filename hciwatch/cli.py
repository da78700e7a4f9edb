"""``hciwatch`` command line: run | demo | replay | capture | import | sql | alerts | report |
check-config | test-sources | sample-config | eval | anomalies | plan | reclaim.

Each command validates its configuration first (``run`` and ``check-config`` share one path,
:func:`hciwatch.preflight.load_for_run`) and every failure goes through one policy
(:mod:`hciwatch.errorpolicy`): exit 2 for usage/config mistakes, 1 for run-time failures, a
one-line cause and its fix, a traceback only with ``--debug``. The options every command takes
(``--log-level``, ``--log-format``, ``-v``, ``--debug``) are accepted before or after the verb.
Heavy modules are imported per command so ``hciwatch --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hciwatch.errorpolicy import EXIT_USAGE, UsageError, explain
from hciwatch.logsetup import FORMATS, LEVELS, configure

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


def _positive(kind: type[int] | type[float], what: str) -> Any:
    """An argparse type: a number > 0 (a zero timeout or a negative span is a usage mistake)."""

    def parse(text: str) -> int | float:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not v > 0 or v != v or v == float("inf"):
            raise argparse.ArgumentTypeError(f"{what} must be greater than 0, got {text!r}")
        return v

    return parse


def _data_dir(args: argparse.Namespace) -> Path:
    """``--data-dir``, else the ``data_dir`` of ``--config``, else ``./data``."""
    if getattr(args, "data_dir", None):
        return Path(args.data_dir)
    if getattr(args, "config", None):
        return Path(_load_config(args.config).data_dir)
    return Path("data")


def _require_data_dir(data_dir: Path) -> Path:
    if not data_dir.exists():
        raise UsageError(
            f"data dir {data_dir} does not exist",
            fix="give --data-dir (or --config) of an hciwatch data dir, e.g. demo-data after `make demo`",
        )
    if not (data_dir / "samples").is_dir() and not (data_dir / "lake.json").is_file():
        raise UsageError(
            f"{data_dir} is not an hciwatch data dir (no samples/ in it)",
            fix="give --data-dir (or --config) of a dir written by `hciwatch run`, `replay` or `demo`",
        )
    return data_dir


# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    from hciwatch.preflight import load_for_run

    path = args.config or args.config_file
    if not path:
        raise UsageError("check-config needs a config file", fix="hciwatch check-config --config FILE")
    cfg = load_for_run(path)
    console.print(
        f"[green]OK[/] {path}: {len(cfg.collector.networks)} network(s), "
        f"{len(cfg.sources)} source(s), {len(cfg.exporters)} exporter(s); secrets, listen address, "
        "pools and data dir checked (what `run` checks before it starts)"
    )
    return 0


def cmd_test_sources(args: argparse.Namespace) -> int:
    import asyncio

    from hciwatch.testsources import as_dict, summary_line, test_sources

    cfg = _load_config(args.config)
    if not cfg.sources:
        raise UsageError(f"{args.config} has no [[sources]]", fix="add a [[sources]] table (hciwatch sample-config)")
    results, push = asyncio.run(test_sources(cfg))
    if args.format == "json":
        print(json.dumps({"targets": [as_dict(r) for r in results], "push_sources_not_tested": push}, indent=2))
    else:
        for r in results:
            print(summary_line(r))
            for metric, n in r.metrics[: args.metrics]:
                print(f"    {metric}  ({n})")
            if len(r.metrics) > args.metrics:
                print(f"    … {len(r.metrics) - args.metrics} more metric(s) (--metrics N)")
            for e in r.errors:
                print(f"    error: {e}")
        for name in push:
            print(f"SKIP {name}: a push source (it waits for messages; run `hciwatch capture` to see them)")
    return 0 if all(r.ok for r in results) else 1


def cmd_silence(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from hciwatch.silences import SilenceStore, describe, parse_matchers

    data_dir = _data_dir(args)
    if not data_dir.is_dir():
        raise UsageError(
            f"data dir {data_dir} does not exist", fix="give --data-dir or --config of the service's data dir"
        )
    store = SilenceStore(data_dir)
    if args.action == "add":
        try:
            s = store.add(
                parse_matchers(args.match), duration=args.duration, comment=args.comment, created_by=args.created_by
            )
        except ValueError as exc:
            fix = "hciwatch silence add --match kind=...,host=... --for 2h --comment '...'"
            raise UsageError(str(exc), fix=fix) from None
        print(f"silence {s.id} active until {s.ends_at:%Y-%m-%d %H:%M} UTC: {args.match} ({s.comment})")
        return 0
    if args.action == "expire":
        try:
            s = store.expire(args.id)
        except KeyError:
            raise UsageError(f"no silence {args.id!r} in {data_dir}", fix="hciwatch silence list --all") from None
        print(f"silence {s.id} expired")
        return 0
    now = datetime.now(UTC)
    rows = describe(store.current(now, include_expired=args.all), now)
    if args.format == "json":
        print(json.dumps([s.to_json() for s in store.current(now, include_expired=args.all)], indent=2))
        return 0
    t = Table(title=f"silences in {data_dir}")
    for col in ("id", "state", "matchers", "starts (UTC)", "ends (UTC)", "silenced changes", "comment"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(*r)
    console.print(t)
    return 0


def cmd_sample_config(args: argparse.Namespace) -> int:
    from importlib.resources import files

    sys.stdout.write(files("hciwatch").joinpath("sample_config.toml").read_text(encoding="utf-8"))
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
    evaluate = not args.no_eval
    if args.quiet:
        return replay_records(items, cfg, data_dir, alerts_out, evaluate=evaluate)
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

        return replay_records(items, cfg, data_dir, alerts_out, on_progress=tick, evaluate=evaluate)


def cmd_replay(args: argparse.Namespace) -> int:
    from hciwatch.pipeline import summarize

    cfg = _load_config(args.config, args.data_dir)
    captures = [Path(p) for p in args.captures]
    for p in captures:
        if not p.is_file():
            raise UsageError(f"capture file not found: {p}", fix="give a file written by `hciwatch capture` or demo")
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
    from collector.store_read import StoreReader
    from collector.unmapped import unmapped_metrics_view
    from hciwatch.query import QueryError, QueryLimits, run_query
    from hciwatch.sql_format import rich_table, write_csv, write_json_lines

    limits = QueryLimits(max_rows=max(args.limit, 10_000), timeout_s=args.timeout)
    lake = None
    if args.lake:
        from collector.errors import ConfigError
        from hciwatch.fleet import fleet_views, lake_from_cli

        if args.data_dir:
            raise UsageError("give --lake or --data-dir, not both", fix="--lake reads every site of a fleet's lake")
        try:
            lake = lake_from_cli(args.lake, args.config)
        except ConfigError as exc:
            raise UsageError(
                str(exc),
                fix="--lake az://<container>/<prefix>, abfss://…, s3://<bucket>/<prefix> or a directory; credentials "
                "from --config's [store.lake], or AZURE_STORAGE_CONNECTION_STRING / the AWS environment",
            ) from exc
        args.data_dir = "."
        views = fleet_views(lake, unmapped_metrics_view(DEFAULT_CATALOG))
    else:
        args.data_dir = str(_require_data_dir(_data_dir(args)))
        reader = StoreReader(Path(args.data_dir))
        views = {**unmapped_metrics_view(DEFAULT_CATALOG), **reader.analyst_views()}
    try:
        result = run_query(
            Path(args.data_dir),
            args.query,
            limit=args.limit,
            limits=limits,
            extra_views=views,
            lake=lake,
        )
    except QueryError as exc:
        raise UsageError(f"query refused: {exc}", fix="read-only SELECT over samples, ip_observations, alerts") from exc

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


def cmd_serve_fleet(args: argparse.Namespace) -> int:
    import asyncio

    from hciwatch.central import serve

    cfg = _load_config(args.config)
    asyncio.run(serve(cfg, lake_url=args.lake, listen=args.listen))
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from collector.errors import ConfigError
    from collector.lake_compact import compact_lake
    from hciwatch.fleet import lake_from_cli

    try:
        lake = lake_from_cli(args.lake, args.config)
    except ConfigError as exc:
        raise UsageError(str(exc), fix="--lake az://…, abfss://…, s3://… or a directory") from exc
    stats = compact_lake(
        lake,
        before=args.before,
        min_files=args.min_files,
        tables=args.table or None,
        sites=set(args.site) if args.site else None,
    )
    console.print(
        f"compacted {stats.partitions} partition(s): {stats.files_in} files -> {stats.files_out} "
        f"({stats.rows:,} rows, {stats.bytes_in / 1e6:.1f} MB -> {stats.bytes_out / 1e6:.1f} MB); "
        f"{stats.finished} interrupted compaction(s) finished"
        + (f"; {stats.failed} group(s) failed and are left for the next run (see the log)" if stats.failed else "")
    )
    return 1 if stats.failed else 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from hciwatch.alerts_view import load_alerts

    args.data_dir = str(_require_data_dir(_data_dir(args)))
    stored = any((Path(args.data_dir) / "alerts").glob("**/*.parquet"))  # with or without site=
    alerts = load_alerts(Path(args.data_dir), status=args.status, kind=args.kind) if stored else []
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

    from hciwatch.preflight import load_for_run
    from hciwatch.service import run_service

    cfg = load_for_run(args.config)
    return asyncio.run(run_service(cfg))


def cmd_import(args: argparse.Namespace) -> int:
    from hciwatch.importer import problem_lines, run_import, summary_table

    for f in args.files:
        if not Path(f).is_file():
            raise UsageError(f"file not found: {f}", fix="give typeperf/relog CSV files (relog -f csv)")
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

    for d in args.scenarios:
        if not Path(d).is_dir():
            raise UsageError(f"scenario folder not found: {d}", fix="give folders like tests/replay/scenarios/*")

    rc: int = run_eval([Path(p) for p in args.scenarios], console=console, fmt=args.format)
    return rc


def cmd_anomalies(args: argparse.Namespace) -> int:
    from analytics.offline import anomalies_csv

    if not Path(args.file).is_file():
        raise UsageError(f"file not found: {args.file}", fix="give a CSV file with a time and a value column")
    run = anomalies_csv(
        args.file,
        sys.stdout,
        time_col=args.time_col,
        value_col=args.value_col,
        sensitivity=args.sensitivity,
        direction=args.direction,
        strict=args.strict,
    )
    for line in run.warnings(args.file):
        print(line, file=sys.stderr)
    return 0


def _iso_time(text: str) -> Any:
    from collector.schema import parse_iso

    try:
        return parse_iso(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r} (e.g. 2026-11-16T00:00Z)") from exc


def cmd_plan(args: argparse.Namespace) -> int:
    from hciwatch.plan_cli import run_plan

    return run_plan(args, console, errconsole)


def cmd_reclaim(args: argparse.Namespace) -> int:
    from hciwatch.reclaim_cli import run_reclaim

    return run_reclaim(args, console, errconsole)


def cmd_report(args: argparse.Namespace) -> int:
    from hciwatch.report import write_report

    data_dir = _require_data_dir(_data_dir(args))
    if args.start and args.end and args.start >= args.end:
        raise UsageError(f"--from {args.start:%Y-%m-%dT%H:%MZ} is not before --to {args.end:%Y-%m-%dT%H:%MZ}")
    try:
        stats = write_report(data_dir, Path(args.out), args.start, args.end, site=args.site)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    console.print(
        f"report written: {stats.path} ({stats.bytes / 1e6:.2f} MB in {stats.seconds:.1f} s; "
        f"{stats.pools} pool(s), {stats.duplicate_ip_incidents} duplicate-IP incident(s), "
        f"{stats.congestion_hosts} host(s) in the heat strips, {stats.alert_changes} alert change(s))"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------------------------


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every default and keeps the epilog's example lines as written."""


def _common_options() -> argparse.ArgumentParser:
    """Options accepted before and after the verb (``hciwatch -v run`` and ``hciwatch run -v``).

    Defaults are suppressed so a value given on either side survives the sub-parser's pass.
    """
    c = argparse.ArgumentParser(add_help=False)
    g = c.add_argument_group("logging and diagnostics (before or after the command)")
    g.add_argument(
        "--log-level",
        choices=LEVELS,
        default=argparse.SUPPRESS,
        help="log threshold (default: info for run/capture/test-sources, warning otherwise)",
    )
    g.add_argument(
        "--log-format", choices=FORMATS, default=argparse.SUPPRESS, help="log line format on stderr (default: text)"
    )
    g.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more logging (-v info, -vv debug)"
    )
    g.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="print tracebacks of errors (for bug reports)"
    )
    return c


def _version() -> str:
    from hciwatch.buildinfo import hciwatch_version

    return hciwatch_version()


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    p = argparse.ArgumentParser(
        prog="hciwatch",
        description=(
            "Telemetry collector and anomaly detector for AKS on Azure Local / Azure Stack HCI: "
            "VIP pool exhaustion, duplicate IPs, east-west (RDMA/PFC) congestion."
        ),
        parents=[common],
        formatter_class=_Formatter,
        epilog="start here: hciwatch demo   |   hciwatch sample-config > hciwatch.toml",
    )
    p.add_argument("--version", action="version", version=f"hciwatch {_version()} (python {sys.version.split()[0]})")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help_text, description=description or help_text, parents=[common], formatter_class=_Formatter
        )

    def config_opt(s: argparse.ArgumentParser, *, required: bool = False, what: str = "") -> None:
        s.add_argument(
            "--config",
            required=required,
            metavar="FILE",
            help=f"the TOML config file{what} (hciwatch sample-config prints a commented one)",
        )

    def data_dir_opt(s: argparse.ArgumentParser) -> None:
        s.add_argument("--data-dir", metavar="DIR", help="the data dir (default: data_dir of --config, else ./data)")

    s = verb("run", "run the service: sources, store, detectors, exporters, HTTP API")
    config_opt(s, required=True)
    s.set_defaults(func=cmd_run)

    s = verb(
        "demo",
        "simulate an Azure Local site and replay it through the whole flow",
        "Simulate an Azure Local site (real-format telemetry with scripted incidents), replay it through "
        "parse -> store -> detectors -> alerts, write the report. Nothing leaves this machine.",
    )
    s.add_argument("--data-dir", default="demo-data", metavar="DIR", help="where the demo writes (recreated)")
    s.add_argument(
        "--hours",
        type=_positive(float, "--hours"),
        default=None,
        metavar="H",
        help="simulated span in hours (default: 8 h; every incident fits in it)",
    )
    s.add_argument("--seed", type=int, default=7, help="random seed of the simulated site")
    s.set_defaults(func=cmd_demo)

    s = verb("replay", "replay capture files through the whole flow on a virtual clock")
    s.add_argument("captures", nargs="+", metavar="CAPTURE", help="capture files (.jsonl or .jsonl.zst)")
    config_opt(s)
    data_dir_opt(s)
    s.add_argument("--alerts-jsonl", metavar="FILE", help="write every alert state change as a JSON line here")
    s.add_argument("--format", choices=("table", "json"), default="table", help="summary output format")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument(
        "--no-eval",
        action="store_true",
        help="store only (a backfill of history): no detector passes and no alerts; the same rows are stored",
    )
    s.set_defaults(func=cmd_replay)

    s = verb("capture", "record live sources into a capture file")
    config_opt(s, required=True)
    s.add_argument("--out", required=True, metavar="FILE", help="capture file to write (.jsonl.zst compresses)")
    s.add_argument(
        "--duration", type=_duration, default=timedelta(minutes=10), help="how long to record (e.g. 90s, 10m, 2h)"
    )
    s.set_defaults(func=cmd_capture)

    s = verb("import", "import typeperf/relog CSV files into the store (in time order)")
    s.add_argument("files", nargs="+", metavar="CSV", help="typeperf or relog -f csv files")
    config_opt(s)
    data_dir_opt(s)
    s.add_argument("--format", choices=("table", "json"), default="table", help="summary format")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_import)

    s = verb("sql", "run a read-only SQL query over the store")
    s.add_argument("query", help="a SELECT over samples, ip_observations, alerts and the analyst views")
    config_opt(s, what=" (for its data_dir; with --lake, its [store.lake] credentials)")
    data_dir_opt(s)
    s.add_argument(
        "--lake",
        metavar="URL",
        help="query every site of a fleet's lake: az://, abfs[s]://, s3:// or a directory (every row has its site)",
    )
    s.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    s.add_argument("--limit", type=_positive(int, "--limit"), default=10_000, help="most rows printed")
    s.add_argument(
        "--timeout", type=_positive(float, "--timeout"), default=60.0, help="seconds before the query is interrupted"
    )
    s.set_defaults(func=cmd_sql)

    s = verb(
        "serve-fleet",
        "serve the query API over every site of a fleet's lake (a central deployment)",
        "The central fleet view: POST /api/v1/query over every site of the lake (the same read-only sandbox "
        "and fleet views as `hciwatch sql --lake`), with /healthz, /readyz and /metrics. No sources, detectors "
        "or sinks run here; each site's instance writes the lake. Needs api.token_file.",
    )
    config_opt(s, required=True, what=" ([store.lake] and [api]: listen, token_file, query limits)")
    s.add_argument("--lake", metavar="URL", help="the lake's URL (replaces [store.lake] url; credentials stay)")
    s.add_argument("--listen", metavar="HOST:PORT", help="replaces api.listen")
    s.set_defaults(func=cmd_serve_fleet)

    s = verb(
        "compact",
        "merge small Parquet files of closed days in a lake (object storage or a directory)",
        "Merge the part files of every closed date partition (per table and site) into one file. On object "
        "storage the swap goes through a manifest readers honour, so no reader counts a row twice or misses "
        "one; an interrupted run is finished by the next. Run one compactor per lake (e.g. a daily CronJob).",
    )
    s.add_argument("--lake", required=True, metavar="URL", help="az://, abfs[s]://, s3:// or a directory")
    config_opt(s, what=" (its [store.lake] credentials)")
    s.add_argument(
        "--before",
        type=date.fromisoformat,
        default=None,
        metavar="YYYY-MM-DD",
        help="compact dates before this one (default: today, UTC)",
    )
    s.add_argument(
        "--min-files", type=_positive(int, "--min-files"), default=8, help="only partitions with this many files"
    )
    s.add_argument("--site", action="append", metavar="SITE", help="only this site (repeatable)")
    s.add_argument("--table", action="append", metavar="TABLE", help="only this table (repeatable)")
    s.set_defaults(func=cmd_compact)

    from collector.schema import AlertKind

    s = verb("alerts", "list stored alert state changes")
    config_opt(s, what=" (for its data_dir)")
    data_dir_opt(s)
    s.add_argument(
        "--status", choices=("firing", "resolved", "open"), help="only these changes (open: still firing now)"
    )
    s.add_argument("--kind", choices=[k.value for k in AlertKind], help="only this alert kind")
    s.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    s.set_defaults(func=cmd_alerts)

    s = verb("report", "write the operator views of a window as one self-contained HTML file")
    config_opt(s, what=" (for its data_dir)")
    data_dir_opt(s)
    s.add_argument("--out", default="report.html", metavar="FILE", help="HTML file to write")
    s.add_argument(
        "--from", dest="start", type=_iso_time, metavar="ISO", help="window start (default: 48 h before the end)"
    )
    s.add_argument("--to", dest="end", type=_iso_time, metavar="ISO", help="window end (default: the newest data)")
    s.add_argument("--site", help="site name for the header (default: none)")
    s.set_defaults(func=cmd_report)

    s = verb("plan", "capacity preflight: will an upgrade / scale-out / new cluster fit the IP pools?")
    from hciwatch.plan_cli import add_plan_arguments

    add_plan_arguments(s)
    s.set_defaults(func=cmd_plan)

    s = verb("reclaim", "who holds each pool address, and which VIPs could be given back")
    from hciwatch.reclaim_cli import add_reclaim_arguments

    add_reclaim_arguments(s)
    s.set_defaults(func=cmd_reclaim)

    s = verb(
        "check-config",
        "validate a config file with everything `run` checks and print every problem",
        "Validate a config file exactly as `run` does before it opens anything: schema, secrets readable, "
        "listen address, pools not overlapping, files present, data dir writable. Every problem at once; "
        "exit 2 when there is one.",
    )
    s.add_argument("config_file", nargs="?", metavar="FILE", help="the config file (same as --config)")
    config_opt(s)
    s.set_defaults(func=cmd_check_config)

    s = verb(
        "test-sources",
        "scrape each configured source once and print what it parsed, per target",
        "Like `telegraf --test`: fetch every pull target once, parse it as the service would and print "
        "per target its samples, metrics and errors. Stores nothing. Exit 1 when a target failed.",
    )
    config_opt(s, required=True)
    s.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    s.add_argument("--metrics", type=int, default=10, metavar="N", help="metric names listed per target")
    s.set_defaults(func=cmd_test_sources)

    s = verb(
        "silence",
        "silence alerts for a maintenance window: add, list, expire",
        "Matching alert changes are stored and shown (marked silenced) but reach no sink while the silence "
        "is active. Matchers: kind=, severity=, any resource label (host=, network=, ip=, pool=), or "
        "resource= (any label); values may use * and ?. The running service picks changes up at once.",
    )
    silence_sub = s.add_subparsers(dest="action", required=True, metavar="ACTION", help="add | list | expire")
    sa = silence_sub.add_parser(
        "add", help="add a silence", description="add a silence", parents=[common], formatter_class=_Formatter
    )
    sa.add_argument(
        "--match", required=True, metavar="K=V,...", help="matchers, e.g. kind=eastwest_congestion,host=hci-node-04"
    )
    sa.add_argument(
        "--for", dest="duration", required=True, type=_duration, metavar="DURATION", help="how long (e.g. 2h, 90m)"
    )
    sa.add_argument("--comment", required=True, help="why (change ticket, who); shown wherever the silence is")
    sa.add_argument("--created-by", default="", help="who adds it (default: empty)")
    sl = silence_sub.add_parser(
        "list", help="list silences", description="list silences", parents=[common], formatter_class=_Formatter
    )
    sl.add_argument("--all", action="store_true", help="include expired silences")
    sl.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    se = silence_sub.add_parser(
        "expire",
        help="end a silence now",
        description="end a silence now",
        parents=[common],
        formatter_class=_Formatter,
    )
    se.add_argument("id", help="the silence id (hciwatch silence list)")
    for sp in (sa, sl, se):
        config_opt(sp, what=" (for its data_dir)")
        data_dir_opt(sp)
        sp.set_defaults(func=cmd_silence)

    s = verb("sample-config", "print a commented sample config (hciwatch sample-config > hciwatch.toml)")
    s.set_defaults(func=cmd_sample_config)

    s = verb("eval", "replay scenario folders and score the detectors")
    s.add_argument("scenarios", nargs="+", metavar="SCENARIO_DIR", help="folders with a capture and expected alerts")
    s.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    s.set_defaults(func=cmd_eval)

    s = verb("anomalies", "score one series from a CSV, causally")
    s.add_argument("file", help="CSV file with a time column and a value column")
    s.add_argument("--time-col", default="timestamp", help="name of the time column")
    s.add_argument("--value-col", default="value", help="name of the value column")
    s.add_argument(
        "--sensitivity", choices=("low", "medium", "high"), default="medium", help="how readily a point is anomalous"
    )
    s.add_argument(
        "--direction", choices=("up", "down", "both"), default="both", help="which departures count as anomalous"
    )
    s.add_argument(
        "--strict",
        action="store_true",
        help="refuse rows out of time order, repeated timestamps and unreadable cells instead of flagging them",
    )
    s.set_defaults(func=cmd_anomalies)
    return p


_LOUD_BY_DEFAULT = ("run", "capture", "test-sources")


def _log_level(args: argparse.Namespace) -> str:
    if getattr(args, "log_level", None):
        return str(args.log_level)
    verbose = getattr(args, "verbose", 0) or 0
    if verbose >= 2:
        return "debug"
    if verbose == 1 or args.command in _LOUD_BY_DEFAULT:
        return "info"
    return "warning"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage mistakes: argparse prints usage + the allowed values, exit 2
    debug = bool(getattr(args, "debug", False))
    configure(_log_level(args), getattr(args, "log_format", "text"))
    try:
        rc: int = args.func(args)
        return rc
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except BaseException as exc:
        if debug:
            import traceback

            traceback.print_exc()
        explained = explain(exc)
        for line in explained.lines():
            print(line, file=sys.stderr)
        return explained.code


__all__ = ["EXIT_USAGE", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
