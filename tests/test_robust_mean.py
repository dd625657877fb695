"""The mean image's smoothing (preprocess.mean_correction): a short movie's stored mean keeps 1/T of its noise in
every frame; where smoothing it lowers the error (cross-validated on the even and the odd frames), the
correction goes into the store's trend."""

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import pmdcompress
from pmdcompress import preprocess
from pmdcompress.preprocess import MEAN_WIDTHS, mean_correction, mean_correction_possible

sys.path.insert(0, str(Path(__file__).parent))
from test_photon_split import make_movie  # noqa: E402


def _static(seed, shape=(48, 64), detail=0.0):
    """A smooth image (blobs of 2-4 px) plus ``detail`` times pixel-scale structure."""
    rng = np.random.default_rng(seed)
    image = 100.0 + 40.0 * ndimage.gaussian_filter(rng.standard_normal(shape), 2.5) / 0.1
    return image + detail * rng.standard_normal(shape)


def _even_odd(image, sigma, n_frames, seed):
    rng = np.random.default_rng(seed)
    frames = image + sigma * rng.standard_normal((n_frames, *image.shape))
    return frames[0::2].mean(axis=0), frames[1::2].mean(axis=0), frames.mean(axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_chosen_smoothing_is_within_a_few_percent_of_the_best_and_beats_none(seed):
    image = _static(seed)
    even, odd, mean = _even_odd(image, 20.0, 30, seed + 10)
    width, correction = mean_correction(even, odd, 15, 15)
    assert width in MEAN_WIDTHS and correction is not None

    def true_error(w):
        smooth = mean if w == 0 else ndimage.gaussian_filter(mean, w, mode="nearest", truncate=4.0)
        return float(np.sum((smooth - image) ** 2))

    errors = {w: true_error(w) for w in (0.0, *MEAN_WIDTHS)}
    assert errors[width] <= 1.05 * min(errors.values())
    assert errors[width] < 0.7 * errors[0.0]
    # rounded to a power of two within MEAN_STEP_SHARE of the mean's noise std (20 / sqrt(30))
    step = 2.0 ** np.floor(np.log2(preprocess.MEAN_STEP_SHARE * 20.0 / np.sqrt(30)))
    assert step > 0.4 * preprocess.MEAN_STEP_SHARE * 20.0 / np.sqrt(30)
    np.testing.assert_array_equal(correction / step, np.round(correction / step))
    np.testing.assert_allclose(mean + correction, ndimage.gaussian_filter(mean, width, mode="nearest",
                                                                          truncate=4.0), atol=0.51 * step)


def test_fine_structure_or_little_noise_is_left_alone():
    """Pixel-scale structure well above the mean's noise: every smoothing blurs more than it removes."""
    image = _static(3, detail=30.0)
    even, odd, _ = _even_odd(image, 10.0, 30, 4)
    assert mean_correction(even, odd, 15, 15) == (0.0, None)
    # a long movie's mean holds too little noise to pay for the store's extra array
    even, odd, _ = _even_odd(_static(5), 20.0, 800, 6)
    assert mean_correction(even, odd, 400, 400) == (0.0, None)
    assert mean_correction_possible(1000) and not mean_correction_possible(1001)


def test_a_short_movie_s_store_holds_the_correction_and_is_closer_to_the_truth(tmp_path, monkeypatch):
    movie, clean, _ = make_movie(0, shape=(30, 48, 48), photons=2.0)
    movie = movie.astype(np.float32)
    path = tmp_path / "short.pmd.zarr"
    store = pmdcompress.compress(movie, path, hash_input=False, workers=1)
    assert store.metadata.parameters["mean_smoothing"] in MEAN_WIDTHS
    assert store.trend is not None and store.trend.shape == (1, 48, 48)
    # the input's own mean, to half its step (store format 4 rounds it to noise * mean_step)
    half_step = store.noise * store.metadata.mean_step / 2
    assert (np.abs(store.mean - movie.mean(axis=0)) <= half_step * (1 + 1e-5) + 1e-5).all()
    monkeypatch.setattr(preprocess, "MEAN_MIN_GAIN", np.inf)
    plain = pmdcompress.compress(movie, None, hash_input=False, workers=1)
    assert plain.trend is None and plain.metadata.parameters["mean_smoothing"] == 0.0
    reread = pmdcompress.open_store(path)
    denoised = np.asarray(reread.read(0, 30), np.float64)
    rounding = half_step.max() + float((plain.noise * plain.metadata.mean_step).max()) / 2  # both stores' means
    np.testing.assert_allclose(denoised - np.asarray(plain.read(0, 30), np.float64),
                               np.broadcast_to(store.trend[0], denoised.shape), atol=1e-2 + 2 * rounding)
    error = float(np.mean((denoised - clean) ** 2))
    error_plain = float(np.mean((np.asarray(plain.read(0, 30), np.float64) - clean) ** 2))
    assert error < 0.95 * error_plain


def test_with_detrending_the_correction_is_added_to_every_knot(monkeypatch):
    movie, _, _ = make_movie(1, shape=(40, 48, 48), photons=2.0)
    movie = movie.astype(np.float32)
    store = pmdcompress.compress(movie, None, hash_input=False, workers=1, detrend=True, chunk_frames=10)
    monkeypatch.setattr(preprocess, "MEAN_MIN_GAIN", np.inf)
    plain = pmdcompress.compress(movie, None, hash_input=False, workers=1, detrend=True, chunk_frames=10)
    assert plain.trend is not None and len(plain.trend) > 1
    assert store.metadata.parameters["mean_smoothing"] > 0
    shift = np.asarray(store.trend, np.float64) - np.asarray(plain.trend, np.float64)
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-4)
    np.testing.assert_array_equal(store.trend_frames, plain.trend_frames)
