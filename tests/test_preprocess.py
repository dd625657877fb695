import functools

import numpy as np
import pytest

from pmdcompress.preprocess import NoiseAccumulator, noise_std_psd, ring_mean, safe_scale


def test_psd_noise_is_unbiased_on_white_noise():
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.5, 3.0, 2000)
    movie = rng.standard_normal((1500, 2000)) * sigma
    ratio = noise_std_psd(movie) / sigma
    assert abs(np.median(ratio) - 1) < 0.02
    assert np.percentile(ratio, 5) > 0.93 and np.percentile(ratio, 95) < 1.07


def test_psd_noise_ignores_slow_signal():
    rng = np.random.default_rng(2)
    t = np.arange(2000)[:, None]
    # Drift plus calcium-like transients (a 3-frame rise, 20-frame decay, 4 sigma).
    phase = (t - 700) % 300
    transient = 4 * np.minimum(phase / 3.0, 1.0) * np.exp(-np.maximum(phase - 3, 0) / 20.0)
    movie = 50 * np.sin(2 * np.pi * t / 400) + transient + rng.standard_normal((2000, 300))
    assert abs(np.median(noise_std_psd(movie)) - 1) < 0.03


def test_short_movies_get_an_estimate():
    rng = np.random.default_rng(3)
    est = noise_std_psd(rng.standard_normal((20, 500)) * 2.0)
    assert abs(np.median(est) - 2.0) < 0.3


def test_chunked_accumulation_matches_one_block():
    rng = np.random.default_rng(4)
    movie = rng.standard_normal((512, 50)).astype(np.float32)
    acc = NoiseAccumulator(50)
    acc.add(movie[:256])
    acc.add(movie[256:])
    one = NoiseAccumulator(50, segment=256)
    one.add(movie)
    # Same segments except the overlapping one in the middle: close, not equal.
    np.testing.assert_allclose(acc.std(), one.std(), rtol=0.15)


def test_zero_variance_pixels_never_give_nan_or_zero_scale():
    noise = np.array([0.0, np.nan, 1e-30, 2.0, 3.0])
    scale = safe_scale(noise)
    assert np.isfinite(scale).all() and (scale > 0).all()
    assert scale[3] == 2.0 and scale[0] == 1.0


@pytest.mark.parametrize("shape, inner, outer", [((3, 40, 37), 4, 8), ((2, 5, 21), 4, 8), ((2, 1, 1), 1, 2),
                                                 ((4, 17, 9), 0, 3)])
