"""The one JSON model both operator views draw: ``hciwatch report`` inlines it into an HTML file,
the service's ``/`` page fetches it from ``GET /api/v1/report``.

Shape (``schema`` = ``hciwatch.report/1``; times in the series are Unix seconds, UTC; alert
changes keep :meth:`collector.schema.Alert.to_json`'s ISO-8601 strings, as the SSE stream)::

    {"schema", "generated_at", "site", "data_dir",
     "window": {"from", "to", "step_s"},
     "collected": see hciwatch.report.collected,
     "pools": [see hciwatch.report.pools],
     "congestion": see hciwatch.report.congestion,
     "conflicts": [see hciwatch.report.alerts.conflict_sightings],
     "alerts": [alert changes],
     "mac_attribution": {mac: see hciwatch.report.alerts.mac_attribution},
     "silences": [see hciwatch.silences.silences_for_view],
     "timings_ms": {section: ms}}

Everything is read through :func:`hciwatch.report.source.connect`, read-only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analytics.settings import PoolSettings
from collector.schema import iso
from hciwatch.report.alerts import alert_changes, conflict_sightings, mac_attribution
from hciwatch.report.collected import collected_view
from hciwatch.report.congestion import congestion_view
from hciwatch.report.pools import pool_views
from hciwatch.report.source import connect
from hciwatch.report.window import Window, resolve_window
from hciwatch.silences import silences_for_view

SCHEMA = "hciwatch.report/1"


def build_model(
    data_dir: Path,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    site: str | None = None,
    extra_views: Mapping[str, str] | None = None,
    ingest_summary: Mapping[str, Any] | None = None,
    pool_settings: PoolSettings | None = None,
    window: Window | None = None,
) -> dict[str, Any]:
    """Build the model for ``[start, end]`` (default: the last 48 h of stored data).

    Args:
        data_dir: the store's data directory (Parquet + ``catalog.duckdb``).
        start, end: the window, aware datetimes (naive ones are taken as UTC).
        site: a name for the header (the service passes ``[site] name``).
        extra_views: analyst view bodies to use instead of the catalog's.
        ingest_summary: parse/reject counters to show (see :mod:`hciwatch.report.collected`).
        pool_settings: the ``[analytics.pools]`` trend settings (defaults otherwise).
        window: an already resolved window (overrides ``start``/``end``).

    Raises:
        ValueError: the window is empty.
    """
    data_dir = Path(data_dir)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    win = window or resolve_window(data_dir, start, end)
    p = pool_settings or PoolSettings()
    con = connect(
        data_dir,
        datetime.fromtimestamp(win.start_s - p.trend_window.total_seconds(), UTC),
        win.end,
        extra_views=extra_views,
    )
    timings["open"] = time.perf_counter() - t0
    try:
        sections: dict[str, Any] = {}
        for name, fn in (
            ("collected", lambda: collected_view(con, win, data_dir, ingest_summary)),
            ("pools", lambda: pool_views(con, win, p)),
            ("congestion", lambda: congestion_view(con, win)),
            ("conflicts", lambda: conflict_sightings(con, win)),
            ("alerts", lambda: alert_changes(con, win)),
            ("mac_attribution", lambda: mac_attribution(con, win, sections["alerts"])),
        ):
            t = time.perf_counter()
            sections[name] = fn()
            timings[name] = time.perf_counter() - t
    finally:
        con.close()
    return {
        "schema": SCHEMA,
        "generated_at": iso(datetime.now(UTC)),
        "site": site,
        "data_dir": data_dir.resolve().name,
        "window": {"from": win.start_s, "to": win.end_s, "step_s": win.step_s},
        **sections,
        "silences": silences_for_view(data_dir, win.start, win.end),
        "timings_ms": {k: round(v * 1000, 1) for k, v in timings.items()},
    }
