"""Replay stores exactly the rows the records parse to, however it batches them.

Replay hands the rows of consecutive records to the store as one table per detector pass (slices
of the chunks its parse workers return), not record by record. The stored samples and IP
observations must be the very rows a record-by-record store of the same capture holds: same
count, same checksum over every column of every row. ``--no-eval`` (a store-only backfill) must
store the same rows too, and raise no alert.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

import lab
from collector.capture import read_capture
from collector.catalog import Catalog
from collector.store import Store
from hciwatch.cli import main
from hciwatch.parse_pool import RowRuns, parse_one

TABLES = ("samples", "ip_observations")


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 minutes of the lab site (~1,000 records: past the pool's inline start, so workers parse
    most of it) with the duplicate LoadBalancer IP, so the detectors have something to say."""
    scen = lab.Scenario(
        duration=timedelta(minutes=100),
        interval=timedelta(seconds=60),
        incidents=(lab.DuplicateLbIp(start=timedelta(minutes=30), end=timedelta(minutes=60)),),
    )
    cap = tmp_path_factory.mktemp("rows") / "capture.jsonl.zst"
    lab.write_capture(scen, cap)
    return cap


def _digest(data_dir: Path) -> dict[str, tuple[int, int]]:
    """Per table: row count and an order-free checksum of every stored row (all columns)."""
    con = duckdb.connect()
    out = {}
    for t in TABLES:
        glob = str(data_dir / t / "**" / "*.parquet")
        # hive_partitioning off: the reference store has no site= level, replay's has
        row = con.execute(
            "SELECT count(*), coalesce(sum(hash(r::VARCHAR)::HUGEINT), 0) "
            f"FROM read_parquet('{glob}', hive_partitioning = false) r"
        ).fetchone()
        assert row is not None
        out[t] = (int(row[0]), int(row[1]))
    con.close()
    return out


def _record_by_record(capture: Path, data_dir: Path) -> dict[str, tuple[int, int]]:
    """The reference: each record parsed inline and its tables appended to a store one by one."""
    catalog = Catalog(())
    store = Store(data_dir)
    for item in read_capture(capture):
        assert item.record is not None
        outcome = parse_one(item.record, catalog)
        assert outcome.rejected is None
        for t in TABLES:
            table = getattr(outcome, t)
            if table.num_rows:
                store.append(t, table)
    store.close()
    return _digest(data_dir)


def _replay(capture: Path, data_dir: Path, *extra: str) -> dict[str, object]:
    rc = main(["replay", str(capture), "--data-dir", str(data_dir), "--quiet", "--format", "json", *extra])
    assert rc == 0
    return json.loads((data_dir / "ingest-summary.json").read_text())  # type: ignore[no-any-return]


def test_replay_stores_the_rows_a_record_by_record_store_holds(
    capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    want = _record_by_record(capture, tmp_path / "reference")
    assert want["samples"][0] > 100_000 and want["ip_observations"][0] > 1_000

    monkeypatch.setenv("HCIWATCH_PARSE_WORKERS", "2")
    full = _replay(capture, tmp_path / "replay")
    assert _digest(tmp_path / "replay") == want
    assert full["samples_stored"] == want["samples"][0]
    assert full["evaluations"] and full["alerts"], "the detectors ran and found the duplicate IP"

    backfill = _replay(capture, tmp_path / "no-eval", "--no-eval")
    assert _digest(tmp_path / "no-eval") == want
    assert backfill["evaluations"] == 0 and backfill["alerts"] == {}
    assert backfill["samples_stored"] == full["samples_stored"]
    capsys.readouterr()


def test_inline_and_worker_parsing_store_the_same_rows_and_alerts(
    capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = {}
    for workers in ("0", "2"):
        monkeypatch.setenv("HCIWATCH_PARSE_WORKERS", workers)
        out = tmp_path / f"alerts-{workers}.jsonl"
        summary = _replay(capture, tmp_path / f"w{workers}", "--alerts-jsonl", str(out))
        runs[workers] = (_digest(tmp_path / f"w{workers}"), summary["alerts"], out.read_bytes())
    capsys.readouterr()
    assert runs["0"] == runs["2"]
    assert runs["0"][2], "no alert: the comparison proves little"


def _t(values: list[int]) -> pa.Table:
    return pa.table({"v": pa.array(values, pa.int64())})


def test_row_runs_hand_on_consecutive_records_as_one_slice_in_order() -> None:
    a, b = _t(list(range(10))), _t(list(range(100, 105)))
    runs = RowRuns()
    runs.add(a.slice(0, 3), (a, 0))
    runs.add(a.slice(3, 4), (a, 3))  # continues the run: no new piece
    runs.add(_t([-1]))  # a record parsed inline (no chunk behind it)
    runs.add(a.slice(7, 3), (a, 7))  # same chunk, but not adjacent to the run any more
    runs.add(b.slice(0, 5), (b, 0))
    assert runs.rows == 16
    got = runs.take()
    assert got is not None
    assert got.column("v").to_pylist() == [*range(7), -1, 7, 8, 9, *range(100, 105)]
    assert got.column("v").num_chunks == 4
    assert runs.rows == 0 and runs.take() is None


def test_row_runs_by_origin_match_row_runs_by_table() -> None:
    """``add_rows`` (a pool's record, by its place in the chunk) gathers what ``add`` does."""
    a, b = _t(list(range(10))), _t(list(range(100, 105)))
    steps: list[tuple[pa.Table, tuple[pa.Table, int] | None]] = [
        (a.slice(0, 3), (a, 0)),
        (a.slice(3, 4), (a, 3)),
        (_t([-1]), None),
        (a.slice(7, 3), (a, 7)),
        (b.slice(0, 5), (b, 0)),
    ]
    by_table, by_origin = RowRuns(), RowRuns()
    for table, origin in steps:
        by_table.add(table, origin)
        if origin is None:
            by_origin.add(table)
        else:
            by_origin.add_rows(origin, table.num_rows)
    assert by_origin.rows == by_table.rows == 16
    want, got = by_table.take(), by_origin.take()
    assert want is not None and got is not None
    assert got.equals(want) and got.column("v").num_chunks == want.column("v").num_chunks == 4


def test_worker_parsed_samples_reach_the_engine_already_cut(
    capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The parse workers cut every record's samples by the engine's feed sets, so a replay's
    passes are fed split samples (the engine sorts no row itself) once the workers run; the
    findings are those of the inline replay (test above)."""
    from analytics.engine import Engine

    fed: list[bool] = []
    feed = Engine.feed

    def spy(self: Engine, name: str, table: pa.Table, split: object = None) -> None:
        if name == "samples":
            fed.append(split is not None and split[0] == self.feed_sets)  # type: ignore[index]
        feed(self, name, table, split)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "feed", spy)
    monkeypatch.setenv("HCIWATCH_PARSE_WORKERS", "2")
    _replay(capture, tmp_path / "replay")
    capsys.readouterr()
    assert len(fed) > 50 and all(fed)
