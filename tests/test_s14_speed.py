"""Session 14: the PMD solver's rank-1 loop skips work whose result is never used, and finds the same floats.

The solver no longer measures the change of ``u`` and ``v`` after its last iteration (the loop ends there
whatever it is) and no longer deflates the residual by a patch's last tested component (nothing reads the
residual after it).  The twin below is the loop as it was (the change measured after every iteration, every
tested component deflated): the kept components, the statistics and the null's statistics must be the same
to the last bit, with the default two iterations, with three, and with a tolerance loose enough that the
loop ends early on the change.
"""

import numpy as np
import pytest

from conftest import blobs_movie
from pmdcompress.solver import pmd as pmd_module
from pmdcompress.solver.pmd import PMDSolver, _deflate, _norm, image_noise_std
from pmdcompress.solver.roughness import spatial_roughness, temporal_roughness
from pmdcompress.solver.svd import Thresholds, randomized_svd


class _PlainLoopSolver(PMDSolver):
    """The rank-1 loop before session 14: the change after every iteration, every tested component deflated."""

    def _rank_one(self, residual, patch_shape, v, warm, keep_temporal=None):
        h, w = patch_shape
        n_frames, n_pix = residual.shape
        u = np.zeros(n_pix)
        ru = None
        active = np.zeros(max(n_frames - 2, 0), np.int8)
        if not self.warm_start:
            warm.lam_u = warm.lam_v = None
        for it in range(self.max_num_iter):
            draft = it == 0 and self.max_num_iter > 1
            tv_tol = max(self.tv_tol, self.draft_tv_tol) if draft else self.tv_tol
            rtol_u = max(self.search_rtol, self.draft_search_rtol) if draft else self.search_rtol
            u_tilde = residual.T @ v.astype(np.float32)
            norm = _norm(u_tilde)
            if norm == 0:
                break
            u_tilde = (u_tilde / norm).astype(np.float64)
            image = u_tilde.reshape(h, w)
            sigma_u = image_noise_std(image)
            u_new, warm.lam_u = pmd_module.tv2d_search(image, n_pix * sigma_u**2, lam0=warm.lam_u, rtol=rtol_u,
                                                       tol=tv_tol, dual=warm.dual if self.warm_start else None,
                                                       steer_tol=self.tv_steer_factor * tv_tol)
            u_new = u_new.ravel()
            nu = _norm(u_new)
            u_new = u_tilde if nu == 0 else u_new / nu
            ru = residual @ u_new.astype(np.float32)
            if keep_temporal is not None and it == self.max_num_iter - 1:
                tp = temporal_roughness(ru[:, None])[0]
                if tp <= keep_temporal:
                    return u_new, None, ru, tp
            v_tilde = ru.astype(np.float64)
            sigma_v = pmd_module.noise_std_vector(v_tilde) if n_frames >= 8 else 0.0
            if sigma_v > 0 and n_frames >= 4:
                v_new, warm.lam_v = pmd_module.trend_filter_search(v_tilde, n_frames * sigma_v**2, lam0=warm.lam_v,
                                                                   rtol=self.search_rtol, active=active)
            else:
                v_new = v_tilde
            nv = _norm(v_new)
            v_new = v_new / nv if nv > 0 else v_tilde / max(_norm(v_tilde), 1e-30)
            change = max(_norm(u_new - u), _norm(v_new - v / max(_norm(v), 1e-30)))
            u, v = u_new, v_new
            if change < self.tol:
                break
        return u, v, ru, None

    def _components(self, data, patch_shape, rng, thresholds, limit, n_null=None):
        residual = np.array(data, dtype=np.float32, copy=True)
        kept, sp_stats, t_stats = [], [], []
        failures = n_tested = 0
        warm = pmd_module._WarmStart(None, None, np.zeros(patch_shape))
        while True:
            temporal, s, _ = randomized_svd(residual, self.block_rank, oversample=self.oversample,
                                            power_iterations=self.power_iterations, rng=rng)
            if temporal.shape[1] == 0 or s[0] <= 0:
                break
            keep_temporal = thresholds.temporal if self.early_keep and n_null is None else None
            for i in range(temporal.shape[1]):
                u, v_smooth, v, tp = self._rank_one(residual, patch_shape, temporal[:, i].astype(np.float64), warm,
                                                    keep_temporal)
                u32 = u.astype(np.float32)
                if tp is not None:
                    sp = np.nan
                else:
                    if v is None:
                        v = residual @ u32
                    u_debiased = residual.T @ v_smooth.astype(np.float32)
                    sp = spatial_roughness(u_debiased[:, None], patch_shape)[0]
                    tp = temporal_roughness(v[:, None])[0]
                _deflate(residual, v, u32)
                n_tested += 1
                sp_stats.append(sp)
                t_stats.append(tp)
                if n_null is not None:
                    if n_tested >= n_null:
                        return sp_stats, t_stats
                    continue
                if sp <= thresholds.spatial or tp <= thresholds.temporal:
                    kept.append(u32)
                    failures = 0
                else:
                    failures += 1
                if failures >= self.consecutive_failures or len(kept) >= limit:
                    return kept, n_tested, sp_stats, t_stats
            if n_tested >= min(data.shape):
                break
        if n_null is not None:
            return sp_stats, t_stats
        return kept, n_tested, sp_stats, t_stats


@pytest.fixture(scope="module")
def patch():
    noisy, _ = blobs_movie(n_frames=300, shape=(24, 24), n_sources=6, noise=8.0, seed=11)
    flat = noisy.reshape(len(noisy), -1).astype(np.float32)
    return (flat - flat.mean(axis=0)) / flat.std(axis=0)


@pytest.mark.parametrize("options", [{}, {"max_num_iter": 3}, {"max_num_iter": 3, "tol": 0.9},
                                     {"warm_start": False, "early_keep": False}])
def test_trimmed_rank_one_loop_fits_the_same_floats(patch, options):
    thresholds = Thresholds(1.3, 1.6)
    fast = PMDSolver(**options).fit(patch, (24, 24), thresholds, np.random.default_rng(4))
    plain = _PlainLoopSolver(**options).fit(patch, (24, 24), thresholds, np.random.default_rng(4))
    assert fast.rank >= 2 and fast.n_tested > fast.rank  # kept some, ended on rejections
    np.testing.assert_array_equal(fast.spatial, plain.spatial)
    assert fast.n_tested == plain.n_tested
    np.testing.assert_array_equal(fast.spatial_stats, plain.spatial_stats)
    np.testing.assert_array_equal(fast.temporal_stats, plain.temporal_stats)


def test_trimmed_loop_ends_a_patch_at_its_rank_limit_as_before(patch):
    thresholds = Thresholds(1.3, 1.6)
    fast = PMDSolver(max_rank=2).fit(patch, (24, 24), thresholds, np.random.default_rng(4))
    plain = _PlainLoopSolver(max_rank=2).fit(patch, (24, 24), thresholds, np.random.default_rng(4))
    assert fast.rank == 2
    np.testing.assert_array_equal(fast.spatial, plain.spatial)
    assert fast.n_tested == plain.n_tested


def test_trimmed_loop_gives_the_null_the_same_statistics(patch):
    noise = np.random.default_rng(2).standard_normal(patch.shape).astype(np.float32)
    fast = PMDSolver().null_statistics(noise, (24, 24), np.random.default_rng(9), 10)
    plain = _PlainLoopSolver().null_statistics(noise, (24, 24), np.random.default_rng(9), 10)
    assert len(fast[0]) == 10
    np.testing.assert_array_equal(fast[0], plain[0])
    np.testing.assert_array_equal(fast[1], plain[1])
