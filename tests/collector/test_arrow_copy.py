"""``owned`` copies a column out of the buffer it arrived in, dictionaries included."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from collector.arrow_copy import owned
from tests.fixtures.ipc_buffers import from_ipc, inside


def test_copies_plain_dictionary_and_map_columns() -> None:
    table = pa.table(
        {
            "host": pa.array(["h1", "h2", "h1", None]).dictionary_encode(),
            "labels": pa.array(
                [[("a", "1")], [], [("b", "2"), ("c", "3")], [("a", "1")]], pa.map_(pa.string(), pa.string())
            ),
            "value": pa.array([1.0, 2.0, None, 4.0]),
        }
    )
    read, buf = from_ipc(table)
    for name in table.column_names:
        col = read.column(name).slice(1, 3)
        assert inside(col.chunk(0), buf)  # the premise: a zero-copy slice
        got = owned(col)
        assert not inside(got, buf)
        assert got.to_pylist() == col.to_pylist() and got.type == col.type


def test_chunks_with_different_dictionaries_and_empty() -> None:
    col = pa.chunked_array([pa.array(["x", "y"]).dictionary_encode(), pa.array(["y", "z"]).dictionary_encode()])
    got = owned(col)
    assert got.to_pylist() == ["x", "y", "y", "z"] and pa.types.is_dictionary(got.type)
    empty = owned(pa.chunked_array([], pa.float64()))
    assert len(empty) == 0 and empty.type == pa.float64()
    make: Any = pa.chunked_array  # the stubs have no overload for an empty list with a type
    no_chunks = make([], pa.dictionary(pa.int32(), pa.string()))
    assert owned(no_chunks).to_pylist() == []
