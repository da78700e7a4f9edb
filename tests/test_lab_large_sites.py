"""Large lab sites: Azure Local clusters of at most 16 nodes, bounded memory, unchanged small sites.

A 500-host site used to be one 500-node storage mesh (every host an SMB client of every other),
which no real site is and which made a host's series — and the lab's and the detectors' memory —
grow with the site. These tests pin what changed and what must not: sites of up to 16 hosts
(the demo, the replay scenario library) render the very bytes they always did, whatever the
memory budget; larger sites keep storage traffic, RDMA connections and host neighbours inside
each cluster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import lab
import lab.hosts
from collector.catalog import windows_perfcounter_metric
from collector.schema import RawRecord
from lab.generate import _Lab
from lab.hosts import SeriesStore
from tests.replay.build_scenarios import EDGE_SITE

ACTIVE = windows_perfcounter_metric("RDMA Activity", "RDMA Active Connections")
T0 = datetime(2026, 11, 16, 8, tzinfo=UTC)
WIDE = {  # room for hundreds of hosts (the bench's layout)
    "network": lab.NetworkSpec(ip_address_prefix="10.40.0.0/21"),
    "host_ip_start": "10.40.2.0",
    "storage_subnets": ("10.71.0.0/21", "10.72.0.0/21"),
}


def _site(hosts: int, **kw: object) -> lab.SiteSpec:
    return lab.SiteSpec(hosts=tuple(f"hci-node-{i + 1:03d}" for i in range(hosts)), **WIDE, **kw)  # type: ignore[arg-type]


def _digest(scenario: lab.Scenario) -> str:
    h = hashlib.sha256()
    for r in lab.generate(scenario):
        h.update(f"{r.ts.isoformat()}|{r.kind}|{r.target}|{r.host}|{sorted(r.labels.items())}\n".encode())
        h.update(r.body)
    return h.hexdigest()


# Digests of every record (time, kind, target, host, labels, body) as the lab rendered them before
# sites were split into clusters and the plan became lazy (main at e7c20bd). A change here changes
# the demo and the replay scenario library: rebuild and re-check them on purpose, never by accident.
PINNED: dict[str, tuple[Callable[[], lab.Scenario], str]] = {
    "compact-1h": (
        lambda: lab.compact_scenario(seed=7, hours=1),
        "e20e68510db2c6ca2783371fa1b5f2811a7134a00dc1706f6bdc98866d07918b",
    ),
    "arc-40min": (
        lambda: lab.Scenario(site=lab.ARC_SITE, start=T0, duration=timedelta(minutes=40), seed=5),
        "c5aba9622f730c511f69f9b0bacccbe68301596b5d7af1ba484b874237aca760",
    ),
    "edge-40min": (
        lambda: lab.Scenario(site=EDGE_SITE, start=T0, duration=timedelta(minutes=40), seed=3),
        "61710e64c1cbd7f3dd96943bb22d5d87851f2b8ab8bbc387d4741ab91a8d6c3f",
    ),
    "16-hosts-10min": (
        lambda: lab.Scenario(
            site=_site(16), start=T0, duration=timedelta(minutes=10), interval=timedelta(seconds=30), seed=11
        ),
        "5c75e361a429830099e9fab00bde54579db7a26a679dfed78fec2c0cc374225b",
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_sites_of_up_to_16_hosts_render_the_bytes_they_always_did(name: str) -> None:
    make, expected = PINNED[name]
    assert _digest(make()) == expected


@pytest.mark.parametrize("name", ["compact-1h", "16-hosts-10min"])
def test_series_kept_on_disk_render_the_same_bytes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Budget 0: every host's matrix goes to the scratch file; the records must not change."""
    make, expected = PINNED[name]
    monkeypatch.setattr(lab.hosts, "MATRIX_BUDGET", 0)
    lab_ = _Lab(make())
    assert lab_.hosts.matrices.in_memory == 0 and lab_.hosts.matrices.spilled > 0
    assert _digest(make()) == expected


# ------------------------------------------------------------------------------------------------
# the cluster layout


