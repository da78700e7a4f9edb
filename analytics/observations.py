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

from analytics.rates import dictionary_codes, epoch_ms, in_set, query_table
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


def split_observations(obs: pa.Table, lo_ms: int, hi_ms: int, *, reuse: bool = True) -> tuple[pa.Table, pa.Table]:
    """:data:`HELD_SQL` and :data:`NEIGHBOR_SQL` over Arrow rows in the ``ip_observations``
    schema (the engine's fed mode): same columns, same rows, in input order.

    Inventories and neighbour tables re-list the same rows scrape after scrape, so a pass's fed
    rows mostly repeat the last pass's in everything but ``ts``: when they do (and the same rows
    fall in the span), the last split's tables are returned with the new times — what
    :func:`split_observations_careful` makes of them, at a fraction of the Arrow calls. The memo
    holds one call's result and is used only on equal content, so the output is a function of
    the arguments alone, whoever called last (``reuse=False``: always the careful path)."""
    t = epoch_ms(obs.column("ts"))
    in_span = (t > lo_ms) & (t <= hi_ms)
    memo = _split_memo[0]
    if (
        reuse
        and memo is not None
        and memo.span.size == in_span.size
        and np.array_equal(memo.span, in_span)
        and obs.drop_columns(["ts"]).equals(memo.content)
    ):
        return _with_t(memo.held, t[memo.held_rows]), _with_t(memo.nb, t[memo.nb_rows])
    held_rows, nb_rows = _split_rows(obs, in_span)
    held, nb = _split_tables(obs, t, held_rows, nb_rows)
    if reuse:
        _split_memo[0] = _SplitMemo(obs.drop_columns(["ts"]), in_span, held, nb, held_rows, nb_rows)
    return held, nb


def split_observations_careful(obs: pa.Table, lo_ms: int, hi_ms: int) -> tuple[pa.Table, pa.Table]:
    """:func:`split_observations` without the memo (tests compare the two)."""
    return split_observations(obs, lo_ms, hi_ms, reuse=False)


@dataclass(frozen=True, slots=True)
class _SplitMemo:
    """One split: its input's content (all but ``ts``), which rows were in the span, the tables
    made and the input rows they hold."""

    content: pa.Table
    span: npt.NDArray[np.bool_]
    held: pa.Table
    nb: pa.Table
    held_rows: npt.NDArray[np.int64]
    nb_rows: npt.NDArray[np.int64]


_split_memo: list[_SplitMemo | None] = [None]  # the last split (replaced whole: one assignment)


def _with_t(tbl: pa.Table, t: npt.NDArray[np.int64]) -> pa.Table:
    i = tbl.schema.get_field_index("t")
    return tbl.set_column(i, tbl.schema.field(i), pa.array(t, pa.int64()))


