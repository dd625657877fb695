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
