"""``nan_to_zero`` is ``np.nan_to_num`` (defaults) value for value, dtype for dtype."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analytics.baselines import nan_to_zero, poisson_floor


@settings(max_examples=300, deadline=None)
@given(
    x=hnp.arrays(
        st.sampled_from([np.float64, np.float32]),
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=6),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
    )
)
def test_nan_to_zero_is_nan_to_num(x: npt.NDArray[np.floating[Any]]) -> None:
    got, want = nan_to_zero(x), np.nan_to_num(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()  # bit for bit (signed zeros included)


def test_poisson_floor_of_a_scalar_and_nan() -> None:
    assert poisson_floor(np.array([np.nan, 4.0]), 60.0).tolist() == [
        float(np.sqrt((1 / 60) / 60)),
        float(np.sqrt(4.0 / 60)),
    ]
