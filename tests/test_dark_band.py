"""A scanner's dark edge band (flyback columns near 0) must not change how the rest of the field is compressed.

Full Neurofinder frames and many ScanImage frames carry ~16 such columns.  The band is compared with a band of
real-looking tissue of the same width (the movie's own edge columns mirrored): both give the same frame, patch grid
and chunks, so whatever differs away from the band would be the band's statistics leaking into a global decision
(benchmarks/bench_dark_band.py measures the same on neurofinder_dev).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import pmdcompress
from conftest import blobs_movie
from pmdcompress.pipeline.compress import CHUNK_BYTES, default_chunk_frames

BAND = 8
#: Columns next to the band whose noise level may differ: the annulus that the noise estimate regresses out
#: and the neighbourhood the noise levels are pooled over reach into the band.
NOISE_REACH = 12
OPTIONS = dict(patch_shape=16, overlap=4, chunk_frames=100, seed=0)


def dark_band(shape, seed=1):
    """``clip(round(N(3, 6)), 0)``: offset-subtracted flyback, as bench_demix_suite2p.bordered_movie makes."""
    return np.clip(np.round(np.random.default_rng(seed).normal(3.0, 6.0, shape)), 0, None).astype(np.float32)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    noisy, _ = blobs_movie(n_frames=300, shape=(40, 56), n_sources=8, noise=5.0, seed=3)
    t, h, _w = noisy.shape
    banded = np.concatenate([dark_band((t, h, BAND)), noisy], axis=2)
    mirrored = np.concatenate([noisy[:, :, BAND:0:-1], noisy], axis=2)
    folder = tmp_path_factory.mktemp("band")
    return {name: pmdcompress.compress(movie, folder / f"{name}.pmd.zarr", **OPTIONS)
            for name, movie in (("band", banded), ("mirror", mirrored))}


def test_the_band_changes_no_global_decision(layouts):
    band, mirror = layouts["band"].metadata.parameters, layouts["mirror"].metadata.parameters
    assert band["thresholds"] == mirror["thresholds"]
    assert band["noise_correlation"] == mirror["noise_correlation"]
    assert band["chunk_frames"] == mirror["chunk_frames"]
    # the mean image's smoothing (a 300-frame movie's mean keeps 1/300 of the noise): decided over the tissue; over
    # the whole frame the band's edge ruled it out (0.0 against 0.7), which moved every denoised pixel by ~5 % of
    # the noise
    assert band["mean_smoothing"] == mirror["mean_smoothing"] > 0


def test_noise_levels_away_from_the_band_are_the_tissue_alone(layouts):
    band, mirror = (np.asarray(layouts[n].noise) for n in ("band", "mirror"))
    far = slice(BAND + NOISE_REACH, None)
    np.testing.assert_array_equal(band[:, far], mirror[:, far])
    assert not np.array_equal(band[:, :BAND], mirror[:, :BAND])  # the band itself is measured as it is


def test_patches_clear_of_the_band_keep_their_ranks_and_denoised_values(layouts):
    band, mirror = layouts["band"], layouts["mirror"]
    np.testing.assert_array_equal(band.patch_origins, mirror.patch_origins)
    clear = band.patch_origins[:, 1] >= BAND + NOISE_REACH
    assert clear.sum() >= 6
    np.testing.assert_array_equal(np.asarray(band.patch_ranks)[clear], np.asarray(mirror.patch_ranks)[clear])
    # The denoised tissue where only such patches reach: the same up to the mean correction's rounding step (set
    # by the mean's noise over the tissue, which the mirror's copy changes), far under the noise (5); with the
    # smoothing decided over the whole frame, 0.24.
    x0 = int(band.patch_origins[clear, 1].min()) + band.patch_shape[1]
    a, b = band.read(0, 300)[:, :, x0:], mirror.read(0, 300)[:, :, x0:]
    assert a.shape[2] >= 8
    assert np.sqrt(np.mean((a - b) ** 2)) < 0.02 * 5.0


@pytest.mark.parametrize("frame", [(231, 280), (512, 512), (128, 256), (300, 300), (64, 64)])
def test_default_chunk_is_a_power_of_two_near_the_chunk_bytes(frame):
    exact = CHUNK_BYTES / (4 * frame[0] * frame[1])
    chunk = default_chunk_frames(frame, 1)
    assert chunk & (chunk - 1) == 0 and 16 <= chunk <= 1024
    if 16 <= exact <= 1024:
        assert exact / math.sqrt(2) <= chunk <= exact * math.sqrt(2)
    assert default_chunk_frames(frame, 3) == chunk - chunk % 3


def test_a_dark_band_does_not_change_the_chunks():
    # neurofinder_dev's field and the same with the 16 dark columns of the full Neurofinder frames: 256 frames
    # each (the noise level's Welch segments lie within chunks; 245 re-sampled every pixel's noise by ~1 %)
    assert default_chunk_frames((231, 280), 1) == default_chunk_frames((231, 296), 1) == 256
    assert default_chunk_frames((512, 512), 1) == default_chunk_frames((512, 528), 1)


def test_the_noise_correlation_is_measured_over_the_tissue():
    # Tissue noise shared by horizontal neighbours (0.5), as resampling or a detector's spread gives; the band's
    # is independent: over the whole frame it diluted the rank test's null (8 of 64 columns: 0.44 for 0.50).
    _, clean = blobs_movie(n_frames=200, shape=(40, 56), n_sources=4, noise=0.0, seed=4)
    white = np.random.default_rng(6).normal(0.0, 5.0, clean.shape)
    noisy = (clean + (white + np.roll(white, 1, axis=2)) / np.sqrt(2)).astype(np.float32)
    t, h, _w = noisy.shape
    correlation = {}
    for name, movie in (("band", np.concatenate([dark_band((t, h, BAND)), noisy], axis=2)),
                        ("mirror", np.concatenate([noisy[:, :, BAND:0:-1], noisy], axis=2)),
                        ("alone", noisy)):
        correlation[name] = pmdcompress.compress(movie, None, **OPTIONS).metadata.parameters["noise_correlation"]
    assert correlation["band"] == correlation["mirror"] == correlation["alone"]
    assert correlation["alone"][1] >= 0.4
