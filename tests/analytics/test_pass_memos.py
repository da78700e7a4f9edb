"""Memos that skip per-pass work when a pass repeats the last one give what the work gives.

``StepAccumulator`` reuses the last call's sort order when the series ids repeat (one row per
series), ``SeriesRegistry.columns`` the last call's columns for the same ids, ``_DictCodes``
compares dictionary columns by mapped codes instead of decoded strings, and the duplicate-IP
detector reuses the last ``lbinfo`` column's rows.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from analytics.duplicate_ip import DuplicateIpDetector
from analytics.networks import NetworkIndex
from analytics.observations import HELD_SQL, NEIGHBOR_SQL, split_observations_careful
from analytics.rates import RawRows, SeriesRegistry, StepAccumulator, _dict, _DictCodes, query_table
from analytics.settings import AnalyticsSettings

N = 40


def _registry(rng: np.random.Generator) -> SeriesRegistry:
    reg = SeriesRegistry(["m"], {"pool": "NULL"})
    reg.meta = pa.table(
        {
            "k": pa.array(np.arange(N, dtype=np.uint64)),
            "host": _dict(pa.array([f"h{i % 5}" for i in range(N)])),
            "metric": _dict(pa.array([f"m{i % 3}_total" for i in range(N)])),
            "pool": _dict(pa.array([None if rng.random() < 0.3 else f"p{i % 4}" for i in range(N)], pa.string())),
        }
    )
    reg.index = {i: i for i in range(N)}
    return reg


def _pass(rng: np.random.Generator, sids: np.ndarray[Any, Any], end: int) -> RawRows:
    """One row per series in ``sids`` near ``end`` (ms): late, repeated, NaN and reset values too."""
    t = end - rng.integers(0, 60_000, sids.size)
    t[rng.random(sids.size) < 0.1] -= 400_000  # late (not newer than the last) or after a gap
    v = np.round(rng.random(sids.size) * 1000.0 + end / 1000.0, 1)
    v[rng.random(sids.size) < 0.05] = np.nan
    v[rng.random(sids.size) < 0.05] = 0.0  # a counter reset
    return RawRows(sids.astype(np.uint64), t.astype(np.int64), v, sids.astype(np.int64))


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Equal tables, NaN equal to NaN (Arrow's ``equals`` says NaN differs from itself)."""
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x, y = a.column(name), b.column(name)
        if pa.types.is_floating(x.type):
            if not np.array_equal(x.to_numpy(), y.to_numpy(), equal_nan=True):
                return False
        elif x.to_pylist() != y.to_pylist():
            return False
    return True


@pytest.mark.parametrize("seed", range(4))
def test_steps_with_repeated_series_equal_steps_without_memo(seed: int) -> None:
    rng = np.random.default_rng(seed)
    fast = StepAccumulator(60_000, 300_000, _registry(rng))
    careful = StepAccumulator(60_000, 300_000, _registry(np.random.default_rng(seed)))
    sids = rng.permutation(N)[:30]  # in no particular order
    end = 1_768_176_000_000
    hits = 0
    for i in range(30):
        end += 60_000
        if i % 7 == 6:
            sids = rng.permutation(N)[: int(rng.integers(20, N))]  # another set of series
        if i % 11 == 10:
            sids = np.concatenate([sids, sids[:3]])  # two rows of some series: no memo
        elif i % 11 == 0:
            sids = rng.permutation(np.unique(sids))
        raw = _pass(rng, sids, end)  # rows in the order of ``sids`` (not sorted)
        memo = fast._order_memo
        hits += memo is not None and raw.sid is not None and np.array_equal(memo[0], raw.sid)
        careful._order_memo = None  # always the general path
        got = fast.process(None, raw, 0, 0)
        want = careful.process(None, raw, 0, 0)
        assert _same(got, want), f"pass {i}"
        assert np.array_equal(fast.last_t, careful.last_t)
        assert np.array_equal(fast.last_v, careful.last_v, equal_nan=True)
    assert hits > 5


