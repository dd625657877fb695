"""The null behind the rank test: noise with the movie's correlation, thresholds at the false-pass rate."""

import numpy as np
import pytest

from pmdcompress.preprocess import noise_neighbour_correlation
from pmdcompress.solver import SVDSolver
from pmdcompress.solver.null import correlated_noise, joint_thresholds, null_thresholds, round_correlation


@pytest.mark.parametrize("correlation", [(0.0, 0.0), (0.2, 0.24), (0.5, -0.1), (0.8, 0.7), (0.96, 0.94)])
def test_simulated_noise_has_the_requested_neighbour_correlation(correlation):
    noise = correlated_noise(np.random.default_rng(0), 300, (24, 28), correlation).reshape(300, 24, 28)
    measured = noise_neighbour_correlation(noise)
    np.testing.assert_allclose(measured, correlation, atol=0.02)


def test_joint_thresholds_give_the_false_pass_rate():
    rng = np.random.default_rng(1)
    spatial, temporal = rng.normal(size=4000), rng.normal(size=4000)
    th = joint_thresholds(spatial, temporal, 0.05)
    rate = np.mean((spatial <= th.spatial) | (temporal <= th.temporal))
    assert rate == pytest.approx(0.05, abs=0.005)


def test_null_is_cached_and_correlated_noise_moves_the_spatial_threshold(tmp_path, monkeypatch):
    monkeypatch.setenv("PMD_CACHE_DIR", str(tmp_path))
    solver = SVDSolver()
    white = null_thresholds(solver, (16, 16), 200, n_sims=16)
    assert len(list(tmp_path.glob("null-*.json"))) == 1
    assert null_thresholds(solver, (16, 16), 200, n_sims=16) == white
    smooth = null_thresholds(solver, (16, 16), 200, n_sims=16, noise_correlation=(0.5, 0.5))
    # Spatially correlated noise looks smoother: its threshold must be lower.
    assert smooth.spatial < 0.9 * white.spatial
    assert round_correlation((0.011, 0.513)) == (0.0, 0.52)
