"""An incremental picture of who holds which IP address, built from ``ip_observations``.

Each evaluation reads only the rows that arrived since the last one and folds them into:

* **holdings** — per (ip, owner_kind, owner, cluster, network): the periods the owner was seen
  holding the address. Sightings closer than ``duplicate_ip.presence_ttl`` join into one period,
  so "held at the same time" means overlapping periods, not a shared history;
* **MAC changes** per (ip, observer) from neighbour (ARP/NDP) tables — the raw material of
  arpwatch-style flip-flop detection. Each observer's last MAC per IP is remembered, so a call
  compares only the new rows (vectorised) with it; rows further apart than ``max_rate_gap`` are
  not compared (a change across a long gap is not evidence of alternation);
* **the latest neighbour MAC** per IP, and **Tcpip 4198/4199 conflict events**;
* **coverage** — the minutes in which any inventory (holder) row arrived, so a consumer can tell
  "nothing is held" from "nothing was observed" (before the first poll, or during an outage of
  every inventory source).

Inventory sources re-list everything on every poll, so an address that stops being listed stops
being held ``presence_ttl`` after its last sighting.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from analytics.rates import in_set, query_table
from analytics.settings import AnalyticsSettings

# Two plain scans per evaluation (holders/events; neighbour rows — the bulk, with only the columns
# flip-flop detection needs); holdings are grouped and neighbour changes found in Arrow/numpy.
HELD_SQL = """
SELECT ip, CAST(owner_kind AS VARCHAR) AS kind, owner, CAST(cluster AS VARCHAR) AS cluster,
       CAST(network AS VARCHAR) AS network, epoch_ms(ts) AS t, mac, CAST(source AS VARCHAR) AS source
FROM ip_observations
WHERE ts > make_timestamptz($lo_us) AND ts <= make_timestamptz($hi_us) AND owner_kind <> 'neighbor'
"""
NEIGHBOR_SQL = """
SELECT ip, owner, CAST(network AS VARCHAR) AS network, epoch_ms(ts) AS t, mac
FROM ip_observations
WHERE ts > make_timestamptz($lo_us) AND ts <= make_timestamptz($hi_us) AND owner_kind = 'neighbor'
      AND mac IS NOT NULL AND ip IS NOT NULL AND owner IS NOT NULL
