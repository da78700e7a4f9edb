"""Congestion forgets hosts silent for ``baselines.forget_after``; the hosts it keeps are unchanged.

Why: the detector keeps per-host state, baselines and tails; without eviction a site whose hosts
are replaced or renamed carries every host it ever saw. The regression guard is that forgetting
one host (which renumbers the baseline and tail rows of the others) leaves every other host's
baseline, bar and score exactly as a detector that never forgets has them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from analytics.baselines import SOURCE_NONE
from analytics.congestion import NSIG, CongestionDetector, _Incident
from tests.analytics.harness import HOUR, MIN, settings

STEP = MIN
HOSTS = ("hci-a", "hci-b", "hci-c", "hci-d", "hci-e")


def _steps(hosts: tuple[str, ...], bucket: int, rng: np.random.Generator) -> pa.Table:
    """One step of a site in the shape :class:`analytics.rates.StepAccumulator` gives: per host a
    PFC pause rate, NIC discards, RDMA errors, SMB Δseconds/Δrequests and RDMA throughput."""
    rows: dict[str, list[object]] = {k: [] for k in ("metric", "host", "sub", "priority", "rate", "inc", "mean")}

    def add(metric: str, host: str, rate: float, inc: float) -> None:
        for k, v in zip(rows, (metric, host, "nic1", "3", rate, inc, math.nan), strict=True):
            rows[k].append(v)

    for h in hosts:
        add("pfc.rx_pause_frames_total", h, float(rng.poisson(20)), 0.0)
        add("net.packets_received_discarded_total", h, float(rng.poisson(2)), 0.0)
        add("rdma.cq_errors_total", h, float(rng.poisson(0.2)), 0.0)
        add("smb.client.request_seconds_total", h, 0.0, float(rng.gamma(4.0, 0.5)))
        add("smb.client.requests_total", h, 0.0, float(rng.poisson(1000)))
        add("rdma.inbound_bytes_total", h, float(rng.normal(1e9, 1e8)), 0.0)
    n = len(rows["host"])
    cols: dict[str, pa.Array[Any]] = {
        "bucket": pa.array(np.full(n, bucket, np.int64)),
        "rate": pa.array(rows["rate"], pa.float64()),
        "inc": pa.array(rows["inc"], pa.float64()),
        "mean": pa.array(rows["mean"], pa.float64()),
    }
    for k in ("metric", "host", "sub", "priority"):
        cols[k] = pa.array(rows[k], pa.string()).dictionary_encode()
    return pa.table(cols)


def _run(forget_after: str, schedule: list[tuple[int, tuple[str, ...]]]) -> CongestionDetector:
    s = settings(
        evaluation_interval="1m",
        baselines={
            "window": "1h",
            "min_points": 10,
            "refresh": "10m",
            "time_of_day": False,
            "forget_after": forget_after,
        },
        congestion={"tail_window": "1h", "if_min_train": 50, "if_retrain": "30m"},
    )
    det = CongestionDetector(s)
    rng = np.random.default_rng(5)
    for bucket, hosts in schedule:
        det.process(_steps(hosts, bucket, rng), bucket)
    return det


def _schedule(until_ms: int, *, back_at: int | None = None) -> list[tuple[int, tuple[str, ...]]]:
    """All hosts for an hour, then hci-c goes silent (and comes back at ``back_at``)."""
    out = []
    for b in range(STEP, until_ms + 1, STEP):
        gone = b > HOUR and (back_at is None or b < back_at)
        out.append((b, tuple(h for h in HOSTS if not (gone and h == "hci-c"))))
    return out


def _picture(det: CongestionDetector, host: str, bucket: int) -> tuple[object, ...]:
    ids = det.host_ids[host]
    med, sig, src = det.bank.baseline(ids)
    assert det.tail is not None
    kth = det.tail.kth(ids[:NSIG], bucket)
    return (med.tolist(), sig.tolist(), src.tolist(), kth.tolist(), det.scores[host])


def test_a_host_silent_past_forget_after_is_forgotten_and_the_others_are_unchanged() -> None:
    end = 4 * HOUR
    forgets = _run("2h", _schedule(end))
    keeps = _run("3d", _schedule(end))
    assert "hci-c" not in forgets.hosts and "hci-c" not in forgets.host_ids and "hci-c" not in forgets.scores
    assert forgets.forgotten == 1 and keeps.forgotten == 0 and "hci-c" in keeps.hosts
    assert len(forgets.bank) == (len(HOSTS) - 1) * (NSIG + 1)
    assert len(keeps.bank) == len(HOSTS) * (NSIG + 1)
    for h in HOSTS:
        if h != "hci-c":
            assert repr(_picture(forgets, h, end)) == repr(_picture(keeps, h, end)), h  # exact, NaN included


def test_a_forgotten_host_that_comes_back_learns_afresh() -> None:
    det = _run("2h", _schedule(4 * HOUR, back_at=4 * HOUR - 5 * MIN))
    assert det.forgotten == 1 and "hci-c" in det.hosts
    # five steps of its own: no baseline of its own yet (it is judged against its peers)
    assert (det.bank.history_points(det.host_ids["hci-c"]) == 5).all()
    assert (det.bank.baseline(det.host_ids["hci-c"])[2] == SOURCE_NONE).all()


def test_a_host_named_by_a_reported_incident_is_kept() -> None:
    s = settings(baselines={"forget_after": "2h"})
    det = CongestionDetector(s)
    rng = np.random.default_rng(1)
    det.process(_steps(HOSTS, MIN, rng), MIN)
    det.incidents[1] = _Incident(1, "hci-c", {"hci-c": MIN}, MIN, active=False, ended=MIN)
    det._forget(MIN + 3 * HOUR)
    assert "hci-c" in det.hosts and "hci-a" not in det.hosts and det.forgotten == len(HOSTS) - 1