def test_columns_memo_follows_ids_and_meta() -> None:
    reg = _registry(np.random.default_rng(1))
    names = ["host", "metric", "pool"]
    sids = np.array([3, 1, 4, 1, 5], np.int64)
    first = reg.columns(sids, names)
    again = reg.columns(sids.copy(), names)  # equal ids, another array
    assert all(again[n] is first[n] for n in names)
    other = reg.columns(np.array([3, 1, 4, 1, 6], np.int64), names)
    assert other["host"].to_pylist() == reg.meta.column("host").take([3, 1, 4, 1, 6]).to_pylist()  # type: ignore[union-attr]
    assert meta_changed(reg, sids, names)


def meta_changed(reg: SeriesRegistry, sids: np.ndarray[Any, Any], names: list[str]) -> bool:
    before = reg.columns(sids, names)
    meta = reg.meta
    assert meta is not None
    reg.meta = meta.set_column(1, "host", _dict(pa.array([f"x{i}" for i in range(N)])))
    reg._decoded = {}
    after = reg.columns(sids, names)
    return bool(after["host"].to_pylist() == [f"x{i}" for i in sids] and before["host"] is not after["host"])


def _col(values: list[str | None], order: list[str]) -> pa.ChunkedArray[Any]:
    words = list(dict.fromkeys([*order, *(v for v in values if v is not None)]))
    idx = pa.array([None if v is None else words.index(v) for v in values], pa.int32())
    return pa.chunked_array([pa.DictionaryArray.from_arrays(idx, pa.array(words))])


@pytest.mark.parametrize("seed", range(6))
def test_dict_codes_equal_decoded_comparison(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = ["a", "b", "c", "d", None]
    base = [pool[int(i)] for i in rng.integers(0, 5, 50)]
    memo = _DictCodes(_col(base, []))
    for _ in range(20):
        vals = list(base)
        if rng.random() < 0.5:
            j = int(rng.integers(0, len(vals)))
            vals[j] = pool[int(rng.integers(0, 5))]
        order = [str(x) for x in rng.permutation(["d", "c", "zz", "b", "a"])[: int(rng.integers(0, 5))]]
        other = _col(vals, order)
        want = other.cast(pa.string()).equals(_col(base, []).cast(pa.string()))
        assert memo.same_values(other) == want
    assert not memo.same_values(_col(base[:-1], []))  # another length


def test_dict_codes_with_a_value_twice_never_match_wrongly() -> None:
    twice = pa.chunked_array(
        [pa.DictionaryArray.from_arrays(pa.array([0, 1, 2], pa.int32()), pa.array(["a", "b", "a"]))]
    )
    memo = _DictCodes(twice)
    assert not memo.same_values(_col(["a", "b", "b"], []))
    # remembered with a value twice: equal rows may miss (keyed afresh), never a wrong match
    assert not memo.same_values(_col(["a", "b", "a"], []))


def _dict_col(codes: list[int | None], dictionary: list[str | None]) -> pa.ChunkedArray[Any]:
    return pa.chunked_array(
        [pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(dictionary, pa.string()))]
    )


def test_dict_codes_match_another_dictionary_holding_a_value_twice() -> None:
    memo = _DictCodes(_col(["a", "b", "a", None], []))
    assert memo.same_values(_dict_col([0, 1, 2, None], ["a", "b", "a"]))  # equal rows: a match
    assert not memo.same_values(_dict_col([0, 1, 1, None], ["a", "b", "a"]))
    assert not memo.same_values(_dict_col([0, 1, 2, 0], ["a", "b", "a"]))  # a value for a null row


def test_dict_codes_with_a_null_entry_never_match_unequal_rows() -> None:
    memo = _DictCodes(_col(["a", None, "b"], []))
    cases: list[list[int | None]] = [[0, 1, 2], [0, None, 2], [0, 1, 1], [2, 1, 0]]
    for codes in cases:
        other = _dict_col(codes, ["a", None, "b"])
        if memo.same_values(other):  # a match only where the rows decode to the same values
            assert other.cast(pa.string()).equals(_col(["a", None, "b"], []).cast(pa.string()))


def test_dict_codes_count_the_dictionary_they_last_mapped() -> None:
    memo = _DictCodes(_col(["a", "b"], []))
    alone = memo.nbytes
    assert memo.same_values(_col(["a", "b"], ["b", "a", "c", "d"]))
    assert memo.nbytes > alone  # the other dictionary and its map are held until the next one


def _lb_table(texts: list[str | None], bucket: int) -> pa.Table:
    return pa.table(
        {"bucket": pa.array([bucket] * len(texts), pa.int64()), "lbinfo": _dict(pa.array(texts, pa.string()))}
    )


