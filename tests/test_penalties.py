"""Penalized solvers against their slow twins.

Tolerances: the 1-D solvers are exact, so objectives agree with the bounded
least-squares twins to 1e-9 (relative) and solutions to 1e-7 (relative to
max|y|); 2-D TV is run to a certified tol of 1e-9 and compared to 1e-6.  The
constrained forms must land in ``[(1 - rtol) delta, delta]`` with rtol = 1e-2
(well inside the 2% asked of them).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import reference_penalties as ref
from pmdcompress.errors import InputError
from pmdcompress.solver import trend_filter as tf
from pmdcompress.solver import tv1d, tv2d

SETTINGS = settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)
lams = st.sampled_from([0.0, 1e-3, 0.05, 0.3, 1.0, 3.0, 30.0, 1e4])


@st.composite
def signals(draw, min_size=1, max_size=30):
    """Raw hypothesis vectors, or piecewise-constant / piecewise-linear signals plus noise."""
    n = draw(st.integers(min_size, max_size))
    if draw(st.booleans()):
        return draw(arrays(np.float64, n, elements=finite))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_pieces = int(rng.integers(1, 5))
    cuts = np.sort(rng.integers(0, n, n_pieces - 1))
    levels = np.repeat(rng.normal(0, 3, n_pieces), np.diff(np.r_[0, cuts, n]))
    trend = np.cumsum(np.repeat(rng.normal(0, 0.5, n_pieces), np.diff(np.r_[0, cuts, n])))
    return levels + trend * rng.integers(0, 2) + rng.normal(0, draw(st.sampled_from([0.01, 0.3, 1.0])), n)


def rel_gap(a, b):
    return abs(a - b) / max(1.0, abs(b))


def assert_matches_twin(y, x, x_ref, d, lam):
    obj = ref.penalized_objective(y, x, d, lam)
    obj_ref = ref.penalized_objective(y, x_ref, d, lam)
    # One-sided: the kernel may beat its twin (scipy's solvers stop at ~1e-9 of an exact zero on flat input).
    assert obj - obj_ref <= 1e-9 * max(1.0, abs(obj_ref)), (obj, obj_ref)
    assert np.abs(x - x_ref).max() <= 1e-7 * max(1.0, np.abs(y).max())


# --------------------------------------------------------------- 1-D TV


@SETTINGS
@given(signals(), lams)
def test_tv1d_matches_twin(y, lam):
    x = tv1d.tv1d_denoise(y, lam)
    assert_matches_twin(y, x, ref.tv1d_reference(y, lam), ref.difference_matrix(y.size, 1), lam)


@pytest.mark.parametrize("y", [[3.0], [1.0, 5.0], [1.0, 5.0, 2.0], [2.0, 2.0, 2.0, 2.0]])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.5, 1e9])
def test_tv1d_short_and_constant(y, lam):
    y = np.asarray(y)
    x = tv1d.tv1d_denoise(y, lam)
    np.testing.assert_allclose(x, ref.tv1d_reference(y, lam), atol=1e-12)


def test_tv1d_limits():
    rng = np.random.default_rng(1)
    y = rng.normal(size=50)
    np.testing.assert_array_equal(tv1d.tv1d_denoise(y, 0.0), y)
    _, lam_max, _ = tv1d._tv1d_limit(y)
    for lam in (lam_max, 10 * lam_max, np.inf):
        np.testing.assert_allclose(tv1d.tv1d_denoise(y, lam), np.full(50, y.mean()), atol=1e-12)
    # just below lam_max the solution is not constant yet
    assert np.ptp(tv1d.tv1d_denoise(y, 0.99 * lam_max)) > 0
    assert tv1d.tv1d_denoise(np.array([]), 1.0).shape == (0,)


# ---------------------------------------------------------- trend filter


@SETTINGS
@given(signals(), lams)
def test_trend_filter_matches_twin(y, lam):
    x = tf.trend_filter(y, lam)
    d = ref.difference_matrix(y.size, 2)
    assert_matches_twin(y, x, ref.trend_filter_reference(y, lam), d, lam)


@pytest.mark.parametrize("y", [[3.0], [1.0, 5.0], [1.0, 5.0, 2.0], [2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 2.0, 3.0]])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.5, 1e9])
def test_trend_filter_short_and_linear(y, lam):
    y = np.asarray(y)
    np.testing.assert_allclose(tf.trend_filter(y, lam), ref.trend_filter_reference(y, lam), atol=1e-12)


def test_trend_filter_limits():
    rng = np.random.default_rng(2)
    t = np.arange(60.0)
    y = 0.3 * t - 2 + rng.normal(size=60)
    np.testing.assert_array_equal(tf.trend_filter(y, 0.0), y)
    line = np.polyval(np.polyfit(t, y, 1), t)
    _, lam_max, _ = tf._tf_limit(y)
    for lam in (lam_max, 1e3 * lam_max, np.inf):
        np.testing.assert_allclose(tf.trend_filter(y, lam), line, atol=1e-10)
    # just below lam_max there is a kink; the kernel itself also reaches the line
    assert np.abs(np.diff(tf.trend_filter(y, 0.9 * lam_max), 2)).max() > 1e-6
    x = np.empty(60)
    n_iter, converged = tf._tf_kernel(y, 1.01 * lam_max, np.zeros(58, np.int8), np.empty(58), x, 100)
    assert converged
    np.testing.assert_allclose(x, line, atol=1e-10)


def _tf_certificate(y, lam, max_num_iter=1000):
    """Run the kernel; return (converged, n_iter, relative duality gap, max |z| / lam)."""
    n = y.size
    x, z = np.empty(n), np.empty(n - 2)
    n_iter, converged = tf._tf_kernel(y, lam, np.zeros(n - 2, np.int8), z, x, max_num_iter)
    dx = np.diff(x, 2)
    primal = 0.5 * np.sum((y - x) ** 2) + lam * np.abs(dx).sum()
    x_dual = y - ref.difference_matrix(n, 2).T @ z if n <= 3000 else None
    gap = lam * np.abs(dx).sum() - z @ dx
    if x_dual is not None:
        # the dual point reproduces the primal one
        assert np.abs(x_dual - x).max() <= 1e-8 * max(1.0, np.abs(y).max())
    return converged, n_iter, gap / primal, np.abs(z).max() / lam


def calcium_like(n, rng, rate=0.01, noise=1.0):
    spikes = (rng.random(n) < rate) * rng.exponential(5.0, n)
    kernel = 0.95 ** np.arange(200)
    return np.convolve(spikes, kernel)[:n] + noise * rng.normal(size=n)


@SETTINGS
@given(st.integers(0, 2**32 - 1), st.sampled_from([50, 300, 1000]), st.floats(-3, 0.0))
def test_trend_filter_converges_with_certificate(seed, n, log_frac):
    """Random-walk and calcium-like traces across the lam range: KKT reached, gap ~ 0."""
    rng = np.random.default_rng(seed)
    y = calcium_like(n, rng) if seed % 2 else np.cumsum(rng.normal(size=n)) + rng.normal(size=n)
    _, lam_max, _ = tf._tf_limit(y)
    converged, _, gap, zmax = _tf_certificate(y, lam_max * 10.0**log_frac)
    assert converged
    assert abs(gap) <= 1e-9
    assert zmax <= 1 + 1e-9


@SETTINGS
@given(signals(min_size=3, max_size=40), lams.filter(lambda lam: 0 < lam < 1e4))
def test_trend_filter_active_set_finisher_matches_twin(y, lam):
    """The monotone active-set method, used after repeated cycling, is a complete solver on its own."""
    n = y.size
    m = n - 2
    ymax = np.abs(y).max()
    tol_z, tol_nu = lam * 1e-10, 1e-12 * ymax
    work = (np.empty(n), np.empty(n, np.int64), np.empty(n), np.empty(n), np.empty(n), np.empty(m))
    x, z, state = np.empty(n), np.empty(m), np.zeros(m, np.int8)
    n_fits, converged = tf._tf_active_set(y, lam, state, z, x, 10_000, tol_z, tol_nu, work)
    assert converged
    d = ref.difference_matrix(n, 2)
    assert_matches_twin(y, x, ref.trend_filter_reference(y, lam), d, lam)


def test_trend_filter_v_shape():
    """A sharp corner with almost no noise: few knots, hard for plain block pivoting."""
    n = 20_000
    y = np.abs(np.arange(n) - n / 3) * 0.1 + 0.01 * np.random.default_rng(12).normal(size=n)
    _, lam_max, _ = tf._tf_limit(y)
    for frac in (2e-4, 5e-3, 3e-2):
        converged, n_iter, gap, zmax = _tf_certificate(y, frac * lam_max)
        assert converged
        assert abs(gap) <= 1e-8 and zmax <= 1 + 1e-8


@pytest.mark.parametrize("frac", [1e-4, 1e-2, 0.3])
def test_trend_filter_long_signal(frac):
    """n = 1e5: converges, certificate holds (the spline basis keeps it well conditioned)."""
    rng = np.random.default_rng(3)
    y = calcium_like(100_000, rng)
    _, lam_max, _ = tf._tf_limit(y)
    converged, n_iter, gap, zmax = _tf_certificate(y, frac * lam_max)
    assert converged and n_iter < 1000
    assert abs(gap) <= 1e-8
    assert zmax <= 1 + 1e-8


# ----------------------------------------------------------------- 2-D TV


@st.composite
def images(draw, max_side=6):
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    return draw(arrays(np.float64, (h, w), elements=finite))


@settings(max_examples=30, derandomize=True, deadline=None)
@given(images(), st.sampled_from([0.0, 0.05, 0.5, 3.0, 40.0]))
def test_tv2d_matches_twin(img, lam):
    x = tv2d.tv2d_denoise(img, lam, tol=1e-9, max_num_iter=20_000)
    x_ref = ref.tv2d_reference(img, lam)
    d = ref.grid_difference_matrix(*img.shape)
    obj, obj_ref = ref.penalized_objective(img, x, d, lam), ref.penalized_objective(img, x_ref, d, lam)
    assert rel_gap(obj, obj_ref) <= 1e-9
    assert np.abs(x - x_ref).max() <= 1e-6 * max(1.0, np.abs(img).max())


@pytest.mark.parametrize("lam", [0.05, 0.3, 2.0])
def test_tv2d_matches_twin_on_a_noisy_blob(lam):
    # Larger than the property test's images: 20-60 FISTA iterations at this tolerance, with restarts (the
    # momentum step taken inside the certificate's pass is discarded there) and many segments per row.
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:8, :10]
    img = np.exp(-((yy - 3.5) ** 2 + (xx - 5.0) ** 2) / 6.0) + 0.3 * rng.standard_normal((8, 10))
    x = tv2d.tv2d_denoise(img, lam, tol=1e-10, max_num_iter=50_000)
    x_ref = ref.tv2d_reference(img, lam)
    d = ref.grid_difference_matrix(*img.shape)
    assert rel_gap(ref.penalized_objective(img, x, d, lam), ref.penalized_objective(img, x_ref, d, lam)) <= 1e-9
    assert np.abs(x - x_ref).max() <= 1e-6


def test_tv2d_line_images_equal_tv1d():
    rng = np.random.default_rng(4)
    y = rng.normal(size=17)
    for lam in (0.1, 0.7):
        expected = tv1d.tv1d_denoise(y, lam)
        np.testing.assert_allclose(tv2d.tv2d_denoise(y[None, :], lam)[0], expected, atol=1e-12)
        np.testing.assert_allclose(tv2d.tv2d_denoise(y[:, None], lam)[:, 0], expected, atol=1e-12)


def test_tv2d_limits_and_tolerance():
    rng = np.random.default_rng(5)
    img = rng.normal(size=(9, 7))
    np.testing.assert_array_equal(tv2d.tv2d_denoise(img, 0.0), img)
    np.testing.assert_allclose(tv2d.tv2d_denoise(img, np.inf), np.full(img.shape, img.mean()))
    _, lam_bound, _ = tv2d._tv2d_limit(img)
    np.testing.assert_allclose(tv2d.tv2d_denoise(img, lam_bound), np.full(img.shape, img.mean()), atol=1e-12)
    np.testing.assert_allclose(ref.tv2d_reference(img, lam_bound), np.full(img.shape, img.mean()), atol=1e-9)
    np.testing.assert_allclose(tv2d.tv2d_denoise(np.full((4, 5), 2.5), 1.0), np.full((4, 5), 2.5))
    # the certified bound ||x - x*|| <= tol ||y - mean|| holds
    x_ref = ref.tv2d_reference(img, 0.4)
    for tol in (1e-2, 1e-4):
        err = np.linalg.norm(tv2d.tv2d_denoise(img, 0.4, tol=tol) - x_ref)
        assert err <= tol * np.linalg.norm(img - img.mean()) + 1e-12


def test_tv2d_warns_when_not_converged(caplog):
    img = np.random.default_rng(6).normal(size=(20, 20))
    with caplog.at_level(logging.WARNING, logger="pmdcompress"):
        tv2d.tv2d_denoise(img, 0.3, tol=1e-12, max_num_iter=2)
    assert "tolerance not reached" in caplog.text


@pytest.mark.parametrize("loose", [1e-2, 3e-3])  # stops on an iteration that restarts its momentum / that keeps it
def test_tv2d_resumed_solve_is_the_uninterrupted_solve(loose):
    """A solve stopped at a loose tolerance and resumed (its theta and work arrays passed back) takes exactly the
    iterations one solve to the tight tolerance takes, momentum included: the same floats, and the gap certifies
    ||x - x*||^2 <= gap (the sharper bound of the Notes) against the twin."""
    rng = np.random.default_rng(22)
    yy, xx = np.mgrid[:12, :14]
    img = np.exp(-((yy - 5) ** 2 + (xx - 8) ** 2) / 8.0) + 0.3 * rng.standard_normal((12, 14))
    lam = 0.25
    h, w = img.shape

    def work():
        return np.empty((h, w)), np.empty((h, w)), np.empty((h, w)), np.empty((w, h)), np.empty((w, h))

    x_once, t_once = np.empty((h, w)), np.zeros((h, w))
    n_once, gap_once, conv_once, _ = tv2d._tv2d_solve(img, lam, t_once, x_once, 10_000, 1e-6, *work(), 0.0)
    x, t, arrays_ = np.empty((h, w)), np.zeros((h, w)), work()
    n_loose, gap_loose, _, theta = tv2d._tv2d_solve(img, lam, t, x, 10_000, loose, *arrays_, 0.0)
    assert n_loose < n_once and (theta == 1.0) == (loose == 1e-2)
    n_rest, gap, converged, _ = tv2d._tv2d_solve(img, lam, t, x, 10_000, 1e-6, *arrays_, theta)
    assert conv_once and converged and n_loose + n_rest == n_once and gap == gap_once
    np.testing.assert_array_equal(x, x_once)
    np.testing.assert_array_equal(t, t_once)
    exact = ref.tv2d_reference(img, lam)
    assert np.sum((x_once - exact) ** 2) <= gap_once + 1e-12
    assert np.sum((tv2d.tv2d_denoise(img, lam, tol=loose) - exact) ** 2) <= gap_loose + 1e-12


# -------------------------------------------------------- constrained forms

SOLVERS = {
    "tv1d": (tv1d.constrained_tv1d, tv1d.tv1d_denoise),
    "tf": (tf.constrained_trend_filter, tf.trend_filter),
    "tv2d": (tv2d.constrained_tv2d, tv2d.tv2d_denoise),
}


def _test_signal(kind, rng, size):
    if kind == "tv2d":
        side = int(np.sqrt(size))
        yy, xx = np.mgrid[:side, :side]
        blob = ((xx - side / 2) ** 2 + (yy - side / 2) ** 2 < (side / 4) ** 2).astype(float)
        return 2.0 * blob + rng.normal(size=(side, side))
    return calcium_like(size, rng) + np.sin(np.linspace(0, 6, size))


def _limit(kind, y):
    """The lam -> inf solution: the least-squares line (trend filter) or the mean (TV)."""
    if kind == "tf":
        t = np.arange(y.size)
        return np.polyval(np.polyfit(t, y, 1), t)
    return np.full(y.shape, y.mean())


@pytest.mark.parametrize("kind", list(SOLVERS))
@pytest.mark.parametrize("size", [64, 400])
@pytest.mark.parametrize("frac", [0.05, 0.5, 0.95])
def test_constrained_hits_budget(kind, size, frac):
    """The budget binds: residual within [0.99, 1] delta and x is the penalized solution at lam."""
    constrained, solve = SOLVERS[kind]
    rng = np.random.default_rng(size)
    y = _test_signal(kind, rng, size)
    delta = frac * np.sum((y - _limit(kind, y)) ** 2)
    x, lam = constrained(y, delta)
    res = np.sum((y - x) ** 2)
    assert 0.99 * delta <= res <= delta
    assert lam > 0
    np.testing.assert_allclose(x, solve(y, lam), atol=1e-3 * np.abs(y).max())


@pytest.mark.parametrize("kind", ["tv1d", "tf"])
def test_constrained_matches_bisection_twin(kind):
    constrained, _ = SOLVERS[kind]
    twin = ref.tv1d_reference if kind == "tv1d" else ref.trend_filter_reference
    y = _test_signal(kind, np.random.default_rng(7), 24)
    delta = 0.8 * y.size
    x, lam = constrained(y, delta)
    x_ref, lam_ref = ref.constrained_reference(twin, y, delta)
    assert 0.99 * delta <= np.sum((y - x) ** 2) <= delta
    assert 0.999 * delta <= np.sum((y - x_ref) ** 2) <= delta
    # both lams give solutions whose residuals straddle the same budget window
    np.testing.assert_allclose(x, twin(y, lam), atol=1e-8)
    assert lam <= lam_ref * (1 + 1e-6)


@pytest.mark.parametrize("kind", list(SOLVERS))
def test_constrained_edge_budgets(kind):
    constrained, solve = SOLVERS[kind]
    rng = np.random.default_rng(8)
    y = _test_signal(kind, rng, 64)
    for delta in (0.0, -1.0):
        x, lam = constrained(y, delta)
        np.testing.assert_array_equal(x, y)
        assert lam == 0.0
    # a budget that admits the lam -> inf limit returns that limit
    limit = _limit(kind, y)
    x, lam = constrained(y, 1.01 * np.sum((y - limit) ** 2))
    np.testing.assert_allclose(x, limit, atol=1e-9)
    np.testing.assert_allclose(solve(y, lam), limit, atol=1e-9)


def test_constrained_warm_start_and_short_inputs():
    rng = np.random.default_rng(9)
    y = calcium_like(500, rng)
    x, lam = tf.constrained_trend_filter(y, 500.0)
    x2, lam2 = tf.constrained_trend_filter(y, 500.0, lam0=1.2 * lam)
    assert 0.99 * 500 <= np.sum((y - x2) ** 2) <= 500
    for n in (1, 2, 3):
        for constrained in (tv1d.constrained_tv1d, tf.constrained_trend_filter):
            x, lam = constrained(np.arange(float(n)) ** 2, 0.5)
            assert np.sum((np.arange(float(n)) ** 2 - x) ** 2) <= 0.5


@pytest.mark.parametrize("kind", list(SOLVERS))
def test_residual_monotone_in_lam(kind):
    _, solve = SOLVERS[kind]
    y = _test_signal(kind, np.random.default_rng(10), 100)
    residuals = [np.sum((y - solve(y, lam)) ** 2) for lam in np.geomspace(1e-3, 1e3, 25)]
    assert np.all(np.diff(residuals) >= -1e-9 * max(residuals))


# ------------------------------------------------------ dtype and validation


@pytest.mark.parametrize(
    "call",
    [
        lambda a: tv1d.tv1d_denoise(a, 0.5),
        lambda a: tf.trend_filter(a, 5.0),
        lambda a: tv1d.constrained_tv1d(a, 10.0)[0],
        lambda a: tf.constrained_trend_filter(a, 10.0)[0],
        lambda a: tv2d.tv2d_denoise(a.reshape(6, 5), 0.5),
        lambda a: tv2d.constrained_tv2d(a.reshape(6, 5), 10.0)[0],
    ],
)
def test_dtypes_and_input_untouched(call):
    rng = np.random.default_rng(11)
    y64 = rng.normal(size=30) * 3
    for dtype, out_dtype in [(np.float64, np.float64), (np.float32, np.float32), (np.int32, np.float64)]:
        y = y64.astype(dtype)
        keep = y.copy()
        y.setflags(write=False)
        out = call(y)
        assert out.dtype == out_dtype
        np.testing.assert_array_equal(y, keep)
        np.testing.assert_allclose(out, call(y.astype(np.float64)), rtol=1e-5, atol=1e-5 * np.abs(y64).max())


def test_invalid_input():
    y = np.ones(5)
    with pytest.raises(InputError, match="1-D"):
        tv1d.tv1d_denoise(np.ones((2, 3)), 1.0)
    with pytest.raises(InputError, match="2-D"):
        tv2d.tv2d_denoise(y, 1.0)
    with pytest.raises(InputError, match="NaN"):
        tf.trend_filter(np.array([1.0, np.nan, 2.0]), 1.0)
    with pytest.raises(InputError, match="lam"):
        tv1d.tv1d_denoise(y, -1.0)
    with pytest.raises(InputError, match="lam"):
        tf.trend_filter(y, float("nan"))
    with pytest.raises(InputError, match="delta"):
        tv1d.constrained_tv1d(y, float("nan"))
    with pytest.raises(InputError, match="rtol"):
        tf.constrained_trend_filter(y, 1.0, rtol=0.0)
    with pytest.raises(InputError, match="dtype"):
        tv1d.tv1d_denoise(np.ones(4, complex), 1.0)
    assert issubclass(InputError, ValueError)




def test_constrained_tv2d_warm_start_from_a_dual_matches_a_cold_start():
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[:20, :20]
    blob = np.exp(-((yy - 9) ** 2 + (xx - 11) ** 2) / 12.0)
    first = blob + 0.1 * rng.standard_normal(blob.shape)
    second = first + 0.01 * rng.standard_normal(blob.shape)  # the next image of an alternating scheme
    delta = 400 * 0.01
    dual = np.zeros(blob.shape)
    _, lam = tv2d.constrained_tv2d(first, delta, rtol=1e-2, tol=1e-6, dual=dual)
    assert np.abs(dual).max() > 0  # the dual of the returned solution came back
    warm, lam_warm = tv2d.constrained_tv2d(second, delta, lam0=lam, rtol=1e-2, tol=1e-6, dual=dual)
    cold, lam_cold = tv2d.constrained_tv2d(second, delta, rtol=1e-2, tol=1e-6)
    for x in (warm, cold):
        assert 0.99 * delta <= np.sum((second - x) ** 2) <= delta
    assert lam_warm == pytest.approx(lam_cold, rel=0.05)
    np.testing.assert_allclose(warm, cold, atol=0.02 * np.linalg.norm(second - second.mean()))
    # the returned dual is that of the returned solution: one exact solve from it changes nothing
    again = tv2d.tv2d_denoise(second, lam_warm, tol=1e-6)
    np.testing.assert_allclose(again, warm, atol=1e-4 * np.linalg.norm(second - second.mean()))


@pytest.mark.parametrize("dual", [np.zeros((4, 4)), np.zeros((5, 5), np.float32), np.zeros((5, 10))[:, ::2]])
def test_constrained_tv2d_rejects_a_bad_dual(dual):
    img = np.random.default_rng(0).standard_normal((5, 5))
    with pytest.raises(InputError, match="dual must be"):
        tv2d.constrained_tv2d(img, 1.0, dual=dual)


@pytest.mark.parametrize("steer_tol", [1e-2, 5e-2, 0.3])
def test_tv2d_search_answer_is_certified_whatever_steers_it(steer_tol):
    """Loosely solved steering steps (steer_tol) never leak into the answer: it is the solve at the returned lam to
    tol, with its residual in the window, on a real-looking spatial step (a blob in noise) from a cold and a warm
    start."""
    rng = np.random.default_rng(21)
    yy, xx = np.mgrid[:32, :32]
    blob = np.exp(-((yy - 12) ** 2 + (xx - 19) ** 2) / 18.0)
    dual = np.zeros((32, 32))
    lam0 = None
    for _ in range(3):  # the second and third images start from the previous answer's lam and dual
        img = blob + 0.2 * rng.standard_normal(blob.shape)
        delta = img.size * 0.04
        tol = 1e-2
        x, lam = tv2d.tv2d_search(img, delta, lam0=lam0, rtol=0.05, tol=tol, dual=dual, steer_tol=steer_tol)
        assert 0.95 * delta <= np.sum((img - x) ** 2) <= delta
        exact = tv2d.tv2d_denoise(img, lam, tol=1e-9)
        assert np.linalg.norm(x - exact) <= tol * np.linalg.norm(img - img.mean())
        lam0 = lam
