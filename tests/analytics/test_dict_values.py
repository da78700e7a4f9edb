""":class:`analytics.dict_values.RememberedColumn` compares dictionary columns by value exactly
as decoding both to strings did (what :meth:`SeriesKeys._layout_hit` asked before).

Input: dictionary columns shaped like a fed chunk's identity columns (a few hosts or sources over
a few hundred rows), re-encoded under shuffled dictionaries with unused, missing and repeated
entries, rows changed one at a time, nulls, several chunks and large dictionaries (which take
the decoding path)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pytest

from analytics import dict_values
from analytics.dict_values import RememberedColumn


def _encode(values: Sequence[str | None], dictionary: Sequence[str | None], chunks: int = 1) -> pa.ChunkedArray[Any]:
    """``values`` as a string-dictionary column over exactly ``dictionary`` (order, extra and
    repeated entries kept), in ``chunks`` chunks."""
    pos: dict[str | None, int] = {}
    for i, v in enumerate(dictionary):
        pos.setdefault(v, i)
    codes = [None if v is None else pos[v] for v in values]
    d = pa.array(dictionary, pa.string())
    cuts = np.linspace(0, len(values), chunks + 1).astype(int).tolist()
    parts = [pa.DictionaryArray.from_arrays(pa.array(codes[a:b], pa.int32()), d) for a, b in pairwise(cuts)]
    out: Any = pa.chunked_array(parts)
    return cast("pa.ChunkedArray[Any]", out)


def _want(mine: pa.ChunkedArray[Any], col: pa.ChunkedArray[Any]) -> bool:
    return bool(mine.cast(pa.string()).equals(col.cast(pa.string())))


def _cases(seed: int) -> list[tuple[pa.ChunkedArray[Any], pa.ChunkedArray[Any]]]:
    rng = np.random.default_rng(seed)
    names = [f"hci-node-{i:02d}" for i in range(8)]
    rows = [names[i] for i in rng.integers(0, 6, 300)]
    base = _encode(rows, names[:6])
    out = [(base, base)]
    for _ in range(6):
        shuffled = list(rng.permutation(names[:6]))
        out.append((_encode(rows, shuffled), base))  # same rows, dictionary in another order
        out.append((_encode(rows, [*shuffled, "unused"]), base))  # an entry no row uses
        out.append((_encode(rows, [*shuffled, shuffled[0]]), base))  # a repeated entry
        changed = list(rows)
        changed[int(rng.integers(0, len(rows)))] = names[7]  # a value the remembered side lacks
        out.append((_encode(changed, [*shuffled, names[7]]), base))
        swapped = list(rows)
        i = int(rng.integers(0, len(rows)))
        swapped[i] = next(n for n in names[:6] if n != rows[i])  # a value it has, elsewhere
        out.append((_encode(swapped, shuffled), base))
        out.append((_encode(rows[:-1], shuffled), base))  # a row fewer
        out.append((_encode(rows, shuffled, chunks=3), base))  # several chunks: decoded
        with_null: list[str | None] = list(rows)
        with_null[5] = None
        out.append((_encode(with_null, shuffled), base))  # a null row: decoded
        out.append((base, _encode(with_null, shuffled)))  # on the remembered side too
        out.append((_encode(rows, [*shuffled, None]), base))  # a null entry: decoded
    many = [f"metric_{i}" for i in range(200)]
    metric_rows = [many[i] for i in rng.integers(0, 200, 300)]
    m = _encode(metric_rows, many)
    out.append((_encode(metric_rows, list(rng.permutation(many))), m))  # large dictionary: decoded
    out.append((_encode(metric_rows[::-1], list(rng.permutation(many))), m))
    # the remembered side with a repeated entry (canonical codes: the first one)
    out.append((base, _encode(rows, [*names[:6], names[2]])))
    rep = _encode(rows, [names[2], *names[:6]])
    out.append((rep, base))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_is_decoded_equality(seed: int) -> None:
    for mine, col in _cases(seed):
        assert RememberedColumn(col).equals(mine) == _want(mine, col)


def test_the_code_path_is_taken_for_small_dictionaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small dictionaries are compared by codes, without decoding any row."""
    names = [f"src-{i}" for i in range(4)]
    rows = [names[i % 4] for i in range(100)]
    col = _encode(rows, names)
    remembered = RememberedColumn(col)
    assert remembered.nbytes == 0, "nothing is derived before it is needed"

    def no_strings(self: RememberedColumn) -> pa.ChunkedArray[Any]:
        raise AssertionError("decoded")

    monkeypatch.setattr(RememberedColumn, "strings", no_strings)
    assert remembered.equals(_encode(rows, names[::-1]))
    assert not remembered.equals(_encode(rows[1:] + rows[:1], names[::-1]))
    assert remembered.nbytes == remembered.canonical()[1].nbytes + 64 * len(names)


def test_decoded_strings_are_made_once_and_counted() -> None:
    many = [f"m{i}" for i in range(50)]
    col = _encode(many * 2, many)
    remembered = RememberedColumn(col)
    assert remembered.equals(_encode(many * 2, many[::-1]))  # 50 entries for 100 rows: decoded
    first = remembered.strings()
    assert remembered.nbytes == first.nbytes, "no canonical codes for a column compared decoded"
    assert remembered.equals(_encode(many * 2, many[::-1])) and remembered.strings() is first
    assert len(many) > dict_values.MAX_ENTRIES_PER_ROW * 100


def test_canonical_codes_need_a_plain_column() -> None:
    with pytest.raises(ValueError, match="not plain"):
        RememberedColumn(_encode(["a", "b"], ["a", "b"], chunks=2)).canonical()
