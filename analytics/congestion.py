"""East-west (storage / RDMA) congestion: PFC storms, RDMA errors, SMB latency, NIC discards.

Per host and step four independent signals are measured (all as per-second rates from raw
counters, or from formatted values when that is all the agent sends):

=================  =================================================================  ========
signal             source metrics                                                     unit
=================  =================================================================  ========
pfc_pause_frames   pfc.rx_pause_frames_total + pfc.tx_pause_frames_total (all NICs,    frames/s
                   all priorities)
rdma_errors        rdma.cq_errors_total + rdma.failed_connection_attempts_total +      errors/s
                   rdma.connection_errors_total
smb_latency        Δ smb.client.request_seconds_total / Δ smb.client.requests_total    s
                   (or smb.client.request_avg_seconds weighted by requests_per_sec)
nic_discards       net.packets_received_discarded_total + _outbound_discarded_total    pkts/s
=================  =================================================================  ========

Throughput (RDMA bytes, else NIC bytes) is measured as context and fed to the multivariate model,
but never counts as a violation: a backup window moving a lot of data without pauses, errors or
latency is not congestion.

Each signal is judged against the host's own robust baseline (:mod:`analytics.baselines`:
median/MAD, hour-of-day once there are two days of history, peers during cold start). Event-rate
signals get a Poisson floor on their spread, so a counter that is normally zero needs several
events in a step to matter. A step violates when ``min_signals`` signals exceed the sensitivity's
z together, or one does and the cross-host IsolationForest (seeded, trained on non-violating
steps) also calls the step an outlier — and in both cases at least one of them is a *fabric*
signal measured at the host's own adapters (PFC pauses, RDMA errors, NIC discards). SMB client
latency is end to end: it corroborates, but alone it does not place congestion on the host —
every client of one stalled storage node sees its requests to that node slow down, and those
clients are victims, not incidents (they are listed in the incident's evidence instead).

A signal violates when its z reaches the host's *bar* for it: the sensitivity's z, raised to the
``tail_top``-th largest z that signal reached on that host over ``tail_window``
(:mod:`analytics.tail_bar`, the calibration :mod:`analytics.detector` uses per feature). A host
whose normal is spiky (another NIC model, routine incast bursts) is held to its own routine
extremes; a quiet host keeps the plain z, so a storm there fires exactly as before. The tail counts
*episodes*, not steps: a run of steps over the bar, or a whole incident, is learned as one value
(its peak, clipped at 3 × the bar), so a sustained elevation is not "normal" after a few steps and
one storm raises the bar at most threefold, and only with ``tail_top`` − 1 others. The forest sees
z rescaled to the same bars. Evidence gives each signal's ``bar``, ``score`` (z / bar) and ``band``.

A host is congested after ``min_failing_periods`` violating steps of the last ``of_periods``
observed ones, and clears (hysteresis) when no signal reaches ``clear_ratio`` × its bar for
``clear_periods`` steps or the host stops reporting.

Incidents: one per host; hosts that become congested within ``group_window`` of an open
incident's latest onset join it (a fabric-wide PFC storm is one incident with every host in its
evidence). The incident keeps the resource of its first host, so its fingerprint never changes as
it widens; the hosts it reached are its :attr:`~analytics.findings.Finding.scope`, and the alert
manager announces each widening.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from analytics.baselines import (
    SOURCE_NAMES,
    SOURCE_NONE,
    SOURCE_TOD,
    SOURCE_TRAILING,
    BaselineBank,
    CompiledForest,
    median_mad,
    nan_to_zero,
)
from analytics.findings import Finding
from analytics.iforest import ForestFit, fit_forest
from analytics.settings import AnalyticsSettings
from analytics.tail_bar import TailBank
from collector.schema import AlertKind, Severity, from_ms, iso

F64 = npt.NDArray[np.float64]

SOURCE_PEERS = 3
_SRC_NAMES = {**SOURCE_NAMES, SOURCE_PEERS: "peers"}


@dataclass(frozen=True, slots=True)
class SignalSpec:
    name: str
    title: str
    unit: str
    kind: str  # "count" (event rate, Poisson floor) or "latency"


SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("pfc_pause_frames", "PFC pause frames", "frames/s", "count"),
    SignalSpec("rdma_errors", "RDMA errors", "errors/s", "count"),
    SignalSpec("smb_latency", "SMB client latency", "s", "latency"),
    SignalSpec("nic_discards", "NIC discards", "packets/s", "count"),
)
THROUGHPUT = "throughput"
NSIG = len(SIGNALS)
_LOCAL = [0, 1, 3]  # fabric signals measured at the host's own adapters (not SMB latency)
_LOCAL_MASK = np.isin(np.arange(NSIG), _LOCAL)
_COUNTS = [i for i, spec in enumerate(SIGNALS) if spec.kind == "count"]  # event rates: Poisson floor
_LATENCIES = [i for i, spec in enumerate(SIGNALS) if spec.kind == "latency"]
# a value enters a host's tail clipped at this multiple of its current bar (as in analytics.detector):
# one wild step can raise the bar at most threefold, and only together with tail_top - 1 others
TAIL_CAP = 3.0
TAIL_BLOCKS = 20

# metric → (signal index, role). Roles: 0 event count, 1/2 SMB Δseconds/Δrequests (raw),
# 3/4 SMB avg seconds / requests per second (formatted), 5-8 throughput raw/formatted RDMA/NIC.
_PFC, _RDMA, _SMB, _DISC, _TP = 0, 1, 2, 3, 4
R_COUNT, R_LNUM, R_LDEN, R_LAVG, R_LRPS, R_RDMA_RAW, R_RDMA_FMT, R_NET_RAW, R_NET_FMT = range(9)
METRIC_ROLES: dict[str, tuple[int, int]] = {
    "pfc.rx_pause_frames_total": (_PFC, R_COUNT),
    "pfc.tx_pause_frames_total": (_PFC, R_COUNT),
    "rdma.cq_errors_total": (_RDMA, R_COUNT),
    "rdma.failed_connection_attempts_total": (_RDMA, R_COUNT),
    "rdma.connection_errors_total": (_RDMA, R_COUNT),
    "net.packets_received_discarded_total": (_DISC, R_COUNT),
    "net.packets_outbound_discarded_total": (_DISC, R_COUNT),
    "smb.client.request_seconds_total": (_SMB, R_LNUM),
    "smb.client.requests_total": (_SMB, R_LDEN),
    "smb.client.request_avg_seconds": (_SMB, R_LAVG),
    "smb.client.requests_per_sec": (_SMB, R_LRPS),
    "rdma.inbound_bytes_total": (_TP, R_RDMA_RAW),
    "rdma.outbound_bytes_total": (_TP, R_RDMA_RAW),
    "rdma.inbound_bytes_per_sec": (_TP, R_RDMA_FMT),
    "rdma.outbound_bytes_per_sec": (_TP, R_RDMA_FMT),
    "net.bytes_received_total": (_TP, R_NET_RAW),
    "net.bytes_sent_total": (_TP, R_NET_RAW),
    "net.bytes_received_per_sec": (_TP, R_NET_FMT),
    "net.bytes_sent_per_sec": (_TP, R_NET_FMT),
}
CONGESTION_METRICS = tuple(METRIC_ROLES)
# _aggregate's sums, one slot each per (step, host): event counts by signal (0, 1, 3), SMB
# Δseconds and Δrequests (raw), the four throughput forms; the value each role sums (0 rate,
# 1 inc, 2 mean). Formatted SMB latency is paired per share instead (slot −1).
_SLOT_LNUM, _SLOT_LDEN = NSIG, NSIG + 1
_NSLOT = NSIG + 6
_SUM_SLOT = np.array([-1, _SLOT_LNUM, _SLOT_LDEN, -1, -1, NSIG + 5, NSIG + 4, NSIG + 3, NSIG + 2], np.int64)
_SUM_SOURCE = np.array([0, 1, 1, 2, 2, 0, 2, 0, 2], np.int64)

# label-derived columns the shared window query must provide
SUB_EXPR = (
    "coalesce(labels['nic'], labels['instance'], "
    "CASE WHEN labels['server'] IS NOT NULL OR labels['share'] IS NOT NULL THEN "
    "'\\\\' || coalesce(labels['server'], '') || '\\' || coalesce(labels['share'], '') END, '')"
)
PRIORITY_EXPR = "coalesce(labels['priority'], '')"


def _f64(col: pa.ChunkedArray[Any]) -> F64:
    return np.asarray(col.to_numpy(), np.float64)  # nulls become NaN for float columns


@dataclass(slots=True)
class _Window:
    """The congestion rows of one window table as numpy arrays, decoded once.

    Hosts are numbered in name order, so everything that depends on host order (the forest's
    training rows) is the same however the store happened to return the rows.
    """

    host_names: list[str]
    host: npt.NDArray[np.int64]
    sig: npt.NDArray[np.int64]
    role: npt.NDArray[np.int64]
    mcode: npt.NDArray[np.int64]
    mnames: list[str]
    rate: F64
    inc: F64
    mean: F64
    sub_col: pa.ChunkedArray[Any]  # unfiltered (index with ``orig``); decoded by subs() when needed
    prio_col: pa.ChunkedArray[Any]  # unfiltered: read only for evidence
    orig: npt.NDArray[np.int64]  # row → row of the window table
    _subs: tuple[pa.DictionaryArray[Any, Any], npt.NDArray[np.int64], int] | None = None
    _prio: pa.Array[Any] | None = None

    def prio(self) -> pa.Array[Any]:
        """The priority column as one array (evidence of each congested host reads it): once per window."""
        if self._prio is None:
            self._prio = self.prio_col.combine_chunks()
        return self._prio

    def subs(self) -> tuple[pa.DictionaryArray[Any, Any], npt.NDArray[np.int64], int]:
        """(the sub column as one dictionary array, each row's sub code, codes' count): read only
        to pair formatted SMB latency per share and for evidence, so decoded on first use."""
        if self._subs is None:
            sub = _dict_col(self.sub_col)
            self._subs = (sub, _codes(sub)[self.orig], max(1, len(sub.dictionary)))
        return self._subs


def _dict_col(col: pa.ChunkedArray[Any]) -> pa.DictionaryArray[Any, Any]:
    """A column as one dictionary array (the step table's columns already are)."""
    if col.num_chunks == 1 and pa.types.is_dictionary(col.type):  # the usual step table: as it is
        return cast("pa.DictionaryArray[Any, Any]", col.chunk(0))
    if pa.types.is_dictionary(col.type):
        arr = (col.unify_dictionaries() if col.num_chunks > 1 else col).combine_chunks()
    else:
        arr = col.combine_chunks().dictionary_encode()
    return cast("pa.DictionaryArray[Any, Any]", arr)  # dictionary-typed either way


def _codes(arr: pa.DictionaryArray[Any, Any]) -> npt.NDArray[np.int64]:
    idx = arr.indices
    if idx.null_count:  # a null becomes code 0 (fill_null is an Arrow kernel call: only when needed)
        idx = idx.fill_null(0)
    return np.asarray(idx.to_numpy(zero_copy_only=False), np.int64)


def _py_at(arr: pa.Array[Any], at: npt.NDArray[np.int64]) -> list[Any]:
    """``arr.take(at).to_pylist()``; a dictionary array without nulls through its (small)
    dictionary, about 20× cheaper than taking from it."""
    if pa.types.is_dictionary(arr.type) and arr.null_count == 0:
        d = cast("pa.DictionaryArray[Any, Any]", arr)
        names = d.dictionary.to_pylist()
        return [names[c] for c in d.indices.to_numpy(zero_copy_only=False)[at].tolist()]
    return arr.take(pa.array(at, pa.int64())).to_pylist()


@dataclass(frozen=True, slots=True)
class SignalScore:
    value: float
    baseline: float
    sigma: float
    z: float
    source: str
    bar: float = math.nan  # the z this signal must reach on this host (sensitivity z or its own tail)
    scale: float = math.nan  # the spread z is measured in (σ or its floor)


@dataclass(frozen=True, slots=True)
class CongestionScore:
    """Latest per-host congestion picture (exported as OTLP metrics)."""

    host: str
    ts: int  # step end, ms
    score: float  # largest z over the four signals (NaN when not judged)
    signals: dict[str, SignalScore]
    throughput: float
    iforest_outlier: bool | None
    congested: bool
    ratio: float = math.nan  # largest z-to-bar ratio over the four signals: 1 = at this host's bar


@dataclass(slots=True)
class _ScoreBatch:
    """One step's judgement of its hosts (rows), from which a host's :class:`CongestionScore` is
    made when someone reads it. The arrays are the step's own (nothing writes them afterwards)."""

    bucket: int
    allv: F64  # values: signals, then throughput
    med: F64
    sig: F64
    src: npt.NDArray[np.int64]
    z: F64
    bar: F64
    scale: F64
    throughput: F64
    if_out: npt.NDArray[np.bool_]
    if_known: npt.NDArray[np.bool_]
    active: list[bool]
    _top: tuple[list[float], list[float]] | None = None

    def _tops(self) -> tuple[list[float], list[float]]:
        """Per host the largest finite z and z-to-bar ratio (NaN when none); a max is exact in
        any order, so all hosts at once give each host's own."""
        if self._top is None:
            zs = self.z[:, :NSIG]
            finite = np.isfinite(zs)
            has = finite.any(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(finite, zs / self.bar, -np.inf).max(axis=1)
            score = np.where(has, np.where(finite, zs, -np.inf).max(axis=1), np.nan).tolist()
            self._top = (score, np.where(has, ratio, np.nan).tolist())
        return self._top

    def score(self, host: str, i: int) -> CongestionScore:
        # numbers for the Python objects, converted once per row (the same doubles float() gives)
        allv, med, sig, src = self.allv[i].tolist(), self.med[i].tolist(), self.sig[i].tolist(), self.src[i].tolist()
        z, bar, scale = self.z[i].tolist(), self.bar[i].tolist(), self.scale[i].tolist()
        signals = {
            spec.name: SignalScore(allv[s], med[s], sig[s], z[s], _SRC_NAMES[src[s]], bar[s], scale[s])
            for s, spec in enumerate(SIGNALS)
        }
        top, ratio = self._tops()
        return CongestionScore(
            host,
            self.bucket,
            top[i],
            signals,
            float(self.throughput[i]),
            bool(self.if_out[i]) if self.if_known[i] else None,
            self.active[i],
            ratio[i],
        )


@dataclass(slots=True)
class _HostState:
    flags: deque[bool]
    clears: deque[bool]
    active: bool = False
    onset: int = 0
    last_data: int = 0
    incident: int | None = None
    last_evidence: dict[str, Any] = field(default_factory=dict)
    peak_z: dict[str, float] = field(default_factory=dict)
    # tail learning: per signal, the peak of the open episode (a run of steps over the bar, or the
    # host's whole incident), NaN when none is open; it is learned as one value when it ends
    run: F64 = field(default_factory=lambda: np.full(NSIG, np.nan))


@dataclass(slots=True)
class _HostSet:
    """The hosts of a step (name order) with their ids, states and baselines, kept while the same
    hosts report.

    Why: a replay judges the same few hosts at every step, and what their baselines give changes
    only when the bank's statistics do (a refresh, every ``baselines.refresh`` of data time): ids,
    states, the peers' borrowed baselines and the spreads z is measured in are worked out then,
    not at every step. Nothing writes these arrays after they are made (score batches keep them).
    """

    ids: npt.NDArray[np.int64]  # (hosts, signals + throughput)
    states: list[_HostState]
    sig_ids: npt.NDArray[np.int64]  # ids[:, :NSIG], contiguous
    version: int = -1  # the bank's version the baselines below were read at
    med: F64 = field(default_factory=lambda: np.zeros((0, NSIG + 1)))
    sig: F64 = field(default_factory=lambda: np.zeros((0, NSIG + 1)))
    src: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, NSIG + 1), np.int64))
    scale: F64 = field(default_factory=lambda: np.zeros((0, NSIG + 1)))
    pos_scale: F64 = field(default_factory=lambda: np.zeros((0, NSIG + 1)))  # scale, NaN where not > 0
    borrowed: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros((0, NSIG + 1), bool))  # not own


