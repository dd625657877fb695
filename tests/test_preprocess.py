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
