"""``hciwatch replay`` end to end: determinism, precise reports of bad records, queryable output."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

import lab
from collector.capture import write_capture
from hciwatch.cli import main
from hciwatch.demo import demo_config_text


@pytest.fixture(scope="module")
def short_capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """90 minutes of the lab site with the duplicate LoadBalancer IP in the middle."""
    d = tmp_path_factory.mktemp("capture")
    scen = lab.Scenario(
        duration=timedelta(minutes=90),
        interval=timedelta(seconds=60),
        incidents=(lab.DuplicateLbIp(start=timedelta(minutes=30), end=timedelta(minutes=60)),),
    )
    cap = d / "capture.jsonl.zst"
    lab.write_capture(scen, cap)
    cfg = d / "config.toml"
    cfg.write_text(demo_config_text(scen).replace('data_dir = "."', 'data_dir = "data"'))
    return cap, cfg


def test_same_capture_gives_byte_identical_alert_jsonl(
    short_capture: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cap, cfg = short_capture
    outs = []
    for i in range(2):
        out = tmp_path / f"alerts-{i}.jsonl"
        rc = main(
            [
                "replay",
                str(cap),
                "--config",
                str(cfg),
                "--data-dir",
                str(tmp_path / f"d{i}"),
                "--alerts-jsonl",
                str(out),
                "--quiet",
                "--format",
                "json",
            ]
        )
        assert rc == 0
        outs.append(out.read_bytes())
    summary = json.loads(capsys.readouterr().out.split("\n}\n")[0] + "\n}")
    assert summary["records_rejected"] == 0 and summary["samples_stored"] > 10_000
    assert outs[0] == outs[1]
    assert outs[0], "the duplicate LoadBalancer IP raised no alert"
    kinds = {json.loads(line)["kind"] for line in outs[0].decode().splitlines()}
    assert "duplicate_ip" in kinds
    # the data dir is queryable by any DuckDB client through catalog.duckdb
    con = duckdb.connect(str(tmp_path / "d0" / "catalog.duckdb"), read_only=True)
    con.execute(f"SET file_search_path = '{tmp_path / 'd0'}'")  # relative globs: what `cd d0` gives a shell user
    n = con.execute("SELECT count(*) FROM alerts WHERE kind = 'duplicate_ip'").fetchone()
    assert n is not None and n[0] >= 1
    assert con.execute("SELECT count(DISTINCT host) FROM samples WHERE source = 'windows'").fetchone() == (4,)


def test_bad_records_are_reported_counted_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scen = lab.Scenario(duration=timedelta(minutes=5), interval=timedelta(seconds=60))
    recs = list(lab.generate(scen))
    good = tmp_path / "good.jsonl"
    write_capture(good, recs)
    lines = good.read_text().splitlines()
    bad = [
        lines[0],
        lines[1][: len(lines[1]) // 2],  # truncated JSON
        lines[2].replace('"kind":"prometheus"', '"kind":"snmp"'),  # unknown kind
        lines[3].replace('"ts":"2026', '"ts":"20x6'),  # bad timestamp
        *lines[4:],
        lines[5],  # out of order (earlier than the last)
        lines[-1].replace('"body":"', '"body":"garbage{{{ not prometheus \\u0000'),  # rejected payload
    ]
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join(bad) + "\n")
    rc = main(["replay", str(p), "--data-dir", str(tmp_path / "d"), "--quiet", "--format", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records_rejected"] >= 4
    msgs = "\n".join(out["rejected"])
    assert f"{p}:2" in msgs and "truncated JSON" in msgs
    assert f"{p}:3" in msgs and "unknown kind 'snmp'" in msgs
    assert f"{p}:4" in msgs and "bad ts" in msgs
    assert "out of order" in msgs
    assert out["samples_stored"] > 0


def test_sql_and_check_config_commands(
    short_capture: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cap, cfg = short_capture
    # check-config checks what `run` needs too: the API token policy
    (tmp_path / "run.toml").write_text(cfg.read_text() + "\n[api]\nallow_unauthenticated = true\n")
    assert main(["check-config", str(tmp_path / "run.toml")]) == 0
    assert main(["replay", str(cap), "--config", str(cfg), "--data-dir", str(tmp_path), "--quiet"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "sql",
                "--data-dir",
                str(tmp_path),
                "--format",
                "json",
                "SELECT count(*) AS n FROM samples WHERE metric = 'pfc.rx_pause_frames_total'",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert row["n"] > 0
    assert main(["sql", "--data-dir", str(tmp_path), "COPY samples TO '/tmp/x.csv'"]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[[networks]]\nname = "n"\nvip_pool_start = "10.0.0.1"\nvip_pool_end = "nope"\n')
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml:4: networks[0].vip_pool_end: not an IP address: 'nope'" in err.replace("\n", "")
