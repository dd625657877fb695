"""Temporal penalty on the re-fitted factors: trend filtering, kept only where it removes noise.

Each temporal factor is trend-filtered within its own noise budget, and the part
the filter removed is then tested against white noise of the factor's noise
level, from the factor alone (no frame rate, no kind of recording):

* **events**: windows of :data:`EVENT_WINDOW` frames where the removed part's
  energy exceeds what noise gives once in :data:`EVENT_P` windows hold a fast
  event that the filter shaved (a voltage spike of 1-3 frames, a calcium rise
  within a frame); there the factor keeps its unfiltered values;
* **degrees of freedom**: the budget is the noise the fit leaves out, not all
  of it.  A fit with ``df`` degrees of freedom (trend filtering: its knots plus
  2, Tibshirani and Taylor 2011) keeps ``df`` of the ``T`` noise dimensions, so
  an unbiased fit leaves ``(T - df) sigma^2`` in the removed part.  The full
  ``T sigma^2`` (Morozov's discrepancy principle) can only be met by shaving
  about ``df sigma^2`` of signal as well: calcium peaks and fast rises.  The
  budget is therefore set to ``(T - df) sigma^2`` (``df`` of the fit at the
  full budget, then :data:`DF_ITERATIONS` re-fit).  On the real
  two-photon movie of ``../shared`` this removes less signal (photon splitting)
  and lowers the error; on the simulated calcium movie it lowers the error
  against the ground truth;
* **signal removed, by data fission**: the factors of a group (the rows the
  pipeline filters together) share a budget level, the largest of 1, 1/2, ...
  at which the filter removes at most :data:`SIGNAL_REMOVED_LIMIT` of the
  group's signal.  The removed signal is estimated without ground truth: each
  factor is split into two copies with the same signal and independent noise
  (``y + a z`` and ``y - z / a``, :func:`fission_removed`), the first is
  filtered, and what it removed is correlated with the second, which only
  signal can do.  One factor's estimate is noisy; a group's adds up, and what
  the filter shaves (calcium peaks and rises, a frame-wide flicker or a slow
  wave that it cannot follow) shows in many factors at once.  A group whose
  signal estimate is not significant holds noise alone and keeps the whole
  budget;
* **whiteness**: outside the events, the removed part's lag-1 autocorrelation
  must not exceed :data:`WHITENESS_Z` standard errors (noise removed by a smoother
  has a slightly negative one; slow signal left in it, a positive one).  If it
  does, the filter is redone with half the budget, and dropped for that factor
  after :data:`MAX_HALVINGS` halvings.

So calcium factors are smoothed as far as what is removed is noise, spikes and fast
rises keep their amplitude, and a factor whose dynamics the filter cannot follow is
left as it was.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from scipy.ndimage import binary_dilation, uniform_filter1d
from scipy.stats import chi2

from .penalties import constrained_trend_filter

#: Frames of the windows tested for shaved events.
EVENT_WINDOW = 3
#: False-alarm rate per window of the event test (noise alone).
EVENT_P = 1e-2
#: Largest lag-1 autocorrelation of the removed part, in standard errors (1 / sqrt(T)).
WHITENESS_Z = 3.0
#: Budget halvings tried before the filter is dropped for a factor.
MAX_HALVINGS = 3
#: Most signal the filter may remove from a group of factors, as a share of their signal (data fission).
SIGNAL_REMOVED_LIMIT = 0.02
#: Standard errors (of noise alone) that a group's fission signal estimate must exceed to be signal.
FISSION_Z = 3.0
#: ``a`` of the fission ``f = y + a z``, ``g = y - z / a``: ``f`` is nearly ``y``, ``g`` the noisy reference.
FISSION_SPLIT = 0.5
#: Re-fits that bring the budget to ``(T - df) sigma^2``, ``df`` the fit's own degrees of freedom.
DF_ITERATIONS = 1


def robust_noise_std(rows: np.ndarray) -> np.ndarray:
    """Per-row white-noise std: 1.4826 * median(|diff|) / sqrt(2), shape (k,)."""
    d = np.diff(np.asarray(rows, np.float64), axis=1)
    return 1.4826 * np.median(np.abs(d - np.median(d, axis=1, keepdims=True)), axis=1) / np.sqrt(2.0)


def event_mask(removed: np.ndarray, sigma: float, *, window: int | None = None, p: float | None = None) -> np.ndarray:
    """Frames near windows where ``removed`` holds more energy than noise of std ``sigma`` gives (rate ``p``).

    Defaults: :data:`EVENT_WINDOW` and :data:`EVENT_P`.
    """
    window = EVENT_WINDOW if window is None else window
    p = EVENT_P if p is None else p
    z = np.asarray(removed, np.float64) / sigma
    energy = uniform_filter1d(z * z, window, mode="nearest") * window
    mask = energy > chi2.ppf(1.0 - p, window)
    if mask.any():
        mask = binary_dilation(mask, np.ones(window, bool))
    return mask


def trend_df(x: np.ndarray, tol: float = 1e-4) -> int:
    """Degrees of freedom of a piecewise-linear fit: frames where its second difference is not zero, plus 2.

    Zero is relative to ``tol`` times the fit's peak (as the store counts them).
    """
    x = np.asarray(x, np.float64)
    peak = float(np.abs(x).max()) if x.size else 0.0
    return int(np.count_nonzero(np.abs(np.diff(x, 2)) > tol * (peak if peak > 0 else 1.0))) + 2


def removed_lag1(removed: np.ndarray, keep: np.ndarray) -> float:
    """Lag-1 autocorrelation of ``removed`` over the frames ``keep`` (pairs of kept frames)."""
    r = np.where(keep, removed, 0.0)
    den = float(np.sum(r * r))
    return float(np.sum(r[1:] * r[:-1]) / den) if den > 0 else 0.0


def budget_fit(y: np.ndarray, sigma: float, budget: float, *, lam0=None):
    """Trend filter ``y`` within ``budget (T - df) sigma^2``, shaved events restored: ``(x, info)``.

    ``info``: ``fraction`` (of ``T sigma^2`` removed), ``events`` (fraction of
    frames restored), ``mask`` (those frames), ``lam``.
    """
    y = np.asarray(y, np.float64)
    n = y.size

    def fit(fraction, lam_start, events):
        x, lam = constrained_trend_filter(y, fraction * n * sigma**2, rtol=5e-2, lam0=lam_start)
        x = np.array(x, np.float64)
        df = trend_df(x)  # of the trend itself: restored frames spend no budget
        mask = event_mask(y - x, sigma) if events is None else events | event_mask(y - x, sigma)
        x[mask] = y[mask]
        return x, float(lam), mask, df

    x, lam, mask, df = fit(budget, lam0, None)
    fraction = budget
    for _ in range(DF_ITERATIONS):
        # The fit keeps df of the n noise dimensions: leave them out of the budget.  Events found by
        # the smoother fit stay restored: a smaller budget shaves them less, below what the test sees.
        fraction = budget * max(1.0 - df / n, 0.0)
        x, lam, mask, df = fit(fraction, lam if lam > 0 else lam0, mask)
    return x, {"fraction": fraction, "events": float(mask.mean()), "mask": mask, "lam": lam}


def adaptive_trend_filter(y, sigma: float, *, lam0=None, budget: float = 1.0):
    """Trend filter ``y`` within ``(len(y) - df) sigma^2``, undone where the removed part is not noise.

    Parameters
    ----------
    y : ndarray, shape (T,)
    sigma : float
        Noise std of ``y``.
    lam0 : float, optional
        Starting penalty for the budget search.
    budget : float
        First halving level tried (1: the whole noise budget).

    Returns
    -------
    x : ndarray, shape (T,), float64
    info : dict
        ``budget`` (the halving level: 1, 1/2, ...; 0: not filtered), ``fraction``
        (of ``T sigma^2`` removed, after the degrees-of-freedom correction), ``events``
        (fraction of frames restored), ``lag1`` (of the removed part), ``lam``.
    """
    y = np.asarray(y, np.float64)
    lag1 = math.nan
    for _ in range(MAX_HALVINGS + 1):
        if budget < 0.5**MAX_HALVINGS:
            break
        x, fit = budget_fit(y, sigma, budget, lam0=lam0)
        keep = ~fit["mask"]
        lag1 = removed_lag1(y - x, keep)
        if lag1 <= WHITENESS_Z / math.sqrt(max(int(keep.sum()), 1)):
            return x, {"budget": budget, "fraction": fit["fraction"], "events": fit["events"], "lag1": lag1,
                       "lam": fit["lam"]}
        budget *= 0.5
        lam0 = fit["lam"] * 0.5 if fit["lam"] > 0 else lam0
    return y.copy(), {"budget": 0.0, "fraction": 0.0, "events": 0.0, "lag1": lag1, "lam": 0.0}


def fission_removed(y: np.ndarray, sigma: float, budget: float, *, lam0=None):
    """Signal that the filter at ``budget`` removes from ``y``, by data fission: ``(removed, signal, spread, lam)``.

    ``y = s + e`` with white noise ``e`` of std ``sigma``: with independent
    ``z ~ N(0, sigma^2)`` (seeded by ``y`` itself), ``f = y + a z`` and
    ``g = y - z / a`` (``a`` = :data:`FISSION_SPLIT`) hold the same signal and
    independent noises (Leiner, Duan, Wasserman and Ramdas 2023; photon
    splitting for Gaussian noise).  The filter's removed part of ``f``,
    ``r = f - filter(f)``, is independent of ``g`` when it is noise, so
    ``removed = <r, g - mean g>`` has mean zero; it estimates ``<r, s>`` (the
    signal shaved) otherwise.  ``signal = <f - mean f, g - mean g>`` estimates
    ``||s - mean s||^2``.  ``f`` is noisier than ``y`` (``1 + a^2`` times the
    variance), so its fit is smoother: the estimate errs on the side of more
    signal removed.  ``spread``: the variance of ``signal`` when ``y`` is
    noise alone, ``sum_t ((f_t - mean f) g_t)^2``; ``lam``: the penalty of
    the fit (a start for the next).

    The two noises are independent only when ``y``'s noise has variance
    ``sigma^2``: a level read high (signal in the differences) makes the
    removed estimate low, one read low makes it high.
    """
    y = np.asarray(y, np.float64)
    a = FISSION_SPLIT
    rng = np.random.default_rng(zlib.crc32(y.tobytes()))
    z = rng.normal(0.0, sigma, y.size)
    f, g = y + a * z, y - z / a
    x, fit = budget_fit(f, sigma * math.sqrt(1.0 + a * a), budget, lam0=lam0)
    g = g - g.mean()
    products = (f - f.mean()) * g
    return float(np.dot(f - x, g)), float(products.sum()), float(np.dot(products, products)), fit["lam"]


def group_budgets(rows: np.ndarray, sigma: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """First halving level of each row: the largest of 1, 1/2, ... 1/2^:data:`MAX_HALVINGS` at which the
    filter removes at most :data:`SIGNAL_REMOVED_LIMIT` of its group's signal (:func:`fission_removed`,
    summed over the group); 0 when none does.  A group whose signal estimate is within :data:`FISSION_Z`
    standard errors of zero holds noise alone: it keeps the whole budget.

    A factor's own estimate is too noisy to decide on (a weak factor holds little
    signal); its neighbours' add up, and shaved signal (calcium peaks and rises,
    slow fluctuations the filter cannot follow) shows in most of them at once.
    """
    out = np.zeros(len(rows))
    lam = [None]  # rows are in noise units: one fit's penalty is a good start for the next
    for group in np.unique(groups):
        members = np.flatnonzero((groups == group) & (sigma > 0))

        def passes(budget, members=members):
            removed = signal = spread = 0.0
            for i in members:
                r, e, v, fit_lam = fission_removed(rows[i], float(sigma[i]), budget, lam0=lam[0])
                removed, signal, spread = removed + r, signal + e, spread + v
                lam[0] = fit_lam if fit_lam > 0 else lam[0]
            # A group of noise alone (no signal detected) has no signal to lose.
            return signal <= FISSION_Z * math.sqrt(spread) or removed <= SIGNAL_REMOVED_LIMIT * signal

        budget = 1.0
        while budget >= 0.5**MAX_HALVINGS and not passes(budget):
            budget *= 0.5
        if budget < 0.5**MAX_HALVINGS:
            continue
        out[members] = budget
    return out


def trend_filter_rows(rows: np.ndarray, *, groups=None, return_info: bool = False):
    """Trend-filter each temporal factor within its own noise budget, where that removes only noise.

    Each row ``v~`` (a patch component's time course on the full movie) is
    replaced by the smoothest ``v`` in ``||D^2 v||_1`` with
    ``||v~ - v||^2 <= b (T - df) s^2`` (``df`` the fit's degrees of freedom),
    ``s`` the row's noise level from the median absolute first difference
    (robust to calcium transients and spikes, whose sharp rises would inflate a
    spectral estimate).  ``b`` starts at the largest of 1, 1/2, ... at which the
    filter removes at most :data:`SIGNAL_REMOVED_LIMIT` of the signal of the
    row's group (:func:`group_budgets`); then the removed part ``v~ - v`` is
    tested (:func:`adaptive_trend_filter`): frames of shaved events keep ``v~``,
    and a removed part that is not white halves ``b`` again, down to no filtering.

    Parameters
    ----------
    rows : ndarray, shape (k, T)
    groups : array_like of int, shape (k,), optional
        Group of each row (e.g. its patch); all rows form one group by default.
        The rows of a group share their first halving level.
    return_info : bool
        Also return the per-row :func:`adaptive_trend_filter` information.

    Returns
    -------
    ndarray, shape (k, T), float32 (and a list of dicts with ``return_info``)
    """
    out = np.array(rows, dtype=np.float32, copy=True)
    n = rows.shape[1]
    info = []
    unfiltered = {"budget": 0.0, "fraction": 0.0, "events": 0.0, "lag1": math.nan, "lam": 0.0}
    if n < 8:
        return (out, [dict(unfiltered) for _ in range(len(rows))]) if return_info else out
    sigma = robust_noise_std(rows)
    groups = np.zeros(len(rows), np.int64) if groups is None else np.asarray(groups)
    if groups.shape != (len(rows),):
        raise ValueError(f"groups must hold one value per row ({len(rows)}), got shape {groups.shape}")
    rows64 = np.asarray(rows, np.float64)
    budgets = group_budgets(rows64, sigma, groups)
    lam = None  # rows are in noise units, so one row's penalty is a good start for the next
    for i in range(rows.shape[0]):
        if sigma[i] > 0 and budgets[i] > 0:
            x, row_info = adaptive_trend_filter(rows64[i], float(sigma[i]), lam0=lam, budget=float(budgets[i]))
            out[i] = x
            lam = row_info["lam"] if row_info["lam"] > 0 else lam
        else:
            row_info = dict(unfiltered)
        info.append(row_info)
    return (out, info) if return_info else out
