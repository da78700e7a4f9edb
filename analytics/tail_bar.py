"""Self-calibrated alert bars for many series at once: each series' k-th largest recent value.

Why: a robust z (median/MAD) describes a series' *body*; it says nothing about how heavy its
tail is. A host whose adapters see routine micro-bursts of PFC pauses crosses a fixed z bar many
times a day while being perfectly healthy, and a quiet host never does. The fix that the
single-series :mod:`analytics.detector` uses is to calibrate the bar on the series' own past: the
bar is the k-th largest value the score took over a trailing window (k = 3 of ~2000 values is a
tail of about 1.5 per mille), never below a floor (the sensitivity's z). A quiet series keeps the
floor — the bar only ever *rises* for series whose normal tail is heavier — and a noisy series
gets a bar just above its own routine extremes.

This module is the vectorised form for a bank of series that advance on one step grid (the
congestion detector's hosts × signals): the window is kept as ``blocks`` blocks of data time,
each holding only its top ``k`` values, so the k-th largest over the window is exact at block
granularity and memory is ``blocks × k`` floats per series. Which values are learned (e.g. not
those of an ongoing incident) and how they are clipped is the caller's policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def first_of_each(ids: I64, vals: npt.NDArray[Any]) -> tuple[I64, npt.NDArray[Any], I64 | None]:
    """(each id once, its first value, where those were in ``ids``); ``ids`` and ``vals`` as they
    are (and None) when no id repeats, the usual call (one value per series): a set of a few
    thousand ints is cheaper than ``np.unique``'s sort."""
    if len(set(ids.tolist())) == ids.size:
        return ids, vals, None
    uniq, first = np.unique(ids, return_index=True)
    return uniq, vals[first], np.asarray(first, np.int64)


class TailBank:
    """Rolling top-``k`` per series over ``window_ms`` of data time (``blocks`` time blocks).

    Series are dense non-negative integer ids chosen by the caller (e.g. a
    :class:`analytics.baselines.BaselineBank`'s ids); the bank grows to the largest id it sees.
    """

    def __init__(self, k: int, window_ms: int, blocks: int = 20) -> None:
        if k < 1 or blocks < 1 or window_ms < blocks:
            raise ValueError("TailBank needs k >= 1, blocks >= 1 and a window of at least one ms per block")
        self.k = k
        self.blocks = blocks
        self.block_ms = window_ms // blocks
        self.top = np.full((0, blocks, k), -np.inf)  # per series and block slot: top k, ascending
        self.block_of = np.full((0, blocks), -1, np.int64)  # which block number each slot holds

    def __len__(self) -> int:
        return int(self.top.shape[0])

    def _grow(self, n: int) -> None:
        if n <= self.top.shape[0]:
            return
        cap = max(n, 2 * self.top.shape[0], 64)
        top = np.full((cap, self.blocks, self.k), -np.inf)
        top[: self.top.shape[0]] = self.top
        block_of = np.full((cap, self.blocks), -1, np.int64)
        block_of[: self.block_of.shape[0]] = self.block_of
        self.top, self.block_of = top, block_of

    def retain(self, ids: I64) -> None:
        """Keep only these series, renumbered 0..n−1 in the given order (ids the bank never
        grew to come back empty)."""
        ids = np.asarray(ids, np.int64)
        self._grow(int(ids.max()) + 1 if ids.size else 0)
        self.top, self.block_of = self.top[ids], self.block_of[ids]

    def add(self, ids: I64, values: F64, bucket_ms: int) -> None:
        """Learn one value per id at data time ``bucket_ms`` (NaN values are skipped; an id given
        twice learns both values)."""
        ok = np.isfinite(values)
        ids = np.asarray(ids, np.int64)[ok]
        vals = np.asarray(values, np.float64)[ok]
        if ids.size == 0:
            return
        self._grow(int(ids.max()) + 1)
        block = bucket_ms // self.block_ms
        slot = int(block % self.blocks)
        while ids.size:
            # fancy-index assignment keeps one write per id, so duplicates go in rounds; ids that
            # are all distinct (the usual call: one value per series) are one round as they come
            # (each id's update reads and writes only its own row, so their order is immaterial)
            uniq, new, first = first_of_each(ids, vals)
            rest: npt.NDArray[np.bool_] | None = None
            if first is not None:
                rest = np.ones(ids.size, bool)
                rest[first] = False
            stale = self.block_of[uniq, slot] != block
            if stale.any():
                self.top[uniq[stale], slot] = -np.inf
                self.block_of[uniq[stale], slot] = block
            cur = self.top[uniq, slot]  # (m, k) ascending
            merged = np.sort(np.concatenate([cur, new[:, None]], axis=1), axis=1)
            self.top[uniq, slot] = merged[:, 1:]
            if rest is None:
                return
            ids, vals = ids[rest], vals[rest]

    def kth(self, ids: I64, bucket_ms: int) -> F64:
        """The k-th largest value each id learned in the window ending at ``bucket_ms``'s block
        (NaN while it holds fewer than k values: the caller's floor applies)."""
        ids = np.asarray(ids, np.int64)
        if ids.size and int(ids.max()) < self.top.shape[0]:  # every id known (the usual call)
            return self._kth(ids, bucket_ms)
        out = np.full(ids.size, np.nan)
        known = ids < self.top.shape[0]
        if not known.any():
            return out
        out[known] = self._kth(ids[known], bucket_ms)
        return out

    def _kth(self, kid: I64, bucket_ms: int) -> F64:
        """:meth:`kth` of ids the bank has rows for."""
        block = bucket_ms // self.block_ms
        b = self.block_of[kid]
        live = (b > block - self.blocks) & (b <= block)
        vals = np.where(live[:, :, None], self.top[kid], -np.inf).reshape(kid.size, -1)
        kth = np.partition(vals, vals.shape[1] - self.k, axis=1)[:, vals.shape[1] - self.k]
        return np.asarray(np.where(np.isfinite(kth), kth, np.nan), np.float64)
