"""A host whose normal is spiky is held to its own tail; a quiet host keeps the plain bar.

The site has one host on another NIC model with ten times its peers' PFC pause rate and routine
incast bursts (pauses and discards 5-20x for 1-4 minutes, about twice an hour, for the whole
run): healthy, but every burst that lasts three steps looks like congestion against a median/MAD
baseline. Late in the run a real storm hits that host, and later another host.
"""

from __future__ import annotations

import pytest

from analytics.congestion import SIGNALS
from tests.analytics.harness import HOUR, MIN, Run, connect, replay, settings
from tests.analytics.synth import Effects, Site, random_site, samples

HOURS = 30
WARM_UP = 6 * HOUR  # time the noisy host gets to show its normal


def _site(seed: int) -> tuple[Site, str, str, int, int, Effects]:
    site = random_site(seed, n_hosts=6, hours=HOURS, scrape_s=60)
    noisy, quiet = site.hosts[1], site.hosts[4]
    site.base[noisy]["pause"] = 10 * max(p["pause"] for p in site.base.values()) + 5.0
    site.nics[noisy] = [f"Broadcom NetXtreme E-Series Dual-port 25Gb{s}" for s in ("", " _2")]
    t_noisy, t_quiet = site.end_ms - 5 * HOUR, site.end_ms - 2 * HOUR
    fx = Effects(
        bursts=[(noisy, 2.0)],
        congestion=[([noisy], t_noisy, t_noisy + 25 * MIN), ([quiet], t_quiet, t_quiet + 25 * MIN)],
    )
    return site, noisy, quiet, t_noisy, t_quiet, fx


def _pages(run: Run, host: str, a: int, z: int) -> list[int]:
    return [t for t, al in run.firing("eastwest_congestion") if al.resource == {"host": host} and a <= t < z]


@pytest.mark.parametrize("seed", [11, 29])
def test_routinely_bursty_host_stops_paging_while_storms_still_page(seed: int) -> None:
    site, noisy, quiet, t_noisy, t_quiet, fx = _site(seed)
    con = connect(samples(site, fx))
    every = [(site.start_ms, site.end_ms)]  # evaluate every 2 minutes: bursts last minutes
    fixed_z = settings(congestion={"self_calibrate": False})
    plain = replay(con, site.start_ms, site.end_ms, fine=every, step=2 * MIN, settings=fixed_z)
    calibrated = replay(con, site.start_ms, site.end_ms, fine=every, step=2 * MIN, settings=settings())
    after_warm_up = site.start_ms + WARM_UP

    # against a fixed z, the bursts page over and over (the problem is real on this site) ...
    storm_window = range(t_noisy, t_noisy + 30 * MIN)
    plain_pages, calibrated_pages = (
        [t for t in _pages(run, noisy, after_warm_up, site.end_ms) if t not in storm_window]
        for run in (plain, calibrated)
    )
    assert len(plain_pages) >= 8, plain_pages
    # ... held to its own tail, the host pages only for a burst larger than all but two of the
    # last 36 h (for bursts of one process a few times a day, shrinking as the window fills)
    assert len(calibrated_pages) * 4 <= len(plain_pages), (len(calibrated_pages), len(plain_pages))

    # a real storm on the bursty host still pages within minutes ...
    storm = _pages(calibrated, noisy, t_noisy, t_noisy + 30 * MIN)
    assert storm and storm[0] <= t_noisy + 10 * MIN
    # ... and so does one on a quiet host, whose own tail leaves its bar at (or near) the plain z
    storm = _pages(calibrated, quiet, t_quiet, t_quiet + 30 * MIN)
    assert storm and storm[0] <= t_quiet + 10 * MIN
    fired = calibrated.firing("eastwest_congestion")
    alert = next(a for t, a in fired if t == storm[0] and a.resource["host"] == quiet)
    ev = alert.evidence["per_host"][quiet]["signals"]
    z = alert.evidence["sensitivity_z"]
    pfc = ev["pfc_pause_frames"]
    assert pfc["bar"] >= z and pfc["score"] == pytest.approx(pfc["z"] / pfc["bar"]) and pfc["score"] > 1
    lo, hi = pfc["band"]
    assert lo < pfc["baseline"] < hi < pfc["value"], "the band shows the breach"
    for spec in SIGNALS:
        assert {"bar", "score", "band"} <= set(ev[spec.name])

    # the noisy host's bars are its own: above the plain z for the bursting signals
    scores = {c.host: c for c in calibrated.engine.congestion_scores()}  # type: ignore[union-attr]
    assert scores[noisy].signals["pfc_pause_frames"].bar > 2 * scores[quiet].signals["pfc_pause_frames"].bar
