"""l1 trend filtering of order 2 (piecewise-linear fits) and its constrained form.

* :func:`trend_filter`: ``min_x 1/2 ||y - x||^2 + lam ||D^2 x||_1``, by a
  primal-dual active-set method whose linear algebra is a tridiagonal solve
  in a hat-function basis, O(n) per iteration.
* :func:`constrained_trend_filter`: the smoothest such ``x`` with
  ``||y - x||^2 <= delta``, by the search of :mod:`.constrained`, each solve
  warm started from the previous active set.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from pmdcompress._numba import jit

from .constrained import (
    DEFAULT_RTOL,
    DEFAULT_SEARCH_MAX_NUM_ITER,
    S_LO,
    as_float64,
    check_count,
    check_nonnegative,
    constrained_arguments,
    search_done,
    search_next,
    search_record,
    search_start,
    squared_distance,
)

__all__ = ["constrained_trend_filter", "trend_filter", "trend_filter_from", "trend_filter_search"]

logger = logging.getLogger("pmdcompress")

_EPS = float(np.finfo(np.float64).eps)

DEFAULT_TF_MAX_NUM_ITER = 5000
# How many past active sets are remembered to detect exact cycles, block steps
# allowed without a new lowest number of KKT violations, the most single pivots
# per repair, and the repairs before the active-set finish.
_PDAS_HISTORY = 32
_PDAS_MAX_STALLS = 30
_MURTY_MAX_PIVOTS = 100
_PDAS_MAX_REPAIRS = 2


@jit
def _tf_line_fit(y, x):
    """Least-squares line through ``y`` (written into ``x``); returns ``||y - x||^2``."""
    n = y.shape[0]
    tbar = 0.5 * (n - 1)
    ybar = 0.0
    for i in range(n):
        ybar += y[i]
    ybar /= max(n, 1)
    stt = 0.0
    sty = 0.0
    for i in range(n):
        dt = i - tbar
        stt += dt * dt
        sty += dt * (y[i] - ybar)
    slope = sty / stt if stt > 0.0 else 0.0
    r = 0.0
    for i in range(n):
        x[i] = ybar + slope * (i - tbar)
        d = y[i] - x[i]
        r += d * d
    return r


@jit
def _tf_dual_from_residual(r, z):
    """Solve ``D^T z = r`` for the second-difference operator ``D``.

    ``r`` (length n) must be orthogonal to linear functions.  The two-term
    recursion (a double cumulative sum) runs forward over the first half and
    backward over the second half, which halves rounding-error growth.

    Parameters
    ----------
    r : ndarray of float64, shape (n,)
    z : ndarray of float64, shape (n - 2,)
        Output.
    """
    m = z.shape[0]
    mid = (m + 1) // 2
    n_back = m - mid  # mid or mid - 1
    f1 = 0.0  # z[t-1]
    f2 = 0.0  # z[t-2]
    b1 = 0.0  # z[i+1]
    b2 = 0.0  # z[i+2]
    # The two halves are independent chains of dependent additions: one loop runs both, so each waits
    # on its own latency only (the same operations in the same order: the same floats).
    for k in range(n_back):
        zt = r[k] + 2.0 * f1 - f2
        z[k] = zt
        f2 = f1
        f1 = zt
        i = m - 1 - k
        zi = r[i + 2] + 2.0 * b1 - b2
        z[i] = zi
        b2 = b1
        b1 = zi
    if mid > n_back:
        z[mid - 1] = r[mid - 1] + 2.0 * f1 - f2


@jit
def _tf_limit(y):
    """Least-squares line, smallest lam giving it, and its squared residual.

    Parameters
    ----------
    y : ndarray of float64, shape (n,), n >= 3

    Returns
    -------
    line : ndarray, shape (n,)
    lam_max : float
        For ``lam >= lam_max`` the trend-filter solution is ``line``.
    r_inf : float
        ``||y - line||^2``.
    """
    n = y.shape[0]
    line = np.empty(n)
    lam_max, r_inf = _tf_limit_into(y, line, np.empty(n), np.empty(max(n - 2, 0)))
    return line, lam_max, r_inf


@jit
def _tf_limit_into(y, line, residual, z):
    """:func:`_tf_limit` into given arrays (``line``, ``residual``: (n,), ``z``: at least (n - 2,), work): returns
    ``(lam_max, r_inf)``, the line in ``line``."""
    n = y.shape[0]
    r_inf = _tf_line_fit(y, line)
    lam_max = 0.0
    if n >= 3:
        for i in range(n):
            residual[i] = y[i] - line[i]
        m = n - 2
        _tf_dual_from_residual(residual, z[:m])
        for i in range(m):
            lam_max = max(lam_max, abs(z[i]))
    return lam_max, r_inf


@jit
def _tf_spline_fit(y, lam, state, x, z, w, knots, diag, off, rhs):
    """Trend-filter solution for a fixed active set.

    Given which dual variables sit at a bound (``state``: +1 / -1 at
    ``+lam`` / ``-lam``, 0 free), the primal solution is the least-squares fit
    of ``w = y - D_A^T z_A`` by linear splines with knots at the active
    positions; the free dual values then follow from ``D^T z = y - x``.

    Parameters
    ----------
    y : ndarray of float64, shape (n,)
    lam : float
    state : ndarray of int8, shape (n - 2,)
    x : ndarray of float64, shape (n,)
        Output: the spline fit.
    z : ndarray of float64, shape (n - 2,)
        Output: the dual variable (``+-lam`` on the active set; free values may
        lie outside the box when the active set is wrong).
    w, knots, diag, off, rhs : ndarray
        Work arrays of lengths n, n, n, n, n.

    Notes
    -----
    In the hat-function basis the normal equations are tridiagonal and well
    conditioned whatever the knot spacing, unlike the dual system
    ``D_I D_I^T`` whose condition number grows like the fourth power of the
    longest linear run.  O(n).
    """
    n = y.shape[0]
    m = n - 2
    for i in range(n):
        w[i] = y[i]
    nb = 1
    knots[0] = 0
    for i in range(m):
        s = state[i]
        if s != 0:
            zi = s * lam
            w[i] -= zi
            w[i + 1] += 2.0 * zi
            w[i + 2] -= zi
            knots[nb] = i + 1
            nb += 1
    knots[nb] = n - 1
    nb += 1
    # The Gram matrix and right-hand side in the hat basis, eliminated (LDL^T) as they are summed: row j is final
    # once interval j (the last to add to it) is summed, and its elimination's chain of divisions then runs
    # beside the next interval's sums; the back substitution likewise evaluates each interval's spline (and
    # the residual) as soon as both its coefficients are known.  The same operations on the same values in
    # the same order as summing, eliminating and evaluating in separate passes: the same floats, in about
    # 0.7 of the time on rows of 20000 frames with knots at ~40 % of them.
    # Local accumulators (not the arrays' elements, whose load-store round trips would chain the loop), and the
    # chains' previous row (diag, off, rhs; the back substitution's last coefficient) kept in locals too: read back
    # from the arrays, each link of the two division chains waited on a store-to-load forward as well (-15 to -20 %
    # of a fit on rows of 20000 frames; the same floats).
    # Frame positions unsigned: numba tests every signed index for a negative value (to wrap it around), and
    # positions loaded from knots[] are not known to be >= 0 (the same floats either way).
    diag_k = 0.0
    rhs_k = 0.0
    diag_p = 1.0  # row j - 1 after its elimination (unused for j = 0)
    off_p = 0.0
    rhs_p = 0.0
    t1 = np.uint64(0)
    for j in range(nb - 1):
        t0 = t1
        t1 = np.uint64(knots[j + 1])
        inv_len = 1.0 / (t1 - t0)
        diag_j = diag_k  # row j's sum from interval j - 1
        rhs_j = rhs_k
        off_j = 0.0
        diag_k = 0.0
        rhs_k = 0.0
        for t in range(t0, t1):
            a = (t - t0) * inv_len
            b = 1.0 - a
            diag_j += b * b
            off_j += b * a
            diag_k += a * a
            rhs_j += b * w[t]
            rhs_k += a * w[t]
        if j > 0:
            f = off_p / diag_p
            diag_j -= f * off_p
            rhs_j -= f * rhs_p
        off[j] = off_j
        diag[j] = diag_j
        rhs[j] = rhs_j
        diag_p = diag_j
        off_p = off_j
        rhs_p = rhs_j
    # the last row: the hat of the last frame, then its elimination (nb >= 2)
    diag_k += 1.0
    rhs_k += w[n - 1]
    f = off_p / diag_p
    diag_k -= f * off_p
    rhs_k -= f * rhs_p
    c1 = rhs_k / diag_k
    x[n - 1] = c1
    w[n - 1] = y[n - 1] - c1
    # back substitution, each interval's spline and residual (w is free again) as soon as both its coefficients
    # are known
    t0 = np.uint64(knots[nb - 1])
    for j in range(nb - 2, -1, -1):
        c0 = (rhs[j] - off[j] * c1) / diag[j]
        t1 = t0
        t0 = np.uint64(knots[j])
        inv_len = 1.0 / (t1 - t0)
        dc = c1 - c0
        for t in range(t0, t1):
            xt = c0 + dc * ((t - t0) * inv_len)
            x[t] = xt
            w[t] = y[t] - xt
        c1 = c0
    # dual variables from D^T z = y - x
    _tf_dual_from_residual(w, z)
    for i in range(m):
        if state[i] != 0:
            z[i] = state[i] * lam


@jit
def _tf_curvature(x, i):
    """``(D x)[i] = x[i] - 2 x[i+1] + x[i+2]``."""
    return x[i] - 2.0 * x[i + 1] + x[i + 2]


@jit
def _tf_violates(lam, state, x, z, i, tol_z, tol_nu):
    """Whether index ``i`` breaks the KKT conditions (see :func:`_tf_count_violations`)."""
    s = state[i]
    if s == 0:
        return abs(z[i]) > lam + tol_z
    return s * _tf_curvature(x, i) < -tol_nu


@jit
def _tf_count_violations(lam, state, x, z, tol_z, tol_nu, flags):
    """Number of indices where the spline solution breaks the KKT conditions, each marked in ``flags`` (bool).

    Free dual values must lie in ``[-lam, lam]``; at an active index the
    curvature ``(D x)_i`` must have the sign of ``z_i`` (or vanish).  Both
    tests are made at every index and one is selected (no branch on the
    state, whose pattern a predictor does not learn); :func:`_tf_pdas_update`
    then visits only the marked indices.
    """
    count = 0
    bound = lam + tol_z
    for i in range(state.shape[0]):
        s = state[i]
        wrong_sign = s * _tf_curvature(x, i) < -tol_nu
        outside = abs(z[i]) > bound
        violates = wrong_sign if s != 0 else outside
        flags[i] = violates
        count += violates
    return count


@jit
def _tf_pdas_update(lam, state, x, z, tol_z, tol_nu, last_change, it, flags):
    """One active-set update: release wrong-sign kinks, add one kink per violating run.

    A run of consecutive free indices whose dual values exceed the bound on
    the same side gets a single new kink, at its largest ``|z|``: since ``z``
    is a double cumulative sum of the residual, a violating run marks one
    badly fit region, and activating all of it at once makes the plain
    primal-dual active-set method oscillate.  Changed indices get
    ``last_change[i] = it``.  ``flags``: the violations that
    :func:`_tf_count_violations` marked on this ``state`` (the update reads
    each index's state before it changes it, so the marks hold).
    """
    m = state.shape[0]
    i = 0
    while i < m:
        if not flags[i]:
            i += 1
            continue
        if state[i] != 0:  # a kink of the wrong sign
            state[i] = 0
            last_change[i] = it
            i += 1
        else:  # the first free index of a run outside the bound
            sign = 1 if z[i] > 0.0 else -1
            best = i
            best_value = abs(z[i])
            j = i
            while j < m and state[j] == 0 and sign * z[j] > lam + tol_z:
                if abs(z[j]) > best_value:
                    best_value = abs(z[j])
                    best = j
                j += 1
            state[best] = sign
            last_change[best] = it
            i = j


@jit
def _tf_last_violation(lam, state, x, z, tol_z, tol_nu, last_change, since):
    """Largest index with ``last_change >= since`` that breaks the KKT conditions, or -1."""
    for i in range(state.shape[0] - 1, -1, -1):
        if last_change[i] >= since and _tf_violates(lam, state, x, z, i, tol_z, tol_nu):
            return i
    return -1


@jit
def _tf_state_hash(state):
    """Hash of an active set (positions and signs), for cycle detection: a polynomial in its values (+ 2), in four
    interleaved lanes without branches (one chain of multiplies over only the active positions, behind an
    unpredictable branch, took ~7 % of an active-set step on long rows)."""
    m = state.shape[0]
    p = np.int64(1000003)
    k0 = k1 = k2 = k3 = np.int64(0)
    for i in range(0, m - m % 4, 4):
        k0 = k0 * p + np.int64(state[i] + 2)
        k1 = k1 * p + np.int64(state[i + 1] + 2)
        k2 = k2 * p + np.int64(state[i + 2] + 2)
        k3 = k3 * p + np.int64(state[i + 3] + 2)
    key = ((k0 * p + k1) * p + k2) * p + k3
    for i in range(m - m % 4, m):
        key = key * p + np.int64(state[i] + 2)
    return key & 0x7FFFFFFFFFFFFFFF


@jit
def _tf_active_set(y, lam, state, z, x, max_num_iter, tol_z, tol_nu, work):
    """Finish a trend-filter solve with a textbook primal active-set method.

    Works on the dual ``min_{|z| <= lam} 1/2 ||y - D^T z||^2`` from the
    clipped Newton point of ``state``, keeping ``z`` feasible: move towards
    the minimizer on the current face (a spline fit) until a bound blocks
    (ratio test, the blocking indices join the working set); at a face
    minimizer drop the working index with the most negative multiplier
    (curvature of the wrong sign).  The dual objective never increases and
    every face minimizer is visited at most once, so this terminates
    (Nocedal & Wright, Algorithm 16.3), one working-set change per fit.

    Parameters
    ----------
    y : ndarray of float64, shape (n,)
    lam : float
    state : ndarray of int8, shape (n - 2,)
        Start (any active set) and, on exit, the final working set.
    z : ndarray of float64, shape (n - 2,)
        Output dual solution.
    x : ndarray of float64, shape (n,)
        Output primal solution.
    max_num_iter : int
        Maximum number of spline fits.
    tol_z, tol_nu : float
        KKT tolerances of :func:`_tf_kernel`.
    work : tuple of ndarray
        Work arrays ``(w, knots, diag, off, rhs, z_newton)``.

    Returns
    -------
    n_fits : int
    converged : bool
    """
    w, knots, diag, off, rhs, z_newton = work
    m = state.shape[0]
    _tf_spline_fit(y, lam, state, x, z_newton, w, knots, diag, off, rhs)
    n_fits = 1
    for i in range(m):
        zi = min(max(z_newton[i], -lam), lam)
        z[i] = zi
        state[i] = 1 if zi >= lam else (-1 if zi <= -lam else 0)
    at_face_minimum = False
    while n_fits < max_num_iter:
        _tf_spline_fit(y, lam, state, x, z_newton, w, knots, diag, off, rhs)
        n_fits += 1
        if at_face_minimum:
            worst = -1
            worst_value = -tol_nu
            for i in range(m):
                if state[i] != 0:
                    value = state[i] * _tf_curvature(x, i)
                    if value < worst_value:
                        worst_value = value
                        worst = i
            if worst < 0:
                for i in range(m):
                    z[i] = min(max(z_newton[i], -lam), lam)
                return n_fits, True
            state[worst] = 0
            at_face_minimum = False
            continue
        # ratio test along z -> z_newton
        alpha = 1.0
        blocked = False
        for i in range(m):
            if state[i] == 0:
                d = z_newton[i] - z[i]
                if d > 0.0 and z_newton[i] > lam:
                    step = (lam - z[i]) / d
                    if step < alpha:
                        alpha = step
                        blocked = True
                elif d < 0.0 and z_newton[i] < -lam:
                    step = (-lam - z[i]) / d
                    if step < alpha:
                        alpha = step
                        blocked = True
        for i in range(m):
            if state[i] == 0:
                z[i] += alpha * (z_newton[i] - z[i])
                if blocked:
                    if z[i] >= lam - tol_z:
                        z[i] = lam
                        state[i] = 1
                    elif z[i] <= -lam + tol_z:
                        z[i] = -lam
                        state[i] = -1
        at_face_minimum = not blocked
    return n_fits, False


@jit
def _tf_kernel(y, lam, state, z, x, max_num_iter):
    """Order-2 l1 trend filtering by a safeguarded primal-dual active-set method.

    Parameters
    ----------
    y : ndarray of float64, shape (n,)
        Input signal (read only).
    lam : float
        Penalty weight, ``lam >= 0``.
    state : ndarray of int8, shape (max(n - 2, 0),)
        Active set, updated in place: ``+1`` / ``-1`` where the dual variable
        sits at ``+lam`` / ``-lam`` (a kink of ``x``), ``0`` where it is free.
        Zeros for a cold start; the state left by a nearby ``lam`` warm
        starts the solve.
    z : ndarray of float64, shape (max(n - 2, 0),)
        Output dual solution, ``|z| <= lam`` and ``x = y - D^T z``.
    x : ndarray of float64, shape (n,)
        Output primal solution.
    max_num_iter : int
        Maximum number of spline fits (each O(n)).

    Returns
    -------
    n_iter : int
        Number of spline fits done.
    converged : bool
        True when the KKT conditions hold to rounding tolerance:
        ``|z| <= lam (1 + 1e-10 + 4 eps n^1.5)`` on the free set and
        ``sign(z_i) (D x)_i >= -1e-12 max|y|`` on the active set.

    Notes
    -----
    Solves ``min_x 1/2 ||y - x||^2 + lam ||D x||_1`` where ``D`` is the
    (n-2, n) second-difference matrix, through its dual
    ``min_{|z| <= lam} 1/2 ||y - D^T z||^2``, a strictly convex box QP (a
    box-constrained linear complementarity problem with a P-matrix).  For a
    given active set the solution is a linear-spline fit
    (:func:`_tf_spline_fit`, O(n), well conditioned).

    1. Block steps (:func:`_tf_pdas_update`): a primal-dual active-set /
       semismooth Newton step [2]_ that releases wrong-sign kinks and adds at
       most one kink per violating run.  Usually optimal after 10-40 fits.
    2. Like every block-pivoting method on a non-M-matrix problem it can
       cycle, in practice among a few neighbouring indices where ``|z|`` is
       flat at the bound.  When an active set repeats (hashes of the last
       ``_PDAS_HISTORY`` are kept) or ``_PDAS_MAX_STALLS`` steps pass without
       a new lowest number of violations, the indices changed since are
       repaired by single pivots, largest index first (Murty's rule [3]_),
       the rest held fixed, and block steps resume.
    3. The third time, a primal active-set method (:func:`_tf_active_set`)
       finishes the job from the active set with the fewest violations seen:
       monotone in the dual objective, hence finite, but one working-set
       change per fit.

    On 2000 random problems (calcium-like, random-walk, white-noise, integer
    and V-shaped signals, n = 100 to 5000, lam from 1e-4 lam_max to lam_max)
    plus V shapes at n = 1e5, this took 25 fits on average, 300 at the 99th
    percentile and about 900 at worst.

    References
    ----------
    .. [1] S.-J. Kim, K. Koh, S. Boyd, D. Gorinevsky, "l1 trend filtering",
       SIAM Review 51(2), 339-360, 2009. doi:10.1137/070690274
    .. [2] M. Hintermueller, K. Ito, K. Kunisch, "The primal-dual active set
       strategy as a semismooth Newton method", SIAM J. Optim. 13(3),
       865-888, 2002. doi:10.1137/S1052623401383558
    .. [3] K. G. Murty, "Note on a Bard-type scheme for solving the
       complementarity problem", Opsearch 11, 123-130, 1974.
    .. [4] J. Nocedal, S. J. Wright, "Numerical Optimization", 2nd ed.,
       Springer, 2006, section 16.5 (active-set methods for convex QP).
    """
    return _tf_kernel_work(y, lam, state, z, x, max_num_iter, _tf_work(y.shape[0]))


@jit
def _tf_work(n):
    """Work arrays of :func:`_tf_kernel_work` for rows of up to ``n`` frames: ``(w, knots, diag, off, rhs,
    last_change, violations, best_state)``."""
    return (np.empty(n), np.empty(n, np.int64), np.empty(n), np.empty(n), np.empty(n), np.empty(n, np.int64),
            np.empty(n, np.bool_), np.empty(n, np.int8))


@jit
def _tf_kernel_work(y, lam, state, z, x, max_num_iter, work):
    """:func:`_tf_kernel` with its work arrays given (:func:`_tf_work` of at least ``y``'s length): a search, or a
    chunked solve, allocates them once for all its solves (fresh pages cost a page fault each, ~3 us here: a long
    row's filter touched 126 a row of 20000 frames, 90 since).  The same floats."""
    n = y.shape[0]
    m = n - 2
    if m <= 0 or lam <= 0.0:
        for i in range(n):
            x[i] = y[i]
        for i in range(max(m, 0)):
            z[i] = 0.0
            state[i] = 0
        return 0, True

    ymax = 0.0
    for i in range(n):
        ymax = max(ymax, abs(y[i]))
    tol_nu = 1e-12 * ymax
    tol_z = lam * (1e-10 + 4.0 * _EPS * m * math.sqrt(m))

    w, knots, diag, off, rhs, last_change, violations, best_state = work
    w = w[:n]
    knots = knots[:n]
    diag = diag[:n]
    off = off[:n]
    rhs = rhs[:n]
    last_change = last_change[:m]
    last_change[:] = -(2**62)
    violations = violations[:m]
    best_state = best_state[:m]
    best_state[:] = state

    ring_hash = np.full(_PDAS_HISTORY, -1, np.int64)
    ring_iter = np.zeros(_PDAS_HISTORY, np.int64)
    fewest = m + 1

    n_fits = 0
    it = 0
    best = m + 1
    since_best = 0
    n_repairs = 0
    while n_fits < max_num_iter:
        it += 1
        _tf_spline_fit(y, lam, state, x, z, w, knots, diag, off, rhs)
        n_fits += 1
        count = _tf_count_violations(lam, state, x, z, tol_z, tol_nu, violations)
        if count == 0:
            for i in range(m):
                z[i] = min(max(z[i], -lam), lam)
            return n_fits, True
        if count < fewest:
            fewest = count
            best_state[:] = state
        if count < best:
            best = count
            since_best = 0
        else:
            since_best += 1
        # an exact cycle: this active set was seen within the last _PDAS_HISTORY steps
        key = _tf_state_hash(state)
        cycle_start = -1
        for k in range(_PDAS_HISTORY):
            if ring_hash[k] == key:
                cycle_start = ring_iter[k]
        ring_hash[it % _PDAS_HISTORY] = key
        ring_iter[it % _PDAS_HISTORY] = it
        if cycle_start < 0 and since_best >= _PDAS_MAX_STALLS:
            cycle_start = it - _PDAS_MAX_STALLS - 1
        if cycle_start < 0:
            _tf_pdas_update(lam, state, x, z, tol_z, tol_nu, last_change, it, violations)
            continue
        if n_repairs >= _PDAS_MAX_REPAIRS:
            state[:] = best_state
            finish_work = (w, knots, diag, off, rhs, np.empty(m))
            n_more, converged = _tf_active_set(y, lam, state, z, x, max_num_iter - n_fits, tol_z, tol_nu, finish_work)
            return n_fits + n_more, converged
        # single pivots (largest index first) on the indices changed since the cycle began
        n_repairs += 1
        for _ in range(_MURTY_MAX_PIVOTS):
            if n_fits >= max_num_iter:
                break
            j = _tf_last_violation(lam, state, x, z, tol_z, tol_nu, last_change, cycle_start)
            if j < 0:
                break
            if state[j] == 0:
                state[j] = 1 if z[j] > 0.0 else -1
            else:
                state[j] = 0
            _tf_spline_fit(y, lam, state, x, z, w, knots, diag, off, rhs)
            n_fits += 1
        ring_hash[:] = -1
        best = m + 1
        since_best = 0
    for i in range(m):
        z[i] = min(max(z[i], -lam), lam)
    return n_fits, False



@jit
def _tf_kernel_chunked(y, lam, state, z, x, chunk, overlap, max_num_iter, work, known_start=0, known_end=0):
    """:func:`_tf_kernel` started from an active set assembled from overlapping chunks of ``y``.

    Each run of about ``chunk`` frames is solved on its own with ``overlap`` frames of ``y`` either side
    (started from ``state`` there), and keeps its own part of the chunk's active set; the whole row is then
    solved from the assembled set.  The optimum is the whole row's (the last solve checks the KKT conditions
    on all of it, and moves only what the seams got wrong); the chunks only make the start cheap: a cold
    solve needs more active-set steps the longer the row (about 16 fits at 4000 frames, 20-26 at 20000 on
    real-rank factors), each step costs the whole row, and the kinks of an order-2 trend filter a few
    knots away from a seam no longer feel it.  Returns ``(fits, converged)`` of :func:`_tf_kernel`, the
    chunks' fits counted in rows (their frames over the row's).  ``overlap`` >= 2.
    ``work``: :func:`_tf_work` of at least ``y``'s length, shared by the chunks' solves and the last.

    ``known_start < known_end``: ``state`` on frames ``[known_start, known_end)`` is the optimum of that run of
    ``y`` alone (a long row's central window, solved at the same ``lam``): that run is one chunk by itself (its
    solve then ends at its first fit, where two chunks across it, whose ends the window's solve never saw, took
    3-4 each), keeping all but its ``overlap`` frames at either end; the frames before and after are chunked as
    above.  Only the start changes, not the optimum.
    """
    n = y.shape[0]
    m = n - 2
    n_chunks = (n + chunk - 1) // chunk if chunk > 0 else 1
    if n_chunks <= 1 or m <= 0 or lam <= 0.0:
        return _tf_kernel_work(y, lam, state, z, x, max_num_iter, work)
    known = 0 < known_start + overlap and known_start + 3 * overlap < known_end <= n - overlap
    merged = np.empty(m, np.int8)
    chunk_frames = 0
    # the parts chunked: [0, n), or [0, known_start + overlap) and [known_end - overlap, n) around the known run
    for part in range(3 if known else 1):
        if part == 0:
            lo, hi = 0, (known_start + overlap if known else n)
        elif part == 1:
            lo, hi = known_end - overlap, n
        else:
            lo, hi = known_start + overlap, known_end - overlap
        span = hi - lo
        count = 1 if part == 2 else max((span + chunk - 1) // chunk, 1)
        for c in range(count):
            start = lo + (c * span) // count
            end = lo + ((c + 1) * span) // count
            a = max(start - overlap, 0)
            b = min(end + overlap, n)
            local = state[a:b - 2].copy()
            k, _ = _tf_kernel_work(y[a:b], lam, local, z[:b - a - 2], x[:b - a], max_num_iter, work)  # z, x: work
            chunk_frames += k * (b - a)
            last = min(end, m)
            merged[start:last] = local[start - a:last - a]
    state[:] = merged
    k, converged = _tf_kernel_work(y, lam, state, z, x, max_num_iter, work)
    return k + chunk_frames // n, converged



@jit
def _constrained_tf_kernel(y, delta, lam0, rtol, max_num_iter, max_num_iter_solver, x):
    """Largest lam with ``||y - trend_filter(y, lam)||^2 <= delta``.

    Same contract as :func:`_constrained_tv1d_kernel`; each trend-filter solve
    is warm started from the active set of the previous one.  Returns
    ``(lam, res, n_iter, all_converged)``.
    """
    return _constrained_tf_kernel_from(y, delta, lam0, rtol, max_num_iter, max_num_iter_solver, x,
                                       np.zeros(max(y.shape[0] - 2, 0), np.int8), 0, 2)


@jit
def _constrained_tf_kernel_from(y, delta, lam0, rtol, max_num_iter, max_num_iter_solver, x, active, chunk, overlap,
                                known_start=0, known_end=0):
    """:func:`_constrained_tf_kernel` whose first solve starts from the active set ``active`` (n - 2,), int8,
    left holding the last solve's: a later search on the same ``y`` (another budget) starts near its optimum.
    The optimum does not depend on the start (the problem is strictly convex), only the number of fits.
    ``chunk`` > 0: the first solve starts from chunks of ``y`` (:func:`_tf_kernel_chunked`; a long row
    whose start is known only in part; ``known_start``, ``known_end``: of :func:`_tf_kernel_chunked`)."""
    n = y.shape[0]
    # one set of work arrays for the limit, every solve and the slopes' spline fits (the line is written in x)
    work = _tf_work(n)
    w, knots, diag, off, rhs = work[:5]
    z = np.empty(max(n - 2, 0))
    lam_max, r_inf = _tf_limit_into(y, x, w, z)
    if r_inf <= delta or n <= 2:
        return lam_max, r_inf, 0, True
    m = n - 2
    projected = np.empty(n)
    work_z = np.empty(m)
    state, target, lam = search_start(lam0, lam_max, r_inf, delta, rtol)
    x_best = y.copy()
    res_best = 0.0
    n_iter = 0
    all_converged = True
    while n_iter < max_num_iter:
        n_iter += 1
        if n_iter == 1 and chunk > 0:
            _, converged = _tf_kernel_chunked(y, lam, active, z, x, chunk, overlap, max_num_iter_solver, work,
                                              known_start, known_end)
        else:
            _, converged = _tf_kernel_work(y, lam, active, z, x, max_num_iter_solver, work)
        all_converged = all_converged and converged
        res = squared_distance(y, x)
        if search_record(state, lam, res, delta):
            x_best[:] = x
            res_best = res
        if search_done(state, res, delta, rtol):
            break
        # slope from the projection of y onto the splines with the same knots
        _tf_spline_fit(y, 0.0, active, projected, work_z, w, knots, diag, off, rhs)
        slope = 2.0 * squared_distance(projected, x) / res if res > 0.0 else 2.0
        lam = search_next(state, target, lam, res, slope)
    x[:] = x_best
    return state[S_LO], res_best, n_iter, all_converged



def trend_filter(y, lam, *, max_num_iter=DEFAULT_TF_MAX_NUM_ITER):
    """Fit a piecewise-linear trend by l1 trend filtering (order 2).

    Parameters
    ----------
    y : array_like, shape (n,)
        Real, finite signal.  Not modified.
    lam : float
        Penalty weight, ``lam >= 0``; ``inf`` gives the least-squares line.
    max_num_iter : int, optional
        Maximum number of active-set iterations (spline fits).  Convergence
        is normally reached in 10-40; a warning is logged if not.

    Returns
    -------
    x : ndarray, shape (n,)
        The minimizer; float32 for float16/float32 input, else float64.

    Raises
    ------
    InputError
        If ``y`` is not a finite real 1-D array or ``lam`` is negative or NaN.

    Notes
    -----
    Solves

    .. math:: \\min_x \\tfrac12 \\|y - x\\|_2^2 + \\lambda \\|D^{(2)} x\\|_1,
       \\qquad (D^{(2)} x)_i = x_i - 2 x_{i+1} + x_{i+2},

    by a primal-dual active-set method on the dual box-constrained problem
    ``min_{|z| <= lam} 1/2 ||y - D^T z||^2`` [2]_, adding at most one kink per
    badly fit region per step, with single-pivot repairs (Murty's rule [3]_)
    when it starts cycling.  For a given active set the primal solution is a
    projection onto linear splines with knots at the active positions (a
    tridiagonal system in the hat-function basis), so each iteration costs
    O(n) and stays well conditioned for n up to 1e5 and beyond; 10-40
    iterations are typical, a few hundred the worst seen at n = 1e5.  On
    termination the KKT conditions hold to rounding tolerance
    (``|z| <= lam (1 + 1e-10 + 4 eps n^1.5)`` on the free set,
    curvature-sign violations below ``1e-12 max|y|``), i.e. the result is the
    optimum up to rounding.  ``n <= 2`` or ``lam = 0`` returns ``y``; ``lam``
    at or above ``lam_max`` returns the least-squares line directly.

    References
    ----------
    .. [1] S.-J. Kim, K. Koh, S. Boyd, D. Gorinevsky, "l1 trend filtering",
       SIAM Review 51(2), 339-360, 2009. doi:10.1137/070690274
    .. [2] M. Hintermueller, K. Ito, K. Kunisch, "The primal-dual active set
       strategy as a semismooth Newton method", SIAM J. Optim. 13(3),
       865-888, 2002. doi:10.1137/S1052623401383558
    .. [3] K. G. Murty, "Note on a Bard-type scheme for solving the
       complementarity problem", Opsearch 11, 123-130, 1974.
    .. [4] E. K. Buchanan, I. Kinsella, D. Zhou, et al., "Penalized matrix
       decomposition for denoising, compression, and improved demixing of
       functional imaging data", bioRxiv 334706, 2018. doi:10.1101/334706

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(200.0)
    >>> y = np.abs(t - 100.0) + rng.standard_normal(200)
    >>> x = trend_filter(y, 1000.0)
    >>> bool(np.abs(x - np.abs(t - 100.0)).max() < 5.0)
    True
    """
    y64, out_dtype = as_float64(y, "y", 1)
    lam = check_nonnegative(lam, "lam", allow_inf=True)
    max_num_iter = check_count(max_num_iter, "max_num_iter")
    n = y64.shape[0]
    if n >= 3:
        line, lam_max, _ = _tf_limit(y64)
        if lam >= lam_max:
            return line.astype(out_dtype, copy=False)
    m = max(n - 2, 0)
    x = np.empty_like(y64)
    state = np.zeros(m, np.int8)
    z = np.empty(m)
    n_iter, converged = _tf_kernel(y64, lam, state, z, x, max_num_iter)
    if not converged:
        logger.warning("trend_filter: active set not converged after %d iterations (n=%d, lam=%g)", n_iter, n, lam)
    return x.astype(out_dtype, copy=False)


def constrained_trend_filter(
    y,
    delta,
    *,
    lam0=None,
    rtol=DEFAULT_RTOL,
    max_num_iter=DEFAULT_SEARCH_MAX_NUM_ITER,
    max_num_iter_solver=DEFAULT_TF_MAX_NUM_ITER,
):
    """Smoothest l1 trend-filter fit (order 2) within a squared-residual budget.

    Parameters
    ----------
    y : array_like, shape (n,)
        Real, finite signal.  Not modified.
    delta : float
        Total squared-residual budget, e.g. ``n * sigma**2``.
    lam0 : float, optional
        Initial guess for the penalty weight.
    rtol : float, optional
        The returned ``x`` satisfies ``(1 - rtol) delta <= ||y - x||^2 <=
        delta`` when the budget binds.
    max_num_iter : int, optional
        Maximum number of trend-filter solves in the search.
    max_num_iter_solver : int, optional
        Maximum number of active-set iterations per solve.

    Returns
    -------
    x : ndarray, shape (n,)
        ``trend_filter(y, lam)``; float32 for float16/float32 input, else
        float64.
    lam : float
        The penalty weight found.  If the least-squares line is within budget,
        ``x`` is that line and ``lam`` the smallest weight that yields it; if
        ``delta <= 0``, ``x`` is ``y`` and ``lam`` is 0.

    Raises
    ------
    InputError
        If ``y`` is not a finite real 1-D array or ``delta`` is NaN.

    Notes
    -----
    Solves ``min_x ||D^{(2)} x||_1`` s.t. ``||y - x||_2^2 <= delta`` by the
    Newton search on ``log lam`` described in :func:`constrained_tv1d` (the
    slope uses the projection onto linear splines with the knots of ``x``);
    each solve is warm started from the previous active set, so later solves
    take only a few active-set iterations.

    References
    ----------
    .. [1] E. K. Buchanan, I. Kinsella, D. Zhou, et al., "Penalized matrix
       decomposition for denoising, compression, and improved demixing of
       functional imaging data", bioRxiv 334706, 2018.
       doi:10.1101/334706
    .. [2] S.-J. Kim, K. Koh, S. Boyd, D. Gorinevsky, "l1 trend filtering",
       SIAM Review 51(2), 339-360, 2009. doi:10.1137/070690274

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.sin(np.linspace(0, 6, 300)) + 0.2 * rng.standard_normal(300)
    >>> x, lam = constrained_trend_filter(y, 300 * 0.04)
    >>> bool(0.99 * 12.0 <= np.sum((y - x) ** 2) <= 12.0)
    True
    """
    y64, out_dtype, delta, lam0, rtol, max_num_iter = constrained_arguments(y, "y", 1, delta, lam0, rtol,
                                                                           max_num_iter)
    max_num_iter_solver = check_count(max_num_iter_solver, "max_num_iter_solver")
    if delta <= 0.0 or y64.size == 0:
        return y64.astype(out_dtype, copy=True), 0.0
    x = np.empty_like(y64)
    lam, _, n_iter, converged = _constrained_tf_kernel(y64, delta, lam0, rtol, max_num_iter, max_num_iter_solver, x)
    if not converged:
        logger.warning("constrained_trend_filter: an active-set solve did not converge (n=%d)", y64.size)
    return x.astype(out_dtype, copy=False), float(lam)




def trend_filter_search(y, delta, *, lam0, rtol, active=None, chunk=0, overlap=50, known=None):
    """:func:`constrained_trend_filter` without its argument checks, for a solver's own arrays.

    ``y``: finite float64 (n,); ``lam0``: float or None; ``active``: optional int8 (n - 2,) active set that
    the first solve starts from, overwritten with the last solve's (pass the same array to later searches
    on the same ``y``: they take fewer fits; the optimum is the same up to rounding); ``chunk`` > 0: the
    first solve's start is assembled from overlapping runs of about ``chunk`` frames (:func:`trend_filter_from`);
    ``known``: ``(start, end)``, frames whose ``active`` is already the optimum of that run alone at ``lam0``,
    solved as one chunk (:func:`_tf_kernel_chunked`).
    Returns ``(x float64, lam)``, the same values as :func:`constrained_trend_filter`.
    """
    y64 = np.ascontiguousarray(y, dtype=np.float64)
    if not delta > 0.0 or y64.size == 0:
        return constrained_trend_filter(y, delta, lam0=lam0, rtol=rtol)
    x = np.empty_like(y64)
    if active is None:
        active = np.zeros(max(y64.size - 2, 0), np.int8)
    lam, _, _, converged = _constrained_tf_kernel_from(y64, float(delta), 0.0 if lam0 is None else float(lam0),
                                                       float(rtol), DEFAULT_SEARCH_MAX_NUM_ITER,
                                                       DEFAULT_TF_MAX_NUM_ITER, x, active, int(chunk),
                                                       max(int(overlap), 2), *(known or (0, 0)))
    if not converged:
        logger.warning("constrained_trend_filter: an active-set solve did not converge (n=%d)", y64.size)
    return x, float(lam)


def trend_filter_from(y, lam, *, active=None, chunk=0, overlap=50):
    """:func:`trend_filter` without its argument checks, for a solver's own arrays, from an active set.

    ``y``: finite float64 (n,); ``lam`` > 0; ``active``: optional int8 (n - 2,) active set to start from,
    overwritten with the solution's (zeros: a cold start); ``chunk`` > 0: the start is assembled from
    overlapping runs of about ``chunk`` frames solved on their own (:func:`_tf_kernel_chunked`: fewer
    whole-row steps on long rows; ``overlap`` frames of context either side, >= 2).  Returns ``x``
    (float64), the optimum up to rounding whatever the start.
    """
    y64 = np.ascontiguousarray(y, dtype=np.float64)
    n = y64.size
    if active is None:
        active = np.zeros(max(n - 2, 0), np.int8)
    x = np.empty_like(y64)
    z = np.empty(max(n - 2, 0))
    n_iter, converged = _tf_kernel_chunked(y64, float(lam), active, z, x, int(chunk), max(int(overlap), 2),
                                           DEFAULT_TF_MAX_NUM_ITER, _tf_work(n))
    if not converged:
        logger.warning("trend_filter: active set not converged after %d iterations (n=%d, lam=%g)", n_iter, n, lam)
    return x
