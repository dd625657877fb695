import numpy as np

from pmdcompress.preprocess import NoiseAccumulator, noise_std_psd, safe_scale


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
