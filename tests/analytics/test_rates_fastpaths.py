"""The engine plumbing's fast paths give what the careful Arrow path gives.

``SeriesRegistry.columns`` gathers decoded dictionary codes with numpy instead of ``take``;
``in_sets`` remembers per-entry masks by dictionary content; ``ts_ms`` views instead of casting.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from analytics.engine import ts_ms
from analytics.rates import SeriesKeys, SeriesRegistry, _dict, in_sets
from collector.schema import SAMPLES_SCHEMA, TS_TYPE


def _registry(meta: pa.Table) -> SeriesRegistry:
    reg = SeriesRegistry(["m"], {"pool": "NULL", "scope": "NULL"})
    reg.meta = meta
    return reg


@pytest.mark.parametrize("seed", range(5))
def test_columns_equal_take(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 50
    pool: list[Any] = [None if rng.random() < 0.4 else f"p{int(rng.integers(0, 5))}" for _ in range(n)]
    meta = pa.table(
        {
            "k": pa.array(np.arange(n, dtype=np.uint64)),
            "host": _dict(pa.array([f"h{int(rng.integers(0, 7))}" for _ in range(n)])),
            "metric": _dict(pa.array([f"m{int(rng.integers(0, 3))}" for _ in range(n)])),
            "pool": _dict(pa.array(pool, pa.string())),
            "scope": _dict(pa.array([None] * n, pa.string())),
        }
    )
    reg = _registry(meta)
    for _ in range(3):  # decoded once, gathered again
        sids = rng.integers(0, n, 80).astype(np.int64)
        got = reg.columns(sids, ["host", "metric", "pool", "scope"])
        for name, col in got.items():
            want = meta.column(name).take(sids)
            assert col.type == want.type
            assert col.to_pylist() == want.to_pylist()
            got_arr: Any = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            want_arr: Any = want.combine_chunks()
            assert got_arr.dictionary.equals(want_arr.dictionary)


def test_in_sets_memo_follows_dictionary_content() -> None:
    a = pa.array(["x", "y", "x", None, "z"]).dictionary_encode()
    b = pa.array(["y", "x", "y", "z", "w"]).dictionary_encode()  # other content, same length
    for _ in range(2):
        for arr, rows in ((a, ["x", "y", "x", None, "z"]), (b, ["y", "x", "y", "z", "w"])):
            for values in (frozenset({"x"}), ("y", "z"), ["w", "x"]):
                got = in_sets(arr, [values])[0]
                assert np.array_equal(got, np.array([r is not None and r in set(values) for r in rows]))


def test_ts_ms_view_equals_cast() -> None:
    t = pa.table({"ts": pa.array([0, 1_768_176_060_123, 5], TS_TYPE)})
    want = np.asarray(t.column("ts").cast(pa.int64()).to_numpy(), np.int64)
    assert np.array_equal(ts_ms(t), want) and ts_ms(t).dtype == np.int64
    one: Any = t.column("ts").chunk(0)
    two = pa.Table.from_batches([pa.record_batch([one], names=["ts"])] * 2)
    assert np.array_equal(ts_ms(two), np.concatenate([want, want]))


def _batch(rows: list[tuple[str, str, str, dict[str, str]]], order: list[str]) -> pa.Table:
    """Sample rows whose dictionaries list ``order`` first (as a batch after other records would)."""

    def col(values: list[str]) -> Any:
        words = list(dict.fromkeys([*order, *values]))
        return pa.DictionaryArray.from_arrays(pa.array([words.index(v) for v in values], pa.int32()), pa.array(words))

    return pa.Table.from_arrays(
        [
            pa.array([1_768_176_060_000] * len(rows), TS_TYPE),
            col([r[0] for r in rows]),
            col([r[1] for r in rows]),
            col([r[2] for r in rows]),
            pa.array([list(r[3].items()) for r in rows], pa.map_(pa.string(), pa.string())),
            pa.array([1.0] * len(rows)),
        ],
        schema=SAMPLES_SCHEMA,
    )


def test_layout_hits_across_dictionaries_and_row_counts() -> None:
    rows = [("wmi", f"h{i % 3}", "m.a" if i % 2 else "m.b", {"i": str(i)}) for i in range(12)]
    con = duckdb.connect(":memory:")
    reg = SeriesRegistry(["m.a", "m.b"])
    sk = SeriesKeys()
    a, b = _batch(rows, []), _batch(rows[:7], [])
    ka, kb = sk.chunk_keys([a], con, reg)[0], sk.chunk_keys([b], con, reg)[0]
    assert sk.layout_misses == 2 and np.array_equal(ka[:7], kb)  # same first row, two row counts
    shuffled = _batch(rows, ["zz", "m.b", "h2", "other"])  # same values, other dictionaries
    assert not shuffled.column("host").equals(a.column("host"))
    got = sk.chunk_keys([shuffled, _batch(rows[:7], ["h1"])], con, reg)
    assert sk.layout_misses == 2 and sk.layout_hits == 2
    assert np.array_equal(got[0], ka) and np.array_equal(got[1], kb)
    careful = SeriesKeys().keys(shuffled, con, reg)  # the careful path: series strings, no memo
    assert np.array_equal(got[0], careful)
    changed = _batch([*rows[:11], ("wmi", "h9", "m.a", {"i": "11"})], [])  # one value differs
    assert not np.array_equal(sk.chunk_keys([changed], con, reg)[0], ka) and sk.layout_misses == 3
    con.close()


def test_in_sets_memo_is_not_fooled_by_a_one_shot_value_set() -> None:
    """The memo key and the entry mask come from one reading of the values: a generator (read
    once) must not store an empty mask under the set it named."""
    col = pa.array(["x", "y", "x", None]).dictionary_encode()
    first = in_sets(col, [iter(["x"])])[0]  # type: ignore[list-item]  # what an untyped caller may pass
    again = in_sets(col, [["x"]])[0]
    assert first.tolist() == again.tolist() == [True, False, True, False]
