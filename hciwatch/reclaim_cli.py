"""``hciwatch reclaim``: every holder of every pool address and the reclaim candidates, from a data dir.

The rules are in :mod:`analytics.reclaim`; this module reads the stored evidence (current holders as
:mod:`hciwatch.plan_data` reads them, HAProxy frontend counters, neighbour sightings) and prints it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from analytics.reclaim import FrontendTraffic, WireSighting

TRAFFIC_SQL = """
WITH s AS (
    SELECT labels['cluster'] AS cluster, labels['proxy'] AS proxy, CAST(host AS VARCHAR) AS host, metric, ts, value
    FROM all_samples
    WHERE metric IN ('haproxy.sessions_total', 'haproxy.bytes_in_total') AND labels['type'] = 'frontend'
      AND ts >= $start
), d AS (
    SELECT *, value - lag(value) OVER (PARTITION BY cluster, proxy, host, metric ORDER BY ts) AS dv FROM s
)
SELECT cluster, proxy, epoch_ms(min(ts)), epoch_ms(max(ts)), epoch_ms(max(ts) FILTER (WHERE dv > 0)),
       coalesce(sum(dv) FILTER (WHERE dv > 0 AND metric = 'haproxy.sessions_total'), 0)
FROM d WHERE cluster IS NOT NULL AND proxy IS NOT NULL GROUP BY ALL
"""

WIRE_SQL = """
SELECT ip, epoch_ms(min(ts)), epoch_ms(max(ts)), list(DISTINCT mac) FILTER (WHERE mac IS NOT NULL),
       list(DISTINCT split_part(owner, '/', 1))
FROM ip_observations WHERE owner_kind = 'neighbor' AND ts >= $start GROUP BY ip
"""


def add_reclaim_arguments(s: argparse.ArgumentParser) -> None:
    from hciwatch.plan_cli import CONFIG_NAMES

    s.add_argument("--data-dir", default="data", metavar="DIR", help="the hciwatch data dir to read")
    s.add_argument("--config", help=f"the site's config (default: {' / '.join(CONFIG_NAMES)} in the data dir)")
    s.add_argument(
        "--idle",
        default="6h",
        metavar="DURATION",
        help="a LoadBalancer service whose frontends carried no sessions/bytes this long is a candidate (default 6h)",
    )
    s.add_argument("--holders", action="store_true", help="also list every holder of every pool address")
    s.add_argument("--format", choices=("table", "json"), default="table", help="output format")


def collect(data_dir: Path, networks: Any, pools: Any, idle_ms: int) -> dict[str, Any]:
    """Holders and candidates as one JSON-able dict (also what the tests read)."""
    from analytics.networks import NetworkIndex
    from analytics.reclaim import find_candidates, holder_rows
    from collector.schema import from_ms, iso
    from hciwatch.plan_data import load_state
    from hciwatch.report.source import connect

    state = load_state(data_dir, networks, pools)
    ttl_ms = int(pools.allocation_ttl.total_seconds() * 1000)
    start = from_ms(state.now_ms - idle_ms - 3_600_000)
    con = connect(data_dir, start)
    try:
        traffic = [
            FrontendTraffic(str(c), str(p), int(a), int(b), None if x is None else int(x), float(n))
            for c, p, a, b, x, n in con.execute(TRAFFIC_SQL, {"start": start}).fetchall()
        ]
        wire = {
            str(ip): WireSighting(str(ip), int(a), int(b), tuple(sorted(m or [])), tuple(sorted(o or [])))
            for ip, a, b, m, o in con.execute(WIRE_SQL, {"start": start}).fetchall()
        }
    finally:
        con.close()
    arp_lb = {ip: (key, c) for key, m in state.lb_vms.items() for ip, c in m.items() if c.startswith("HAProxy VM")}
    wire = {ip: w for ip, w in wire.items() if ip not in arp_lb}  # an HAProxy VM is a holder, not a candidate
    index = NetworkIndex(state.plans)
    pool_of: dict[str, tuple[str, str]] = {}
    for ip in wire:
        ranges = index.lookup(ip)[1]
        if ranges:
            pool_of[ip] = (ranges[0].network, ranges[0].pool)
    cands = find_candidates(
        state.holders, traffic, wire, pool_of=pool_of, now_ms=state.now_ms, idle_ms=idle_ms, ttl_ms=ttl_ms
    )

    def t(ms: Any) -> Any:
        return iso(from_ms(int(ms))) if isinstance(ms, int) else ms

    out_c = []
    for c in cands:
        d = asdict(c)
        d["since"] = t(d.pop("since_ms"))
        d["evidence"] = {
            k: t(v) if k.endswith(("_since", "_seen", "holds_since")) else v for k, v in c.evidence.items()
        }
        out_c.append(d)
    rows = holder_rows(state.holders)
    for r in rows:
        r["since"], r["last_seen"] = t(r.pop("since_ms")), t(r.pop("last_seen_ms"))
    for ip, ((network, pool), who) in sorted(arp_lb.items()):
        cluster = who.removeprefix("HAProxy VM of ").split(" ", 1)[0]
        rows.append(
            {
                "network": network,
                "pool": pool,
                "ip": ip,
                "kind": "load-balancer",
                "holder": who,
                "cluster": cluster,
                "since": None,
                "last_seen": None,
            }
        )
    return {"as_of": t(state.now_ms), "idle_hours": idle_ms / 3_600_000, "candidates": out_c, "holders": rows}


def run_reclaim(args: argparse.Namespace, console: Console, errconsole: Console) -> int:
    from analytics.settings import parse_duration
    from hciwatch.plan_cli import site_config

    data_dir, cfg = site_config(args)
    try:
        idle_ms = int(parse_duration(args.idle).total_seconds() * 1000)
    except ValueError as exc:
        errconsole.print(f"[red]error[/]: --idle: {exc}")
        return 2
    try:
        d = collect(data_dir, cfg.collector.networks, cfg.analytics.pools, idle_ms)
    except ValueError as exc:
        errconsole.print(f"[red]error[/]: {exc}")
        return 2
    if not args.holders:
        d.pop("holders")
    if args.format == "json":
        print(json.dumps(d, indent=2))
        return 0
    if args.holders:
        t = Table(title=f"pool holders as of {d['as_of']}")
        for col in ("network", "pool", "ip", "kind", "holder", "cluster", "since"):
            t.add_column(col, overflow="fold")
        for r in d["holders"]:
            t.add_row(r["network"], r["pool"], r["ip"], r["kind"], r["holder"], r["cluster"] or "", r["since"])
        console.print(t)
    console.print(f"[bold]reclaim candidates[/] (idle ≥ {d['idle_hours']:g} h) as of {d['as_of']}")
    for c in d["candidates"]:
        console.print(
            f"{c['network']}/{c['pool']} {c['ip']}: {c['reason']} — {c['holder']}"
            + (f" in {c['cluster']}" if c["cluster"] else "")
            + f", since {c['since']}",
            markup=False,
        )
        for k, v in c["evidence"].items():
            console.print(f"    {k}: {v}", markup=False)
        console.print(f"    inspect: {c['command']}", markup=False)
    console.print(f"{len(d['candidates'])} candidate(s)")
    return 0
