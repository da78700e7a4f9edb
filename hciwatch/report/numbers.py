"""Numbers as the model's JSON carries them: finite, and no more digits than a chart can show.

Four significant digits keep a 48 h model a few hundred kilobytes; NaN and infinities become
``null`` (JSON has neither, and a gap is what a chart should draw for them).
"""

from __future__ import annotations

import math

SIGNIFICANT = 4


def num(value: float | int | None, digits: int = SIGNIFICANT) -> float | int | None:
    """``value`` rounded to ``digits`` significant digits; integers stay integers."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    v = float(value)
    if not math.isfinite(v):
        return None
    if v == 0.0:
        return 0
    if v.is_integer() and abs(v) < 1e15:
        return int(v)
    r = round(v, digits - 1 - math.floor(math.log10(abs(v))))
    return int(r) if r.is_integer() and abs(r) < 1e15 else r
