"""numba kernels against their numpy twins (tests/reference.py), at float32 precision."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from pmdcompress import preprocess, tiling
from pmdcompress.reconstruct import dtype_limits, epilogue, epilogue_into
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
    reference.epilogue(product, mean, ref[:, 2:5, 1:5], lo, hi, do_round)
    np.testing.assert_array_equal(out, ref)
    assert (out[:, :2] == 0).all()  # nothing written outside the view


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("h, w", [(3, 4), (2, 8), (5, 16), (4, 13), (1, 19)])
def test_epilogue_into_a_whole_output_matches_numpy(dtype, h, w):
    rng = np.random.default_rng(6)
    product = (rng.standard_normal((7, h * w)) * 300).astype(np.float32)
    mean = rng.uniform(-50, 70000, h * w).astype(np.float32)
    lo, hi, do_round = dtype_limits(dtype)
    out = np.zeros((7, 10, 20), dtype)
    ref = np.zeros((7, 10, 20), dtype)
    epilogue_into(product, mean, out, 2, 1, h, w, lo, hi, do_round)
    reference.epilogue(product, mean, ref[:, 2 : 2 + h, 1 : 1 + w], lo, hi, do_round)
    np.testing.assert_array_equal(out, ref)  # and nothing written outside the rectangle


RTOL32 = 1e-5  # float32 precision: the kernels and the twins may round differently


def _block(rng, shape, dtype):
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 4000, shape).astype(dtype)
    return (rng.standard_normal(shape) * 100).astype(dtype)


@pytest.mark.parametrize("lo, hi, n_segments", [(0, 1, 1), (3, 9, 2), (5, 5, 3), (2, 17, 4)])
def test_segment_band_power_kernel_matches_numpy(lo, hi, n_segments):
    rng = np.random.default_rng(3)
    spec = (rng.standard_normal((17, n_segments)) + 1j * rng.standard_normal((17, n_segments))).astype(np.complex64)
    np.testing.assert_allclose(preprocess._segment_band_power_kernel(spec, lo, hi),
                               reference.segment_band_power(spec, lo, hi), rtol=RTOL32)


@pytest.mark.parametrize("n", [4, 7, 8, 100, 256, 257, 600, 1001])
def test_noise_std_vector_equals_noise_std_psd_to_the_last_bit(n):
    rng = np.random.default_rng(n)
    v = rng.standard_normal(n) * 3.0 + np.cumsum(rng.standard_normal(n)) * 0.2
    assert preprocess.noise_std_vector(v) == float(preprocess.noise_std_psd(v[:, None])[0])


@pytest.mark.parametrize("shape", [(3, 3), (5, 9), (32, 32)])
def test_laplacian_abs_sum_kernel_matches_scipy(shape):
    from pmdcompress.solver.pmd import _laplacian_abs_sum_kernel

    img = np.random.default_rng(4).standard_normal(shape) * 5.0
    np.testing.assert_allclose(_laplacian_abs_sum_kernel(img), reference.laplacian_abs_sum(img), rtol=RTOL32)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 33)])
def test_windowed_kernel_matches_numpy(dtype, shape):
    rng = np.random.default_rng(1)
    block = _block(rng, shape, dtype)
    window = preprocess.periodic_hann(shape[0])
    out = np.full(shape, np.nan, np.float32)
    preprocess._windowed_kernel(block, window, out)
    np.testing.assert_allclose(out, reference.windowed(block, window), rtol=RTOL32, atol=1e-30)


@pytest.mark.parametrize("lo, hi", [(0, 1), (3, 9), (5, 5), (2, 17)])
def test_band_power_kernel_matches_numpy(lo, hi):
    rng = np.random.default_rng(2)
    spec = (rng.standard_normal((17, 6)) + 1j * rng.standard_normal((17, 6))).astype(np.complex64)
    start = rng.uniform(0, 3, 6)
    power = start.copy()
    preprocess._band_power_kernel(spec, lo, hi, power)
    np.testing.assert_allclose(power, start + reference.band_power(spec, lo, hi), rtol=RTOL32)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("n, bin_size", [(12, 1), (12, 4), (13, 4), (3, 5), (20, 3)])
def test_chunk_statistics_kernel_matches_numpy(dtype, n, bin_size):
    rng = np.random.default_rng(n * 10 + bin_size)
    block = _block(rng, (n, 11), dtype)
    n_bins = n // bin_size
    rows = rng.permutation(n_bins + 2)[:n_bins].astype(np.int64)
    rows[::3] = -1  # some bins are not fit rows
    start = rng.uniform(-5, 5, 11)
    total = start.copy()
    fit = np.full((n_bins + 2, 11), np.nan, np.float32)
    first_even = n % 2  # the chunk's first frame of even index in the movie
    even = np.zeros(11)  # as the pipeline starts it for each chunk
    bad = preprocess.chunk_statistics(block, bin_size, rows, total, fit, even, first_even)
    want_total, want_fit, want_bad = reference.chunk_statistics(block, bin_size, rows, n_bins + 2)
    np.testing.assert_allclose(total, start + want_total, rtol=RTOL32)
    np.testing.assert_allclose(fit, want_fit, rtol=RTOL32)
    assert bad == want_bad == -1
    # the even frames' sums: numpy's, frame after frame, to the last bit (the pass they replace)
    np.testing.assert_array_equal(even, block[first_even::2].sum(axis=0, dtype=np.float64))
    # without them: the same sums and fit rows
    total2, fit2 = start.copy(), np.full_like(fit, np.nan)
    preprocess.chunk_statistics(block, bin_size, rows, total2, fit2)
    np.testing.assert_array_equal(total2, total)
    np.testing.assert_array_equal(fit2, fit)


@pytest.mark.parametrize("bad_frame, bad_value", [(0, np.nan), (6, np.inf), (9, -np.inf), (12, np.nan)])
def test_chunk_statistics_kernel_finds_the_first_non_finite_frame(bad_frame, bad_value):
    rng = np.random.default_rng(3)
    block = rng.standard_normal((13, 8)).astype(np.float32)
    block[bad_frame, 5] = bad_value
    block[min(bad_frame + 2, 12), 1] = np.nan  # a later bad frame does not hide the first
    rows = np.arange(3, dtype=np.int64)
    bad = preprocess.chunk_statistics(block, 4, rows, np.zeros(8), np.zeros((3, 8), np.float32))
    assert bad == reference.chunk_statistics(block, 4, rows, 3)[2] == bad_frame


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("y0, x0, h, w", [(0, 0, 9, 10), (2, 3, 4, 5), (8, 9, 1, 1), (0, 4, 9, 6)])
def test_extract_patch_kernel_matches_numpy(dtype, y0, x0, h, w):
    rng = np.random.default_rng(4)
    block = _block(rng, (6, 9, 10), dtype)
    out = np.full((8, h * w), np.nan, np.float32)
    got = tiling.extract_patch(block, y0, x0, h, w, out)
    np.testing.assert_allclose(got, reference.extract_patch(block, y0, x0, h, w, np.float32), rtol=RTOL32)
    assert np.isnan(out[6:]).all()  # rows past the block are left alone


def test_the_event_threshold_is_scipys_chi2_quantile_to_the_last_bit():
    # computed without importing scipy.stats (0.4 CPU s of every compression): the same formula, the same bits
    from scipy.stats import chi2

    from pmdcompress.solver.temporal import _event_threshold

    for window in range(1, 40):
        for p in (1e-6, 1e-3, 1e-2, 0.05, 0.5):
            assert _event_threshold(window, p) == float(chi2.ppf(1.0 - p, window)), (window, p)


def test_compressing_does_not_import_scipy_stats():
    import subprocess
    import sys

    # the compression's modules, and the temporal filter run on rows with events (the event test included)
    code = ("import sys, numpy as np, pmdcompress.pipeline.compress; from pmdcompress.solver import temporal; "
            "rng = np.random.default_rng(0); rows = rng.normal(0, 1, (4, 300)); rows[:, 100:103] += 40; "
            "temporal.trend_filter_rows(rows); print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_varimax_kernel_matches_twin(seed):
    from pmdcompress.solver.localize import varimax

    rng = np.random.default_rng(seed)
    # compact sources on a 16 x 16 patch, mixed by a random rotation, plus a little noise: a real varimax problem
    yy, xx = np.mgrid[:16, :16]
    k = 3 + seed
    sources = np.stack([np.exp(-((yy - rng.uniform(2, 14)) ** 2 + (xx - rng.uniform(2, 14)) ** 2) / 6.0).ravel()
                        for _ in range(k)], axis=1)
    mixed = sources @ np.linalg.qr(rng.normal(size=(k, k)))[0] + 0.01 * rng.normal(size=(256, k))
    u = np.linalg.qr(mixed)[0]
    got = varimax(u)
    want = reference.varimax(u)
    np.testing.assert_allclose(got, want, rtol=RTOL32, atol=1e-6)
    np.testing.assert_allclose(got @ got.T, np.eye(k), atol=1e-12)
    assert not np.allclose(got, np.eye(k), atol=1e-2)  # it did rotate
