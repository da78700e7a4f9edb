"""``hciwatch demo``: a short run end to end, and follow-up hints that paste as one command each."""

from __future__ import annotations

from pathlib import Path

import pytest

from hciwatch.cli import main
from hciwatch.demo import follow_up_hints


def test_hints_are_one_command_per_line_and_short_where_they_can_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "demo-data"
    lines = follow_up_hints(d, d / "capture.jsonl.zst", d / "demo-config.toml")
    commands = [line.strip() for line in lines if line.startswith("  ")]
    assert len(commands) == 5
    assert all("\n" not in c for c in commands)
    assert all(len(line) <= 80 for line in lines if "replay" not in line)  # relative paths keep them short
    assert "hciwatch alerts --data-dir demo-data --status open" in commands
    assert any(c.startswith("duckdb") for c in commands) or any("duckdb" in c for c in commands)


@pytest.mark.slow
def test_short_demo_runs_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--hours", "1", "--data-dir", "d"]) == 0
    out = capsys.readouterr().out
    assert "simulating 1 h of an Azure Local site" in out  # not "1:00:00"
    # printed with print(): the terminal wraps them softly, a pasted command stays one command
    assert "\n  hciwatch replay d/capture.jsonl.zst --config d/demo-config.toml --data-dir /tmp/replay\n" in out
    assert (tmp_path / "d" / "report.html").exists() and (tmp_path / "d" / "catalog.duckdb").exists()
