"""Spike inference: OASIS-style deconvolution of calcium traces with an AR(1) or AR(2) model.

The model (Friedrich, Zhou & Paninski 2017, as in CaImAn and suite2p; our own code)::

    y_t = b + c_t + noise,   c_t = g c_{t-1} + s_t,   s_t >= 0

with ``g = exp(-1 / (tau fs))`` the decay per frame.  Everything is estimated per trace:

- ``sn``, the noise SD, from the upper half of the power spectrum (Welch; white
  noise is flat there while calcium transients are slow), as :func:`noise_sd`;
- ``g`` from the slope of the log autocovariance at lags 1..8 (:func:`estimate_decay`),
  exact for an AR(1) process whatever the spike rate and the noise (lag 0, which
  holds the noise, is left out).  Short lag ranges mistake the indicator's rise and
  slow residues for a slow decay: on the benchmark's simulations (7 and 30 Hz) lags
  1..4 to 1..8 all beat ``oasis-deconv``'s defaults, lags 0..2 at 7 Hz lost to it;
  8 was chosen among 4, 5, 6 and 8 for the decay closest to the truth;
- ``b`` from the lowest quarter of the samples: for Gaussian noise around the
  baseline, its mean is ``b - 1.271 sn`` (:func:`estimate_baseline`); the lower
  the quantile, the less the transients' tails lift it.

Where the indicator's rise spans frames (fast frame rates, or a spike late in a long frame), the model is
AR(2)::

    c_t = (d + r) c_{t-1} - d r c_{t-2} + s_t,   i.e.  (1 - d B)(1 - r B) c = s,

``d`` the decay and ``r`` the rise per frame (``B`` the lag operator).  An AR(1) fit
of such a trace splits each rise over two or three frames, so its spikes land
partly in the wrong bin.  The rise is decided from the data, for all traces of one
call together (they share the indicator and the frame rate), never from ``fs``
(:func:`estimate_rise`): each trace's autocovariance at lags 1..8 is fitted by
Yule-Walker (lag 0, which holds the noise, left out) and shows a rise where its
two roots are real, ``0 < r < d < 1``, and the faster one enters with a negative
weight (a double decay enters with a positive one); where at least two thirds of
the traces show one, the movie's ``r`` is the median over them, else 0.  On pure
AR(1) simulations 2-29 % of the traces show a spurious rise; on demixed traces of
simulations with a 50 ms rise at 30 Hz 70-97 % show one, with ``r`` 0.59-0.77
between quartiles, and AR(2) places the spikes far better (``bench_deconvolve.py``);
at 7 Hz 55 % show one, spread over 0.41-0.69, and AR(2) with their median placed
them worse than AR(1): a rise within one frame is not resolved.  Fewer than :data:`MIN_TRACES_FOR_RISE` traces
keep AR(1).  Given ``r``, ``u_t = y_t - r y_{t-1}`` is an AR(1) trace with decay
``d`` (its noise is no longer white: ``n_t - r n_{t-1}``, so ``d`` comes from lags
2..8 of ``u``), OASIS below deconvolves it, and ``c`` is rebuilt by
``c_t = r c_{t-1} + z_t`` from its fit ``z``.

Then OASIS (pool-adjacent-violators on the AR(1) kernel) solves the
non-negative least-squares problem ``min ||y - b - c||^2`` with every spike
either 0 or at least ``s_min`` (the "thresholded" OASIS): a pool whose jump
over the decayed previous pool is below ``s_min`` is merged into it.  The
default ``s_min`` is ``s_min_factor`` (1.0) noise SDs times ``sqrt(1 - g^2)``
(the size of a spike whose whole transient carries one noise SD of energy).  On
denoised, demixed traces the noise is small and ``s_min`` hardly matters (0 to 12
gave the same scores on the benchmark's simulations); it trims noise spikes on
noisier traces.
"""

from __future__ import annotations

import numpy as np

from .._numba import jit