def test_ring_mean_matches_scipy_box_filters_to_the_bit(shape, inner, outer):
    # the running-sum kernel does scipy's operations in scipy's order: the same float64 values, not just close
    import reference

    rng = np.random.default_rng(3)
    frames = rng.normal(size=shape) * 100 + rng.uniform(-5, 5, size=shape[1:])
    means, counts = ring_mean(frames, inner, outer)
    want_means, want_counts = reference.ring_mean(frames, inner, outer)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_allclose(means.astype(np.float32), want_means.astype(np.float32), rtol=1e-6, atol=1e-6)
    assert np.array_equal(means, want_means)
    # a strided float32 view (the real part of a complex band) gives the same as its float64 copy
    band = (frames + 1j * frames[::-1]).astype(np.complex64)
    np.testing.assert_array_equal(ring_mean(band.real, inner, outer)[0],
                                  reference.ring_mean(band.real.astype(np.float64), inner, outer)[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ring_products_match_einsums_of_the_annulus_means(monkeypatch, dtype):
    import reference
    from pmdcompress import preprocess

    monkeypatch.setattr(preprocess, "_RING_BLOCK", 3 * 23 * 30)  # blocks of 3 frames: 13 frames in 5 blocks
    rng = np.random.default_rng(4)
    frames = (rng.normal(size=(13, 23, 30)) * 10 + 50).astype(dtype)
    got = preprocess.ring_products(frames)
    want = reference.ring_products(frames, preprocess.RING_INNER, preprocess.RING_OUTER, 3)
    np.testing.assert_array_equal(got[2], want[2])
    for a, b in zip(got[:2], want[:2], strict=True):
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=1e-6)
        # the same additions in the same order: equal to the bit here; a numpy whose einsum fuses multiply-adds
        # would differ in the last bits only
        np.testing.assert_allclose(a, b, rtol=1e-12)


@functools.lru_cache(maxsize=4)
def _one_photon_like(seed: int, *, cells: bool = True, colored: bool = False, n_frames: int = 63, size: int = 64):
    """Noise shared over a few pixels (0.35 independent + 0.65 blurred over 2 px) and, optionally, large smooth
    cells that jump and decay (a one-photon movie's); ``colored`` makes the noise a 2-frame moving sum (not white
    in time).  Returns (movie, noise)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (n_frames + 1, size, size)
    blurred = ndimage.gaussian_filter(rng.standard_normal(shape), (0, 2.0, 2.0), mode="wrap")
    noise = np.sqrt(0.35) * rng.standard_normal(shape) + np.sqrt(0.65) * blurred / blurred.std()
    noise = noise[1:] + noise[:-1] if colored else noise[1:]
    movie = 100.0 + noise
    if cells:
        yy, xx = np.mgrid[:size, :size]
        for _ in range(40):
            cy, cx = rng.uniform(4, size - 4, 2)
            foot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.5**2))
            events = (rng.random(n_frames + 20) < 0.05) * rng.exponential(8.0, n_frames + 20)
            trace = np.convolve(events, np.exp(-np.arange(n_frames) / 10.0))[20 : n_frames + 20]
            movie += trace[:, None, None] * foot
    return movie.astype(np.float32), noise


def _true_lag1(noise):
    n = noise - noise.mean(axis=0)
    return tuple(float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))
                 for a, b in ((n[:, :-1], n[:, 1:]), (n[:, :, :-1], n[:, :, 1:])))


def test_extrapolated_noise_correlation_sees_through_cells_that_the_plain_one_counts():
    from pmdcompress.preprocess import noise_lag_correlation, noise_lag_correlation_extrapolated

    for seed in (0, 1):
        movie, noise = _one_photon_like(seed)
        truth = _true_lag1(noise)
        plain = noise_lag_correlation(movie, lags=2)
        extrapolated = noise_lag_correlation_extrapolated(movie, lags=2)
        for axis in range(2):
            assert plain[axis][0] > truth[axis] + 0.05  # the cells' increments, shared by neighbours
            assert abs(extrapolated[axis][0] - truth[axis]) < 0.03


def test_on_noise_alone_the_extrapolation_reads_the_truth_and_the_plain_profile_is_kept():
    from pmdcompress import preprocess
    from pmdcompress.preprocess import noise_lag_correlation, noise_lag_correlation_extrapolated

    movie, noise = _one_photon_like(2, cells=False)
    truth = _true_lag1(noise)
    plain = noise_lag_correlation(movie, lags=3)
    assert noise_lag_correlation_extrapolated(movie, lags=3) == plain  # within the margin: nothing to correct
    saved = preprocess.EXTRAPOLATION_MARGIN
    preprocess.EXTRAPOLATION_MARGIN = -1.0
    try:
        extrapolated = noise_lag_correlation_extrapolated(movie, lags=3)
    finally:
        preprocess.EXTRAPOLATION_MARGIN = saved
    for axis in range(2):
        assert abs(extrapolated[axis][0] - truth[axis]) < 0.03
        assert abs(plain[axis][0] - truth[axis]) < 0.03


def test_extrapolation_falls_back_to_the_plain_profile_where_differences_are_not_white_noise():
    from pmdcompress.preprocess import noise_lag_correlation, noise_lag_correlation_extrapolated

    movie, _ = _one_photon_like(3, colored=True)
    assert noise_lag_correlation_extrapolated(movie) == noise_lag_correlation(movie)


def test_the_fit_takes_the_extrapolated_profile_only_when_asked_and_the_noise_is_shared_beyond_neighbours(
        monkeypatch):
    from pmdcompress.pipeline import compress as cp
    from pmdcompress.preprocess import noise_lag_correlation, noise_lag_correlation_extrapolated

    class Frames:  # what _neighbour_task reads through LazyFrames
        def __init__(self, movie):
            self.movie = movie

    shared, _ = _one_photon_like(0)
    independent = (100.0 + np.random.default_rng(5).standard_normal((63, 64, 64))).astype(np.float32)
    saved = cp.LazyFrames
    cp.LazyFrames = lambda fit: fit.movie
    try:
        plain = noise_lag_correlation(shared)
        assert cp._neighbour_task(Frames(shared)) == plain  # off by default (see EXTRAPOLATE_NOISE_PROFILE)
        monkeypatch.setattr(cp, "EXTRAPOLATE_NOISE_PROFILE", True)
        assert cp._neighbour_task(Frames(independent)) == noise_lag_correlation(independent)
        taken = cp._neighbour_task(Frames(shared))
        assert taken != plain
        assert taken == noise_lag_correlation_extrapolated(shared, plain=plain)
    finally:
        cp.LazyFrames = saved


@pytest.mark.parametrize("n_frames", [12, 65, 200])  # pairs overlapping (step 1) or not
def test_noise_lag_correlation_is_the_plain_formula_on_the_strided_differences(n_frames):
    # the lag products are summed in one pass (in float64): the definition, products of the shifted views, to
    # float64 rounding
    from pmdcompress.preprocess import COHERENT_MIN_FRAMES, noise_lag_correlation, remove_coherent

    rng = np.random.default_rng(n_frames)
    frames = rng.normal(0, 1, (n_frames, 19, 23)).astype(np.float32)
    frames += rng.normal(0, 1, (n_frames, 1, 1)).astype(np.float32)  # a shared signal for remove_coherent
    n = min(n_frames - 1, 64)
    idx = np.arange(0, max((n_frames - 1) // n, 1) * n, max((n_frames - 1) // n, 1))
    d = frames[idx + 1] - frames[idx]
    d -= d.mean(axis=0)
    if n >= COHERENT_MIN_FRAMES:
        d = remove_coherent(d)

    def plain(a, b):
        a, b = a.astype(np.float64), b.astype(np.float64)
        return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))

    want_y = [plain(d[:, :-lag, :], d[:, lag:, :]) for lag in range(1, 5)]
    want_x = [plain(d[:, :, :-lag], d[:, :, lag:]) for lag in range(1, 5)]
    got_y, got_x = noise_lag_correlation(frames, lags=4)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got_x, want_x, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("size", [1, 2, 3, 8, 63, 64, 201])
def test_median_mad_of_sorted_matches_numpys_two_medians(size):
    """The shared kernel of demix's normalisation and the report's signal mask, against its plain-numpy twin."""
    from pmdcompress.preprocess import median_mad_of_sorted

    rng = np.random.default_rng(size)
    for x in (rng.standard_normal(size), np.round(rng.standard_normal(size) * 2), rng.exponential(size=size)):
        x = np.sort(x)  # ties (the rounded draw) and skew (the exponential) included
        med, mad = median_mad_of_sorted(x)
        assert med == np.median(x) and mad == np.median(np.abs(x - np.median(x)))


def test_noise_differences_read_in_parts_are_the_same_and_their_number_is_bounded(monkeypatch):
    """The frame differences of the noise profile are read a few pairs at a time (the same values as one read of
    every pair), and fewer pairs are taken where 64 would hold more than NOISE_PAIRS_BYTES (at least 16)."""
    from scipy import ndimage

    from pmdcompress import preprocess

    rng = np.random.default_rng(5)
    frames = rng.normal(0, 1, (150, 40, 48)).astype(np.float32)
    frames += ndimage.uniform_filter(rng.normal(0, 1, (150, 40, 48)), (0, 3, 3)).astype(np.float32)
    whole = preprocess._noise_differences(frames, 64)
    monkeypatch.setattr(preprocess, "NOISE_READ_BYTES", 8 * 40 * 48 * 5)  # 5 pairs a read: 13 reads
    np.testing.assert_array_equal(preprocess._noise_differences(frames, 64), whole)
    assert preprocess.noise_lag_correlation(frames) == preprocess._lag_correlations(whole, preprocess.NOISE_LAGS)
    monkeypatch.setattr(preprocess, "NOISE_PAIRS_BYTES", 4 * 40 * 48 * 20)  # room for 20 pairs
    assert len(preprocess._noise_differences(frames, 64)) == 20
    monkeypatch.setattr(preprocess, "NOISE_PAIRS_BYTES", 4 * 40 * 48 * 3)  # room for 3: the floor of 16
    assert len(preprocess._noise_differences(frames, 64)) == preprocess.MIN_NOISE_PAIRS
