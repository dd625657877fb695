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


def test_fission_estimate_is_unbiased_on_noise_and_sees_shaved_signal():
    from pmdcompress.solver.temporal import fission_removed

    rng = np.random.default_rng(6)
    noise = [fission_removed(rng.normal(0, 1.0, 600), 1.0, 1.0)[0] for _ in range(40)]
    # sum of 40 removed estimates of pure noise: mean 0 (each has a std of about sqrt(600 * 5 * 0.2))
    assert abs(np.sum(noise)) < 3 * np.sqrt(40 * 600 * 5 * 0.25)
    t = np.arange(600)
    truth = 2.0 * np.sin(2 * np.pi * t / 25.0)  # too fast for the full budget: it shaves the sine
    estimates = [fission_removed(truth + rng.normal(0, 1.0, t.size), 1.0, 1.0) for _ in range(16)]
    removed, signal = np.array(estimates)[:, 0], np.array(estimates)[:, 1]
    shaved = np.sum(removed) / np.sum(signal)
    full, _ = adaptive_trend_filter(truth + rng.normal(0, 1.0, t.size), 1.0)
    assert shaved > 0.05 and signal_removed(full, truth) > 0.05


def test_a_group_whose_signal_the_filter_shaves_gets_a_smaller_budget():
    from pmdcompress.solver.temporal import trend_filter_rows

    rng = np.random.default_rng(7)
    n, k = 600, 16
    t = np.arange(n)
    # A frame-wide fluctuation seen by every factor of a patch (flicker, a slow wave of activity) that the
    # whole budget would shave, and a group of factors that hold noise only.
    common = 2.0 * np.sin(2 * np.pi * t / 25.0) + np.sin(2 * np.pi * t / 11.0)
    truth = common[None, :] * rng.uniform(0.5, 1.5, (k, 1))
    rows = np.vstack([truth + rng.normal(0, 1.0, (k, n)), rng.normal(0, 1.0, (k, n))]).astype(np.float32)
    groups = np.repeat([0, 1], k)
    out, info = trend_filter_rows(rows, groups=groups, return_info=True)
    budgets = np.array([i["budget"] for i in info])
    assert np.all(budgets[k:] == 1.0)  # noise alone: filtered with the whole budget
    assert np.all(budgets[:k] < 1.0)
    kept = np.mean([1 - signal_removed(out[i].astype(np.float64), truth[i]) for i in range(k)])
    forced = np.mean([1 - signal_removed(adaptive_trend_filter(rows[i], 1.0)[0], truth[i]) for i in range(k)])
    assert kept > 0.97 and forced < kept - 0.03
    assert np.sqrt(np.mean(out[k:].astype(np.float64) ** 2)) < 0.45  # the noise is still removed


def test_groups_must_match_the_rows():
    import pytest

    from pmdcompress.solver.temporal import trend_filter_rows

    with pytest.raises(ValueError, match="groups must hold one value per row"):
        trend_filter_rows(np.zeros((3, 50), np.float32), groups=[0, 1])


def test_the_event_mask_is_the_windowed_energy_test_dilated():
    """event_mask's sums over centred windows equal scipy's uniform filter (edges repeated) and dilation."""
    from scipy.ndimage import binary_dilation, uniform_filter1d
    from scipy.stats import chi2

    from pmdcompress.solver.temporal import event_mask

    rng = np.random.default_rng(8)
    for trial in range(300):
        n, window = int(rng.integers(3, 80)), (3, 5, 1)[trial % 3]
        removed = rng.normal(0, rng.uniform(0.5, 2.0), n)
        removed[rng.integers(n, size=rng.integers(0, 3))] += 6.0
        energy = uniform_filter1d(removed**2, window, mode="nearest") * window
        want = binary_dilation(energy > chi2.ppf(0.99, window), np.ones(window, bool))
        np.testing.assert_array_equal(event_mask(removed, 1.0, window=window, p=0.01), want)


