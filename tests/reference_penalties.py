"""Slow, obviously correct twins of the penalty kernels (``pmdcompress.solver.tv1d``, ``trend_filter``, ``tv2d``).

Each penalized problem ``min_x 1/2 ||y - x||^2 + lam ||D x||_1`` is solved
through its dual, the bounded least-squares problem
``min_z ||y - D^T z||^2  s.t.  -lam <= z <= lam`` with ``x = y - D^T z``,
handed to :func:`scipy.optimize.lsq_linear` with the ``bvls`` active-set
method (exact up to rounding on small problems).  ``D`` is built densely.
Only meant for inputs of a few dozen samples or pixels.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import lsq_linear


def difference_matrix(n, order):
    """Dense ``(n - order, n)`` matrix of ``order``-th forward differences."""
    d = np.eye(n)
    for _ in range(order):
        d = np.diff(d, axis=0)
    return d


def grid_difference_matrix(h, w):
    """Dense matrix of all horizontal then all vertical differences of a C-order (h, w) image."""
    horizontal = np.kron(np.eye(h), difference_matrix(w, 1))
    vertical = np.kron(difference_matrix(h, 1), np.eye(w))
    return np.vstack([horizontal, vertical])


def penalized_objective(y, x, d, lam):
    """``1/2 ||y - x||^2 + lam ||d x||_1`` for flattened ``y`` and ``x``."""
    y = np.ravel(y).astype(np.float64)
    x = np.ravel(x).astype(np.float64)
    penalty = np.abs(d @ x).sum() if d.shape[0] else 0.0
    return 0.5 * np.sum((y - x) ** 2) + lam * penalty


def solve_dual(y, d, lam):
    """Penalized solution and its dual variable via bounded least squares.

    Returns ``(x, z)`` with ``x = y - d.T @ z`` and ``|z| <= lam``.
    """
    y = np.ravel(y).astype(np.float64)
    if d.shape[0] == 0 or lam == 0.0:
        return y.copy(), np.zeros(d.shape[0])
    if np.isinf(lam):
        z = np.linalg.lstsq(d.T, y, rcond=None)[0]
    else:
        # bvls divides by zero internally on some degenerate steps (harmless)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = lsq_linear(d.T, y, bounds=(-lam, lam), method="bvls", tol=1e-15, max_iter=100_000).x
    return y - d.T @ z, z


def tv1d_reference(y, lam):
    """1-D total-variation denoising."""
    y = np.asarray(y, dtype=np.float64)
    return solve_dual(y, difference_matrix(y.size, 1), lam)[0]


def trend_filter_reference(y, lam):
    """Order-2 l1 trend filtering (penalty on second differences)."""
    y = np.asarray(y, dtype=np.float64)
    if y.size <= 2:
        return y.copy()
    return solve_dual(y, difference_matrix(y.size, 2), lam)[0]


def tv2d_reference(img, lam):
    """Anisotropic 2-D total-variation denoising."""
    img = np.asarray(img, dtype=np.float64)
    h, w = img.shape
    return solve_dual(img, grid_difference_matrix(h, w), lam)[0].reshape(h, w)


def constrained_reference(solve, y, delta, *, rtol=1e-3):
    """Largest lam with ``||y - solve(y, lam)||^2 <= delta``, by bisection on log(lam).

    Returns ``(x, lam)``; ``(y, 0)`` if ``delta <= 0``.  The bracket starts at
    ``[1e-12, 1e12] * max|y|`` and the bisection stops once the residual is in
    ``[(1 - rtol) delta, delta]`` or after 200 halvings.
    """
    y = np.asarray(y, dtype=np.float64)
    if delta <= 0:
        return y.copy(), 0.0
    scale = max(np.abs(y).max(), 1e-300)
    lo, hi = 1e-12 * scale, 1e12 * scale
    x_hi = solve(y, hi)
    if np.sum((y - x_hi) ** 2) <= delta:
        return x_hi, hi
    x_lo = solve(y, lo)
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        x = solve(y, mid)
        res = np.sum((y - x) ** 2)
        if res <= delta:
            lo, x_lo = mid, x
            if res >= (1 - rtol) * delta:
                break
        else:
            hi = mid
    return x_lo, lo
