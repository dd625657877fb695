"""Temporal penalty on the re-fitted factors: trend filtering, kept only where it removes noise.

Each temporal factor is trend-filtered within its own noise budget, and the part
the filter removed is then tested against white noise of the factor's noise
level, from the factor alone (no frame rate, no kind of recording):

* **events**: windows of :data:`EVENT_WINDOW` frames where the removed part's
  energy exceeds what noise gives once in :data:`EVENT_P` windows hold a fast
  event that the filter shaved (a voltage spike of 1-3 frames, a calcium rise
  within a frame); there the factor keeps its unfiltered values.  The rate
  is each factor's own (:func:`event_rate`): it rises along
  :data:`EVENT_P_LEVELS` (0.01 to 0.4) while restoring the frames that the
  next rate adds lowers the error, which data fission estimates without ground
  truth.  A spike a few noise stds high, shaved in every factor that holds it,
  passes the test at 0.01 only now and then; over the recurring spikes of a
  voltage movie restoring them pays, so the factor moves up, while calcium
  factors, whose peaks the filter rounds off by less than the noise, stay near
  0.01.  A spike spread over many factors is a few small spikes to these
  tests: the solver's components are localised (one source in few factors,
  :mod:`.localize`) for that.  With both, the voltage cases of
  benchmarks/bench_fidelity.py keep 0.98-1.00 of their spikes' amplitude in
  footprint-weighted traces (0.91-0.99 with neither);
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

Cost: every fit is a constrained trend-filter search.  The fits of one series (a
factor, or its fission copy ``f``, at every level and re-fit) start from the
solver's last active set on it; a group level passed by the fission fits at the
whole level needs no re-fits (on long rows, neither does one that they fail by far,
:data:`LONG_SKIP_REFITS_OVER`); and a factor's own fit starts from its fission fit
at the chosen level (knots and penalty).  On the factors of neurofinder_dev this
takes 4.9 searches per factor instead of 5.6, and half the CPU time.  Rows longer than
:data:`BUDGET_WINDOW_FRAMES` are decided (group levels, event rates, halvings, penalties) on their central
window and fitted once on all frames (:func:`long_row_filter`): 14 ms per row of 20000 frames of a
real-rank movie instead of 25; 10-11 since each search starts at the penalty ratio that the block's previous
row found (:data:`LONG_RATIO_STARTS`) and the whole-row solve from a denser curvature start.
"""

from __future__ import annotations

import functools
import math
import statistics
import zlib

import numpy as np
from scipy.ndimage import binary_dilation, uniform_filter1d
from scipy.special import gammaincinv

from .._numba import jit
from ..formats.store import piecewise_linear_df
from .trend_filter import trend_filter_search