def _split_rows(obs: pa.Table, in_span: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The input rows of the held and the neighbour table."""
    is_nb = in_set(obs.column("owner_kind"), ["neighbor"])
    valid = np.ones(obs.num_rows, bool)
    for name in ("mac", "ip", "owner"):
        col = obs.column(name)
        if col.null_count:
            valid &= np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool)
    return np.flatnonzero(in_span & ~is_nb), np.flatnonzero(in_span & is_nb & valid)


def _split_tables(
    obs: pa.Table, t: npt.NDArray[np.int64], held_rows: npt.NDArray[np.int64], nb_rows: npt.NDArray[np.int64]
) -> tuple[pa.Table, pa.Table]:
    """The rows selected first and only the selected rows' dictionary columns decoded; the
    neighbour rows (the bulk) keep ``network`` dictionary-encoded (same values). ``t`` is the
    rows' ``ts`` in ms (already decoded by the caller: no cast of the column, no take of it)."""
    # one chunk (the fed rows come as one chunk per record: per-chunk kernel calls would dominate)
    obs = obs.combine_chunks()
    rows = pa.array(held_rows, pa.int64())

    def col(name: str) -> pa.Array[Any]:
        c = obs.column(name)
        arr: Any = c.chunk(0) if c.num_chunks == 1 else c.combine_chunks()  # no chunk when no rows
        out: pa.Array[Any] = arr.take(rows)
        return out

    held = pa.table(
        {
            "ip": col("ip"),
            "kind": _decoded(col("owner_kind")),
            "owner": col("owner"),
            "cluster": _decoded(col("cluster")),
            "network": _decoded(col("network")),
            "t": pa.array(t[held_rows], pa.int64()),
            "mac": col("mac"),
            "source": _decoded(col("source")),
        }
    )
    nb = obs.select(["ip", "owner", "network", "mac"]).take(pa.array(nb_rows, pa.int64()))
    nb = nb.add_column(3, "t", pa.array(t[nb_rows], pa.int64()))
    return held, nb


def _decoded(arr: pa.Array[Any]) -> pa.Array[Any]:
    """A dictionary column's values as strings: its dictionary taken at its codes (what a cast
    to string gives, nulls included, for ~half the cost of the cast kernel on a pass's rows)."""
    if isinstance(arr, pa.DictionaryArray) and arr.dictionary.type == pa.string():
        out: pa.Array[Any] = arr.dictionary.take(arr.indices)
        return out
    return arr.cast(pa.string())


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


def _pylist(col: pa.ChunkedArray[Any] | pa.Array[Any]) -> list[Any]:
    """A column as a Python list; a dictionary column decoded by code (its own ``to_pylist``
    makes one Arrow scalar per row, ~30x slower)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(arr, pa.DictionaryArray):
        names: list[Any] = [*arr.dictionary.to_pylist(), None]
        codes = dictionary_codes(arr).tolist()
        return [names[c] for c in codes]
    return cast(list[Any], arr.to_pylist())


def _first_of(item: tuple[tuple[Any, ...], list[Any]]) -> int:
    return cast(int, item[1][0])


FAST_HELD_ROWS = 20_000  # above this, a pass's holder rows are grouped by Acero (vectorised)

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


@dataclass(slots=True)
class _HeldRepeat:
    """What the last holder pass derived from its rows' content (all but ``t``), kept when each
    of its holdings had one group and no row was an event (see
    :meth:`ObservationTracker._fold_held_repeat`)."""

    content: pa.Table  # the rows without ``t``, to compare the next pass's with
    keys: list[HoldingKey]  # the holdings, in the order their groups first appeared
    order: npt.NDArray[np.int64]  # rows by holding (stable)
    runs: npt.NDArray[np.int64]  # start of each holding's run of ordered rows
    macs: list[list[str]]  # each holding's distinct MACs
    sources: list[list[str]]  # each holding's distinct sources
    # the Holding objects of ``keys`` as the last fold of this content found them, and the
    # ``holdings_epoch`` then (while it is unchanged, the same objects)
    holdings: list[Holding] | None = None
    epoch: int = -1
    sizes: list[int] | None = None  # each holding's row count (made at the first repeat)


NEIGHBOR_COLUMNS = ["ip", "owner", "network", "mac"]  # a neighbour row's content besides its time


@dataclass(slots=True)
class _NeighborRepeat:
    """What the last neighbour pass derived from its rows' content (everything but the times),
    kept when it had one row per (ip, observer) pair, so a pass with the same content only
    stores the new times and picks each IP's newest answer (see :meth:`ObservationTracker._neighbors`)."""

    content: pa.Table  # the rows' NEIGHBOR_COLUMNS, to compare the next pass's with
    order: npt.NDArray[np.int64]  # rows in (ip, observer) name order
    pos: npt.NDArray[np.int64]  # each ordered row's pair position in the remembered pair arrays
    g0: npt.NDArray[np.int64]  # start of each IP's run of ordered rows
    sizes: npt.NDArray[np.int64]  # length of each run
    ips: list[str]  # each run's IP
    seen: list[list[str]]  # each run's first NEIGHBOR_OBSERVERS observers
    mac: list[str]  # each ordered row's MAC
    net: list[str | None]  # each ordered row's network
    # the observer list a fast pass last gave each IP: the 20 smallest of (what it had ∪ seen),
    # so merging ``seen`` into it again gives it back
    made: list[list[str] | None] = field(default_factory=list)


class ObservationTracker:
    """Folds new ``ip_observations`` rows into holdings, MAC changes and events."""

    def __init__(self, settings: AnalyticsSettings, *, fast: bool = True) -> None:
        self.s = settings
        self.fast = fast  # False: always the careful paths (tests compare the two)
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
        self.holdings_epoch = 0  # bumps whenever a holding is added or forgotten (not when one grows)
        self.changes: dict[tuple[str, str], deque[MacChange]] = {}
        self.events: deque[ConflictEvent] = deque()
        self.neighbor_latest: dict[str, tuple[str, int, str | None, list[str]]] = {}
        # (ip, observer) → last (mac, ts), as sorted arrays keyed by stable ids (see _neighbors)
        self._ips, self._observers, self._macs = _Names(), _Names(), _Names()
        self._pair_key = np.zeros(0, np.int64)
        self._pair_mac = np.zeros(0, np.int64)
        self._pair_t = np.zeros(0, np.int64)
        self._held_repeat: _HeldRepeat | None = None  # the last holder pass's content (fast path)
        self._nb_repeat: _NeighborRepeat | None = None  # the last neighbour pass's content (fast path)
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
                if not (
                    self.fast
                    and held.num_rows <= FAST_HELD_ROWS
                    and (self._fold_held_repeat(held) or self._fold_held_rows(held))
                ):
                    self._held_repeat = None
                    self._fold_held_groups(held)
                changed = True
            if nb.num_rows:
                changed = self._neighbors(nb) or changed
        if prune:
            self.prune(hi_ms)
        if changed:
            self.version += 1

    def _fold_held_groups(self, held: pa.Table) -> None:
        """The careful path: holder rows grouped by Acero, groups folded by first sighting."""
        self._cover(held)
        held = held.append_column("b", pc.divide(held.column("t"), pa.scalar(max(1, self.ttl), pa.int64())))
        # one thread: for the few hundred rows of a pass the thread pool costs ~10x the work, and
        # the groups then come in one deterministic order: Acero's hash-table order, which
        # is *not* first appearance for most passes of a few hundred rows (a key that collides
        # with another new key of its mini-batch comes later); ties in first_ms are folded in it,
        # and :meth:`_fold_held_rows` defers to this path whenever such a tie could show
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

    def _fold_held_rows(self, held: pa.Table) -> bool:
        """The fast path of :meth:`_fold_held_groups` for a pass's few hundred holder rows: the
        same groups (per holding key and ``t // ttl``, as Arrow's integer division truncates)
        gathered in a dict from Python lists, folded in the same order — by first sighting, ties
        in first appearance.

        Why it may differ in order only where nothing can tell: groups of *existing* holdings
        touch disjoint state, so their order is immaterial; only two *new* holdings first seen at
        the same ms (insertion order of :attr:`holdings`) or two conflict events at the same ms
        (order of :attr:`events`) would be folded in Acero's hash order. Then, or when an event
        group's MAC or source would be picked among several, this returns False having changed
        nothing, and the caller takes the careful path."""
        ip, kind, owner, cluster, network, mac, source = (
            _pylist(held.column(name)) for name in ("ip", "kind", "owner", "cluster", "network", "mac", "source")
        )
        ts = cast(list[int], held.column("t").to_pylist())
        ttl = max(1, self.ttl)
        groups: dict[tuple[Any, ...], list[Any]] = {}  # key + (b,) → [first, last, n, macs, sources, index]
        row_group: list[int] = []
        for row in zip(ip, kind, owner, cluster, network, ts, mac, source, strict=True):
            t = row[5]
            gk = (*row[:5], t // ttl if t >= 0 else -(-t // ttl))
            g = groups.get(gk)
            if g is None:
                row_group.append(len(groups))
                groups[gk] = [
                    *(t, t, 1),
                    *([] if row[6] is None else [row[6]], [] if row[7] is None else [row[7]], len(groups)),
                ]
                continue
            row_group.append(g[5])
            if t < g[0]:
                g[0] = t
            elif t > g[1]:
                g[1] = t
            g[2] += 1
            if row[6] is not None and row[6] not in g[3]:
                g[3].append(row[6])
            if row[7] is not None and row[7] not in g[4]:
                g[4].append(row[7])
        holdings = self.holdings
        new_first: dict[HoldingKey, int] = {}
        event_firsts: set[int] = set()
        for gk, g in groups.items():
            if gk[1] == "event":
                if g[0] in event_firsts or len(g[3]) > 1 or len(g[4]) > 1:
                    return False
                event_firsts.add(g[0])
            elif gk[:5] not in holdings:
                key = cast(HoldingKey, gk[:5])
                f = new_first.get(key)
                new_first[key] = g[0] if f is None else min(f, g[0])
        if len(set(new_first.values())) < len(new_first):
            return False
        self._cover_rows(kind, ts)
        # groups of holdings seen before are grown in one call after the loop, in the same order:
        # a holding's own groups keep their order (one made here grows after it is made), and
        # no other group touches it
        grow: list[Holding] = []
        grow_g: list[list[Any]] = []
        for gk, g in sorted(groups.items(), key=_first_of):
            h = holdings.get(cast(HoldingKey, gk[:5])) if gk[1] != "event" else None
            if h is None:
                self._hold(gk[0], gk[1], gk[2], gk[3], gk[4], g[0], g[1], g[2], g[3], g[4])
            else:
                grow.append(h)
                grow_g.append(g)
        if grow:  # (first, last, rows, macs, sources) of each group, as five lists
            self._grow_all(grow, *([g[j] for g in grow_g] for j in range(5)))
        self._held_repeat = None
        keys = [cast(HoldingKey, gk[:5]) for gk in groups]
        if len(set(keys)) == len(keys) and not any(k[1] == "event" for k in keys):
            # one group per holding, no event: the next pass may repeat this content
            rk = np.asarray(row_group, np.int64)
            order = np.argsort(rk, kind="stable")
            runs = np.flatnonzero(np.concatenate(([True], rk[order][1:] != rk[order][:-1])))
            vals = list(groups.values())
            self._held_repeat = _HeldRepeat(
                held.drop_columns(["t"]), keys, order, runs, [g[3] for g in vals], [g[4] for g in vals]
            )
        return True

    def _fold_held_repeat(self, held: pa.Table) -> bool:
        """:meth:`_fold_held_rows` for holder rows that repeat the last pass's content (only ``t``
        moved): the groups are the last pass's holdings, one each, when every holding's rows
        still fall in one ``t // ttl`` bucket and every holding is still known — then no holding
        is new and no row is an event, so the order the groups are folded in is immaterial
        (see :meth:`_fold_held_rows`), and each group's MACs and sources are the last pass's.
        Returns False (having changed nothing) when that does not hold."""
        rep = self._held_repeat
        if rep is None or held.num_rows != rep.order.size or not held.drop_columns(["t"]).equals(rep.content):
            return False
        t = np.asarray(held.column("t").to_numpy(), np.int64)
        t_min = int(t.min())
        if t_min < 0:
            return False
        ts = t[rep.order]
        first_a = np.minimum.reduceat(ts, rep.runs)
        last_a = np.maximum.reduceat(ts, rep.runs)
        ttl = max(1, self.ttl)
        # every holding's rows in one t // ttl bucket (t ≥ 0: the bucket of the least and of the
        # greatest time are the least and greatest bucket)
        if (first_a // ttl != last_a // ttl).any():
            return False
        if rep.holdings is not None and rep.epoch == self.holdings_epoch:
            # no holding added or forgotten since the last fold of this content: the same objects,
            # which already hold this content's sources (a holding never forgets one)
            hs, sources = rep.holdings, None
        else:
            got = [self.holdings.get(k) for k in rep.keys]
            if None in got:
                return False
            hs, sources = cast(list[Holding], got), rep.sources
        if rep.sizes is None:
            rep.sizes = np.diff(np.append(rep.runs, ts.size)).tolist()
        minute = -(-t // 60_000)  # the end of each row's minute
        m_lo, m_hi = int(minute.min()), int(minute.max())
        self._add_cover(t_min, [m_lo] if m_lo == m_hi else np.unique(minute).tolist())
        self._grow_all(hs, first_a.tolist(), last_a.tolist(), rep.sizes, rep.macs, sources)
        rep.holdings, rep.epoch = hs, self.holdings_epoch
        return True

    def _grow_all(
        self,
        hs: list[Holding],
        first: list[int],
        last: list[int],
        n: list[int],
        macs: list[list[str]],
        sources: list[list[str]] | None,
    ) -> None:
        """:meth:`_hold` for holdings seen before, in one loop (a repeated pass grows every
        holding of a site: one call per holding was most of the pass); ``sources`` None: every
        holding already holds its sources."""
        ttl = self.ttl
        for j, h in enumerate(hs):
            f, z = first[j], last[j]
            p = h.periods[-1]
            if p[0] <= f and f - p[1] <= ttl:
                if z > p[1]:
                    p[1] = z
            else:
                h.add(f, z, ttl)
            h.sightings += n[j]
            hm = h.macs
            for m in macs[j]:
                seen = hm.get(m)
                if seen is None:
                    hm[m] = max(0, z)
                elif seen < z:
                    hm[m] = z
            if sources is not None and sources[j]:
                h.sources.update(sources[j])

    def _cover(self, held: pa.Table) -> None:
        inv = ~in_set(held.column("kind"), ["event"])
        if not inv.any():
            return
        t = np.asarray(held.column("t").to_numpy(), np.int64)[inv]
        self._add_cover(int(t.min()), np.unique(-(-t // 60_000)).tolist())  # the end of each row's minute

    def _cover_rows(self, kind: list[str], ts: list[int]) -> None:
        """:meth:`_cover` from Python lists."""
        t = [t for k, t in zip(kind, ts, strict=True) if k != "event"]
        if t:
            self._add_cover(min(t), sorted({-(-x // 60_000) for x in t}))

    def _add_cover(self, first: int, minutes: list[int]) -> None:
        if self.first_holder_ms is None or first < self.first_holder_ms:
            self.first_holder_ms = first
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
        """:meth:`_neighbors_careful`, or for a pass whose rows repeat the last pass's content
        (ARP tables re-listed scrape after scrape: only the times move) its fast path.

        Why the fast path finds no MAC change: the last pass stored each pair's MAC, this pass
        has one row per pair with the same MAC (the same content), and nothing but that pass
        changed the pair arrays since (:meth:`_pair_store` adding pairs and :meth:`_prune_pairs`
        forgetting some drop the repeat). What is left is the careful path's bookkeeping on the
        cached order: each pair's last time and each IP's newest answer."""
        rep = self._nb_repeat
        if rep is None or not self.fast or tbl.num_rows != rep.order.size:
            return self._neighbors_careful(tbl)
        content = tbl.select(NEIGHBOR_COLUMNS)
        if not content.equals(rep.content):
            return self._neighbors_careful(tbl)
        t = np.asarray(tbl.column("t").to_numpy(), np.int64)[rep.order]
        self._pair_t[rep.pos] = t
        gmax = np.maximum.reduceat(t, rep.g0)
        at_max = t == np.repeat(gmax, rep.sizes)
        win = np.maximum.reduceat(np.where(at_max, np.arange(t.size), -1), rep.g0).tolist()
        w_t = t[win].tolist()
        latest = self.neighbor_latest
        made = rep.made
        for j, ip in enumerate(rep.ips):
            cur = latest.get(ip)
            ts_w = w_t[j]
            if cur is None or ts_w >= cur[1]:
                obs = made[j]
                if obs is None or cur is None or cur[3] is not obs:  # else: merging again changes nothing
                    obs = made[j] = sorted({*(cur[3] if cur else []), *rep.seen[j]})[:NEIGHBOR_OBSERVERS]
                latest[ip] = (rep.mac[win[j]], ts_w, rep.net[win[j]], obs)
        return False

    def _neighbors_careful(self, tbl: pa.Table) -> bool:
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
            net_code = dictionary_codes(nets)

            def net(i: int) -> str | None:
                return net_names[int(net_code[order[i]])]

            def net_rows() -> list[str | None]:
                """:func:`net` of every ordered row (one conversion, not one per row)."""
                return [net_names[c] for c in net_code[order].tolist()]

        else:

            def net(i: int) -> str | None:
                v: str | None = nets[int(order[i])].as_py()
                return v

            def net_rows() -> list[str | None]:
                return cast(list[str | None], nets.take(pa.array(order, pa.int64())).to_pylist())

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
        self._nb_repeat = None
        if self.fast and li.size == n:  # one row per pair: the next pass may repeat this content
            pos_after, _found = self._pair_lookup(pair)
            g0_l, g1_l = g0.tolist(), g1.tolist()
            self._nb_repeat = _NeighborRepeat(
                content=tbl.select(NEIGHBOR_COLUMNS),
                order=np.asarray(order, np.int64),
                pos=pos_after,
                g0=g0,
                sizes=g1 - g0,
                ips=[ip_names[c] for c in g_ip],
                seen=[
                    [ow_names[c % n_ow] for c in lk_l[a : min(z, a + NEIGHBOR_OBSERVERS)]]
                    for a, z in zip(g0_l, g1_l, strict=True)
                ],
                mac=[macs[c] for c in m.tolist()],
                net=net_rows(),
                made=[None] * len(g_ip),
            )
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
            self._nb_repeat = None  # pair positions move
            pk = np.concatenate([self._pair_key, keys[new]])
            order = np.argsort(pk, kind="stable")
            self._pair_key = pk[order]
            self._pair_mac = np.concatenate([self._pair_mac, mac[new]])[order]
            self._pair_t = np.concatenate([self._pair_t, t[new]])[order]

    def _prune_pairs(self, before: int) -> None:
        """Forget pairs last answered before ``before``; renumber the names once most are gone."""
        keep = self._pair_t >= before
        if not keep.all():
            self._nb_repeat = None  # pair positions move, forgotten pairs would start afresh
            self._pair_key, self._pair_mac, self._pair_t = (
                self._pair_key[keep],
                self._pair_mac[keep],
                self._pair_t[keep],
            )
        live = self._pair_key.size
        if len(self._ips) + len(self._observers) + len(self._macs) <= 2 * (3 * live) + 3 * 1024:
            return
        self._nb_repeat = None  # ids renumbered
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
            self.holdings_epoch += 1
        last = int(last_ms)
        h.add(int(first_ms), last, self.ttl)
        h.sightings += int(n)
        for m in macs:
            h.macs[m] = max(h.macs.get(m, 0), last)
        h.sources.update(names)

    def prune(self, now_ms: int) -> None:
        before = now_ms - self.retention
        # one scan: a holding last seen before the cut goes, one with an older period loses it
        gone: list[HoldingKey] = []
        for k, h in self.holdings.items():
            periods = h.periods
            if periods[-1][1] < before:
                gone.append(k)
            elif periods[0][1] < before:
                h.prune(before)
        for k in gone:
            del self.holdings[k]
            self.holdings_epoch += 1
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
