"""The detectors' memos hold copies, never slices of a parsed chunk's buffer.

A parsed record's table is a zero-copy slice of its worker chunk's shared-memory mapping, and
a slice keeps the whole mapping (several MiB) alive; memos live across passes. Measured before
the copies: ~10 chunks, ~75 MiB pinned in an 8 h replay's main process.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pytest

from analytics import rates
from analytics.rates import SeriesKeys, SeriesRegistry, in_sets
from collector.schema import SAMPLES_SCHEMA, TS_TYPE
from tests.fixtures.ipc_buffers import from_ipc, inside


def _chunk() -> tuple[pa.Table, pa.Buffer]:
    rows = [("wmi", f"h{i % 3}", "m.a" if i % 2 else "m.b", {"i": str(i)}) for i in range(12)]
    table = pa.Table.from_arrays(
        [
            pa.array([1_768_176_060_000] * len(rows), TS_TYPE),
            pa.array([r[0] for r in rows]).dictionary_encode(),
            pa.array([r[1] for r in rows]).dictionary_encode(),
            pa.array([r[2] for r in rows]).dictionary_encode(),
            pa.array([list(r[3].items()) for r in rows], pa.map_(pa.string(), pa.string())),
            pa.array([1.0] * len(rows)),
        ],
        schema=SAMPLES_SCHEMA,
    )
    return from_ipc(table)


def test_layout_memo_holds_copies_and_still_hits() -> None:
    chunk, buf = _chunk()
    con = duckdb.connect(":memory:")
    reg = SeriesRegistry(["m.a", "m.b"])
    sk = SeriesKeys()
    first = sk.chunk_keys([chunk], con, reg)[0]
    assert sk.layout_misses == 1
    for cols, _keys in sk._layouts.values():
        assert not any(inside(c, buf) for c in cols)
    again, _ = _chunk()  # the same rows in another buffer: a hit on the copied columns
    assert (sk.chunk_keys([again], con, reg)[0] == first).all() and sk.layout_hits == 1
    con.close()


def test_mask_memo_holds_a_copy_of_the_dictionary(monkeypatch: pytest.MonkeyPatch) -> None:
    masks = rates._EntryMasks()  # a memo of its own: the shared one may hold this content already
    monkeypatch.setattr(rates, "_ENTRY_MASKS", masks)
    chunk, buf = _chunk()
    col = chunk.column("metric")
    assert inside(col, buf)
    got = in_sets(col, [frozenset({"m.a"})])[0]
    assert got.tolist() == [i % 2 == 1 for i in range(12)]
    (held, _memo), *_ = masks.seen
    first: Any = col.chunk(0)
    assert held.equals(first.dictionary) and not inside(held, buf)
