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


def test_short_two_photon_movie_residual_is_the_noise(tmp_path):
    path = tmp_path / "short2p.tif"
    simulate_movie(path, kind="2p", n_frames=40, shape=(64, 64), n_neurons=10, photons=2.0, seed=1)
    import tifffile

    raw = tifffile.imread(path).astype(np.float32)
    clean = np.asarray(load_truth(path).clean[:], np.float64)
    gain, ratio = _scores(raw, clean)
    assert 0.95 <= ratio <= 1.10
    assert gain > 3.0


def _shot_noise_movie(rng, n_frames, shape=(64, 64)):
    """Pure noise whose variance follows a smooth brightness (shot noise): (movie, true variance map, mean)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mean = 100 + 80 * np.sin(yy / 9.0) * np.cos(xx / 13.0) + 60 * (xx / shape[1])
    var = 4.0 + 0.5 * mean
    return mean + np.sqrt(var) * rng.standard_normal((n_frames, *shape)), var, mean


def _band_noise(movie):
    acc = preprocess.NoiseAccumulator(movie[0].size, frame_shape=movie.shape[1:])
    acc.add(movie.reshape(len(movie), -1).astype(np.float32))
    return acc.coherent_std().reshape(movie.shape[1:]), acc.dof - 1.0


def test_pooled_noise_is_closer_to_the_truth_and_a_long_movie_keeps_its_pixels_own_levels():
    rng = np.random.default_rng(4)

    def error(s, var):
        return float(np.sqrt(np.mean((s**2 / var - 1) ** 2)))

    for n_frames in (34, 63):
        movie, var, mean = _shot_noise_movie(rng, n_frames)
        own, dof = _band_noise(movie)
        pooled = preprocess.pooled_noise(own, mean, dof)
        assert error(pooled, var) < 0.5 * error(own, var)
        assert abs(float(np.mean(pooled**2 / var)) - 1) < 0.05  # no bias
    # pixels whose noise truly differs from their neighbours' (a gain that varies 30 % from pixel to pixel): a
    # long movie keeps its own estimates (what the neighbours lend is worth ~20 values against its ~700)
    movie, var, mean = _shot_noise_movie(rng, 2000)
    gain = np.exp(0.3 * rng.standard_normal(var.shape))
    movie = mean + (movie - mean) * np.sqrt(gain)
    own, dof = _band_noise(movie)
    assert dof > 500
    pooled = preprocess.pooled_noise(own, mean, dof)
    np.testing.assert_allclose(pooled, own, rtol=0.03)
    assert error(pooled, var * gain) <= 1.02 * error(own, var * gain)


def test_pooled_noise_leaves_dead_saturated_and_hot_pixels_their_own_and_small_inputs_alone():
    rng = np.random.default_rng(5)
    movie, _, mean = _shot_noise_movie(rng, 40)
    own, dof = _band_noise(movie)
    own[10:12, 20:25] = 0.0
    own[30, 30] = 1e-4 * own[30, 31]  # saturated: it barely fluctuates
    own[40, 40] = 10 * own[40, 41]  # hot
    pooled = preprocess.pooled_noise(own, mean, dof)
    assert np.all(pooled[10:12, 20:25] == 0) and np.all(pooled[own > 0] > 0)
    assert pooled[30, 30] == own[30, 30] and pooled[40, 40] == own[40, 40]
    tiny = np.ones((2, 5))
    assert preprocess.pooled_noise(tiny, tiny, 4.0) is not None
    np.testing.assert_array_equal(preprocess.pooled_noise(tiny, tiny, 4.0), tiny)


def test_pooled_noise_raises_the_error_reduction_of_a_short_movie(tmp_path, monkeypatch):
    path = tmp_path / "short1p.tif"
    simulate_movie(path, kind="1p", n_frames=34, shape=(64, 64), n_neurons=8, photons=100.0, seed=6, fs=10.0)
    import tifffile

    raw = tifffile.imread(path).astype(np.float32)
    clean = np.asarray(load_truth(path).clean[:], np.float64)
    gain, ratio = _scores(raw, clean)
    from pmdcompress.pipeline import compress as compress_module

    monkeypatch.setattr(compress_module, "pooled_noise", lambda noise, mean, dof: np.asarray(noise, np.float64))
    gain_own, _ = _scores(raw, clean)
    assert gain > 1.15 * gain_own
    assert 0.95 <= ratio <= 1.10


def test_report_reads_a_short_movie_of_pure_noise_as_noise(tmp_path):
    """20 frames of white noise: the residual is the noise less the part of its mean over the frames that the store
    keeps (a flat truth: the store smooths that mean, preprocess.mean_correction) and the little that a false pass
    or two fit, so the report's ratios must read about sqrt(1 - kept/20) and 1 (per-pixel medians of two 5-value
    estimates read 0.944)."""
    from pmdcompress.pipeline.report import make_report
    from pmdcompress.report.noise import mean_kept_fraction

    movie = (1000 + 20 * np.random.default_rng(7).standard_normal((20, 96, 96))).astype(np.float32)
    store = pmdcompress.compress(movie, tmp_path / "noise.pmd.zarr", workers=1)
    assert store.metadata.total_rank <= 4  # a few false passes at most
    kept = mean_kept_fraction(store)
    assert store.metadata.parameters["mean_smoothing"] > 0 and kept < 0.1  # a flat mean: smoothed
    r = make_report(movie, store, tmp_path / "rep", heldout=False, photon_split=False)
    m = {k: v["value"] for k, v in r["metrics"].items()}
    assert 0.96 < m["residual_ratio_noise_only"] <= np.sqrt(1 - kept / 20) + 1e-9
    assert m["residual_ratio_median"] == pytest.approx(m["residual_ratio_noise_only"], abs=0.015)
    assert m["residual_noise_ratio_median"] == pytest.approx(1.0, abs=0.02)