#: Frames of the windows tested for shaved events.
EVENT_WINDOW = 3
#: False-alarm rate per window of the event test (noise alone): the first of :data:`EVENT_P_LEVELS`.
EVENT_P = 1e-2
#: The event test's false-alarm rates tried, in order: a factor moves to the next while restoring the frames
#: that it adds lowers the error, by data fission (:func:`event_rate`).
EVENT_P_LEVELS = (1e-2, 2e-2, 5e-2, 1e-1, 2e-1, 4e-1)
#: Standard errors that the fission estimate of what restoring the frames the next event rate adds gains
#: must exceed for a factor to move to it.  At 0 a calcium factor moves on noise in the estimate now and then
#: (calcium 256x256x3000: ground-truth error reduction 20.24x at 0, 20.52x at 0.6, 20.68x without moving;
#: voltage spikes kept 0.96, 0.955 and 0.94 at 48x48, seed 1).
EVENT_GAIN_Z = 0.5
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
#: Frames (a central window) on which :func:`group_budgets` decides the budgets and event rates of longer
#: rows.  The decision compares statistics (shares of signal removed, event gains), the same at any length
#: once they are measured on enough frames; only each row's own fit needs every frame.  On a 20000-frame
#: real-rank movie (2p-real, 96 rows) 4000 frames chose the same budgets as all frames, outputs within a
#: median 0.0007 (max 0.05) noise SDs RMS, and the filter cost 40 % less.  Rows of at most this many frames
#: are decided on all of them (unchanged).  A 2000-frame window (session 15; 12000-frame simulations of
#: benchmarks/bench_long_rows.py, compression seeds 0 and 1) filtered 11-30 % faster and kept calcium within
#: 1 % (noise RMS reduction 12.32 -> 12.30x 2p-real, 21.0 -> 20.9x 2p), but voltage fell 25.9 -> 18.9x and
#: 26.6 -> 23.8x (trace correlation 0.961 -> 0.913): its event rates need the longer window.
BUDGET_WINDOW_FRAMES = 4000
#: Rows longer than :data:`BUDGET_WINDOW_FRAMES` are filtered by one solve at the penalty that their window's
#: own fit chose (:func:`long_row_filter`); the solve starts from runs of this many frames solved on their
#: own, with :data:`LONG_SOLVE_OVERLAP` frames of context either side (fewer whole-row active-set steps).
LONG_SOLVE_CHUNK = 2000
LONG_SOLVE_OVERLAP = 50
#: Whether the whole-row solve of a row fitted once takes its central window as one chunk of its own: the
#: window's active set there is the optimum of the window alone at the same penalty, so that chunk's solve
#: ends at its first fit; the chunks that crossed it (their ends where the window's solve never had one) took
#: 3-4 fits each.  The same optimum (the whole row's last solve checks every frame).
LONG_KNOWN_WINDOW = True
#: The long rows' searches accept a squared residual within this share below their budget (the window's
#: penalty usually lands there at once; rows of at most the window's frames: 5e-2).
LONG_RTOL = 0.15
#: Whether every long row is fitted twice as :func:`budget_fit` fits it (the whole level, then its degrees-of-
#: freedom re-fit, the first fit's events kept restored) or once, within the window's re-fit budget, its own
#: events restored.  Once (12000-frame sims against their truth, 2p-real / 2p / voltage / 1p, noise RMS
#: reduction with main's twice-on-all-frames filter, twice on the window, once on the window): 12.49 / 12.47
#: / 12.51x, 22.65 / 22.49 / 23.06x, 23.26 / 22.58 / 23.03x; voltage trace correlation 0.960 / 0.957 / 0.954)
#: at about 0.8 of the cost of twice (restoring the smoother fit's events restores noise, in calcium rows).
LONG_FIRST_FIT_EVENTS = False
#: A long row is fitted twice all the same (events of both fits restored) when, on its window, the first
#: fit's event test restores more than this share of the frames that the re-fit's own test does not: fast
#: events (voltage spikes) that the re-fit shaves below the test's threshold.  Calcium rows of a 20000 x
#: 512 x 512 ``2p-real`` movie: 4 of 96 rows (92 show 0-3 such frames); 12000-frame sims: 2p-real 18 of 159,
#: voltage 18 of 41, 2p 60 of 69, 1p 36 of 43.
LONG_EVENT_SHARE = 2.5e-3
#: The second of those two fits meets its budget to this tolerance (the short rows' own), not
#: :data:`LONG_RTOL`: it is the one that sets the noise left.
LONG_REFIT_RTOL = 5e-2
#: Whether the penalty searches of long rows start where the previous row of the block suggests: each
#: window re-fit at its first fit's penalty times the previous row's ratio of the two, each window first fit at
#: its fission seed's penalty times the previous row's ratio of those, each fission re-fit likewise
#: (:func:`group_budgets` ``ratio_starts``).  Rows are in noise units, so the ratios hold from row to row
#: (0.51-0.55 and 0.88-0.90 on a 20000 x 512 x 512 ``2p-real`` movie's rows): the window's own searches end
#: in 1.45 solves instead of 2.5, the fission ones in 1.64 instead of 2.11.  Only the starts change: each
#: search still ends within its tolerance of its budget (outputs within a median 0.004 noise SDs RMS).
LONG_RATIO_STARTS = True
#: Long rows' group decisions (:func:`group_budgets` ``skip_refits_over``) skip a level's fission re-fits when
#: its first fits removed more than this many times the limit: the re-fits (budget ``(T - df)`` of the
#: level) removed at least 0.45 of what the first fits did wherever those exceeded 1.5 limits (135 groups'
#: windows of 4000 frames at levels 1, 1/2, 1/4: the 12000-frame sims of benchmarks/bench_long_rows.py at
#: every offset, and a 20000 x 256 x 256 ``2p-real`` movie), so a level whose first fits remove 2.5 limits
#: is failed by its re-fits too (they would need to remove < 0.4 of it; the fewest seen there: 1.28
#: limits; below 1.5 limits, re-fits kept as little as 0.34 of a voltage group's).  A calcium movie's
#: whole level fails so in almost every group (2p-real: first fits 2.1-5.1 limits, re-fits 1.05-2.5): 3
#: fission searches a row become 2; the same levels, and on the captured rows of those movies the same
#: outputs to the bit (the next level's searches start from the first fits' knots and end at the same
#: optimum).  None: every level's re-fits run (rows of at most :data:`BUDGET_WINDOW_FRAMES`: always).
LONG_SKIP_REFITS_OVER = 2.5


def _clipped_ratio(ratio: float, most: float) -> float:
    """A penalty ratio carried to the next row's search start, within ``[most / 20, most]``: a re-fit's budget is
    smaller than its first fit's (ratio <= 1); one odd row must not send the next row's search far away."""
    return float(min(max(ratio, most / 20.0), most))


#: The noise estimate averages the absolute first differences between these quantiles (around the median).
NOISE_QUANTILES = (0.4, 0.6)


def _central_half_normal_mean(lo: float, hi: float, n: int = 2001) -> float:
    """Mean of ``|Z|``, ``Z`` standard normal, between its quantiles ``lo`` and ``hi``."""
    normal = statistics.NormalDist()
    return float(np.mean([normal.inv_cdf(0.5 + 0.5 * p) for p in np.linspace(lo, hi, n)]))


_CENTRAL_MEAN = _central_half_normal_mean(*NOISE_QUANTILES)


def robust_noise_std(rows: np.ndarray) -> np.ndarray:
    """Per-row white-noise std from first differences, shape (k,), robust to spikes and calcium rises.

    The mean of the absolute differences (about their median) between their
    :data:`NOISE_QUANTILES`, over what a normal gives there, over ``sqrt(2)``:
    the median absolute difference, smoothed.  The median alone moves in steps:
    the pipeline's factors are rounded to about 0.17 of their noise before the
    filter, so the median of their differences takes two or three values over
    all the factors of a movie, 9-17 % apart, and the filter's budget moves with
    its square.  An average over the central order statistics does not.
    """
    d = np.diff(np.asarray(rows, np.float64), axis=1)
    n = d.shape[1]
    if n == 0:
        return np.zeros(len(d))
    lo, hi = (int(q * n) for q in NOISE_QUANTILES)
    hi = max(hi, lo + 1)
    middle = _central_order_statistics(d, lo, hi) if n >= SELECT_MIN_FRAMES else None
    if middle is None:
        a = np.abs(d - np.median(d, axis=1, keepdims=True))
        # Only the central order statistics are needed: a partition puts the same values between lo and hi as
        # a full sort, and sorting those few gives the same floats in the same order.
        if hi < n:
            a = np.partition(a, (lo, hi - 1), axis=1)
        middle = np.sort(a[:, lo:hi], axis=1)
    return middle.mean(axis=1) / _CENTRAL_MEAN / np.sqrt(2.0)


