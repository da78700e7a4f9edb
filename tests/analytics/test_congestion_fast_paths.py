"""The congestion detector's cheaper per-pass paths give exactly what the former ones gave.

* ``_aggregate`` sums every signal, SMB Δ and throughput form in one pair of ``bincount`` calls;
  the former code (kept here as the reference) made one pair per role. Compared bit for bit on
  every window a synthetic site's replay hands the detector (raw and formatted forms, catch-up
  windows of many steps, an incident).
* Scores of hosts that are not congested become objects only when read: a detector read after
  every pass and one read only at the end report the same scores and findings.
* A step's hosts keep their baselines (borrowed ones and spreads included) until the bank's
  statistics change: the same scores, findings and alerts as reading them at every step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import analytics.congestion as cg
from analytics.congestion import CongestionDetector
from analytics.engine import Engine
from analytics.findings import Finding
from tests.analytics.harness import HOUR, MIN, connect, replay, settings
from tests.analytics.synth import Effects, random_site, samples

F64 = npt.NDArray[np.float64]


def _aggregate_reference(w: Any, si: npt.NDArray[np.int64], nsteps: int) -> tuple[F64, F64]:
    """The former ``CongestionDetector._aggregate``: one bincount pair per role."""
    nh = len(w.host_names)
    h, role, sig = w.host, w.role, w.sig
    rate, inc, mean = w.rate, w.inc, w.mean
    cell = si * nh + h
    vals = np.full((nsteps * nh, cg.NSIG), np.nan)
    cnt = (role == cg.R_COUNT) & np.isfinite(rate)
    if cnt.any():
        flat = cell[cnt] * cg.NSIG + sig[cnt]
        acc = np.bincount(flat, rate[cnt], minlength=nsteps * nh * cg.NSIG).reshape(nsteps * nh, cg.NSIG)
        seen = np.bincount(flat, minlength=nsteps * nh * cg.NSIG).reshape(nsteps * nh, cg.NSIG) > 0
        vals = np.where(seen, acc, np.nan)
    m = (role == cg.R_LNUM) & np.isfinite(inc)
    lat_num = np.bincount(cell[m], inc[m], minlength=nsteps * nh)
    m = (role == cg.R_LDEN) & np.isfinite(inc)
    lat_den = np.bincount(cell[m], inc[m], minlength=nsteps * nh)
    raw_ok = lat_den > 0
    vals[raw_ok, cg._SMB] = lat_num[raw_ok] / lat_den[raw_ok]
    fmt = (role == cg.R_LAVG) | (role == cg.R_LRPS)
    if fmt.any():
        _, subcode, nsub = w.subs()
        pair = cell[fmt] * nsub + subcode[fmt]
        uniq, inv = np.unique(pair, return_inverse=True)
        avg = np.full(uniq.size, np.nan)
        rps = np.full(uniq.size, np.nan)
        is_avg = role[fmt] == cg.R_LAVG
        avg[inv[is_avg]] = mean[fmt][is_avg]
        rps[inv[~is_avg]] = mean[fmt][~is_avg]
        wt = np.where(np.isfinite(rps), rps, np.where(avg > 0, 1.0, 0.0))
        ph = uniq // nsub
        ok = np.isfinite(avg) & ~raw_ok[ph]
        num = np.bincount(ph[ok], (avg * wt)[ok], minlength=nsteps * nh)
        den = np.bincount(ph[ok], wt[ok], minlength=nsteps * nh)
        good = (den > 0) & ~raw_ok
        vals[good, cg._SMB] = num[good] / den[good]
    throughput = np.full(nsteps * nh, np.nan)
    for r, use_rate in ((cg.R_NET_FMT, False), (cg.R_NET_RAW, True), (cg.R_RDMA_FMT, False), (cg.R_RDMA_RAW, True)):
        v = rate if use_rate else mean
        m = (role == r) & np.isfinite(v)
        if m.any():
            acc1 = np.bincount(cell[m], v[m], minlength=nsteps * nh)
            seen1 = np.bincount(cell[m], minlength=nsteps * nh) > 0
            throughput = np.where(seen1, acc1, throughput)
    return vals.reshape(nsteps, nh, cg.NSIG), throughput.reshape(nsteps, nh)


def _site(seed: int) -> tuple[Any, Any]:
    site = random_site(seed, n_hosts=5, hours=5.0, scrape_s=60, formatted_share=0.5)
    t0 = site.start_ms + 3 * HOUR
    fx = Effects(
        congestion=[([site.hosts[1]], t0, t0 + 25 * MIN)],
        backup=[(site.hosts[2:4], t0 - 30 * MIN, t0 + 10 * MIN, 5.0)],
        gaps=[(site.hosts[4], t0 + 5 * MIN, t0 + 20 * MIN)],
    )
    return site, connect(samples(site, fx))


@pytest.mark.parametrize("seed", [3, 8])
def test_aggregate_equals_the_per_role_sums(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = CongestionDetector._aggregate
    seen = {"windows": 0, "multi_step": 0, "formatted": 0}

    def both(w: Any, si: npt.NDArray[np.int64], nsteps: int) -> tuple[F64, F64]:
        got = fast(w, si, nsteps)
        want = _aggregate_reference(w, si, nsteps)
        for g, x in zip(got, want, strict=True):
            assert g.shape == x.shape and g.dtype == x.dtype
            assert np.array_equal(g, x, equal_nan=True)
            assert g.tobytes() == x.tobytes()  # bit for bit (NaN payloads and signed zeros too)
        seen["windows"] += 1
        seen["multi_step"] += nsteps > 1
        seen["formatted"] += bool(((w.role == cg.R_LAVG) | (w.role == cg.R_RDMA_FMT)).any())
        return got

    monkeypatch.setattr(CongestionDetector, "_aggregate", staticmethod(both))
    site, con = _site(seed)
    t0 = site.start_ms + 3 * HOUR
    run = replay(con, site.start_ms, site.end_ms, settings=settings(), fine=[(t0 - 30 * MIN, t0 + 40 * MIN)])
    assert run.firing("eastwest_congestion"), "the incident is seen (the windows carry one)"
    assert seen["windows"] > 50 and seen["multi_step"] > 0 and seen["formatted"] > 0, seen


class _ReadingEngine(Engine):
    """An engine whose congestion scores are read (made objects) after every evaluation."""

    def evaluate(self, con: Any, now: datetime) -> list[Finding]:
        out = super().evaluate(con, now)
        for h, sc in self.congestion.scores.items():
            assert sc.host == h
        return out


def test_scores_read_late_equal_scores_read_at_once() -> None:
    site, con = _site(5)
    t0 = site.start_ms + 3 * HOUR
    fine = [(t0 - 30 * MIN, t0 + 40 * MIN)]
    s = settings()
    late = replay(con, site.start_ms, site.end_ms, settings=s, fine=fine)
    at_once = replay(con, site.start_ms, site.end_ms, settings=s, fine=fine, engine=_ReadingEngine(s, []))
    assert late.engine is not None and at_once.engine is not None
    assert late.firing("eastwest_congestion")
    assert repr(at_once.engine.congestion_scores()) == repr(late.engine.congestion_scores())
    assert {t: repr(f) for t, f in at_once.history.items()} == {t: repr(f) for t, f in late.history.items()}
    assert [(t, repr(a)) for t, a in at_once.alerts] == [(t, repr(a)) for t, a in late.alerts]


class _EveryStep(CongestionDetector):
    """Reads its hosts' baselines at every step (no host set kept): the former path."""

    def _host_set(self, hosts: list[str]) -> Any:
        self._host_sets.clear()
        return super()._host_set(hosts)


