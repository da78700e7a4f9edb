"""Fed rows carry series ids remembered per chunk layout; they are always the ids the registry
gives, also across evictions (which renumber every series) and series that come back.

Why: the engine resolves a remembered layout's keys to series ids once, not once per pass; a
stale id would silently attribute a host's samples to another series, so every pass here checks
the ids handed to the step accumulator against a fresh lookup, and the findings and congestion
scores against the SQL path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import analytics.engine as engine_mod
from analytics.engine import Engine
from analytics.rates import RawRows, StepAccumulator
from collector.schema import from_ms
from tests.analytics.harness import MIN, connect, settings
from tests.analytics.synth import Effects, random_site, samples


def _records(tbl: pa.Table, lo: int, hi: int) -> list[pa.Table]:
    """Rows with ts in (lo, hi] as the parser hands them over: one table per (host, scrape)."""
    t = np.asarray(tbl.column("ts").cast(pa.int64()).to_numpy(), np.int64)
    part = tbl.filter((t > lo) & (t <= hi))
    if not part.num_rows:
        return []
    host = np.asarray(part.column("host").cast(pa.string()).to_pylist(), object)
    ts = np.asarray(part.column("ts").cast(pa.int64()).to_numpy(), np.int64)
    out = []
    for h, s in sorted(set(zip(host.tolist(), ts.tolist(), strict=True)), key=lambda x: (x[1], x[0])):
        out.append(part.filter(pa.array((host == h) & (ts == s))))
    return out


def test_remembered_series_ids_are_the_registrys_across_evictions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "STALE_MIN", 10)
    site = random_site(45, n_hosts=4, hours=1, scrape_s=30)
    t0 = site.start_ms + 35 * MIN
    tbl = samples(site, Effects(congestion=[(site.hosts[2:3], t0, t0 + 15 * MIN)]))
    gone = site.hosts[:2]
    t = np.asarray(tbl.column("ts").cast(pa.int64()).to_numpy(), np.int64)
    stays = ~np.asarray(pc.is_in(tbl.column("host").cast(pa.string()), pa.array(gone)).to_numpy(), bool)
    silent = (t > site.start_ms + 12 * MIN) & (t <= site.start_ms + 30 * MIN)
    tbl = tbl.filter(stays | ~silent)  # two hosts go silent long enough to be evicted, then return

    checked = {"passes": 0}
    process = StepAccumulator.process

    def checking(self: StepAccumulator, con: Any, raw: pa.Table | RawRows, lo_us: int, hi_us: int) -> pa.Table:
        if isinstance(raw, RawRows):  # the fed reader's numpy columns
            keys, sid = raw.k, raw.sid
        else:
            keys = np.asarray(raw.column("k").to_numpy(), np.uint64)
            sid = np.asarray(raw.column("sid").to_numpy(), np.int64) if "sid" in raw.column_names else None
        if sid is not None:
            want = self.registry.known_ids(keys)
            assert np.array_equal(sid, want)
            checked["passes"] += 1
        return process(self, con, raw, lo_us, hi_us)

    monkeypatch.setattr(StepAccumulator, "process", checking)
    con = connect(tbl, None)
    sql, fed, plain = Engine(settings(), []), Engine(settings(), []), Engine(settings(), [])
    plain.series.sids = lambda *_a, **_k: None  # type: ignore[method-assign]  # the former path: resolve every pass
    for now in range(site.start_ms + MIN, site.end_ms + 1, MIN):
        for rec in _records(tbl, now - MIN, now):
            fed.feed("samples", rec)
            plain.feed("samples", rec)
        got = fed.evaluate_fed(from_ms(now))
        assert repr(got) == repr(plain.evaluate_fed(from_ms(now)))  # evidence included
        assert repr(fed.congestion_scores()) == repr(plain.congestion_scores())
        want = sql.evaluate(con, from_ms(now))
        assert sorted((f.fingerprint, f.active) for f in got) == sorted((f.fingerprint, f.active) for f in want)
    assert fed.evicted_series > 0 and fed.series.layout_hits > 0
    assert checked["passes"] > 30  # the remembered ids were used (and checked) in most passes
    assert any(f.active for f in got) or fed.congestion.incidents  # the congested host was found
    fed.close()
    plain.close()
