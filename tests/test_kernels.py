"""numba kernels against their numpy twins (tests/reference.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from pmdcompress.reconstruct import dtype_limits, epilogue, epilogue_numpy
from pmdcompress.solver.roughness import spatial_roughness, temporal_roughness


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 4), st.integers(0, 10**6))
def test_spatial_roughness_matches_numpy(h, w, k, seed):
    u = np.random.default_rng(seed).standard_normal((h * w, k))
    np.testing.assert_allclose(spatial_roughness(u, (h, w)), reference.spatial_roughness(u, (h, w)), rtol=1e-12)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(1, 40), st.integers(1, 4), st.integers(0, 10**6))
def test_temporal_roughness_matches_numpy(t, k, seed):
    v = np.random.default_rng(seed).standard_normal((t, k))
    np.testing.assert_allclose(temporal_roughness(v), reference.temporal_roughness(v), rtol=1e-12)


def test_roughness_of_zero_component_is_inf_and_smooth_beats_noise():
    assert np.isinf(spatial_roughness(np.zeros((16, 1)), (4, 4)))[0]
    assert np.isinf(temporal_roughness(np.zeros((10, 1))))[0]
    yy, xx = np.mgrid[:16, :16]
    blob = np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 8.0).reshape(-1, 1)
    noise = np.random.default_rng(0).standard_normal((256, 1))
    assert spatial_roughness(blob, (16, 16))[0] < 0.5 * spatial_roughness(noise, (16, 16))[0]


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8, np.float32, np.float64])
def test_epilogue_matches_numpy(dtype):
    rng = np.random.default_rng(5)
    product = (rng.standard_normal((7, 12)) * 300).astype(np.float32)
    mean = rng.uniform(-50, 70000, 12).astype(np.float32)
    lo, hi, do_round = dtype_limits(dtype)
    out = np.zeros((7, 10, 9), dtype)
    ref = np.zeros((7, 10, 9), dtype)
    epilogue(product, mean, out[:, 2:5, 1:5], lo, hi, do_round)
    epilogue_numpy(product, mean, ref[:, 2:5, 1:5], lo, hi, do_round)
    np.testing.assert_array_equal(out, ref)
    assert (out[:, :2] == 0).all()  # nothing written outside the view