def test_lbinfo_rows_memo_follows_the_column() -> None:
    settings = AnalyticsSettings.model_validate({})
    det = DuplicateIpDetector(settings, NetworkIndex([]))
    svc = {"ip": "10.0.0.1", "cluster": "c", "namespace": "n", "service": "s", "ports": "80"}
    a = [None, json.dumps(svc), None, json.dumps({**svc, "ip": "10.0.0.2"})]
    det.process_samples(_lb_table(a, 60_000), 60_000)
    det.process_samples(_lb_table(a, 120_000), 120_000)  # same column: the memo's rows
    assert det.ports == {"10.0.0.1": {("c", "n/s"): ("80", 120_000)}, "10.0.0.2": {("c", "n/s"): ("80", 120_000)}}
    b = [json.dumps({**svc, "ports": "443"}), None, None, None]
    det.process_samples(_lb_table(b, 180_000), 180_000)
    assert det.ports["10.0.0.1"] == {("c", "n/s"): ("443", 180_000)}
    assert det.ports["10.0.0.2"] == {("c", "n/s"): ("80", 120_000)}


def test_ports_past_the_retention_go_whatever_the_floor() -> None:
    """An IP goes once its last sighting is past the retention, also one re-seen by a late row
    (older than every other sighting: the floor that lets a pass skip the scan moves down)."""
    settings = AnalyticsSettings.model_validate({})
    det = DuplicateIpDetector(settings, NetworkIndex([]))
    keep = det.retention
    svc = {"ip": "10.0.0.1", "cluster": "c", "namespace": "n", "service": "s", "ports": "80"}
    one, two = json.dumps(svc), json.dumps({**svc, "ip": "10.0.0.2"})
    det.process_samples(_lb_table([one], 60_000), 60_000)
    det.process_samples(_lb_table([two], 120_000), 120_000)
    det.process_samples(_lb_table([None], 60_000 + keep), 60_000 + keep)  # 10.0.0.1: at the cut, kept
    assert set(det.ports) == {"10.0.0.1", "10.0.0.2"}
    det.process_samples(_lb_table([None], 60_001 + keep), 60_001 + keep)
    assert set(det.ports) == {"10.0.0.2"}
    det.process_samples(_lb_table([one], 100_000), 99_999 + keep)  # a late row of 10.0.0.1
    assert set(det.ports) == {"10.0.0.1", "10.0.0.2"}
    det.process_samples(_lb_table([None], 100_001 + keep), 100_001 + keep)
    assert set(det.ports) == {"10.0.0.2"}
    det.process_samples(_lb_table([None], 120_001 + keep), 120_001 + keep)
    assert not det.ports


def test_dict_codes_of_another_value_type_are_a_miss() -> None:
    memo = _DictCodes(_col(["a", "b", None], []))
    large: Any = _col(["a", "b", None], []).chunk(0)
    other = pa.chunked_array([pa.DictionaryArray.from_arrays(large.indices, large.dictionary.cast(pa.large_string()))])
    assert not memo.same_values(other)
    assert memo.same_values(_col(["a", "b", None], ["b"]))


def test_split_tables_give_the_rows_and_values_of_the_sql() -> None:
    """The fed split (per-column takes, dictionaries decoded by take) holds what HELD_SQL and
    NEIGHBOR_SQL give over the same rows in DuckDB, over a demo hour's records."""
    from tests.analytics.test_observations_fast import _demo_tables

    tables = _demo_tables()
    obs = pa.concat_tables(tables[: len(tables) // 2])
    t = np.asarray(obs.column("ts").cast(pa.int64()).to_numpy(), np.int64)
    lo, hi = int(t.min()) + 30_000, int(t.max()) - 30_000
    held, nb = split_observations_careful(obs, lo, hi)
    con = duckdb.connect(":memory:")
    con.register("ip_observations", obs)
    window = {"lo_us": lo * 1000, "hi_us": hi * 1000}
    for got, sql in ((held, HELD_SQL), (nb, NEIGHBOR_SQL)):
        want = query_table(con, sql, window)
        assert got.column_names == want.column_names and got.num_rows == want.num_rows > 0
        for name in got.column_names:
            assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    con.close()
