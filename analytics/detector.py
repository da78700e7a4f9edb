"""A causal, streaming anomaly detector for one series (the engine of ``hciwatch anomalies``, the
live ``metric_anomaly`` rule and the NAB bench).

Why this design: real operations series are skewed, spiky, have level shifts and routine bursts.
Each row is judged only from the rows before it (``update`` scores, then learns), in O(log W)
time per row, with no randomness, so the output is what the service would have said at that
moment and is reproducible bit for bit.

Per row the detector computes five robust *surprise* features against trailing windows of the
series' own past (median and inter-quantile spread, immune to the outliers being hunted):

* **level**: how far the value is from the trailing median, in robust spreads;
* **jump**: how far the step from the previous value is from the usual steps (spikes, drops);
* **shift** at two time scales (the mean of the last 6 and of the last 24 values against the
  trailing median, in standard errors of that mean): level and variance changes that no single
  row reveals, fast and slow;
* **seasonal**: the value against the same time of day one to three days before;
* **novelty**: whether the *transition* from the previous value to this one occurred in the
  last ``history`` rows — each value binned into ``novelty_bins`` equal slices of the trailing
  window's 0.5-99.5 % range, two consecutive bins one pattern, its surprise
  ``log(history / (times seen + ½))``. Level-free (a transition can be new while every value is
  ordinary), so it catches a broken rhythm — a square wave that stops switching, a ramp that
  reverses — that the magnitude features miss (the idea of NAB's contextual detector, CAD OSE, in
  O(1) per row and 2 KB). Only a never-seen pattern counts, and its values are discrete
  (counts), so its bar is never lowered by the sensitivity: a new pattern alerts only on a series
  where new patterns are themselves rare (its bar is its own tail, like every feature's).

Each feature is *calibrated on its own past*: its bar is the k-th largest value it took over the
last ``history`` rows (k = ``top``, a tail of about 1.5 per mille) and never below ``floor_z``. The
row's score is the largest feature-to-bar ratio, so a feature that is routinely large on this
series (the jumps of a spiky counter, the level of a drifting gauge) raises only its own bar and
does not mask the others — calibrating one combined score let the noisiest feature set the bar for
all. A value the daily cycle explains (small seasonal ratio) is not an anomaly even if it is far
from the recent level. The first row whose score reaches the bar (``margin``) opens an *episode*
and is its alert; the episode closes after ``quiet`` rows under 0.6 × the bar, and a
refractory period follows each alert. An episode that *escalates* — a score ``escalate`` times its
peak so far, at least ``escalate_gap`` rows after the last alert — alerts again: an incident
often begins while a smaller disturbance is still open, and one alert per episode would hide it.
``Sensitivity`` (low/medium/high) scales the margin and the floor, in the spirit of NAB's low-FP /
standard / low-FN profiles.

Memory is bounded and small (``DetectorParams`` sizes; ``bench/bench_anomalies_nab.py --memory``
measures it): sorted trailing windows as ``array('d')``, the per-feature tails as the top ``top``
values of ``history / blocks``-row blocks (exact at block granularity), and the daily cycle as a
ring of ``3 × season`` slots, the novelty patterns as a ring of ``history`` 1-byte codes (2
bytes past 256 patterns) and a count per possible pattern.
"""

from __future__ import annotations

import bisect
import heapq
import math
from array import array
from collections import deque
from dataclasses import dataclass

from analytics.settings import Sensitivity


@dataclass(frozen=True, slots=True)
class DetectorParams:
    """Tuning knobs (in rows). Defaults chosen on the NAB development categories only, on principle
    (no per-file constants); the held-out categories were not used to choose them."""

    window: int = 600  # trailing rows for the level/jump/seasonal baselines
    min_points: int = 24  # rows before the first score (cold start)
    warmup: int = 60  # rows before the first alert (the bars need some calibration history)
    shift_span: int = 6  # rows averaged by the fast shift feature
    long_span: int = 24  # rows averaged by the slow shift feature
    history: int = 2000  # rows of past feature values each bar is calibrated on
    top: int = 3  # a feature's bar is its top-th largest value over ``history`` rows
    blocks: int = 20  # the calibration history is kept as the top values of this many blocks
    margin: float = 1.05  # alert when the largest feature-to-bar ratio reaches this
    floor_z: float = 4.5  # no feature bar below this many robust spreads
    young_floor_z: float = 4.5  # ... and while the history is young, a floor falling from this to floor_z
    cap: float = 3.0  # values enter the calibration history clipped at cap × their bar
    quiet: int = 12  # rows under 0.6 × bar that close an episode
    refractory: int = 30  # rows after an alert with no new alert
    relative_floor: float = 0.002  # spread never below this fraction of |median| (flat lines)
    novelty_bins: int = 8  # slices of the trailing range a value is binned into (0 = no novelty feature)
    novelty_order: int = 2  # consecutive bins that make one pattern
    novelty_min: int = 500  # patterns seen (and novelty values calibrated on) before the novelty feature alerts
    escalate: float = 1.5  # a score this many times the open episode's peak alerts again (0 = never)
    escalate_gap: int = 6  # ... but not within this many rows of the last alert


