"""The chaos suite's short profile: every fault against the real service, nothing accepted lost.

``make chaos`` runs the full profile (more kills, longer faults, 3,000 idle clients, a 1M-series
target) and prints the table; this keeps each row short so the normal suite stays quick.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import print_table
from tests.chaos.scenarios import QUICK, run_all

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


async def test_chaos_quick_profile_loses_nothing_accepted(tmp_path: Path) -> None:
    rows, skipped = await run_all(tmp_path, QUICK)
    table = print_table(rows)
    for why in skipped:
        print(f"skipped: {why}")
    assert rows, "no scenario could run"
    for row in rows:
        assert row.lost == 0 and row.duplicates == 0, table
        assert row.alerts_lost == 0, table
        assert row.accepted > 0, table
