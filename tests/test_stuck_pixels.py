"""Stuck sensor pixels (a dead column at 0, a hot one at 65535): constant, so no signal and no noise.

The compression keeps them exactly (in the mean image) with no component; demixing reads the mean image without
them.  One hot column dimmed every soma within the mean image's high-pass reach and cut the cells found from 14 to 5
of 20 (benchmarks/bench_new_user.py, case 2p-bad-columns).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import tifffile

import pmdcompress
import pmdcompress.demix as dm
from pmdcompress.demix.factors import fill_stuck_pixels, global_spatial
from pmdcompress.preprocess import live_pixels
from pmdcompress.simulate import simulate_movie


def test_a_pixel_stuck_at_a_high_level_is_not_live():
    """A pixel stuck at 65535 reads a noise of a few float32 roundings (0.0033 after the coherent part is removed)."""
    noise = np.array([[12.0, 0.0033, 11.0], [0.0, 13.0, 2e-4]])
    level = np.array([[105.0, 65535.0, 110.0], [0.0, 108.0, 900.0]])
    assert live_pixels(noise).tolist() == [[True, True, True], [False, True, True]]
    assert live_pixels(noise, level).tolist() == [[True, False, True], [False, True, True]]


def test_stuck_mean_pixels_are_filled_from_their_neighbours_only_without_components():
    rng = np.random.default_rng(0)
    mean = 100 + rng.normal(0, 2, (20, 24))
    mean[:, 7] = 65535.0  # hot, no component
    mean[:, 15] = 0.0  # dead, no component
    mean[3, 3] = 400.0  # a bright live spot: has components
    mean[10:14, 10:14] += 1.0  # a quiet patch without components: no outlier
    u = np.ones((20 * 24, 2))
    no_component = np.zeros((20, 24), bool)
    no_component[:, [7, 15]] = True
    no_component[10:14, 10:14] = True
    u[no_component.ravel()] = 0
    filled = fill_stuck_pixels(mean, sp.csr_matrix(u))
    changed = filled != mean
    assert changed[:, [7, 15]].all() and changed.sum() == 40
    assert np.abs(filled[:, [7, 15]] - 100).max() < 8  # their neighbours' level
    np.testing.assert_array_equal(filled[~changed], mean[~changed])


def test_a_hot_column_leaves_the_store_exact_and_demixing_unharmed(tmp_path):
    movie = tmp_path / "m.tif"
    simulate_movie(movie, n_frames=600, shape=(64, 64), n_neurons=20, seed=0)
    data = tifffile.imread(movie)
    data[:, :, 40] = 65535
    tifffile.imwrite(tmp_path / "hot.tif", data)
    store = pmdcompress.compress(tmp_path / "hot.tif", tmp_path / "hot.pmd.zarr", workers=1)
    assert not np.asarray(abs(global_spatial(store)).sum(axis=1)).reshape(64, 64)[:, 40].any()
    np.testing.assert_array_equal(store.read(0, 600)[:, :, 40], 65535)
    dm.demix(store, tmp_path / "hot.demix.zarr", figures=False)
    scores = dm.evaluate(tmp_path / "hot.demix.zarr", tmp_path / "m.truth.zarr")
    assert scores["f1"] >= 0.7  # 0.824 as without the column (0.40 before)
