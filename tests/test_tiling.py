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


def test_grid_is_computed_once_read_only_and_survives_pickling():
    import pickle

    tiling = Tiling.create((100, 70), 32, 8)
    first = tiling.origins
    assert tiling.origins is first  # cached: the pipeline asks for a patch's slices several times per patch
    yy, xx = np.meshgrid(axis_starts(100, 32, 8), axis_starts(70, 32, 8), indexing="ij")
    np.testing.assert_array_equal(first, np.stack([yy.ravel(), xx.ravel()], axis=1))
    for grid in (first, tiling.starts_y, tiling.starts_x):
        with pytest.raises(ValueError, match="read-only"):
            grid[0] = 1  # a shared cache must not be changed through one caller
    y0, x0 = (int(v) for v in first[4])
    assert tiling.patch_slices(4) == (slice(y0, y0 + 32), slice(x0, x0 + 32)) and (y0, x0) != (0, 0)
    # equality and hashing see the fields only, cached or not; a pickled tiling (sent to workers) is the same
    fresh = Tiling.create((100, 70), 32, 8)
    assert fresh == tiling and hash(fresh) == hash(tiling)
    copy = pickle.loads(pickle.dumps(tiling))
    assert copy == tiling
    np.testing.assert_array_equal(copy.origins, first)
