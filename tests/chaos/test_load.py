"""The bounded profile of ``python -m tests.chaos.load`` (``make chaos`` runs the 1M-series one).

A 20,000-series target for a few seconds: the measurement runs end to end (RSS sampled,
``/healthz`` answered while large queries run, SIGTERM exit timed) so it cannot rot between
``make chaos`` runs. The figures are printed; only outcomes that do not depend on the machine's
speed are asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.load import MANIFEST_LIMIT_MIB, measure

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


async def test_load_measurement_runs_end_to_end(tmp_path: Path) -> None:
    res = await measure(tmp_path, series=20_000, seconds=8.0, interval=1.0)
    print("\n".join(res.lines()))
    assert res.rss_mib and max(res.rss_mib) < MANIFEST_LIMIT_MIB
    assert res.healthz_load_ms and res.healthz_query_ms
    assert res.healthz_errors == 0  # /healthz answered throughout (its latency is printed, not asserted)
    assert res.queries and all(status in (200, 503) for status, _, _ in res.queries)  # 503: query timeout
    assert res.scrapes_served > 0
