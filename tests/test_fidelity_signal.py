"""Signal removed by compression, against ground truth: where patches overlap and in their interiors (issue 13)."""

import numpy as np
import pytest
import tifffile
import zarr

import pmdcompress
from pmdcompress.report import photon_split as ps
from pmdcompress.simulate import simulate_movie
from pmdcompress.tiling import Tiling


def most_active(clean, fraction=0.1):
    var = clean.var(axis=0)
    return var >= np.sort(var.ravel())[::-1][int(fraction * var.size) - 1]


@pytest.mark.parametrize("frame, patch, overlap", [((80, 80), 32, 8), ((231, 280), 32, 8), ((50, 70), 24, 6),
                                                   ((20, 20), 32, 8)])
def test_coverage_counts_the_patches_over_each_pixel(frame, patch, overlap):
    tiling = Tiling.create(frame, patch, overlap)
    count = np.zeros(frame, int)
    for i in range(tiling.n_patches):
        count[tiling.patch_slices(i)] += 1
    np.testing.assert_array_equal(tiling.coverage(), count)
    wy, wx = tiling.weights_1d()
    # a pixel covered once gets its one patch's whole weight: the taper only acts where patches overlap
    for i in range(tiling.n_patches):
        ys, xs = tiling.patch_slices(i)
        weight = wy[i][:, None] * wx[i][None, :]
        np.testing.assert_allclose(weight[count[ys, xs] == 1], 1.0)


def test_signal_removed_on_a_subset_is_the_scores_own_number():
    rng = np.random.default_rng(3)
    signal = 2.0 + np.abs(np.cumsum(rng.normal(0, 0.1, (300, 1, 1)), axis=0)) * rng.random((1, 12, 12)) * 4
    a, b = rng.poisson(signal / 2).astype(float), rng.poisson(signal / 2).astype(float)
    den = 0.6 * a + 0.4 * a.mean(axis=0)  # keeps 60 % of every fluctuation
    active = ps.active_pixels(a)
    result = ps.score(a, b, den, active=active)
    assert ps.signal_removed(a, b, den, active) == pytest.approx(result["active"]["signal_removed"], rel=1e-9)
    assert ps.signal_removed(a, b, den, np.ones_like(active)) == pytest.approx(result["all"]["signal_removed"],
                                                                              rel=1e-9)
    # the score's default active set: the folds chosen on B's other half of the frames
    folds = ps.active_folds(b)
    assert ps.signal_removed(a, b, den, folds) == pytest.approx(ps.score(a, b, den)["active"]["signal_removed"],
                                                                rel=1e-9)
    # the truth of the same denoiser on the noiseless movie: exactly the 40 % it shrinks
    clean = signal / 2
    shrunk = 0.6 * clean + 0.4 * clean.mean(axis=0)
    assert ps.true_signal_removed(clean, clean, shrunk, active) == pytest.approx(0.4, abs=1e-9)
    assert ps.true_signal_removed(clean, clean, shrunk, folds) == pytest.approx(0.4, abs=1e-9)


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """A dense two-photon simulation (the regime closest to neurofinder's packed cells), compressed with defaults."""
    folder = tmp_path_factory.mktemp("dense")
    with pytest.MonkeyPatch.context() as patch:  # conftest's per-test cache folder is not set yet for this fixture
        patch.setenv("PMD_CACHE_DIR", str(folder / "null-cache"))
        return _dense(folder)


def _dense(folder):
    info = simulate_movie(folder / "dense.tif", kind="2p-dense", n_frames=500, shape=(80, 80), n_neurons=25,
                          seed=2)
    raw = tifffile.imread(info["movie"]).astype(np.float32)
    clean = zarr.open_group(str(info["truth"]), mode="r")["clean"][...].astype(np.float32)
    store = pmdcompress.compress(raw, None, workers=1, hash_input=False)
    return raw, clean, store.read(0, raw.shape[0]), Tiling.create(raw.shape[1:])


def test_compression_keeps_the_most_active_pixels_signal(dense):
    raw, clean, den, _ = dense
    active = most_active(clean)
    assert ps.true_signal_removed(raw, clean, den, active) < 0.06
    assert ps.true_signal_removed(raw, clean, den, np.ones_like(active)) < 0.1


def test_overlapping_patches_lose_no_more_signal_than_their_interiors(dense):
    # A cell that a patch edge cuts is fitted by each patch it falls in and blended by the taper: it must not lose
    # more of its signal than a cell inside one patch.
    raw, clean, den, tiling = dense
    active = most_active(clean)
    overlap = tiling.coverage() > 1
    assert (active & overlap).sum() > 50 and (active & ~overlap).sum() > 50
    edge = ps.true_signal_removed(raw, clean, den, active & overlap)
    interior = ps.true_signal_removed(raw, clean, den, active & ~overlap)
    assert edge < interior + 0.02