@dataclass(slots=True)
class _Incident:
    id: int
    anchor: str
    hosts: dict[str, int]  # host → onset ms
    last_onset: int
    active: bool = True
    ended: int | None = None


def _fmt(value: float, unit: str) -> str:
    if not math.isfinite(value):
        return "n/a"
    if unit == "s":
        return f"{value * 1000:.2f} ms"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


_K = TypeVar("_K")
_V = TypeVar("_V")
KEPT_MAX = 64
"""Entries of a per-dictionary cache of the detector (the hosts' or metrics' few orders a pass
sees); past it the cache starts again (a site whose dictionaries keep changing rebuilds them)."""


def _kept(cache: dict[_K, _V], key: _K, build: Callable[[], _V]) -> _V:
    """``cache[key]``, built on first use; the cache is cleared when it holds :data:`KEPT_MAX`."""
    got = cache.get(key)
    if got is None:
        if len(cache) >= KEPT_MAX:
            cache.clear()
        got = cache[key] = build()
    return got


class CongestionDetector:
    """Incremental east-west congestion detection over the samples table."""

    def __init__(self, settings: AnalyticsSettings) -> None:
        self.s = settings
        self.c = settings.congestion
        self.step_ms = settings.step_ms
        self.step_s = self.step_ms / 1000.0
        self.z_fire = (self.c.sensitivity or settings.sensitivity).z
        self.z_clear = self.z_fire * self.c.clear_ratio
        self.bank = BaselineBank(settings.baselines, self.step_ms)
        self.tail: TailBank | None = None
        if self.c.self_calibrate:
            window_ms = max(int(self.c.tail_window.total_seconds() * 1000), TAIL_BLOCKS * self.step_ms)
            self.tail = TailBank(self.c.tail_top, window_ms, TAIL_BLOCKS)
        self.hosts: dict[str, _HostState] = {}
        self.host_ids: dict[str, npt.NDArray[np.int64]] = {}
        self.incidents: dict[int, _Incident] = {}
        self._next_incident = 1
        self._scores: dict[str, CongestionScore] = {}
        self._pending: dict[str, tuple[_ScoreBatch, int]] = {}  # host → its latest scores, not yet objects
        # multivariate model
        self.train: deque[npt.NDArray[np.float64]] = deque(maxlen=self.c.if_train_max)
        self.model: ForestFit | None = None  # sklearn is imported when the first forest is trained
        self.forest: CompiledForest | None = None
        self.last_train = -(1 << 62)
        self._trained_on = 0
        self.last_bucket = 0
        self.forgotten = 0  # hosts whose state was dropped after baselines.forget_after of silence
        self._role_cache: dict[tuple[str, ...], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}
        self._host_sets: dict[tuple[str, ...], _HostSet] = {}
        self._order_cache: dict[tuple[str, ...], tuple[list[str], npt.NDArray[np.int64]]] = {}

    @property
    def scores(self) -> dict[str, CongestionScore]:
        """Latest per-host congestion picture, by host."""
        if self._pending:
            for h, (batch, i) in self._pending.items():
                self._scores[h] = batch.score(h, i)
            self._pending.clear()
        return self._scores

    # ------------------------------------------------------------------------------------------
    def process(self, tbl: pa.Table, hi_ms: int) -> None:
        """Judge every step in a window table (see :class:`analytics.rates.StepAccumulator`)."""
        if tbl.num_rows:
            self._process(tbl)
        self._expire(hi_ms)

    def _process(self, tbl: pa.Table) -> None:
        # select the congestion rows with numpy on dictionary codes (no per-row strings, no table filter)
        mcol = _dict_col(tbl.column("metric"))
        mnames = cast(list[str], mcol.dictionary.to_pylist())  # a dictionary holds no nulls
        sig_of, role_of = self._roles(mnames)
        mcode_all = _codes(mcol)
        rows = np.flatnonzero(role_of[mcode_all] >= 0)
        if rows.size == 0:
            return
        mcode = mcode_all[rows]
        hcol = _dict_col(tbl.column("host"))
        host_names, rank = self._host_order(cast(list[str], hcol.dictionary.to_pylist()))
        w = _Window(
            host_names=host_names,
            host=rank[_codes(hcol)[rows]],
            sig=sig_of[mcode],
            role=role_of[mcode],
            mcode=mcode,
            mnames=mnames,
            rate=_f64(tbl.column("rate"))[rows],
            inc=_f64(tbl.column("inc"))[rows],
            mean=_f64(tbl.column("mean"))[rows],
            sub_col=tbl.column("sub"),
            prio_col=tbl.column("priority"),
            orig=rows,
        )
        buckets = np.asarray(tbl.column("bucket").to_numpy(), np.int64)[rows]
        # group rows by step; step numbers are small, so a stable radix sort on int16 does it
        first = int(buckets.min())
        if first == int(buckets.max()):
            # one step (a live pass or a replay's 60 s pass): already grouped, in row order
            order = np.arange(buckets.size)
            ub, starts = buckets[:1], np.zeros(1, np.int64)
            step_of = np.zeros(buckets.size, np.int64)
        else:
            steps = (buckets - first) // self.step_ms
            if int(steps.max()) < 32_768 and bool(np.all(buckets % self.step_ms == first % self.step_ms)):
                order = np.argsort(steps.astype(np.int16), kind="stable")
            else:
                order = np.argsort(buckets, kind="stable")
            ub, starts, si = np.unique(buckets[order], return_index=True, return_inverse=True)
            step_of = np.empty(order.size, np.int64)
            step_of[order] = si
        vals, throughput = self._aggregate(w, step_of, len(ub))
        bounds = [*starts.tolist(), order.size]
        last = len(ub) - 1
        for n, b in enumerate(ub.tolist()):
            a, z = bounds[n], bounds[n + 1]
            present = np.flatnonzero(np.isfinite(vals[n]).any(axis=1) | np.isfinite(throughput[n]))
            if present.size:
                self._judge(
                    b,
                    [w.host_names[i] for i in present.tolist()],
                    vals[n][present],
                    throughput[n][present],
                    order[a:z],
                    present,
                    w,
                    n == last,
                )

    def _host_order(self, names: list[str]) -> tuple[list[str], npt.NDArray[np.int64]]:
        """(the host dictionary's names in name order, each code's rank in it), kept per
        dictionary: a pass's hosts come in the same few orders."""

        def build() -> tuple[list[str], npt.NDArray[np.int64]]:
            by_name = sorted(range(len(names)), key=lambda i: names[i])
            rank = np.empty(len(names), np.int64)
            rank[by_name] = np.arange(len(names))
            return [names[i] for i in by_name], rank

        return _kept(self._order_cache, tuple(names), build)

    def _roles(self, mnames: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(signal, role) per metric dictionary code (role −1: not a congestion metric), kept per
        dictionary: a pass's metrics come in the same few orders."""
        return _kept(
            self._role_cache,
            tuple(mnames),
            lambda: (
                np.array([METRIC_ROLES.get(m, (0, -1))[0] for m in mnames], np.int64),
                np.array([METRIC_ROLES.get(m, (0, -1))[1] for m in mnames], np.int64),
            ),
        )

    @staticmethod
    def _aggregate(w: _Window, si: npt.NDArray[np.int64], nsteps: int) -> tuple[F64, F64]:
        """Per step, host and signal: the signal values and the throughput, for every step of the
        window at once (sums run in row order, exactly as they would step by step)."""
        nh = len(w.host_names)
        h, role, sig = w.host, w.role, w.sig
        rate, inc, mean = w.rate, w.inc, w.mean
        cell = si * nh + h  # (step, host)
        ncell = nsteps * nh
        # every sum at once: one bin per (step, host) and slot (_SUM_SLOT), the finite values of
        # each row in row order — each bin adds the same values in the same order as a sum of
        # its own would
        source = _SUM_SOURCE[role]
        v = np.where(source == 0, rate, np.where(source == 1, inc, mean))
        slot = np.where(role == R_COUNT, sig, _SUM_SLOT[role])
        keep = (slot >= 0) & np.isfinite(v)
        flat = cell[keep] * _NSLOT + slot[keep]
        acc = np.bincount(flat, v[keep], minlength=ncell * _NSLOT).reshape(ncell, _NSLOT)
        seen = np.bincount(flat, minlength=ncell * _NSLOT).reshape(ncell, _NSLOT) > 0
        vals = np.where(seen[:, :NSIG], acc[:, :NSIG], np.nan)  # event rates (SMB's column is never seen)
        # SMB latency: Δseconds / Δrequests over all shares (raw), else formatted averages
        lat_num = acc[:, _SLOT_LNUM]
        lat_den = acc[:, _SLOT_LDEN]
        raw_ok = lat_den > 0
        vals[raw_ok, _SMB] = lat_num[raw_ok] / lat_den[raw_ok]
        fmt = (role == R_LAVG) | (role == R_LRPS)
        if fmt.any():
            # pair each share's formatted average latency with its request rate (same step, host, share)
            _, subcode, nsub = w.subs()
            pair = cell[fmt] * nsub + subcode[fmt]
            uniq, inv = np.unique(pair, return_inverse=True)
            avg = np.full(uniq.size, np.nan)
            rps = np.full(uniq.size, np.nan)
            is_avg = role[fmt] == R_LAVG
            avg[inv[is_avg]] = mean[fmt][is_avg]
            rps[inv[~is_avg]] = mean[fmt][~is_avg]
            wt = np.where(np.isfinite(rps), rps, np.where(avg > 0, 1.0, 0.0))
            ph = uniq // nsub
            ok = np.isfinite(avg) & ~raw_ok[ph]
            num = np.bincount(ph[ok], (avg * wt)[ok], minlength=nsteps * nh)
            den = np.bincount(ph[ok], wt[ok], minlength=nsteps * nh)
            good = (den > 0) & ~raw_ok
            vals[good, _SMB] = num[good] / den[good]
        # throughput context: RDMA bytes (raw, else formatted), else NIC bytes
        throughput = np.full(ncell, np.nan)
        for r in (R_NET_FMT, R_NET_RAW, R_RDMA_FMT, R_RDMA_RAW):  # later forms win
            k = int(_SUM_SLOT[r])
            throughput = np.where(seen[:, k], acc[:, k], throughput)
        return vals.reshape(nsteps, nh, NSIG), throughput.reshape(nsteps, nh)

    # ------------------------------------------------------------------------------------------
    def _ids(self, hosts: list[str]) -> npt.NDArray[np.int64]:
        out = np.empty((len(hosts), NSIG + 1), np.int64)
        missing = [h for h in hosts if h not in self.host_ids]
        if missing:
            keys = [(h, name) for h in missing for name in [s.name for s in SIGNALS] + [THROUGHPUT]]
            ids = self.bank.ids(keys).reshape(len(missing), NSIG + 1)
            for h, row in zip(missing, ids, strict=True):
                self.host_ids[h] = row
        for i, h in enumerate(hosts):
            out[i] = self.host_ids[h]
        return out

    def _host_set(self, hosts: list[str]) -> _HostSet:
        """The pass's hosts as a :class:`_HostSet` (the same one while the same hosts report)."""
        key = tuple(hosts)
        hs = self._host_sets.get(key)
        if hs is None:
            if len(self._host_sets) >= 16:  # host sets come and go (a live site): keep a few
                self._host_sets.clear()
            ids = self._ids(hosts)
            states = []
            for h in hosts:
                st = self.hosts.get(h)
                if st is None:
                    st = _HostState(deque(maxlen=self.c.of_periods), deque(maxlen=self.c.clear_periods))
                    self.hosts[h] = st
                states.append(st)
            hs = _HostSet(ids, states, np.ascontiguousarray(ids[:, :NSIG]))
            self._host_sets[key] = hs
        return hs

    def _baselines(self, hs: _HostSet) -> None:
        """Fill ``hs`` with its hosts' baselines under the bank's current statistics: median,
        spread, source (peers' where a host has none of its own) and the spread z is measured in."""
        ids = hs.ids
        n = ids.shape[0]
        flat = ids.reshape(-1)
        med, sig, src = self.bank.baseline(flat)
        med = med.reshape(n, NSIG + 1)
        sig = sig.reshape(n, NSIG + 1)
        src = src.reshape(n, NSIG + 1)
        # cold start: borrow the peers' baseline for the same signal (≥ 3 peers with their own). A
        # borrowed baseline describes the population, not this host: its spread is the peers'
        # typical spread combined with how far the peers' own medians lie apart (hosts differ —
        # one with twice the PFC pauses of another is not congested for that)
        # (each column only reads and writes itself: which columns borrow is known up front)
        owns = src != SOURCE_NONE
        for s in np.flatnonzero((~owns).any(axis=0) & (owns.sum(axis=0) >= 3)).tolist():
            own = owns[:, s]
            centre, between = median_mad(med[own, s])
            med[~own, s] = centre
            sig[~own, s] = math.hypot(float(np.median(sig[own, s])), between)
            src[~own, s] = SOURCE_PEERS
        # the smallest spread z is measured in: relative to the level for every signal, at least
        # the Poisson noise of one step for event counts (baselines.poisson_floor), the latency
        # floor for SMB latency and 1 B/s for throughput — all hosts and signals at once
        level = nan_to_zero(med)
        relative = self.s.baselines.relative_floor * np.abs(level)
        floor = np.empty_like(med)
        floor[:, _COUNTS] = np.fmax(
            np.sqrt(np.maximum(level[:, _COUNTS], 1.0 / self.step_s) / self.step_s), relative[:, _COUNTS]
        )
        floor[:, _LATENCIES] = np.fmax(relative[:, _LATENCIES], self.c.latency_floor_seconds)
        floor[:, NSIG] = np.fmax(relative[:, NSIG], 1.0)
        scale = np.fmax(nan_to_zero(sig), floor)  # the z denominator (evidence: band)
        hs.med, hs.sig, hs.src, hs.scale = med, sig, src, scale
        hs.pos_scale = np.where(scale > 0, scale, np.nan)  # z_scaled's denominator
        hs.borrowed = (src != SOURCE_TRAILING) & (src != SOURCE_TOD)
        hs.version = self.bank.version

    def _judge(
        self,
        bucket: int,
        hosts: list[str],
        vals: F64,
        throughput: F64,
        sel: npt.NDArray[np.intp],
        present: npt.NDArray[np.intp],
        w: _Window,
        final: bool,
    ) -> None:
        n = len(hosts)
        hs = self._host_set(hosts)
        ids, states = hs.ids, hs.states
        self.bank.refresh(bucket)
        if hs.version != self.bank.version:
            self._baselines(hs)
        med, sig, src, scale = hs.med, hs.sig, hs.src, hs.scale
        allv = np.concatenate([vals, throughput[:, None]], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (allv - med) / hs.pos_scale  # z_scaled(allv, med, scale)
        zs = z[:, :NSIG]
        sig_ids = hs.sig_ids
        bar = self._bars(sig_ids, bucket)
        zn = nan_to_zero(zs)
        over = zn >= bar
        n_over = over.sum(axis=1)
        near: npt.NDArray[np.bool_] = np.asarray((zn >= self.c.clear_ratio * bar).any(axis=1))
        clipped = np.minimum(zs, TAIL_CAP * bar)  # what the tail may learn of this step (NaN stays NaN)
        # the forest sees z on a quiet host's scale (z × sensitivity z / the host's own bar), so a
        # noisy host's routine burst is as ordinary to it as to the per-signal bars; at the plain
        # bar this is z exactly (throughput has no bar: plain z)
        on_scale = np.concatenate([zs * (self.z_fire / bar), z[:, NSIG:]], axis=1)
        feats = np.minimum(np.maximum(nan_to_zero(on_scale), -10.0), 50.0)  # np.clip(…, -10, 50): no NaN left
        if_out = np.zeros(n, bool)
        if_known = np.zeros(n, bool)
        local = (over & _LOCAL_MASK).any(axis=1)
        cand = np.flatnonzero(local & (n_over < self.c.min_signals))
        if self.forest is not None and cand.size:
            if_out[cand] = self.forest.outlier(feats[cand])
            if_known[cand] = True
        flag: npt.NDArray[np.bool_] = np.asarray(local & ((n_over >= self.c.min_signals) | if_out))

        # learn from quiet steps of quiet hosts only (an incident must not become the baseline)
        learn = np.ones(n, bool)
        newly_active: list[str] = []
        if self.tail is not None:
            # the tail counts episodes, not steps: a run of steps over the bar (a victim's
            # half-hour of slow SMB, a burst) is learned as one value, its peak, when it ends —
            # so a sustained elevation is not "normal" after three steps — and a host's
            # incident, onset included, is one episode for every signal. All hosts at once (the
            # top-k a tail keeps does not depend on the order values arrive in).
            active = np.array([st.active for st in states], bool)
            run = np.array([st.run for st in states]) if states else np.zeros((0, NSIG))  # np.stack's rows
            peak = np.fmax(run, clipped)
            below = np.isfinite(clipped) & ~over & ~active[:, None]
            ended = below & np.isfinite(run)
            self.tail.add(
                np.concatenate([sig_ids[ended], sig_ids[below]]), np.concatenate([run[ended], clipped[below]]), bucket
            )
            new_run = np.where(below, np.nan, peak)  # an active host's run is its peak
            for st, r in zip(states, new_run, strict=True):
                st.run = r
        flag_l = flag.tolist()
        for i, (h, st, flag_i, near_i) in enumerate(zip(hosts, states, flag_l, near.tolist(), strict=True)):
            st.flags.append(flag_i)
            st.clears.append(near_i)
            st.last_data = bucket
            if st.active or flag_i:
                learn[i] = False
            if not st.active and sum(st.flags) >= self.c.min_failing_periods:
                st.active = True
                st.onset = bucket
                st.peak_z = {}
                newly_active.append(h)
            elif st.active and not any(st.clears):
                self._clear_host(h, bucket)
        # ... except that a signal still judged on borrowed (peer) baselines is always learned:
        # until it has a history of its own, a host's difference from its peers may be its normal,
        # and refusing to learn it would keep the host on borrowed baselines — and alerting —
        # for ever (a host that joins mid-incident alerts until its own baseline takes over)
        cells = learn[:, None] | hs.borrowed
        if cells.any():
            self.bank.add(ids[cells], allv[cells], bucket)
        if learn.any() and self.c.isolation_forest:
            # train only on steps judged against a baseline (cold-start zeros would teach the
            # forest that "no baseline yet" is normal)
            judged = np.isfinite(zs).sum(axis=1) >= 2
            self.train.extend(feats[learn & judged])  # row by row
        self._maybe_train(bucket)

        # peaks every step; scores and evidence only where someone will read them (the last step of
        # a catch-up, a host that just became congested, a congested host's current step). The
        # scores of hosts that are not congested are kept as this step's arrays and become
        # CongestionScore objects only when read (a replay judges every host at every pass and
        # reads none of them)
        newly = set(newly_active)
        congested = [st.active for st in states]
        batch = None
        if final or newly or any(congested):
            batch = _ScoreBatch(bucket, allv, med, sig, src, z, bar, scale, throughput, if_out, if_known, congested)
        for i, (h, st) in enumerate(zip(hosts, states, strict=True)):
            if st.active:
                zr = z[i].tolist()
                for s_i, spec in enumerate(SIGNALS):
                    zi = zr[s_i]
                    if math.isfinite(zi):
                        st.peak_z[spec.name] = max(st.peak_z.get(spec.name, -math.inf), zi)
            if batch is None or not (final or h in newly or (st.active and flag_l[i])):
                continue
            if not st.active:
                self._pending[h] = (batch, i)
                continue
            score = batch.score(h, i)
            self._scores[h] = score
            self._pending.pop(h, None)
            rows = sel[w.host[sel] == present[i]]
            st.last_evidence = self._host_evidence(
                bucket,
                score.signals,
                float(throughput[i]),
                float(med[i, NSIG]),
                over[i],
                if_out[i],
                if_known[i],
                st,
                rows,
                w,
            )
        self._group(newly_active, bucket)
        self.last_bucket = max(self.last_bucket, bucket)

    def _host_evidence(
        self,
        bucket: int,
        scores: dict[str, SignalScore],
        tput: float,
        tput_base: float,
        over: npt.NDArray[np.bool_],
        if_out: bool,
        if_known: bool,
        st: _HostState,
        rows: npt.NDArray[np.intp],
        w: _Window,
    ) -> dict[str, Any]:
        signals: dict[str, Any] = {}
        for s, spec in enumerate(SIGNALS):
            sc = scores[spec.name]
            signals[spec.name] = {
                "value": sc.value,
                "baseline": sc.baseline,
                "spread": sc.sigma,
                "z": sc.z,
                "unit": spec.unit,
                "baseline_source": sc.source,
                "violating": bool(over[s]),
                "peak_z": st.peak_z.get(spec.name),
                # the bar z is held to on this host, z as a multiple of it, and the values it allows
                "bar": sc.bar,
                "score": sc.z / sc.bar if math.isfinite(sc.z) else None,
                "band": [sc.baseline - sc.bar * sc.scale, sc.baseline + sc.bar * sc.scale]
                if math.isfinite(sc.baseline) and math.isfinite(sc.scale)
                else None,
            }
        pfc: dict[str, float] = {}
        rdma: dict[str, float] = {}
        disc: dict[str, float] = {}
        # the host's rows as Python values, one conversion per column (not one Arrow scalar each)
        orig = w.orig[rows]
        for m_code, r, sub_v, prio_v in zip(
            w.mcode[rows].tolist(),
            w.rate[rows].tolist(),
            _py_at(w.subs()[0], orig),
            _py_at(w.prio(), orig),
            strict=True,
        ):
            m = w.mnames[m_code]
            if not math.isfinite(r):
                continue
            sub = sub_v or "?"
            if m.startswith("pfc."):
                direction = "rx" if ".rx_" in m else "tx"
                key = f"{sub} prio {prio_v or '?'} {direction}"
                pfc[key] = pfc.get(key, 0.0) + r
            elif METRIC_ROLES[m][0] == _RDMA:
                key = f"{sub} {m.split('.', 1)[1].removesuffix('_total')}"
                rdma[key] = rdma.get(key, 0.0) + r
            elif METRIC_ROLES[m][0] == _DISC:
                key = f"{sub} {'rx' if 'received' in m else 'tx'}"
                disc[key] = disc.get(key, 0.0) + r

        def top(d: dict[str, float]) -> dict[str, float]:
            return dict(sorted(((k, v) for k, v in d.items() if v > 0), key=lambda kv: -kv[1])[:8])

        return {
            "step_end": iso(from_ms(bucket)),
            "onset": iso(from_ms(st.onset)),
            "signals": signals,
            "violating": [spec.name for s, spec in enumerate(SIGNALS) if over[s]],
            "failing_periods": f"{sum(st.flags)}/{len(st.flags)}",
            "throughput_bytes_per_sec": {"value": tput, "baseline": tput_base},
            "isolation_forest_outlier": bool(if_out) if if_known else None,
            "pfc_pause_frames_by_nic_priority": top(pfc),
            "rdma_errors_by_nic": top(rdma),
            "nic_discards_by_nic": top(disc),
        }

    def _bars(self, ids: npt.NDArray[np.int64], bucket: int) -> F64:
        """Per host and signal, the z a step must reach: the sensitivity's z, raised to the host's
        own tail (its ``tail_top``-th largest past z) where that is higher."""
        if self.tail is None:
            return np.full(ids.shape, self.z_fire)
        own = self.tail.kth(ids.reshape(-1), bucket).reshape(ids.shape)
        return np.fmax(own, self.z_fire)  # fmax: no tail yet (NaN) → the sensitivity's z

    def _clear_host(self, host: str, bucket: int) -> None:
        st = self.hosts[host]
        st.active = False
        if self.tail is not None:
            self.tail.add(self.host_ids[host][:NSIG], st.run, bucket)  # the incident: one value per signal
        st.run = np.full(NSIG, np.nan)
        if st.incident is not None:
            inc = self.incidents.get(st.incident)
            st.incident = None
            if inc is not None and not any(
                self.hosts[h].active and self.hosts[h].incident == inc.id for h in inc.hosts
            ):
                inc.active = False
                inc.ended = bucket

    def _group(self, newly: list[str], bucket: int) -> None:
        if not newly:
            return
        gw = self.c.group_window.total_seconds() * 1000
        for h in sorted(newly):
            st = self.hosts[h]
            target = None
            for inc in self.incidents.values():
                if inc.active and bucket - inc.last_onset <= gw:
                    target = inc
                    break
            if target is None:
                # an incident this host was part of that ended moments ago comes back to life (one
                # storm that pauses is still one incident, whichever host wakes first)
                for inc in self.incidents.values():
                    if not inc.active and h in inc.hosts and inc.ended is not None and bucket - inc.ended <= gw:
                        target = inc
                        target.active = True
                        target.ended = None
                        break
            if target is None:
                target = _Incident(self._next_incident, h, {}, bucket)
                self._next_incident += 1
                self.incidents[target.id] = target
            target.hosts.setdefault(h, bucket)
            target.last_onset = max(target.last_onset, bucket)
            st.incident = target.id

    def _maybe_train(self, bucket: int) -> None:
        if not self.c.isolation_forest or len(self.train) < self.c.if_min_train:
            return
        # retrain once early (when the training set has grown 4×), then on schedule
        grown = (
            self.model is not None
            and self._trained_on < 4 * self.c.if_min_train
            and len(self.train) >= 4 * self._trained_on
        )
        if not grown and bucket - self.last_train < self.c.if_retrain.total_seconds() * 1000:
            return
        # IsolationForest(n_estimators, contamination, max_samples, random_state=seed).fit(x), tree
        # for tree, without scikit-learn's per-tree overhead (analytics.iforest; imports sklearn)
        x = np.asarray(self.train)
        model = fit_forest(
            x,
            n_estimators=self.c.if_estimators,
            contamination=self.c.if_contamination,
            max_samples=min(256, len(x)),
            seed=self.s.seed,
        )
        self.model = model
        self.forest = CompiledForest(model)
        self.last_train = bucket
        self._trained_on = len(x)

    def _expire(self, now_ms: int) -> None:
        """Hosts that stopped reporting clear; long-cleared incidents are forgotten."""
        gap = self.s.max_rate_gap.total_seconds() * 1000
        for h, st in self.hosts.items():
            if st.active and now_ms - st.last_data > gap:
                st.last_evidence = {**st.last_evidence, "cleared_because": "host stopped reporting"}
                self._clear_host(h, now_ms)
        keep = self.c.retain_inactive.total_seconds() * 1000
        for iid in [
            i.id for i in self.incidents.values() if not i.active and i.ended is not None and now_ms - i.ended > keep
        ]:
            del self.incidents[iid]
        self._forget(now_ms)

    def _forget(self, now_ms: int) -> None:
        """Drop every trace of hosts silent for ``baselines.forget_after`` (the setting metric-anomaly
        series use): state, scores, baselines and tails, so memory follows the hosts a site has now
        (hosts are replaced, renamed, moved to another cluster). A host still named by a reported
        incident is kept until the incident is forgotten. One that comes back learns afresh, as a
        new host would (peers' baselines first)."""
        forget = self.s.baselines.forget_after.total_seconds() * 1000
        if not self.hosts or now_ms - min(st.last_data for st in self.hosts.values()) <= forget:
            return  # the common case: one pass over the hosts, nothing to do
        named = {h for inc in self.incidents.values() for h in inc.hosts}
        gone = [
            h for h, st in self.hosts.items() if not st.active and h not in named and now_ms - st.last_data > forget
        ]
        if not gone:
            return
        self._host_sets.clear()  # their states and ids
        for h in gone:
            del self.hosts[h]
            self._scores.pop(h, None)
            self._pending.pop(h, None)
            self.host_ids.pop(h, None)
        # renumber the baselines (and tails) of the hosts kept, in their current order
        keep = np.sort(np.concatenate([ids for ids in self.host_ids.values()] or [np.zeros(0, np.int64)]))
        self.bank.retain(keep)
        if self.tail is not None:
            self.tail.retain(keep)
        for h, ids in self.host_ids.items():
            self.host_ids[h] = np.asarray(np.searchsorted(keep, ids), np.int64)
        self.forgotten += len(gone)

    # ------------------------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        out = []
        for inc in sorted(self.incidents.values(), key=lambda i: i.id):
            members = sorted(inc.hosts, key=lambda h: (inc.hosts[h], h))
            active = [h for h in members if self.hosts[h].active and self.hosts[h].incident == inc.id]
            ev_hosts = {h: self.hosts[h].last_evidence for h in members}
            many = len(members) >= 2
            top_sig = 0
            for h in active:
                top_sig = max(top_sig, len(self.hosts[h].last_evidence.get("violating", [])))
            severity = Severity.SEV1 if (many and inc.active) or top_sig >= 3 else Severity.SEV2
            lead = active[0] if active else inc.anchor
            desc = self._describe(self.hosts[lead].last_evidence)
            who = (
                lead
                if len(members) == 1
                else f"{len(members)} hosts ({', '.join(members[:6])}" + (", …)" if len(members) > 6 else ")")
            )
            # a cleared incident quotes what was seen at its last active check (the worst of it, often),
            # so the text says so rather than reading like the current state
            state = "" if inc.active else " cleared; last seen while active"
            summary = f"East-west congestion on {who}{state}: {desc}"
            evidence: dict[str, Any] = {
                "hosts": members,
                "active_hosts": active,
                "onset": iso(from_ms(min(inc.hosts.values()))),
                "ended": iso(from_ms(inc.ended)) if inc.ended is not None else None,
                "per_host": ev_hosts,
                "sensitivity_z": self.z_fire,
                "clear_z": self.z_clear,
                "self_calibrated": self.tail is not None,
            }
            if inc.active:
                evidence["smb_latency_elevated_on"] = self._smb_victims(members)
            out.append(
                Finding(
                    AlertKind.EASTWEST_CONGESTION,
                    {"host": inc.anchor},
                    severity,
                    summary,
                    evidence,
                    active=inc.active,
                    scope={"host": tuple(members)},
                )
            )
        return out

    def _smb_victims(self, members: list[str]) -> list[dict[str, Any]]:
        """Hosts outside the incident whose SMB client latency is above baseline right now (clients
        of a stalled storage node: context for the operator, not incidents of their own)."""
        out = []
        for h in sorted(self.scores):
            sc = self.scores[h]
            lat = sc.signals.get("smb_latency")
            if h in members or lat is None or sc.ts < self.last_bucket or not lat.z >= lat.bar:
                continue
            out.append({"host": h, "smb_latency_s": lat.value, "baseline_s": lat.baseline, "z": lat.z})
        return out

    @staticmethod
    def _describe(ev: dict[str, Any]) -> str:
        sigs = ev.get("signals", {})
        names = (
            ev.get("violating")
            or sorted(
                sigs,
                key=lambda k: -(sigs[k]["z"] if sigs[k]["z"] is not None and math.isfinite(sigs[k]["z"]) else -1e9),
            )[:2]
        )
        spec = {s.name: s for s in SIGNALS}
        parts = []
        for n in names:
            sg = sigs.get(n)
            if not sg:
                continue
            parts.append(
                f"{spec[n].title} {_fmt(sg['value'], spec[n].unit)} (baseline {_fmt(sg['baseline'], spec[n].unit)})"
            )
        return "; ".join(parts) or "signals above baseline"

    def snapshot(self) -> list[CongestionScore]:
        return [self.scores[h] for h in sorted(self.scores)]
