"""Alert state changes and IP-conflict sightings for the window.

Changes keep the shape of :meth:`collector.schema.Alert.to_json` — the shape the SSE stream
sends — so the page derives incidents (duplicate IPs, congestion marks, the timeline, the table of
current alerts) with one piece of code whether a change came in the model or live.

An incident still open when the window starts began before it: its last change before the start
is included, or the page would miss an alert that is firing right now.

Evidence can be large (congestion evidence has every host's signals), and a window with hundreds
of incidents must still make a report that opens anywhere. So only the latest change of each
incident and its latest *firing* change (a resolution no longer lists the owners) keep evidence;
newest incidents first, they keep all of it until :data:`EVIDENCE_BUDGET` bytes are used, after
that only the keys the views draw from (:data:`VIEW_KEYS`), marked ``"evidence_trimmed": true``.
Runbooks are kept for incidents still firing (the table of current alerts shows them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import duckdb

from collector.schema import AlertStatus, iso, utc
from hciwatch.report.window import Window

MAX_CHANGES = 5_000
EVIDENCE_BUDGET = 1_000_000
VIEW_KEYS = {
    "duplicate_ip": (
        "ip",
        "network",
        "owners",
        "overlaps",
        "evidence_types",
        "evidence_types_seen",
        "macs_answering",
        "mac_owners",
        "tcpip_events",
        "different_ports",
        "neighbor_latest",
    ),
    "eastwest_congestion": ("hosts", "active_hosts", "onset", "ended", "condition_cleared_at"),
}


def _change(row: tuple[Any, ...]) -> dict[str, Any]:
    ts, fp, kind, status, severity, resource, summary, evidence, runbook, starts_at, ends_at = row
    try:
        ev = json.loads(evidence) if evidence else {}
    except ValueError:
        ev = {"unparsed": str(evidence)[:2000]}
    return {
        "fingerprint": str(fp),
        "kind": str(kind),
        "status": str(status),
        "severity": str(severity),
        "ts": iso(utc(ts)),
        "starts_at": iso(utc(starts_at)),
        "ends_at": iso(utc(ends_at)) if ends_at is not None else None,
        "resource": dict(sorted((str(e["key"]), str(e["value"])) for e in (resource or []))),
        "summary": str(summary),
        "evidence": ev,
        "runbook": str(runbook or ""),
    }


def select_changes(changes: Iterable[Mapping[str, Any]], start_iso: str, end_iso: str) -> list[dict[str, Any]]:
    """Changes in ``[start, end]`` plus the last earlier change of incidents open at the start.

    ``changes`` must be in time order; ISO-8601 ``...Z`` strings compare in time order.
    """
    before: dict[str, dict[str, Any]] = {}
    inside: list[dict[str, Any]] = []
    for c in changes:
        if c["ts"] < start_iso:
            before[c["fingerprint"]] = dict(c)
        elif c["ts"] <= end_iso:
            inside.append(dict(c))
    carried = [c for c in before.values() if c["status"] == AlertStatus.FIRING.value]
    out = sorted(carried + inside, key=lambda c: (c["ts"], c["status"] != "firing", c["fingerprint"]))
    if len(out) > MAX_CHANGES:
        out = out[-MAX_CHANGES:]
    last: dict[str, int] = {}
    last_firing: dict[str, int] = {}
    for i, c in enumerate(out):
        last[c["fingerprint"]] = i
        if c["status"] == AlertStatus.FIRING.value:
            last_firing[c["fingerprint"]] = i
    keep = set(last.values()) | set(last_firing.values())
    firing_now = {fp for fp, i in last.items() if out[i]["status"] == AlertStatus.FIRING.value}
    budget = EVIDENCE_BUDGET
    for i in range(len(out) - 1, -1, -1):  # newest first
        c = out[i]
        if c["fingerprint"] not in firing_now:
            c["runbook"] = ""
        if i not in keep:
            c["evidence"] = {}
            continue
        size = len(json.dumps(c["evidence"], separators=(",", ":")))
        if size <= budget:
            budget -= size
        else:
            c["evidence"] = {
                **{k: c["evidence"][k] for k in VIEW_KEYS.get(c["kind"], ()) if k in c["evidence"]},
                "evidence_trimmed": True,
            }
    return out


def alert_changes(con: duckdb.DuckDBPyConnection, win: Window) -> list[dict[str, Any]]:
    """Stored alert state changes for the window (see the module docstring)."""
    rows = con.execute(
        """
        SELECT ts, fingerprint, kind, status, severity, map_entries(resource), summary, evidence,
               runbook, starts_at, ends_at
        FROM alerts WHERE ts <= to_timestamp($end) AND date > DATE '1970-01-01'
        ORDER BY ts, fingerprint, status
    """,
        {"end": win.end_s},
    ).fetchall()
    return select_changes((_change(r) for r in rows), iso(win.start), iso(win.end))


def conflict_sightings(con: duckdb.DuckDBPyConnection, win: Window) -> list[dict[str, Any]]:
    """Per IP, the 5-minute buckets in which the ``ip_conflicts`` view saw more than one claimant,
    more than one MAC in neighbour tables, or a Tcpip conflict event."""
    rows = con.execute(
        """
        SELECT ip::VARCHAR, list(DISTINCT network::VARCHAR ORDER BY network::VARCHAR),
               list(epoch(bucket) ORDER BY bucket),
               list(claimants ORDER BY bucket), list(neighbor_macs ORDER BY bucket),
               flatten(list(claimed_by)), flatten(list(macs)), sum(conflict_events)
        FROM ip_conflicts
        WHERE bucket >= to_timestamp($start) AND bucket <= to_timestamp($end)
        GROUP BY ip ORDER BY ip
    """,
        {"start": win.start_s - 300, "end": win.end_s},
    ).fetchall()
    out = []
    for ip, networks, ts, claimants, nmacs, claimed_by, macs, events in rows:
        out.append(
            {
                "ip": ip,
                "networks": [n for n in networks if n],
                "t": [float(t) for t in ts],
                "claimants": [int(c or 0) for c in claimants],
                "neighbor_macs": [int(m or 0) for m in nmacs],
                "claimed_by": sorted({str(c) for c in (claimed_by or []) if c}),
                "macs": sorted({str(m) for m in (macs or []) if m}),
                "conflict_events": int(events or 0),
            }
        )
    return out


def _incident_macs(changes: Iterable[Mapping[str, Any]]) -> set[str]:
    macs: set[str] = set()
    for c in changes:
        if c["kind"] != "duplicate_ip":
            continue
        ev = c.get("evidence") or {}
        macs.update(str(m) for m in ev.get("macs_answering") or [])
        for o in ev.get("owners") or []:
            macs.update(str(m) for m in o.get("macs") or [])
        for e in ev.get("tcpip_events") or []:
            if e.get("conflicting_mac"):
                macs.add(str(e["conflicting_mac"]))
    return macs


def mac_attribution(
    con: duckdb.DuckDBPyConnection, win: Window, changes: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Whose are the MACs answering for a duplicated IP? Per MAC: the *other* addresses it answers
    for in neighbour tables, and the clusters and VMs that hold those addresses.

    Duplicate-IP evidence knows which MACs answered (ARP flip-flops, Tcpip events) but often not
    whose they are: Services and VIPs carry no MAC. The HAProxy VM that answers for one cluster's
    VIPs answers for all of them, so a MAC answering for addresses of exactly one cluster belongs
    to that cluster's load balancer (or a VM named by its node address).
    """
    changes = list(changes)
    macs = sorted(_incident_macs(changes))
    if not macs:
        return {}
    dup_ips = sorted({str(c["resource"].get("ip")) for c in changes if c["kind"] == "duplicate_ip"})
    rows = con.execute(
        """
        WITH n AS (
            SELECT DISTINCT mac, ip FROM ip_observations
            WHERE CAST(owner_kind AS VARCHAR) = 'neighbor' AND mac IN (SELECT unnest($macs))
              AND ip NOT IN (SELECT unnest($dup_ips))
              AND ts >= to_timestamp($start) AND ts <= to_timestamp($end)
        ), o AS (
            SELECT DISTINCT ip, CAST(owner_kind AS VARCHAR) AS kind, owner, CAST(cluster AS VARCHAR) AS cluster
            FROM ip_observations
            WHERE CAST(owner_kind AS VARCHAR) NOT IN ('neighbor', 'event', 'pod', 'haproxy-server')
              AND ip IN (SELECT ip FROM n)
              AND ts >= to_timestamp($start) AND ts <= to_timestamp($end)
        )
        SELECT n.mac, list(DISTINCT n.ip ORDER BY n.ip),
               list(DISTINCT o.cluster ORDER BY o.cluster) FILTER (WHERE o.cluster IS NOT NULL),
               list(DISTINCT o.kind || ' ' || o.owner ORDER BY o.kind || ' ' || o.owner)
                   FILTER (WHERE o.kind IN ('node', 'load-balancer', 'nic'))
        FROM n LEFT JOIN o ON o.ip = n.ip
        GROUP BY n.mac ORDER BY n.mac
    """,
        {"macs": macs, "dup_ips": dup_ips, "start": win.start_s, "end": win.end_s},
    ).fetchall()
    return {
        str(mac): {
            "also_answers_for": [str(i) for i in ips or []][:20],
            "clusters": [str(c) for c in clusters or []],
            "vms": [str(v) for v in vms or []][:10],
        }
        for mac, ips, clusters, vms in rows
    }


def merge_live(
    stored: Iterable[Mapping[str, Any]], live: Iterable[Mapping[str, Any]], start_iso: str
) -> list[dict[str, Any]]:
    """Stored changes plus the live feed's (which may not be flushed to the store yet), once each.

    Live changes from before the window are left out unless their incident is still firing; ones
    after the window's end are kept: they are newer than the newest stored data, not outside it.
    """
    out = [dict(c) for c in stored]
    have = {(c["fingerprint"], c["status"], c["ts"]) for c in out}
    live = list(live)
    latest = {c["fingerprint"]: c for c in live}
    for c in live:
        if (c["fingerprint"], c["status"], c["ts"]) in have:
            continue
        if c["ts"] < start_iso and not (c is latest[c["fingerprint"]] and c["status"] == AlertStatus.FIRING.value):
            continue
        have.add((c["fingerprint"], c["status"], c["ts"]))
        out.append(dict(c))
    out.sort(key=lambda c: (c["ts"], c["status"] != "firing", c["fingerprint"]))
    return out
