"""Residual = noise on the movies that bend it: noise shared over several pixels, short movies (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import pmdcompress
from pmdcompress import preprocess
from pmdcompress.preprocess import noise_lag_correlation, noise_neighbour_correlation
from pmdcompress.simulate import simulate_movie
from pmdcompress.simulate.movie import load_truth
from pmdcompress.solver.null import FAR_LAG_MIN, correlated_noise, null_correlation


def shared_noise(rng, shape, sigma=2.0, shared=0.6):
    """Unit Gaussian noise whose correlation falls slowly with distance (0.56, 0.47, 0.34, 0.22 at 1-4 px), as on
    a real microendoscope clip: a share of its power blurred over ``sigma`` px."""
    smooth = ndimage.gaussian_filter(rng.standard_normal(shape), (0, sigma, sigma), mode="wrap")
    return np.sqrt(shared) * smooth / smooth.std() + np.sqrt(1 - shared) * rng.standard_normal(shape)


def test_lag_correlation_measures_a_slowly_falling_correlation_and_agrees_with_the_neighbour_one():
    noise = shared_noise(np.random.default_rng(0), (80, 64, 64)).astype(np.float32)
    ry, rx = noise_lag_correlation(noise, lags=4)
    # the field's own correlation at 1..4 px, over all its pixel pairs
    truth = [float(np.mean(noise[:, k:] * noise[:, :-k]) / np.mean(noise**2)) for k in range(1, 5)]
    # within 0.05 up to 3 px; further out the annulus regression (a region's shared signal, 5-8 px) takes part of it
    np.testing.assert_allclose(ry[:3], truth[:3], atol=0.05)
    np.testing.assert_allclose(rx[:3], truth[:3], atol=0.05)
    assert 0.6 * truth[3] < min(ry[3], rx[3]) <= truth[3]
    assert ry[0] == pytest.approx(truth[0], abs=0.02)
    assert truth[3] > 0.15  # the far lags matter here
    assert (ry[0], rx[0]) == noise_neighbour_correlation(noise)


def test_null_noise_has_the_measured_correlation_at_every_lag():
    profile = ((0.61, 0.43, 0.32, 0.24), (0.6, 0.4, 0.25, 0.14))
    noise = correlated_noise(np.random.default_rng(1), 200, (48, 48), null_correlation(profile)).reshape(200, 48, 48)
    ry, rx = noise_lag_correlation(noise, lags=4)
    np.testing.assert_allclose(ry, profile[0], atol=0.03)
    np.testing.assert_allclose(rx, profile[1], atol=0.03)
    assert abs(float(noise.std()) - 1.0) < 0.03


def test_null_correlation_keeps_the_neighbour_pair_where_far_lags_are_small():
    # two-photon movies (measured: optinist_mouse2p, neurofinder_dev): the same null, and cache entry, as before
    assert null_correlation(((0.177, -0.033, 0.003, 0.0), (0.2, -0.021, 0.012, 0.007))) == (0.18, 0.2)
    assert null_correlation(((0.003, 0.001, 0.0), (0.035, 0.02, 0.017))) == (0.0, 0.04)
    kept = null_correlation(((0.607, 0.433, FAR_LAG_MIN / 2, 0.0), (0.1, 0.01, 0.0, 0.0)))
    assert kept == ((0.607, 0.433), (0.1,))


@pytest.fixture(scope="module")
def short_shared_noise_movie(tmp_path_factory):
    """A one-photon movie of 63 frames whose noise is shared over several pixels, and its clean truth."""
    path = tmp_path_factory.mktemp("robust") / "short1p.tif"
    simulate_movie(path, kind="1p", n_frames=63, shape=(64, 64), n_neurons=10, photons=200.0, seed=10, fs=10.0)
    clean = np.asarray(load_truth(path).clean[:], np.float64)
    import tifffile

    level = float(np.std(tifffile.imread(path) - clean))
    raw = clean + level * shared_noise(np.random.default_rng(3), clean.shape)
    return raw.astype(np.float32), clean


def _scores(raw, clean):
    den = np.asarray(pmdcompress.compress(raw, None, hash_input=False, workers=1).read(0, raw.shape[0]), np.float64)
    noise, error = raw - clean, den - clean
    ratio = float(np.median(np.sqrt(np.mean((raw - den) ** 2, axis=0)) / noise.std(axis=0)))
    return float(np.sqrt(np.mean(noise**2) / np.mean(error**2))), ratio


def test_a_null_with_the_noise_far_correlation_keeps_less_noise_and_lowers_the_error(short_shared_noise_movie,
                                                                                     monkeypatch):
    raw, clean = short_shared_noise_movie
    gain, ratio = _scores(raw, clean)
    monkeypatch.setattr(preprocess, "NOISE_LAGS", 1)  # the null matched at the first lag only (before)
    gain_near, ratio_near = _scores(raw, clean)
    assert gain >= gain_near
    assert ratio > ratio_near + 0.01
    assert 0.95 <= ratio <= 1.10


def test_short_two_photon_movie_residual_is_the_noise(tmp_path):
    path = tmp_path / "short2p.tif"
    simulate_movie(path, kind="2p", n_frames=40, shape=(64, 64), n_neurons=10, photons=2.0, seed=1)
    import tifffile

    raw = tifffile.imread(path).astype(np.float32)
    clean = np.asarray(load_truth(path).clean[:], np.float64)
    gain, ratio = _scores(raw, clean)
    assert 0.95 <= ratio <= 1.10
    assert gain > 3.0
