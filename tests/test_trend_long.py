"""Long rows: the trend filter decided on a window, then one fixed-penalty solve of the whole row
(solver/temporal.py ``long_row_filter``, solver/trend_filter.py ``trend_filter_from``)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import lfilter

import reference_penalties as ref
from pmdcompress.solver import temporal
from pmdcompress.solver import trend_filter as tf


def calcium_row(rng, n, rate=0.01, tau=10.0, amplitude=4.0):
    """Calcium-like factor: jumps at random frames, exponential decay over ``tau`` frames."""
    jumps = (rng.random(n) < rate) * rng.exponential(amplitude, n)
    return np.convolve(jumps, np.exp(-np.arange(int(8 * tau)) / tau))[:n]


@pytest.mark.parametrize("seed", range(6))
def test_chunked_start_solves_the_whole_row_as_the_twin(seed):
    """Chunks of 9-25 frames with 2-5 frames of context: the result is the whole row's optimum (the slow
    bounded least-squares twin), whatever the start."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 80))
    y = calcium_row(rng, n, rate=0.08, tau=4.0) + rng.normal(0, 0.5, n) + np.linspace(0, rng.normal(), n)
    lam = float(rng.choice([0.05, 0.5, 3.0]))
    start = np.sign(rng.normal(size=n - 2)).astype(np.int8) * (rng.random(n - 2) < 0.3)
    for chunk, overlap in ((9, 2), (25, 5), (0, 2)):
        x = tf.trend_filter_from(y, lam, active=start.copy(), chunk=chunk, overlap=overlap)
        np.testing.assert_allclose(x, ref.trend_filter_reference(y, lam), atol=1e-7 * max(1.0, np.abs(y).max()))


def test_chunked_start_on_a_long_row_gives_the_cold_solve():
    rng = np.random.default_rng(3)
    n = 12000
    y = calcium_row(rng, n) + 2.0 * np.exp(-np.arange(n) / 5000) + rng.normal(0, 1.0, n)
    for lam in (1.0, 4.0):
        cold = tf.trend_filter(y, lam)
        for start in (None, temporal.curvature_signs(y)):
            active = None if start is None else start.copy()
            x = tf.trend_filter_from(y, lam, active=active, chunk=2000, overlap=50)
            np.testing.assert_allclose(x, cold, rtol=0, atol=1e-9 * np.abs(y).max())


def test_curvature_signs_marks_the_kinks_of_a_clean_piecewise_linear_row():
    t = np.arange(300.0)
    y = np.interp(t, [0, 100, 200, 299], [0.0, 30.0, 0.0, 0.0])
    signs = temporal.curvature_signs(y)
    assert signs.shape == (298,) and signs.dtype == np.int8
    assert set(np.flatnonzero(signs == -1)) & {98, 99}  # the peak at frame 100 (index i: frames i..i+2)
    assert set(np.flatnonzero(signs == 1)) & {198, 199}
    assert not signs[10:90].any() and not signs[110:190].any() and not signs[210:288].any()
    assert (signs[90:110] >= 0).sum() == np.count_nonzero(signs[90:110] == 0)  # no wrong sign at the peak


