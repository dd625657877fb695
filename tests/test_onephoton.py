"""One-photon movies: fast signals shared by a region (flicker of the excitation light, out-of-focus background)
are signal, not noise: the noise estimate, the noise's neighbour correlation, the temporal filter and the report
must all tell them apart (against ground truth)."""

import numpy as np
import pytest
import tifffile
from scipy import ndimage

import pmdcompress
from pmdcompress.pipeline.compress import row_noise
from pmdcompress.pipeline.report import make_report
from pmdcompress.preprocess import (
    NoiseAccumulator,
    band_dof,
    coherent_noise_std,
    noise_neighbour_correlation,
    noise_std_psd,
    remove_coherent,
)
from pmdcompress.solver.null import strong_components
from pmdcompress.solver.temporal import trend_filter_rows


def _flickering(rng, n_frames=400, shape=(40, 48), flicker=3.0, share=0.0):
    """Pixel noise (std 1.5-2.5, shared ``share`` with each 4-neighbour) under a white global flicker of
    ``flicker`` times the noise that scales a smooth, uneven background; returns (movie, noise)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    background = 1.0 + 0.4 * np.sin(yy / 9.0) * np.cos(xx / 11.0)
    sigma = 1.5 + (xx / shape[1])
    wave = np.sin(np.arange(n_frames) / 30.0)[:, None, None] * np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / 50.0)
    course = flicker * 2.0 * rng.standard_normal(n_frames)
    noise = rng.standard_normal((n_frames, *shape))
    if share:
        kernel = np.array([[0, share, 0], [share, 1 - 4 * share, share], [0, share, 0]])
        noise = ndimage.convolve(noise, kernel[None], mode="nearest")
        noise /= np.sqrt(1 - 8 * share + 20 * share**2)  # back to unit variance
    noise = noise * sigma
    movie = 100.0 * background + course[:, None, None] * background + 5.0 * wave + noise
    return movie.astype(np.float32), noise


@pytest.mark.parametrize("share", [0.0, 0.12])
def test_noise_estimate_leaves_out_a_global_flicker(share):
    rng = np.random.default_rng(0)
    movie, noise = _flickering(rng, share=share)
    truth = noise.std(axis=0)
    acc = NoiseAccumulator(movie.shape[1] * movie.shape[2], frame_shape=movie.shape[1:])
    acc.add(movie.reshape(len(movie), -1))
    robust = acc.coherent_std().reshape(truth.shape)
    plain = acc.std().reshape(truth.shape)
    assert np.median(plain / truth) > 2.0  # the flicker read as noise: what the plain band estimate does
    assert abs(np.median(robust / truth) - 1) < 0.04
    assert np.percentile(np.abs(robust / truth - 1), 90) < 0.2  # per pixel, not only on average


def test_noise_estimate_is_unchanged_without_shared_signals():
    rng = np.random.default_rng(1)
    sigma = rng.uniform(1, 3, (32, 40))
    movie = (rng.standard_normal((300, 32, 40)) * sigma).astype(np.float32)
    acc = NoiseAccumulator(32 * 40, frame_shape=(32, 40))
    acc.add(movie.reshape(300, -1))
    robust = acc.coherent_std().reshape(sigma.shape)
    assert abs(np.median(robust / sigma) - 1) < 0.02
    assert abs(np.median(robust / noise_std_psd(movie)) - 1) < 0.01


@pytest.mark.parametrize("n_frames", [20, 63])
def test_noise_estimate_is_unbiased_on_short_movies(n_frames):
    """The coefficient fitted to each pixel takes 1 / band_dof of its noise (4.7 values in 20 frames' band, where
    the window correlates neighbouring bins), which the estimate gives back: no signal, no bias."""
    rng = np.random.default_rng(n_frames)
    movie = (3.0 * rng.standard_normal((n_frames, 64, 64))).astype(np.float32)
    acc = NoiseAccumulator(64 * 64, frame_shape=(64, 64))
    acc.add(movie.reshape(n_frames, -1))
    assert abs(np.mean(acc.coherent_std() ** 2) / 9.0 - 1) < 0.03
    assert abs(np.mean(acc.std() ** 2) / 9.0 - 1) < 0.03
    assert band_dof(20) == pytest.approx(4.675, abs=0.01)


def test_noise_estimate_sums_of_chunks_add_up():
    """The annulus coefficient is fitted over all chunks: the sums of chunk accumulators, merged as the
    pipeline merges them, give what one accumulator fed the same chunks gives."""
    rng = np.random.default_rng(2)
    movie, noise = _flickering(rng, n_frames=512)
    flat = movie.reshape(len(movie), -1)
    one = NoiseAccumulator(flat.shape[1], frame_shape=movie.shape[1:])
    sums, count = 0, 0
    for part in (flat[:256], flat[256:]):
        one.add(part)
        chunk = NoiseAccumulator(flat.shape[1], frame_shape=movie.shape[1:])
        chunk.add(part)
        sums, count = sums + chunk.sums, count + chunk.count
    np.testing.assert_allclose(coherent_noise_std(sums, count), one.coherent_std(), rtol=1e-6)
    assert abs(np.median(one.coherent_std() / noise.std(axis=0).ravel()) - 1) < 0.04
    with pytest.raises(ValueError, match="frame_shape"):
        NoiseAccumulator(10, frame_shape=(3, 4))
    with pytest.raises(ValueError, match="frame_shape"):
        NoiseAccumulator(10).sums  # noqa: B018 - the property raises


@pytest.mark.parametrize("share", [0.0, 0.12])
def test_noise_correlation_leaves_out_a_global_flicker(share):
    rng = np.random.default_rng(3)
    movie, noise = _flickering(rng, n_frames=200, share=share)
    d = np.diff(noise, axis=0)
    true_rho = np.corrcoef(d[:, :, :-1].ravel(), d[:, :, 1:].ravel())[0, 1]
    rho_y, rho_x = noise_neighbour_correlation(movie)
    assert abs(rho_x - true_rho) < 0.05 and abs(rho_y - true_rho) < 0.05
    cleaned = remove_coherent(np.diff(movie, axis=0))
    assert cleaned.shape == d.shape and cleaned.dtype == np.float32


def test_row_noise_is_the_projection_of_correlated_pixel_noise():
    rng = np.random.default_rng(4)
    h, w, share = 12, 10, 0.12
    kernel = np.array([[0, share, 0], [share, 1 - 4 * share, share], [0, share, 0]])
    field = ndimage.convolve(rng.standard_normal((4000, h + 4, w + 4)), kernel[None], mode="constant")[:, 2:-2, 2:-2]
    field /= field.std()
    d = np.diff(field, axis=0)
    rho = (np.corrcoef(d[:, :-1].ravel(), d[:, 1:].ravel())[0, 1], np.corrcoef(d[:, :, :-1].ravel(),
                                                                                d[:, :, 1:].ravel())[0, 1])
    smooth = np.outer(np.hanning(h + 2)[1:-1], np.hanning(w + 2)[1:-1]).ravel()
    rough = rng.standard_normal(h * w)
    u = np.stack([smooth / np.linalg.norm(smooth), rough / np.linalg.norm(rough)], axis=1)
    measured = (field.reshape(len(field), -1) @ u).std(axis=0)
    known = row_noise(u, (h, w), rho)
    # Nearest neighbours only (as the rank test's null): the kernel's farther, weaker correlations are left out,
    # which reads a smooth component's noise a little low (the filter then removes a little less), never high.
    np.testing.assert_allclose(known, measured, rtol=0.1)
    assert np.all(known < 1.03 * measured)
    assert row_noise(u, (h, w), rho)[0] > 1.3  # a smooth component sums shared noise


def test_known_row_noise_keeps_a_fast_signal_the_first_differences_would_call_noise():
    rng = np.random.default_rng(5)
    n = 600
    flicker = 6.0 * rng.standard_normal(n)  # fast, white, and far above the row's noise (std 1)
    row = (flicker + rng.standard_normal(n))[None]
    blind = trend_filter_rows(row)[0]
    known = trend_filter_rows(row, sigma=[1.0])[0]
    lost_blind = np.mean((blind - flicker) ** 2)
    lost_known = np.mean((known - flicker) ** 2)
    assert lost_blind > 5.0  # the flicker's own differences taken for noise: much of it smoothed away
    assert lost_known < 1.3  # at most about the noise's variance: the flicker stays


def test_strong_components_are_only_those_far_above_the_noise():
    rng = np.random.default_rng(7)
    n, h, w = 200, 16, 16
    yy, xx = np.mgrid[:h, :w]
    background = (1.0 + 0.3 * np.sin(yy / 5.0) + 0.2 * np.cos(xx / 7.0)).ravel()
    background /= np.linalg.norm(background)
    cell = np.exp(-((yy - 8) ** 2 + (xx - 6) ** 2) / 8.0).ravel()
    cell /= np.linalg.norm(cell)
    edge = np.sqrt(n) + np.sqrt(h * w)
    noise = rng.standard_normal((n, h * w))
    course = rng.standard_normal(n)
    course /= np.linalg.norm(course)
    # A background 30x the noise's edge, a cell 3x: only the background is taken as it is.
    data = noise + 30 * edge * np.outer(course, background) + 3 * edge * np.outer(rng.permutation(course), cell)
    strong = strong_components(data, rng=np.random.default_rng(0))
    assert strong.shape == (h * w, 1)
    assert abs(float(strong[:, 0] @ background)) > 0.999
    assert strong_components(noise, rng=np.random.default_rng(0)).shape == (h * w, 0)
    # Correlated noise has more power along smooth directions: the edge grows with it.
    assert strong_components(noise + 12 * edge * np.outer(course, background), (0.6, 0.6)).shape[1] == 0


def test_one_photon_flicker_is_kept_and_the_report_measures_it(tmp_path):
    """End to end on a simulated one-photon movie under a white global flicker 3x the pixel noise."""
    movie_path = tmp_path / "onep.tif"
    info = pmdcompress.simulate_movie(movie_path, n_frames=300, shape=(48, 48), n_neurons=6, photons=3000.0,
                                      seed=2, kind="1p")
    import zarr

    truth = zarr.open_group(str(info["truth"]), mode="r")
    clean = truth["clean"][...].astype(np.float64)
    attrs = dict(truth.attrs)
    rng = np.random.default_rng(6)
    rate = (clean - attrs["offset"]) / attrs["gain"]
    rate *= 1 + 3 * np.sqrt(np.median(rate)) / np.median(rate) * rng.standard_normal(len(rate))[:, None, None]
    expected = attrs["offset"] + attrs["gain"] * rate
    raw = expected + attrs["gain"] * (rng.poisson(rate) - rate) + attrs["read_noise"] * rng.standard_normal(rate.shape)
    flick = tmp_path / "flicker.tif"
    tifffile.imwrite(flick, raw.astype(np.float32))
    store = pmdcompress.compress(flick, tmp_path / "flicker.pmd.zarr", workers=1)
    denoised = store.read().astype(np.float64)
    noise = raw - expected
    true_ratio = np.median((raw - denoised).std(axis=0) / noise.std(axis=0))
    assert 0.95 < true_ratio < 1.10  # the flicker stayed in the denoised movie
    gain = np.sqrt(np.sum(noise**2) / np.sum((denoised - expected) ** 2))
    # Its background kept exactly (solver.null.strong_components): 7x here, 2.9x when the penalized fit of the
    # background leaves rough leftovers that stop every patch early.
    assert gain > 5.0
    report = make_report(flick, store, tmp_path / "rep", heldout=False, photon_split=False, workers=1)
    metrics = report["metrics"]
    assert abs(metrics["residual_ratio_median"]["value"] - true_ratio) < 0.05
    assert abs(metrics["noise_raw_median"]["value"] / np.median(noise.std(axis=0)) - 1) < 0.05
    assert metrics["local_corr_noise"]["value"] < 0.1  # the flicker is not noise (frame differences: ~0.9)
    assert metrics["local_corr_difference"]["value"] > 0.5
    # What the noise alone would give through this fit (it keeps rank / frames of it).
    assert 0.85 < metrics["residual_ratio_noise_only"]["value"] < 1.0