@jit
def _oasis_ar1_kernel(y, g, s_min, c, s):
    """OASIS for ``y = c + noise``, ``c_t = g c_{t-1} + s_t``, spikes 0 or ``>= s_min``; fills ``c`` and ``s``.

    Pools are runs of frames sharing one exponential segment ``v g^(t - t0)``;
    ``v`` is the least-squares value of the run, ``w`` its weight
    ``sum g^(2k)``.  A new frame starts a pool; while a pool's start lies
    below ``s_min`` over the previous pool's decayed end, the two merge.
    """
    t_len = y.size
    v = np.empty(t_len)
    w = np.empty(t_len)
    t0 = np.empty(t_len, np.int64)
    ln = np.empty(t_len, np.int64)
    n = 0
    for t in range(t_len):
        v[n] = y[t]
        w[n] = 1.0
        t0[n] = t
        ln[n] = 1
        n += 1
        while n > 1:
            decay = g ** ln[n - 2]
            if v[n - 1] - decay * v[n - 2] >= s_min:
                break
            # Merge the last pool into the one before: weighted least squares on one segment.
            wn = w[n - 2] + decay * decay * w[n - 1]
            v[n - 2] = (w[n - 2] * v[n - 2] + decay * w[n - 1] * v[n - 1]) / wn
            w[n - 2] = wn
            ln[n - 2] += ln[n - 1]
            n -= 1
    # A negative first pool (below the baseline) is clipped at zero.
    if n > 0 and v[0] < 0.0:
        v[0] = 0.0
    for i in range(n):
        val = v[i]
        for k in range(ln[i]):
            c[t0[i] + k] = val
            val *= g
    s[0] = c[0]
    for t in range(1, t_len):
        s[t] = c[t] - g * c[t - 1]
        if s[t] < 0.0:  # only the clipped first pool can leave a (rounding) negative
            s[t] = 0.0


def oasis_ar1(y, g, s_min=0.0):
    """Deconvolve one baseline-free trace: ``(c, s)``, float64 arrays like ``y``."""
    y = np.ascontiguousarray(y, np.float64)
    c = np.zeros_like(y)
    s = np.zeros_like(y)
    if y.size:
        _oasis_ar1_kernel(y, float(g), float(s_min), c, s)
    return c, s