# × margin and floor_z. Low was 1.2: on the NAB development set every fold of a leave-one-category-out
# choice among 1.05 / 1.1 / 1.2 picked 1.05 for NAB's own low-FP profile (1.2 missed half of realTraffic's windows)
SCALE = {Sensitivity.LOW: 1.05, Sensitivity.MEDIUM: 1.0, Sensitivity.HIGH: 0.85}
CLEAR = 0.6
SEASONS = 3  # cycles the seasonal feature looks back
EXPLAINED = 1.5  # a non-seasonal surprise counts up to this multiple of the seasonal one
REFRESH = 4  # rows between refreshes of the trailing statistics
LEVEL, JUMP, SHIFT, LONG_SHIFT, SEASONAL, NOVEL = range(6)
FEATURES = 6
NOVEL_RANGE = 0.005  # the novelty bins span the trailing window's 0.5-99.5 % range (one spike does not reshape them)


class _Window:
    """The last ``size`` values in arrival order (a ring) and sorted (median and quantiles in O(1));
    both as ``array('d')``: 16 bytes a value instead of about 56 for lists of float objects."""

    __slots__ = ("head", "ring", "size", "sorted")

    def __init__(self, size: int) -> None:
        self.ring = array("d")
        self.sorted = array("d")
        self.size = size
        self.head = 0

    def add(self, v: float) -> None:
        s = self.sorted
        if len(self.ring) < self.size:
            self.ring.append(v)
        else:
            old = self.ring[self.head]
            self.ring[self.head] = v
            self.head = (self.head + 1) % self.size
            del s[bisect.bisect_left(s, old)]
        bisect.insort(s, v)

    def __len__(self) -> int:
        return len(self.sorted)

    def q(self, p: float) -> float:
        s = self.sorted
        return s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]


