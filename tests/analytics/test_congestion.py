"""East-west congestion: fires on incidents, stays quiet on confounders, resolves, widens."""

from __future__ import annotations

import pytest

from analytics.congestion import SIGNALS
from collector.schema import Severity
from tests.analytics.harness import HOUR, MIN, connect, replay, settings
from tests.analytics.synth import Effects, random_site, samples


@pytest.mark.parametrize(("seed", "scrape_s"), [(11, 60), (23, 30), (37, 15)])
def test_incident_fires_once_confounders_stay_quiet_then_resolves(seed: int, scrape_s: int) -> None:
    """One host congested; meanwhile others run a backup burst (throughput ×6 without pauses or
    latency), reboot (counter reset + gap) or miss scrapes. Only the congested host pages."""
    site = random_site(seed, n_hosts=6 if scrape_s > 15 else 5, hours=6.5, scrape_s=scrape_s)
    s, h = site.start_ms, site.hosts
    victim = h[seed % len(h)]
    others = [x for x in h if x != victim]
    t0 = s + 4 * HOUR
    fx = Effects(
        congestion=[([victim], t0, t0 + 25 * MIN)],
        backup=[(others[:2], t0 - 40 * MIN, t0 + 20 * MIN, 6.0)],
        reboot=[(others[2], t0 - 30 * MIN, 6 * MIN)],
        gaps=[(others[3], t0 + 5 * MIN, t0 + 25 * MIN)],
    )
    con = connect(samples(site, fx))
    run = replay(con, s, site.end_ms, fine=[(t0 - 45 * MIN, t0 + 70 * MIN)], step=2 * MIN)

    fired = run.firing()
    assert {a.fingerprint for _, a in fired} == {fired[0][1].fingerprint}, [a.summary for _, a in fired]
    t_fire, alert = fired[0]
    assert alert.kind.value == "eastwest_congestion" and alert.resource == {"host": victim}
    assert t0 <= t_fire <= t0 + 12 * MIN, "fires within minutes of the onset"
    ev = alert.evidence["per_host"][victim]
    assert len(ev["violating"]) >= 2
    for spec in SIGNALS:  # every signal named with value and baseline
        assert {"value", "baseline", "z", "unit", "baseline_source"} <= set(ev["signals"][spec.name])
    assert any(f" prio {site.prio} " in k for k in ev["pfc_pause_frames_by_nic_priority"]), (
        "PFC evidence broken down by NIC and priority"
    )
    assert "PFC" in alert.runbook
    resolved = run.resolved()
    assert [a.fingerprint for _, a in resolved] == [alert.fingerprint]
    assert t0 + 25 * MIN < resolved[0][0] <= t0 + 70 * MIN
    scores = {c.host: c for c in run.engine.congestion_scores()}  # type: ignore[union-attr]
    assert set(scores) == set(h) and not any(c.congested for c in scores.values())


def test_fabric_wide_storm_is_one_incident_widened_to_all_hosts() -> None:
    site = random_site(11, n_hosts=6, hours=6, scrape_s=60)
    t0 = site.start_ms + 4 * HOUR
    fx = Effects(congestion=[(site.hosts[:3], t0, t0 + 25 * MIN), (site.hosts[3:4], t0 + 4 * MIN, t0 + 25 * MIN)])
    con = connect(samples(site, fx))
    run = replay(con, site.start_ms, site.end_ms, fine=[(t0, t0 + 60 * MIN)], step=2 * MIN)
    fired = run.firing("eastwest_congestion")
    assert len({a.fingerprint for _, a in fired}) == 1, "one incident, not one per host"
    assert fired[0][1].severity is Severity.SEV1
    assert set(fired[0][1].evidence["hosts"]) >= set(site.hosts[:3])
    # the late host joined the same incident: the latest evidence names all four
    during = run.findings_at(t0 + 20 * MIN, "eastwest_congestion")
    assert len(during) == 1 and set(during[0].evidence["hosts"]) == set(site.hosts[:4])
    assert run.resolved("eastwest_congestion"), "the storm ends, the incident resolves"


def test_formatted_telegraf_agents_are_judged_too() -> None:
    site = random_site(5, n_hosts=5, hours=5.5, formatted_share=1.0, scrape_s=30)
    assert site.formatted == set(site.hosts)
    t0 = site.start_ms + 4 * HOUR
    con = connect(samples(site, Effects(congestion=[(site.hosts[:1], t0, t0 + 30 * MIN)])))
    run = replay(con, site.start_ms, site.end_ms, fine=[(t0, t0 + 20 * MIN)], step=2 * MIN)
    fired = run.firing("eastwest_congestion")
    assert fired and fired[0][1].resource == {"host": site.hosts[0]}
    sig = fired[0][1].evidence["per_host"][site.hosts[0]]["signals"]["smb_latency"]
    assert sig["value"] > 2 * sig["baseline"] > 0


