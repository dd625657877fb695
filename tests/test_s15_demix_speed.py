"""Session 15's cheaper demix steps give the same floats as the code they replace, to the bit.

Each compiled kernel is compared with a plain twin: scipy's filters for the box and Gaussian smoothing and the
nucleus finder's correlation, numpy's sort and a per-element loop for the robust normalisation, scipy's sparse
formula for the high-pass inside a fill border (on rows that take each of the kernel's three paths).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import ndimage

from pmdcompress.demix import hals
from pmdcompress.demix.factors import _box_size, _smooth, gaussian_filter
from pmdcompress.demix.init import _robust_normalize_kernel, robust_samples
from pmdcompress.demix.pipeline import _highpass_inside, _without, border_mask, correlate_mirror, nucleus_template


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- box filter (factors._smooth)


def _scipy_box(img, sigma):
    out = img
    for axis in (-2, -1):
        for _ in range(2):
            out = ndimage.uniform_filter1d(out, _box_size(sigma), axis=axis, mode="reflect")
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_box_smoothing_equals_scipy_to_the_bit(dtype):
    rng = np.random.default_rng(15)
    # lines shorter than the box (reflected more than once), one-pixel images, 2-D, 3-D and 4-D stacks
    shapes = [(1, 1), (1, 7), (7, 1), (3, 5, 4), (2, 40, 33), (2, 2, 9, 64), (1, 64, 64), (5, 17, 23)]
    for shape in shapes:
        for sigma in (0.3, 1.0, 2.5, 8.4, 20.0):
            img = (rng.standard_normal(shape) * 10 ** rng.uniform(-3, 3)).astype(dtype)
            img[..., : shape[-1] // 3] += 1000.0  # a step: the running sum's rounding shows
            before = img.copy()
            got = _smooth(img, sigma)
            assert _same_bits(got, _scipy_box(img, sigma)), (shape, sigma)
            assert _same_bits(img, before)  # the input is left as it was


def test_box_smoothing_of_a_non_contiguous_view():
    img = np.random.default_rng(1).standard_normal((30, 40)).astype(np.float32)[::2, 1::3]
    assert _same_bits(_smooth(img, 2.0), _scipy_box(img, 2.0))


# --------------------------------------------------------------------------- Gaussian of the background's maps


def test_background_smoothing_equals_scipy_to_the_bit():
    rng = np.random.default_rng(7)
    for shape in [(1, 1, 1), (1, 1, 30), (2, 30, 1), (3, 12, 9), (3, 64, 50), (1, 5, 80)]:
        for sigma in (0.2, 1.0, 3.3, 8.4, 25.0):
            maps = rng.standard_normal(shape) * 10 ** rng.uniform(-3, 3)
            want = ndimage.gaussian_filter(maps, (0, sigma, sigma), mode="reflect", truncate=3.0)
            assert _same_bits(hals._smooth(maps, sigma), want), (shape, sigma)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["reflect", "nearest"])
def test_gaussian_filter_of_images_equals_scipy_to_the_bit(dtype, mode):
    rng = np.random.default_rng(8)
    for shape in [(1, 1), (1, 13), (13, 1), (20, 31), (64, 48)]:
        for sigma, truncate in [(0.1, 4.0), (0.5, 4.0), (1.5, 4.0), (6.0, 3.0), (24.0, 4.0)]:
            image = (rng.standard_normal(shape) * 10 ** rng.uniform(-3, 3)).astype(dtype)
            want = ndimage.gaussian_filter(image, sigma, mode=mode, truncate=truncate)
            assert _same_bits(gaussian_filter(image, sigma, mode=mode, truncate=truncate), want), (shape, sigma)


def test_gaussian_filter_goes_to_scipy_for_other_inputs():
    rng = np.random.default_rng(2)
    image = rng.standard_normal((9, 12))
    for mode in ("mirror", "constant", "wrap"):
        want = ndimage.gaussian_filter(image, 1.5, mode=mode)
        assert _same_bits(gaussian_filter(image, 1.5, mode=mode), want)
    counts = rng.integers(0, 9, (9, 12))
    assert _same_bits(gaussian_filter(counts, 1.5), ndimage.gaussian_filter(counts, 1.5))
    assert _same_bits(gaussian_filter(image, 0.0), image)
    line = rng.standard_normal(30)
    assert _same_bits(gaussian_filter(line, 2.0), ndimage.gaussian_filter(line, 2.0))


# --------------------------------------------------------------------------- robust normalisation


def _normalize_twin(x, mad_threshold, step):
    """The normalisation element by element in plain Python floats (the kernel's operations in its order)."""
    out = np.array(x, np.float32)
    peak = np.empty(x.shape[0], np.float32)
    for i, row in enumerate(out):
        sub = np.asarray(row[::step], np.float64)
        med = float(np.median(sub))
        mad = float(np.median(np.abs(sub - med))) * 1.4826
        cut = med + mad_threshold * mad
        peak[i] = np.float32(float(row.max()) - med)
        s = 0.0
        for k in range(row.size):
            v = max(float(row[k]) - cut, 0.0)
            row[k] = v
            s += v
        mu = s / row.size
        ss = 0.0
        for k in range(row.size):
            v = float(row[k]) - mu
            row[k] = v
            ss += v * v
        scale = 1.0 / np.sqrt(ss) if ss > 0.0 else 0.0
        for k in range(row.size):
            row[k] = float(row[k]) * scale
    return out, peak


@pytest.mark.parametrize("t, step", [(1, 1), (2, 1), (7, 2), (64, 1), (65, 1), (600, 9), (150, 2)])
def test_robust_normalisation_equals_its_twin_to_the_bit(t, step):
    rng = np.random.default_rng(t)
    x = rng.standard_normal((9, t)).astype(np.float32)
    x[0] = 0.0  # no excess: the row becomes 0
    x[1, ::3] = 2.0  # ties in the samples
    x[2] += rng.exponential(3.0, t).astype(np.float32) * (rng.random(t) < 0.1)  # transients
    samples = robust_samples(x, step)
    assert samples.shape == (9, len(range(0, t, step))) and np.all(np.diff(samples, axis=1) >= 0)
    got, peak = x.copy(), np.empty(9, np.float32)
    _robust_normalize_kernel(got, samples, 2.0, peak)
    want, want_peak = _normalize_twin(x, 2.0, step)
    assert _same_bits(got, want)
    assert _same_bits(peak, want_peak)
    if t >= 64:  # a row with transients: unit norm
        assert np.allclose(np.linalg.norm(got[2].astype(np.float64)), 1.0, atol=1e-5)


# --------------------------------------------------------------------------- high-pass inside a fill border


def _sparse_formula(u, uh, border, dims, sigma):
    """Session 13's formula: ``uh - diag(scale) (u - uh)``, the border's rows emptied (scipy's sparse ops)."""
    mask = border_mask(border, dims)
    out = uh - sp.diags(_scale(border, dims, sigma).astype(np.float32)) @ (u - uh)
    out = _without(sp.csr_matrix(out, dtype=np.float32), mask)
    out.sort_indices()
    return out


def _scale(border, dims, sigma):
    mask = border_mask(border, dims)
    share = _smooth((~mask).astype(np.float64)[None], sigma)[0].ravel()
    scale = np.where(share > 0, 1.0 / np.maximum(share, 1e-12) - 1.0, 0.0)
    scale[mask.ravel()] = 0.0
    return scale


@pytest.mark.parametrize("border, sigma", [((1, 3, 3, 3), 2.5), ((0, 0, 4, 0), 2.0), ((2, 0, 0, 4), 1.2)])
def test_highpass_inside_merges_columns_of_u_missing_from_uh(border, sigma):
    # uh's rows sorted (the merge), some holding none of u's columns (only u's, sorted and merged in), u's columns
    # in any order, and a few rows of uh unsorted (the sort of the union; rows whose scale is 0 are copied as they
    # are, so those stay sorted here).
    rng = np.random.default_rng(3)
    dims, k = (20, 18), 40
    n = dims[0] * dims[1]
    u = sp.random(n, k, density=0.15, random_state=rng, dtype=np.float32, format="csr")
    for r in range(n):  # u's column order within rows as the store gives it: any
        lo, hi = u.indptr[r], u.indptr[r + 1]
        perm = rng.permutation(hi - lo)
        u.indices[lo:hi], u.data[lo:hi] = u.indices[lo:hi][perm], u.data[lo:hi][perm]
    u.has_sorted_indices = False
    uh = sp.random(n, k, density=0.3, random_state=rng, dtype=np.float32, format="csr")
    uh.sort_indices()
    scaled = np.flatnonzero(_scale(border, dims, sigma) != 0)
    assert scaled.size > 50
    for r in rng.choice(scaled, 12, replace=False):
        lo, hi = uh.indptr[r], uh.indptr[r + 1]
        uh.indices[lo:hi], uh.data[lo:hi] = uh.indices[lo:hi][::-1].copy(), uh.data[lo:hi][::-1].copy()
    uh.has_sorted_indices = False
    dense_u = u.toarray()
    only_u = sum(np.count_nonzero(dense_u[r][np.setdiff1d(np.arange(k), uh.indices[uh.indptr[r]:uh.indptr[r + 1]])])
                 for r in scaled)
    assert only_u > 100  # many columns of u that uh lacks, in rows the merge takes
    got = _highpass_inside(u, uh, border, dims, sigma)
    want = _sparse_formula(u, uh, border, dims, sigma)
    assert np.array_equal(got.indptr, want.indptr)
    assert np.array_equal(got.indices, want.indices)
    assert _same_bits(got.data, want.data)


# --------------------------------------------------------------------------- the nucleus finder's correlation


def test_correlate_mirror_equals_scipy_to_the_bit():
    rng = np.random.default_rng(11)
    for shape, side in [((1, 1), (1, 1)), ((2, 9), (3, 1)), ((9, 2), (1, 3)), ((5, 7), (9, 13)), ((30, 41), (17, 17)),
                        ((64, 64), (27, 21))]:
        image = rng.standard_normal(shape) * 10 ** rng.uniform(-2, 2)
        weights = rng.standard_normal(side)
        weights[rng.random(side) < 0.2] = 0.0
        weights.flat[0] = 1e-17  # under DBL_EPSILON: scipy leaves the tap out
        want = ndimage.correlate(image, weights, mode="mirror")
        assert _same_bits(correlate_mirror(image, weights), want), (shape, side)
    template, _ = nucleus_template(5.2)
    image = rng.standard_normal((80, 90)) * 100
    assert _same_bits(correlate_mirror(image, template), ndimage.correlate(image, template, mode="mirror"))


def test_correlate_mirror_falls_back_to_scipy_for_other_inputs():
    rng = np.random.default_rng(12)
    image, even = rng.standard_normal((20, 20)), rng.standard_normal((4, 5))
    assert _same_bits(correlate_mirror(image, even), ndimage.correlate(image, even, mode="mirror"))
    small, wide = rng.standard_normal((3, 3)), rng.standard_normal((9, 9))
    assert _same_bits(correlate_mirror(small, wide), ndimage.correlate(small, wide, mode="mirror"))


@pytest.mark.parametrize("border, sigma", [((1, 3, 3, 3), 2.5), ((0, 0, 4, 0), 2.0)])
def test_highpass_inside_written_over_uh_equals_a_fresh_result(border, sigma):
    rng = np.random.default_rng(5)
    dims, k = (20, 18), 40
    n = dims[0] * dims[1]
    u = sp.random(n, k, density=0.15, random_state=rng, dtype=np.float32, format="csr")
    uh = sp.random(n, k, density=0.3, random_state=rng, dtype=np.float32, format="csr")
    uh = (uh + u).tocsr()  # every column of u in uh: the result fits in uh's place
    uh.sort_indices()
    uh.data[rng.random(uh.nnz) < 0.05] = 0.0  # explicit zeros, dropped from the result
    want = _sparse_formula(u, uh, border, dims, sigma)
    spoilt = uh.copy()
    got = _highpass_inside(u, spoilt, border, dims, sigma, overwrite_uh=True)
    assert np.shares_memory(got.data, spoilt.data) and np.shares_memory(got.indices, spoilt.indices)
    assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
    assert _same_bits(got.data, want.data)
    # a column of u that uh's row lacks: the result would not fit, so it goes to fresh arrays (uh left alone)
    row = int(np.flatnonzero((_scale(border, dims, sigma) != 0) & (np.diff(u.indptr) > 0))[0])
    lacking = uh.tolil()
    lacking[row, int(u.indices[u.indptr[row]])] = 0.0
    lacking = lacking.tocsr()
    lacking.eliminate_zeros()
    kept = lacking.copy()
    got = _highpass_inside(u, lacking, border, dims, sigma, overwrite_uh=True)
    assert not np.shares_memory(got.data, lacking.data)
    assert _same_bits(lacking.data, kept.data) and np.array_equal(lacking.indices, kept.indices)
    want = _sparse_formula(u, kept, border, dims, sigma)
    assert np.array_equal(got.indices, want.indices) and _same_bits(got.data, want.data)
