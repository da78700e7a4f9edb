"""A causal, streaming anomaly detector for one series (the engine of ``hciwatch anomalies`` and
the live ``metric_anomaly`` rule).

Why this design: real operations series are skewed, spiky, have level shifts and routine bursts.
Each row is judged only from the rows before it (``update`` scores, then learns), in O(log W)
time per row, with no randomness, so the output is what the service would have said at that
moment and is reproducible bit for bit.

Per row the detector computes three robust *surprise* features against trailing windows of the
series' own past (median and inter-quantile spread, immune to the outliers being hunted):

* **level**: how far the value is from the trailing median, in robust spreads;
* **jump**: how far the step from the previous value is from the usual steps (spikes, drops);
* **shift**: how far the mean of the last few values is from the trailing median, in standard
  errors of that mean (slow level and variance changes that no single row reveals).

The features are combined into one raw score, and the raw score is *calibrated on the series'
own past*: the alert threshold is the larger of the sensitivity's floor and a margin above a high
quantile of the raw scores seen so far. A series that is always noisy raises its own bar, a quiet
one keeps a low bar. The first row over the bar opens an *episode* and is the only alert; the
episode closes after ``quiet`` rows under 0.6 × the bar, and a refractory period follows each
alert. ``Sensitivity`` (low/medium/high) scales the margin, in the spirit of NAB's low-FP /
standard / low-FN profiles.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

from analytics.settings import Sensitivity


@dataclass(frozen=True, slots=True)
class DetectorParams:
    """Tuning knobs (in rows). Defaults chosen on principle, not per file; see the module docstring."""

    window: int = 600  # trailing rows for the level/jump baselines
    min_points: int = 24  # rows before the first score (cold start)
    warmup: int = 60  # rows before the first alert (the bar needs some calibration history)
    shift_span: int = 6  # rows averaged by the shift feature
    history: int = 2000  # past raw scores kept for calibration
    quantile: float = 0.995  # calibration quantile of past raw scores
    margin: float = 1.05  # the bar sits this much above that quantile
    floor_z: float = 4.5  # never alert below this raw score
    cap: float = 3.0  # scores enter the calibration history clipped at cap × the bar of their row
    quiet: int = 12  # rows under 0.6 × bar that close an episode
    refractory: int = 30  # rows after an alert with no new alert
    relative_floor: float = 0.002  # spread never below this fraction of |median| (flat lines)


SCALE = {Sensitivity.LOW: 1.2, Sensitivity.MEDIUM: 1.0, Sensitivity.HIGH: 0.85}  # × margin and floor_z
CLEAR = 0.6
SEASONS = 3  # cycles the seasonal feature looks back
EXPLAINED = 1.5  # a non-seasonal surprise counts up to this multiple of the seasonal one
REFRESH = 4  # rows between refreshes of the trailing statistics


class _Window:
    """The last ``size`` values in arrival order and sorted (median and quantiles in O(1))."""

    __slots__ = ("fifo", "size", "sorted")

    def __init__(self, size: int) -> None:
        self.fifo: deque[float] = deque()
        self.sorted: list[float] = []
        self.size = size

    def add(self, v: float) -> None:
        self.fifo.append(v)
        bisect.insort(self.sorted, v)
        if len(self.fifo) > self.size:
            old = self.fifo.popleft()
            del self.sorted[bisect.bisect_left(self.sorted, old)]

    def __len__(self) -> int:
        return len(self.sorted)

    def q(self, p: float) -> float:
        s = self.sorted
        return s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]


@dataclass(frozen=True, slots=True)
class Judgement:
    """How surprising one value is (no state changed but the calibration history)."""

    score: float  # raw surprise (NaN while cold)
    bar: float  # the calibrated alert threshold at this row
    baseline: float  # trailing median
    spread: float  # trailing robust spread

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
        self.p = params or DetectorParams()
        self.margin = self.p.margin * SCALE[sens]
        self.floor_z = self.p.floor_z * SCALE[sens]
        self.season = season if season >= 2 else 0
        self.past: dict[int, float] = {}  # row-clock slot -> value learned there (last SEASONS cycles)
        self.slots: deque[int] = deque()
        self.level = _Window(self.p.window)
        self.jumps = _Window(self.p.window)
        self.seasonal = _Window(self.p.window)
        self.scores = _Window(self.p.history)
        self.recent: deque[float] = deque(maxlen=self.p.shift_span)
        self.recent_sum = 0.0
        self.prev = math.nan
        self.in_episode = False
        self.quiet_rows = 0
        self.since_alert = 1 << 30
        self.rows = 0  # rows judged
        self.learned = 0  # rows learned
        self.counts = True  # every value so far a non-negative integer (event counts: Poisson floor)
        # trailing statistics, refreshed every REFRESH rows (they move slowly; this keeps rows cheap)
        self._age = REFRESH
        self._stats = (math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)

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
        bar = self.floor_z
        if len(self.scores) >= mp:
            bar = max(bar, self.margin * self.scores.q(self.p.quantile))
        self._stats = (med, self._spread(self.level, med, 1.0), jm, js, sm, ss, bar)
        self._age = 0

    def _residual(self, v: float, slot: int) -> float:
        """``v`` minus the median of the values one to SEASONS cycles before ``slot`` (NaN if none)."""
        p, past = self.season, self.past
        a, b, c = past.get(slot - p), past.get(slot - 2 * p), past.get(slot - 3 * p)
        if a is None:
            return math.nan
        if b is None or c is None:
            return v - a
        return v - max(min(a, b), min(max(a, b), c))

    def _slot(self, t: float | None) -> int:
        return self.learned if t is None else round(t)

    def judge(self, v: float, t: float | None = None) -> Judgement:
        """How surprising ``v`` is against what was learned before; records the score for calibration."""
        self.rows += 1
        self._age += 1
        if len(self.level) < self.p.min_points:
            return Judgement(math.nan, math.nan, math.nan, math.nan)
        if self._age >= REFRESH:
            self._refresh()
        med, sig, jm, js, sm, ss, bar = self._stats
        score = abs(v - med) / sig
        if js == js and self.prev == self.prev:  # not NaN
            score = max(score, abs(v - self.prev - jm) / js)
        k = self.p.shift_span
        if len(self.recent) == k:
            mean = (self.recent_sum - self.recent[0] + v) / k
            score = max(score, abs(mean - med) / sig * math.sqrt(k) / 2.0)
        if ss == ss and self.season:
            res = self._residual(v, self._slot(t))
            if res == res:
                zs = abs(res - sm) / ss
                # a value the daily cycle explains (small seasonal surprise) is not an anomaly even if
                # it is far from the recent level: that is a routine daily peak, not an incident
                score = max(zs, min(score, EXPLAINED * zs))
        # capped: a cold-start score against a near-zero spread must not deafen the series
        self.scores.add(min(score, self.p.cap * bar))
        return Judgement(score, bar, med, sig)

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
            self.past[slot] = v
            self.slots.append(slot)
            while self.slots and self.slots[0] <= slot - SEASONS * self.season:
                self.past.pop(self.slots.popleft(), None)
        if self.counts and (v < 0 or v != int(v)):
            self.counts = False
        self.level.add(v)
        if len(self.recent) == self.recent.maxlen:
            self.recent_sum -= self.recent[0]
        self.recent.append(v)
        self.recent_sum += v
        self.prev = v
        self.learned += 1

    def update(self, v: float, t: float | None = None) -> Step:
        """Judge ``v``, run the episode logic (one alert per episode, refractory), then learn ``v``."""
        j = self.judge(v, t)
        alert = False
        if j.score == j.score:
            if j.over and self.side(v, j.baseline):
                self.quiet_rows = 0
                if not self.in_episode and self.since_alert >= self.p.refractory and self.rows > self.p.warmup:
                    alert = True
                    self.since_alert = 0
                self.in_episode = True
            else:
                self.quiet_rows = self.quiet_rows + 1 if j.score < CLEAR * j.bar else 0
                if self.in_episode and self.quiet_rows >= self.p.quiet:
                    self.in_episode = False
        self.since_alert += 1
        self.learn(v, t)
        return Step(j.score, j.bar, alert, self.in_episode, j.baseline, j.spread)
