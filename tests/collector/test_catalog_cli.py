"""The catalog opens in the DuckDB CLI a user installs (``pip install duckdb-cli``), also after the
data dir was moved: the README's ``cd <data_dir> && duckdb -readonly catalog.duckdb`` is tested here.

The CLI on PyPI lags the Python library (1.5.x vs 2.x); the catalog is written in storage format
v1.0.0 so every DuckDB from 1.0 reads it. If the CLI is missing, the test fails with the install
line (it is in the ``test`` extra).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analytics.views import analyst_views
from collector.config import NetworkSettings
from tests.report.synth import NETWORK, write_site


def _duckdb_cli() -> str:
    found = shutil.which("duckdb") or str(Path(sys.executable).parent / "duckdb")
    if not Path(found).exists():
        pytest.fail("the DuckDB CLI is not installed: pip install duckdb-cli (in the test extra)")
    return found


@pytest.mark.integration
def test_duckdb_cli_opens_a_moved_catalog(tmp_path: Path) -> None:
    write_site(tmp_path / "orig", hours=2, hosts=2, incidents=3)
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(tmp_path / "orig", moved)
    shutil.rmtree(tmp_path / "orig")  # nothing may point at the old place
    views = ", ".join(sorted(analyst_views([NetworkSettings.model_validate(NETWORK)])))
    assert "pool_usage" in views
    sql = (
        "SELECT (SELECT count(*) FROM samples) AS samples, (SELECT count(*) FROM ip_observations) AS obs, "
        "(SELECT count(*) FROM alerts) AS alerts, (SELECT count(*) FROM pool_usage) AS pool_rows;"
    )
    cli = _duckdb_cli()
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    proc = subprocess.run(
        [cli, "-readonly", "-csv", "catalog.duckdb", "-c", sql],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=moved,
    )
    assert proc.returncode == 0, f"{version}: {proc.stderr}"
    header, row = proc.stdout.strip().splitlines()[-2:]
    assert header == "samples,obs,alerts,pool_rows"
    samples, obs, alerts, pool_rows = (int(x) for x in row.split(","))
    assert samples > 0 and obs > 0 and alerts > 0 and pool_rows > 0
