"""The trend filter's kernels of session 12 against plain-numpy twins: the spline fit (the same floats as the
textbook order: sums, elimination, back substitution, evaluation), the curvature start, the chunked solve that
keeps a known part of its start."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

import pmdcompress.solver.temporal as temporal
import pmdcompress.solver.trend_filter as tf


def _spline_fit_twin(y, lam, state):
    """Plain Python/numpy: w = y - D_A^T z_A, the hat-basis Gram matrix and right-hand side summed interval by
    interval, eliminated (LDL^T) top down, back-substituted, the spline evaluated, the dual from D^T z = y - x
    (forward over the first half, backward over the second), ``+-lam`` on the active set.  The same operations in
    the same order as the kernel (which fuses the passes): the same floats."""
    n = y.size
    m = n - 2
    w = y.astype(np.float64).copy()
    knots = [0]
    for i in range(m):
        if state[i] != 0:
            zi = state[i] * lam
            w[i] -= zi
            w[i + 1] += 2.0 * zi
            w[i + 2] -= zi
            knots.append(i + 1)
    knots.append(n - 1)
    nb = len(knots)
    diag = [0.0] * nb
    off = [0.0] * nb
    rhs = [0.0] * nb
    for j in range(nb - 1):
        t0, t1 = knots[j], knots[j + 1]
        inv_len = 1.0 / (t1 - t0)
        for t in range(t0, t1):
            a = (t - t0) * inv_len
            b = 1.0 - a
            diag[j] += b * b
            off[j] += b * a
            diag[j + 1] += a * a
            rhs[j] += b * w[t]
            rhs[j + 1] += a * w[t]
    diag[nb - 1] += 1.0
    rhs[nb - 1] += w[n - 1]
    for j in range(1, nb):
        f = off[j - 1] / diag[j - 1]
        diag[j] -= f * off[j - 1]
        rhs[j] -= f * rhs[j - 1]
    coef = [0.0] * nb
    coef[nb - 1] = rhs[nb - 1] / diag[nb - 1]
    for j in range(nb - 2, -1, -1):
        coef[j] = (rhs[j] - off[j] * coef[j + 1]) / diag[j]
    x = np.empty(n)
    x[n - 1] = coef[nb - 1]
    for j in range(nb - 1):
        t0, t1 = knots[j], knots[j + 1]
        inv_len = 1.0 / (t1 - t0)
        for t in range(t0, t1):
            x[t] = coef[j] + (coef[j + 1] - coef[j]) * ((t - t0) * inv_len)
    r = y - x
    z = np.empty(m)
    mid = (m + 1) // 2
    f1 = f2 = 0.0
    for k in range(mid):
        z[k] = r[k] + 2.0 * f1 - f2
        f2, f1 = f1, z[k]
    b1 = b2 = 0.0
    for i in range(m - 1, mid - 1, -1):
        z[i] = r[i + 2] + 2.0 * b1 - b2
        b2, b1 = b1, z[i]
    z[state != 0] = state[state != 0] * lam
    return x, z


def _run_spline_fit(y, lam, state):
    n = y.size
    x, z = np.empty(n), np.empty(n - 2)
    work = [np.empty(n), np.empty(n, np.int64), np.empty(n), np.empty(n), np.empty(n)]
    tf._tf_spline_fit(y, lam, state, x, z, *work)
    return x, z


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("density", [0.0, 0.05, 0.4, 0.9, 1.0])
def test_spline_fit_gives_the_twins_floats(seed, density):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    y = np.cumsum(rng.normal(size=n)) + rng.normal(size=n)
    state = (rng.random(n - 2) < density) * rng.choice(np.array([-1, 1], np.int8), n - 2)
    state = state.astype(np.int8)
    lam = float(rng.uniform(0.1, 10.0))
    x, z = _run_spline_fit(y, lam, state)
    x_twin, z_twin = _spline_fit_twin(y, lam, state)
    assert np.array_equal(x, x_twin)
    assert np.array_equal(z, z_twin)


@pytest.mark.parametrize("seed", range(4))
def test_spline_fit_is_the_least_squares_spline_of_its_knots(seed):
    """x: the least-squares fit of y - D_A^T z_A by linear splines with knots at the active positions (lstsq on
    the hat basis), and D^T z = y - x."""
    rng = np.random.default_rng(seed)
    n = 300
    y = np.cumsum(rng.normal(size=n))
    state = ((rng.random(n - 2) < 0.3) * rng.choice(np.array([-1, 1], np.int8), n - 2)).astype(np.int8)
    lam = 2.0
    x, z = _run_spline_fit(y, lam, state)
    d = np.zeros((n - 2, n))
    for i in range(n - 2):
        d[i, i : i + 3] = (1.0, -2.0, 1.0)
    w = y - d[state != 0].T @ (state[state != 0] * lam)
    knots = np.concatenate([[0], np.flatnonzero(state) + 1, [n - 1]])
    basis = np.stack([np.interp(np.arange(n), knots, np.eye(knots.size)[k]) for k in range(knots.size)], axis=1)
    coef = np.linalg.lstsq(basis, w, rcond=None)[0]
    np.testing.assert_allclose(x, basis @ coef, atol=1e-9 * np.abs(y).max())
    np.testing.assert_allclose(d.T @ z, y - x, atol=1e-8 * np.abs(y).max())


def _curvature_signs_twin(y):
    smooth = gaussian_filter1d(np.asarray(y, np.float64), temporal.START_SMOOTHING)
    curvature = smooth[:-2] - 2.0 * smooth[1:-1] + smooth[2:]
    bound = temporal.START_THRESHOLD * np.std(curvature)
    return np.where(np.abs(curvature) > bound, np.sign(curvature), 0.0).astype(np.int8), curvature, bound


@pytest.mark.parametrize("n", [3, 4, 5, 7, 8, 9, 50, 2001, 20000])
def test_curvature_signs_match_scipys_smoothing_and_numpys_std(n):
    """The compiled start against scipy's gaussian_filter1d (reflected edges), np.std and np.where: the same
    signs, except (its sums are in another order) where a second difference is within rounding of the bound."""
    rng = np.random.default_rng(n)
    y = np.cumsum(rng.normal(size=n)) + 3.0 * rng.normal(size=n)
    signs = temporal.curvature_signs(y)
    twin, curvature, bound = _curvature_signs_twin(y)
    assert signs.dtype == np.int8 and signs.shape == (n - 2,)
    tie = np.abs(np.abs(curvature) - bound) <= 1e-9 * max(bound, 1e-300)
    assert np.array_equal(signs[~tie], twin[~tie])
    assert np.sum(signs != 0) > 0.2 * (n - 2)


def test_curvature_signs_of_short_rows():
    assert temporal.curvature_signs(np.zeros(2)).shape == (0,)
    assert temporal.curvature_signs(np.array([0.0, 1.0, 0.0])).tolist() == [-1]


def _calcium_row(rng, n, rate=0.01, tau=10.0, amplitude=4.0):
    jumps = (rng.random(n) < rate) * rng.exponential(amplitude, n)
    return np.convolve(jumps, np.exp(-np.arange(int(8 * tau)) / tau))[:n]


def _chunked(y, lam, start, chunk, overlap, known=(0, 0)):
    n = y.size
    state, x, z = start.copy(), np.empty(n), np.empty(n - 2)
    fits, converged = tf._tf_kernel_chunked(y, lam, state, z, x, chunk, overlap, 5000, tf._tf_work(n), *known)
    assert converged
    return x, state, fits


@pytest.mark.parametrize("seed", range(6))
def test_known_window_chunk_solves_the_whole_row_as_the_twin(seed):
    """A known run solved as one chunk of its own, its start the run's own optimum or anything else: the result is
    the whole row's optimum (the slow bounded least-squares twin)."""
    import reference_penalties as ref

    rng = np.random.default_rng(seed)
    n = int(rng.integers(60, 100))
    y = _calcium_row(rng, n, rate=0.08, tau=4.0) + rng.normal(0, 0.5, n) + np.linspace(0, rng.normal(), n)
    lam = float(rng.choice([0.05, 0.5, 3.0]))
    ks, ke = n // 3, n // 3 + 30
    start = np.sign(rng.normal(size=n - 2)).astype(np.int8) * (rng.random(n - 2) < 0.3)
    own = np.zeros(ke - ks - 2, np.int8)
    tf.trend_filter_from(y[ks:ke], lam, active=own)
    twin = ref.trend_filter_reference(y, lam)
    for window_start in (own, start[ks:ke - 2].copy()):
        begin = start.copy()
        begin[ks:ke - 2] = window_start
        for chunk, overlap in ((12, 2), (20, 4)):
            x, _, _ = _chunked(y, lam, begin, chunk, overlap, (ks, ke))
            np.testing.assert_allclose(x, twin, atol=1e-7 * max(1.0, np.abs(y).max()))