"""


def split_observations(obs: pa.Table, lo_ms: int, hi_ms: int) -> tuple[pa.Table, pa.Table]:
    """:data:`HELD_SQL` and :data:`NEIGHBOR_SQL` over Arrow rows in the ``ip_observations``
    schema (the engine's fed mode): same columns, same rows, in input order.

    Rows are selected first and only the selected rows' dictionary columns are decoded; the
    neighbour rows (the bulk) keep ``network`` dictionary-encoded (same values)."""
    # one chunk (the fed rows come as one chunk per record: per-chunk kernel calls would dominate)
    obs = obs.combine_chunks()
    t = obs.column("ts").cast(pa.int64())
    tn = np.asarray(t.to_numpy(), np.int64)
    in_span = (tn > lo_ms) & (tn <= hi_ms)
    is_nb = in_set(obs.column("owner_kind"), ["neighbor"])
    valid = np.ones(obs.num_rows, bool)
    for name in ("mac", "ip", "owner"):
        col = obs.column(name)
        if col.null_count:
            valid &= np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool)
    held_mask = pa.array(in_span & ~is_nb)
    nb_mask = pa.array(in_span & is_nb & valid)
    with_t = obs.append_column("t", t)
    h = with_t.filter(held_mask)
    held = pa.table(
        {
            "ip": h.column("ip"),
            "kind": h.column("owner_kind").cast(pa.string()),
            "owner": h.column("owner"),
            "cluster": h.column("cluster").cast(pa.string()),
            "network": h.column("network").cast(pa.string()),
            "t": h.column("t"),
            "mac": h.column("mac"),
            "source": h.column("source").cast(pa.string()),
        }
    )
    nb = with_t.select(["ip", "owner", "network", "t", "mac"]).filter(nb_mask)
    return held, nb


# owner kinds that *hold* an address (as opposed to referencing or observing it)
HOLDER_KINDS = frozenset({"service", "node", "control-plane", "load-balancer", "pod", "haproxy-frontend", "nic"})
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


def _sorted_codes(enc: pa.DictionaryArray[Any, Any]) -> tuple[list[str], npt.NDArray[np.int64]]:
    """A dictionary's values in sorted order and every row's code into that order."""
    names = cast(list[str], enc.dictionary.to_pylist())  # a dictionary holds no nulls
    by_name = sorted(range(len(names)), key=lambda i: names[i])
    rank = np.empty(len(names), np.int64)
    rank[by_name] = np.arange(len(names))
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
    return [names[i] for i in by_name], rank[codes]


NEIGHBOR_OBSERVERS = 20  # observers named per IP in ``neighbor_latest``


class _Names:
    """Stable small integer ids for strings (IPs, observers, MACs), looked up once per distinct
    string of a pass; :meth:`compact` renumbers to the ids still in use."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def ids(self, names: list[str]) -> npt.NDArray[np.int64]:
        index = self.index
        out = np.empty(len(names), np.int64)
        for j, name in enumerate(names):
            i = index.get(name)
            if i is None:
                i = len(self.names)
                index[name] = i
                self.names.append(name)
            out[j] = i
        return out

    def compact(self, used: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Keep only the ids in ``used``; returns ``used`` renumbered."""
        live, inverse = np.unique(used, return_inverse=True)
        self.names = [self.names[i] for i in live.tolist()]
        self.index = {name: i for i, name in enumerate(self.names)}
        return np.asarray(inverse, np.int64).reshape(used.shape)


class ObservationTracker:
    """Folds new ``ip_observations`` rows into holdings, MAC changes and events."""

    def __init__(self, settings: AnalyticsSettings) -> None:
        self.s = settings
        d = settings.duplicate_ip
        self.ttl = int(d.presence_ttl.total_seconds() * 1000)
        self.retention = int(
            max(
                d.retention,
                settings.pools.allocation_ttl,
                settings.overlap.observed_ttl,
                d.flip_window * 2,
                d.event_ttl,
            ).total_seconds()
            * 1000
        )
        self.holdings: dict[HoldingKey, Holding] = {}
        self.changes: dict[tuple[str, str], deque[MacChange]] = {}
        self.events: deque[ConflictEvent] = deque()
        self.neighbor_latest: dict[str, tuple[str, int, str | None, list[str]]] = {}
        # (ip, observer) → last (mac, ts), as sorted arrays keyed by stable ids (see _neighbors)
        self._ips, self._observers, self._macs = _Names(), _Names(), _Names()
        self._pair_key = np.zeros(0, np.int64)
        self._pair_mac = np.zeros(0, np.int64)
        self._pair_t = np.zeros(0, np.int64)
        self.version = 0  # bumps whenever anything changed (lets consumers skip work)
        self.first_holder_ms: int | None = None  # earliest inventory row ever seen
        self.holder_minutes: list[int] = []  # sorted minute ends (⌈ms / 60 000⌉) of inventory rows

    def ingest(self, con: Any, cur_ms: int, hi_ms: int, *, prune: bool = True) -> None:
        """Fold rows with ts in (cur_ms, hi_ms]; then forget what is older than the retention
        (``prune=False`` keeps everything so past states can still be sampled; call
        :meth:`prune` afterwards)."""
        if hi_ms <= cur_ms:
            return
        window = {"lo_us": cur_ms * 1000, "hi_us": hi_ms * 1000}
        self.fold(query_table(con, HELD_SQL, window), query_table(con, NEIGHBOR_SQL, window), hi_ms, prune=prune)

    def fold(self, held: pa.Table, nb: pa.Table, hi_ms: int, *, prune: bool = True) -> None:
        """Fold the rows of one (cur, hi] span, shaped as :data:`HELD_SQL` and :data:`NEIGHBOR_SQL`
        give them (:func:`split_observations` makes the same from Arrow rows)."""
        changed = False
        if held.num_rows or nb.num_rows:
            if held.num_rows:
                self._cover(held)
                held = held.append_column("b", pc.divide(held.column("t"), pa.scalar(max(1, self.ttl), pa.int64())))
                # one thread: for the few hundred rows of a pass the thread pool costs ~10x the work, and
                # the groups then come in one deterministic order: Acero's hash-table order, which
                # is *not* first appearance for most passes of a few hundred rows; ties in
                # first_ms are folded in it, so a replacement must reproduce it (none does yet)
                agg = held.group_by(["ip", "kind", "owner", "cluster", "network", "b"], use_threads=False).aggregate(
                    [("t", "min"), ("t", "max"), ("t", "count"), ("mac", "distinct"), ("source", "distinct")]
                )
                # column by column (one list per column, not one dict per group), folded in the same
                # order as before: by first sighting, ties in group order (a stable sort)
                ip, kind, owner, cluster, network, first, last, n, macs, names = (
                    cast(list[Any], agg.column(name).to_pylist())
                    for name in (
                        *("ip", "kind", "owner", "cluster", "network"),
                        *("t_min", "t_max", "t_count", "mac_distinct", "source_distinct"),
                    )
                )
                for j in sorted(range(agg.num_rows), key=first.__getitem__):
                    ms = [m for m in macs[j] if m is not None]
                    self._hold(ip[j], kind[j], owner[j], cluster[j], network[j], first[j], last[j], n[j], ms, names[j])
                changed = True
            if nb.num_rows:
                changed = self._neighbors(nb) or changed
        if prune:
            self.prune(hi_ms)
        if changed:
            self.version += 1

    def _cover(self, held: pa.Table) -> None:
        inv = ~in_set(held.column("kind"), ["event"])
        if not inv.any():
            return
        t = np.asarray(held.column("t").to_numpy(), np.int64)[inv]
        first = int(t.min())
        if self.first_holder_ms is None or first < self.first_holder_ms:
            self.first_holder_ms = first
        minutes = np.unique(-(-t // 60_000)).tolist()  # the end of each row's minute
        if self.holder_minutes and minutes[0] <= self.holder_minutes[-1]:
            self.holder_minutes = sorted(set(self.holder_minutes) | set(minutes))
        else:
            self.holder_minutes.extend(minutes)

    def observed(self, t_ms: int, within_ms: int) -> bool:
        """Did any inventory row arrive in (t − within, t]? Minute resolution, erring towards
        "no" (a row in t's own minute may be after t)."""
        m = self.holder_minutes
        i = bisect_right(m, t_ms // 60_000)
        return i > 0 and m[i - 1] * 60_000 > t_ms - within_ms

    def _neighbors(self, tbl: pa.Table) -> bool:
        """Detect per-observer MAC changes, vectorised: Python touches only the changes found and
        each IP's newest answer, never each (ip, observer) pair.

        Why: a site's neighbour tables hold one row per (observer, IP) — 250,000 pairs a minute
        at 500 hosts — so the state the previous pass left (each pair's last MAC and time) lives
        in sorted numpy arrays keyed by stable integer ids of the IP, observer and MAC strings
        (:class:`_Names`; only a pass's distinct strings are looked up in Python)."""
        ip_enc = tbl.column("ip").combine_chunks().dictionary_encode()
        ow_enc = tbl.column("owner").combine_chunks().dictionary_encode()
        ip_names, ip_code = _sorted_codes(ip_enc)
        ow_names, ow_code = _sorted_codes(ow_enc)
        n_ow = max(1, len(ow_names))
        k = ip_code * n_ow + ow_code  # pairs in (ip, observer) name order, whatever the row order
        t = np.asarray(tbl.column("t").to_numpy(), np.int64)
        mac_enc = tbl.column("mac").combine_chunks().dictionary_encode()
        macs = cast(list[str], mac_enc.dictionary.to_pylist())  # a dictionary holds no nulls
        m = np.asarray(mac_enc.indices.to_numpy(zero_copy_only=False), np.int64)
        t0 = int(t.min())
        span = int(t.max()) - t0
        if span < (1 << 31) and int(k.max()) < (1 << 31):
            order = np.argsort((k << 31) | (t - t0), kind="stable")
        else:
            order = np.lexsort((t, k))
        k, t, m = k[order], t[order], m[order]
        n = k.size
        brk = k[1:] != k[:-1]
        first = np.concatenate(([True], brk))  # (np.r_ costs several times more per call)
        last = np.concatenate((brk, [True]))
        diff = np.zeros(n, bool)
        diff[1:] = (m[1:] != m[:-1]) & ~brk
        nets = tbl.column("network").combine_chunks()
        if isinstance(nets, pa.DictionaryArray):
            # fed rows keep the network dictionary-encoded: decode by code, not one Arrow scalar per
            # name asked for (each IP's newest answer asks once per IP and pass)
            net_names: list[str | None] = [*cast(list[str], nets.dictionary.to_pylist()), None]
            net_code = np.asarray(nets.indices.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)

            def net(i: int) -> str | None:
                return net_names[int(net_code[order[i]])]

        else:

            def net(i: int) -> str | None:
                v: str | None = nets[int(order[i])].as_py()
                return v

        def names(i: int) -> tuple[str, str]:
            code = int(k[i])
            return ip_names[code // n_ow], ow_names[code % n_ow]

        # stable ids: the pair key (ip id << 32 | observer id) and the MAC id of every row
        ip_id = self._ips.ids(ip_names)
        ow_id = self._observers.ids(ow_names)
        mac_id = self._macs.ids(macs)
        pair = (ip_id[k // n_ow] << 32) | ow_id[k % n_ow]
        mid = mac_id[m]
        gap = int(self.s.max_rate_gap.total_seconds() * 1000)
        changed = False
        # first row of a pair vs. the MAC remembered from the previous call
        fi = np.flatnonzero(first)
        pos, found = self._pair_lookup(pair[fi])
        if found.any():
            prev_m = self._pair_mac[pos]
            dt = t[fi] - self._pair_t[pos]
            hit = found & (prev_m != mid[fi]) & (dt > 0) & (dt <= gap)
            for j in np.flatnonzero(hit).tolist():
                i = int(fi[j])
                ip, observer = names(i)
                prev = self._macs.names[int(prev_m[j])]
                self._change(MacChange(int(t[i]), ip, observer, net(i), prev, macs[int(m[i])]))
                changed = True
        # remember each pair's last MAC
        li = np.flatnonzero(last)
        self._pair_store(pair[li], mid[li], t[li])
        # the latest neighbour answer per IP: the newest row (ties: the last observer in name order)
        lk, lt = k[li], t[li]
        lip = lk // n_ow
        g0 = np.flatnonzero(np.concatenate(([True], lip[1:] != lip[:-1])))
        g1 = np.append(g0[1:], lip.size)
        gmax = np.maximum.reduceat(lt, g0)
        at_max = lt == np.repeat(gmax, g1 - g0)
        win = np.maximum.reduceat(np.where(at_max, np.arange(lip.size), -1), g0)
        # per IP group: its name, the winner's time, MAC and row (Python ints: one conversion per array)
        g_ip = lip[g0].tolist()
        w_t = lt[win].tolist()
        w_mac = m[li[win]].tolist()
        w_row = li[win].tolist()
        lk_l = lk.tolist()
        for j, (a, z) in enumerate(zip(g0.tolist(), g1.tolist(), strict=True)):
            ip = ip_names[g_ip[j]]
            cur = self.neighbor_latest.get(ip)
            ts_w = w_t[j]
            if cur is None or ts_w >= cur[1]:
                # observers of a group come in name order: the first 20 are the 20 smallest names
                seen = [ow_names[c % n_ow] for c in lk_l[a : min(z, a + NEIGHBOR_OBSERVERS)]]
                obs = sorted({*(cur[3] if cur else []), *seen})[:NEIGHBOR_OBSERVERS]
                self.neighbor_latest[ip] = (macs[w_mac[j]], ts_w, net(w_row[j]), obs)
        for i in np.flatnonzero(diff).tolist():
            if t[i] - t[i - 1] <= gap:
                ip, observer = names(i)
                self._change(MacChange(int(t[i]), ip, observer, net(i), macs[int(m[i - 1])], macs[int(m[i])]))
                changed = True
        return changed

    def _pair_lookup(self, keys: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Position of each pair key in the remembered pairs, and whether it is there."""
        pk = self._pair_key
        if pk.size == 0:
            return np.zeros(keys.size, np.int64), np.zeros(keys.size, bool)
        pos = np.minimum(np.searchsorted(pk, keys), pk.size - 1)
        return np.asarray(pos, np.int64), np.asarray(pk[pos] == keys, bool)

    def _pair_store(self, keys: npt.NDArray[np.int64], mac: npt.NDArray[np.int64], t: npt.NDArray[np.int64]) -> None:
        """Remember (mac, t) as each pair's last answer (keys distinct)."""
        pos, found = self._pair_lookup(keys)
        self._pair_mac[pos[found]] = mac[found]
        self._pair_t[pos[found]] = t[found]
        new = ~found
        if new.any():
            pk = np.concatenate([self._pair_key, keys[new]])
            order = np.argsort(pk, kind="stable")
            self._pair_key = pk[order]
            self._pair_mac = np.concatenate([self._pair_mac, mac[new]])[order]
            self._pair_t = np.concatenate([self._pair_t, t[new]])[order]

    def _prune_pairs(self, before: int) -> None:
        """Forget pairs last answered before ``before``; renumber the names once most are gone."""
        keep = self._pair_t >= before
        if not keep.all():
            self._pair_key, self._pair_mac, self._pair_t = (
                self._pair_key[keep],
                self._pair_mac[keep],
                self._pair_t[keep],
            )
        live = self._pair_key.size
        if len(self._ips) + len(self._observers) + len(self._macs) <= 2 * (3 * live) + 3 * 1024:
            return
        ip_new = self._ips.compact(self._pair_key >> 32)
        ow_new = self._observers.compact(self._pair_key & 0xFFFFFFFF)
        self._pair_mac = self._macs.compact(self._pair_mac)
        pk = (ip_new << 32) | ow_new
        order = np.argsort(pk, kind="stable")
        self._pair_key, self._pair_mac, self._pair_t = pk[order], self._pair_mac[order], self._pair_t[order]

    @property
    def pairs(self) -> int:
        """(ip, observer) pairs whose last MAC is remembered."""
        return int(self._pair_key.size)

    def _change(self, ch: MacChange) -> None:
        q = self.changes.setdefault((ch.ip, ch.observer), deque())
        q.append(ch)
        if len(q) > 1 and q[-2].t > ch.t:
            self.changes[(ch.ip, ch.observer)] = deque(sorted(q, key=lambda c: c.t))

    def _hold(
        self,
        ip: str,
        kind: str,
        owner: str,
        cluster: str | None,
        network: str | None,
        first_ms: int,
        last_ms: int,
        n: int,
        macs: list[str],
        names: list[str] | None,
    ) -> None:
        """Fold one group of holder rows (see :meth:`fold`): a conflict event, or a holding's
        sighting span, MACs and sources."""
        names = names or []
        if kind == "event":
            src = names[0] if names else "event"
            mac = macs[-1] if macs else None
            self.events.append(ConflictEvent(int(first_ms), ip, owner, mac, cluster, network, src))
            if n > 1 and last_ms != first_ms:
                self.events.append(ConflictEvent(int(last_ms), ip, owner, mac, cluster, network, src))
            return
        key: HoldingKey = (ip, kind, owner, cluster, network)
        h = self.holdings.get(key)
        if h is None:
            h = Holding(ip, kind, owner, cluster, network)
            self.holdings[key] = h
        last = int(last_ms)
        h.add(int(first_ms), last, self.ttl)
        h.sightings += int(n)
        for m in macs:
            h.macs[m] = max(h.macs.get(m, 0), last)
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
        self._prune_pairs(before)
        cut = bisect_right(self.holder_minutes, before // 60_000)
        if cut:
            del self.holder_minutes[:cut]

    def current(self, now_ms: int, ttl_ms: int) -> list[Holding]:
        """Holdings seen within ``ttl_ms`` of now."""
        return [h for h in self.holdings.values() if h.last >= now_ms - ttl_ms]