def noise_units_rms(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def test_long_row_filter_is_as_close_to_the_truth_as_the_whole_row_filter():
    """Decided on the central window, fitted once: as close to the truth as the filter decided and fitted
    twice on all frames (which also restores the events of its smoother first fit: a few more frames, noise
    in calcium rows), within a fifth of the noise of it."""
    rng = np.random.default_rng(0)
    n, window = 9000, 3000
    close, errors = [], []
    for _ in range(6):
        truth = calcium_row(rng, n) + rng.uniform(1, 3) * np.exp(-np.arange(n) / rng.uniform(3000, 9000))
        y = truth + rng.normal(0, 1.0, n)
        whole, whole_info = temporal.adaptive_trend_filter(y, 1.0)
        long, info = temporal.long_row_filter(y, 1.0, window=window)
        assert info["budget"] == whole_info["budget"] == 1.0
        assert info["lam"] > 0 and 0.5 < info["fraction"] < 1.0
        close.append(noise_units_rms(long, whole))
        errors.append((noise_units_rms(long, truth), noise_units_rms(whole, truth)))
    assert np.median(close) < 0.2 and max(close) < 0.25, close
    long_error, whole_error = np.mean(errors, axis=0)
    assert long_error <= 1.01 * whole_error, errors
    assert long_error < 0.5  # the filter removes most of the noise (std 1)


def test_a_row_whose_signal_differs_outside_the_window_gets_its_own_penalty():
    """The window holds noise alone (its penalty: the least-squares line), the rest of the row a dense fast
    signal that this penalty would shave: the row's own searches find a penalty that keeps it, as close to
    the truth as the filter decided on all frames."""
    n, window = 9000, 3000
    start = (n - window) // 2
    for seed in range(2):
        rng = np.random.default_rng(seed)
        noise = rng.normal(0, 1.0, n)
        truth = lfilter([1.0], [1.0, -0.8], rng.normal(0, 0.8, n))
        truth[start:start + window] = 0.0
        y = truth + noise
        _, window_info = temporal.adaptive_trend_filter(y[start:start + window], 1.0)
        x, info = temporal.long_row_filter(y, 1.0, window=window)
        whole, whole_info = temporal.adaptive_trend_filter(y, 1.0)
        assert info["lam"] < 0.5 * window_info["lam"]
        assert 0.5 * whole_info["lam"] < info["lam"] < 2.0 * whole_info["lam"]
        assert noise_units_rms(x, truth) < 1.02 * noise_units_rms(whole, truth)
        assert temporal.removed_lag1(y - x, x != y) <= temporal.WHITENESS_Z / np.sqrt(n)


def test_rows_up_to_the_window_take_the_whole_row_path_and_longer_ones_the_long_path(monkeypatch):
    """Rows of at most BUDGET_WINDOW_FRAMES: each row filtered by adaptive_trend_filter (bit-identical to the
    path before the long-row filter); longer: by long_row_filter."""
    window = 600
    monkeypatch.setattr(temporal, "BUDGET_WINDOW_FRAMES", window)
    rng = np.random.default_rng(2)
    rows = np.array([calcium_row(rng, window) + rng.normal(0, 1.0, window) for _ in range(3)])
    got, info = temporal.trend_filter_rows(rows, return_info=True)
    sigma = temporal.robust_noise_std(rows)
    seeds, rates = {}, np.full(3, temporal.EVENT_P)
    budgets = temporal.group_budgets(rows, sigma, np.zeros(3, np.int64), seeds=seeds, event_rates=rates)
    lam = None
    for i in range(3):
        active, seed_lam = seeds[i]
        x, row_info = temporal.adaptive_trend_filter(rows[i], float(sigma[i]), budget=float(budgets[i]),
                                                     lam0=lam if seed_lam is None else seed_lam, active=active,
                                                     event_p=float(rates[i]))
        lam = row_info["lam"] if row_info["lam"] > 0 else lam
        np.testing.assert_array_equal(got[i], x.astype(np.float32))
    calls = []
    original = temporal.long_row_filter
    monkeypatch.setattr(temporal, "long_row_filter", lambda *a, **k: calls.append(1) or original(*a, **k))
    longer = np.concatenate([rows, rows[:, :5]], axis=1)
    temporal.trend_filter_rows(longer)
    assert len(calls) == 3


def spike_row(rng, n, rate=0.004, amplitude=4.0):
    """Voltage-like factor: spikes of 1-2 frames on a slow drift; ``(truth, spike frames)``."""
    spikes = np.flatnonzero(rng.random(n) < rate)
    truth = np.zeros(n)
    truth[spikes] = amplitude * (1 + 0.3 * rng.random(spikes.size))
    truth[np.minimum(spikes + 1, n - 1)] += 0.4 * amplitude
    return truth + np.cumsum(np.convolve(rng.normal(0, 0.05, n), np.ones(200) / 200, "same")) * 0.05, spikes


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_long_rows_with_fast_events_keep_their_spikes_as_the_whole_row_filter(seed, monkeypatch):
    """A window showing events that only the smoother first fit restores makes the row fitted twice: its
    spikes keep the amplitude that the filter on all frames keeps; one fit shaves them (the test can fail)."""
    rng = np.random.default_rng(seed)
    n, window = 9000, 3000
    truth, spikes = spike_row(rng, n)
    y = truth + rng.normal(0, 1.0, n)
    whole, _ = temporal.adaptive_trend_filter(y, 1.0)
    kept_whole = np.median(whole[spikes] / truth[spikes])
    long, _ = temporal.long_row_filter(y, 1.0, window=window)
    assert abs(np.median(long[spikes] / truth[spikes]) - kept_whole) < 0.01
    monkeypatch.setattr(temporal, "LONG_EVENT_SHARE", np.inf)
    one_fit, _ = temporal.long_row_filter(y, 1.0, window=window)
    assert np.median(one_fit[spikes] / truth[spikes]) < kept_whole - 0.03


def _sorted_noise_std(rows):
    # robust_noise_std by a full sort (its form before the partition): the central order statistics' mean
    d = np.diff(np.asarray(rows, np.float64), axis=1)
    a = np.sort(np.abs(d - np.median(d, axis=1, keepdims=True)), axis=1)
    lo, hi = (int(q * a.shape[1]) for q in temporal.NOISE_QUANTILES)
    return a[:, lo:max(hi, lo + 1)].mean(axis=1) / temporal._CENTRAL_MEAN / np.sqrt(2.0)


@pytest.mark.parametrize("frames", [2, 3, 7, 10, 101, 2048, 2049, 5000, 20000])
def test_robust_noise_std_partition_gives_the_full_sort_to_the_last_bit(frames):
    # rows of at least SELECT_MIN_FRAMES differences take the sampled selection (_central_order_statistics)
    rng = np.random.default_rng(frames)
    rows = rng.normal(size=(8, frames)) * np.array([[1.0], [3.0], [0.1], [1.0], [2.0], [1.0], [1.0], [1e-300]])
    rows[3] = np.round(rows[3] / 0.17) * 0.17  # rounded factors: many tied differences
    rows[4, frames // 2 :] += 50.0  # a step
    rows[5] = 0.0
    rows[6, ::97] += 40.0  # spikes, and a slow drift
    rows[6] += np.linspace(0.0, 30.0, frames)
    for dtype in (np.float32, np.float64):
        got = temporal.robust_noise_std(rows.astype(dtype))
        np.testing.assert_array_equal(got, _sorted_noise_std(rows.astype(dtype)))
    assert got[5] == 0.0
    if frames > 100:
        assert got[1] > 2.0 * got[0]


@pytest.mark.parametrize("margin", [-0.3, 0.0, 0.5])
def test_robust_noise_std_selection_whose_guess_misses_still_gives_the_full_sort(monkeypatch, margin):
    # a negative margin puts the wanted ranks outside the gathered values: each row is then sorted whole
    monkeypatch.setattr(temporal, "SELECT_MARGIN", margin)
    rows = np.random.default_rng(1).standard_t(3, size=(5, 4001))
    np.testing.assert_array_equal(temporal.robust_noise_std(rows), _sorted_noise_std(rows))
    rows[2, 7] = np.nan  # a non-finite row: numpy's own median and partition, as before
    np.testing.assert_array_equal(temporal.robust_noise_std(rows), _sorted_noise_std(rows))


def test_values_between_matches_its_numpy_twin():
    rng = np.random.default_rng(3)
    v = np.round(rng.normal(size=3001), 1)
    out = np.empty(v.size)
    for low, high in [(-0.5, 0.5), (0.1, 0.1), (-np.inf, 0.0), (0.0, np.inf), (2.0, -2.0)]:
        count, below = temporal._values_between(v, low, high, out)
        np.testing.assert_array_equal(out[:count], v[(v >= low) & (v <= high)])
        assert below == np.sum(v < low)


@pytest.mark.parametrize("seed", range(3))
def test_trend_df_counts_the_knots_as_piecewise_linear_df(seed):
    from pmdcompress.formats.store import piecewise_linear_df

    rng = np.random.default_rng(seed)
    n = 3000
    knots = np.sort(rng.choice(np.arange(1, n - 1), 40, replace=False))
    slopes = np.where(np.arange(41) % 2, 1.0, -1.0) * (0.5 + rng.random(41))  # each kink >= 1
    x = np.cumsum(np.repeat(slopes, np.diff(np.concatenate([[0], knots, [n]]))))  # 40 kinks
    rows = [x, x + 1e-7 * rng.normal(size=n), np.zeros(n), np.ones(2), np.zeros(0), -x * 1e3,
            np.round(x * 4) / 4]
    for row in rows:
        assert temporal.trend_df(row) == int(piecewise_linear_df(row)[0])
        assert temporal.trend_df(row, 1e-2) == int(piecewise_linear_df(row, 1e-2)[0])
    assert temporal.trend_df(x) == 42


def test_long_rows_penalty_searches_start_from_the_previous_rows_ratios(monkeypatch):
    """The long rows of a block start their penalty searches at the ratios that the previous row found: the
    same budgets and event rates, every row within its searches' tolerance of the filter without them (the
    searches end elsewhere inside their tolerance), in fewer solves."""
    window, n = 1500, 4500
    monkeypatch.setattr(temporal, "BUDGET_WINDOW_FRAMES", window)
    rng = np.random.default_rng(5)
    truth = np.array([calcium_row(rng, n, rate=0.02) for _ in range(16)])
    rows = truth + rng.normal(0, 1.0, truth.shape)
    solves = []
    original = tf._constrained_tf_kernel_from

    def counted(*args):
        out = original(*args)
        solves.append(out[2])
        return out

    monkeypatch.setattr(tf, "_constrained_tf_kernel_from", counted)
    got, info = temporal.trend_filter_rows(rows, return_info=True)
    with_ratios = sum(solves)
    solves.clear()
    monkeypatch.setattr(temporal, "LONG_RATIO_STARTS", False)
    plain, plain_info = temporal.trend_filter_rows(rows, return_info=True)
    assert sum(solves) > 1.1 * with_ratios, (sum(solves), with_ratios)
    for a, b in zip(info, plain_info, strict=True):
        assert a["budget"] == b["budget"] > 0 and a["event_p"] == b["event_p"]
        assert abs(a["fraction"] - b["fraction"]) < 0.05 * b["fraction"]
    # the whole-row search accepts residuals down to LONG_RTOL below its budget: fits at two penalties there
    # differ by at most ~sqrt(LONG_RTOL * fraction) noise SDs RMS (0.27); nearly all end much closer
    apart = [noise_units_rms(a, b) for a, b in zip(got, plain, strict=True)]
    assert np.median(apart) < 0.05 and max(apart) < 0.15, apart
    errors = [noise_units_rms(a, t) for a, t in zip(got, truth, strict=True)]
    plain_errors = [noise_units_rms(a, t) for a, t in zip(plain, truth, strict=True)]
    assert np.mean(errors) < 1.01 * np.mean(plain_errors)