def test_known_window_on_a_long_row_gives_the_chunked_solve_in_fewer_fits():
    rng = np.random.default_rng(5)
    n, window = 12000, 4000
    y = _calcium_row(rng, n) + 2.0 * np.exp(-np.arange(n) / 5000) + rng.normal(0, 1.0, n)
    ks = (n - window) // 2
    for lam in (1.0, 4.0):
        own = np.zeros(window - 2, np.int8)
        tf.trend_filter_from(y[ks:ks + window], lam, active=own)
        start = temporal.curvature_signs(y)
        start[ks:ks + window - 2] = own
        x, state, fits = _chunked(y, lam, start, 2000, 50)
        x_known, state_known, fits_known = _chunked(y, lam, start, 2000, 50, (ks, ks + window))
        assert np.array_equal(state_known, state)
        assert np.array_equal(x_known, x)
        assert fits_known < fits
        np.testing.assert_allclose(x, tf.trend_filter(y, lam), rtol=0, atol=1e-9 * np.abs(y).max())


def test_long_row_filter_is_the_same_with_and_without_the_known_window(monkeypatch):
    rng = np.random.default_rng(11)
    n = 9000
    rows = [_calcium_row(rng, n) + rng.normal(0, 1.0, n) for _ in range(3)]
    for y in rows:
        outs = []
        for known in (False, True):
            monkeypatch.setattr(temporal, "LONG_KNOWN_WINDOW", known)
            outs.append(temporal.long_row_filter(y, 1.0, window=3000, budget=0.5))
        assert np.array_equal(outs[0][0], outs[1][0])
        assert outs[0][1] == outs[1][1]
