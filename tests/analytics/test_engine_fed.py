"""The engine's fed mode: rows handed over as they arrive give the findings of the SQL path, and
the per-series state of series that stopped reporting is evicted."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import analytics.engine as engine_mod
from analytics.engine import Engine
from collector.schema import from_ms
from tests.analytics.harness import HOUR, MIN, connect, settings
from tests.analytics.synth import Effects, Holder, IpWorld, populate_clusters, random_network, random_site, samples


def _between(tbl: pa.Table, lo: int, hi: int) -> pa.Table:
    t = np.asarray(tbl.column("ts").cast(pa.int64()).to_numpy(), np.int64)
    return tbl.filter((t > lo) & (t <= hi))


def test_fed_engine_gives_the_findings_of_the_sql_path_at_every_step() -> None:
    site = random_site(41, n_hosts=3, hours=2, scrape_s=30)
    t0 = site.start_ms + HOUR + 10 * MIN
    tbl = samples(site, Effects(congestion=[(site.hosts[:1], t0, t0 + 20 * MIN)]), filler_series=3)
    rng = np.random.default_rng(3)
    net = random_network(rng, "cn-f", ["x1", "x2"], vip_size=30, node_size=20, management="m")
    world = IpWorld(rng, site.start_ms, site.end_ms, poll_s=60, observers=["o1"])
    hs = populate_clusters(world, net, services={"x1": 3, "x2": 2}, nodes={"x1": 2, "x2": 2})
    dup = next(h for h in hs["x1"] if h.owner_kind == "service").ip
    world.holders.append(Holder(dup, "service", "a/b", "x2", net.name, t0, world.end_ms))
    obs = world.table()
    con = connect(tbl, obs)
    s = settings()
    sql, fed = Engine(s, [net]), Engine(s, [net])
    kinds: set[str] = set()
    for t in range(site.start_ms + MIN, site.end_ms + 1, MIN):
        fed.feed("samples", _between(tbl, t - MIN, t))  # what arrived during the last minute
        fed.feed("ip_observations", _between(obs, t - MIN, t))
        want = sql.evaluate(con, from_ms(t))
        got = fed.evaluate_fed(from_ms(t))
        assert sorted((f.fingerprint, f.active, f.severity) for f in got) == sorted(
            (f.fingerprint, f.active, f.severity) for f in want
        ), f"at {from_ms(t)}"
        kinds |= {f.kind.value for f in got if f.active}
        assert all(r.rows == 0 for r in fed.fed.values())  # nothing kept past the pass that read it
    assert {"eastwest_congestion", "duplicate_ip"} <= kinds
    fed.close()


def test_series_that_stop_reporting_are_evicted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "STALE_MIN", 10)
    site = random_site(42, n_hosts=4, hours=1, scrape_s=30)
    tbl = samples(site, Effects())
    gone = site.hosts[:2]
    cut = site.start_ms + 20 * MIN
    host = tbl.column("host").cast(pa.string())
    t = np.asarray(tbl.column("ts").cast(pa.int64()).to_numpy(), np.int64)
    stays = ~np.asarray(pc.is_in(host, pa.array(gone)).to_numpy(zero_copy_only=False), bool)
    tbl = tbl.filter(stays | (t <= cut))
    eng = Engine(settings(), [])
    sizes = []
    for now in range(site.start_ms + MIN, site.end_ms + 1, MIN):
        eng.feed("samples", _between(tbl, now - MIN, now))
        eng.evaluate_fed(from_ms(now))
        sizes.append(len(eng.registry))
    peak = max(sizes)
    assert eng.evicted_series > 0
    assert len(eng.registry) == len(eng.series) == eng.steps.last_t.size < peak
    assert len(eng.registry) <= peak // 2 + 1  # the hosts that went away held half the series
    eng.close()


def test_evicted_series_that_return_while_rows_wait_for_the_next_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows arrive a minute ahead of the pass that analyses them (they wait, keyed, in the fed
    buffer) while two hosts' series are evicted and come back: the waiting rows are keyed again,
    the returning series are learnt afresh, and the fed engine still matches the SQL path."""
    monkeypatch.setattr(engine_mod, "STALE_MIN", 10)
    site = random_site(43, n_hosts=4, hours=1, scrape_s=30)
    tbl = samples(site, Effects())
    gone = site.hosts[:2]
    host = tbl.column("host").cast(pa.string())
    t = np.asarray(tbl.column("ts").cast(pa.int64()).to_numpy(), np.int64)
    stays = ~np.asarray(pc.is_in(host, pa.array(gone)).to_numpy(zero_copy_only=False), bool)
    silent = (t > site.start_ms + 15 * MIN) & (t <= site.start_ms + 40 * MIN)
    tbl = tbl.filter(stays | ~silent)
    con = connect(tbl, None)
    sql, fed = Engine(settings(), []), Engine(settings(), [])
    sizes = []
    for now in range(site.start_ms + MIN, site.end_ms + 1, MIN):
        fed.feed("samples", _between(tbl, now - MIN if now == site.start_ms + MIN else now, now + MIN))
        got = fed.evaluate_fed(from_ms(now))
        want = sql.evaluate(con, from_ms(now))
        assert sorted((f.fingerprint, f.active) for f in got) == sorted((f.fingerprint, f.active) for f in want)
        sizes.append(len(fed.registry))
    assert fed.evicted_series > 0
    assert min(sizes[20:40]) < max(sizes[:15])  # the silent hosts' series went
    assert sizes[-1] >= max(sizes[:15])  # and came back
    fed.close()


def test_rows_keyed_before_an_eviction_are_keyed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass keys every fed row, also those it leaves for the next pass; when the series those
    rows name are evicted meanwhile, the next pass keys them again instead of using stale keys."""
    monkeypatch.setattr(engine_mod, "STALE_MIN", 1)
    site = random_site(44, n_hosts=2, hours=1, scrape_s=30)
    tbl = samples(site, Effects())
    con = connect(tbl, None)
    sql, fed = Engine(settings(), []), Engine(settings(), [])
    t1 = site.start_ms + 10 * MIN
    fed.feed("samples", _between(tbl, site.start_ms - 1, t1 + 2 * MIN))  # two minutes ahead of the pass
    fed.evaluate_fed(from_ms(t1))
    sql.evaluate(con, from_ms(t1))
    assert fed.fed["samples"].rows > 0 and all(k is not None for k in fed.fed["samples"].keys)
    fed._evict_stale(t1 + 24 * HOUR)  # every series is stale by then: all evicted
    assert len(fed.registry) == 0 and fed.evicted_series > 0
    t2 = t1 + 2 * MIN
    got = fed.evaluate_fed(from_ms(t2))  # keys the waiting rows again (their series are new now)
    want = sql.evaluate(con, from_ms(t2))
    assert sorted(f.fingerprint for f in got) == sorted(f.fingerprint for f in want)
    assert len(fed.registry) > 0
    fed.close()
