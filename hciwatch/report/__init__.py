"""Operator views: one JSON model of a data directory's window, drawn as a self-contained HTML
report (``hciwatch report``) or live by the service's ``/`` page.

Example::

    from hciwatch.report import write_report
    stats = write_report(Path("demo-data"), Path("demo-data/report.html"))
    print(stats.path, stats.bytes, stats.seconds)

Modules: :mod:`~hciwatch.report.model` (assembles the model), :mod:`~hciwatch.report.source`
(read-only DuckDB over the store), :mod:`~hciwatch.report.window`, one module per view
(:mod:`~hciwatch.report.pools`, :mod:`~hciwatch.report.congestion`, :mod:`~hciwatch.report.alerts`,
:mod:`~hciwatch.report.collected`) and :mod:`~hciwatch.report.render` (HTML).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hciwatch.report.model import build_model
from hciwatch.report.render import render_report

__all__ = ["ReportStats", "build_model", "render_report", "write_report"]


@dataclass(frozen=True, slots=True)
class ReportStats:
    """What :func:`write_report` wrote: where, how big, how long it took, what it shows."""

    path: Path
    bytes: int
    seconds: float
    window_from: float
    window_to: float
    pools: int
    duplicate_ip_incidents: int
    congestion_hosts: int
    alert_changes: int


def write_report(
    data_dir: Path,
    out: Path,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    site: str | None = None,
    ingest_summary: Mapping[str, Any] | None = None,
) -> ReportStats:
    """Write the self-contained HTML report of ``data_dir`` for ``[start, end]`` to ``out``.

    The window defaults to the last 48 h of stored data. The file is written under a temporary
    name and renamed, so a reader never opens half a report. ``ingest_summary`` (e.g.
    :func:`hciwatch.pipeline.summarize` of a replay) is shown as the header's parse errors;
    without it ``<data_dir>/ingest-summary.json`` is used when present.

    Raises:
        ValueError: the window is empty.
        OSError: ``out`` cannot be written.
    """
    started = time.perf_counter()
    model = build_model(Path(data_dir), start, end, site=site, ingest_summary=ingest_summary)
    page = render_report(model).encode("utf-8")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.write_bytes(page)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dups = {a["fingerprint"] for a in model["alerts"] if a["kind"] == "duplicate_ip"}
    return ReportStats(
        path=out,
        bytes=len(page),
        seconds=time.perf_counter() - started,
        window_from=model["window"]["from"],
        window_to=model["window"]["to"],
        pools=len(model["pools"]),
        duplicate_ip_incidents=len(dups),
        congestion_hosts=len(model["congestion"]["hosts"]),
        alert_changes=len(model["alerts"]),
    )
