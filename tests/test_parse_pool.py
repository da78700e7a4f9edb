"""Parsing in worker processes gives exactly what inline parsing gives, in the same order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

import lab
from collector.catalog import Catalog, UserMapping
from collector.errors import CaptureError
from collector.schema import RawRecord
from hciwatch.parse_pool import OffloadParser, ParsePool, parse_one

MAPPINGS = [UserMapping("windows_custom_thing_total", "custom.thing_total", "1", True)]


def _records() -> list[tuple[RawRecord | None, str | CaptureError]]:
    scen = lab.Scenario(duration=timedelta(minutes=4), interval=timedelta(seconds=60))
    recs: list[tuple[RawRecord | None, str | CaptureError]] = [
        (r, f"cap:{i}") for i, r in enumerate(lab.generate(scen))
    ]
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    # a rejected payload, an unknown kind and a capture line without a record, mid-stream
    recs.insert(5, (RawRecord(ts, "prometheus", "bad", b"garbage{{{ \x00"), "cap:bad"))
    recs.insert(9, (RawRecord(ts, "snmp", "x", b""), "cap:snmp"))
    recs.insert(13, (None, CaptureError("truncated JSON", file="cap", line=13)))
    recs.append((RawRecord(ts, "prometheus", "custom", b"windows_custom_thing_total 3\n"), "cap:custom"))
    return recs


def _plain(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary columns decoded (the values, whatever the dictionary)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(
                i, pa.field(f.name, f.type.value_type, f.nullable), table.column(i).cast(f.type.value_type)
            )
    return table


def test_workers_give_the_inline_outcome_in_input_order() -> None:
    items = _records()
    catalog = Catalog(MAPPINGS)
    with ParsePool(MAPPINGS, workers=2, chunk=7, ahead=2, start_after=3) as pool:
        got = list(pool.parse(items))
    assert [(r, p) for r, p, _ in got] == items
    for rec, _, outcome in got:
        if rec is None:
            assert outcome is None
            continue
        want = parse_one(rec, catalog)
        assert outcome is not None
        assert outcome.rejected == want.rejected and outcome.errors == want.errors
        # the same rows; a worker's dictionary columns index one dictionary for its whole chunk
        assert _plain(outcome.samples).equals(_plain(want.samples))
        assert _plain(outcome.ip_observations).equals(_plain(want.ip_observations))
    rejected = {o.rejected[0] for _, _, o in got if o is not None and o.rejected}
    assert rejected == {"parse error", "unknown kind"}
    custom = got[-1][2]
    assert custom is not None and custom.samples.column("metric").to_pylist() == ["custom.thing_total"]


def test_no_workers_parses_inline() -> None:
    items = _records()[:6]
    with ParsePool([], workers=0) as pool:
        got = list(pool.parse(items))
    assert pool._pool is None and len(got) == 6


def test_offload_parser_gives_the_inline_outcome_and_survives_its_worker() -> None:
    """Big payloads go to the worker process; what comes back equals an inline parse, and a
    killed worker costs an inline parse of that record, never the record."""
    catalog = Catalog(MAPPINGS)
    recs = [r for r, _ in _records() if r is not None]
    parser = OffloadParser(MAPPINGS, min_bytes=1)  # every record goes to the worker
    try:
        for rec in recs:
            got, want = parser.parse(rec, catalog), parse_one(rec, catalog)
            assert got.rejected == want.rejected and got.errors == want.errors
            assert got.samples.equals(want.samples) and got.ip_observations.equals(want.ip_observations)
        assert parser.offloaded == sum(1 for r in recs if r.body)  # an empty body stays inline
        pool = parser._pool
        assert pool is not None
        for proc in list(pool._processes.values()):  # the worker dies (OOM killer, say)
            proc.kill()
            proc.join(5)
        got = parser.parse(recs[0], catalog)
        assert got.samples.equals(parse_one(recs[0], catalog).samples)
        assert parser.worker_failures <= 1  # the dead pool is noticed at once or on the next submit
        assert parser.parse(recs[1], catalog).samples.num_rows == parse_one(recs[1], catalog).samples.num_rows
    finally:
        parser.close()
    with pytest.raises(RuntimeError, match="stopping"):  # an abandoned batch must not parse on
        parser.parse(recs[0], catalog)


def test_small_payloads_parse_inline_without_a_worker() -> None:
    parser = OffloadParser(MAPPINGS)
    rec = RawRecord(datetime(2026, 1, 1, tzinfo=UTC), "prometheus", "custom", b"windows_custom_thing_total 3\n")
    assert parser.parse(rec, Catalog(MAPPINGS)).samples.num_rows == 1
    assert parser._pool is None and parser.offloaded == 0
    parser.close()