def test_cold_start_host_is_judged_against_peers() -> None:
    """A host that appears mid-run already in trouble is compared with its peers."""
    site = random_site(3, n_hosts=6, hours=5, scrape_s=60)
    late = site.hosts[-1]
    t0 = site.start_ms + 4 * HOUR
    fx = Effects(gaps=[(late, site.start_ms, t0 - 5 * MIN)], congestion=[([late], t0, t0 + 30 * MIN)])
    con = connect(samples(site, fx))
    run = replay(con, site.start_ms, site.end_ms, fine=[(t0 - 10 * MIN, t0 + 20 * MIN)], step=2 * MIN)
    fired = run.firing("eastwest_congestion")
    assert fired and fired[0][1].resource == {"host": late}
    sources = {s["baseline_source"] for s in fired[0][1].evidence["per_host"][late]["signals"].values()}
    assert "peers" in sources


def test_a_late_host_unlike_its_peers_gets_a_baseline_of_its_own() -> None:
    """A host added later whose adapters normally see far more PFC pauses than its peers' is not
    congested for it: it may look odd against the peers at first, but it learns its own
    baseline (steps judged on borrowed baselines are learned) and is quiet from then on."""
    site = random_site(3, n_hosts=6, hours=6, scrape_s=60)
    late = site.hosts[-1]
    site.base[late]["pause"] = 40 * max(p["pause"] for h, p in site.base.items() if h != late) + 5.0
    t_join = site.start_ms + 3 * HOUR
    con = connect(samples(site, Effects(gaps=[(late, site.start_ms, t_join)])))
    run = replay(con, site.start_ms, site.end_ms, fine=[(t_join, t_join + 60 * MIN)], step=2 * MIN)
    assert not run.findings_at(site.end_ms, "eastwest_congestion") or not any(
        f.active for f in run.findings_at(site.end_ms, "eastwest_congestion")
    )
    score = {c.host: c for c in run.engine.congestion_scores()}[late]  # type: ignore[union-attr]
    assert score.signals["pfc_pause_frames"].source == "trailing" and not score.congested
    assert all(t < t_join + 45 * MIN for t, _ in run.firing()), "nothing pages once its own baseline exists"


def test_single_signal_needs_corroboration_unless_configured() -> None:
    """RDMA errors alone on one host (driver issue, no pauses/latency) page when the multivariate
    model agrees or ``min_signals = 1``; the evidence names the one violating signal."""
    site = random_site(8, n_hosts=5, hours=5.5, scrape_s=60)
    t0 = site.start_ms + 4 * HOUR
    fx = Effects(rdma_errors=[(site.hosts[1], t0, t0 + 40 * MIN, 3.0)])
    con = connect(samples(site, fx))
    one = settings(congestion={"min_signals": 1})
    run = replay(con, site.start_ms, site.end_ms, settings=one, fine=[(t0, t0 + 20 * MIN)], step=2 * MIN)
    fired = run.firing("eastwest_congestion")
    assert fired and fired[0][1].resource == {"host": site.hosts[1]}
    assert fired[0][1].evidence["per_host"][site.hosts[1]]["violating"] == ["rdma_errors"]


def test_clients_of_a_stalled_storage_node_are_victims_not_incidents() -> None:
    """A storm on one host slows every client's SMB requests to it. The clients' adapters see no
    pauses, errors or discards: they are listed in the storm's evidence, not paged on their own —
    even when their latency rises before the storm host is judged congested, and even when a
    single violating signal is configured to be enough."""
    site = random_site(13, n_hosts=6, hours=6, scrape_s=60)
    t0 = site.start_ms + 4 * HOUR
    storm, clients = site.hosts[0], site.hosts[1:4]
    fx = Effects(congestion=[([storm], t0 + 4 * MIN, t0 + 30 * MIN)], smb_latency=[(clients, t0, t0 + 30 * MIN, 8.0)])
    run = replay(
        connect(samples(site, fx)),
        site.start_ms,
        site.end_ms,
        fine=[(t0, t0 + 60 * MIN)],
        step=2 * MIN,
        settings=settings(congestion={"min_signals": 1}),
    )
    fired = run.firing("eastwest_congestion")
    assert {a.fingerprint for _, a in fired} == {fired[0][1].fingerprint}, [a.summary for _, a in fired]
    assert fired[0][1].resource == {"host": storm}
    assert fired[0][1].evidence["scope"] == {"host": [storm]}
    during = run.findings_at(t0 + 20 * MIN, "eastwest_congestion")
    assert len(during) == 1
    assert {v["host"] for v in during[0].evidence["smb_latency_elevated_on"]} == set(clients)


def test_widening_is_announced_with_the_same_fingerprint() -> None:
    site = random_site(17, n_hosts=5, hours=6, scrape_s=60)
    t0 = site.start_ms + 4 * HOUR
    fx = Effects(congestion=[(site.hosts[:1], t0, t0 + 30 * MIN), (site.hosts[1:2], t0 + 6 * MIN, t0 + 30 * MIN)])
    run = replay(connect(samples(site, fx)), site.start_ms, site.end_ms, fine=[(t0, t0 + 60 * MIN)], step=2 * MIN)
    fired = run.firing("eastwest_congestion")
    assert len({a.fingerprint for _, a in fired}) == 1
    scopes = [a.evidence["scope"]["host"] for _, a in fired]
    assert scopes[0] == [site.hosts[0]] and scopes[-1] == site.hosts[:2], scopes
    assert fired[-1][0] > fired[0][0] and fired[-1][1].starts_at == fired[0][1].starts_at