#: Rows of at least this many differences find :func:`robust_noise_std`'s order statistics by
#: :func:`_central_order_statistics` (the same values; numpy's partitions are as fast on short rows).
SELECT_MIN_FRAMES = 2048
#: :func:`_rank_values` guesses where the wanted ranks lie from every this-many-th value ...
SELECT_SAMPLE = 16
#: ... and takes the values between the sample's quantiles this much (a share of the row) beyond them: the
#: quantiles of a sample of 1250 values (20000 frames) err by about 0.014 (one standard error).
SELECT_MARGIN = 0.05


def _central_order_statistics(d: np.ndarray, lo: int, hi: int) -> np.ndarray | None:
    """``np.sort(|d - median(d)|, axis=1)[:, lo:hi]`` of float64 rows ``d`` (k, n), the same floats; None
    where a row is not finite (then numpy's partitions do it).

    numpy's median and two-point partition (introselect: 0.75 ms a row of 20000 frames, the largest item
    of the filter outside its kernel) are replaced by one pass over each row that keeps the values near the
    wanted ranks, which numpy's sort then orders (:func:`_rank_values`).  The median is numpy's (the mean of
    the middle one or two values), so ``|d - median|`` is the same array.
    """
    if not np.all(np.isfinite(d)):
        return None
    k, n = d.shape
    upper = n // 2 + 1
    lower = upper - 1 if n % 2 else upper - 2
    out = np.empty(n)
    median = np.empty((k, upper - lower))
    middle = np.empty((k, hi - lo))
    for i in range(k):
        median[i] = _rank_values(d[i], lower, upper, out)
    a = np.abs(d - median.mean(axis=1, keepdims=True))
    for i in range(k):
        middle[i] = _rank_values(a[i], lo, hi, out)
    return middle


def _rank_values(v: np.ndarray, lo: int, hi: int, out: np.ndarray) -> np.ndarray:
    """``np.sort(v)[lo:hi]`` of a finite float64 row ``v`` (a view of ``out``, (n,) float64).  The values
    between two quantiles of a sample (:data:`SELECT_SAMPLE`, :data:`SELECT_MARGIN`) are gathered
    (:func:`_values_between`) and sorted: when no more values lie below the lower one than the rank ``lo``,
    and enough between, the ranks wanted are among them (else, one row in a hundred or so: the whole row is
    sorted)."""
    n = v.size
    sample = np.sort(v[::SELECT_SAMPLE])
    m = sample.size
    first = int((lo / n - SELECT_MARGIN) * m)
    last = math.ceil((hi / n + SELECT_MARGIN) * m)
    count, below = _values_between(v, sample[first] if first > 0 else -np.inf,
                                   sample[last] if last < m else np.inf, out)
    if below > lo or below + count < hi:
        return np.sort(v)[lo:hi]
    return np.sort(out[:count])[lo - below : hi - below]


@jit
def _values_between(v, low, high, out):
    # the values x of v with low <= x <= high into out[:count], in order; returns (count, values below low).
    # Without branches: each value is written at out[count] and kept by counting it (out holds v.size values);
    # a branch on x < low, taken at random for a third of the values, cost 3-4 times as much.
    below = 0
    count = 0
    for i in range(v.size):
        x = v[i]
        out[count] = x
        below += x < low
        count += (x >= low) & (x <= high)
    return count, below


@functools.lru_cache(maxsize=32)
def _event_threshold(window: int, p: float) -> float:
    """Energy of ``window`` frames of unit white noise exceeded with probability ``p`` (cached: it costs about
    as much as a short trend-filter solve, and every fit asks for the same one).

    ``scipy.stats.chi2.ppf(1 - p, window)`` to the last bit (scipy computes it so), without importing
    ``scipy.stats`` (0.4 CPU-s, a twentieth of a short compression)."""
    return float(2.0 * gammaincinv(window / 2.0, 1.0 - p))


