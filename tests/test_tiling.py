import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmdcompress.tiling import Tiling, axis_starts


def coverage(tiling):
    wy, wx = tiling.weights_1d()
    total = np.zeros(tiling.frame_shape)
    count = np.zeros(tiling.frame_shape, int)
    h, w = tiling.patch_shape
    for i, (y0, x0) in enumerate(tiling.origins):
        total[y0 : y0 + h, x0 : x0 + w] += wy[i][:, None] * wx[i][None, :]
        count[y0 : y0 + h, x0 : x0 + w] += 1
    return total, count


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(1, 150), st.integers(1, 150), st.integers(2, 48), st.integers(0, 16))
def test_weights_sum_to_one_everywhere(height, width, patch, overlap):
    overlap = min(overlap, patch - 1)
    tiling = Tiling.create((height, width), patch, overlap)
    total, count = coverage(tiling)
    assert count.min() >= 1
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert (tiling.origins >= 0).all()
    assert (tiling.origins + tiling.patch_shape <= np.array([height, width])).all()


def test_patch_larger_than_frame_gives_one_patch_of_the_frame():
    tiling = Tiling.create((10, 20), 32, 8)
    assert tiling.n_patches == 1 and tiling.patch_shape == (10, 20)


def test_neighbours_overlap_at_least_the_requested_amount():
    starts = axis_starts(256, 32, 8)
    assert starts[0] == 0 and starts[-1] == 256 - 32
    assert (np.diff(starts) <= 32 - 8).all()


def test_bad_overlap_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        Tiling.create((64, 64), 16, 16)
