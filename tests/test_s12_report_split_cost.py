"""The report's photon splits at less cost, with the same floats (session 12, issue 13's report cost).

* The signal mask's per-pixel median and median absolute deviation over time come from one sort and a walk
  outwards from the middle (:func:`pmdcompress.report.kernels.median_mad`) instead of two ``np.median`` calls:
  the numpy twin below must give the same floats.
* The balanced and the whole-movie splits of a report measure the same raw frames' shared-signal share and pixel
  moments once (:class:`pmdcompress.report.photon_split.FrameStatistics`): the splits' numbers must be the same as
  when each measured its own.
"""

import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from pmdcompress.report import photon_split as ps
from pmdcompress.report.kernels import median_mad


def median_mad_twin(x):
    """The numpy twin: two medians over time."""
    m = np.median(x, axis=0)
    return m, np.median(np.abs(x - m), axis=0)


@pytest.mark.parametrize("t", [1, 2, 3, 4, 7, 8, 64, 255, 256, 257])
def test_median_mad_is_numpys_to_the_last_bit(t):
    rng = np.random.default_rng(t)
    cases = [rng.standard_normal((t, 9, 70)),  # more pixels than one gathered block
             rng.poisson(1.3, (t, 5, 6)).astype(np.float64) - 1.0,  # many ties, negative values
             uniform_filter(np.diff(rng.poisson(2.0, (t + 1, 12, 13)).astype(np.float64), axis=0), size=(1, 5, 5),
                            mode="nearest"),  # what the signal mask gives it
             np.full((t, 3, 4), 7.25),  # constant: MAD 0
             rng.standard_normal((t, 4, 4)) * 1e6 + 1e9]  # large values, close together
    for x in cases:
        med, mad = median_mad(x)
        twin_med, twin_mad = median_mad_twin(x)
        assert med.shape == x.shape[1:] and np.array_equal(med, twin_med)
        assert np.array_equal(mad, twin_mad)


def test_signal_mask_is_the_numpy_formula():
    rng = np.random.default_rng(5)
    d = np.diff(rng.poisson(3.0, (200, 30, 40)).astype(np.float64), axis=0)
    d[50:55, 10:18, 10:18] += 12.0  # a rise spanning a footprint
    sm = uniform_filter(d, size=(1, 5, 5), mode="nearest")
    twin = np.abs(sm) > 4.0 * np.maximum(1.4826 * median_mad_twin(sm)[1], 1e-12)
    mask = ps._signal_mask(d)
    assert np.array_equal(mask, twin) and mask[50:55, 12:16, 12:16].all()


def _movie(t=120, seed=0):
    """Photon counts x gain + offset with two cells and a neighbour-correlated noise component."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:40, :44]
    cells = [np.exp(-((yy - 12) ** 2 + (xx - 14) ** 2) / 10.0), np.exp(-((yy - 26) ** 2 + (xx - 30) ** 2) / 14.0)]
    traces = [np.convolve(rng.random(t) < 0.05, np.exp(-np.arange(20) / 5.0))[:t] for _ in cells]
    rate = 4.0 + sum(8.0 * tr[:, None, None] * c for tr, c in zip(traces, cells, strict=True))
    counts = rng.poisson(rate).astype(np.float64)
    counts += 0.6 * uniform_filter(rng.standard_normal(counts.shape), size=(1, 2, 1))  # shared between rows
    return (100 + 3.0 * counts).astype(np.float32)


def _denoise(a):
    """A plain temporal smoother standing in for the store's compression (deterministic, cheap)."""
    return uniform_filter(np.asarray(a, np.float64), size=(5, 1, 1), mode="nearest").astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_splits_sharing_their_frames_statistics_give_the_same_numbers(seed):
    frames = _movie(seed=seed)
    region = ((4, 36), (4, 40))
    alone = ps.photon_split(frames, _denoise, seed=seed, region=region)
    alone_whole = ps.whole_split(frames, _denoise, seed=seed, region=region)
    shared = ps.FrameStatistics(frames)
    together = ps.photon_split(frames, _denoise, seed=seed, region=region, statistics=shared)
    together_whole = ps.whole_split(frames, _denoise, seed=seed, region=region, statistics=shared)
    assert shared._moments and shared._coherent is not None  # measured once, kept
    assert together == alone and together_whole == alone_whole
    assert alone["ok"] and np.isfinite(alone["all"]["error_reduction"])


def test_statistics_of_other_frames_are_not_reused():
    frames = _movie()
    shared = ps.FrameStatistics(frames)
    other = frames[:, ::-1].copy()
    mean, var = shared.moments(other, False)
    twin_mean, twin_var = ps.pixel_moments(other)
    assert np.array_equal(mean, twin_mean) and np.array_equal(var, twin_var)
    assert not shared._moments  # other frames' moments are not kept as these frames'
    counts = ps.prepare_counts(other, own_units=True, statistics=shared)
    assert np.array_equal(counts.variance, ps.prepare_counts(other, own_units=True).variance)


def test_the_raw_frames_moments_are_measured_once_for_both_splits(monkeypatch):
    frames = _movie(seed=2)
    calls = []
    measure = ps.pixel_moments

    def counted(x, *args, **kwargs):
        calls.append(x is frames)
        return measure(x, *args, **kwargs)

    monkeypatch.setattr(ps, "pixel_moments", counted)
    ps.photon_split(frames, _denoise, statistics=(shared := ps.FrameStatistics(frames)))
    ps.whole_split(frames, _denoise, statistics=shared)
    assert calls.count(True) == 1
    calls.clear()
    ps.photon_split(frames, _denoise)
    ps.whole_split(frames, _denoise)
    assert calls.count(True) == 2  # each split on its own measures them again


def _split_twin(counts, seed, fraction, chunk=256):
    """The Gaussian-fission halves as written until session 12: full complex FFTs (the real part kept)."""
    import math

    n_all = counts.counts
    filt = ps._correlation_filter(n_all.shape[1:], {} if counts.white else counts.correlations)
    spread = math.sqrt(fraction * (1.0 - fraction))
    scale = spread * np.sqrt(np.clip(counts.variance, 0.0, None))
    a = np.empty(n_all.shape, np.float32)
    for t0 in range(0, n_all.shape[0], chunk):
        rng = np.random.default_rng([seed, 13, t0])
        n = np.asarray(n_all[t0 : t0 + chunk], np.float64)
        z = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal(n.shape), axes=(1, 2)) * filt, axes=(1, 2))) * scale
        a[t0 : t0 + chunk] = fraction * n + z
    return a


@pytest.mark.parametrize(("shape", "fraction"), [((300, 31, 40), 0.5), ((40, 24, 17), 0.8)])
def test_gaussian_fission_by_real_ffts_is_the_complex_ffts_noise(shape, fraction):
    rng = np.random.default_rng(9)
    counts = ps.Counts(ok=True, counts=rng.poisson(5.0, shape).astype(np.float32), variance=np.full(shape[1:], 5.0),
                       method="correlated", correlations={(0, 1): 0.04, (1, 0): 0.02, (1, 1): 0.01, (2, -1): 0.005})
    a, b = ps.split(counts, seed=3, fraction=fraction)
    twin = _split_twin(counts, 3, fraction)
    # float32 A: the same values but where float64 z, 2e-15 apart, round to neighbouring float32 values
    assert np.mean(a != twin) < 1e-4 and np.allclose(a, twin, rtol=2e-7, atol=2e-6)
    assert np.array_equal(b, counts.counts - a)
