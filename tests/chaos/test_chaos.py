"""The chaos suite's short profile: every fault against the real service, nothing accepted lost.

``make chaos`` runs the full profile (more kills, longer faults, 3,000 idle clients, a 1M-series
target) and prints the table; this keeps each row short so the normal suite stays quick. One test
per row, each printing its line of the table. ``make test`` runs the rows in ``SUITE_ROWS``;
``make chaos`` runs all of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import print_table
from tests.chaos.scenarios import QUICK, SCENARIOS, run_all

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


# The rows `make test` runs (about a minute on two cores); the others are marked `chaos_full` and
# run under `make chaos` only, to keep the suite's time bounded.
SUITE_ROWS = {"kill9_during_ingest_and_export", "full_disk"}


@pytest.mark.parametrize(
    "scenario",
    [pytest.param(s.__name__, marks=[] if s.__name__ in SUITE_ROWS else [pytest.mark.chaos_full]) for s in SCENARIOS],
)
async def test_chaos_row_loses_nothing_accepted(tmp_path: Path, scenario: str) -> None:
    rows, skipped = await run_all(tmp_path, QUICK, [scenario])
    # a row that cannot inject its fault (no root to mount a tmpfs, no prlimit or mosquitto) is a
    # failure: `make test` installs the tools and runs as root in CI, so a row that did not run
    # would be a promise left unchecked
    assert not skipped, f"this machine cannot inject the fault: {skipped[0]}"
    table = print_table(rows)
    (row,) = rows
    assert row.accepted > 0, table
    assert row.lost == 0, table
    if scenario != "mqtt_broker_restart":  # MQTT QoS 1 is at least once: a message in the log but not
        assert row.duplicates == 0, table  # yet PUBACKed when killed is sent again (collector/sources/mqtt)
    assert row.alerts_lost == 0, table
