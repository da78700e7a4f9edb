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
    min_points: int = 24  # rows before the first judgement (cold start)
    shift_span: int = 6  # rows averaged by the shift feature
    history: int = 2000  # past raw scores kept for calibration
    quantile: float = 0.995  # calibration quantile of past raw scores
    margin: float = 1.25  # the bar sits this much above that quantile
    floor_z: float = 4.0  # never alert below this raw score
    quiet: int = 12  # rows under 0.6 × bar that close an episode
    refractory: int = 60  # rows after an alert with no new alert
    relative_floor: float = 0.002  # spread never below this fraction of |median| (flat lines)


SCALE = {Sensitivity.LOW: 1.2, Sensitivity.MEDIUM: 1.0, Sensitivity.HIGH: 0.85}  # × margin and floor_z
CLEAR = 0.6


class _Window:
    """The last ``size`` values in arrival order and sorted (median and quantiles in O(1))."""

    __slots__ = ("fifo", "sorted", "size")

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
class Step:
    """The detector's verdict on one row."""

    score: float  # raw surprise (NaN while cold)
    bar: float  # the calibrated alert threshold at this row
    alert: bool  # first row of a new episode
    in_episode: bool
    baseline: float  # trailing median
    spread: float  # trailing robust spread


class StreamDetector:
    """Causal detector for one series; feed rows in order with :meth:`update`."""

    def __init__(self, sensitivity: Sensitivity | str = Sensitivity.MEDIUM, params: DetectorParams | None = None) -> None:
        sens = Sensitivity(sensitivity)
        self.p = params or DetectorParams()
        self.margin = self.p.margin * SCALE[sens]
        self.floor_z = self.p.floor_z * SCALE[sens]
        self.level = _Window(self.p.window)
        self.jumps = _Window(self.p.window)
        self.scores = _Window(self.p.history)
        self.recent: deque[float] = deque(maxlen=self.p.shift_span)
        self.prev = math.nan
        self.in_episode = False
        self.quiet_rows = 0
        self.since_alert = 1 << 30
        self.rows = 0

    def _spread(self, w: _Window, med: float) -> float:
        s = (w.q(0.75) - w.q(0.25)) / 1.349
        if s <= 0:
            s = (w.q(0.95) - w.q(0.05)) / 3.29
        return max(s, self.p.relative_floor * abs(med), 1e-9)

    def raw(self, v: float) -> tuple[float, float, float]:
        """(raw score, median, spread) of ``v`` against the past; NaN score while cold."""
        if len(self.level) < self.p.min_points:
            return math.nan, math.nan, math.nan
        med = self.level.q(0.5)
        sig = self._spread(self.level, med)
        z_level = abs(v - med) / sig
        z_jump = 0.0
        if len(self.jumps) >= self.p.min_points and math.isfinite(self.prev):
            jm = self.jumps.q(0.5)
            js = self._spread(self.jumps, 0.0)
            z_jump = abs((v - self.prev) - jm) / js
        z_shift = 0.0
        if len(self.recent) == self.recent.maxlen:
            k = len(self.recent)
            mean = (sum(self.recent) - self.recent[0] + v) / k
            z_shift = abs(mean - med) / sig * math.sqrt(k) / 2.0
        return max(z_level, z_jump, z_shift), med, sig

    def update(self, v: float) -> Step:
        """Score ``v`` against the past, then learn it."""
        score, med, sig = self.raw(v)
        alert = False
        bar = math.nan
        if math.isfinite(score):
            bar = self.floor_z
            if len(self.scores) >= self.p.min_points:
                bar = max(bar, self.margin * self.scores.q(self.p.quantile))
            if score >= bar:
                self.quiet_rows = 0
                if not self.in_episode and self.since_alert >= self.p.refractory:
                    alert = True
                    self.since_alert = 0
                self.in_episode = True
            else:
                self.quiet_rows = self.quiet_rows + 1 if score < CLEAR * bar else 0
                if self.in_episode and self.quiet_rows >= self.p.quiet:
                    self.in_episode = False
            self.scores.add(score)
        self.since_alert += 1
        self.rows += 1
        if math.isfinite(self.prev):
            self.jumps.add(v - self.prev)
        self.level.add(v)
        self.recent.append(v)
        self.prev = v
        return Step(score, bar, alert, self.in_episode, med, sig)
