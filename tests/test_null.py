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


@pytest.mark.parametrize("shape", [(600, 1024), (77, 300), (20, 64), (1000, 256)])
def test_top_singular_value_bound_is_above_the_largest_singular_value(shape):
    from pmdcompress.solver.null import top_singular_value_bound

    rng = np.random.default_rng(shape[0])
    n, p = shape
    signal = rng.normal(size=(n, 3)) @ (rng.normal(size=(3, p)) * [[8.0], [3.0], [1.0]])
    for data in (rng.normal(size=shape), signal, signal + rng.normal(size=shape)):
        data = data.astype(np.float32)
        top = np.linalg.svd(data.astype(np.float64), compute_uv=False)[0]
        bound = top_singular_value_bound(data)
        assert top <= bound <= np.linalg.norm(data.astype(np.float64)) * 1.0001


def test_strong_components_skip_gives_what_the_svd_gives(monkeypatch):
    # the bound skips the SVD only where it could keep nothing: the same columns with and without it
    from pmdcompress.solver import null

    rng = np.random.default_rng(7)
    n, p = 600, 1024
    noise = rng.normal(size=(n, p))
    smooth = np.outer(np.sin(np.linspace(0, 20, n)), np.hanning(p))
    # smooth: singular value 340, the threshold 680 (gain 1.2 at correlation 0.1)
    cases = {"noise": noise, "weak": noise + 0.5 * smooth, "near": noise + 1.9 * smooth, "strong": noise + 4 * smooth}
    skipped = {}
    for name, data in cases.items():
        data = data.astype(np.float32)
        edge = null.STRONG_FACTOR * (np.sqrt(n) + np.sqrt(p))
        skipped[name] = null.top_singular_value_bound(data) < null.STRONG_BOUND_MARGIN * edge
        fast = null.strong_components(data, (0.1, 0.1), np.random.default_rng([1, 2, 1]))
        with monkeypatch.context() as m:
            m.setattr(null, "STRONG_BOUND_MARGIN", 0.0)  # never skip
            full = null.strong_components(data, (0.1, 0.1), np.random.default_rng([1, 2, 1]))
        np.testing.assert_array_equal(fast, full)
    assert skipped["noise"] and skipped["weak"] and not skipped["strong"]
    assert null.strong_components(cases["strong"].astype(np.float32), (0.1, 0.1)).shape[1] == 1
