"""Session 12 CPU work on the compress path: each kernel against its plain-numpy twin, each shortcut against the
code it replaced."""

from __future__ import annotations

import numpy as np
import pytest

from pmdcompress.preprocess import _lag_correlations, _lag_products_kernel, noise_lag_correlation


def _lag_products_twin(d, lags):
    """Plain numpy: the sums that _lag_products_kernel accumulates, in float64."""
    d = np.asarray(d, np.float64)
    n, h, w = d.shape
    cross_y = np.array([np.sum(d[:, :-k] * d[:, k:]) if k < h else 0.0 for k in range(1, lags + 1)])
    cross_x = np.array([np.sum(d[:, :, :-k] * d[:, :, k:]) if k < w else 0.0 for k in range(1, lags + 1)])
    return cross_y, cross_x, np.sum(d * d, axis=(0, 2)), np.sum(d * d, axis=(0, 1))


@pytest.mark.parametrize("shape, dtype", [((5, 17, 23), np.float32), ((3, 4, 30), np.float64), ((2, 9, 3), np.float32),
                                          ((1, 1, 12), np.float32)])
def test_lag_products_kernel_matches_its_numpy_twin(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    d = rng.standard_normal(shape).astype(dtype)
    d[:, 1:] += 0.5 * d[:, :-1]  # correlated along y and x, so that the cross sums are far from zero
    d[:, :, 1:] += 0.3 * d[:, :, :-1]
    lags = 8
    got = [np.zeros(lags), np.zeros(lags), np.zeros(shape[1]), np.zeros(shape[2])]
    _lag_products_kernel(d, lags, *got)
    for a, b in zip(got, _lag_products_twin(d, lags), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_lag_correlations_are_the_normalised_products_of_the_shifted_frames():
    rng = np.random.default_rng(3)
    d = rng.standard_normal((6, 12, 5)).astype(np.float32)
    d[:, 1:] += 0.6 * d[:, :-1]
    ry, rx = _lag_correlations(d, 6)
    x = d.astype(np.float64)
    for k in range(1, 7):
        a, b = x[:, :-k], x[:, k:]
        assert ry[k - 1] == pytest.approx(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)), rel=1e-12)
        if k < 5:
            a, b = x[:, :, :-k], x[:, :, k:]
            assert rx[k - 1] == pytest.approx(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)), rel=1e-12)
        else:  # no pixel pair that far apart along x
            assert rx[k - 1] == 0.0
    assert ry[0] > 0.4  # the correlation put in along y, not along x
    assert abs(rx[0]) < 0.3


def test_lag_correlation_of_a_zero_movie_is_zero():
    ry, rx = noise_lag_correlation(np.zeros((20, 8, 8), np.float32), lags=3)
    assert ry == (0.0, 0.0, 0.0) and rx == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("fit_bin, t0, t1, kept_bins", [(1, 0, 40, slice(None)), (3, 7, 41, slice(2, 9)),
                                                        (2, 16, 23, slice(0, 0)), (4, 0, 3, slice(None))])
def test_statistics_task_by_groups_of_bins_is_the_whole_chunk_to_the_bit(monkeypatch, fit_bin, t0, t1, kept_bins):
    """The statistics task fills its fit rows a few bins at a time: the same sums, even-frame sums and fit rows
    as one pass of the chunk kernel over the whole chunk (the earlier code)."""
    from pmdcompress.io.readers import open_movie
    from pmdcompress.pipeline import compress as cp
    from pmdcompress.pipeline.scratch import FitBuffer
    from pmdcompress.preprocess import chunk_statistics

    rng = np.random.default_rng(t1)
    movie_array = rng.gamma(3.0, 40.0, (48, 6, 7)).astype(np.float32)
    movie = open_movie(movie_array)
    n_bins = (t1 - t0) // fit_bin
    rows = np.full(n_bins, -1, np.int64)
    kept = np.arange(n_bins)[kept_bins]
    rows[kept] = 5 + np.arange(len(kept))  # the chunk's bins land on fit rows 5, 6, ...
    monkeypatch.setattr(cp, "FIT_ROWS_BYTES", 3 * 4 * 6 * 7)  # three bins per call (odd frame offsets: parity)
    fit = FitBuffer.create(5 + n_bins, (6, 7), (4, 4), None)
    total, _, _, length, even = cp._statistics_task((movie, t0, t1, fit_bin, rows, False, fit, True))

    block = movie_array[t0:t1].reshape(t1 - t0, -1)
    want_total, want_even = np.zeros(42), np.zeros(42)
    want_rows = np.zeros((len(kept), 42), np.float32)
    local = np.where(rows >= 0, rows - 5, -1)
    assert chunk_statistics(block, fit_bin, local, want_total, want_rows, want_even, t0 % 2) == -1
    assert length == t1 - t0
    np.testing.assert_array_equal(total, want_total)
    np.testing.assert_array_equal(even, want_even)
    if len(kept):  # the rows as written, read back through the buffer (standardised by nothing)
        fit.mean, fit.scale = np.zeros((6, 7), np.float32), np.ones((6, 7), np.float32)
        np.testing.assert_array_equal(fit.frames(np.arange(5, 5 + len(kept))).reshape(len(kept), -1), want_rows)
