"""The scrape grid and the shapes every generator shares: working-hours load and event windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lab.rand import ar1
from lab.scenario import Scenario

F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Grid:
    """Scrape ticks ``0..n-1`` at ``dt`` seconds; ``sec[i]`` is seconds since the scenario start."""

    n: int
    dt: float
    sec: F64
    local_hour: F64
    weekend: BOOL

    @classmethod
    def build(cls, scenario: Scenario, dt: float) -> Grid:
        n = int(scenario.duration.total_seconds() // dt)
        sec = np.arange(n, dtype=np.float64) * dt
        epoch = scenario.start.timestamp() + sec + scenario.site.utc_offset_hours * 3600.0
        local_hour = (epoch / 3600.0) % 24.0
        weekday = ((np.floor(epoch / 86400.0) + 3) % 7).astype(np.int64)  # 1970-01-01 was a Thursday
        return cls(n, dt, sec, local_hour, weekday >= 5)

    def mask(self, lo: float, hi: float) -> BOOL:
        """Ticks whose interval ``(t - dt, t]`` overlaps ``[lo, hi)``."""
        return (self.sec > lo) & (self.sec - self.dt < hi)

    def index_at_or_after(self, sec: float) -> int:
        return int(min(self.n, max(0, np.ceil(sec / self.dt))))


def diurnal(hour: F64) -> F64:
    """Working-hours load shape in 0.28..1.05: a midday peak and a small evening shoulder."""
    day = np.exp(-0.5 * ((hour - 13.5) / 3.6) ** 2)
    evening = 0.12 * np.exp(-0.5 * ((hour - 20.5) / 1.4) ** 2)
    return 0.28 + 0.72 * day + evening


def load(grid: Grid, rng: np.random.Generator, *, scale: float = 1.0, phase_h: float = 0.0, sigma: float = 0.1) -> F64:
    """A target's load factor: diurnal shape (shifted by ``phase_h``), quieter at weekends, times
    slowly wandering multiplicative noise."""
    shape = diurnal((grid.local_hour + phase_h) % 24.0)
    shape = np.where(grid.weekend, 0.3 + 0.5 * (shape - 0.28), shape)
    return scale * shape * np.exp(ar1(rng, grid.n, 0.995, sigma))
