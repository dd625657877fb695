"""The constrained search shared by the three penalties, and their input checks.

PMD needs the *constrained* form of each penalized denoiser
(:mod:`.tv1d`, :mod:`.trend_filter`, :mod:`.tv2d`): the smoothest ``x`` with
``||y - x||^2 <= delta``.  ``res(lam) = ||y - x(lam)||^2`` is non-decreasing
in the penalty weight ``lam``, so each penalty's constrained kernel finds the
largest feasible ``lam`` by a bracketed, safeguarded Newton search on
``log(lam)``; the search state and its steps live here, the solves and the
log-log slopes (exact in 1-D, a secant in 2-D) in the penalty modules.

The public functions of every penalty validate their arguments with the
helpers below, cast to float64, call a kernel and cast the result back
(float16/float32 in -> float32 out, anything else -> float64).  Inputs are
never modified.
"""

from __future__ import annotations

import math

import numpy as np

from pmdcompress._numba import jit
from pmdcompress.errors import InputError

#: Default relative tolerance of the constrained searches: the returned ``x``
#: satisfies ``(1 - rtol) * delta <= ||y - x||^2 <= delta``.
DEFAULT_RTOL = 1e-2
DEFAULT_SEARCH_MAX_NUM_ITER = 60


@jit
def squared_distance(a, b):
    """``||a - b||^2`` of two arrays of the same shape, accumulated in float64."""
    af = a.ravel()
    bf = b.ravel()
    s = 0.0
    for i in range(af.shape[0]):
        d = af[i] - bf[i]
        s += d * d
    return s


# Layout of the search-state vector shared by the constrained kernels.
S_LO = 0  # largest lam known to be feasible (res <= delta); 0 at first
S_HI = 1  # smallest lam known to be infeasible; lam_max at first
S_SIDE = 2  # side of the last evaluation: -1 feasible, +1 infeasible
S_RUN = 3  # how many evaluations in a row landed on that side, minus one
# Largest change of log(lam) in one search step (a factor of about 1100).
_MAX_LOG_STEP = 7.0


@jit
def search_init(lam_max):
    """Search state for the bracket ``[0, lam_max]``."""
    state = np.zeros(4)
    state[S_HI] = lam_max
    return state


@jit
def search_record(state, lam, res, delta):
    """Record an evaluation; return True when ``lam`` is feasible (the new best)."""
    side = -1.0 if res <= delta else 1.0
    if side < 0.0:
        state[S_LO] = lam
    else:
        state[S_HI] = lam
    state[S_RUN] = state[S_RUN] + 1.0 if state[S_SIDE] == side else 0.0
    state[S_SIDE] = side
    return side < 0.0


@jit
def search_done(state, res, delta, rtol):
    """True once ``res`` is inside the window or the bracket has collapsed."""
    if (1.0 - rtol) * delta <= res <= delta:
        return True
    return state[S_HI] - state[S_LO] <= 1e-12 * state[S_HI]


@jit
def search_next(state, target, lam, res, slope):
    """Next lam of the constrained search: a safeguarded Newton step in log-log.

    Parameters
    ----------
    state : ndarray, shape (4,)
        Search state (bracket ``[lo, hi]`` and side history).
    target : float
        Squared residual aimed at (inside the acceptance window).
    lam, res : float
        Last evaluation.
    slope : float
        ``d log res / d log lam`` at ``lam``: exact for the 1-D solvers
        (``2 ||P y - x||^2 / res``, with ``P`` the projection onto the
        solution's piecewise-constant or piecewise-linear structure, because
        ``res = A + B lam^2`` while that structure holds), a secant estimate
        for 2-D TV.

    Returns
    -------
    float
        ``lam * exp((log target - log res) / slope)``, the step clipped to
        ``_MAX_LOG_STEP``; geometric bisection of the bracket when that falls
        outside it or when four evaluations in a row landed on one side.
    """
    lo = state[S_LO]
    hi = state[S_HI]
    if state[S_RUN] < 3.0 and res > 0.0 and slope > 0.0:
        step = (math.log(target) - math.log(res)) / slope
        step = min(max(step, -_MAX_LOG_STEP), _MAX_LOG_STEP)
        c = lam * math.exp(step)
        if lo < c < hi:
            return c
    if lo > 0.0:
        return math.sqrt(lo * hi)
    return 0.1 * min(lam, hi)



@jit
def search_start(lam0, lam_max, r_inf, delta, rtol):
    """Search state, the squared residual aimed at, and the first lam.

    ``lam_max``: a weight whose solution is the limit fit (constant or line),
    ``r_inf``: that fit's squared residual (``> delta``).  The first lam is
    ``lam0`` when it lies inside ``(0, lam_max)``, else the guess
    ``lam_max * sqrt(target / r_inf)``.
    """
    target = (1.0 - 0.5 * rtol) * delta
    state = search_init(lam_max)
    lam = lam0 if 0.0 < lam0 < lam_max else lam_max * math.sqrt(target / r_inf)
    return state, target, lam


# ---------------------------------------------------------------------------
# argument checks of the public functions
# ---------------------------------------------------------------------------


def result_dtype(dtype):
    """float16/float32 -> float32; other real numbers -> float64."""
    if dtype in (np.float16, np.float32):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_float64(a, name, ndim):
    """Validate a real, finite array of ``ndim`` dims; return (float64 array, output dtype)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise InputError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or inf")
    out_dtype = result_dtype(arr.dtype)
    return np.ascontiguousarray(arr, dtype=np.float64), out_dtype


def check_nonnegative(value, name, *, allow_inf):
    """Return ``float(value)``, raising :class:`InputError` unless it is >= 0."""
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a real number, got {value!r}") from exc
    if math.isnan(value) or value < 0.0 or (math.isinf(value) and not allow_inf):
        raise InputError(f"{name} must be a {'' if allow_inf else 'finite '}number >= 0, got {value}")
    return value


def check_budget(delta):
    """Return ``float(delta)``; NaN is rejected, anything else (<= 0 included) is legal."""
    try:
        delta = float(delta)
    except (TypeError, ValueError) as exc:
        raise InputError(f"delta must be a real number, got {delta!r}") from exc
    if math.isnan(delta):
        raise InputError("delta must be a number, got nan")
    return delta


def check_rtol(rtol):
    rtol = float(rtol)
    if not 0.0 < rtol < 1.0:
        raise InputError(f"rtol must be in (0, 1), got {rtol}")
    return rtol


def check_count(value, name):
    value = int(value)
    if value < 1:
        raise InputError(f"{name} must be >= 1, got {value}")
    return value


def check_lam0(lam0):
    if lam0 is None:
        return 0.0
    return check_nonnegative(lam0, "lam0", allow_inf=False)



def constrained_arguments(y, name, ndim, delta, lam0, rtol, max_num_iter):
    """The checked arguments of a constrained search, in the order they are checked.

    Returns ``(y64, out_dtype, delta, lam0, rtol, max_num_iter)``.
    """
    y64, out_dtype = as_float64(y, name, ndim)
    delta = check_budget(delta)
    lam0 = check_lam0(lam0)
    rtol = check_rtol(rtol)
    max_num_iter = check_count(max_num_iter, "max_num_iter")
    return y64, out_dtype, delta, lam0, rtol, max_num_iter