def test_group_levels_are_the_largest_at_which_the_fission_estimate_passes():
    """group_budgets (first fits bracketing the re-fit's budget, re-fits only when needed) picks the level
    that testing every level with the full fission fit picks."""
    from pmdcompress.solver.temporal import (
        FISSION_Z,
        MAX_HALVINGS,
        SIGNAL_REMOVED_LIMIT,
        fission_removed,
        group_budgets,
        robust_noise_std,
    )

    rng = np.random.default_rng(9)
    n, k = 600, 8
    t = np.arange(n)
    # fast calcium (shaved at the whole budget), slower calcium, waves of several speeds, noise alone
    blocks = [np.array([calcium_row(rng, n, rate=0.05, tau=tau, amplitude=a) for _ in range(k)])
              for a, tau in ((2.0, 1.5), (2.0, 6.0), (8.0, 3.0))]
    blocks += [np.array([a * np.sin(2 * np.pi * t / q + rng.uniform(0, 6)) for q in rng.uniform(p, 1.5 * p, k)])
               for a, p in ((1.0, 8.0), (2.0, 15.0), (4.0, 8.0))]
    blocks.append(np.zeros((k, n)))
    levels = []
    for truth in blocks:
        rows = truth + rng.normal(0, 1.0, truth.shape)
        sigma = robust_noise_std(rows)
        want = 0.0
        for level in [0.5**j for j in range(MAX_HALVINGS + 1)]:
            estimates = [fission_removed(r, s, level) for r, s in zip(rows, sigma, strict=True)]
            removed, signal, spread, _ = np.array(estimates).sum(0)
            if signal <= FISSION_Z * np.sqrt(spread) or removed <= SIGNAL_REMOVED_LIMIT * signal:
                want = level
                break
        got = group_budgets(rows, sigma, np.zeros(k, np.int64))
        np.testing.assert_array_equal(got, np.full(k, want))
        levels.append(want)
    assert {1.0, 0.5, 0.25} <= set(levels)  # the cases cover shortcuts, brackets and re-fits


def voltage_rows(rng, n=3000, k=8, amplitude=4.0, n_spikes=60):
    """Factors of one voltage neuron: a large slow oscillation and drift (most of the signal), and spikes of
    2 frames at ``amplitude`` noise stds at the same frames in every factor."""
    truth = 4 * np.sin(2 * np.pi * np.arange(n) / 300.0) + np.linspace(6, 0, n)
    peaks = np.sort(rng.choice(np.arange(20, n - 20), n_spikes, replace=False))
    for p in peaks:
        truth[p : p + 2] += amplitude * np.array([1.0, 0.5])
    return truth, peaks, truth + rng.normal(0, 1.0, (k, n))


def test_restoring_shaved_spikes_is_decided_by_fission_per_factor(monkeypatch):
    """The event rate ladder: factors whose shaved spikes cost more error than restoring them (by fission)
    move to a higher event rate; the spikes keep more of their amplitude (0.72-0.75 -> 0.77-0.80 over these
    seeds), and the error against the truth does not rise."""
    import pmdcompress.solver.temporal as temporal

    kept, error, rates = {}, {}, {}
    for levels in ((temporal.EVENT_P,), temporal.EVENT_P_LEVELS):
        monkeypatch.setattr(temporal, "EVENT_P_LEVELS", levels)
        for seed in range(3):
            truth, peaks, rows = voltage_rows(np.random.default_rng(seed), n_spikes=100)
            x, info = temporal.trend_filter_rows(rows, return_info=True)
            before = np.stack([x[:, p - 6 : p - 2].mean(1) for p in peaks], 1)
            want = np.mean([truth[p] - truth[p - 6 : p - 2].mean() for p in peaks])
            kept[levels, seed] = float(np.mean(x[:, peaks] - before) / want)
            error[levels, seed] = float(np.mean((x - truth) ** 2))
            rates[levels, seed] = [i["event_p"] for i in info]
    fixed, ladder = (temporal.EVENT_P,), temporal.EVENT_P_LEVELS
    for seed in range(3):
        assert set(rates[fixed, seed]) == {temporal.EVENT_P}
        assert max(rates[ladder, seed]) > temporal.EVENT_P
        assert kept[ladder, seed] > kept[fixed, seed] + 0.03
        assert error[ladder, seed] < 1.02 * error[fixed, seed]


def test_factors_of_slow_signal_keep_the_first_event_rate():
    """No spikes: the filter shaves nothing that restoring would win back (median rate the first one)."""
    from pmdcompress.solver.temporal import EVENT_P, trend_filter_rows

    rng = np.random.default_rng(4)
    t = np.arange(3000)
    rows = np.array([2 * np.sin(2 * np.pi * t / q) for q in rng.uniform(150, 300, 8)]) + rng.normal(0, 1, (8, 3000))
    _, info = trend_filter_rows(rows, return_info=True)
    assert np.median([i["event_p"] for i in info]) == EVENT_P