def noise_sd(y, *, low: float = 0.25, segment: int = 256) -> float:
    """Noise SD of a trace from the mean of its Welch power spectrum above ``low`` (cycles per frame).

    Welch's estimate (periodic Hann windows of ``segment`` frames, half overlapping,
    each segment's mean removed, one-sided density) in numpy: white noise of SD
    ``s`` has density ``2 s^2`` there, while calcium transients are slow.
    """
    y = np.asarray(y, np.float64)
    if y.size < 8:
        return float(np.std(y))
    n = min(segment, y.size)
    step = max(n // 2, 1)
    starts = np.arange(0, y.size - n + 1, step)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    segs = y[starts[:, None] + np.arange(n)[None, :]]
    segs = (segs - segs.mean(axis=1, keepdims=True)) * window
    pxx = (np.abs(np.fft.rfft(segs, axis=1)) ** 2).mean(axis=0) / (window @ window)
    pxx[1 : (n + 1) // 2] *= 2.0  # one-sided: every bin but DC (and Nyquist for even n) counts twice
    freq = np.fft.rfftfreq(n)
    band = pxx[freq > low]
    return float(np.sqrt(max(band.mean(), 0.0) / 2.0)) if band.size else float(np.std(y))


#: Traces needed before a rise is estimated (:func:`estimate_rise`): one trace's evidence is too weak (a quarter
#: of pure AR(1) traces show a spurious rise), and the median over a few is still one or two traces' say.
MIN_TRACES_FOR_RISE = 5


def autocovariance(y, max_lag: int) -> np.ndarray:
    """Autocovariance of ``y`` about its mean at lags 0..``max_lag`` (divided by the length; 0 past it)."""
    d = np.asarray(y, np.float64)
    d = d - d.mean()
    t_len = d.size
    return np.array([d[: t_len - k] @ d[k:] / t_len if k < t_len else 0.0 for k in range(max_lag + 1)])


def ar2_rise(acov) -> float:
    """The rise root ``r`` that ``acov`` (lags 0..L, L >= 4) shows, or 0.0 where it shows none.

    Yule-Walker on the equations of lags 3..L (``acov_k = g1 acov_{k-1} + g2 acov_{k-2}``; they never use
    lag 0, which holds the noise) gives ``g1, g2``; their roots ``d > r`` must be real with ``0 < r < d < 1``,
    and in ``acov_k = a d^k + b r^k`` (least squares over lags 1..L) the fast root must enter with ``b < 0``:
    a rise lowers the short lags, a second, faster decay (``b > 0``) raises them.
    """
    acov = np.asarray(acov, np.float64)
    lags = acov.size - 1
    if lags < 4 or not np.all(np.isfinite(acov)):
        return 0.0
    a = np.stack([acov[2:lags], acov[1 : lags - 1]], axis=1)
    (g1, g2), *_ = np.linalg.lstsq(a, acov[3:], rcond=None)
    disc = g1 * g1 + 4.0 * g2
    if not disc > 0:
        return 0.0
    d = 0.5 * (g1 + np.sqrt(disc))
    r = 0.5 * (g1 - np.sqrt(disc))
    if not 0.0 < r < d < 1.0:
        return 0.0
    k = np.arange(1, lags + 1)
    (_, b), *_ = np.linalg.lstsq(np.stack([d**k, r**k], axis=1), acov[1:], rcond=None)
    return float(r) if b < 0 else 0.0


def estimate_rise(acovs) -> float:
    """The rise root shared by traces (rows of ``acovs``, lags 0..L): the median of :func:`ar2_rise` over the
    traces that show one, where at least two thirds of them do.

    0.0 (AR(1)) otherwise, and for fewer than :data:`MIN_TRACES_FOR_RISE` traces.
    """
    rises = np.array([ar2_rise(a) for a in acovs])
    if rises.size < MIN_TRACES_FOR_RISE or 3 * np.count_nonzero(rises) < 2 * rises.size:
        return 0.0
    return float(np.median(rises[rises > 0]))


def estimate_decay(y, sn: float, *, max_lag: int = 8, g_max: float = 0.995, first_lag: int = 1) -> float:
    """AR(1) coefficient ``g`` from the autocovariance of ``y`` at lags ``first_lag``..``max_lag``.

    For an AR(1) process plus white noise the autocovariance is ``C g^k`` at lags
    ``k >= 1``: the least-squares slope of ``log acov`` on ``k`` (over the lags
    before the first non-positive one) gives ``log g``.  Lag 0, which holds the
    noise, is left out (and lag 1 too, with ``first_lag`` 2, where the noise is
    correlated one frame apart); lag 0 is used (with ``sn^2`` removed) only when
    fewer than two lags are positive.  Clipped to [0.001, ``g_max``].
    """
    y = np.asarray(y, np.float64)
    lags = np.arange(first_lag, max(int(max_lag), first_lag) + 1)
    every = autocovariance(y, int(lags[-1]))
    acov = every[first_lag:]
    positive = acov > 0
    m = int(np.argmin(positive)) if not positive.all() else positive.size
    if m < 2:
        if first_lag != 1:
            return estimate_decay(y, sn, max_lag=max_lag, g_max=g_max)
        lag0 = every[0] - sn * sn
        g = acov[0] / lag0 if acov[0] > 0 and lag0 > 0 else 1e-3
        return float(np.clip(g, 1e-3, g_max))
    slope = np.polyfit(lags[:m], np.log(acov[:m]), 1)[0]
    return float(np.clip(np.exp(slope), 1e-3, g_max))


def estimate_baseline(y, sn: float) -> float:
    """Baseline of a positive-going trace: the mean of its lowest quarter plus ``1.271 sn``.

    1.271 is the mean of a standard normal below its 25th percentile, negated.
    """
    y = np.asarray(y, np.float64)
    low = np.sort(y)[: max(1, y.size // 4)]
    return float(low.mean() + 1.2711 * sn)


def without_rise(y, r: float) -> np.ndarray:
    """``u_t = y_t - r y_{t-1}`` (``u_0 = y_0``), float64: an AR(2) trace of rise root ``r`` less its rise, AR(1)."""
    y = np.asarray(y, np.float64)
    u = y.copy()
    u[1:] -= r * y[:-1]
    return u


def oasis_ar2(y, d, r, s_min=0.0):
    """Deconvolve one baseline-free trace with the AR(2) model of decay ``d`` and rise ``r``: ``(c, s)``.

    ``u_t = y_t - r y_{t-1}`` follows ``z_t = d z_{t-1} + s_t``: OASIS fits ``z`` and ``s`` to it, and
    ``c_t = r c_{t-1} + z_t``.  ``r`` 0 is :func:`oasis_ar1`.
    """
    y = np.ascontiguousarray(y, np.float64)
    if r == 0.0:
        return oasis_ar1(y, d, s_min)
    z, s = oasis_ar1(without_rise(y, r), d, s_min)
    c = np.empty_like(z)
    _ar1_filter_kernel(z, float(r), c)
    return c, s


@jit
def _ar1_filter_kernel(z, r, out):
    """``out_t = r out_{t-1} + z_t`` from ``out_{-1} = 0`` (scipy.signal's ``lfilter([1], [1, -r], z)``, whose
    import would cost demixing about 0.5 CPU-s)."""
    acc = 0.0
    for t in range(z.size):
        acc = r * acc + z[t]
        out[t] = acc


def deconvolve(traces, fs: float | None, *, s_min_factor: float = 1.0, g=None, max_lag: int | None = None,
               rise=None):
    """Spikes of each row of ``traces`` (n, T): ``(spikes, denoised, params)``.

    ``spikes`` (n, T) float32 are the model's inputs ``s_t`` (units of the trace; with AR(1) the jumps of ``c``),
    ``denoised`` (n, T) float32 the fitted calcium ``c`` plus the baseline,
    ``params`` a dict of (n,) arrays: ``g`` (decay per frame), ``tau_s``
    (``-1 / (fs log g)``; NaN when ``fs`` is None, unknown: nothing else needs it),
    ``rise_g`` (the rise per frame, 0 for AR(1)), ``tau_rise_s`` (likewise; 0 for AR(1)),
    ``noise_sd``, ``baseline``, ``s_min``.
    ``g`` fixes the decay (one value or one per row) instead of estimating it; ``rise`` fixes the rise root
    (0 for AR(1)) instead of :func:`estimate_rise` over the rows.
    ``max_lag`` (autocovariance lags for ``g`` and the rise) defaults to 8.
    """
    traces = np.atleast_2d(np.asarray(traces, np.float64))
    n, t_len = traces.shape
    if fs is not None and not fs > 0:
        raise ValueError(f"fs {fs!r}: expected a positive frame rate (or None)")
    lag = max_lag if max_lag is not None else 8
    spikes = np.zeros((n, t_len), np.float32)
    denoised = np.zeros((n, t_len), np.float32)
    params = {k: np.zeros(n) for k in ("g", "tau_s", "rise_g", "tau_rise_s", "noise_sd", "baseline", "s_min")}
    gs = np.broadcast_to(np.asarray(g, np.float64), (n,)) if g is not None else None
    usable = [t_len >= 4 and bool(np.all(np.isfinite(y))) and np.ptp(y) != 0 for y in traces]
    if rise is None:
        rows = traces[np.asarray(usable, bool)]
        r = estimate_rise([autocovariance(y, lag) for y in rows]) if t_len > lag else 0.0
    else:
        r = float(rise)
        if not 0.0 <= r < 1.0:
            raise ValueError(f"rise {rise!r}: expected a root in [0, 1)")
    tau_rise = (-1.0 / (fs * np.log(r)) if r > 0 else 0.0) if fs is not None else np.nan
    for i in range(n):
        y = traces[i]
        if not usable[i]:
            params["baseline"][i] = float(np.nanmedian(y)) if t_len else 0.0
            denoised[i] = params["baseline"][i]
            continue
        sn = noise_sd(y)
        if gs is not None:
            gi = float(gs[i])
        elif r > 0:
            # u = y - r y_{t-1} is AR(1) with decay g; its noise n_t - r n_{t-1} reaches lag 1, so lags 2.. only.
            gi = estimate_decay(without_rise(y, r), sn, max_lag=lag, first_lag=2)
        else:
            gi = estimate_decay(y, sn, max_lag=lag)
        b = estimate_baseline(y, sn)
        # The spikes drive u, whose noise SD is sn sqrt(1 + r^2).
        s_min = s_min_factor * sn * np.sqrt(1.0 + r * r) * np.sqrt(max(1.0 - gi * gi, 1e-6))
        c, s = oasis_ar2(y - b, gi, r, s_min)
        spikes[i] = s
        denoised[i] = c + b
        params["g"][i] = gi
        params["tau_s"][i] = (-1.0 / (fs * np.log(gi)) if 0 < gi < 1 else 0.0) if fs is not None else np.nan
        params["rise_g"][i] = r
        params["tau_rise_s"][i] = tau_rise
        params["noise_sd"][i] = sn
        params["baseline"][i] = b
        params["s_min"][i] = s_min
    return spikes, denoised, params
