"""``in_sets`` (several value sets, one decode of the column) gives each set's ``in_set`` mask."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.rates import in_set, in_sets

NAMES = ["pfc.rx", "k8s.metallb_pool_range_info", "net.bytes", "smb.lat"]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.one_of(st.none(), st.sampled_from(NAMES)), max_size=40),
    sets=st.lists(st.sets(st.sampled_from([*NAMES, "other"])), min_size=1, max_size=3),
    encoded=st.booleans(),
    chunks=st.integers(1, 3),
)
def test_in_sets_is_in_set_per_value_set(
    rows: list[str | None], sets: list[set[str]], encoded: bool, chunks: int
) -> None:
    plain = pa.array(rows, pa.string())
    arr: pa.Array[Any] = plain.dictionary_encode() if encoded else plain
    cut = len(rows) // chunks
    col = pa.chunked_array([arr[i * cut : (i + 1) * cut if i < chunks - 1 else len(rows)] for i in range(chunks)])
    got = in_sets(col, sets)
    for values, mask in zip(sets, got, strict=True):
        want = np.array([r is not None and r in values for r in rows], bool)
        assert mask.dtype == np.bool_ and np.array_equal(mask, want)
        assert np.array_equal(in_set(col, values), want)