def test_baselines_kept_per_host_set_equal_baselines_read_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step's hosts keep their ids, states, borrowed baselines and spreads until the bank's
    statistics change: the same scores, findings and alerts as reading them at every step, on a
    site whose host set changes (a host stops reporting for a while) with an incident."""
    site, con = _site(6)
    t0 = site.start_ms + 3 * HOUR
    fine = [(t0 - 30 * MIN, t0 + 40 * MIN)]
    s = settings()
    calls = {"baselines": 0, "steps": 0}
    real_baselines, real_judge = CongestionDetector._baselines, CongestionDetector._judge

    def baselines(self: CongestionDetector, hs: Any) -> None:
        calls["baselines"] += type(self) is CongestionDetector
        real_baselines(self, hs)

    def judge(self: CongestionDetector, *args: Any) -> None:
        calls["steps"] += type(self) is CongestionDetector
        real_judge(self, *args)

    monkeypatch.setattr(CongestionDetector, "_baselines", baselines)
    monkeypatch.setattr(CongestionDetector, "_judge", judge)
    kept = replay(con, site.start_ms, site.end_ms, settings=s, fine=fine)
    every = Engine(s, [])
    every.congestion = _EveryStep(s)
    each = replay(con, site.start_ms, site.end_ms, settings=s, fine=fine, engine=every)
    assert kept.engine is not None and each.engine is not None
    assert kept.firing("eastwest_congestion")
    assert 0 < calls["baselines"] < calls["steps"] / 3, calls  # kept across steps (a control)
    assert repr(each.engine.congestion_scores()) == repr(kept.engine.congestion_scores())
    assert {t: repr(f) for t, f in each.history.items()} == {t: repr(f) for t, f in kept.history.items()}
    assert [(t, repr(a)) for t, a in each.alerts] == [(t, repr(a)) for t, a in kept.alerts]
