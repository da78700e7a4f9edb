"""Value equality of dictionary columns whose dictionaries differ, without decoding every row.

Why: :meth:`analytics.rates.SeriesKeys.chunk_keys` recognises a target's repeated layout by
comparing a fed chunk's identity columns with the remembered ones. Arrow's ``equals`` compares a
dictionary column's codes and dictionary, so the same rows under a dictionary built in another
order (another mix of records in the parse block) compare unequal; they were then decoded to
strings row by row (``cast``) and compared again — at every pass, for the ``source`` and ``host``
columns, whose dictionaries hold a handful of entries for a few hundred rows. Mapping the few
dictionary entries instead (to the remembered column's canonical codes) and comparing the codes
with numpy gives the same answer: two rows are equal exactly when their values are, and each
value has one canonical code.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa

# entries mapped per row compared: above this, decoding every row (one kernel call) is cheaper
# than building the mapping from Python strings
MAX_ENTRIES_PER_ROW = 0.25


def _plain(col: pa.ChunkedArray[Any]) -> pa.DictionaryArray[Any, Any] | None:
    """The one chunk of a string-dictionary column without nulls (in its rows or its
    dictionary), or None when the column is anything else."""
    if col.num_chunks != 1 or col.null_count or not pa.types.is_dictionary(col.type):
        return None
    arr = cast("pa.DictionaryArray[Any, Any]", col.chunk(0))
    if not pa.types.is_string(arr.dictionary.type) or arr.dictionary.null_count:
        return None
    return arr


class RememberedColumn:
    """A remembered dictionary column, compared by value with other dictionary columns.

    ``equals(mine)`` is ``mine.cast(pa.string()).equals(col.cast(pa.string()))``: through
    canonical codes when both sides are plain (one chunk, no nulls, string dictionary) and
    ``mine``'s dictionary is small beside its rows, else through the decoded strings (made once,
    on first need)."""

    def __init__(self, col: pa.ChunkedArray[Any]) -> None:
        self.col = col
        self._plain = _plain(col) is not None
        self._strings: pa.ChunkedArray[Any] | None = None
        # value → canonical code (its first entry) and each row's canonical code, made on first
        # need like the strings: a column compared one way only holds what that way needs
        self._canon: tuple[dict[str, int], npt.NDArray[np.int32]] | None = None

    @property
    def nbytes(self) -> int:
        """What this holds besides the column itself (the layouts' memory bound counts it)."""
        own = 0 if self._canon is None else self._canon[1].nbytes + 64 * len(self._canon[0])
        return own + (0 if self._strings is None else self._strings.nbytes)

    def strings(self) -> pa.ChunkedArray[Any]:
        if self._strings is None:
            self._strings = self.col.cast(pa.string())
        return self._strings

    def canonical(self) -> tuple[dict[str, int], npt.NDArray[np.int32]]:
        """(value → canonical code, each row's canonical code) of a plain remembered column."""
        if self._canon is None:
            arr = _plain(self.col)
            if arr is None:
                raise ValueError("canonical codes of a column that is not plain")
            index: dict[str, int] = {}
            names = cast(list[str], arr.dictionary.to_pylist())  # no null entry (_plain)
            canon = np.fromiter((index.setdefault(v, i) for i, v in enumerate(names)), np.int32, len(names))
            self._canon = (index, canon[np.asarray(arr.indices.to_numpy(zero_copy_only=False), np.int64)])
        return self._canon

    def equals(self, mine: pa.ChunkedArray[Any]) -> bool:
        """Whether ``mine`` (a dictionary column) holds the same values, row by row."""
        if self._plain:
            arr = _plain(mine)
            if arr is not None and len(arr.dictionary) <= MAX_ENTRIES_PER_ROW * len(arr):
                if len(arr) != len(self.col):
                    return False
                index, codes = self.canonical()
                get = index.get
                names = cast(list[str], arr.dictionary.to_pylist())
                to_canon = np.fromiter((get(v, -1) for v in names), np.int32, len(names))
                got = to_canon[np.asarray(arr.indices.to_numpy(zero_copy_only=False), np.int64)]
                return bool(np.array_equal(got, codes))
        return bool(mine.cast(pa.string()).equals(self.strings()))
