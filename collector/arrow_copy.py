"""Arrow columns copied out of the buffers they arrived in, for caches that outlive a batch.

Why: a parsed record's table is a zero-copy slice of its worker chunk's shared-memory mapping
(:mod:`hciwatch.shm_handoff`), and a slice keeps the whole mapping alive. A memo that holds one
such column across passes pins a chunk of several MiB for a few kB of values (measured on the
8 h demo replay: the detectors' layout and mask memos kept ~10 chunks, ~75 MiB, mapped).
``pa.concat_arrays`` copies values but keeps a dictionary array's dictionary as it is, so the
dictionary is copied on its own.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def owned(col: pa.Array[Any] | pa.ChunkedArray[Any]) -> pa.Array[Any]:
    """``col`` as one array in buffers of its own (values equal, chunks combined).

    A top-level dictionary column's dictionary is copied too; a dictionary nested in a list,
    struct or map child is not (no column the memos hold has one).
    """
    chunks: list[Any] = list(col.chunks) if isinstance(col, pa.ChunkedArray) else [col]
    if not chunks:
        empty: pa.Array[Any] = pa.array([], col.type)
        return empty
    if pa.types.is_dictionary(col.type):
        if len(chunks) != 1:
            together: Any = pa.chunked_array(chunks)
            return owned(together.unify_dictionaries().combine_chunks())
        one: pa.DictionaryArray[Any, Any] = chunks[0]
        copied: pa.Array[Any] = pa.DictionaryArray.from_arrays(
            owned(one.indices), owned(one.dictionary), ordered=one.type.ordered
        )
        return copied
    copy: pa.Array[Any] = pa.concat_arrays(chunks)
    return copy
