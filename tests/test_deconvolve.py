"""Spike inference (pmdcompress.demix.deconvolve): the OASIS kernel against numpy twins, estimates, recovery."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_demix as ref
from pmdcompress.demix.deconvolve import (
    MIN_TRACES_FOR_RISE,
    ar2_rise,
    deconvolve,
    estimate_baseline,
    estimate_decay,
    estimate_rise,
    noise_sd,
    oasis_ar1,
    oasis_ar2,
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


# --- AR(2): a rise that spans frames ---------------------------------------------------------------------------


def _ar2_traces(n, t_len, d, r, rate, sn, seed):
    """Rows of ``(1 - d B)(1 - r B) c = s`` with Poisson spikes ``s``, plus white noise of SD ``sn``."""
    from scipy import signal

    rng = np.random.default_rng(seed)
    spikes = rng.poisson(rate, (n, t_len)).astype(np.float64)
    c = signal.lfilter([1.0], [1.0, -(d + r), d * r], spikes, axis=1)
    return spikes, c, c + sn * rng.standard_normal((n, t_len))


def _exact_acov(h, noise_var, lags):
    """Autocovariance of ``h * s + noise`` for white ``s`` of unit variance (lags 0..lags)."""
    acov = np.array([h[: h.size - k] @ h[k:] for k in range(lags + 1)])
    acov[0] += noise_var
    return acov


@pytest.mark.parametrize("d, r", [(0.95, 0.5), (0.9, 0.2), (0.98, 0.7)])
def test_ar2_rise_is_exact_on_an_exact_autocovariance(d, r):
    k = np.arange(4000)
    h = (d ** (k + 1) - r ** (k + 1)) / (d - r)  # impulse response of the AR(2) rise-and-decay model
    assert ar2_rise(_exact_acov(h, noise_var=3.0, lags=8)) == pytest.approx(r, abs=1e-8)


def test_ar2_rise_refuses_a_double_decay_and_a_single_one():
    k = np.arange(4000)
    double = 0.7 * 0.95**k + 0.3 * 0.5**k  # a slow and a fast decay: same roots as a rise, other sign
    assert ar2_rise(_exact_acov(double, noise_var=1.0, lags=8)) == 0.0
    assert ar2_rise(_exact_acov(0.95**k, noise_var=1.0, lags=8)) == 0.0
    assert ar2_rise(np.ones(4)) == 0.0  # too few lags


def test_estimate_rise_needs_two_thirds_of_the_traces_and_enough_of_them():
    k = np.arange(4000)
    rise = _exact_acov((0.95 ** (k + 1) - 0.5 ** (k + 1)) / 0.45, 1.0, 8)
    flat = _exact_acov(0.95**k, 1.0, 8)
    assert estimate_rise([rise] * 4 + [flat] * 2) == pytest.approx(0.5, abs=1e-8)
    assert estimate_rise([rise] * 3 + [flat] * 2) == 0.0  # fewer than two thirds
    assert estimate_rise([rise] * (MIN_TRACES_FOR_RISE - 1)) == 0.0


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(5, 200), st.floats(0.3, 0.97), st.floats(0.05, 0.6), st.integers(0, 10**6))
def test_oasis_ar2_recovers_noiseless_spikes(t_len, d, r_frac, seed):
    r = r_frac * d
    spikes, c, _ = _ar2_traces(1, t_len, d, r, 0.2, 0.0, seed)
    c_fit, s_fit = oasis_ar2(c[0], d, r, 0.0)
    np.testing.assert_allclose(s_fit, spikes[0], atol=1e-8 * (1 + spikes.max()))
    np.testing.assert_allclose(c_fit, c[0], atol=1e-8 * (1 + c.max()))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.integers(1, 300), st.floats(0.0, 0.99), st.integers(0, 10**6))
def test_ar1_filter_kernel_is_lfilter(t_len, r, seed):
    from scipy import signal

    from pmdcompress.demix.deconvolve import _ar1_filter_kernel

    z = np.random.default_rng(seed).standard_normal(t_len)
    out = np.empty_like(z)
    _ar1_filter_kernel(z, r, out)
    np.testing.assert_allclose(out, signal.lfilter([1.0], [1.0, -r], z), rtol=1e-12, atol=1e-12)


def test_oasis_ar2_without_a_rise_is_oasis_ar1():
    _, _, y = _ar1_trace(500, 0.9, 0.1, 0.3, seed=4)
    for a, b in zip(oasis_ar2(y, 0.9, 0.0, 0.2), oasis_ar1(y, 0.9, 0.2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_deconvolve_finds_the_rise_and_places_spikes_better_than_ar1():
    fs, tau, tau_rise = 30.0, 0.7, 0.05
    d, r = np.exp(-1 / (tau * fs)), np.exp(-1 / (tau_rise * fs))
    spikes, c, y = _ar2_traces(20, 3000, d, r, 0.02, 0.1, seed=6)
    s2, denoised, p = deconvolve(y + 2.0, fs)
    s1, denoised1, p1 = deconvolve(y + 2.0, fs, rise=0.0)
    assert np.all(p["rise_g"] == p["rise_g"][0]) and p["tau_rise_s"][0] == pytest.approx(tau_rise, rel=0.2)
    assert np.median(p["tau_s"]) == pytest.approx(tau, rel=0.1)
    assert np.all(p1["rise_g"] == 0) and np.all(p1["tau_rise_s"] == 0)

    def median_r(s):
        bins = lambda x: x[:, : x.shape[1] // 2 * 2].reshape(x.shape[0], -1, 2).sum(axis=2)  # noqa: E731
        return np.median([np.corrcoef(a, b)[0, 1] for a, b in zip(bins(s), bins(spikes), strict=True)])

    assert median_r(s2) > median_r(s1) + 0.1  # AR(1) splits each rise over two bins
    # The fitted calcium is closer to the truth too (both carry the baseline estimate's offset on such busy traces).
    assert np.sqrt(np.mean((denoised - c - 2.0) ** 2)) < 0.9 * np.sqrt(np.mean((denoised1 - c - 2.0) ** 2))


def test_deconvolve_keeps_ar1_where_traces_show_no_rise():
    rows = [_ar1_trace(2000, 0.95, 0.03, 0.2, seed=10 + i)[2] for i in range(12)]
    s, c, p = deconvolve(np.array(rows), 30.0)
    s1, c1, _ = deconvolve(np.array(rows), 30.0, rise=0.0)
    assert np.all(p["rise_g"] == 0)
    np.testing.assert_array_equal(s, s1)
    np.testing.assert_array_equal(c, c1)
    with pytest.raises(ValueError, match="rise"):
        deconvolve(np.array(rows), 30.0, rise=1.0)
