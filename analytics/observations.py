"""An incremental picture of who holds which IP address, built from ``ip_observations``.

Each evaluation reads only the rows that arrived since the last one and folds them into:

* **holdings** — per (ip, owner_kind, owner, cluster, network): the periods the owner was seen
  holding the address. Sightings closer than ``duplicate_ip.presence_ttl`` join into one period,
  so "held at the same time" means overlapping periods, not a shared history;
* **MAC changes** per (ip, observer) from neighbour (ARP/NDP) tables — the raw material of
  arpwatch-style flip-flop detection. Each observer's last MAC per IP is remembered, so a call
  compares only the new rows (vectorised) with it; rows further apart than ``max_rate_gap`` are
  not compared (a change across a long gap is not evidence of alternation);
* **the latest neighbour MAC** per IP, and **Tcpip 4198/4199 conflict events**.

Inventory sources re-list everything on every poll, so an address that stops being listed stops
being held ``presence_ttl`` after its last sighting.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analytics.rates import query_table
from analytics.settings import AnalyticsSettings

# One plain scan per evaluation; holdings are grouped and neighbour changes found in Arrow/numpy.
WINDOW_SQL = """
SELECT ip, CAST(owner_kind AS VARCHAR) AS kind, owner, CAST(cluster AS VARCHAR) AS cluster,
       CAST(network AS VARCHAR) AS network, epoch_ms(ts) AS t, mac, CAST(source AS VARCHAR) AS source
FROM ip_observations
WHERE ts > make_timestamptz($lo_us) AND ts <= make_timestamptz($hi_us)
"""

# owner kinds that *hold* an address (as opposed to referencing or observing it)
HOLDER_KINDS = frozenset({"service", "node", "control-plane", "load-balancer", "pod",
                          "haproxy-frontend", "nic"})
REFERENCE_KINDS = frozenset({"haproxy-server"})


@dataclass(slots=True)
class Holding:
    """One owner's hold on one address: periods [start, end] in ms, newest last."""

    ip: str
    owner_kind: str
    owner: str
    cluster: str | None
    network: str | None
    periods: list[list[int]] = field(default_factory=list)
    macs: dict[str, int] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    sightings: int = 0

    @property
    def first(self) -> int:
        return self.periods[0][0]

    @property
    def last(self) -> int:
        return self.periods[-1][1]

    def add(self, first: int, last: int, ttl: int) -> None:
        """Add a sighting span; spans closer than ttl join into one period."""
        if self.periods and self.periods[-1][0] <= first and first - self.periods[-1][1] <= ttl:
            self.periods[-1][1] = max(self.periods[-1][1], last)
            return
        self.periods.append([first, last])
        self.periods.sort()
        merged: list[list[int]] = []
        for p in self.periods:
            if merged and p[0] - merged[-1][1] <= ttl:
                merged[-1][1] = max(merged[-1][1], p[1])
            else:
                merged.append(p)
        self.periods = merged

    def held_at(self, t: int, ttl: int) -> bool:
        """Held at time t: some period started by t and was last seen no more than ttl before t."""
        return any(s <= t and e >= t - ttl for s, e in self.periods)

    def prune(self, before: int) -> None:
        self.periods = [p for p in self.periods if p[1] >= before]


@dataclass(frozen=True, slots=True)
class MacChange:
    t: int
    ip: str
    observer: str
    network: str | None
    prev: str
    mac: str


@dataclass(frozen=True, slots=True)
class ConflictEvent:
    t: int
    ip: str
    host: str
    mac: str | None
    cluster: str | None
    network: str | None
    source: str


HoldingKey = tuple[str, str, str, str | None, str | None]


