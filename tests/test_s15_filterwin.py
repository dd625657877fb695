"""Session 15: the long rows' group decisions skip the fission re-fits of a level far over the limit
(solver/temporal.py, LONG_SKIP_REFITS_OVER)."""

import numpy as np
import pytest

from pmdcompress.solver import temporal


def calcium_row(rng, n, rate, tau, amplitude):
    """Calcium-like factor: jumps of random size at random frames, exponential decay over ``tau`` frames."""
    jumps = (rng.random(n) < rate) * rng.exponential(amplitude, n)
    return np.convolve(jumps, np.exp(-np.arange(int(8 * tau)) / tau))[:n]


def fast_calcium_group(tau, n=2000, k=6, seed=5):
    """A group of calcium rows with fast decays in noise of std 0.5: the whole budget shaves their peaks."""
    rng = np.random.default_rng(seed)
    rows = np.array([calcium_row(rng, n, 0.05 if tau < 2 else 0.1, tau, 3.0) + rng.normal(0, 0.5, n)
                     for _ in range(k)])
    return rows, np.full(k, 0.5)


def decisions(rows, sigma, skip, monkeypatch):
    """group_budgets' levels, event rates and seed penalties, and the levels at which it ran re-fits."""
    refit_levels = []
    original = temporal._refit
    monkeypatch.setattr(temporal, "_refit", lambda y, s, budget, *a, **k: refit_levels.append(budget)
                        or original(y, s, budget, *a, **k))
    rates, seeds = np.zeros(len(rows)), {}
    budgets = temporal.group_budgets(rows, sigma, np.zeros(len(rows), np.int64), seeds=seeds, event_rates=rates,
                                     ratio_starts=True, skip_refits_over=skip)
    monkeypatch.setattr(temporal, "_refit", original)
    return budgets, rates, seeds, sorted(set(refit_levels), reverse=True)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_skipping_the_refits_of_a_level_far_over_the_limit_keeps_the_group_decisions(tau, monkeypatch):
    rows, sigma = fast_calcium_group(tau)
    budgets, rates, seeds, refit_levels = decisions(rows, sigma, None, monkeypatch)
    skipped = decisions(rows, sigma, temporal.LONG_SKIP_REFITS_OVER, monkeypatch)
    assert budgets[0] < 0.5 and 1.0 in refit_levels  # level 1 failed, by the re-fits (the old path)
    assert 1.0 not in skipped[3]  # ... and now without them: its first fits removed > 2.5 limits
    np.testing.assert_array_equal(skipped[0], budgets)
    np.testing.assert_array_equal(skipped[1], rates)
    for i in range(len(rows)):  # the chosen level's fits (the rows' own starts) end at the same optimum
        assert skipped[2][i][1] == pytest.approx(seeds[i][1], rel=0.05)


def test_a_level_near_the_limit_still_runs_its_refits(monkeypatch):
    # slower decays: level 1's first fits fail by less than LONG_SKIP_REFITS_OVER limits, so the re-fits
    # decide it (they pass here: the group keeps the whole budget)
    rng = np.random.default_rng(5)
    rows = np.array([calcium_row(rng, 2000, 0.05, 3.0, 4.0) + rng.normal(0, 0.5, 2000) for _ in range(6)])
    sigma = np.full(6, 0.5)
    budgets, _, _, refit_levels = decisions(rows, sigma, None, monkeypatch)
    skipped = decisions(rows, sigma, temporal.LONG_SKIP_REFITS_OVER, monkeypatch)
    assert refit_levels == skipped[3] == [1.0]
    np.testing.assert_array_equal(skipped[0], budgets)
    assert budgets[0] == 1.0


def test_rows_no_longer_than_the_window_always_run_the_refits(monkeypatch):
    # movies of at most BUDGET_WINDOW_FRAMES frames are decided as before, whatever the long rows' setting
    rows, sigma = fast_calcium_group(2.0)
    before = temporal.trend_filter_rows(rows, sigma=sigma)
    monkeypatch.setattr(temporal, "LONG_SKIP_REFITS_OVER", 0.0)  # would skip every re-fit of a long row
    np.testing.assert_array_equal(temporal.trend_filter_rows(rows, sigma=sigma), before)


def test_long_rows_filtered_with_the_skip_match_the_full_decisions(monkeypatch):
    # rows longer than the window: the group's level is failed without re-fits, and each row's filter is the
    # same as with every re-fit run (the same level and event rates; the searches end at the same optimum)
    monkeypatch.setattr(temporal, "BUDGET_WINDOW_FRAMES", 1500)
    rows, sigma = fast_calcium_group(2.0, n=2500)
    monkeypatch.setattr(temporal, "LONG_SKIP_REFITS_OVER", None)
    full, full_info = temporal.trend_filter_rows(rows, sigma=sigma, return_info=True)
    monkeypatch.setattr(temporal, "LONG_SKIP_REFITS_OVER", 2.5)
    calls = []
    original = temporal._refit
    monkeypatch.setattr(temporal, "_refit", lambda *a, **k: calls.append(a[2]) or original(*a, **k))
    got, info = temporal.trend_filter_rows(rows, sigma=sigma, return_info=True)
    assert info[0]["budget"] < 1.0 and 1.0 not in calls  # level 1 failed without its re-fits
    assert [a["budget"] for a in info] == [b["budget"] for b in full_info]
    assert [a["event_p"] for a in info] == [b["event_p"] for b in full_info]
    np.testing.assert_allclose(got, full, rtol=0, atol=1e-3 * float(sigma[0]))