@pytest.mark.parametrize("hosts", [2, 3, 16, 17, 31, 50, 500])
def test_hosts_split_into_the_fewest_even_clusters_of_at_most_16(hosts: int) -> None:
    site = _site(hosts)
    clusters = site.hci_clusters()
    assert [h for c in clusters for h in c] == list(range(hosts))  # contiguous, in host order
    assert len(clusters) == -(-hosts // 16)
    sizes = [len(c) for c in clusters]
    assert max(sizes) <= 16 and max(sizes) - min(sizes) <= 1
    assert all(site.cluster_peers(h) == c for c in clusters for h in c)


def test_cluster_nodes_is_an_azure_local_cluster_size() -> None:
    assert [len(c) for c in _site(8, cluster_nodes=4).hci_clusters()] == [4, 4]
    for bad in (0, 17):
        with pytest.raises(ValueError, match=r"cluster_nodes must be 1\.\.16"):
            _site(8, cluster_nodes=bad)
    with pytest.raises(IndexError):
        _site(4).cluster_peers(4)


def _large_scenario(hosts: int = 40, minutes: int = 3) -> lab.Scenario:
    return lab.Scenario(
        site=_site(hosts),
        start=T0,
        duration=timedelta(minutes=minutes),
        interval=timedelta(seconds=30),
        slow_interval=timedelta(seconds=60),
        seed=11,
    )


@pytest.fixture(scope="module")
def large() -> tuple[lab.Scenario, list[RawRecord]]:
    scenario = _large_scenario()
    return scenario, list(lab.generate(scenario))


def test_storage_traffic_and_neighbours_stay_inside_a_cluster(large: tuple[lab.Scenario, list[RawRecord]]) -> None:
    scenario, records = large
    site = scenario.site
    index = {name: i for i, name in enumerate(site.hosts)}
    world = _Lab(scenario).world
    seen_smb: set[str] = set()
    seen_nbr: set[str] = set()
    for rec in records:
        if rec.kind == "prometheus" and rec.host in index and rec.host not in seen_smb:
            seen_smb.add(rec.host)
            h = index[rec.host]
            peers = {site.hosts[p] for p in site.cluster_peers(h)} - {rec.host}
            servers = set()
            active = []
            for fam in text_string_to_metric_families(rec.body.decode()):
                for s in fam.samples:
                    if s.name.startswith("windows_smbclient_"):
                        servers.add(s.labels["server"])
                    if s.name == ACTIVE:
                        active.append(s.value)
            assert servers == peers, rec.host
            assert active and max(active) <= 2 * len(peers) + 1  # 2 per cluster peer, +/- 1 of jitter
        if rec.kind == "neighbors" and rec.host not in seen_nbr:
            seen_nbr.add(rec.host)
            h = index[rec.host]
            peer_hosts = [world.hosts[p] for p in site.cluster_peers(h) if p != h]
            rows = json.loads(rec.body)
            storage = {r["ip"] for r in rows if r["interface"] in site.rdma_aliases}
            assert storage == {ad.ip for p in peer_hosts for ad in p.adapters}
            host_ips = {r["ip"] for r in rows} & set(site.host_ips())
            assert host_ips == {p.mgmt_ip for p in peer_hosts}
    assert seen_smb == set(site.hosts) and seen_nbr == set(site.hosts)
    assert len(site.hci_clusters()) == 3


def test_a_large_sites_scrapes_are_spread_over_one_interval(large: tuple[lab.Scenario, list[RawRecord]]) -> None:
    """Every host's first scrape and first neighbour table come within the first interval, and
    the records are in time order."""
    scenario, records = large
    first: dict[tuple[str, str], datetime] = {}
    for r in records:
        first.setdefault((r.kind, r.host), r.ts)
    for name in scenario.site.hosts:
        assert first[("prometheus", name)] - scenario.start < scenario.interval
        assert first[("neighbors", name)] - scenario.start < scenario.slow_interval
    assert [r.ts for r in records] == sorted(r.ts for r in records)


def test_a_hosts_series_do_not_grow_with_the_site() -> None:
    """A host of a 40-host site carries as many series as one of a 16-host site (one cluster each)."""
    per_host = []
    for hosts in (16, 40):
        model = _Lab(_large_scenario(hosts, minutes=1)).hosts
        per_host.append(model.matrices.max_columns)
    assert per_host[1] <= per_host[0]


# ------------------------------------------------------------------------------------------------
# SeriesStore: a block of ticks reads back the same numbers from memory or from the scratch file


@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 7)), min_size=1, max_size=6),
    budget=st.integers(0, 2000),
    lo=st.integers(-2, 11),
    width=st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_series_store_reads_back_what_it_was_given(
    shapes: list[tuple[int, int]], budget: int, lo: int, width: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    mats = [rng.normal(0, 1e12, size=s) for s in shapes]
    for m in mats:
        m[rng.random(m.shape) < 0.1] = np.nan  # NaN and infinities survive the round trip too
        m[rng.random(m.shape) < 0.05] = np.inf
    store = SeriesStore(budget)
    for m in mats:
        store.append(m)
    assert len(store) == len(mats)
    assert store.in_memory + store.spilled == sum(m.nbytes for m in mats)
    assert store.max_columns == max(c for _r, c in shapes)
    for h, m in enumerate(mats):
        got = store.rows(h, max(0, lo), max(0, lo) + width)
        want = m[max(0, lo) : max(0, lo) + width]
        assert got.shape == want.shape
        assert np.array_equal(got, want, equal_nan=True)
