"""metric_anomaly (live, any canonical metric) and the offline CSV scorer."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest

from analytics.offline import anomalies_csv
from collector.errors import ParseError
from collector.schema import Sample, from_ms, samples_table
from tests.analytics.harness import HOUR, MIN, connect, replay, settings

T0 = 1_767_225_600_000


def _series(seed: int, hours: float, shift_at: float | None, shift: float, step_s: int = 30):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    t = np.arange(T0, T0 + int(hours * HOUR), step_s * 1000)
    level = rng.uniform(5, 500)
    v = level * (1 + 0.05 * np.sin(2 * np.pi * (t - T0) / 86_400_000)) + rng.normal(0, level * 0.03, t.size)
    if shift_at is not None:
        v = np.where(t >= T0 + shift_at * HOUR, v + shift * level, v)
    return t, v


def test_rule_fires_on_a_level_shift_of_the_selected_series_only() -> None:
    rows = []
    for host, seed, shift in (("hv-1", 1, 0.0), ("hv-2", 2, 0.8), ("hv-3", 3, 0.8)):
        t, v = _series(seed, 6, 4.5, shift)
        for ts, x in zip(t, v, strict=True):
            rows.append(
                Sample(
                    from_ms(int(ts)),
                    "haproxy",
                    host,
                    "haproxy.queue_current",
                    float(x),
                    (("proxy", "be_web"), ("cluster", "c1")),
                )
            )
        # a counter on the same hosts: its rate is watched by a second rule (no shift → quiet)
        c = np.cumsum(np.random.default_rng(seed).poisson(50, t.size)).astype(float)
        for ts, x in zip(t, c, strict=True):
            rows.append(Sample(from_ms(int(ts)), "haproxy", host, "haproxy.sessions_total", x, (("proxy", "fe"),)))
    s = settings(
        metric_anomaly=[
            {
                "metric": "haproxy.queue_current",
                "labels": {"proxy": "be_*", "host": "hv-[12]"},
                "sensitivity": "high",
                "min_failing_periods": 3,
                "of_periods": 4,
                "direction": "up",
                "severity": "Sev2",
            },
            {"metric": "haproxy.sessions_total", "name": "sessions"},
        ]
    )
    run = replay(
        connect(samples_table(rows)),
        T0,
        T0 + 6 * HOUR,
        settings=s,
        fine=[(T0 + 4 * HOUR + 20 * MIN, T0 + 5 * HOUR)],
        step=MIN,
    )
    fired = run.firing("metric_anomaly")
    assert len(fired) == 1, [a.summary for _, a in fired]
    t_fire, alert = fired[0]
    assert alert.resource == {
        "rule": "haproxy.queue_current",
        "metric": "haproxy.queue_current",
        "host": "hv-2",
        "labels": "cluster=c1,proxy=be_web",
    }
    assert T0 + 4.5 * HOUR <= t_fire <= T0 + 4.5 * HOUR + 6 * MIN
    ev = alert.evidence
    assert ev["value"] > ev["band"][1] and ev["judged_as"] == "value" and ev["failing_periods"].startswith(("3", "4"))
    assert alert.severity.value == "Sev2"


@pytest.mark.parametrize("relearn_after", ["90m", "0"])
def test_rule_takes_a_lasting_level_shift_as_the_new_normal(relearn_after: str) -> None:
    """After ``relearn_after`` of anomaly the shifted level is learned and the alert resolves; with
    0 it never is, and the alert stays firing."""
    t, v = _series(9, 9, 3, 1.0)
    rows = [
        Sample(from_ms(int(ts)), "haproxy", "hv-1", "haproxy.queue_current", float(x), (("proxy", "be"),))
        for ts, x in zip(t, v, strict=True)
    ]
    s = settings(
        metric_anomaly=[{"metric": "haproxy.queue_current", "relearn_after": relearn_after}],
        baselines={"window": "2h", "time_of_day": False},
    )
    run = replay(connect(samples_table(rows)), T0, T0 + 9 * HOUR, settings=s, coarse=10 * MIN, step=MIN)
    fired = run.firing("metric_anomaly")
    assert len(fired) == 1 and T0 + 3 * HOUR <= fired[0][0] <= T0 + 3 * HOUR + 15 * MIN, fired
    resolved = run.resolved("metric_anomaly")
    if relearn_after == "0":
        assert not resolved
    else:
        # relearning starts 90 min after onset; the 2 h median has moved an hour later
        assert len(resolved) == 1 and resolved[0][0] <= T0 + 7 * HOUR, resolved


def _csv(tmp: Path, t: np.ndarray, v: np.ndarray, iso: bool = True) -> Path:
    p = tmp / "series.csv"
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "host", "value"])
        for ts, x in zip(t, v, strict=True):
            stamp = from_ms(int(ts)).isoformat().replace("+00:00", "Z") if iso else str(int(ts) // 1000)
            w.writerow([stamp, "hv1", "" if math.isnan(x) else f"{x:.4f}"])
    return p


def _read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("seed", [4, 5])
def test_offline_csv_flags_each_episode_once_and_is_causal(tmp_path: Path, seed: int) -> None:
    t, v = _series(seed, 30, None, 0.0, step_s=60)
    v[1200:1230] *= 1.5  # a 30-minute episode: +50 %
    v[1500:1505] = np.nan  # missing values are passed through
    out = io.StringIO()
    run = anomalies_csv(_csv(tmp_path, t, v), out, sensitivity="medium")
    rows = _read(out.getvalue())
    assert list(rows[0]) == ["timestamp", "value", "score", "is_anomaly", "note"] and len(rows) == t.size
    flagged = [i for i, r in enumerate(rows) if r["is_anomaly"] == "true"]
    assert len(flagged) == 1 and 1200 <= flagged[0] <= 1205, flagged
    assert run.episodes == 1 and run.rows == t.size
    assert rows[0]["score"] == "" and rows[1501]["score"] == ""
    # causality: changing the future does not change the past
    v2 = v.copy()
    v2[1400:] *= 3
    out2 = io.StringIO()
    anomalies_csv(_csv(tmp_path, t, v2, iso=False), out2, sensitivity="medium")
    rows2 = _read(out2.getvalue())
    assert [r["score"] for r in rows2[:1400]] == [r["score"] for r in rows[:1400]]


def test_offline_csv_count_series_and_sensitivity(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    t = np.arange(T0, T0 + 10 * HOUR, 60_000)
    v = rng.poisson(0.3, t.size).astype(float)  # an error counter per minute, mostly 0
    v[400:404] = [14, 17, 12, 15]
    out = io.StringIO()
    anomalies_csv(_csv(tmp_path, t, v), out)
    flagged = [i for i, r in enumerate(_read(out.getvalue())) if r["is_anomaly"] == "true"]
    assert flagged and 400 <= flagged[0] <= 403 and len(flagged) == 1
    low = io.StringIO()
    anomalies_csv(_csv(tmp_path, t, v), low, sensitivity="low")
    assert sum(r["is_anomaly"] == "true" for r in _read(low.getvalue())) <= 1


@pytest.mark.parametrize("seed", [11, 12])
def test_offline_routine_bursts_on_an_idle_series_become_normal(tmp_path: Path, seed: int) -> None:
    """A disk mostly idle (0) with routine multi-step write bursts: the first bursts are news, the
    baseline then learns them (closed episodes are learned; with a MAD of 0 the spread is that of
    the non-idle values), and only a burst far larger than the routine ones is flagged later."""
    rng = np.random.default_rng(seed)
    t = np.arange(T0, T0 + 48 * HOUR, 300_000)  # 5-minute steps, 2 days
    v = np.zeros(t.size)
    starts = np.cumsum(rng.integers(30, 60, t.size // 30))  # about one burst in 45 steps
    for st in starts[starts < t.size - 10]:
        v[st : st + int(rng.integers(3, 7))] = rng.lognormal(np.log(3e7), 0.5, 1)[0] * rng.uniform(0.8, 1.2)
    big = t.size - 40
    v[big - 5 : big + 5] = 0
    v[big : big + 4] = 40 * np.median(v[v > 0])
    out = io.StringIO()
    anomalies_csv(_csv(tmp_path, t, v), out, sensitivity="medium")
    flagged = [i for i, r in enumerate(_read(out.getvalue())) if r["is_anomaly"] == "true"]
    later = [i for i in flagged if i >= t.size // 2]
    assert later and big <= later[0] <= big + 3, flagged
    assert len(later) == 1, f"routine bursts in the second day flagged: {later}"


def test_offline_lasting_level_shift_becomes_the_new_normal(tmp_path: Path) -> None:
    t, v = _series(8, 72, 12, 1.0, step_s=300)  # the level doubles at 12 h and stays
    out = io.StringIO()
    anomalies_csv(_csv(tmp_path, t, v), out, sensitivity="medium")
    rows = _read(out.getvalue())
    flagged = [i for i, r in enumerate(rows) if r["is_anomaly"] == "true"]
    shift = 12 * 12  # 5-minute rows in 12 h
    assert flagged and shift <= flagged[0] <= shift + 3
    assert len(flagged) == 1
    # two days on, the doubled level scores like normal noise again
    assert all(float(r["score"]) < 4.5 for r in rows[-60:])


def test_offline_csv_errors_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("ts,value\n2026-01-01T00:00:00Z,1\n")
    with pytest.raises(ParseError, match=r"no column 'timestamp'.*ts, value"):
        anomalies_csv(p, io.StringIO())
    p.write_text("timestamp,value\n2026-01-01T00:00:00Z,1\n2026-01-01T00:01:00Z,abc\n")
    with pytest.raises(ParseError, match="line 3") as e:
        anomalies_csv(p, io.StringIO(), strict=True)
    assert e.value.line == 3
    p.write_text("timestamp,value\n2026-01-01T00:05:00Z,1\n2026-01-01T00:01:00Z,2\n")
    with pytest.raises(ParseError, match="earlier than a previous row"):
        anomalies_csv(p, io.StringIO(), strict=True)
    p.write_text("timestamp,value\nyesterday,1\n")
    with pytest.raises(ParseError, match="neither ISO-8601"):
        anomalies_csv(p, io.StringIO(), time_col="timestamp", strict=True)


@pytest.mark.parametrize("forget_after", ["2h", "3d"])
def test_a_series_silent_past_forget_after_is_forgotten_and_relearns_on_return(forget_after: str) -> None:
    """hv-2 stops reporting at 3 h and comes back at 9 h at 1.5x its old level, then shifts up at
    12 h. Forgotten after 2 h of silence, its state goes (the state count drops) and it learns
    its new level afresh: no alert on return, one for the real shift. Kept (3 days), the old
    baseline judges the new level and fires on return."""
    rows = []
    for host, seed in (("hv-1", 1), ("hv-2", 2)):
        t, v = _series(seed, 14, 12 if host == "hv-2" else None, 0.8)
        if host == "hv-2":
            back = t >= T0 + 9 * HOUR
            keep = (t < T0 + 3 * HOUR) | back
            v = np.where(back, v * 1.5, v)
            t, v = t[keep], v[keep]
        rows += [
            Sample(from_ms(int(ts)), "haproxy", host, "haproxy.queue_current", float(x), (("proxy", "be"),))
            for ts, x in zip(t, v, strict=True)
        ]
    s = settings(
        metric_anomaly=[{"metric": "haproxy.queue_current", "relearn_after": "0"}],
        baselines={"window": "2h", "time_of_day": False, "forget_after": forget_after},
    )
    con = connect(samples_table(rows))
    first = replay(con, T0, T0 + 6 * HOUR, settings=s, step=MIN)
    eng = first.engine
    assert eng is not None
    forgotten = forget_after == "2h"
    assert eng.anomaly.series_count == (1 if forgotten else 2)
    assert eng.anomaly.forgotten == (1 if forgotten else 0)
    fine = [(T0 + 9 * HOUR, T0 + 9 * HOUR + 30 * MIN), (T0 + 12 * HOUR, T0 + 12 * HOUR + 15 * MIN)]
    run = replay(con, T0 + 6 * HOUR, T0 + 14 * HOUR, settings=s, step=MIN, fine=fine, engine=eng, manager=first.manager)
    assert eng.anomaly.series_count == 2  # it came back
    fired = [(t, a.resource["host"]) for t, a in run.firing("metric_anomaly")]
    if forgotten:
        assert len(fired) == 1 and fired[0][1] == "hv-2", fired
        assert T0 + 12 * HOUR <= fired[0][0] <= T0 + 12 * HOUR + 10 * MIN, fired
    else:
        assert fired and fired[0][1] == "hv-2" and T0 + 9 * HOUR <= fired[0][0] <= T0 + 9 * HOUR + 30 * MIN, fired
