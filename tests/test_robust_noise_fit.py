"""The residual of noise alone through a store's fit (report.noise.FitProjection): the local-correlation
reference for movies whose noise is shared between pixels."""

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import pmdcompress
from pmdcompress.report.kernels import local_correlation, neighbour_sums
from pmdcompress.report.noise import FitProjection

sys.path.insert(0, str(Path(__file__).parent))
from test_photon_split import make_movie  # noqa: E402


def _local_corr(frames):
    zero = np.zeros(frames.shape[1:], np.float32)
    return float(np.mean(local_correlation(neighbour_sums(frames, frames, zero)[0], frames.shape[0])))


@pytest.fixture(scope="module")
def blurred():
    """A movie of a few sources under noise blurred over 2 px (a share 0.6 of its power), and its noise."""
    _, clean, _ = make_movie(0, shape=(200, 48, 48))
    rng = np.random.default_rng(7)
    smooth = ndimage.gaussian_filter(rng.standard_normal(clean.shape), (0, 2.0, 2.0), mode="wrap")
    noise = 6.0 * (np.sqrt(0.6) * smooth / smooth.std() + np.sqrt(0.4) * rng.standard_normal(clean.shape))
    return (clean + noise).astype(np.float32), noise.astype(np.float32)


def test_the_projection_is_the_stores_own_fit(blurred):
    """Plain projections (svd components, no temporal filter): the store's frame differences are the
    projection of the movie's, to within the factors' rounding."""
    movie, _ = blurred
    store = pmdcompress.compress(movie, None, hash_input=False, workers=1, method="svd", temporal_filter=False)
    proj = FitProjection(store)
    assert np.all(proj.kept == 1.0) and np.all(proj.extra == 0.0)
    fitted = proj.apply(np.diff(movie, axis=0), proj.kept)
    own = np.diff(np.asarray(store.read(0, movie.shape[0]), np.float32), axis=0)
    assert np.sqrt(np.mean((fitted - own) ** 2) / np.mean(own**2)) < 0.05


def test_noise_through_the_fit_is_less_correlated_than_the_noise(blurred):
    """The fit keeps the smooth, shared part of the noise first: the residual of the noise alone is less
    correlated between neighbours than the noise, by more than the bare per-pixel share it keeps."""
    movie, noise = blurred
    store = pmdcompress.compress(movie, None, hash_input=False, workers=1)
    proj = FitProjection(store)
    diffs = np.diff(noise, axis=0)
    rest = proj.noise_residual(diffs)
    assert _local_corr(rest) < _local_corr(diffs) - 0.01
    # Independent noise stays uncorrelated through the same fit.
    white = np.diff(np.random.default_rng(3).standard_normal(movie.shape).astype(np.float32), axis=0)
    assert abs(_local_corr(proj.noise_residual(white))) < 0.02