class _Tail:
    """The ``k``-th largest of roughly the last ``window`` values, from the top ``k`` of each of
    ``blocks`` blocks: exact for the block-aligned window, O(k · blocks) memory."""

    __slots__ = ("block", "blocks", "cur", "done", "k", "merged", "n_cur", "window")

    def __init__(self, k: int, window: int, blocks: int) -> None:
        self.k = k
        self.window = window
        self.blocks = blocks
        self.block = max(1, window // blocks)
        self.cur: list[float] = []  # top k of the current block, ascending
        self.n_cur = 0
        self.done: deque[list[float]] = deque()  # top k of each completed block
        self.merged: list[float] = []  # top k over the completed blocks, descending

    def add(self, v: float) -> None:
        cur = self.cur
        if len(cur) < self.k:
            bisect.insort(cur, v)
        elif v > cur[0]:
            cur.pop(0)
            bisect.insort(cur, v)
        self.n_cur += 1
        if self.n_cur == self.block:
            self.done.append(cur)
            if len(self.done) >= self.blocks:
                self.done.popleft()
            self.merged = heapq.nlargest(self.k, (x for b in self.done for x in b))
            self.cur = []
            self.n_cur = 0

    def __len__(self) -> int:
        return len(self.done) * self.block + self.n_cur

    def kth(self) -> float:
        """The k-th largest value, k scaled down while the history is shorter than ``window`` (so a
        young series is judged at the same tail probability); NaN when empty."""
        n = len(self)
        if n == 0:
            return math.nan
        k = max(1, min(self.k, round(self.k * n / self.window)))
        top = sorted((*self.merged[:k], *self.cur[-k:]), reverse=True)
        return top[min(k, len(top)) - 1]


@dataclass(frozen=True, slots=True)
class Judgement:
    """How surprising one value is (no state changed but the calibration history)."""

    score: float  # largest feature-to-bar ratio (NaN while cold): 1 = at the series' own tail
    bar: float  # the alert threshold on ``score`` (the sensitivity's margin)
    baseline: float  # trailing median
    spread: float  # trailing robust spread
    z: float = math.nan  # the level surprise: |value − baseline| / spread
    level_bar: float = math.nan  # the level feature's calibrated bar, in spreads (band = baseline ± it × spread)

    @property
    def over(self) -> bool:
        return self.score >= self.bar  # False while cold (NaN)


@dataclass(frozen=True, slots=True)
class Step:
    """The detector's verdict on one row (:meth:`StreamDetector.update`)."""

    score: float
    bar: float
    alert: bool  # first row of a new episode
    in_episode: bool
    baseline: float
    spread: float


_COLD = Judgement(math.nan, math.nan, math.nan, math.nan)


class StreamDetector:
    """Causal detector for one series.

    :meth:`update` (judge, run the episode logic, learn) is the whole detector. A caller with its
    own episode policy (the live rule's N-of-M and withholding) uses :meth:`judge` and
    :meth:`learn` separately; values must then be learned in time order.

    ``t`` is the row's position on a *row clock* (e.g. ``elapsed seconds / usual step``): the
    seasonal feature looks up the values learned at ``t − season``, ``t − 2·season``… so gaps and
    withheld rows do not shift the cycle. Without ``t`` the count of rows learned is used.
    """

    def __init__(
        self,
        sensitivity: Sensitivity | str = Sensitivity.MEDIUM,
        params: DetectorParams | None = None,
        season: int = 0,
        direction: str = "both",
    ) -> None:
        """``season``: rows per daily cycle (0 = no seasonal feature), e.g. 288 for 5-minute rows;
        ``direction``: ``up``/``down`` alert only above/below the trailing median, ``both`` either."""
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be up, down or both, not {direction!r}")
        sens = Sensitivity(sensitivity)
        self.direction = direction
        p = self.p = params or DetectorParams()
        patterns = p.novelty_bins**p.novelty_order if p.novelty_bins else 0
        if patterns > 1 << 16:
            raise ValueError(f"novelty_bins ** novelty_order must be at most 65536, not {patterns}")
        self.margin = p.margin * SCALE[sens]
        self.floor_z = p.floor_z * SCALE[sens]
        self.young_floor_z = max(p.young_floor_z, p.floor_z) * SCALE[sens]
        self.season = season if season >= 2 else 0
        ring = SEASONS * self.season
        self.ring_v = array("d", bytes(8 * ring))  # value learned at each slot of the last SEASONS cycles
        self.ring_t = array("q", [-(1 << 62)]) * ring  # which slot each ring entry holds
        self.level = _Window(p.window)
        self.jumps = _Window(p.window)
        self.seasonal = _Window(p.window)
        self.tails = [_Tail(p.top, p.history, p.blocks) for _ in range(FEATURES)]
        self.bars = [self.young_floor_z] * FEATURES
        self.recent: deque[float] = deque(maxlen=max(p.shift_span, p.long_span))
        self.short_sum = 0.0  # sum of the last shift_span values learned
        self.long_sum = 0.0  # sum of the last long_span values learned
        self.prev = math.nan
        self.in_episode = False
        self.episode_peak = 0.0  # largest score of the open episode
        self.quiet_rows = 0
        self.since_alert = 1 << 30
        self.rows = 0  # rows judged
        self.learned = 0  # rows learned
        self.counts = True  # every value so far a non-negative integer (event counts: Poisson floor)
        # trailing statistics, refreshed every REFRESH rows (they move slowly; this keeps rows cheap)
        self._age = REFRESH
        self._stats = (math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
        # novelty: bin edges (refreshed with the statistics), the pattern code of each of the last
        # ``history`` rows learned (a ring) and how often each code occurs in it
        self.cuts: list[float] = []
        self.codes = array("B" if patterns <= 256 else "H")  # 1 byte a row for the default 64 patterns
        self.code_head = 0
        self.code_count = array("H", bytes(2 * patterns))
        self.code_prev = 0  # code of the last row learned (its last order − 1 bins are the context)
        self.binned = 0  # rows binned so far (a code is whole after novelty_order of them)

    def forget_previous(self) -> None:
        """After a gap in the data: the next step is not compared with the last value seen."""
        self.prev = math.nan

    def _spread(self, w: _Window, med: float, count_scale: float) -> float:
        """Robust spread (IQR, else the 5-95 % range, else the full range for mostly-constant
        series), floored by a fraction of the level and, for event counts, by the Poisson spread."""
        s = (w.q(0.75) - w.q(0.25)) / 1.349
        if s <= 0:
            s = (w.q(0.95) - w.q(0.05)) / 3.29
        if s <= 0:
            s = (w.sorted[-1] - w.sorted[0]) / 6.0
        if self.counts:
            s = max(s, math.sqrt(count_scale * max(self.level.q(0.5), 1.0)))
        return max(s, self.p.relative_floor * abs(med), 1e-9)

    def _refresh(self) -> None:
        mp = self.p.min_points
        med = self.level.q(0.5)
        jm = js = sm = ss = math.nan
        if len(self.jumps) >= mp:
            jm, js = self.jumps.q(0.5), self._spread(self.jumps, 0.0, 2.0)
        if len(self.seasonal) >= mp:
            sm, ss = self.seasonal.q(0.5), self._spread(self.seasonal, 0.0, 2.0)
        self._stats = (med, self._spread(self.level, med, 1.0), jm, js, sm, ss)
        # a tail estimated from few rows is itself noisy: until ``history`` rows the floor is higher
        young = max(0.0, 1.0 - self.rows / self.p.history)
        floor = self.floor_z + (self.young_floor_z - self.floor_z) * young
        for f, tail in enumerate(self.tails):
            self.bars[f] = max(floor, tail.kth()) if len(tail) >= mp else floor
        # novelty surprises are log-counts, not spreads: the z floor means nothing to them
        novel = self.tails[NOVEL]
        self.bars[NOVEL] = novel.kth() if len(novel) >= mp else math.inf
        nb = self.p.novelty_bins
        if nb:
            lo, hi = self.level.q(NOVEL_RANGE), self.level.q(1.0 - NOVEL_RANGE)
            self.cuts = [lo + (hi - lo) * i / nb for i in range(1, nb)]
        self._age = 0

    def _residual(self, v: float, slot: int) -> float:
        """``v`` minus the median of the values one to SEASONS cycles before ``slot`` (NaN if none)."""
        p = self.season
        ring, held = len(self.ring_v), self.ring_t
        a = b = c = math.nan
        i = (slot - p) % ring
        if held[i] == slot - p:
            a = self.ring_v[i]
        else:
            return math.nan
        i = (slot - 2 * p) % ring
        if held[i] == slot - 2 * p:
            b = self.ring_v[i]
        i = (slot - 3 * p) % ring
        if held[i] == slot - 3 * p:
            c = self.ring_v[i]
        if b != b or c != c:
            return v - a
        return v - max(min(a, b), min(max(a, b), c))

    def _code(self, v: float) -> int:
        """The pattern code of ``v`` after the last ``novelty_order − 1`` values learned."""
        return (self.code_prev * self.p.novelty_bins) % len(self.code_count) + bisect.bisect_right(self.cuts, v)

    def _slot(self, t: float | None) -> int:
        return self.learned if t is None else round(t)

    def judge(self, v: float, t: float | None = None) -> Judgement:
        """How surprising ``v`` is against what was learned before; records the features for calibration."""
        self.rows += 1
        self._age += 1
        if len(self.level) < self.p.min_points:
            return _COLD
        if self._age >= REFRESH:
            self._refresh()
        med, sig, jm, js, sm, ss = self._stats
        bars, tails, cap = self.bars, self.tails, self.p.cap
        z = abs(v - med) / sig
        ratio = z / bars[LEVEL]
        tails[LEVEL].add(min(z, cap * bars[LEVEL]))
        if js == js and self.prev == self.prev:  # not NaN
            zf = abs(v - self.prev - jm) / js
            ratio = max(ratio, zf / bars[JUMP])
            tails[JUMP].add(min(zf, cap * bars[JUMP]))
        recent = self.recent
        k = self.p.shift_span
        if len(recent) >= k:
            zf = abs((self.short_sum - recent[-k] + v) / k - med) / sig * math.sqrt(k) / 2.0
            ratio = max(ratio, zf / bars[SHIFT])
            tails[SHIFT].add(min(zf, cap * bars[SHIFT]))
        k = self.p.long_span
        if len(recent) >= k:
            zf = abs((self.long_sum - recent[-k] + v) / k - med) / sig * math.sqrt(k) / 2.0
            ratio = max(ratio, zf / bars[LONG_SHIFT])
            tails[LONG_SHIFT].add(min(zf, cap * bars[LONG_SHIFT]))
        n = len(self.codes)
        if n >= self.p.min_points:
            seen = self.code_count[self._code(v)]
            zf = math.log((self.p.history + 1.0) / (seen + 0.5))  # not n: comparable while the ring fills
            # only a pattern never seen in the history window, by the medium margin whatever the
            # sensitivity, once the tail has novelty_min rows behind it
            if n >= self.p.novelty_min and seen == 0 and zf >= bars[NOVEL] * self.p.margin:
                ratio = max(ratio, zf / bars[NOVEL])
            tails[NOVEL].add(zf)
        if ss == ss and self.season:
            res = self._residual(v, self._slot(t))
            if res == res:
                zf = abs(res - sm) / ss
                rs = zf / bars[SEASONAL]
                tails[SEASONAL].add(min(zf, cap * bars[SEASONAL]))
                # a value the daily cycle explains (small seasonal surprise) is not an anomaly even if
                # it is far from the recent level: that is a routine daily peak, not an incident.
                # The seasonal surprise raises the score on its own only once its bar has been
                # calibrated over a whole cycle (it starts a day late, when the others are mature).
                ratio = min(ratio, EXPLAINED * rs)
                if len(tails[SEASONAL]) >= self.season:
                    ratio = max(ratio, rs)
        return Judgement(ratio, self.margin, med, sig, z, bars[LEVEL] * self.margin)

    def side(self, v: float, baseline: float) -> bool:
        """Is ``v`` on the side of the baseline that ``direction`` watches?"""
        return self.direction == "both" or (v > baseline) == (self.direction == "up")

    def learn(self, v: float, t: float | None = None) -> None:
        """Add ``v`` to the trailing baselines (values in time order)."""
        if self.prev == self.prev:
            self.jumps.add(v - self.prev)
        if self.season:
            slot = self._slot(t)
            res = self._residual(v, slot)
            if res == res:
                self.seasonal.add(res)
            i = slot % len(self.ring_v)
            self.ring_v[i] = v
            self.ring_t[i] = slot
        if self.counts and (v < 0 or v != int(v)):
            self.counts = False
        if self.cuts:
            self._learn_pattern(v)
        self.level.add(v)
        recent = self.recent
        if len(recent) >= self.p.shift_span:
            self.short_sum -= recent[-self.p.shift_span]
        if len(recent) >= self.p.long_span:
            self.long_sum -= recent[-self.p.long_span]
        recent.append(v)
        self.short_sum += v
        self.long_sum += v
        self.prev = v
        self.learned += 1

    def _learn_pattern(self, v: float) -> None:
        """Count ``v``'s pattern in the novelty ring (dropping the one that leaves it)."""
        code = self._code(v)
        self.code_prev = code
        self.binned += 1
        if self.binned < self.p.novelty_order:
            return
        codes, count = self.codes, self.code_count
        if len(codes) < self.p.history:
            codes.append(code)
        else:
            count[codes[self.code_head]] -= 1
            codes[self.code_head] = code
            self.code_head = (self.code_head + 1) % self.p.history
        count[code] += 1

    def update(self, v: float, t: float | None = None) -> Step:
        """Judge ``v``, run the episode logic (an alert opens an episode or marks its escalation;
        refractory), then learn ``v``."""
        j = self.judge(v, t)
        alert = False
        if j.score == j.score:
            if j.over and self.side(v, j.baseline):
                self.quiet_rows = 0
                p = self.p
                if self.rows > p.warmup and (
                    (not self.in_episode and self.since_alert >= p.refractory)
                    or (
                        self.in_episode
                        and p.escalate > 0
                        and j.score >= p.escalate * self.episode_peak
                        and self.since_alert >= p.escalate_gap
                    )
                ):
                    alert = True
                    self.since_alert = 0
                self.episode_peak = max(self.episode_peak, j.score) if self.in_episode else j.score
                self.in_episode = True
            else:
                self.quiet_rows = self.quiet_rows + 1 if j.score < CLEAR * j.bar else 0
                if self.in_episode and self.quiet_rows >= self.p.quiet:
                    self.in_episode = False
                    self.episode_peak = 0.0
        self.since_alert += 1
        self.learn(v, t)
        return Step(j.score, j.bar, alert, self.in_episode, j.baseline, j.spread)
