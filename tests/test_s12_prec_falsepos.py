"""The raw-movie measures ``benchmarks/bench_demix_falsepos.py`` classifies unmatched detections by: the 8-neighbour
correlation image against its definition, and a bright active disc standing out of the mean, maximum and
correlation images while a quiet spot of the same size does not."""

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_demix_falsepos import mask_measures, raw_images  # noqa: E402


def _disc(dims, cy, cx, r):
    yy, xx = np.mgrid[: dims[0], : dims[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def test_correlation_image_is_the_mean_correlation_with_the_eight_neighbours():
    rng = np.random.default_rng(0)
    movie = rng.standard_normal((50, 7, 9)).astype(np.float32)
    movie += rng.standard_normal((50, 1, 1)).astype(np.float32)  # a shared signal: correlations well above 0
    _, _, corr = raw_images(movie, 2.0)
    want = np.zeros((7, 9))
    for y in range(7):
        for x in range(9):
            rs = [np.corrcoef(movie[:, y, x], movie[:, y + dy, x + dx])[0, 1]
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                  if (dy or dx) and 0 <= y + dy < 7 and 0 <= x + dx < 9]
            want[y, x] = np.mean(rs)
    np.testing.assert_allclose(corr, want, atol=1e-5)


def test_an_active_bright_disc_stands_out_and_a_quiet_spot_does_not():
    rng = np.random.default_rng(1)
    dims, t = (48, 48), 300
    cell, quiet = _disc(dims, 14, 14, 4), _disc(dims, 34, 34, 4)
    trace = np.zeros(t)
    trace[[40, 120, 200, 260]] = 8.0
    trace = np.convolve(trace, np.exp(-np.arange(20) / 5.0))[:t]
    movie = 10.0 + rng.standard_normal((t, *dims))
    movie[:, cell] += 3.0 + trace[:, None]
    masks = sp.csc_matrix(np.stack([cell.ravel(), quiet.ravel()], axis=1))
    images = dict(zip(("mean", "max", "corr"), raw_images(movie.astype(np.float32), 9.0), strict=True))
    m = mask_measures(masks, dims, images)
    assert m["raw_mean_contrast"][0] > 5 and abs(m["raw_mean_contrast"][1]) < 1
    assert m["raw_max_contrast"][0] > 5 and abs(m["raw_max_contrast"][1]) < 1
    assert m["raw_corr_contrast"][0] > 0.2 and abs(m["raw_corr_contrast"][1]) < 0.05
    np.testing.assert_allclose([m["cy"][0], m["cx"][0], m["cy"][1], m["cx"][1]], [14, 14, 34, 34])
    np.testing.assert_array_equal(m["area"], [cell.sum(), quiet.sum()])


def test_a_hot_spot_holds_most_of_its_masks_transient_excess_and_a_firing_soma_does_not():
    rng = np.random.default_rng(2)
    dims, t = (40, 40), 300
    soma, spotted = _disc(dims, 12, 12, 4), _disc(dims, 28, 28, 4)
    trace = np.zeros(t)
    trace[[50, 150, 250]] = 10.0
    movie = 10.0 + rng.standard_normal((t, *dims))
    movie[:, soma] += trace[:, None]
    hot = np.zeros(dims, bool)
    hot[28, 31:34] = True  # three pixels at the disc's edge fire, the rest is quiet
    movie[:, hot] += 5 * trace[:, None]
    masks = sp.csc_matrix(np.stack([soma.ravel(), spotted.ravel()], axis=1))
    images = dict(zip(("mean", "max", "corr"), raw_images(movie.astype(np.float32), 9.0), strict=True))
    share = mask_measures(masks, dims, images)["raw_max_top3_share"]
    assert share[0] < 0.15 and share[1] > 0.5
