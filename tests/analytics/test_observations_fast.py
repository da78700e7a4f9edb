"""The observation side's fast paths give exactly what its careful paths give.

* :func:`split_observations` with its memo (a pass whose fed rows repeat the last pass's content
  gets the last tables with new times) equals :func:`split_observations_careful`, table for table;
* an :class:`ObservationTracker` with its fast paths (holder groups gathered in a dict, holder
  and neighbour passes that repeat the last one's content) ends every pass in the state of one that always
  takes the careful paths (``fast=False``): holdings in the same insertion order with the same
  periods, MACs, sources and sightings, the same MAC changes, events, newest neighbour answers,
  coverage, pair arrays and name ids.

Input: the ``ip_observations`` rows the parsers make of an hour of the demo site (k8s inventory,
neighbour tables, Windows NICs, HAProxy, Tcpip events; a duplicate IP and a failover), handed
over per record and split per 60 s pass as the fed engine does; and hand-made passes for the
cases the demo hour meets rarely (two new holdings first seen in the same ms, a neighbour pair
forgotten and back, a MAC change after repeated passes).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import analytics.observations as obs_mod
from analytics.observations import ObservationTracker, split_observations, split_observations_careful
from analytics.settings import AnalyticsSettings
from collector.catalog import Catalog
from hciwatch.parse_pool import parse_one
from tests.fixtures import reuse_equality

MIN = 60_000


def state(tr: ObservationTracker) -> tuple[Any, ...]:
    """Everything a consumer (or the next pass) can read, orders included."""
    return (
        [(k, h.periods, h.macs, h.sources, h.sightings) for k, h in tr.holdings.items()],
        [(k, list(q)) for k, q in tr.changes.items()],
        list(tr.events),
        list(tr.neighbor_latest.items()),
        tr.holder_minutes,
        tr.first_holder_ms,
        tr.version,
        tr._pair_key.tolist(),
        tr._pair_mac.tolist(),
        tr._pair_t.tolist(),
        tr._ips.names,
        tr._observers.names,
        tr._macs.names,
    )


def _ms(tbl: pa.Table) -> np.ndarray[Any, Any]:
    return np.asarray(tbl.column("ts").cast(pa.int64()).to_numpy(), np.int64)


def _demo_tables() -> list[pa.Table]:
    """Each demo-hour record's ``ip_observations`` rows, in record order."""
    catalog = Catalog()
    out = []
    for rec in reuse_equality.demo_hour():
        tbl = parse_one(rec, catalog).ip_observations
        if tbl.num_rows:
            out.append(tbl)
    return out


