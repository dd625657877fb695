"""The known noise of a temporal factor (compress.row_noise) under noise shared over several pixels."""

import numpy as np
import pytest
from scipy import ndimage

from pmdcompress.pipeline.compress import KNOWN_NOISE_MARGIN, KNOWN_NOISE_MARGIN_FULL, _has_far_lags, row_noise
from pmdcompress.preprocess import noise_lag_correlation
from pmdcompress.solver.null import null_correlation


def _toeplitz(lags, n):
    full = np.zeros(n)
    full[0] = 1.0
    full[1 : len(lags) + 1] = lags[: n - 1]
    return np.array([[full[abs(i - j)] for j in range(n)] for i in range(n)])


def test_a_neighbour_pair_gives_the_same_known_noise_as_before():
    rng = np.random.default_rng(0)
    u = rng.standard_normal((12 * 10, 4))
    assert not _has_far_lags((0.2, 0.1)) and not _has_far_lags(((0.2,), (0.1,)))
    np.testing.assert_array_equal(row_noise(u, (12, 10), ((0.2,), (0.1,))), row_noise(u, (12, 10), (0.2, 0.1)))


def test_a_lag_profile_is_the_separable_covariance_at_every_lag():
    rng = np.random.default_rng(1)
    u = rng.standard_normal((12 * 10, 3))
    ry, rx = (0.5, 0.3, 0.1), (0.4, 0.2)
    assert _has_far_lags((ry, rx))
    dense = np.kron(_toeplitz(ry, 12), _toeplitz(rx, 10))
    expected = np.sqrt(np.einsum("pk,pq,qk->k", u, dense, u))
    np.testing.assert_allclose(row_noise(u, (12, 10), (ry, rx)), expected, rtol=1e-12)


def test_a_smooth_component_carries_the_noise_the_profile_says():
    """Noise blurred over 2 px (as a one-photon sensor's): a smooth component's factor carries about twice the
    noise std that the neighbour pair alone gives; the measured lag profile gives it within 15 % (its far lags read
    somewhat low, and those under null.FAR_LAG_MIN are left out)."""
    rng = np.random.default_rng(2)
    t, h, w = 400, 32, 32
    noise = ndimage.gaussian_filter(rng.standard_normal((t, h + 16, w + 16)), (0, 2.0, 2.0))[:, 8:-8, 8:-8]
    noise /= noise.std()
    yy, xx = np.mgrid[:h, :w]
    u = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / (2 * 4.0**2)).reshape(-1, 1)
    u /= np.linalg.norm(u)
    true_std = float(np.std(noise.reshape(t, -1) @ u))
    profile = null_correlation(noise_lag_correlation(noise.astype(np.float32), max_pairs=64))
    assert _has_far_lags(profile)
    full = float(row_noise(u, (h, w), profile)[0])
    pair = float(row_noise(u, (h, w), (profile[0][0], profile[1][0]))[0])
    assert full == pytest.approx(true_std, rel=0.15)
    assert true_std > 1.5 * pair  # the pair alone reads it low: the flicker test would take noise for signal
    assert KNOWN_NOISE_MARGIN_FULL < KNOWN_NOISE_MARGIN
