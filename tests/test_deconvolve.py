"""Spike inference (pmdcompress.demix.deconvolve): the OASIS kernel against numpy twins, estimates, recovery."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_demix as ref
from pmdcompress.demix.deconvolve import (
    deconvolve,
    estimate_baseline,
    estimate_decay,
    noise_sd,
    oasis_ar1,
)


def _ar1_trace(t_len, g, rate, sn, seed, b=0.0):
    rng = np.random.default_rng(seed)
    spikes = rng.poisson(rate, t_len).astype(np.float64)
    c = np.zeros(t_len)
    for t in range(t_len):
        c[t] = (g * c[t - 1] if t else 0.0) + spikes[t]
    return spikes, c, b + c + sn * rng.standard_normal(t_len)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.integers(2, 80), st.floats(0.0, 0.98), st.floats(0.0, 0.5), st.integers(0, 10**6))
def test_oasis_without_threshold_is_the_nnls_solution(t_len, g, sn, seed):
    _, _, y = _ar1_trace(t_len, g, 0.2, sn, seed)
    c, s = oasis_ar1(y, g, 0.0)
    c_ref, s_ref = ref.oasis_ar1_nnls(y, g)
    np.testing.assert_allclose(c, c_ref, rtol=1e-4, atol=1e-4 * (1 + np.abs(y).max()))
    assert np.all(s >= 0)
    # Same objective (the NNLS optimum is unique in c).
    assert np.sum((y - c) ** 2) <= np.sum((y - c_ref) ** 2) + 1e-6 * (1 + np.sum(y**2))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(5, 80), st.floats(0.3, 0.97), st.floats(0.05, 1.0), st.integers(0, 10**6))
def test_thresholded_oasis_is_least_squares_on_its_support(t_len, g, s_min, seed):
    _, _, y = _ar1_trace(t_len, g, 0.3, 0.3, seed, b=0.0)
    c, s = oasis_ar1(y, g, s_min)
    support = s > 0
    support[0] = c[0] > 0  # the first pool's start is free unless it was clipped at zero
    c_ref, _ = ref.ar1_fit_on_support(y, g, support)
    np.testing.assert_allclose(c, c_ref, rtol=1e-4, atol=1e-4 * (1 + np.abs(y).max()))
    assert np.all(s[1:][s[1:] > 0] >= s_min * (1 - 1e-9))  # every spike is 0 or at least s_min


def test_estimates_on_a_simulated_ar1_trace():
    g_true, sn_true, b_true = 0.95, 0.3, 5.0
    spikes, _, y = _ar1_trace(20000, g_true, 0.02, sn_true, seed=1, b=b_true)
    sn = noise_sd(y)
    assert sn == pytest.approx(sn_true, rel=0.1)
    assert estimate_decay(y, sn, max_lag=10) == pytest.approx(g_true, abs=0.02)
    assert estimate_baseline(y, sn) == pytest.approx(b_true, abs=0.2)


def test_deconvolve_recovers_spike_times():
    fs = 30.0
    spikes, _, y = _ar1_trace(3000, np.exp(-1 / (0.5 * fs)), 0.03, 0.2, seed=2, b=3.0)
    s, denoised, params = deconvolve(y[None], fs)
    assert s.shape == (1, 3000) and s.dtype == np.float32
    bins = lambda x: x[: x.size // 2 * 2].reshape(-1, 2).sum(axis=1)  # noqa: E731
    r = np.corrcoef(bins(s[0]), bins(spikes))[0, 1]
    assert r > 0.8
    assert params["tau_s"][0] == pytest.approx(0.5, rel=0.2)
    assert np.sqrt(np.mean((denoised[0] - y) ** 2)) == pytest.approx(0.2, rel=0.25)  # fits down to the noise


def test_deconvolve_degenerate_rows():
    s, d, p = deconvolve(np.array([[1.0, 1.0, 1.0, 1.0, 1.0], [0.0, np.nan, 1.0, 2.0, 3.0]]), 10.0)
    assert np.all(s == 0) and d[0, 0] == 1.0 and p["g"][0] == 0.0
    with pytest.raises(ValueError, match="fs"):
        deconvolve(np.zeros((1, 10)), 0.0)


@pytest.mark.parametrize("t_len", [8, 50, 300, 1001])
def test_noise_sd_is_welchs_upper_band(t_len):
    from scipy import signal

    rng = np.random.default_rng(t_len)
    y = np.cumsum(rng.standard_normal(t_len)) * 0.01 + 0.5 * rng.standard_normal(t_len)
    freq, pxx = signal.welch(y, nperseg=min(256, t_len))
    assert noise_sd(y) == pytest.approx(np.sqrt(pxx[freq > 0.25].mean() / 2), rel=1e-9)
