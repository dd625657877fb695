"""Signal removed by compression, against ground truth: where patches overlap and in their interiors (issue 13)."""

import numpy as np
import pytest
import tifffile
import zarr

import pmdcompress
from pmdcompress.report import photon_split as ps
from pmdcompress.simulate import simulate_movie
from pmdcompress.tiling import Tiling

#: The four nearest neighbours (shared_signal_removed's default: the pixels above and below).
NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1))


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
    for name, removed in (("signal_removed", ps.shared_signal_removed), ("signal_removed_pixel", ps.signal_removed)):
        assert removed(a, b, den, active) == pytest.approx(result["active"][name], rel=1e-9)
        assert removed(a, b, den, np.ones_like(active)) == pytest.approx(result["all"][name], rel=1e-9)
        # the score's default active set: the folds chosen on B's other half of the frames
        folds = ps.active_folds(b)
        assert removed(a, b, den, folds) == pytest.approx(ps.score(a, b, den)["active"][name], rel=1e-9)
    # the truth of the same denoiser on the noiseless movie: exactly the 40 % it shrinks
    clean = signal / 2
    shrunk = 0.6 * clean + 0.4 * clean.mean(axis=0)
    assert ps.true_signal_removed(clean, clean, shrunk, active) == pytest.approx(0.4, abs=1e-9)
    assert ps.true_signal_removed(clean, clean, shrunk, folds) == pytest.approx(0.4, abs=1e-9)
    assert ps.shared_signal_removed(clean, clean, shrunk, folds) == pytest.approx(0.4, abs=1e-9)


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


def test_shared_signal_removed_ignores_noise_the_halves_share_at_a_pixel():
    # Halves that share some noise at each pixel (a split whose per-pixel noise variance is off): the lag-0
    # signal_removed counts that noise as signal the denoiser removed; the covariance with the neighbours' B
    # does not see it.  The denoiser removes all the noise and 40 % of the signal (it keeps 60 % of every
    # fluctuation of the clean movie).
    rng = np.random.default_rng(5)
    t, h, w = 600, 24, 24
    yy, xx = np.mgrid[:h, :w]
    cells = [np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2)) for cy, cx in ((7, 7), (15, 17), (6, 18))]
    traces = [np.convolve(rng.random(t) < 0.03, np.exp(-np.arange(30) / 8.0))[:t] for _ in cells]
    clean = 2.0 + sum(tr[:, None, None] * c[None] for tr, c in zip(traces, cells, strict=True)) * 1.5
    shared = rng.normal(0, 0.3, (t, h, w))  # each pixel's own, in both halves
    a = clean + rng.normal(0, 1.0, (t, h, w)) + shared
    b = clean + rng.normal(0, 1.0, (t, h, w)) + shared
    den = 0.6 * clean + 0.4 * clean.mean(axis=0)
    active = most_active(clean)
    truth = ps.shared_signal_removed(a, clean, den, active)
    assert truth == pytest.approx(0.4, abs=0.02)
    assert ps.shared_signal_removed(a, b, den, active) == pytest.approx(truth, abs=0.03)
    assert ps.shared_signal_removed(a, b, den, active, lags=NEIGHBOURS) == pytest.approx(truth, abs=0.03)
    # b's signal variance is taken as var_t - 1 (its noise's variance, less the part it shares with a)
    lag0 = np.sum(((a - den) * b).mean(0)[active] - (a - den).mean(0)[active] * b.mean(0)[active]) / np.sum(
        b.var(0)[active] - 1.0)
    assert lag0 > truth + 0.05


@pytest.fixture(scope="module")
def dense_split(tmp_path_factory):
    """A dense two-photon simulation split in two by Gaussian fission (as the real two-photon movies are), A
    compressed with the defaults: (a, b, denoised A, A's clean movie in counts, the active folds)."""
    folder = tmp_path_factory.mktemp("dense_split")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PMD_CACHE_DIR", str(folder / "null-cache"))
        info = simulate_movie(folder / "m.tif", kind="2p-dense", n_frames=600, shape=(96, 96), n_neurons=35,
                              seed=2)
        raw = tifffile.imread(info["movie"]).astype(np.float32)
        clean = zarr.open_group(str(info["truth"]), mode="r")["clean"][...].astype(np.float64)
        counts = ps.prepare_counts(raw, seed=2)
        counts.method = "correlated"
        a, b = ps.split(counts, 2)
        a = a.astype(np.float32)
        den = pmdcompress.compress(a, None, workers=1, hash_input=False).read(0, a.shape[0])
    return a, b, den, (clean - counts.offsets) / counts.gain / 2, ps.active_folds(b)


def test_shared_signal_removed_by_photon_splitting_matches_the_truth(dense_split):
    from scipy.ndimage import gaussian_filter

    a, b, den, clean_a, folds = dense_split
    for denoised, most in ((den, 0.08), (gaussian_filter(a, (0, 1.5, 1.5)), None)):
        truth = ps.shared_signal_removed(a, clean_a, denoised, folds, lags=NEIGHBOURS)
        estimate = ps.shared_signal_removed(a, b, denoised, folds, lags=NEIGHBOURS)
        assert estimate == pytest.approx(truth, abs=0.015)
        rows = ps.shared_signal_removed(a, b, denoised, folds)
        assert rows == pytest.approx(ps.shared_signal_removed(a, clean_a, denoised, folds), abs=0.02)
        if most is not None:  # the defaults keep the active pixels' signal
            assert truth < most
        else:  # a blur that removes a fifth of it is seen
            assert truth > 0.12


def test_shared_signal_removed_is_nan_without_a_shared_signal_to_measure():
    # Halves with no common signal (a flat movie's noise, 20 frames): the denominator is sampling noise, and a
    # ratio of it would read any share removed; with a real signal of the same length the number comes back.
    t, h, w = 20, 32, 32
    everything = np.ones((h, w), bool)
    for seed in range(8):  # without the check, half of these read a positive "signal" and 100 % removed
        rng = np.random.default_rng(seed)
        a, b = rng.poisson(3.0, (2, t, h, w)).astype(float)
        assert np.isnan(ps.shared_signal_removed(a, b, np.full_like(a, 3.0), everything))
    wave = 3.0 + 2.0 * np.sin(np.arange(t) / 2.0)[:, None, None] * np.ones((1, h, w))
    a, b = rng.poisson(np.repeat(wave[None], 2, axis=0)).astype(float)
    assert ps.shared_signal_removed(a, b, np.repeat(a.mean((1, 2), keepdims=True), h, 1).repeat(w, 2),
                                    everything) == pytest.approx(0.0, abs=0.1)
