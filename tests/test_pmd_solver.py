"""The penalized (TV / trend-filter) rank-1 solver against the plain SVD solver."""

import numpy as np
import pytest

import pmdcompress
from conftest import blobs_movie
from pmdcompress.solver.pmd import PMDSolver, _deflate, image_noise_std
from pmdcompress.solver.svd import Thresholds


def rms(a):
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))


@pytest.fixture(scope="module")
def low_snr():
    return blobs_movie(n_frames=400, shape=(48, 48), n_sources=8, noise=10.0, seed=3)


@pytest.fixture(scope="module")
def stores(low_snr, tmp_path_factory):
    noisy, _ = low_snr
    # A module fixture runs before conftest's per-test cache folder is set: set it here too, or these stores
    # would use the null thresholds cached in the user's home by another version of the solver.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PMD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "null-cache"))
        return {m: pmdcompress.compress(noisy, method=m, patch_shape=24, overlap=6) for m in ("svd", "pmd")}


def test_pmd_denoises_more_than_svd(low_snr, stores):
    noisy, clean = low_snr
    red = {m: rms(noisy - clean) / rms(s[:] - clean) for m, s in stores.items()}
    assert red["pmd"] > 1.1 * red["svd"], red
    assert stores["pmd"].metadata.method == "pmd"
    assert stores["pmd"].info()["method"] == "pmd"


def test_pmd_is_deterministic(low_snr, stores):
    noisy, _ = low_snr
    again = pmdcompress.compress(noisy, method="pmd", patch_shape=24, overlap=6, workers=1)
    np.testing.assert_array_equal(again.spatial, stores["pmd"].spatial)


def test_pmd_keeps_few_components_of_pure_noise():
    rng = np.random.default_rng(5)
    store = pmdcompress.compress(rng.normal(0, 1, (200, 48, 48)).astype(np.float32), method="pmd",
                                 patch_shape=24, overlap=6)
    assert store.metadata.total_rank <= store.metadata.n_patches


def test_image_noise_std_on_white_noise_and_a_smooth_image():
    rng = np.random.default_rng(0)
    assert image_noise_std(rng.normal(0, 2.0, (64, 64))) == pytest.approx(2.0, rel=0.05)
    yy, xx = np.mgrid[:64, :64]
    smooth = np.exp(-((yy - 30) ** 2 + (xx - 20) ** 2) / 200.0) * 50
    assert image_noise_std(smooth + rng.normal(0, 1.0, (64, 64))) == pytest.approx(1.0, rel=0.1)


def test_early_keep_changes_no_decision(low_snr):
    """Keeping a component on its temporal statistic before the last temporal step decides as the full test does.

    Without warm starts nothing carries from one component to the next, so the kept components must be the same
    to the last bit; the early decisions skip the spatial statistic only (NaN), the temporal ones are equal.
    """
    noisy, _ = low_snr
    patch = noisy[:, :24, :24].reshape(len(noisy), -1).astype(np.float32)
    data = (patch - patch.mean(axis=0)) / patch.std(axis=0)
    thresholds = Thresholds(1.3, 1.6)
    fits = {early: PMDSolver(warm_start=False, early_keep=early).fit(data, (24, 24), thresholds,
                                                                     np.random.default_rng(0))
            for early in (True, False)}
    np.testing.assert_array_equal(fits[True].spatial, fits[False].spatial)
    assert fits[True].n_tested == fits[False].n_tested
    np.testing.assert_array_equal(fits[True].temporal_stats, fits[False].temporal_stats)
    sp_early, sp_full = np.asarray(fits[True].spatial_stats), np.asarray(fits[False].spatial_stats)
    early = np.isnan(sp_early)
    assert early.any() and not early.all()  # some decided early, some (the rejections) not
    assert np.all(np.asarray(fits[True].temporal_stats)[early] <= thresholds.temporal)
    np.testing.assert_array_equal(sp_early[~early], sp_full[~early])
    assert fits[True].rank >= 2 and fits[True].n_tested > fits[True].rank


def test_pmd_warm_starts_keep_the_same_components(low_snr):
    """Warm-started penalty searches (the default) find what cold ones find, within the search tolerance."""
    noisy, _ = low_snr
    patch = noisy[:, :24, :24].reshape(len(noisy), -1).astype(np.float32)
    data = (patch - patch.mean(axis=0)) / patch.std(axis=0)
    thresholds = Thresholds(1.3, 1.6)
    fits = {warm: PMDSolver(warm_start=warm).fit(data, (24, 24), thresholds, np.random.default_rng(0))
            for warm in (True, False)}
    assert abs(fits[True].rank - fits[False].rank) <= 1
    k = min(fits[True].rank, fits[False].rank)
    assert k >= 1
    # the same subspace: principal angles between the kept spatial components are small
    cosines = np.linalg.svd(fits[True].spatial[:, :k].T @ fits[False].spatial[:, :k], compute_uv=False)
    assert cosines.min() > 0.95, cosines