def event_mask(removed: np.ndarray, sigma: float, *, window: int | None = None, p: float | None = None) -> np.ndarray:
    """Frames near windows where ``removed`` holds more energy than noise of std ``sigma`` gives (rate ``p``).

    Defaults: :data:`EVENT_WINDOW` and :data:`EVENT_P`.
    """
    window = EVENT_WINDOW if window is None else window
    p = EVENT_P if p is None else p
    z = np.asarray(removed, np.float64) / sigma
    if window % 2 == 0 or z.size < window:
        energy = uniform_filter1d(z * z, window, mode="nearest") * window
        mask = energy > _event_threshold(window, p)
        if mask.any():
            mask = binary_dilation(mask, np.ones(window, bool))
        return mask
    # The same, by sums over the centred windows (edges repeated), in one compiled pass: it runs on every fit.
    mask = np.empty(z.size, np.bool_)
    _event_mask_kernel(z, window // 2, _event_threshold(window, p), mask)
    return mask


@jit
def _event_mask_kernel(z, h, threshold, mask):
    # mask[i]: some window of 2h + 1 frames (edges repeated) within h of i holds energy sum(z^2) > threshold;
    # each window's sum adds its squares in order, as sums of shifted squares do.
    n = z.size
    hits = np.zeros(n + 2 * h, np.bool_)
    for i in range(n):
        j = min(max(i - h, 0), n - 1)
        total = z[j] * z[j]
        for k in range(i - h + 1, i + h + 1):
            j = min(max(k, 0), n - 1)
            total += z[j] * z[j]
        hits[i + h] = total > threshold
    for i in range(n):
        hit = False
        for k in range(2 * h + 1):
            hit |= hits[i + k]
        mask[i] = hit


def trend_df(x: np.ndarray, tol: float = 1e-4) -> int:
    """Degrees of freedom of one piecewise-linear fit, counted as the store counts them
    (:func:`~pmdcompress.formats.store.piecewise_linear_df`: knots plus 2)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 1:
        return int(piecewise_linear_df(x, tol)[0])
    # every fit counts its knots: in one pass here (piecewise_linear_df's temporaries cost 5 % of a long row's
    # filter), the same differences in the same order, so the same count
    return int(_trend_df_kernel(np.ascontiguousarray(x), float(tol)))


@jit
def _trend_df_kernel(x, tol):
    # piecewise_linear_df of one row: second differences as np.diff(x, 2) forms them, (x2 - x1) - (x1 - x0),
    # against tol times the row's peak |x| (1 when that is 0)
    n = x.size
    peak = 0.0
    for i in range(n):
        peak = max(peak, abs(x[i]))
    limit = tol * (peak if peak > 0 else 1.0)
    knots = 0
    for i in range(n - 2):
        if abs((x[i + 2] - x[i + 1]) - (x[i + 1] - x[i])) > limit:
            knots += 1
    return knots + 2


def removed_lag1(removed: np.ndarray, keep: np.ndarray) -> float:
    """Lag-1 autocorrelation of ``removed`` over the frames ``keep`` (pairs of kept frames)."""
    r = np.where(keep, removed, 0.0)
    den = float(np.sum(r * r))
    return float(np.sum(r[1:] * r[:-1]) / den) if den > 0 else 0.0


def _fit(y, sigma, fraction, lam0, active, events, p=None, *, rtol=5e-2, chunk=0, known=None):
    """One trend-filter fit of ``y`` within ``fraction T sigma^2`` (to ``rtol``), shaved events (at false-alarm
    rate ``p``, and ``events``) restored: ``(x, lam, mask, df, trend)``, ``df`` of the trend itself (restored
    frames spend no budget), ``trend`` the fit before the events were restored.  ``chunk``, ``known``: of
    :func:`~pmdcompress.solver.trend_filter.trend_filter_search`."""
    n = y.size
    trend, lam = trend_filter_search(y, fraction * n * sigma**2, rtol=rtol, lam0=lam0, active=active,
                                     chunk=chunk, overlap=LONG_SOLVE_OVERLAP, known=known)
    trend = np.asarray(trend, np.float64)  # a fresh array already (no copy)
    df = trend_df(trend)
    mask = event_mask(y - trend, sigma, p=p)
    if events is not None:
        mask |= events
    x = trend.copy()
    x[mask] = y[mask]
    return x, float(lam), mask, df, trend


def _refit(y, sigma, budget, first, active, p=None, *, lam_ratio=None):
    """The degrees-of-freedom re-fits of :func:`budget_fit` after its first fit ``first`` (``_fit``'s tuple).
    Events found by the smoother fit stay restored: a smaller budget shaves them less, below what the test
    sees.  ``lam_ratio``: the re-fit's search starts at the first fit's penalty times this (default 1)."""
    x, lam, mask, df, _ = first
    lam0 = lam if lam > 0 else None
    if lam > 0 and lam_ratio is not None:
        lam *= lam_ratio
    fraction = budget
    for _ in range(DF_ITERATIONS):
        # The fit keeps df of the n noise dimensions: leave them out of the budget.
        fraction = budget * max(1.0 - df / y.size, 0.0)
        x, lam, mask, df, trend = _fit(y, sigma, fraction, lam if lam > 0 else lam0, active, mask, p)
    return x, {"fraction": fraction, "events": float(mask.mean()), "mask": mask, "lam": lam, "trend": trend}


def budget_fit(y: np.ndarray, sigma: float, budget: float, *, lam0=None, active=None, event_p=None):
    """Trend filter ``y`` within ``budget (T - df) sigma^2``, shaved events restored: ``(x, info)``.

    ``info``: ``fraction`` (of ``T sigma^2`` removed), ``events`` (fraction of
    frames restored), ``mask`` (those frames), ``lam``.  ``active``: the solver's
    active set (int8, ``T - 2``) to start from and update, shared by the fits of
    one ``y`` (:func:`~pmdcompress.solver.trend_filter.trend_filter_search`): the
    same fits, in fewer solver steps.  ``event_p``: the event test's false-alarm rate
    (default :data:`EVENT_P`).
    """
    y = np.ascontiguousarray(y, np.float64)
    if active is None:
        active = np.zeros(max(y.size - 2, 0), np.int8)
    x, info = _refit(y, sigma, budget, _fit(y, sigma, budget, lam0, active, None, event_p), active, event_p)
    del info["trend"]
    return x, info


def adaptive_trend_filter(y, sigma: float, *, lam0=None, budget: float = 1.0, active=None, event_p=None):
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
    event_p : float, optional
        False-alarm rate per window of the event test (default :data:`EVENT_P`).

    Returns
    -------
    x : ndarray, shape (T,), float64
    info : dict
        ``budget`` (the halving level: 1, 1/2, ...; 0: not filtered), ``fraction``
        (of ``T sigma^2`` removed, after the degrees-of-freedom correction), ``events``
        (fraction of frames restored), ``lag1`` (of the removed part), ``lam``.
    """
    y = np.ascontiguousarray(y, np.float64)
    # the halvings' fits start where the last one ended
    active = np.zeros(max(y.size - 2, 0), np.int8) if active is None else np.array(active, np.int8)
    return _halvings(y, sigma, lam0, budget, active, event_p)


def _halvings(y, sigma, lam0, budget, active, event_p, fits=None, *, refit_ratio=None):
    """:func:`adaptive_trend_filter`'s budget halvings on float64 ``y``; ``active`` (int8, ``T - 2``) is the
    solver's active set to start from, left holding the last fit's.  ``fits``: a list to which each level's
    ``(first, trend)`` is appended: its first fit (``_fit``'s tuple, before the degrees-of-freedom re-fit) and
    the re-fit's trend (before any event was restored).  ``refit_ratio``: of :func:`_refit`."""
    lag1 = math.nan
    for _ in range(MAX_HALVINGS + 1):
        if budget < 0.5**MAX_HALVINGS:
            break
        # budget_fit, its first fit kept
        first = _fit(y, sigma, budget, lam0, active, None, event_p)
        x, fit = _refit(y, sigma, budget, first, active, event_p, lam_ratio=refit_ratio)
        if fits is not None:
            fits.append((first, fit["trend"]))
        keep = ~fit["mask"]
        lag1 = removed_lag1(y - x, keep)
        if lag1 <= WHITENESS_Z / math.sqrt(max(int(keep.sum()), 1)):
            return x, {"budget": budget, "fraction": fit["fraction"], "events": fit["events"], "lag1": lag1,
                       "lam": fit["lam"]}
        budget *= 0.5
        lam0 = fit["lam"] * 0.5 if fit["lam"] > 0 else lam0
    return y.copy(), {"budget": 0.0, "fraction": 0.0, "events": 0.0, "lag1": lag1, "lam": 0.0}


def fission_removed(y: np.ndarray, sigma: float, budget: float, *, lam0=None, active=None):
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
    the fit (a start for the next); ``active``: the solver's active set on ``f``, to start from and
    update (``f`` is the same at every budget).

    The two noises are independent only when ``y``'s noise has variance
    ``sigma^2``: a level read high (signal in the differences) makes the
    removed estimate low, one read low makes it high.
    """
    f, g, sigma_f, signal, spread, _ = _fission_split(y, sigma)
    x, fit = budget_fit(f, sigma_f, budget, lam0=lam0, active=active)
    return float(np.dot(f - x, g)), signal, spread, fit["lam"]


def _fission_split(y, sigma):
    """``(f, g - mean g, sigma of f, signal, spread, mean g)`` of :func:`fission_removed`: what does not
    depend on the budget."""
    y = np.asarray(y, np.float64)
    a = FISSION_SPLIT
    rng = np.random.default_rng(zlib.crc32(y.tobytes()))
    z = rng.normal(0.0, sigma, y.size)
    f, g = y + a * z, y - z / a
    g_mean = float(g.mean())
    g = g - g_mean
    products = (f - f.mean()) * g
    return f, g, sigma * math.sqrt(1.0 + a * a), float(products.sum()), float(np.dot(products, products)), g_mean


def event_rate(splits: dict, trends: dict) -> float:
    """The event test's false-alarm rate of the factors given (together; the pipeline gives them one at a
    time): the first of :data:`EVENT_P_LEVELS` whose next would restore frames where restoring does not lower
    the error, by data fission.

    ``splits``: member -> :func:`_fission_split` of its row; ``trends``: member
    -> the filter's fit ``x`` of its ``f`` (before any restoring).  Restoring a
    frame replaces the fit's error there, ``(s - x)^2``, by the noise's
    variance: it pays where the filter shaved more than the noise (a spike, a
    fast rise).  ``g`` holds the same signal as ``f`` and noise independent of
    it, so over frames chosen from ``f`` alone (those that the next rate's event
    test would restore and the current one does not), ``sum (g - x)^2 - var(g)``
    is an unbiased estimate of the fit's error there; the factors move to the
    next rate while that exceeds what restoring costs, ``var(f)`` a frame, by
    :data:`EVENT_GAIN_Z` standard errors of the sum.
    Shaved spikes recur over a movie, so their frames add up long before one of
    them passes the event test alone; calcium peaks that the filter rounds off
    by less than the noise stay filtered.  ``f`` is noisier than the factor, so
    its fit shaves more than the factor's own: the estimate errs on the side of
    restoring, which :data:`EVENT_GAIN_Z` offsets.
    """
    members = list(trends)
    a2 = FISSION_SPLIT**2
    removed = {i: splits[i][0] - trends[i] for i in members}
    # each frame's gain from restoring: the fit's error measured against g, (g - x)^2 - var(g), less the
    # cost var(f); var(g) = sigma_f^2 / a^2
    excess = {i: (splits[i][1] + splits[i][5] - trends[i]) ** 2 - splits[i][2] ** 2 * (1.0 / a2 + 1.0)
              for i in members}
    masks = {i: event_mask(removed[i], splits[i][2], p=EVENT_P_LEVELS[0]) for i in members}
    for level, p in enumerate(EVENT_P_LEVELS[:-1]):
        gain = spread = 0.0
        following = {}
        for i in members:
            following[i] = event_mask(removed[i], splits[i][2], p=EVENT_P_LEVELS[level + 1])
            new = excess[i][following[i] & ~masks[i]]
            gain += float(new.sum())
            spread += float(np.dot(new, new))
        if gain <= EVENT_GAIN_Z * math.sqrt(spread):
            return p
        masks = following
    return EVENT_P_LEVELS[-1]


def group_budgets(rows: np.ndarray, sigma: np.ndarray, groups: np.ndarray, *, seeds=None,
                  event_rates=None, ratio_starts: bool = False, skip_refits_over: float | None = None) -> np.ndarray:
    """First halving level of each row: the largest of 1, 1/2, ... 1/2^:data:`MAX_HALVINGS` at which the
    filter removes at most :data:`SIGNAL_REMOVED_LIMIT` of its group's signal (:func:`fission_removed`,
    summed over the group); 0 when none does.  A group whose signal estimate is within :data:`FISSION_Z`
    standard errors of zero holds noise alone: it keeps the whole budget.

    A factor's own estimate is too noisy to decide on (a weak factor holds little
    signal); its neighbours' add up, and shaved signal (calcium peaks and rises,
    slow fluctuations the filter cannot follow) shows in most of them at once.

    ``event_rates``: an array (k,) to fill with each row's event test false-alarm rate, chosen by
    :func:`event_rate` at the group's level (:data:`EVENT_P` for groups of noise alone).
    ``ratio_starts``: each member's re-fit search starts at its first fit's
    penalty times the ratio that the previous member's re-fit found at that level (rows in noise units: the
    ratio is nearly the same, and the search ends in fewer solves; default: at the first fit's penalty).
    ``skip_refits_over``: a level whose first fits removed more than this many times the limit is failed
    without its re-fits (:data:`LONG_SKIP_REFITS_OVER`; default None: they always run).
    """
    out = np.zeros(len(rows))
    if event_rates is not None:
        event_rates[:] = EVENT_P
    n = rows.shape[1]
    levels = [0.5**k for k in range(MAX_HALVINGS + 1)]
    lam = [None]  # rows are in noise units: one fit's penalty is a good start for the next
    for group in np.unique(groups):
        members = np.flatnonzero((groups == group) & (sigma > 0))
        splits = {i: _fission_split(rows[i], float(sigma[i])) for i in members}
        signal = sum(splits[i][3] for i in members)
        if signal <= FISSION_Z * math.sqrt(sum(splits[i][4] for i in members)):
            out[members] = 1.0  # a group of noise alone (no signal detected) has no signal to lose
            continue
        limit = SIGNAL_REMOVED_LIMIT * signal
        # each member's f is the same at every level: its fits start from the last one's active set
        active = {i: np.zeros(max(n - 2, 0), np.int8) for i in members}
        first = {}  # level -> {member: the first fit of budget_fit, at the whole level}

        def first_fits(budget, members=members, splits=splits, active=active, first=first):
            if budget not in first:
                first[budget] = {}
                for i in members:
                    f, _, sigma_f = splits[i][:3]
                    first[budget][i] = _fit(f, sigma_f, budget, lam[0], active[i], None)
                    lam[0] = first[budget][i][1] if first[budget][i][1] > 0 else lam[0]
            return first[budget]

        def removed(fitted, splits=splits):  # member -> its fit of f: the signal the fits remove, summed
            return sum(float(np.dot(splits[i][0] - x, splits[i][1])) for i, x in fitted.items())

        chosen = 0.0
        for budget in levels:
            fits = first_fits(budget)
            # The first fit spends the whole level, more than the re-fit's (T - df) of it, and so shaves
            # more signal (in expectation: the estimate is noisy): when it passes the limit, the re-fit
            # would too, and is skipped.  A group that fails is decided by the re-fits, as before.
            first_removed = removed({i: fit[0] for i, fit in fits.items()})
            if first_removed <= limit:
                chosen = budget
                break
            if skip_refits_over is not None and first_removed > skip_refits_over * limit:
                continue  # far over the limit: the re-fits, which remove about half as much, fail too
            refits = {}
            ratio = None
            for i in members:
                refits[i], refit = _refit(splits[i][0], splits[i][2], budget, fits[i], active[i], lam_ratio=ratio)
                if ratio_starts and fits[i][1] > 0 and refit["lam"] > 0:
                    ratio = _clipped_ratio(refit["lam"] / fits[i][1], 1.0)
            if removed(refits) <= limit:
                chosen = budget
                break
        out[members] = chosen
        if event_rates is not None and chosen > 0:
            for i in members:
                event_rates[i] = event_rate({i: splits[i]}, {i: first[chosen][i][4]})
        if seeds is not None:
            # The row's own fit starts from its fission fit at the chosen level: the same signal, so nearly
            # the same knots and penalty (the search then takes fewer steps; it ends within its tolerance).
            for i in members:
                fit = first.get(chosen, {}).get(i)
                seeds[i] = (active[i], fit[1] if fit is not None and fit[1] > 0 else None)
    return out


#: Std (frames) of the Gaussian smoothing and threshold (in standard deviations of the smoothed second
#: differences) of :func:`curvature_signs`.
START_SMOOTHING = 0.75
START_THRESHOLD = 0.5


def curvature_signs(y: np.ndarray) -> np.ndarray:
    """A start for the trend-filter solver's active set on ``y`` (int8, ``T - 2``): the sign of the second
    difference of ``y`` smoothed over :data:`START_SMOOTHING` frames, where it exceeds :data:`START_THRESHOLD`
    of its standard deviation, 0 elsewhere.  A cold solve adds at most one kink per badly fit run of frames
    per step, so it needs about log2(kinks) whole-row steps (15-20 on real-rank factors of 2000-20000
    frames); from here about 6 (the optimum is the same: only the steps change).  The fits that long rows
    keep have kinks at ~60 % of their frames (96 rows of a 20000 x 512 x 512 ``2p-real`` movie): a light
    smoothing and a low threshold mark about as many, 9.2 -> 6.0 fits per row (smoothing 2, threshold 1
    before; 1 and 0.5: 6.5).

    One compiled call (:func:`_curvature_signs_kernel`; scipy's ``gaussian_filter1d`` (reflected edges),
    the differences, ``np.std`` and ``np.where`` took 0.14 ms a row of 20000 frames, this 0.07).  Its
    sums are not numpy's: a value within rounding of the threshold may get the other sign or none, which
    changes where the solver starts, not the optimum it ends at."""
    y = np.ascontiguousarray(y, np.float64)
    out = np.zeros(max(y.size - 2, 0), np.int8)
    if y.size >= 3:
        _curvature_signs_kernel(y, _start_weights(START_SMOOTHING), START_THRESHOLD, np.empty(y.size), out)
    return out


@functools.lru_cache(maxsize=4)
def _start_weights(sigma: float) -> np.ndarray:
    """Gaussian weights of std ``sigma`` over ``-r..r``, ``r = int(4 sigma + 0.5)``, summing to 1 (scipy's
    ``gaussian_filter1d`` kernel)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 * (x / sigma) ** 2)
    return phi / phi.sum()


