"""The report model without a browser: window and downsampling, pool forecast, congestion rates,
alert selection and evidence budget, live merge, MAC attribution, HTML safety, and the size of a
48 h, 4-host site's report."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from collector.schema import SAMPLES_SCHEMA, TS_TYPE, AlertKind, AlertStatus
from hciwatch.report import build_model, render_report, write_report
from hciwatch.report.alerts import EVIDENCE_BUDGET, VIEW_KEYS, mac_attribution, merge_live, select_changes
from hciwatch.report.congestion import congestion_view
from hciwatch.report.numbers import num
from hciwatch.report.render import _script_hash, asset
from hciwatch.report.window import MAX_POINTS, Window, resolve_window, step_for
from tests.report.conftest import Replayed
from tests.report.synth import write_site

T0 = datetime(2026, 11, 16, tzinfo=UTC)
MAX_REPORT_BYTES = 3 * 1024 * 1024


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def change(fp: str, status: str, t: datetime, kind: str = "duplicate_ip", **evidence: Any) -> dict[str, Any]:
    return {
        "fingerprint": fp,
        "kind": kind,
        "status": status,
        "severity": "Sev1",
        "ts": iso(t),
        "starts_at": iso(t),
        "ends_at": iso(t) if status == "resolved" else None,
        "resource": {"ip": fp},
        "summary": f"{fp} {status}",
        "evidence": dict(evidence),
        "runbook": "do this",
    }


# -- window and numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "step"),
    [(timedelta(hours=2), 300), (timedelta(hours=48), 300), (timedelta(days=7), 1800), (timedelta(days=30), 7200)],
)
def test_step_keeps_series_short(span: timedelta, step: int) -> None:
    assert step_for(span) == step
    points = span // timedelta(seconds=step)  # a series has at most this many buckets
    assert points <= MAX_POINTS


def test_window_defaults_to_the_last_48_hours_of_data(tmp_path: Path) -> None:
    site = write_site(tmp_path, hours=60, hosts=1, nics=1, prios=1, incidents=1, interval_s=600)
    win = resolve_window(tmp_path, None, None)
    assert win.end <= site.end and site.end - win.end < timedelta(minutes=10)
    assert win.end - win.start == timedelta(hours=48)
    with pytest.raises(ValueError, match="empty"):
        resolve_window(tmp_path, T0 + timedelta(hours=2), T0 + timedelta(hours=1))


def test_numbers_are_short_and_json_safe() -> None:
    assert num(1234.5678) == 1235
    assert num(0.000123456) == 0.0001235
    assert num(float("nan")) is None and num(float("inf")) is None and num(None) is None
    assert num(7) == 7 and num(7.0) == 7 and num(True) == 1


# -- alert changes ----------------------------------------------------------------------------------


def test_select_changes_carries_incidents_open_at_the_start() -> None:
    start, end = T0 + timedelta(hours=10), T0 + timedelta(hours=20)
    changes = [
        change("open-before", "firing", T0 + timedelta(hours=1)),
        change("closed-before", "firing", T0 + timedelta(hours=2)),
        change("closed-before", "resolved", T0 + timedelta(hours=3)),
        change("inside", "firing", T0 + timedelta(hours=11), big="x"),
        change("inside", "firing", T0 + timedelta(hours=12), big="y"),  # an escalation
        change("inside", "resolved", T0 + timedelta(hours=13)),
        change("after", "firing", T0 + timedelta(hours=21)),
    ]
    out = select_changes(changes, iso(start), iso(end))
    assert [(c["fingerprint"], c["status"]) for c in out] == [
        ("open-before", "firing"),
        ("inside", "firing"),
        ("inside", "firing"),
        ("inside", "resolved"),
    ]
    # evidence is kept on the latest change and the latest firing one only
    assert [c["evidence"] for c in out[1:]] == [{}, {"big": "y"}, {}]
    # runbooks only for what is still firing
    assert out[0]["runbook"] == "do this" and all(c["runbook"] == "" for c in out[1:])


def test_evidence_over_the_budget_keeps_what_the_views_draw() -> None:
    filler = "z" * (EVIDENCE_BUDGET // 3)
    changes = [
        change(
            f"ip{i}",
            "firing",
            T0 + timedelta(minutes=i),
            owners=[{"claimant": f"c{i}"}],
            macs_answering=["00:11:22:33:44:55"],
            filler=filler,
        )
        for i in range(6)
    ]
    out = select_changes(changes, iso(T0), iso(T0 + timedelta(hours=1)))
    full = [c for c in out if "filler" in c["evidence"]]
    trimmed = [c for c in out if c["evidence"].get("evidence_trimmed")]
    assert len(full) == 2 and len(trimmed) == 4
    assert {c["fingerprint"] for c in full} == {"ip5", "ip4"}  # the newest keep everything
    for c in trimmed:
        assert set(c["evidence"]) <= {*VIEW_KEYS["duplicate_ip"], "evidence_trimmed"}
        assert c["evidence"]["owners"] and c["evidence"]["macs_answering"]


def test_merge_live_adds_feed_changes_once() -> None:
    start = T0 + timedelta(hours=1)
    stored = [change("a", "firing", T0 + timedelta(hours=2))]
    live = [
        change("old", "firing", T0),
        change("old", "resolved", T0 + timedelta(minutes=5)),  # done before
        change("still", "firing", T0 + timedelta(minutes=10)),  # open at the start: kept
        change("a", "firing", T0 + timedelta(hours=2)),  # already stored
        change("new", "firing", T0 + timedelta(hours=30)),  # newer than the data: kept
    ]
    out = merge_live(stored, live, iso(start))
    assert [(c["fingerprint"], c["status"]) for c in out] == [("still", "firing"), ("a", "firing"), ("new", "firing")]


# -- views on small hand-made tables ----------------------------------------------------------------


def _samples(rows: list[tuple[float, str, str, dict[str, str], float]]) -> pa.Table:
    return pa.table(
        {
            "ts": pa.array([int((T0.timestamp() + t) * 1000) for t, *_ in rows], pa.int64()).cast(TS_TYPE),
            "source": pa.array(["windows"] * len(rows)).dictionary_encode(),
            "host": pa.array([r[1] for r in rows]).dictionary_encode(),
            "metric": pa.array([r[2] for r in rows]).dictionary_encode(),
            "labels": pa.array([list(r[3].items()) for r in rows], pa.map_(pa.string(), pa.string())),
            "value": pa.array([r[4] for r in rows], pa.float64()),
        },
        schema=SAMPLES_SCHEMA,
    )


def test_congestion_rates_skip_resets_gaps_and_series_changes() -> None:
    pfc = "pfc.rx_pause_frames_total"
    rows: list[tuple[float, str, str, dict[str, str], float]] = []
    value = 0.0
    for k in range(30):  # host a: 10 frames/s on one NIC, scraped every 60 s, reset at k = 12
        value = 0.0 if k == 12 else value + 600
        rows.append((k * 60.0, "a", pfc, {"nic": "n1"}, value))
    for k in range(30):  # host b: 1 frame/s on n1; from k = 20 a second NIC appears holding 1e6 already
        rows.append((k * 60.0, "b", pfc, {"nic": "n1"}, 60.0 * k))
        if k >= 20:
            rows.append((k * 60.0, "b", pfc, {"nic": "n2"}, 1e6 + 60.0 * (k - 20)))
    for k in (0, 1, 2, 10, 11):  # host c: a 8-minute scrape gap is not rated
        rows.append((k * 60.0, "c", pfc, {"nic": "n1"}, 5.0 * 60 * k))
    for k in range(30):  # SMB on host a: 100 requests/min taking 2 ms each
        rows.append((k * 60.0, "a", "smb.client.requests_total", {}, 100.0 * k))
        rows.append((k * 60.0, "a", "smb.client.request_seconds_total", {}, 0.2 * k))
    con = duckdb.connect()
    con.register("all_samples", _samples(rows))
    view = congestion_view(con, Window(T0, T0 + timedelta(minutes=30), 300))
    sig = {s["key"]: s for s in view["signals"]}
    a, b, c = (view["hosts"].index(h) for h in "abc")
    assert all(v == pytest.approx(10.0) for v in sig["pfc"]["values"][a] if v is not None)
    # 1 frame/s, then 2 once the second NIC is rated; never the 1e6 it brought along
    assert [v for v in sig["pfc"]["values"][b] if v is not None] == pytest.approx([1, 1, 1, 1, 2, 2])
    assert all(v is None or v == pytest.approx(5.0) for v in sig["pfc"]["values"][c])
    assert sig["pfc"]["values"][c][1] is None  # the gap's bucket has nothing rated
    assert all(v == pytest.approx(2.0) for v in sig["smb"]["values"][a] if v is not None)  # ms
    assert sig["pfc"]["baseline"][a] == pytest.approx(10.0)
    assert len(view["t"]) == 6


def test_mac_attribution_names_the_cluster_a_mac_answers_for() -> None:
    obs = [
        ("10.0.0.5", "aa:aa:aa:aa:aa:aa", "neighbor", "host1/nic", None),
        ("10.0.0.5", "bb:bb:bb:bb:bb:bb", "neighbor", "host1/nic", None),
        ("10.0.0.6", "aa:aa:aa:aa:aa:aa", "neighbor", "host1/nic", None),
        ("10.0.0.6", None, "control-plane", "wl-a/apiserver", "wl-a"),
        ("10.0.0.7", "bb:bb:bb:bb:bb:bb", "neighbor", "host1/nic", None),
        ("10.0.0.7", None, "service", "ns/svc", "wl-b"),
        ("10.0.0.8", "bb:bb:bb:bb:bb:bb", "neighbor", "host1/nic", None),
        ("10.0.0.8", None, "node", "vm-lb-b", "wl-b"),
    ]
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE ip_observations (ts TIMESTAMPTZ, ip VARCHAR, mac VARCHAR, owner_kind VARCHAR, "
        "owner VARCHAR, cluster VARCHAR)"
    )
    con.executemany(
        "INSERT INTO ip_observations VALUES (?, ?, ?, ?, ?, ?)", [(T0 + timedelta(minutes=1), *o) for o in obs]
    )
    changes = [change("10.0.0.5", "firing", T0, macs_answering=["aa:aa:aa:aa:aa:aa", "bb:bb:bb:bb:bb:bb"])]
    changes[0]["resource"] = {"ip": "10.0.0.5"}
    got = mac_attribution(con, Window(T0, T0 + timedelta(hours=1), 300), changes)
    assert got["aa:aa:aa:aa:aa:aa"] == {"also_answers_for": ["10.0.0.6"], "clusters": ["wl-a"], "vms": []}
    assert got["bb:bb:bb:bb:bb:bb"]["clusters"] == ["wl-b"]
    assert got["bb:bb:bb:bb:bb:bb"]["vms"] == ["node vm-lb-b"]


# -- a 48 h, 4-host site ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site_48h(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return write_site(tmp_path_factory.mktemp("site48h"), hours=48, hosts=4, interval_s=60, incidents=300)


def test_48h_four_host_report_is_small(site_48h: Any, tmp_path: Path) -> None:
    stats = write_report(site_48h.data_dir, tmp_path / "r.html")
    assert stats.bytes < MAX_REPORT_BYTES, stats
    assert stats.congestion_hosts == 4 and stats.pools == 1 and stats.alert_changes == 600
    model = build_model(site_48h.data_dir)
    assert len(model["congestion"]["t"]) <= MAX_POINTS
    assert all(len(p["t"]) <= MAX_POINTS for p in model["pools"])


def test_pool_forecast_covers_the_true_leak(site_48h: Any) -> None:
    model = build_model(site_48h.data_dir)
    (pool,) = model["pools"]
    rate = site_48h.vip_leak_per_hour * 24
    tr = pool["trend"]
    assert tr["slope_per_day_low"] <= rate <= tr["slope_per_day_high"]
    # the reserve is crossed when usage reaches size − reserve; the leak says when that truly is
    hours = (pool["size"] - pool["reserve"] - site_48h.vip_start_used) / site_48h.vip_leak_per_hour
    truth = (site_48h.start + timedelta(hours=hours)).timestamp()
    rc = pool["reserve_crossing"]
    assert rc["earliest"] <= truth and (rc["latest"] is None or truth <= rc["latest"])
    assert pool["forecast"]["t"][0] == pool["last_t"]
    assert all(
        lo <= mid <= hi
        for lo, mid, hi in zip(pool["forecast"]["lo"], pool["forecast"]["mid"], pool["forecast"]["hi"], strict=True)
    )


def test_report_forecast_tells_the_pool_alerts_story(vip_leak: Replayed) -> None:
    """The chart's reserve crossing, rebuilt from the stored data at the moment the alert was
    raised, agrees with the alert: each estimate lies inside the other's confidence interval, and
    both name the same estimator."""
    fired = [
        a
        for a in vip_leak.alerts
        if a.kind is AlertKind.VIP_POOL_EXHAUSTION
        and a.status is AlertStatus.FIRING
        and a.evidence.get("hours_to_reserve") is not None
    ]
    assert fired, "the leak must be forecast by the detector"
    for a in fired:
        assert a.ts is not None
        model = build_model(vip_leak.data_dir, end=a.ts)
        (pool,) = [
            p for p in model["pools"] if (p["network"], p["pool"]) == (a.resource["network"], a.resource["pool"])
        ]
        assert pool["trend"]["method"] == a.evidence["trend"]["method"]
        hours = a.evidence["hours_to_reserve"]
        low, high = a.evidence["hours_to_reserve_interval"]
        alert_at = a.ts.timestamp() + hours * 3600
        rc = pool["reserve_crossing"]
        assert rc["earliest"] <= alert_at and (rc["latest"] is None or alert_at <= rc["latest"])
        latest = math.inf if high is None else a.ts.timestamp() + high * 3600
        assert a.ts.timestamp() + low * 3600 <= rc["at"] <= latest


# -- HTML --------------------------------------------------------------------------------------------


def test_html_pins_its_scripts_and_cannot_be_broken_out_of(site_48h: Any) -> None:
    model = build_model(site_48h.data_dir)
    evil = "</script><script>alert(1)</script><!-- {{APP_JS}} & \u2028"
    model["site"] = evil
    model["alerts"][0]["summary"] = evil
    page = render_report(model)
    block = re.search(r'<script type="application/json" id="hciwatch-model">(.*?)</script>', page, flags=re.S)
    assert block is not None
    back = json.loads(block.group(1))
    assert back["site"] == evil and back["alerts"][0]["summary"] == evil
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    for script in (asset("vendor/uPlot.iife.min.js"), asset("app.js")):
        assert _script_hash(script) in csp.group(1)
    assert page.count("<script>") == 2
    assert "&lt;/script&gt;" in page.split("<title>")[1].split("</title>")[0]