def _host_has_fma() -> bool:
    from llvmlite import binding

    return bool(binding.get_host_cpu_features().get("fma", False))


def test_deflation_is_the_rank_one_update_in_place():
    rng = np.random.default_rng(2)
    residual = rng.standard_normal((37, 1021)).astype(np.float32)  # odd lengths: the compiled loops' tails
    v, u = rng.standard_normal(37).astype(np.float32), rng.standard_normal(1021).astype(np.float32)
    twin = residual - np.outer(v, u)  # numpy: the product and the difference rounded apart
    # one rounding of the exact value (float32 products are exact in float64): what a fused multiply-add gives
    fused = (residual.astype(np.float64) - np.outer(v.astype(np.float64), u.astype(np.float64))).astype(np.float32)
    before = residual.__array_interface__["data"][0]
    _deflate(residual, v, u)
    assert residual.__array_interface__["data"][0] == before
    np.testing.assert_allclose(residual, twin, rtol=1e-6, atol=1e-6)
    if _host_has_fma():  # BLAS's sger (the deflation until session 18) fuses there too: the stores' floats
        assert np.array_equal(residual, fused)
        assert not np.array_equal(twin, fused)  # the check can tell the two apart
    # v in float64 is rounded to float32 first, as sger did
    again = rng.standard_normal((5, 9)).astype(np.float32)
    want = again.copy()
    _deflate(want, v[:5], u[:9])
    _deflate(again, v[:5].astype(np.float64), u[:9])
    assert np.array_equal(again, want)


def test_the_solver_searches_equal_the_checked_public_searches():
    """tv2d_search / trend_filter_search (no argument checks, for the solver) return what the public functions do."""
    from pmdcompress.solver import trend_filter as tf
    from pmdcompress.solver import tv2d

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:16, :16]
    img = np.exp(-((yy - 8) ** 2 + (xx - 6) ** 2) / 10.0) + 0.2 * rng.standard_normal((16, 16))
    for lam0, dual in [(None, None), (None, np.ones((16, 16))), (0.05, rng.uniform(-0.01, 0.01, (16, 16)))]:
        duals = [None if dual is None else dual.copy() for _ in range(2)]
        x1, lam1 = tv2d.constrained_tv2d(img, 256 * 0.04, lam0=lam0, rtol=0.05, tol=1e-2, dual=duals[0])
        x2, lam2 = tv2d.tv2d_search(img, 256 * 0.04, lam0=lam0, rtol=0.05, tol=1e-2, dual=duals[1])
        np.testing.assert_array_equal(x1, x2)
        assert lam1 == lam2
        if dual is not None:
            np.testing.assert_array_equal(duals[0], duals[1])
    y = np.sin(np.linspace(0, 6, 300)) + 0.2 * rng.standard_normal(300)
    for lam0 in (None, 3.0):
        x1, lam1 = tf.constrained_trend_filter(y, 300 * 0.04, lam0=lam0, rtol=0.05)
        x2, lam2 = tf.trend_filter_search(y, 300 * 0.04, lam0=lam0, rtol=0.05)
        np.testing.assert_array_equal(x1, x2)
        assert lam1 == lam2
    # a search started from another budget's active set (and left holding its own) ends at the same fit
    active = np.zeros(298, np.int8)
    tf.trend_filter_search(y, 300 * 0.08, lam0=None, rtol=0.05, active=active)
    assert active.any()
    for lam0 in (None, 3.0):
        x1, lam1 = tf.constrained_trend_filter(y, 300 * 0.04, lam0=lam0, rtol=0.05)
        x2, lam2 = tf.trend_filter_search(y, 300 * 0.04, lam0=lam0, rtol=0.05, active=active)
        np.testing.assert_allclose(x2, x1, rtol=1e-6, atol=1e-6 * np.abs(x1).max())
        assert lam2 == pytest.approx(lam1, rel=1e-6)
    x, lam = tv2d.tv2d_search(img, 0.0, lam0=None, rtol=0.05, tol=1e-2, dual=None)  # no budget: the image
    np.testing.assert_array_equal(x, img)
    assert lam == 0.0


def test_rank_one_returns_the_debiased_temporal_factor_of_its_u(low_snr):
    """The solver reuses R u from the last temporal step as the debiased factor: it must be exactly R u."""
    from pmdcompress.solver.pmd import _WarmStart

    noisy, _ = low_snr
    patch = noisy[:, :24, :24].reshape(len(noisy), -1).astype(np.float32)
    residual = np.ascontiguousarray((patch - patch.mean(axis=0)) / patch.std(axis=0))
    v0 = np.linalg.svd(residual.astype(np.float64), full_matrices=False)[0][:, 0]
    u, _, ru, _ = PMDSolver()._rank_one(residual, (24, 24), v0, _WarmStart(None, None, np.zeros((24, 24))))
    np.testing.assert_array_equal(ru, residual @ u.astype(np.float32))
