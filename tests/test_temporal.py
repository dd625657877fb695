"""The adaptive temporal filter's budget: the noise the fit leaves out, not all of it (solver/temporal.py)."""

import numpy as np

from pmdcompress.solver.penalties import constrained_trend_filter
from pmdcompress.solver.temporal import adaptive_trend_filter, trend_df


def calcium_row(rng, n=1500, rate=0.02, tau=6.0, amplitude=3.0):
    """Calcium-like factor: jumps of random size at random frames, exponential decay over ``tau`` frames."""
    jumps = (rng.random(n) < rate) * rng.exponential(amplitude, n)
    return np.convolve(jumps, np.exp(-np.arange(int(8 * tau)) / tau))[:n]


def signal_removed(x, truth):
    """Share of the truth's variance that the removed part ``truth - x`` still holds (covariance)."""
    t = truth - truth.mean()
    return float(np.dot(truth - x, t) / np.dot(t, t))


def test_trend_df_counts_knots_plus_two():
    x = np.interp(np.arange(30.0), [0, 10, 20, 29], [0.0, 10.0, 5.0, 5.0])
    assert trend_df(x) == 2 + 2  # kinks at frames 10 and 20
    assert trend_df(np.linspace(0, 1, 50)) == 2


def test_calcium_peaks_are_shaved_less_at_about_the_same_error():
    # The full T sigma^2 budget (discrepancy principle) can only be met by shaving about df sigma^2 of
    # signal; the (T - df) sigma^2 budget keeps most of it, at about the same error against the truth.
    rng = np.random.default_rng(4)
    removed_full, removed_df, err_full, err_df = [], [], [], []
    for _ in range(6):
        truth = calcium_row(rng)
        row = truth + rng.normal(0, 1.0, truth.size)
        x, info = adaptive_trend_filter(row, 1.0)
        assert info["budget"] == 1.0 and info["fraction"] < 1.0
        full, _ = constrained_trend_filter(row, truth.size * 1.0)
        removed_full.append(signal_removed(np.asarray(full, np.float64), truth))
        removed_df.append(signal_removed(x, truth))
        err_full.append(np.mean((full - truth) ** 2))
        err_df.append(np.mean((x - truth) ** 2))
    assert np.mean(removed_df) < 0.1 and np.mean(removed_df) < 0.5 * np.mean(removed_full)
    assert np.mean(err_df) < 1.1 * np.mean(err_full)
    assert np.mean(err_df) < 0.5  # the raw error is 1


def test_pure_noise_is_still_filtered():
    rng = np.random.default_rng(5)
    for n in (200, 2000):
        x, info = adaptive_trend_filter(rng.normal(0, 1.0, n), 1.0)
        assert info["budget"] == 1.0 and info["fraction"] > 0.8
        assert np.sqrt(np.mean(x**2)) < 0.45  # the raw error is 1