class _Counts:
    """How often each careful path ran (the fast paths must have been taken too)."""

    def __init__(self, tr: ObservationTracker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.groups = self.neighbors = self.repeats = 0
        groups, neighbors, repeat = tr._fold_held_groups, tr._neighbors_careful, tr._fold_held_repeat

        def count_repeat(held: pa.Table) -> bool:
            done = repeat(held)
            self.repeats += done
            return done

        def count_groups(held: pa.Table) -> None:
            self.groups += 1
            groups(held)

        def count_neighbors(nb: pa.Table) -> bool:
            self.neighbors += 1
            return neighbors(nb)

        monkeypatch.setattr(tr, "_fold_held_groups", count_groups)
        monkeypatch.setattr(tr, "_neighbors_careful", count_neighbors)
        monkeypatch.setattr(tr, "_fold_held_repeat", count_repeat)


def test_demo_hour_passes_fast_equal_careful(monkeypatch: pytest.MonkeyPatch) -> None:
    tables = _demo_tables()
    spans = [(int(_ms(t).min()), int(_ms(t).max())) for t in tables]
    settings = AnalyticsSettings.model_validate({})
    fast, careful = ObservationTracker(settings), ObservationTracker(settings, fast=False)
    counts = _Counts(fast, monkeypatch)
    splits = [0]
    split_tables = obs_mod._split_tables

    def count_split(*args: Any) -> tuple[pa.Table, pa.Table]:
        splits[0] += 1
        return split_tables(*args)

    monkeypatch.setattr(obs_mod, "_split_tables", count_split)
    start = (min(s for s, _ in spans) // MIN) * MIN
    end = max(e for _, e in spans)
    passes = 0
    for lo in range(start, end + 1, MIN):
        hi = lo + MIN
        # what the engine holds at this pass: every record with rows in (lo, hi], and the next
        # minute's records already fed (rows past the cursor wait for the next pass)
        fed = [t for t, (a, b) in zip(tables, spans, strict=True) if b > lo and a <= hi + MIN]
        if not fed:
            continue
        obs = pa.concat_tables(fed)
        held, nb = split_observations(obs, lo, hi)
        want_held, want_nb = split_observations_careful(obs, lo, hi)
        assert held.equals(want_held, check_metadata=True) and held.schema == want_held.schema, f"held at {lo}"
        assert nb.equals(want_nb, check_metadata=True) and nb.schema == want_nb.schema, f"neighbours at {lo}"
        fast.fold(held, nb, hi, prune=False)
        careful.fold(want_held, want_nb, hi, prune=False)
        fast.prune(hi)
        careful.prune(hi)
        assert state(fast) == state(careful), f"pass ending {hi}"
        passes += 1
    assert passes >= 55
    assert careful.holdings and careful.changes and careful.events and careful.neighbor_latest
    # most passes took the fast paths (the first, new holders and MAC changes take the careful ones)
    assert 0 < counts.groups < passes // 2 and 0 < counts.neighbors < passes // 2
    assert counts.repeats > passes // 4  # holder passes that only moved their times
    assert passes < splits[0] < 2 * passes - 10  # the careful split ran for each pass, the memo's less


HELD_COLUMNS = ("ip", "kind", "owner", "cluster", "network", "t", "mac", "source")


def _held(rows: list[tuple[Any, ...]]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(HELD_COLUMNS)
    return pa.table(
        {n: pa.array(list(c), pa.int64() if n == "t" else pa.string()) for n, c in zip(HELD_COLUMNS, cols, strict=True)}
    )


def _arp(rows: list[tuple[str, str, int, str]]) -> pa.Table:
    return pa.table(
        {
            "ip": [r[0] for r in rows],
            "owner": [r[1] for r in rows],
            "network": pa.array(["net-a"] * len(rows)).dictionary_encode(),
            "t": pa.array([r[2] for r in rows], pa.int64()),
            "mac": [r[3] for r in rows],
        }
    )


def _both(passes: list[tuple[pa.Table, pa.Table, int]]) -> None:
    settings = AnalyticsSettings.model_validate({})
    fast, careful = ObservationTracker(settings), ObservationTracker(settings, fast=False)
    for i, (held, nb, hi) in enumerate(passes):
        fast.fold(held, nb, hi)
        careful.fold(held, nb, hi)
        assert state(fast) == state(careful), f"pass {i}"


def test_new_holdings_first_seen_together_keep_the_careful_order() -> None:
    """Sixty new services in one ms (the order Acero's hash table gives them is kept), then the
    same rows again (fast), then more new ones next to known ones, and conflict events."""
    t0 = 1_767_225_600_000
    svc = [(f"10.0.{i // 200}.{i % 200}", "service", f"ns/s{i}", "c1", "net-a") for i in range(60)]
    first = _held([(*k, t0, None, "k8s") for k in svc])
    again = _held([(*k, t0 + MIN, None, "k8s") for k in svc])
    more = _held(
        [(*k, t0 + 2 * MIN, None, "k8s") for k in svc]
        + [(f"10.1.0.{i}", "node", f"vm{i}", "c2", "net-a", t0 + 2 * MIN, f"aa:{i:02x}", "k8s") for i in range(20)]
        + [("10.0.0.1", "event", "h1/tcpip-4199", None, None, t0 + 2 * MIN + 5, "bb:01", "event")]
        + [("10.0.0.2", "event", "h2/tcpip-4199", None, None, t0 + 2 * MIN + 5, "bb:02", "event")]
    )
    nb = _arp([])
    _both([(first, nb, t0), (again, nb, t0 + MIN), (more, nb, t0 + 2 * MIN)])


def test_holder_repeats_reuse_their_holdings_until_one_is_forgotten() -> None:
    """Holder passes that repeat their content reuse the holdings the last repeat found (and skip
    their sources) only while no holding was added or forgotten: repeats, a gap past the presence
    TTL (new periods), a holding pruned past the retention and learnt again from the same
    content, a new holding elsewhere (epoch moves) — every pass ends in the careful state."""
    t0 = 1_767_225_600_000
    settings = AnalyticsSettings.model_validate({})
    tracker = ObservationTracker(settings)
    retention, ttl = tracker.retention, tracker.ttl
    svc = [(f"10.0.0.{i}", "service", f"ns/s{i}", "c1", "net-a", f"aa:{i:02x}", "k8s") for i in range(12)]
    nic = [("10.9.0.1", "nic", "hv1/eth0", None, None, "bb:01", "wmi")]

    def held(t: int, rows: list[tuple[Any, ...]]) -> pa.Table:
        return _held([(*r[:5], t, *r[5:]) for r in rows])

    nb = _arp([])
    passes = [(held(t0 + k * MIN, svc), nb, t0 + k * MIN) for k in range(4)]
    gap = t0 + 3 * MIN + ttl + 5 * MIN  # past the presence TTL: each holding opens a new period
    passes += [(held(gap + k * MIN, svc), nb, gap + k * MIN) for k in range(3)]
    late = gap + 2 * MIN + retention + 2 * MIN
    passes += [(_held([]), nb, late - MIN)]  # a pass without holder rows: every holding is forgotten
    passes += [(held(late + k * MIN, svc), nb, late + k * MIN) for k in range(3)]
    passes += [(held(late + 3 * MIN, svc + nic), nb, late + 3 * MIN)]  # a new holding: the dict path
    passes += [(held(late + k * MIN, svc + nic), nb, late + k * MIN) for k in range(4, 7)]
    fast, careful = tracker, ObservationTracker(settings, fast=False)
    reused = 0
    for i, (h, n, hi) in enumerate(passes):
        rep = fast._held_repeat
        before = None if rep is None else (rep.holdings, rep.epoch)
        fast.fold(h, n, hi)
        careful.fold(h, n, hi)
        assert state(fast) == state(careful), f"pass {i}"
        assert fast.holdings or hi == late - MIN
        rep = fast._held_repeat
        reused += before is not None and before[0] is not None and rep is not None and rep.holdings is before[0]
    assert reused >= 6, "repeated passes reused the holdings they found"


def test_neighbour_repeats_then_change_then_forgotten_pair() -> None:
    """Repeated neighbour passes (fast), a MAC change among them, a pair that goes silent past
    the retention and comes back: every pass ends in the careful state."""
    t0 = 1_767_225_600_000
    settings = AnalyticsSettings.model_validate({})
    retention = ObservationTracker(settings).retention
    pairs = [(f"10.0.0.{i}", f"hv{j}") for i in range(30) for j in range(3)]
    no_held = _held([])

    def arp(t: int, flip: str | None = None, skip: str | None = None) -> pa.Table:
        return _arp([(ip, ob, t, "cc" if ip == flip else f"m{ip}") for ip, ob in pairs if ip != skip])

    passes = [(no_held, arp(t0 + k * MIN), t0 + k * MIN) for k in range(4)]
    passes += [(no_held, arp(t0 + 4 * MIN, flip="10.0.0.3"), t0 + 4 * MIN)]
    passes += [(no_held, arp(t0 + k * MIN), t0 + k * MIN) for k in range(5, 8)]
    late = t0 + 7 * MIN + retention + MIN
    passes += [(no_held, arp(late, skip="10.0.0.5"), late)]  # the others' pairs were pruned meanwhile
    passes += [(no_held, arp(late + MIN, skip="10.0.0.5"), late + MIN)]
    passes += [(no_held, arp(late + 2 * MIN), late + 2 * MIN)]
    _both(passes)


def _findings(fs: list[Any]) -> list[tuple[Any, ...]]:
    return [(f.kind, f.resource, f.severity, f.summary, json.dumps(f.evidence, default=str), f.active) for f in fs]


def test_engine_findings_with_the_detector_caches_equal_fresh_ones() -> None:
    """Through the fed engine: the duplicate-IP claim groups and the overlap verdicts (and list of
    flagged holdings) kept between
    passes (and the tracker's fast paths) give the findings, pass for pass, of an engine whose
    tracker is careful and whose caches are dropped before every pass. Holders come and go (the
    caches' keys), a Service sits on a node-pool address (overlap) and two clusters share a VIP."""
    from analytics.engine import Engine
    from collector.schema import from_ms
    from tests.analytics.harness import HOUR, settings
    from tests.analytics.synth import Holder, IpWorld, populate_clusters, random_network

    rng = np.random.default_rng(11)
    start = 1_767_225_600_000
    end = start + 2 * HOUR
    net = random_network(rng, "cn-x", ["x1", "x2"], vip_size=30, node_size=20, management="m")
    world = IpWorld(rng, start, end, poll_s=60, observers=["o1", "o2"])
    hs = populate_clusters(world, net, services={"x1": 3, "x2": 2}, nodes={"x1": 2, "x2": 2})
    vip = next(h for h in hs["x1"] if h.owner_kind == "service").ip
    node_ip = next(h for h in hs["x2"] if h.owner_kind == "node").ip
    world.holders.append(Holder(vip, "service", "a/b", "x2", net.name, start + 30 * MIN, start + 70 * MIN))
    world.holders.append(Holder(node_ip, "service", "web/odd", "x1", net.name, start + 50 * MIN, end))
    world.holders.append(Holder("10.250.0.9", "nic", "hv9/eth0", None, None, start, start + 20 * MIN))
    obs = world.table()
    s = settings()
    fast, careful = Engine(s, [net]), Engine(s, [net])
    careful.obs = ObservationTracker(s, fast=False)
    seen = set()
    for t in range(start + MIN, end + 1, MIN):
        part = obs.filter((_ms(obs) > t - MIN) & (_ms(obs) <= t))
        fast.feed("ip_observations", part)
        careful.feed("ip_observations", part)
        careful.duplicates._groups = None
        careful.overlap._verdicts.clear()
        careful.overlap._flagged_sig = None
        got, want = fast.evaluate_fed(from_ms(t)), careful.evaluate_fed(from_ms(t))
        assert _findings(got) == _findings(want), f"at {t}"
        seen |= {f.kind.value for f in got if f.active}
    assert {"duplicate_ip", "ip_pool_overlap"} <= seen
    fast.close()
    careful.close()


def test_lbinfo_texts_that_are_not_objects_name_no_ip() -> None:
    """``lbinfo`` comes from ``to_json(labels)`` (an object); any other JSON — or none, or one
    nested past the recursion limit — names no IP instead of stopping the pass."""
    from analytics.duplicate_ip import DuplicateIpDetector
    from analytics.networks import NetworkIndex
    from tests.analytics.harness import settings

    det = DuplicateIpDetector(settings(), NetworkIndex([]))
    for text in ("null", "[1]", '"10.0.0.1"', "7", "not json", "[" * 100_000):
        assert det._lbinfo(text) is None
    got = det._lbinfo(json.dumps({"ip": "10.0.0.1", "cluster": "c", "namespace": "n", "service": "s", "ports": "80"}))
    assert got == ("10.0.0.1", ("c", "n/s"), "80")
