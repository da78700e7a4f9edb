"""Samples handed to the engine already cut by its feed sets (a replay's parse workers do it) give
the rows, and the findings, of samples the engine sorts itself; a cut by other sets is not used."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analytics.engine import DECLARED_RANGES_METRIC, Engine
from collector.schema import from_ms
from tests.analytics.harness import HOUR, MIN, settings
from tests.analytics.synth import Effects, random_site, samples


def _between(tbl: pa.Table, lo: int, hi: int) -> pa.Table:
    t = np.asarray(tbl.column("ts").cast(pa.int64()).to_numpy(), np.int64)
    return tbl.filter((t > lo) & (t <= hi))


def _cut(tbl: pa.Table, sets: tuple[frozenset[str], ...]) -> list[pa.Table | None]:
    metric = tbl.column("metric").cast(pa.string())
    out: list[pa.Table | None] = []
    for values in sets:
        part = tbl.filter(pc.is_in(metric, pa.array(sorted(values), pa.string())))
        out.append(part if part.num_rows else None)
    return out


def _with_declared_range(tbl: pa.Table) -> pa.Table:
    """``tbl`` with one MetalLB range row (the declared set's metric) after its first row."""
    row = tbl.slice(0, 1).to_pylist()[0]
    row |= {
        "metric": DECLARED_RANGES_METRIC,
        "labels": [("cluster", "c1"), ("pool", "p"), ("addresses", "10.0.0.8/29")],
    }
    extra = pa.Table.from_pylist([row], schema=tbl.schema)
    return pa.concat_tables([tbl.slice(0, 1), extra.cast(tbl.schema), tbl.slice(1)])


def test_a_split_feed_keeps_the_rows_and_findings_of_the_engine_s_own_sort() -> None:
    site = random_site(43, n_hosts=3, hours=2, scrape_s=30)
    t0 = site.start_ms + HOUR + 10 * MIN
    tbl = samples(site, Effects(congestion=[(site.hosts[:1], t0, t0 + 20 * MIN)]), filler_series=3)
    s = settings()
    own, split, foreign = Engine(s, []), Engine(s, []), Engine(s, [])
    assert own.feed_sets[0] == frozenset([DECLARED_RANGES_METRIC]) and own.feed_sets[1] == own.metrics
    other_sets = (frozenset([DECLARED_RANGES_METRIC]), frozenset(sorted(own.metrics)[:1]))  # config changed
    kinds: set[str] = set()
    for t in range(site.start_ms + MIN, site.end_ms + 1, MIN):
        part = _between(tbl, t - MIN, t)
        if t == site.start_ms + 10 * MIN:
            part = _with_declared_range(part)
        own.feed("samples", part)
        split.feed("samples", part, (split.feed_sets, _cut(part, split.feed_sets)))
        foreign.feed("samples", part, (other_sets, _cut(part, other_sets)))  # ignored: not its sets
        for name in ("samples", "declared_ranges"):
            want = own.fed[name].table()
            assert split.fed[name].table().equals(want) and foreign.fed[name].table().equals(want)
        if t == site.start_ms + 10 * MIN:
            assert split.fed["declared_ranges"].rows == 1
        got = [
            sorted((f.fingerprint, f.active, f.severity) for f in e.evaluate_fed(from_ms(t)))
            for e in (own, split, foreign)
        ]
        assert got[0] == got[1] == got[2], f"at {from_ms(t)}"
        kinds |= {fp[0] for fp in got[0]}
    assert kinds, "no finding: the comparison proves little"
    for e in (own, split, foreign):
        e.close()
