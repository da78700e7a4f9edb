"""``hciwatch plan``: the capacity preflight's command (argument handling and rendering only).

The arithmetic lives in :mod:`analytics.plan`, the state it judges in :mod:`hciwatch.plan_data`.
Exit codes make it a pipeline gate before ``Update-AksHci`` / ``az aksarc upgrade``: 0 every pool
fits (with ``--strict``: and keeps its reserve), 1 something does not fit, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from hciwatch.config import AppConfig

CONFIG_NAMES = ("config.toml", "demo-config.toml", "hciwatch.toml")


def add_plan_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--data-dir", default="data", metavar="DIR", help="the hciwatch data dir to read")
    s.add_argument("--config", help="the site's config (default: config.toml / demo-config.toml in the data dir)")
    s.add_argument("--plan", dest="plan_file", metavar="FILE", help="a TOML or JSON plan file ([[operation]] tables)")
    s.add_argument("--upgrade", action="append", default=[], metavar="all|C1,C2", help="upgrade clusters")
    s.add_argument("--scale", action="append", default=[], metavar="CLUSTER=N", help="scale a cluster by N nodes")
    s.add_argument(
        "--create", action="append", default=[], metavar="NAME=N[@NETWORK]", help="create a cluster of N nodes"
    )
    s.add_argument(
        "--add-services", action="append", default=[], metavar="CLUSTER=K", help="add K LoadBalancer services"
    )
    s.add_argument("--site-update", action="store_true", help="update every cluster of the site")
    s.add_argument("--ip-plan", choices=("22h2", "23h2"), help="override the config's analytics.pools.ip_plan")
    s.add_argument("--strict", action="store_true", help="exit 1 also when a pool fits but falls below its reserve")
    s.add_argument("--format", choices=("table", "json"), default="table", help="output format")


def find_config(data_dir: Path, explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    for name in CONFIG_NAMES:
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def site_config(args: argparse.Namespace) -> tuple[Path, AppConfig]:
    """The data dir and the site's config that ``plan`` and ``reclaim`` read (usage errors exit 2)."""
    from hciwatch.config import load_config
    from hciwatch.errorpolicy import UsageError

    data_dir = Path(args.data_dir)
    if not (data_dir / "ip_observations").is_dir():
        raise UsageError(f"{data_dir} is not an hciwatch data dir (no ip_observations/ in it)", fix="give --data-dir")
    cfg_path = find_config(data_dir, args.config)
    if cfg_path is None:
        raise UsageError(f"no config in {data_dir} ({', '.join(CONFIG_NAMES)})", fix="give --config FILE")
    return data_dir, load_config(cfg_path)


def run_plan(args: argparse.Namespace, console: Console, errconsole: Console) -> int:
    from analytics.plan import PlanError, Verdict, load_plan_file, operations_from_flags
    from hciwatch.plan_data import run_plan as run_plan_state

    data_dir, cfg = site_config(args)
    pools = cfg.analytics.pools
    if args.ip_plan:
        pools = pools.model_copy(update={"ip_plan": args.ip_plan})
    try:
        ops = load_plan_file(Path(args.plan_file)) if args.plan_file else []
        ops += operations_from_flags(
            upgrade=args.upgrade,
            scale=args.scale,
            create=args.create,
            add_services=args.add_services,
            site_update=args.site_update,
        )
        result = run_plan_state(data_dir, cfg.collector.networks, pools, ops)
    except (PlanError, ValueError) as exc:
        errconsole.print(f"[red]plan error[/]: {exc}", markup=True)
        return 2
    if args.format == "json":
        print(json.dumps(result.as_dict(), indent=2))
    else:
        _print(result.as_dict(), console)
    worst = result.worst
    if worst is Verdict.DOES_NOT_FIT or (args.strict and worst is Verdict.BELOW_RESERVE):
        return 1
    return 0


def _print(d: dict[str, Any], console: Console) -> None:
    t = Table(title=f"plan ({d['ip_plan']} IP plan, state as of {d['as_of']}): {'; '.join(d['operations'])}")
    for col in ("network", "pool", "needed", "free now", "free after", "reserve after", "verdict", "fits until"):
        t.add_column(col, overflow="fold")
    for p in d["pools"]:
        until = p["fits_until"] or "no significant growth"
        if p["verdict"] == "does not fit":
            until = "does not fit now"
        elif p["fits_until"] and p["slope_per_day"] is not None:
            until += f" (+{p['slope_per_day']:.1f}/day, {p['trend_method']})"
        t.add_row(
            p["network"],
            p["pool"],
            str(p["needed"]),
            f"{p['free_now']}/{p['size']}",
            str(p["free_after"]),
            str(p["reserve_after"]),
            p["verdict"],
            until,
        )
    console.print(t)
    for p in d["pools"]:
        console.print(f"{p['network']}/{p['pool']}:", markup=False)
        for w in p["why"]:
            n = f"{w['addresses']}" if "addresses" in w else f"reserve {w['reserve_change']:+d}"
            console.print(f"  {n}: {w['what']} [{w['rule']}]", markup=False)
    console.print(f"verdict: [bold]{d['verdict']}[/]")
    for rid, text in d["rules"].items():
        console.print(f"  [{rid}] {text}", markup=False)