@jit
def _curvature_signs_kernel(y, weights, threshold, smooth, out):
    # y smoothed by weights (edges reflected: ... y1 y0 | y0 y1 ... | y[n-1] y[n-2] ...; smooth, (n,)), its second
    # differences' std, then out = their sign where |second difference| > threshold * std.  Sums in any order
    # (a start): the interior tap by tap over views (a loop that vectorizes), the std's sums in four lanes.
    n = y.size
    r = weights.size // 2
    length = max(n - 2 * r, 0)
    interior = smooth[r:r + length]
    interior[:] = 0.0
    for k in range(weights.size):
        wk = weights[k]
        shifted = y[k:k + length]
        for t in range(length):
            interior[t] += wk * shifted[t]
    for t in range(n):
        if r <= t < n - r:
            continue
        acc = 0.0  # the edges: positions reflected
        for k in range(-r, r + 1):
            j = t + k
            if j < 0:
                j = -j - 1
            elif j >= n:
                j = 2 * n - 1 - j
            j = min(max(j, 0), n - 1)  # rows shorter than the kernel: clamp what one reflection leaves
            acc += weights[k + r] * y[j]
        smooth[t] = acc
    m = n - 2
    mean = _four_lane_sum(smooth, m, 0.0, False) / m
    bound = threshold * math.sqrt(_four_lane_sum(smooth, m, mean, True) / m)
    for i in range(m):
        c = smooth[i] - 2.0 * smooth[i + 1] + smooth[i + 2]
        out[i] = (c > bound) - (c < -bound)