def test_a_given_noise_level_replaces_the_rows_own_estimate():
    from pmdcompress.solver.temporal import robust_noise_std, trend_filter_rows

    rng = np.random.default_rng(5)
    rows = np.array([calcium_row(rng, 600) for _ in range(4)]) + rng.normal(0, 1.0, (4, 600))
    np.testing.assert_array_equal(trend_filter_rows(rows, sigma=robust_noise_std(rows)), trend_filter_rows(rows))
    # a smaller noise level removes less, and a row of noise std 0 is kept as it is
    sigma = robust_noise_std(rows)
    sigma[0], sigma[1] = 0.0, 0.5 * sigma[1]
    out = trend_filter_rows(rows, sigma=sigma).astype(np.float64)
    default = trend_filter_rows(rows).astype(np.float64)
    np.testing.assert_array_equal(out[0], rows[0].astype(np.float32))
    assert np.sum((out[1] - rows[1]) ** 2) < 0.5 * np.sum((default[1] - rows[1]) ** 2)
    import pytest

    with pytest.raises(ValueError, match="sigma must hold one"):
        trend_filter_rows(rows, sigma=[1.0, 1.0])


def test_the_noise_estimate_does_not_move_in_steps_on_rounded_factors():
    """Factors rounded to 0.17 of their noise (the scratch's working step): the median absolute difference
    takes two or three values over many rows, 9-17 % apart; the estimate (its central order statistics
    averaged) follows each row's noise, with less than half the median's spread, and 2.7 % of frames
    spiking move it by about 3 %."""
    from pmdcompress.solver.temporal import robust_noise_std

    rng = np.random.default_rng(11)
    sigma = rng.uniform(0.9, 1.1, 200)
    rows = rng.normal(0, 1, (200, 3000)) * sigma[:, None]
    rows[:, rng.choice(3000, 40, replace=False)] += 8.0  # spikes
    rounded = np.round(rows / 0.173) * 0.173
    d = np.diff(rounded, axis=1)
    mad = 1.4826 * np.median(np.abs(d - np.median(d, axis=1, keepdims=True)), axis=1) / np.sqrt(2.0)
    assert len(np.unique(np.round(mad, 6))) <= 4  # what the plain median gives
    ratio = robust_noise_std(rounded) / sigma
    assert abs(np.median(ratio) - 1) < 0.05 and np.all(np.abs(ratio - 1) < 0.1)
    assert np.std(ratio) < 0.5 * np.std(mad / sigma)


def long_group_rows(seed, n=8000):
    """Three groups of three factors over ``n`` frames with noise std 1: calcium transients on a
    bleaching-like decay (the filter follows them: the whole budget), dense fast fluctuations near the noise
    level on the decay (the filter shaves them: a lower level), and noise alone.  (A group of the decay alone
    is decided near the limit, by chance at any length: a window decides it as differently as another seed.)"""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    t = np.arange(n) / n
    rows = []
    for group in range(3):
        for _ in range(3):
            decay = rng.uniform(1, 3) * np.exp(-t / rng.uniform(0.3, 1.0))
            if group == 0:
                signal = calcium_row(rng, n, rate=0.01, tau=10.0, amplitude=4.0)
            elif group == 1:
                signal = lfilter([1.0], [1.0, -0.8], rng.normal(0, 0.6, n))
            else:
                signal, decay = 0.0, 0.0
            rows.append(decay + signal + rng.normal(0, 1.0, n))
    return np.array(rows), np.repeat(np.arange(3), 3)


def test_budgets_decided_on_the_window_match_the_whole_rows():
    """Rows longer than the window: the levels decided on its central frames are those of all frames."""
    from pmdcompress.solver.temporal import (
        BUDGET_WINDOW_FRAMES,
        group_budgets,
        robust_noise_std,
    )

    levels = set()
    for seed in range(3):
        rows, groups = long_group_rows(seed, n=2 * BUDGET_WINDOW_FRAMES)
        sigma = robust_noise_std(rows)
        whole = group_budgets(rows, sigma, groups)
        start = (rows.shape[1] - BUDGET_WINDOW_FRAMES) // 2
        windowed = group_budgets(np.ascontiguousarray(rows[:, start:start + BUDGET_WINDOW_FRAMES]), sigma, groups)
        np.testing.assert_array_equal(windowed, whole)
        levels |= set(whole.tolist())
    assert levels == {1.0, 0.5}  # the cases decide more than one level


def test_rows_no_longer_than_the_window_are_filtered_as_before():
    """Rows of at most the window's frames take adaptive_trend_filter itself, bit for bit."""
    import pmdcompress.solver.temporal as temporal

    rows, _ = long_group_rows(1, n=temporal.BUDGET_WINDOW_FRAMES)
    sigma = temporal.robust_noise_std(rows)
    for row, s in zip(rows[:3], sigma[:3], strict=True):
        got, _ = temporal.long_row_filter(row, float(s))
        want, _ = temporal.adaptive_trend_filter(np.asarray(row, np.float64), float(s))
        np.testing.assert_array_equal(got, want)