class ObservationTracker:
    """Folds new ``ip_observations`` rows into holdings, MAC changes and events."""

    def __init__(self, settings: AnalyticsSettings) -> None:
        self.s = settings
        d = settings.duplicate_ip
        self.ttl = int(d.presence_ttl.total_seconds() * 1000)
        self.retention = int(max(d.retention, settings.pools.allocation_ttl, settings.overlap.observed_ttl,
                                 d.flip_window * 2, d.event_ttl).total_seconds() * 1000)
        self.holdings: dict[HoldingKey, Holding] = {}
        self.changes: dict[tuple[str, str], deque[MacChange]] = {}
        self.events: deque[ConflictEvent] = deque()
        self.neighbor_latest: dict[str, tuple[str, int, str | None, list[str]]] = {}
        self.last_mac: dict[str, tuple[str, int]] = {}  # "ip|observer" → (mac, ts)
        self.version = 0  # bumps whenever anything changed (lets consumers skip work)

    def ingest(self, con: Any, cur_ms: int, hi_ms: int, *, prune: bool = True) -> None:
        """Fold rows with ts in (cur_ms, hi_ms]; then forget what is older than the retention
        (``prune=False`` keeps everything so past states can still be sampled; call
        :meth:`prune` afterwards)."""
        if hi_ms <= cur_ms:
            return
        raw = query_table(con, WINDOW_SQL, {"lo_us": cur_ms * 1000, "hi_us": hi_ms * 1000})
        changed = False
        if raw.num_rows:
            is_nb = pc.equal(raw.column("kind"), "neighbor")
            held = raw.filter(pc.invert(is_nb))
            if held.num_rows:
                held = held.append_column("b", pc.divide(held.column("t"),
                                                         pa.scalar(max(1, self.ttl), pa.int64())))
                agg = held.group_by(["ip", "kind", "owner", "cluster", "network", "b"]).aggregate(
                    [("t", "min"), ("t", "max"), ("t", "count"), ("mac", "distinct"), ("source", "distinct")])
                rows = agg.rename_columns(["ip", "kind", "owner", "cluster", "network", "b", "first_ms",
                                           "last_ms", "n", "macs", "names"]).to_pylist()
                for r in sorted(rows, key=lambda r: r["first_ms"]):
                    r["macs"] = [m for m in r["macs"] if m is not None]
                    r["mac"] = r["macs"][-1] if r["macs"] else None
                    self._hold(r)
                changed = True
            nb = raw.filter(pc.and_(is_nb, pc.is_valid(raw.column("mac"))))
            if nb.num_rows:
                nb = nb.append_column("key", pc.binary_join_element_wise(nb.column("ip"), nb.column("owner"), "|"))
                changed = self._neighbors(nb) or changed
        if prune:
            self.prune(hi_ms)
        if changed:
            self.version += 1

    def _neighbors(self, tbl: pa.Table) -> bool:
        """Detect per-observer MAC changes (vectorised; Python only touches changes and keys)."""
        enc = tbl.column("key").combine_chunks().dictionary_encode()
        keys: list[str] = enc.dictionary.to_pylist()
        k = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
        t = np.asarray(tbl.column("t").to_numpy(), np.int64)
        mac_enc = tbl.column("mac").combine_chunks().dictionary_encode()
        macs: list[str] = mac_enc.dictionary.to_pylist()
        m = np.asarray(mac_enc.indices.to_numpy(zero_copy_only=False), np.int64)
        order = np.lexsort((t, k))
        k, t, m = k[order], t[order], m[order]
        n = k.size
        first = np.r_[True, k[1:] != k[:-1]]
        last = np.r_[k[1:] != k[:-1], True]
        diff = np.zeros(n, bool)
        diff[1:] = (m[1:] != m[:-1]) & ~first[1:]
        ips = tbl.column("ip").take(pa.array(order)).to_pylist() if diff.any() else None
        owners = tbl.column("owner").take(pa.array(order)).to_pylist() if diff.any() else None
        nets = tbl.column("network").take(pa.array(order)).to_pylist()
        gap = int(self.s.max_rate_gap.total_seconds() * 1000)
        changed = False
        for i in np.nonzero(first | last)[0]:
            key = keys[int(k[i])]
            if first[i]:
                prev = self.last_mac.get(key)
                if prev is not None and prev[0] != macs[int(m[i])] and 0 < t[i] - prev[1] <= gap:
                    ip, owner = key.split("|", 1)
                    self._change(MacChange(int(t[i]), ip, owner, nets[i], prev[0], macs[int(m[i])]))
                    changed = True
            if last[i]:
                self.last_mac[key] = (macs[int(m[i])], int(t[i]))
                ip = key.split("|", 1)[0]
                cur = self.neighbor_latest.get(ip)
                observer = key.split("|", 1)[1]
                if cur is None or t[i] >= cur[1]:
                    obs = sorted({*(cur[3] if cur else []), observer})[:20]
                    self.neighbor_latest[ip] = (macs[int(m[i])], int(t[i]), nets[i], obs)
        if ips is not None and owners is not None:
            for i in np.nonzero(diff)[0]:
                if t[i] - t[i - 1] <= gap:
                    self._change(MacChange(int(t[i]), ips[i], owners[i], nets[i], macs[int(m[i - 1])],
                                           macs[int(m[i])]))
                    changed = True
        return changed

    def _change(self, ch: MacChange) -> None:
        q = self.changes.setdefault((ch.ip, ch.observer), deque())
        q.append(ch)
        if len(q) > 1 and q[-2].t > ch.t:
            self.changes[(ch.ip, ch.observer)] = deque(sorted(q, key=lambda c: c.t))

    def _hold(self, r: dict[str, Any]) -> None:
        kind = r["kind"]
        names = r["names"] or []
        if kind == "event":
            src = names[0] if names else "event"
            self.events.append(ConflictEvent(int(r["first_ms"]), r["ip"], r["owner"], r["mac"],
                                             r["cluster"], r["network"], src))
            if r["n"] > 1 and r["last_ms"] != r["first_ms"]:
                self.events.append(ConflictEvent(int(r["last_ms"]), r["ip"], r["owner"], r["mac"],
                                                 r["cluster"], r["network"], src))
            return
        key: HoldingKey = (r["ip"], kind, r["owner"], r["cluster"], r["network"])
        h = self.holdings.get(key)
        if h is None:
            h = Holding(r["ip"], kind, r["owner"], r["cluster"], r["network"])
            self.holdings[key] = h
        h.add(int(r["first_ms"]), int(r["last_ms"]), self.ttl)
        h.sightings += int(r["n"])
        for m in r["macs"] or []:
            h.macs[m] = max(h.macs.get(m, 0), int(r["last_ms"]))
        h.sources.update(names)

    def prune(self, now_ms: int) -> None:
        before = now_ms - self.retention
        for k in [k for k, h in self.holdings.items() if h.last < before]:
            del self.holdings[k]
        for h in self.holdings.values():
            if h.periods[0][1] < before:
                h.prune(before)
        for ck in list(self.changes):
            q = self.changes[ck]
            while q and q[0].t < before:
                q.popleft()
            if not q:
                del self.changes[ck]
        while self.events and self.events[0].t < before:
            self.events.popleft()
        for ip in [ip for ip, v in self.neighbor_latest.items() if v[1] < before]:
            del self.neighbor_latest[ip]
        for key in [key for key, v in self.last_mac.items() if v[1] < before]:
            del self.last_mac[key]

    def current(self, now_ms: int, ttl_ms: int) -> list[Holding]:
        """Holdings seen within ``ttl_ms`` of now."""
        return [h for h in self.holdings.values() if h.last >= now_ms - ttl_ms]