@jit
def _four_lane_sum(smooth, m, mean, square):
    # the sum of the second differences of smooth[:m + 2] less mean, or (square) of their squares; four lanes
    s0 = s1 = s2 = s3 = 0.0
    for i in range(0, m - m % 4, 4):
        c0 = smooth[i] - 2.0 * smooth[i + 1] + smooth[i + 2] - mean
        c1 = smooth[i + 1] - 2.0 * smooth[i + 2] + smooth[i + 3] - mean
        c2 = smooth[i + 2] - 2.0 * smooth[i + 3] + smooth[i + 4] - mean
        c3 = smooth[i + 3] - 2.0 * smooth[i + 4] + smooth[i + 5] - mean
        if square:
            c0, c1, c2, c3 = c0 * c0, c1 * c1, c2 * c2, c3 * c3
        s0 += c0
        s1 += c1
        s2 += c2
        s3 += c3
    for i in range(m - m % 4, m):
        c = smooth[i] - 2.0 * smooth[i + 1] + smooth[i + 2] - mean
        s0 += c * c if square else c
    return (s0 + s1) + (s2 + s3)


def long_row_filter(y: np.ndarray, sigma: float, *, budget: float = 1.0, lam0=None, active=None, event_p=None,
                    window: int | None = None, ratios: dict | None = None):
    """:func:`adaptive_trend_filter` of a row longer than ``window`` frames (default
    :data:`BUDGET_WINDOW_FRAMES`), decided on its central window: ``(x, info)`` as there.

    The budget halvings, the whiteness test and the penalty searches run on the window (``active``: the
    solver's active set on the window's frames to start from, ``lam0`` its penalty).  The whole row is then
    fitted as :func:`budget_fit` fits it, at the window's level, each search starting at the penalty that
    the window's ended at, from the window's knots (at their frames) and :func:`curvature_signs` elsewhere,
    and accepting a residual within :data:`LONG_RTOL` below its budget: the penalty that meets a budget per
    frame is a property of the row's signal and noise per frame, not of its length, so each search usually
    ends at its first solve; a row whose signal differs outside the window gets its own penalty.  The
    whiteness test then runs on every frame; a row that fails it (the window's test, on fewer frames, is the
    more lenient) is filtered as :func:`adaptive_trend_filter` would, from half the window's level.  A row
    whose window shows fast events that only the smoother first fit's test restores (more than
    :data:`LONG_EVENT_SHARE` of its frames: voltage spikes, which one fit would shave) is fitted twice on all
    frames, as :func:`budget_fit` fits it, the first fit's events kept restored.  Rows of
    at most ``window`` frames: :func:`adaptive_trend_filter` itself.

    ``ratios``: a dict shared by the rows of one block (rows in noise units): the window's re-fit search
    starts at its first fit's penalty times ``ratios["refit"]``, the ratio that the previous row's window
    found (a start that usually lands within the search's tolerance: one solve instead of three); the
    ratio is updated, and ``ratios["first_lam"]`` set to this row's first penalty (the caller's start of the
    next row's first fit, :func:`trend_filter_rows`).  Only where the search starts changes: each search
    still ends within its tolerance of its budget.
    """
    y = np.ascontiguousarray(y, np.float64)
    n = y.size
    window = BUDGET_WINDOW_FRAMES if window is None else int(window)
    if n <= window:
        return adaptive_trend_filter(y, sigma, lam0=lam0, budget=budget, active=active, event_p=event_p)
    start = (n - window) // 2
    active_window = np.zeros(window - 2, np.int8) if active is None else np.array(active, np.int8)
    fits = []
    y_window = np.ascontiguousarray(y[start:start + window])
    ratios = {} if ratios is None else ratios
    _, fit = _halvings(y_window, sigma, lam0, budget, active_window, event_p, fits, refit_ratio=ratios.get("refit"))
    if len(fits) == 1 and fits[0][0][1] > 0 and fit["lam"] > 0:
        ratios["refit"] = _clipped_ratio(fit["lam"] / fits[0][0][1], 1.0)
        ratios["first_lam"] = fits[0][0][1]
    level = fit["budget"]
    if level == 0.0 or not fit["lam"] > 0.0 or not fits[-1][0][1] > 0.0:
        return y.copy(), fit
    state = curvature_signs(y)
    state[start:start + window - 2] = active_window
    chunked = {"rtol": LONG_RTOL, "chunk": LONG_SOLVE_CHUNK}
    first_window, refit_trend = fits[-1]
    # frames that only the smoother first fit's event test restores, on the window
    first_only = int(np.sum(first_window[2] & ~event_mask(y_window - refit_trend, sigma, p=event_p)))
    if LONG_FIRST_FIT_EVENTS or first_only > LONG_EVENT_SHARE * window:
        # budget_fit's two fits: the events that the first (the whole level, smoother) shaves stay restored
        # after its degrees-of-freedom re-fit, which shaves them less, below what the test sees
        first = _fit(y, sigma, level, first_window[1], state, None, event_p, **chunked)
        fraction = level * max(1.0 - first[3] / n, 0.0)
        x, lam, mask, _, _ = _fit(y, sigma, fraction, fit["lam"], state, first[2], event_p,
                                  rtol=LONG_REFIT_RTOL)
    else:
        fraction = fit["fraction"]
        # the window's frames hold its own optimum at this penalty: one chunk of their own (LONG_KNOWN_WINDOW)
        known = (start, start + window) if LONG_KNOWN_WINDOW else None
        x, lam, mask, _, _ = _fit(y, sigma, fraction, fit["lam"], state, None, event_p, **chunked, known=known)
    keep = ~mask
    lag1 = removed_lag1(y - x, keep)
    if lag1 > WHITENESS_Z / math.sqrt(max(int(keep.sum()), 1)):
        return adaptive_trend_filter(y, sigma, lam0=0.5 * lam, budget=0.5 * level, event_p=event_p)
    return x, {"budget": level, "fraction": fraction, "events": float(mask.mean()), "lag1": lag1, "lam": lam}


