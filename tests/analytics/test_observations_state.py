"""The neighbour (ARP/NDP) state the observation tracker carries between passes: MAC changes are
found across passes, state of pairs gone silent is pruned, and a pair that returns starts afresh."""

from __future__ import annotations

import pyarrow as pa

from analytics.observations import ObservationTracker
from analytics.settings import AnalyticsSettings

T0 = 1_767_225_600_000
NO_HELD = pa.table(
    {
        n: pa.array([], pa.int64() if n == "t" else pa.string())
        for n in ("ip", "kind", "owner", "cluster", "network", "t", "mac", "source")
    }
)


def _arp(rows: list[tuple[str, str, int, str]]) -> pa.Table:
    """Neighbour rows (ip, observer, ms after T0, mac) shaped as the engine hands them over."""
    return pa.table(
        {
            "ip": [r[0] for r in rows],
            "owner": [r[1] for r in rows],
            "network": ["net-a"] * len(rows),
            "t": pa.array([T0 + r[2] for r in rows], pa.int64()),
            "mac": [r[3] for r in rows],
        }
    )


def test_mac_changes_across_passes_and_pruned_pairs_start_afresh() -> None:
    tr = ObservationTracker(AnalyticsSettings.model_validate({}))
    tr.fold(
        NO_HELD, _arp([("10.0.0.1", "hv1", 0, "aa"), ("10.0.0.2", "hv1", 0, "bb"), ("10.0.0.1", "hv2", 0, "aa")]), T0
    )
    assert tr.pairs == 3 and not tr.changes
    # next pass: 10.0.0.1 answers hv1 with another MAC (a change against the previous pass's state)
    tr.fold(NO_HELD, _arp([("10.0.0.1", "hv1", 60_000, "cc"), ("10.0.0.2", "hv1", 60_000, "bb")]), T0 + 60_000)
    (change,) = tr.changes[("10.0.0.1", "hv1")]
    assert (change.prev, change.mac, change.t) == ("aa", "cc", T0 + 60_000)
    assert tr.neighbor_latest["10.0.0.1"][0] == "cc" and tr.neighbor_latest["10.0.0.1"][3] == ["hv1", "hv2"]
    # hv2's pair goes silent: past the retention it is forgotten, the others stay
    tr.fold(NO_HELD, _arp([("10.0.0.1", "hv1", tr.retention, "cc"), ("10.0.0.2", "hv1", tr.retention, "bb")]), T0)
    tr.prune(T0 + tr.retention + 30_000)
    assert tr.pairs == 2
    # it comes back with another MAC: no remembered answer, so no change (it starts afresh)
    back = tr.retention + 60_000
    tr.fold(NO_HELD, _arp([("10.0.0.1", "hv2", back, "dd")]), T0 + back)
    assert tr.pairs == 3 and ("10.0.0.1", "hv2") not in tr.changes
    # and the state follows it from there
    tr.fold(NO_HELD, _arp([("10.0.0.1", "hv2", back + 60_000, "ee")]), T0 + back + 60_000)
    assert [c.mac for c in tr.changes[("10.0.0.1", "hv2")]] == ["ee"]


def test_names_are_renumbered_once_most_pairs_are_gone_and_state_survives() -> None:
    """2,000 addresses answer once, then only five keep answering: past the retention the id
    tables shrink to what is live, and the survivors' MAC changes are still found."""
    tr = ObservationTracker(AnalyticsSettings.model_validate({}))
    many = [(f"10.1.{i // 250}.{i % 250}", "hv1", 0, f"m{i}") for i in range(2000)]
    tr.fold(NO_HELD, _arp(many), T0)
    keep = many[:5]
    later = tr.retention
    tr.fold(NO_HELD, _arp([(ip, ob, later, mac) for ip, ob, _, mac in keep]), T0 + later)
    tr.prune(T0 + later + 30_000)
    assert tr.pairs == 5
    assert len(tr._ips) == 5 and len(tr._macs) == 5 and len(tr._observers) == 1
    tr.fold(NO_HELD, _arp([(ip, ob, later + 60_000, "new") for ip, ob, _, _ in keep]), T0 + later + 60_000)
    assert sorted(k[0] for k in tr.changes) == sorted(ip for ip, *_ in keep)
    assert {c.prev for k in tr.changes for c in tr.changes[k]} == {mac for *_, mac in keep}
