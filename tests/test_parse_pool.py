"""Parsing in worker processes gives exactly what inline parsing gives, in the same order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import lab
from collector.catalog import Catalog, UserMapping
from collector.errors import CaptureError
from collector.schema import RawRecord
from hciwatch.parse_pool import ParsePool, parse_one

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
        assert outcome.samples.equals(want.samples) and outcome.ip_observations.equals(want.ip_observations)
    rejected = {o.rejected[0] for _, _, o in got if o is not None and o.rejected}
    assert rejected == {"parse error", "unknown kind"}
    custom = got[-1][2]
    assert custom is not None and custom.samples.column("metric").to_pylist() == ["custom.thing_total"]


def test_no_workers_parses_inline() -> None:
    items = _records()[:6]
    with ParsePool([], workers=0) as pool:
        got = list(pool.parse(items))
    assert pool._pool is None and len(got) == 6
