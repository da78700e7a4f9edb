"""The header of the views: what was collected in the window, so a quiet chart can be told apart
from a source that sent nothing.

Sources, targets (distinct source × host) and sample counts come from the store itself. Parse
errors are not stored with the data (the service counts them in memory and exports them at
``/metrics``), so they are shown from an *ingest summary* when one is available: the one the
caller passes (the service's live counters, a replay's :func:`hciwatch.pipeline.summarize`) or
``<data_dir>/ingest-summary.json`` written next to the data; otherwise the header says they were
not recorded rather than showing a reassuring zero.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb

from collector.schema import iso, utc
from hciwatch.report.window import Window

log = logging.getLogger(__name__)

INGEST_SUMMARY_FILE = "ingest-summary.json"
MAX_TARGET_ROWS = 500
_SUMMARY_KEYS = (
    "records_read",
    "records_rejected",
    "skipped_parts",
    "reject_reasons",
    "samples_stored",
    "ip_observations_stored",
    "records_by_kind",
    "from",
    "to",
)
MAX_MESSAGES = 20


def read_ingest_summary(data_dir: Path) -> dict[str, Any] | None:
    """``<data_dir>/ingest-summary.json`` if present and readable."""
    path = Path(data_dir) / INGEST_SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _ingest(summary: Mapping[str, Any] | None, origin: str) -> dict[str, Any] | None:
    if summary is None:
        return None
    out: dict[str, Any] = {k: summary[k] for k in _SUMMARY_KEYS if k in summary}
    rejected = summary.get("rejected")
    if isinstance(rejected, list):  # the first precise messages ("file:line [target]: why")
        out["rejected"] = [str(m)[:500] for m in rejected[:MAX_MESSAGES]]
    targets = summary.get("targets")
    if isinstance(targets, list):  # the live service's per-target health (scheduler + parse errors)
        out["targets"] = [dict(t) for t in targets[:MAX_TARGET_ROWS] if isinstance(t, Mapping)]
    out["origin"] = origin
    return out


def _new_source(name: str | None) -> dict[str, Any]:
    return {"source": name or "?", "targets": [], "samples": 0, "first": None, "last": None}


def collected_view(
    con: duckdb.DuckDBPyConnection, win: Window, data_dir: Path, ingest_summary: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Per source: targets, samples, first/last sample; IP observations; parse errors."""
    params = {"start": win.start_s, "end": win.end_s}
    rows = con.execute(
        """
        SELECT source::VARCHAR, host::VARCHAR, count(*), min(ts), max(ts)
        FROM all_samples WHERE ts >= to_timestamp($start) AND ts <= to_timestamp($end)
        GROUP BY ALL
    """,
        params,
    ).fetchall()
    sources: dict[str, dict[str, Any]] = {}
    for source, host, n, first, last in rows:
        s = sources.setdefault(source or "?", _new_source(source))
        s["targets"].append(host)
        s["samples"] += int(n)
        f, la = iso(utc(first)), iso(utc(last))
        s["first"] = f if s["first"] is None or f < s["first"] else s["first"]
        s["last"] = la if s["last"] is None or la > s["last"] else s["last"]
    obs = con.execute(
        """
        SELECT source::VARCHAR, count(*), count(DISTINCT ip), min(ts), max(ts) FROM ip_observations
        WHERE ts >= to_timestamp($start) AND ts <= to_timestamp($end) GROUP BY ALL
    """,
        params,
    ).fetchall()
    for source, n, ips, first, last in obs:
        s = sources.setdefault(source or "?", _new_source(source))
        s["ip_observations"] = int(n)
        s["distinct_ips"] = int(ips)
        if s["first"] is None:  # a source that only observes addresses (neighbour tables)
            s["first"], s["last"] = iso(utc(first)), iso(utc(last))
    listed = []
    for s in sorted(sources.values(), key=lambda x: x["source"]):
        s["targets"] = sorted(t for t in s["targets"] if t)
        s.setdefault("ip_observations", 0)
        listed.append(s)
    if ingest_summary is not None:
        ingest = _ingest(ingest_summary, str(ingest_summary.get("origin", "the ingest that stored this data")))
    else:
        ingest = _ingest(read_ingest_summary(data_dir), INGEST_SUMMARY_FILE)
    return {
        "sources": listed,
        "targets": sum(len(s["targets"]) for s in listed),
        "samples": sum(s["samples"] for s in listed),
        "ip_observations": sum(s["ip_observations"] for s in listed),
        "ingest": ingest,
    }
