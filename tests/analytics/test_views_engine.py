"""Analyst views over the store, and the engine's contracts (time bounds, catch-up, Parquet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from analytics.engine import Engine
from analytics.views import ANALYST_VIEWS, analyst_views
from collector.schema import Sample, from_ms, samples_table
from tests.analytics.harness import HOUR, MIN, connect, connect_parquet, replay, settings
from tests.analytics.synth import Effects, Holder, IpWorld, Net, populate_clusters, random_network, random_site, samples

START = 1_767_225_600_000


def _ip_world(seed: int = 21, start: int = START) -> tuple[IpWorld, Net, str]:
    rng = np.random.default_rng(seed)
    net = random_network(rng, "cn-v", ["x1", "x2"], vip_size=30, node_size=20, management="m")
    world = IpWorld(rng, start, start + 2 * HOUR, poll_s=60, observers=["o1"])
    hs = populate_clusters(world, net, services={"x1": 3, "x2": 2}, nodes={"x1": 2, "x2": 2})
    dup = next(h for h in hs["x1"] if h.owner_kind == "service").ip
    world.holders.append(Holder(dup, "service", "a/b", "x2", net.name, start + HOUR, world.end_ms))
    return world, net, dup


def test_analyst_views_install_and_answer() -> None:
    world, net, dup = _ip_world()
    site = random_site(2, n_hosts=3, hours=2, scrape_s=60)
    con = connect(samples(site, Effects(reboot=[(site.hosts[0], site.start_ms + HOUR, 3 * MIN)])), world.table())
    views = analyst_views([net])
    assert set(views) == set(ANALYST_VIEWS) == {"counter_rates", "pool_usage", "ip_conflicts", "congestion_signals"}
    for name, body in views.items():
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {body}")
    pools = con.execute("SELECT pool, max(used), max(size) FROM pool_usage GROUP BY pool ORDER BY pool").fetchall()
    assert pools == [("node", 6, 20), ("vip", 7, 30)]
    conflicts = con.execute("SELECT DISTINCT ip, claimants FROM ip_conflicts WHERE claimants > 1").fetchall()
    assert conflicts == [(dup, 2)]
    sig = con.execute(
        "SELECT count(DISTINCT host), max(pfc_pause_frames_per_sec) >= 0, "
        "max(smb_latency_seconds) > 0 FROM congestion_signals"
    ).fetchall()
    assert sig == [(3, True, True)]
    resets = con.execute(
        "SELECT count(*) FROM counter_rates WHERE counter_reset AND host = ?", [site.hosts[0]]
    ).fetchall()[0][0]
    assert resets > 0
    assert con.execute("SELECT count(*) FROM counter_rates WHERE rate_per_sec < 0").fetchall() == [(0,)]
    # with no networks configured the views are still valid SQL
    for name, body in ANALYST_VIEWS.items():
        con.execute(f"CREATE OR REPLACE VIEW {name}_empty AS {body}")
        con.execute(f"SELECT count(*) FROM {name}_empty").fetchall()


def test_engine_reads_nothing_after_now_and_catch_up_equals_stepping(tmp_path: Path) -> None:
    site = random_site(31, n_hosts=4, hours=5, scrape_s=60)
    t0 = site.start_ms + 4 * HOUR
    tbl = samples(site, Effects(congestion=[(site.hosts[:1], t0, t0 + 40 * MIN)]))
    world, net, dup = _ip_world(5, start=site.start_ms + 3 * HOUR)
    # other metrics the engine reads in the same pass (pool gauges, LB inventory) and ignores
    extra = [
        Sample(from_ms(t), src, "ctl", m, v, labels)
        for t in range(site.start_ms + 3 * HOUR, site.end_ms, MIN)
        for src, m, v, labels in (
            ("metallb", "metallb.addresses_in_use", 5.0, (("pool", "p1"),)),
            ("metallb", "metallb.addresses_total", 16.0, (("pool", "p1"),)),
            (
                "k8s",
                "k8s.service_lb_ip_info",
                1.0,
                (("cluster", "x2"), ("ip", dup), ("namespace", "a"), ("ports", "80/TCP"), ("service", "b")),
            ),
            ("windows", "windows.cpu.time_total", float(t), (("core", "0"),)),
        )
    ]
    tbl = pa.concat_tables([tbl, samples_table(extra)], promote_options="permissive")
    con = connect_parquet(tmp_path, tbl, world.table(), rows_per_file=40_000)  # the store's layout
    s = settings()
    # evaluating at t0 must not see the incident that starts at t0
    early = Engine(s, [net])
    early.evaluate(con, from_ms(t0))
    assert not any(c.congested for c in early.congestion_scores())
    assert max(c.ts for c in early.congestion_scores()) <= t0
    # one catch-up call == many small calls
    stepped = replay(con, site.start_ms, t0 + 20 * MIN, networks=[net], fine=[(t0, t0 + 20 * MIN)], settings=s)
    catch = Engine(s, [net])
    findings = catch.evaluate(con, from_ms(t0 + 20 * MIN))
    a = {f.fingerprint: f.active for f in stepped.findings}
    b = {f.fingerprint: f.active for f in findings}
    assert a == b and any(f.kind.value == "eastwest_congestion" and f.active for f in findings)
    dups = [f for f in findings if f.kind.value == "duplicate_ip" and f.resource["ip"] == dup]
    assert dups and dups[0].evidence["service_ports"] == {"x2/a/b": "80/TCP"}
    assert {p.pool for p in catch.pool_stats()} == {"vip", "node", "metallb:ctl/p1"}
    with pytest.raises(ValueError, match="before the last evaluated step"):
        catch.evaluate(con, from_ms(t0))