def trend_filter_rows(rows: np.ndarray, *, groups=None, sigma=None, return_info: bool = False):
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
    sigma : array_like of float, shape (k,), optional
        Each row's noise std, when the caller knows it (e.g. from the row's spatial
        factor and the pixels' noise); default :func:`robust_noise_std` of each row.
        Rows of noise std 0 are left as they are.
    return_info : bool
        Also return the per-row :func:`adaptive_trend_filter` information.

    Returns
    -------
    ndarray, shape (k, T), float32 (and a list of dicts with ``return_info``)
    """
    out = np.array(rows, dtype=np.float32, copy=True)
    n = rows.shape[1]
    info = []
    unfiltered = {"budget": 0.0, "fraction": 0.0, "events": 0.0, "lag1": math.nan, "lam": 0.0, "event_p": EVENT_P}
    if n < 8:
        return (out, [dict(unfiltered) for _ in range(len(rows))]) if return_info else out
    if sigma is None:
        sigma = robust_noise_std(rows)
    else:
        sigma = np.asarray(sigma, np.float64)
        if sigma.shape != (len(rows),) or not np.all(np.isfinite(sigma)) or np.any(sigma < 0):
            raise ValueError(f"sigma must hold one finite value >= 0 per row ({len(rows)}), got {sigma!r}")
    groups = np.zeros(len(rows), np.int64) if groups is None else np.asarray(groups)
    if groups.shape != (len(rows),):
        raise ValueError(f"groups must hold one value per row ({len(rows)}), got shape {groups.shape}")
    rows64 = np.asarray(rows, np.float64)
    seeds = {}  # each row's last fission active set: the knots of its signal, a start for its own fit
    rates = np.full(len(rows), EVENT_P)
    window = BUDGET_WINDOW_FRAMES
    ratios = None
    if n > window:
        # long rows: everything is decided on the central window; each row is then solved once (long_row_filter)
        start = (n - window) // 2
        budgets = group_budgets(np.ascontiguousarray(rows64[:, start:start + window]), sigma, groups, seeds=seeds,
                                event_rates=rates, ratio_starts=LONG_RATIO_STARTS,
                                skip_refits_over=LONG_SKIP_REFITS_OVER)
        ratios = {} if LONG_RATIO_STARTS else None  # the block's last penalty ratios (long_row_filter)
        row_filter = functools.partial(long_row_filter, window=window, ratios=ratios)
    else:
        budgets = group_budgets(rows64, sigma, groups, seeds=seeds, event_rates=rates)
        row_filter = adaptive_trend_filter
    lam = None  # rows are in noise units, so one row's penalty is a good start for the next
    for i in range(rows.shape[0]):
        if sigma[i] > 0 and budgets[i] > 0:
            seed_active, seed_lam = seeds.get(i, (None, None))
            lam0 = lam if seed_lam is None else seed_lam
            if ratios is not None and seed_lam is not None and "first" in ratios:
                lam0 = seed_lam * ratios["first"]
            x, row_info = row_filter(rows64[i], float(sigma[i]), budget=float(budgets[i]), lam0=lam0,
                                     active=seed_active, event_p=float(rates[i]))
            first_lam = None if ratios is None else ratios.pop("first_lam", None)
            if seed_lam is not None and first_lam:
                ratios["first"] = _clipped_ratio(first_lam / seed_lam, 4.0)
            out[i] = x
            row_info["event_p"] = float(rates[i])
            lam = row_info["lam"] if row_info["lam"] > 0 else lam
        else:
            row_info = dict(unfiltered)
        info.append(row_info)
    return (out, info) if return_info else out
