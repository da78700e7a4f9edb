"""``hciwatch import`` as a tool: time order, per-file problems, a summary, gaps skipped.

No timing assertions: "two files eight months apart import in seconds" is checked as what makes
it true, the number of detector passes, which must follow the rows and not the calendar.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hciwatch.cli import main
from hciwatch.config import default_config
from hciwatch.importer import ordered_records, run_import, survey

HEADER = (
    '"(PDH-CSV 4.0) (Coordinated Universal Time)(0)",'
    '"\\\\AZL-NODE1\\Network Interface(Mellanox ConnectX-6 Dx Adapter)\\Bytes Received/sec",'
    '"\\\\AZL-NODE1\\Network Interface(Mellanox ConnectX-6 Dx Adapter)\\Packets Received Discarded"'
)


def write_csv(path: Path, start: datetime, rows: int, *, bom: bool = False, bad_rows: int = 0) -> Path:
    lines = [HEADER]
    for i in range(rows):
        t = start + timedelta(minutes=i)
        lines.append(f'"{t:%m/%d/%Y %H:%M:%S}.000","{1000 + i}.5","{i}"')
    lines += ['"not a time","1","2"'] * bad_rows
    text = "\r\n".join(lines) + "\r\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "in"
    src.mkdir()
    return {
        # named so that name order is the wrong time order
        "a_late": write_csv(src / "a_late.csv", datetime(2025, 7, 1, 10, 0, tzinfo=UTC), 30, bom=True),
        "b_early": write_csv(src / "b_early.csv", datetime(2024, 11, 1, 10, 0, tzinfo=UTC), 30, bad_rows=2),
        "c_bad": _bad(src / "c_bad.csv"),
        "d_missing": src / "d_missing.csv",
    }


def _bad(path: Path) -> Path:
    path.write_text("Date,Value\n2024-11-01,3\n")
    return path


def test_survey_finds_header_first_time_and_rows(files: dict[str, Path]) -> None:
    rep = survey(files["a_late"])
    assert rep.problem is None and rep.data_lines == 30
    assert rep.first_ts == datetime(2025, 7, 1, 10, 0, tzinfo=UTC)
    bad = survey(files["c_bad"])
    assert bad.problem is not None and "line 1: not a PDH-CSV header" in bad.problem
    missing = survey(files["d_missing"])
    assert missing.problem is not None and "cannot read" in missing.problem


def test_records_come_in_time_order_whatever_the_argument_order(files: dict[str, Path]) -> None:
    reports = [survey(files[k]) for k in ("a_late", "c_bad", "b_early")]
    recs = list(ordered_records(reports, chunk_rows=7))
    assert [r.ts for r in recs] == sorted(r.ts for r in recs)
    assert recs[0].target == str(files["b_early"]) and recs[-1].target == str(files["a_late"])


def test_import_two_files_eight_months_apart_costs_passes_per_row_not_per_minute(
    files: dict[str, Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    cfg = default_config(data)
    paths = [files[k] for k in ("a_late", "c_bad", "b_early", "d_missing")]
    result = run_import(paths, cfg, data, workers=0)
    by_name = {f.path.name: f for f in result.files}
    assert by_name["a_late.csv"].samples == 60 and by_name["a_late.csv"].problem is None
    assert by_name["b_early.csv"].samples == 60 and by_name["b_early.csv"].lines_skipped == 2
    assert any("not MM/DD/YYYY" in m for m in by_name["b_early.csv"].messages)
    assert by_name["c_bad.csv"].problem is not None and by_name["c_bad.csv"].samples == 0
    assert by_name["d_missing.csv"].problem is not None
    assert result.exit_code == 1
    s = result.summary
    assert s["samples_stored"] == 120
    # ~8 months is ~350,000 minutes; the passes must follow the 60 rows (plus the idle tail after each file)
    assert s["evaluations"] < 400, s["evaluations"]
    assert s["from"].startswith("2024-11-01") and s["to"].startswith("2025-07-01")


def test_cli_import_prints_a_summary_with_reasons(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "cli-data"
    code = main(["import", str(files["c_bad"]), str(files["a_late"]), "--data-dir", str(data), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    assert "import summary" in out and "a_late.csv" in out and "c_bad.csv" in out
    assert "not a PDH-CSV header" in out
    code = main(["import", str(files["a_late"]), "--data-dir", str(tmp_path / "j"), "--format", "json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["files"][0]["samples"] == 60 and summary["files"][0]["problem"] is None
