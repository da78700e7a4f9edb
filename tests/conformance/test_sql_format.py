"""``hciwatch sql --format csv|json|table`` prints any result, nested columns included."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from hciwatch.cli import main
from hciwatch.config import default_config
from hciwatch.sql_format import write_csv, write_json_lines
from tests.conformance.test_corpus import record


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hciwatch.pipeline import replay_records

    d = tmp_path_factory.mktemp("sqlfmt")
    names = ["otelcol-haproxy-stats.csv", "windows_exporter-v0.15.0-net-doc.prom", "tcpip-get-winevent-en-doc.json"]
    replay_records([record(n) for n in names], default_config(d), d, workers=0)
    return d


def test_csv_of_select_star_json_encodes_labels(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "--data-dir", str(data_dir), "--format", "csv", "SELECT * FROM samples ORDER BY ts"]) == 0
    out = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(out) > 300
    assert set(out[0]) >= {"ts", "source", "host", "metric", "labels", "value"}
    nic = next(r for r in out if r["metric"] == "net.current_bandwidth_bytes")
    assert json.loads(nic["labels"]) == {"nic": "Mellanox_ConnectX_4_Lx_Ethernet_Adapter"} or json.loads(
        nic["labels"]
    ) == {"nic": "Mellanox_ConnectX_4_Lx_Ethernet_Adapter__2"}
    assert float(nic["value"]) == 3_125_000_000


def test_json_and_table_of_nested_columns(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = "SELECT metric, labels, map_keys(labels) AS k, {'a': 1, 'b': [1, 2]} AS s FROM samples LIMIT 5"
    assert main(["sql", "--data-dir", str(data_dir), "--format", "json", q]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 5
    assert isinstance(rows[0]["labels"], dict) and isinstance(rows[0]["k"], list)
    assert rows[0]["s"] == {"a": 1, "b": [1, 2]}
    assert main(["sql", "--data-dir", str(data_dir), "--format", "table", q]) == 0
    table = capsys.readouterr().out
    assert "labels" in table and "haproxy." in table  # rendered (a wide nested cell wraps over lines)


def test_every_arrow_shape_renders() -> None:
    ts = datetime(2024, 11, 19, 7, 0, tzinfo=UTC)
    table = pa.table(
        {
            "m": pa.array([[("k", "v")], None], pa.map_(pa.string(), pa.string())),
            "l": pa.array([[1, 2], []], pa.list_(pa.int64())),
            "s": pa.array(
                [{"x": ts, "y": None}, None], pa.struct([("x", pa.timestamp("ms", "UTC")), ("y", pa.float64())])
            ),
            "f": pa.array([math.nan, 1.5]),
            "b": pa.array([b"\x00\x01", None], pa.binary()),
        }
    )
    out = io.StringIO()
    write_csv(table, out)
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert lines[0] == ["m", "l", "s", "f", "b"]
    assert json.loads(lines[1][0]) == {"k": "v"} and json.loads(lines[1][1]) == [1, 2]
    assert json.loads(lines[1][2]) == {"x": "2024-11-19T07:00:00.000Z", "y": None}
    assert lines[1][3] == "nan" and lines[1][4] == "AAE="
    assert lines[2] == ["", "[]", "", "1.5", ""]
    js = io.StringIO()
    write_json_lines(table, js)
    first = json.loads(js.getvalue().splitlines()[0])
    assert first["m"] == {"k": "v"} and first["s"]["x"] == "2024-11-19T07:00:00.000Z"
