"""East-west congestion as a host × time heat strip: PFC pause-frame rate and SMB client latency,
each against the host's own baseline.

How the numbers are made, and why:

* **No labels read.** A scrape of one host delivers every NIC/priority/direction series of a
  counter at the same ``ts``, so summing a counter over its series per scrape gives one
  host-level counter (pause frames of all NICs and priorities, rx + tx, as the analyst view
  ``congestion_signals`` sums them) without reading the ``labels`` column, the costly one.
  An interval is rated only when both scrapes saw the same number of series (a NIC appearing
  would otherwise look like a burst), the sum did not drop (a counter reset) and the scrapes are
  at most :data:`MAX_GAP_S` apart (no interpolation across scrape gaps), the rules of
  ``analytics.rates``.
* **Buckets.** Each interval counts in the bucket its later scrape falls in; a bucket's rate is
  its pause frames over its rated seconds. SMB latency is Δ seconds spent in requests over
  Δ requests (the raw windows_exporter form), else the mean of Telegraf's formatted
  ``Avg. sec/Data Request``.
* **Baseline.** Per host and signal: the median of the host's buckets over the window, with
  1.4826 × MAD as its spread — robust to the incident itself as long as it lasts less than half
  the window. The page colours a cell by value ÷ max(baseline, floor); the floors (1 pause frame
  per second, 0.1 ms) keep an idle, all-zero host from lighting up at its first pause frame.
"""

from __future__ import annotations

import math
from typing import Any

import duckdb
import numpy as np

from hciwatch.report.numbers import num
from hciwatch.report.window import Window

MAX_GAP_S = 300
PFC = ("pfc.rx_pause_frames_total", "pfc.tx_pause_frames_total")
SMB_SECONDS = "smb.client.request_seconds_total"
SMB_REQUESTS = "smb.client.requests_total"
SMB_AVG = "smb.client.request_avg_seconds"

SIGNALS: tuple[dict[str, Any], ...] = (
    {
        "key": "pfc",
        "label": "PFC pause frames (rx + tx, all NICs and priorities)",
        "unit": "frames/s",
        "scale": 1.0,
        "floor": 1.0,
    },
    {"key": "smb", "label": "SMB client latency (per request)", "unit": "ms", "scale": 1000.0, "floor": 0.1},
)

_SQL = f"""
WITH s AS (
    SELECT source, host, metric, ts, sum(value) AS v, avg(value) AS a, count(*) AS n
    FROM all_samples
    WHERE metric IN ({", ".join(f"'{m}'" for m in (*PFC, SMB_SECONDS, SMB_REQUESTS, SMB_AVG))})
      AND ts >= to_timestamp($start) AND ts <= to_timestamp($end)
    GROUP BY ALL
), d AS (
    SELECT source, host, metric, ts, a,
           v - lag(v) OVER w AS dv,
           epoch(ts) - epoch(lag(ts) OVER w) AS dt,
           n - lag(n) OVER w AS dn
    FROM s WINDOW w AS (PARTITION BY source, host, metric ORDER BY ts)
), g AS (
    SELECT source, host, metric, floor((epoch(ts) - $origin) / $step)::BIGINT AS k,
           sum(dv) FILTER (WHERE dv >= 0 AND dt > 0 AND dt <= {MAX_GAP_S} AND dn = 0) AS sdv,
           sum(dt) FILTER (WHERE dv >= 0 AND dt > 0 AND dt <= {MAX_GAP_S} AND dn = 0) AS sdt,
           avg(a) FILTER (WHERE a > 0) AS av
    FROM d GROUP BY ALL
)
SELECT host::VARCHAR, k,
       sum(sdv / nullif(sdt, 0)) FILTER (WHERE metric IN ('{PFC[0]}', '{PFC[1]}')) AS pfc,
       coalesce(sum(sdv) FILTER (WHERE metric = '{SMB_SECONDS}')
                / nullif(sum(sdv) FILTER (WHERE metric = '{SMB_REQUESTS}'), 0),
                avg(av) FILTER (WHERE metric = '{SMB_AVG}')) AS smb
FROM g GROUP BY ALL ORDER BY 1, 2
"""


def _baseline(values: list[float | None]) -> tuple[float | None, float | None]:
    arr = np.array([v for v in values if v is not None], np.float64)
    if arr.size == 0:
        return None, None
    med = float(np.median(arr))
    return med, float(1.4826 * np.median(np.abs(arr - med)))


def congestion_view(con: duckdb.DuckDBPyConnection, win: Window) -> dict[str, Any]:
    """The heat strip's grid: bucket starts, hosts, and per signal a host × bucket matrix."""
    origin = math.floor(win.start_s / win.step_s) * win.step_s  # buckets on round times, as the pools'
    rows = con.execute(_SQL, {"start": win.start_s, "end": win.end_s, "step": win.step_s, "origin": origin}).fetchall()
    nb = max(1, math.ceil((win.end_s - origin) / win.step_s))
    hosts = sorted({str(r[0]) for r in rows if r[0] is not None})
    index = {h: i for i, h in enumerate(hosts)}
    grids: dict[str, list[list[float | None]]] = {s["key"]: [[None] * nb for _ in hosts] for s in SIGNALS}
    for host, k, pfc, smb in rows:
        if host is None or k is None or not 0 <= int(k) < nb:
            continue
        i = index[str(host)]
        grids["pfc"][i][int(k)] = pfc
        grids["smb"][i][int(k)] = smb
    signals = []
    for s in SIGNALS:
        scale = float(s["scale"])
        values = [[None if v is None else v * scale for v in row] for row in grids[s["key"]]]
        stats = [_baseline(row) for row in values]
        signals.append(
            {
                "key": s["key"],
                "label": s["label"],
                "unit": s["unit"],
                "floor": s["floor"],
                "values": [[num(v) for v in row] for row in values],
                "baseline": [num(b) for b, _ in stats],
                "spread": [num(sp) for _, sp in stats],
            }
        )
    return {
        "t": [origin + i * win.step_s for i in range(nb)],
        "step_s": win.step_s,
        "hosts": hosts,
        "baseline_method": "median of the host's buckets over the window; spread 1.4826 × MAD",
        "signals": signals,
    }
