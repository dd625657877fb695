"""Photon splitting: the error of a denoiser on a real movie, without ground truth.

Under shot noise a pixel's photon count ``n`` is Poisson with rate ``s``.  Binomial
thinning, ``A ~ Binomial(n, 1/2)`` and ``B = n - A``, gives two *independent*
Poisson movies with rate ``s / 2`` each.  Denoise ``A`` into ``dA``; ``B`` is a
noisy copy of the same target that the denoiser never saw, so

    MSE(dA vs s/2) ~= mean((dA - B)^2) - mean(B)          (var B = mean B)

and the same estimate for the identity (``dA = A``) is the raw error.  Their
ratio is the error reduction.  Smoothing that removes signal raises
``mean((dA - B)^2)``, so the number cannot be inflated the way a ratio of
high-frequency noise powers can.  The residual ``A - dA`` also shows how much
of the signal was removed: its covariance with ``B`` (whose noise it cannot
share) over ``B``'s signal variance.

Steps (every number is defined in ``docs/snr.md#photon-splitting``):

1. **Counts.**  Per pixel, the temporal mean and the white-noise variance (half
   the mean squared first difference); a robust line ``var = g (mean - o)``
   through bins of the mean gives the gain ``g`` (ADU per photon) and an
   effective offset ``o``.  ``n = floor((x - o) / g + U)``, ``U`` uniform
   (dithering keeps ``E[n]`` exact); ``o`` is then shifted so that the median
   pixel has variance = mean (the dither's own variance included).
2. **Shared noise.**  A binomial split needs noise independent across pixels
   (pooled correlation of first differences with each neighbour up to
   :data:`CORRELATION_LIMIT`).  Where it is not (interpolation by motion
   correction, sensor blur, resampling), the correlation is modelled and the
   halves are made by Gaussian data fission (:func:`split`, ``"correlated"``),
   at every lag of the frame where it reaches past 2 px (:func:`correlations`).
3. **Split, denoise, score.**  The estimate is refused when the halves still
   share noise (:func:`halves_correlations` above :data:`HALVES_LIMIT`) or when
   it comes out negative (the tell of shared noise).

A movie without a shot-noise curve (rescaled, filtered or resampled after the
detector, or read noise alone) is split in its own units instead of being
refused: Gaussian data fission with the measured noise variance and spatial
correlation (``Counts.method == "gaussian"``, :func:`split`), scored with
``B``'s known noise variance (:meth:`Counts.noise_of_half`).

A binned movie is a different (brighter, smaller) movie: its error reduction is
that of the denoiser on it, reported with the binning factor.

A fast signal that a whole region shares (a one-photon microscope's flickering
light) moves every first difference: read as noise it inflates the variance,
fakes a neighbour correlation near 1 and makes the halves look as if they shared
noise (they share that signal, as they should).  When the annulus of each pixel
explains more than :data:`COHERENT_LIMIT` of its differences
(:func:`pmdcompress.preprocess.coherent_share`), every statistic above is taken
on the differences less that shared part (:func:`pmdcompress.preprocess.remove_coherent`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..options import MIN_FRAMES
from ..preprocess import COHERENT_MIN_FRAMES, coherent_share
from .frame_files import Frames, Scratch, empty
from .heldout import central_crop
from .kernels import SCORE_SUMS, dither_variance_sum, first_differences, kept_pairs, score_sums

__all__ = ["CORRELATION_LIMIT", "Counts", "FrameStatistics", "active_folds", "active_pixels", "cross_correlations",
           "halves_correlations", "line_noise", "shared_active_pixels",
           "neighbour_correlation", "photon_split", "photon_transfer", "prepare_counts", "report_crops",
           "report_margin", "score", "shared_signal_removed", "signal_removed", "split", "true_signal_removed",
           "whole_metrics", "whole_split"]

#: Largest |median correlation of first differences| with a neighbour treated as independent noise.
CORRELATION_LIMIT = 0.03
#: Neighbour lags (pixels) over which the noise correlation is measured and modelled.
CORRELATION_RADIUS = 2
#: Largest |correlation| at :data:`CORRELATION_RADIUS` before every lag is modelled: twice
#: :data:`CORRELATION_LIMIT`, so that two-photon movies whose far lags read 0.02-0.03 keep their 2-px model
#: (the halves check, :data:`HALVES_LIMIT`, sees what a narrow model leaves shared).
WIDEN_LIMIT = 2 * CORRELATION_LIMIT
#: Largest |median correlation| of first differences between the halves (any lag) for a valid split.
HALVES_LIMIT = 0.02
#: Fraction of pixels scored as "most active".
ACTIVE_FRACTION = 0.10
#: Fewest photons spanned by the pixel means for a photon-transfer fit.
MIN_LEVELS = 1.0
#: Time blocks used for the standard error of the estimates.
N_BLOCKS = 10
#: The neighbours whose ``B`` the residual is compared with in the signal removed (:func:`shared_signal_removed`):
#: the pixels above and below.  A raster scan shares noise along its rows, more at bright pixels than the split's
#: one pooled correlation per lag models (neurofinder_dev: 0.024 for dim pixels, 0.055 at the 90th percentile of
#: the mean, 0.12 at the 99th, between horizontal neighbours; 0.001, 0.008 and 0.028 between vertical ones).
SHARED_LAGS = ((1, 0), (-1, 0))
#: :func:`shared_signal_removed` is reported only where the shared signal stands this many standard errors
#: above what halves with no common signal would give (their covariances' sampling spread).
SHARED_SIGNAL_SE = 3.0
#: Median share of a pixel's first differences explained by its annulus above which a region-wide fast
#: signal is left out of the noise statistics (noise alone: about 1 / frames).
COHERENT_LIMIT = 0.05
#: What a user can do when the movie's noise is not shot noise (appended to the refusals).
RAW_COUNTS_HINT = ("; photon splitting needs the detector's own counts: give the movie as the camera wrote it, before "
                   "the acquisition software's filtering, resampling or rescaling")


@dataclass
class Counts:
    """A movie converted to photon counts (or the reason it could not be)."""

    ok: bool
    reason: str = ""
    counts: np.ndarray | None = None  # (T, h, w) int32 counts; float32 ADU for the "gaussian" split
    gain: float = math.nan  # ADU per photon
    offset: float = math.nan  # ADU at zero photons (read noise folded in)
    photons_per_pixel: float = math.nan  # mean counts per pixel per frame
    dispersion: float = math.nan  # median over pixels of the noise variance over g (mean - offset): 1 for shot noise
    offset_spread: float = math.nan  # interquartile range of the per-pixel offsets, photons
    variance: np.ndarray | None = None  # (h, w) noise variance of the counts
    offsets: np.ndarray | None = None  # (h, w) per-pixel offsets, ADU: counts = (x - offsets) / gain
    correlation: float = math.nan  # largest |median neighbour correlation| of the counts' noise
    correlations: dict = field(default_factory=dict)  # (dy, dx) -> median correlation
    method: str = "binomial"  # how the halves are made: "binomial", "correlated" or "gaussian" (not counts)
    coherent: float = 0.0  # median share of a pixel's first differences that its annulus explains
    clean: bool = False  # noise statistics without the region-shared part (coherent > COHERENT_LIMIT)
    shot_noise_reason: str = ""  # why the movie was not converted to counts ("gaussian" split)
    white: bool = False  # the noise is independent between pixels: z is too, whatever the measured correlations
    lines: dict = field(default_factory=dict)  # axis name ("rows", "columns") -> (h, w) loading of a line-wide noise

    @property
    def units(self) -> str:
        return "ADU" if self.method == "gaussian" else "photons"

    def noise_of_half(self, fraction: float = 0.5) -> np.ndarray | None:
        """Per-pixel noise variance of a split half ``B`` (``A`` got ``fraction`` of the movie, :func:`split`):
        None for counts (Poisson: ``mean_t B``)."""
        return None if self.method != "gaussian" else (1.0 - fraction) * self.variance

    def summary(self) -> dict:
        """JSON-able description (everything but the arrays)."""
        return {"ok": self.ok, "reason": self.reason, "units": self.units, "shot_noise_reason": self.shot_noise_reason,
                "gain": _num(self.gain), "offset": _num(self.offset),
                "photons_per_pixel": _num(self.photons_per_pixel), "dispersion": _num(self.dispersion),
                "offset_spread": _num(self.offset_spread),
                "neighbour_correlation": _num(self.correlation), "split": self.method,
                **({"independent_noise": True} if self.white else {}),
                "shared_signal": _num(self.coherent), "shared_signal_removed": self.clean,
                "line_noise": {name: _num(np.sum(ell**2) / max(float(np.sum(self.variance)), 1e-300))
                               for name, ell in self.lines.items()},
                "correlations": {f"{dy},{dx}": _num(v) for (dy, dx), v in self.correlations.items()
                                 if max(dy, abs(dx)) <= CORRELATION_RADIUS}}


def _num(x):
    x = float(x)
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------- counts


def _differences(block: np.ndarray, clean: bool = False) -> np.ndarray:
    """First differences (float64) of a block of frames; with ``clean``, less each pixel's share of its annulus.

    Fitting that share takes one of the ``n`` differences' degrees of freedom from
    every pixel: the rest is scaled by ``sqrt(n / (n - 1))`` to keep the noise's variance.
    """
    block = np.asarray(block)
    if block.ndim == 3 and block.flags.c_contiguous:
        d = first_differences(block)  # one pass, no float64 copy of the block: the same floats
    else:  # a view along another axis (line_noise's columns): np.diff keeps its layout, which later sums follow
        d = np.diff(np.asarray(block, np.float64), axis=0)
    n = d.shape[0]
    if clean and n >= COHERENT_MIN_FRAMES:
        return _remove_shared(d)
    return d


#: A spatial component of the difference frames whose singular value exceeds this multiple of the median one
#: is shared signal, not noise (noise alone: within about 1 + sqrt(frames / pixels) of the median).
SHARED_SINGULAR_RATIO = 3.0


def _remove_shared(d: np.ndarray) -> np.ndarray:
    """Difference frames less their strong spatial components (a flicker, a moving background).

    The noise of a difference frame spreads its power over every spatial
    direction, so the singular values of the (frames x pixels) matrix of noise
    cluster around their median (within about 1.7x: the first differences' own
    spread); a signal that many pixels share stands out.  Those components (at
    most a quarter of the frames) are projected out of every frame.  Unlike a
    per-pixel regression on a surrounding annulus this leaves the noise's own
    spatial correlation intact; the noise lost along them is
    :func:`projection_loss`.  Noise shared over very many pixels (tens) spreads
    the noise's singular values past the threshold: components of noise are then
    taken for signal, and the halves check refuses the split.
    """
    return _project_out(d, _shared_basis(d))


def _shared_basis(d: np.ndarray) -> np.ndarray:
    """(k, pixels) orthonormal spatial components of difference frames ``d`` that hold shared signal."""
    n = d.shape[0]
    _, s, vt = np.linalg.svd(d.reshape(n, -1), full_matrices=False)
    k = min(int(np.sum(s > SHARED_SINGULAR_RATIO * np.median(s))), max(1, n // 4))
    return vt[:k]


def _project_out(d: np.ndarray, basis: np.ndarray) -> np.ndarray:
    if basis.shape[0] == 0:
        return d
    flat = d.reshape(d.shape[0], -1)
    return (flat - (flat @ basis.T) @ basis).reshape(d.shape)


def _signal_mask(d: np.ndarray, size: int = 5, z: float = 4.0, *, overwrite: bool = False) -> np.ndarray:
    """True where a first difference holds spatially coherent change (signal), not noise.

    The difference frames are averaged over ``size x size`` pixels, which divides
    independent noise by ``size``; changes that stand out there by more than
    ``z`` robust standard deviations of that average are signal (a calcium rise
    spans a footprint).  Noise alone crosses this about once in 30 000 values.

    ``overwrite``: ``d`` is a temporary that may be filtered in place (the same floats, one chunk-sized array less).
    """
    from scipy.ndimage import uniform_filter

    from .kernels import median_mad

    sm = uniform_filter(d, size=(1, size, size), mode="nearest", output=d if overwrite else None)
    scale = 1.4826 * median_mad(sm)[1]  # the floats of np.median(|sm - np.median(sm)|) over time, in half the time
    return np.abs(sm, out=sm) > z * np.maximum(scale, 1e-12)


#: How the noise variance and covariances are extrapolated to lag 0 in time from first differences ``d``:
#: ``"linear"`` ``-mean d_t d_{t+1}`` (the lag-1 autocovariance of differences, which for white noise of
#: variance ``s^2`` is ``-s^2``; a signal whose increments change linearly over three frames cancels) or
#: ``"three-lag"`` ``(mean d_t^2 - mean d_t d_{t+1}) / 3`` (until session 8; constant increments cancel).
#: A calcium transient's jump is white in its increments and leaks into either: on sima-like simulations (4-frame
#: decays, 160 frames) the three-lag form read 0.65 % of the noise variance of signal into it (16 % of the signal's
#: variance) and 0.6 % of a correlation at lags where the noise has none; the linear form 0.18 % and 0.17 %.
#: The split needs the variance to about 0.1 % (a 50x error reduction reads 25 x the relative error high).
EXTRAPOLATION = "linear"
VARIANCE_EXTRAPOLATION = "three-lag"


def _extrapolated(sq, n_sq, lag, n_lag, extrapolation=None):
    """Lag-0 (co)variance from the sums of ``d_t d'_t`` (``sq``, ``n_sq`` terms) and of ``d_t d'_{t+1}`` (``lag``)."""
    extrapolation = extrapolation or EXTRAPOLATION
    lag_mean = lag / np.maximum(n_lag, 1)
    if extrapolation == "linear":
        return -lag_mean
    return (sq / np.maximum(n_sq, 1) - lag_mean) / 3.0


def pixel_moments(frames: np.ndarray, chunk: int = 256, *, mask_signal: bool = True,
                  clean: bool = False, extrapolation: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel temporal mean and white-noise variance.

    With first differences ``d_t = x_{t+1} - x_t`` of white noise of variance
    ``s^2`` plus a signal whose increments change slowly (``Δs_t ~ Δs_{t+1}``),
    ``E[d_t^2] = 2 s^2 + S`` and ``E[d_t d_{t+1}] = -s^2 + S``, so
    ``s^2 = (mean d_t^2 - mean d_t d_{t+1}) / 3`` holds no signal term (the
    autocovariance extrapolated to lag 0); :data:`EXTRAPOLATION` (default
    ``-mean d_t d_{t+1}``, the linear extrapolation, exact for increments that
    change linearly) says which.  Differences that hold spatially
    coherent, abrupt change (:func:`_signal_mask`: rises within a frame, whose
    increments are not slow) are left out.  The split needs the noise variance
    to about 0.1 %: plain ``mean d^2 / 2`` reads 0.3-1 % high on calcium movies.
    ``clean``: on the differences less their region-shared part (:func:`_differences`).
    """
    n = frames.shape[0]
    total = np.zeros(frames.shape[1:])
    sq = np.zeros(frames.shape[1:])
    used = np.zeros(frames.shape[1:])
    lag = np.zeros(frames.shape[1:])
    used_lag = np.zeros(frames.shape[1:])
    for t0 in range(0, n, chunk):
        block = np.asarray(frames[t0 : min(t0 + chunk + 2, n)], np.float64)
        total += block[: min(chunk, n - t0)].sum(axis=0)
        d = _differences(block, clean)
        del block  # one chunk-sized array less while the signal mask is made
        if d.shape[0] == 0:
            continue
        keep = (~_signal_mask(d) if mask_signal and d.shape[0] >= 8 else np.ones(d.shape, bool)).astype(np.float64)
        m = min(chunk, d.shape[0])  # differences that start in this chunk
        dk = d * keep
        sq += np.einsum("tij,tij->ij", dk[:m], d[:m])
        used += keep[:m].sum(axis=0)
        m2 = min(m, d.shape[0] - 1)
        lag += np.einsum("tij,tij->ij", dk[:m2], dk[1 : m2 + 1])
        used_lag += np.einsum("tij,tij->ij", keep[:m2], keep[1 : m2 + 1])
        del d, keep, dk  # freed before the next chunk is read (this chunk's arrays would double its memory)
    return total / n, _extrapolated(sq, used, lag, used_lag, extrapolation or VARIANCE_EXTRAPOLATION)


def photon_transfer(mean: np.ndarray, variance: np.ndarray, *, n_bins: int = 64) -> tuple[float, float, str]:
    """Robust line ``variance = g (mean - o)`` through bins of the per-pixel mean.

    Returns ``(g, o, reason)``; ``reason`` is empty when the fit is usable.
    """
    from .metrics import _huber_line

    m = np.asarray(mean, np.float64).ravel()
    v = np.asarray(variance, np.float64).ravel()
    ok = np.isfinite(m) & np.isfinite(v) & (v > 0)
    if ok.sum() < 50:
        return math.nan, math.nan, "fewer than 50 pixels with noise"
    m, v = m[ok], v[ok]
    lo, hi = np.quantile(m, [0.005, 0.995])
    if not hi > lo:
        return math.nan, math.nan, "every pixel has the same mean: no photon-transfer curve"
    # Bins of equal pixel count: each bin's mean variance is as precise as the next.
    edges = np.unique(np.quantile(m, np.linspace(0.005, 0.995, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, edges.size - 2)
    keep = (m >= lo) & (m <= hi)
    count = np.bincount(which[keep], minlength=edges.size - 1).astype(np.float64)
    sm = np.bincount(which[keep], weights=m[keep], minlength=edges.size - 1)
    sv = np.bincount(which[keep], weights=v[keep], minlength=edges.size - 1)
    use = count >= 5
    if use.sum() < 5:
        return math.nan, math.nan, "fewer than 5 populated intensity bins"
    bm, bv, bc = sm[use] / count[use], sv[use] / count[use], count[use]
    # The darkest 3 % of the range is distorted by clipping at zero and read noise.
    span = bm.max() - bm.min()
    use2 = bm > bm.min() + 0.03 * span
    if use2.sum() < 5:
        use2 = np.ones_like(bm, bool)
    slope, intercept = _huber_line(bm[use2], bv[use2], bc[use2] / np.maximum(bv[use2], 1e-12) ** 2)
    if not slope > 0:
        return math.nan, math.nan, (f"the noise variance does not grow with the mean (slope {slope:.3g}): not shot "
                                    f"noise{RAW_COUNTS_HINT}")
    # Shot noise must visibly change the variance over the range of means, or the
    # slope is noise (read noise alone, or data rescaled after the detector).
    if slope * span < 0.2 * float(np.median(bv)):
        return math.nan, math.nan, (f"the noise variance hardly grows with the mean (by {slope * span:.3g} over a "
                                    f"median of {float(np.median(bv)):.3g}): not shot noise{RAW_COUNTS_HINT}")
    # Too few photons' worth of range to tell the slope from the offset.
    if span / slope < MIN_LEVELS:
        return math.nan, math.nan, (f"the pixel means span {span / slope:.1f} photons, fewer than {MIN_LEVELS:g}: "
                                    "gain and offset cannot be told apart")
    return float(slope), float(-intercept / slope), ""


def _dithered(frames: np.ndarray, gain: float, offset, seed: int, chunk: int = 256,
              scratch: Scratch | None = None) -> tuple[np.ndarray | Frames, float]:
    """The dithered counts (int32; in a file of ``scratch`` where given) and their mean.

    The mean is the exact integer total over the number of values: the float that ``counts.mean()`` gives (its
    float64 partial sums of integers are exact below 2^53), without holding the counts.
    """
    out = empty(scratch, frames.shape, np.int32, "counts")
    total = 0
    for t0 in range(0, frames.shape[0], chunk):
        rng = np.random.default_rng([seed, 7, t0])
        block = (np.asarray(frames[t0 : t0 + chunk], np.float64) - offset) / gain
        values = np.floor(block + rng.random(block.shape)).astype(np.int32)
        out[t0 : t0 + chunk] = values
        total += int(values.sum(dtype=np.int64))
    return out, float(np.float64(total) / np.float64(max(int(np.prod(frames.shape)), 1)))


def _dither_variance(frames: np.ndarray, gain: float, offset, chunk: int = 256) -> np.ndarray:
    """Per pixel, ``mean_t f (1 - f)``: the variance that dithering adds, ``f`` the fractional part."""
    total = np.zeros(frames.shape[1:])
    for t0 in range(0, frames.shape[0], chunk):
        # One pass over the chunk as stored: the floats of (f * (1 - f)).sum(axis=0) on a float64 copy.
        total += dither_variance_sum(np.asarray(frames[t0 : t0 + chunk]), offset, float(gain))
    return total / frames.shape[0]


def _lags(radius: int):
    return [(dy, dx) for dy in range(radius + 1) for dx in range(-radius, radius + 1) if dy > 0 or dx > 0]


def cross_correlations(first: np.ndarray, second: np.ndarray | None = None, *, radius: int = CORRELATION_RADIUS,
                       include_zero: bool = False, chunk: int = 256, clean: bool = False) -> dict:
    """Median over pixels of the correlation of first differences of ``first`` at p and ``second`` at p + lag.

    ``second`` None: ``first`` with itself (its spatial noise correlation).
    The median over pixels ignores the few pixels whose first differences hold
    fast, spatially coherent signal (calcium rises); noise shared between
    neighbours moves every pixel.

    Returns
    -------
    dict
        ``{(dy, dx): correlation}`` for the lags within ``radius`` (half of them:
        the others follow by symmetry), and ``(0, 0)`` when ``include_zero``.
    """
    same = second is None
    second = first if same else second
    n, h, w = first.shape
    lags = ([(0, 0)] if include_zero else []) + _lags(radius)
    lags = [(dy, dx) for dy, dx in lags if dy < h and abs(dx) < w]
    if n < 3 or not lags:
        return {}
    pairs = [_lag_slices(h, w, lag) for lag in lags]
    sxy = [np.zeros((h - dy, w - abs(dx))) for dy, dx in lags]
    s1, s2, q1, q2 = (np.zeros((h, w)) for _ in range(4))
    count = 0
    for t0 in range(0, n - 1, chunk):
        d1 = _differences(first[t0 : min(t0 + chunk + 1, n)], clean)
        d2 = d1 if same else _differences(second[t0 : min(t0 + chunk + 1, n)], clean)
        s1 += d1.sum(axis=0)
        s2 += d2.sum(axis=0)
        q1 += np.einsum("tij,tij->ij", d1, d1)
        q2 += np.einsum("tij,tij->ij", d2, d2)
        for acc, (p, q) in zip(sxy, pairs, strict=True):
            acc += np.einsum("tij,tij->ij", d1[:, p[0], p[1]], d2[:, q[0], q[1]])
        count += d1.shape[0]
    m1, m2 = s1 / count, s2 / count
    v1, v2 = q1 / count - m1**2, q2 / count - m2**2
    out = {}
    for lag, acc, (p, q) in zip(lags, sxy, pairs, strict=True):
        cov = acc / count - m1[p] * m2[q]
        den = np.sqrt(v1[p] * v2[q])
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / den
        r = r[np.isfinite(r) & (den > 0)]
        out[lag] = float(np.median(r)) if r.size else math.nan
    return out


def _add_lagged_moments(acc, pairs, first, second, kept, m: int, m2: int) -> None:
    """Add one chunk's cross moments of ``first`` and ``second`` at each lag's pixel pairs to ``acc``.

    ``c0``/``k0``: products at the same time over the ``m`` differences that start in the chunk; ``c1``/``k1``:
    at time lag one, symmetrised, over ``m2``; ``k`` counts the kept (unmasked) products, ``kept`` holds them
    (:func:`~.kernels.kept_pairs` of the chunk's mask at these lags: the floats of the einsums on its 0/1 values).
    """
    for a, (p, q), k in zip(acc, pairs, kept, strict=False):
        x, y = first[:, p[0], p[1]], second[:, q[0], q[1]]
        a["c0"] += np.einsum("tij,tij->ij", x[:m], y[:m])
        a["c1"] += 0.5 * (np.einsum("tij,tij->ij", x[:m2], y[1 : m2 + 1])
                          + np.einsum("tij,tij->ij", x[1 : m2 + 1], y[:m2]))
        h, w = a["k0"].shape
        a["k0"] += k[0, :h, :w]
        a["k1"] += k[1, :h, :w]


def pooled_correlations(frames: np.ndarray, *, radius: int = CORRELATION_RADIUS, chunk: int = 256,
                        clean: bool = False, extrapolation: str | None = None,
                        variance: np.ndarray | None = None) -> dict:
    """Noise correlation at each lag, pooled over pixels: ``sum_p cov(p, p + lag) / sum_p sqrt(var_p var_{p+lag})``.

    On first differences, without the values that hold spatially coherent signal
    (:func:`_signal_mask`), each covariance and variance extrapolated to lag 0 in
    time as :func:`pixel_moments` (:data:`EXTRAPOLATION`): the signal that
    neighbours share (a cell spans many pixels) then hardly reads as shared noise
    (until session 8 the covariances were of the differences at lag 0: on
    sima-like simulations a correlation of 0.005 between vertical neighbours
    whose noise has none, which made the halves share -0.005 of their noise
    there and the signal removed read 0.06 for a true 0.19).  Pooled rather than
    a median over pixels because the split must cancel the total shared
    covariance: where read noise (not shared) dilutes the correlation of dim
    pixels, the median correlation is not the average one.

    ``variance`` ((h, w)): the per-pixel noise variance the split scales its
    ``z`` by (:func:`split`), for the denominator, so that the modelled
    covariances sum to the measured ones whatever that variance's own sampling
    noise (default: this function's own estimate, whose noise on a short movie
    lowers ``sum sqrt(var_p var_q)`` and raised a 20-frame correlation by 3 %).
    """
    n, h, w = frames.shape
    lags = [(dy, dx) for dy, dx in _lags(radius) if dy < h and abs(dx) < w]
    pairs = [_lag_slices(h, w, lag) for lag in lags]
    names = ("c0", "c1", "k0", "k1")
    acc = [{k: np.zeros((h - dy, w - abs(dx))) for k in names} for dy, dx in lags]
    own = {k: np.zeros((h, w)) for k in names}
    kept_lags = lags + ([(0, 0)] if variance is None else [])
    for t0 in range(0, n - 1, chunk):
        d = _differences(frames[t0 : min(t0 + chunk + 2, n)], clean)
        if d.shape[0] < 2:
            continue
        keep = ~_signal_mask(d) if d.shape[0] >= 8 else np.ones(d.shape, bool)
        m = min(chunk, d.shape[0])  # differences that start in this chunk
        m2 = min(m, d.shape[0] - 1)
        kept = kept_pairs(keep, m, m2, kept_lags)
        d *= keep  # the products of d and the mask's 0/1 floats
        del keep
        if variance is None:  # the pixels' own variance, for the denominator
            own["c0"] += np.einsum("tij,tij->ij", d[:m], d[:m])
            own["c1"] += np.einsum("tij,tij->ij", d[:m2], d[1 : m2 + 1])
            own["k0"] += kept[-1, 0]  # lag (0, 0): the kept differences, and kept pairs at time lag one
            own["k1"] += kept[-1, 1]
        _add_lagged_moments(acc, pairs, d, d, kept, m, m2)
        del d, kept  # freed before the next chunk is read
    if variance is None:
        var = np.clip(_extrapolated(own["c0"], own["k0"], own["c1"], own["k1"], extrapolation), 0.0, None)
    else:
        var = np.clip(np.asarray(variance, np.float64), 0.0, None)
    out = {}
    for lag, a, (p, q) in zip(lags, acc, pairs, strict=True):
        den = np.sqrt(var[p] * var[q]).sum()
        cov = _extrapolated(a["c0"], a["k0"], a["c1"], a["k1"], extrapolation)
        out[lag] = float(cov.sum() / den) if den > 0 else math.nan
    return out


def halves_correlations(first: np.ndarray, second: np.ndarray, *, radius: int = 1, chunk: int = 256,
                        clean: bool = False) -> dict:
    """The noise the halves share: pooled correlation of ``first``'s and ``second``'s noise at each lag (0 included).

    ``sum_p c_p / sum_p sqrt(v1_p v2_{p+lag})`` with each covariance and variance
    extrapolated to lag 0 in time, ``c = (mean d1_t d2_t - mean (d1_t d2_{t+1} +
    d1_{t+1} d2_t) / 2) / 3`` on first differences (as :func:`pixel_moments`): a
    signal whose increments change slowly cancels, so the signal that both halves
    rightly hold does not read as shared noise, and differences holding
    spatially coherent abrupt change (:func:`_signal_mask`) are left out.
    Pooled over pixels rather than a median of per-pixel correlations: on a
    short movie (20 frames) each pixel's correlation rests on a few values, and
    the median of such ratios is biased (0.04 on a real 20-frame movie whose
    pooled value is 0.00).
    """
    n, h, w = first.shape
    lags = [(0, 0)] + [(dy, dx) for dy, dx in _lags(radius) if dy < h and abs(dx) < w]
    pairs = [_lag_slices(h, w, lag) for lag in lags]
    names = ("c0", "c1", "k0", "k1")
    acc = [{k: np.zeros((h - dy, w - abs(dx))) for k in names} for dy, dx in lags]
    own = {k: np.zeros((2, h, w)) for k in names}
    for t0 in range(0, n - 1, chunk):
        block = slice(t0, min(t0 + chunk + 2, n))
        d1 = _differences(first[block])
        d2 = _differences(second[block])
        if d1.shape[0] < 2:
            continue
        if clean and d1.shape[0] >= COHERENT_MIN_FRAMES:
            # The shared signal of the whole movie (the halves' sum), taken out of both the same way as out of
            # the statistics that made the split; each half's own strong components would differ.
            basis = _shared_basis(d1 + d2)
            d1, d2 = _project_out(d1, basis), _project_out(d2, basis)
        keep = ~_signal_mask(d1 + d2, overwrite=True) if d1.shape[0] >= 8 else np.ones(d1.shape, bool)
        m = min(chunk, d1.shape[0])  # differences that start in this chunk
        m2 = min(m, d1.shape[0] - 1)
        kept = kept_pairs(keep, m, m2, lags)  # lags[0] is (0, 0): each half's own kept differences
        d1 *= keep  # in place: the same products, one chunk-sized array less
        d2 *= keep
        del keep
        for i, d in enumerate((d1, d2)):
            own["c0"][i] += np.einsum("tij,tij->ij", d[:m], d[:m])
            own["c1"][i] += np.einsum("tij,tij->ij", d[:m2], d[1 : m2 + 1])
            own["k0"][i] += kept[0, 0]
            own["k1"][i] += kept[0, 1]
        _add_lagged_moments(acc, pairs, d1, d2, kept, m, m2)
        del d1, d2, kept  # freed before the next chunk is read

    def extrapolated(s):  # the halves' check keeps the three-lag form
        return _extrapolated(s["c0"], s["k0"], s["c1"], s["k1"], "three-lag")

    var = np.clip(extrapolated(own), 0.0, None)
    out = {}
    for lag, a, (p, q) in zip(lags, acc, pairs, strict=True):
        den = np.sqrt(var[0][p] * var[1][q]).sum()
        out[lag] = float(extrapolated(a).sum() / den) if den > 0 else math.nan
    return out


def neighbour_correlation(frames: np.ndarray) -> float:
    """Largest |median neighbour correlation of first differences| within :data:`CORRELATION_RADIUS` pixels."""
    corr = cross_correlations(frames)
    values = [abs(v) for v in corr.values() if math.isfinite(v)]
    return max(values) if values else math.nan


class FrameStatistics:
    """Statistics of one movie's frames that several splits of it read, each computed on first use and then
    shared: the report's balanced split (:func:`photon_split`) and its whole-movie split (:func:`whole_split`)
    measure the same raw frames' shared-signal share (:func:`coherent_share`) and pixel moments
    (:func:`pixel_moments`); the whole split also reads the moments again for wide correlations.  Asked about
    other frames (another array), it computes them without keeping them: the same floats either way.
    """

    def __init__(self, frames: np.ndarray):
        self.frames = frames
        self._coherent = None
        self._moments = {}

    def coherent(self) -> float:
        """:func:`coherent_share` of the first differences of the first 257 frames (0 for a short movie)."""
        if self._coherent is None:
            frames = self.frames
            self._coherent = coherent_share(np.diff(np.asarray(frames[:257], np.float64), axis=0)) \
                if frames.shape[0] > COHERENT_MIN_FRAMES else 0.0
        return self._coherent

    def moments(self, frames: np.ndarray, clean: bool) -> tuple[np.ndarray, np.ndarray]:
        """:func:`pixel_moments` of ``frames`` (with ``clean``), kept where ``frames`` are these frames."""
        if frames is not self.frames:
            return pixel_moments(frames, clean=clean)
        if clean not in self._moments:
            self._moments[clean] = pixel_moments(frames, clean=clean)
        return self._moments[clean]


def _counts(frames: np.ndarray, seed: int, clean: bool = False, statistics: FrameStatistics | None = None,
            scratch: Scratch | None = None) -> tuple[Counts | None, str]:
    mean, var = (statistics or FrameStatistics(frames)).moments(frames, clean)
    gain, offset, reason = photon_transfer(mean, var)
    if reason:
        return None, reason
    # Per-pixel offsets: each pixel's counts get a mean equal to its noise variance
    # (the dither's 1/12 included).  The split halves are independent only when
    # var = mean, and a global line leaves every pixel off by its share of the fit's
    # error (0.5 % of the gain biases a 50x error reduction by about 25 %); per
    # pixel, the errors are those of the variance estimate, which average out.
    # The dither adds the variance f (1 - f) of a value with fractional part f (about 1/6).
    dither = np.full(mean.shape, 1.0 / 6.0)
    for _ in range(3):
        offsets = mean - var / gain - gain * dither
        dither = _dither_variance(frames, gain, offsets)
    offsets = mean - var / gain - gain * dither
    counts, photons = _dithered(frames, gain, offsets, seed, scratch=scratch)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = var / (gain * (mean - offset))
    good = np.isfinite(ratio) & (mean > offset)
    dispersion = float(np.median(ratio[good])) if good.any() else math.nan
    shift = (offsets - offset) / gain
    return Counts(ok=True, counts=counts, gain=gain, offset=offset, photons_per_pixel=photons,
                  dispersion=dispersion, variance=var / gain**2 + dither, offsets=offsets,
                  offset_spread=float(np.subtract(*np.percentile(shift, [75, 25])))), ""


#: ``Counts.shot_noise_reason`` of a movie split in its own units by choice (:func:`prepare_counts`'s ``own_units``).
OWN_UNITS_REASON = ("split in the movie's own units by choice (Gaussian fission with the measured noise variance and "
                    "correlation): no dither, and the movie's own mean image")


def prepare_counts(frames: np.ndarray, *, seed: int = 0, correlation_limit: float = CORRELATION_LIMIT,
                   own_units: bool = False, statistics: FrameStatistics | None = None,
                   scratch: Scratch | None = None) -> Counts:
    """Photon counts of a movie, and the spatial correlation of their noise.

    Parameters
    ----------
    frames : ndarray, shape (T, h, w)
        Raw movie (any real dtype, in its own units).
    seed : int
        Seed of the dither.
    correlation_limit : float
        Largest |median neighbour correlation| of first differences treated as
        independent noise (binomial split); above it the correlation is modelled
        (:func:`split`).
    own_units : bool
        Split the movie in its own units by Gaussian fission (``"gaussian"``) even where it has a shot-noise
        curve: no dither, no per-pixel offsets (:func:`whole_split`).
    statistics : FrameStatistics, optional
        Statistics of ``frames`` already measured for another split of them (the same numbers, measured once).
    scratch : Scratch, optional
        Where the counts are written (a file; default: an array in memory).

    Returns
    -------
    Counts
        ``ok`` False with the reason when the movie has no shot-noise curve.
    """
    if frames.shape[0] < 8:
        return Counts(ok=False, reason=f"{frames.shape[0]} frames: too few for a photon-transfer fit")
    if min(frames.shape[1:]) < 4:
        return Counts(ok=False, reason=f"frames of {frames.shape[1]} x {frames.shape[2]} pixels: too small")
    if statistics is None or statistics.frames is not frames:
        statistics = FrameStatistics(frames)
    # A fast signal shared by a region is not noise (module docstring): measured on the first differences.
    coherent = statistics.coherent()
    clean = coherent > COHERENT_LIMIT
    counts, reason = (None, OWN_UNITS_REASON) if own_units else _counts(frames, seed, clean, statistics, scratch)
    if counts is None:
        counts = _gaussian(frames, clean, reason, statistics, scratch)
        if counts is None:
            return Counts(ok=False, reason="fewer than 50 pixels with noise" if own_units else reason,
                          coherent=coherent, clean=clean)
    counts.coherent, counts.clean = coherent, clean
    corr = correlations(counts.counts, clean=clean, limit=max(correlation_limit, WIDEN_LIMIT),
                        variance=counts.variance, statistics=statistics)
    counts.correlations = corr
    values = [abs(v) for v in corr.values() if math.isfinite(v)]
    counts.correlation = max(values) if values else math.nan
    if counts.method != "gaussian":
        counts.method = "binomial" if counts.correlation <= correlation_limit else "correlated"
    elif own_units and counts.correlation <= correlation_limit:
        # Independent noise, as the binomial split takes it: modelling the few thousandths that the measured
        # correlations hold (signal that neighbours share leaks into them) made z correlated between the very
        # neighbours the signal removed pairs, and it read 0.01 high on 600-frame simulations.
        counts.white = True
    if counts.method == "gaussian" and clean:
        counts.variance = counts.variance / (1.0 - projection_loss(frames, counts.variance, corr))
    if all(max(dy, abs(dx)) <= CORRELATION_RADIUS for dy, dx in corr):
        # The narrow model: a noise shared along whole lines (rows or columns) is modelled on its own.
        lines = {name: ell for name, ell in ((name, line_noise(counts.counts, counts.variance, axis=axis, clean=clean))
                                             for name, axis in (("rows", 2), ("columns", 1))) if ell is not None}
        if lines:
            counts.lines = lines
            counts.correlations = _without_lines(corr, counts.variance, lines)
            if counts.method == "binomial":
                counts.method = "correlated"
    return counts


def projection_loss(frames: np.ndarray, variance: np.ndarray, corr: dict, chunk: int = 256) -> np.ndarray:
    """Per pixel, the share of the noise variance that taking the shared signal out (:func:`_shared_basis`)
    removes with it, under the noise model (``variance``, the lag correlations ``corr``).

    Projecting a difference frame off the spatial components ``V`` (rows) removes, at pixel ``p``,
    ``2 (P S)_pp - (P S P)_pp`` of noise of covariance ``S`` (``P = V^T V``).  Noise shared over many pixels
    lies partly along the smooth components of a one-photon background, so this is not always small (5 %
    on a real one-photon clip); the variance measured after the projection is divided by ``1 - loss``, or
    the split's ``z`` is too weak and the halves share the rest (0.024 at lag 0 on that clip, 0.010 after).
    The components of the first chunk of frames stand for the movie's.  First order: the components are
    held fixed, but they were estimated from the same noisy frames and take some more of its noise (on a
    simulation with a three-component background, 6.5 % where this computes 0.9 %); the halves check
    (:func:`halves_correlations`) is the judge of the split that results.
    """
    n, h, w = frames.shape
    d = np.diff(np.asarray(frames[: min(n, chunk + 1)], np.float64), axis=0)
    basis = _shared_basis(d) if d.shape[0] >= COHERENT_MIN_FRAMES else np.zeros((0, h * w))
    if basis.shape[0] == 0:
        return np.zeros((h, w))
    spectrum = _correlation_filter((h, w), corr) ** 2
    sd = np.sqrt(np.maximum(variance, 0.0))
    v = basis.reshape(-1, h, w)
    # S V^T: each component through the noise covariance (the split's own model of it).
    sv = sd * np.real(np.fft.ifft2(np.fft.fft2(sd * v, axes=(1, 2)) * spectrum, axes=(1, 2)))
    ps_diag = np.einsum("kij,kij->ij", v, sv)
    m = np.einsum("kij,lij->kl", v, sv)
    psp_diag = np.einsum("kij,kl,lij->ij", v, m, v)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss = np.where(variance > 0, (2.0 * ps_diag - psp_diag) / np.maximum(variance, 1e-300), 0.0)
    return np.clip(loss, 0.0, 0.5)


def _gaussian(frames: np.ndarray, clean: bool, reason: str, statistics: FrameStatistics | None = None,
              scratch: Scratch | None = None) -> Counts | None:
    """The movie in its own units for a Gaussian split, where it has no shot-noise curve (None: no noise at all).

    A movie rescaled, filtered or resampled after the detector (or whose noise is
    read noise) cannot be converted to photon counts, but its noise variance per
    pixel (:func:`pixel_moments`) and its spatial correlation are measurable, and
    Gaussian data fission needs nothing else: ``A = y/2 + z``, ``B = y/2 - z``
    with ``Cov(z)`` a quarter of the noise covariance share no noise, and ``B``'s
    noise variance is half the pixel's (:meth:`Counts.noise_of_half`), which the
    score subtracts where counts subtract ``mean_t B``.
    """
    _, var = (statistics or FrameStatistics(frames)).moments(frames, clean)
    good = np.isfinite(var) & (var > 0)
    if good.sum() < 50:
        return None
    var = np.where(good, var, 0.0)
    data = _as_float32(frames, scratch)
    return Counts(ok=True, counts=data, gain=math.nan, offset=math.nan, variance=var, method="gaussian",
                  shot_noise_reason=reason)


def _as_float32(frames, scratch: Scratch | None = None, chunk: int = 256):
    """``frames`` as float32: themselves where they are (as ``np.asarray(frames, np.float32)``), else a copy (a
    file of ``scratch`` for :class:`Frames`, converted a chunk at a time: the same floats)."""
    if not isinstance(frames, Frames):
        return np.asarray(frames, np.float32)
    if frames.dtype == np.float32:
        return frames
    out = empty(scratch, frames.shape, np.float32, "float32")
    for t0 in range(0, frames.shape[0], chunk):
        out[t0 : t0 + chunk] = np.asarray(frames[t0 : t0 + chunk], np.float32)
    return out


def correlations(frames: np.ndarray, *, clean: bool = False, limit: float = WIDEN_LIMIT,
                 variance: np.ndarray | None = None, statistics: FrameStatistics | None = None) -> dict:
    """The noise's spatial correlation for the split (``variance``: the split's per-pixel noise variance, as
    :func:`pooled_correlations`): :func:`pooled_correlations` within
    :data:`CORRELATION_RADIUS`, or where the outermost of those lags still exceed ``limit`` (noise shared
    over many pixels: a one-photon sensor's blur), every lag of the frame (:func:`wide_correlations`): a
    model cut at a few pixels leaves the halves sharing the rest, and its truncated kernel is not a
    covariance (a real one-photon clip's, cut at 8 px, had 23 % of its power spectrum negative)."""
    corr = pooled_correlations(frames, radius=CORRELATION_RADIUS, clean=clean, variance=variance)
    outer = [abs(v) for (dy, dx), v in corr.items() if max(dy, abs(dx)) == CORRELATION_RADIUS and math.isfinite(v)]
    if not outer or max(outer) <= limit:
        return corr
    return wide_correlations(frames, clean=clean, statistics=statistics)


def wide_correlations(frames: np.ndarray, *, clean: bool = False, chunk: int = 256,
                      statistics: FrameStatistics | None = None) -> dict:
    """Noise correlation at every lag within half the frame, ``{(dy, dx): r}`` (half of them, as
    :func:`pooled_correlations`), from first differences standardised per pixel.

    ``r(L) = sum_t sum_p d_p d_{p+L} / sum_t sum_p k_p k_{p+L}`` over the differences kept
    (:func:`_signal_mask`: ``k``), by FFTs of the zero-padded frames (every pair of pixels, no wrap),
    tapered by a cosine from a quarter to a half of the frame's side (the far lags rest on few pairs).
    """
    n, h, w = frames.shape
    shape = (2 * h, 2 * w)
    _, var = (statistics or FrameStatistics(frames)).moments(frames, clean)
    scale = np.where(var > 0, 1.0 / np.sqrt(np.maximum(var, 1e-300)), 0.0)
    num = np.zeros(shape)
    den = np.zeros(shape)
    for t0 in range(0, n - 1, chunk):
        d = _differences(frames[t0 : min(t0 + chunk + 1, n)], clean)
        keep = (~_signal_mask(d) if d.shape[0] >= 8 else np.ones(d.shape, bool)).astype(np.float64)
        keep *= (scale > 0)
        x = d * keep * scale / math.sqrt(2.0)  # a difference holds twice the noise variance
        fx = np.fft.rfft2(x, s=shape, axes=(1, 2))
        fk = np.fft.rfft2(keep, s=shape, axes=(1, 2))
        num += np.fft.irfft2(np.sum(fx * np.conj(fx), axis=0), s=shape)
        den += np.fft.irfft2(np.sum(fk * np.conj(fk), axis=0), s=shape)
        del d, keep, x, fx, fk  # freed before the next chunk is read
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0.5, num / np.maximum(den, 1e-12), 0.0)
    r /= r[0, 0] if r[0, 0] > 0 else 1.0
    out = {}
    for dy in range(0, h // 2 + 1):
        for dx in range(-(w // 2), w // 2 + 1):
            if dy == 0 and dx <= 0:
                continue
            dist = max(dy / max(h, 1), abs(dx) / max(w, 1))  # in frame sides
            taper = 1.0 if dist <= 0.25 else 0.5 * (1.0 + math.cos(math.pi * min((dist - 0.25) / 0.25, 1.0)))
            if taper > 0:
                out[(dy, dx)] = float(r[dy, dx % shape[1]] * taper)
    return out


#: Share of the noise variance (pooled over pixels) that a line-wide noise must hold to be modelled
#: (:func:`line_noise`); below it the halves share less than a thousandth of their noise along lines.
LINE_NOISE_LIMIT = 1e-3
#: Standard errors by which the line-wide covariance must stand clear of none to be modelled.
LINE_NOISE_SE = 4.0
#: Pixels on each side of a pixel left out of its line's far mean (the neighbour model's lags, and one more).
LINE_NEAR = CORRELATION_RADIUS + 1


def line_noise(frames: np.ndarray, variance: np.ndarray, *, axis: int = 2, clean: bool = False,
               chunk: int = 256) -> np.ndarray | None:
    """Per-pixel loading ``l_p`` of a noise shared along whole lines, or None where there is none to model.

    A raster scan can add a noise that every pixel of a line shares (a line's
    laser or detector gain, its offset): ``r_p(t) = l_p eta_line(t)``, white in
    time, ``eta`` of unit variance, at every distance along the line, so a model
    of the neighbours' correlation within :data:`CORRELATION_RADIUS` leaves the
    halves sharing it (neurofinder_dev: 0.006-0.007 at every lag of a row).  On
    first differences without coherent signal (:func:`_signal_mask`), per line:
    the covariance of each pixel with the mean of its line beyond
    :data:`LINE_NEAR` pixels is ``l_p L`` and that of the line's two far halves'
    means ``L^2`` (``L`` the line's mean loading), so ``l_p = cov_p / L``; ``l``
    is then smoothed as a line in the pixel's noise variance (``a + b v_p``:
    additive and gain-like line noise, the latter growing with brightness), and
    kept only where its share of the noise (``sum l^2 / sum v``) exceeds
    :data:`LINE_NOISE_LIMIT` and the line covariance stands :data:`LINE_NOISE_SE`
    standard errors clear of none.  ``axis``: 2 for rows (the line runs along x), 1 for columns.
    """
    from scipy.ndimage import uniform_filter1d

    v = np.moveaxis(np.asarray(variance, np.float64), axis - 1, 1) if axis != 2 else np.asarray(variance, np.float64)
    n, h, w = (frames.shape[0], *v.shape)

    def lines(t0, t1):  # frames [t0, t1) with the line along the last axis (a view, read a chunk at a time)
        block = frames[t0:t1]
        return np.moveaxis(np.asarray(block), axis, 2) if axis != 2 else block

    near = 2 * LINE_NEAR + 1
    half = (w - near) // 2
    if n < 3 or half < 4:
        return None
    cov = np.zeros((h, w))
    lr = np.zeros(h)
    lr2 = np.zeros(h)
    count = 0
    for t0 in range(0, n - 1, chunk):
        d = _differences(lines(t0, min(t0 + chunk + 1, n)), clean)
        d /= math.sqrt(2.0)  # a difference holds twice the noise (in place, as every step below: the same floats)
        keep = ~_signal_mask(d) if d.shape[0] >= 8 else np.ones(d.shape, bool)
        # Not in place: for columns d is laid out along the frame's rows, and the product takes the mask's (C)
        # layout, which the sums below follow to the last bit (in place, optinist_mouse2p's column line noise
        # moved by 3e-15).
        d = d * keep
        total = d.sum(axis=2, keepdims=True)
        close = uniform_filter1d(d, near, axis=2, mode="constant")
        close *= near
        inside = uniform_filter1d(np.ones(w), near, mode="constant") * near
        far = np.subtract(total, close, out=close)
        far /= (w - inside)[None, None, :]
        cov += np.einsum("tij,tij->ij", d, far)
        left, right = d[:, :, :half].mean(axis=2), d[:, :, w - half :].mean(axis=2)
        lr += np.einsum("ti,ti->i", left, right)
        lr2 += np.einsum("ti,ti->i", left**2, right**2)
        count += d.shape[0]
        del d, keep, total, close, far  # freed before the next chunk is read
    cov /= count
    line_sq = lr / count  # L^2 per line
    se = math.sqrt(max(float(lr2.sum()) / count, 0.0) / count)
    if not (line_sq.sum() > LINE_NOISE_SE * se and line_sq.sum() > 0):
        return None
    good = line_sq > 0
    raw = np.where(good[:, None], cov / np.sqrt(np.where(good, line_sq, 1.0))[:, None], np.nan)
    ok = np.isfinite(raw) & np.isfinite(v)
    design = np.stack([np.ones(int(ok.sum())), v[ok]], axis=1)
    coef, *_ = np.linalg.lstsq(design, raw[ok], rcond=None)
    ell = np.clip(coef[0] + coef[1] * v, 0.0, None)
    ell = np.minimum(ell, np.sqrt(0.5 * np.clip(v, 0.0, None)))  # the line never holds more than half the noise
    if not np.sum(ell**2) > LINE_NOISE_LIMIT * np.sum(np.clip(v, 0.0, None)):
        return None
    return np.moveaxis(ell, 1, axis - 1) if axis != 2 else ell


def _without_lines(corr: dict, variance: np.ndarray, lines: dict) -> dict:
    """The neighbour correlations of the noise less the lines' (:func:`line_noise`), relative to what is left.

    The split's ``z`` is then the sum of the lines' part and a stationary part of
    variance ``v - sum l^2`` (:func:`split`); its pooled correlation at a lag
    along a line is ``(sum cov - sum l_p l_q) / sum sqrt(v'_p v'_q)``."""
    v = np.asarray(variance, np.float64)
    rest = np.clip(v - sum(ell**2 for ell in lines.values()), 0.0, None)
    h, w = v.shape
    out = {}
    for lag, r in corr.items():
        here, there = _lag_slices(h, w, lag)
        shared = r * float(np.sqrt(v[here] * v[there]).sum())
        for name, ell in lines.items():
            if (name == "rows" and lag[0] == 0) or (name == "columns" and lag[1] == 0):
                shared -= float((ell[here] * ell[there]).sum())
        den = float(np.sqrt(rest[here] * rest[there]).sum())
        out[lag] = shared / den if den > 0 else r
    return out


def _correlation_filter(shape, correlations: dict) -> np.ndarray:
    """sqrt of the power spectrum of a stationary field with the given lag correlations (unit variance)."""
    h, w = shape
    kernel = np.zeros((h, w))
    kernel[0, 0] = 1.0
    for (dy, dx), r in correlations.items():
        if (dy, dx) == (0, 0) or not math.isfinite(r):
            continue
        kernel[dy % h, dx % w] += r
        kernel[-dy % h, -dx % w] += r
    spectrum = np.clip(np.real(np.fft.fft2(kernel)), 0.0, None)
    spectrum *= spectrum.size / max(spectrum.sum(), 1e-12)  # unit variance after clipping
    return np.sqrt(spectrum)


def split(counts: Counts | np.ndarray, seed: int = 0, chunk: int = 256, *,
          fraction: float = 0.5, scratch: Scratch | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two halves of a movie of counts with the same signal and independent noise.

    ``fraction`` (``p``, default 1/2): the share of the photons (of the signal, and of the noise variance) that
    ``A`` gets; ``B`` gets the rest (:func:`whole_split`: ``A`` with most of them stands for the whole movie).
    Every form below thins with ``p`` in place of 1/2: ``A ~ Binomial(n, p)``, or ``A = p n + z`` with ``Cov(z) =
    p (1 - p)`` of the noise covariance; the halves share no noise and ``B``'s noise variance is ``(1 - p)`` of
    the movie's (``mean_t B`` for counts).  At 1/2 the halves are the same floats as before ``fraction`` existed.

    * independent noise (``counts.method == "binomial"``, or a bare array):
      binomial thinning, ``A ~ sign(n) Binomial(|n|, 1/2)``, ``B = n - A`` (the
      sign keeps ``E[A] = n / 2`` for the few negative counts that read noise
      gives dark pixels; where there are some, the thinning's spread about ``n/2``
      is scaled per pixel so that the halves stay uncorrelated, :func:`_thinning_scale`);
    * noise shared between neighbours (``"correlated"``): ``A = n/2 + z``,
      ``B = n/2 - z`` with ``z`` Gaussian, of covariance a quarter of the counts'
      noise covariance (their variance per pixel, the measured correlation
      between neighbours).  Then ``Cov(A, B) = Cov(n)/4 - Cov(z) = 0`` between
      every pair of pixels: the halves share no noise (Gaussian data fission,
      Leiner et al. 2023), where a binomial split would leave them the shared part;
    * no shot noise (``"gaussian"``): the same, on the movie in its own units.

    ``scratch``: the halves are written to files there (:class:`~.frame_files.FrameFile`) a chunk at a time,
    the same numbers as in memory (default).
    """
    if isinstance(counts, np.ndarray):
        counts = Counts(ok=True, counts=counts)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction {fraction} is not between 0 and 1")
    p = float(fraction)
    n_all = counts.counts
    if counts.method in ("correlated", "gaussian"):
        filt = _correlation_filter(n_all.shape[1:], {} if counts.white else counts.correlations)
        # The filter is real and even (the correlation kernel is symmetric), so z = real(ifft2(fft2(white) filt))
        # is the inverse real FFT of the half spectrum: a third of the time, the same z to 2e-15 (on a 256 x 231 x
        # 280 chunk of counts, 1 of 16.6 million float32 values of A moved by one unit of its last bit).
        filt = filt[:, : n_all.shape[2] // 2 + 1]
        lines = counts.lines or {}
        spread = math.sqrt(p * (1.0 - p))  # 1/2 for halves: Cov(z) = p (1 - p) Cov(n)
        scale = spread * np.sqrt(np.clip(counts.variance - sum(ell**2 for ell in lines.values()), 0.0, None))
        a = empty(scratch, n_all.shape, np.float32, "half-a")
        b = empty(scratch, n_all.shape, np.float32, "half-b")
        for t0 in range(0, n_all.shape[0], chunk):
            rng = np.random.default_rng([seed, 13, t0])
            values = n_all[t0 : t0 + chunk]
            n = np.array(values, np.float64)  # a copy: scaled in place below
            # In place where the arrays are temporaries (the same products, fewer chunk-sized arrays at a time).
            spectrum = np.fft.rfft2(rng.standard_normal(n.shape), axes=(1, 2))
            spectrum *= filt
            z = np.fft.irfft2(spectrum, s=n.shape[1:], axes=(1, 2))
            del spectrum
            z *= scale
            for k, (name, ell) in enumerate(sorted(lines.items())):
                # a quarter of the line noise's covariance, l_p l_q along each line (rows: one value per row)
                line_rng = np.random.default_rng([seed, 17, k, t0])
                if name == "rows":
                    z += spread * ell[None] * line_rng.standard_normal((n.shape[0], n.shape[1], 1))
                else:
                    z += spread * ell[None] * line_rng.standard_normal((n.shape[0], 1, n.shape[2]))
            n *= p
            n += z  # p n + z
            del z
            part = n.astype(np.float32)
            del n
            a[t0 : t0 + chunk] = part
            b[t0 : t0 + chunk] = (values - part).astype(np.float32)
            del values, part  # freed before the next chunk is drawn
        return a, b
    scale = _thinning_scale(n_all, chunk)
    a_dtype = np.dtype(np.float32 if scale is not None else np.int32)
    a = empty(scratch, n_all.shape, a_dtype, "half-a")
    b = empty(scratch, n_all.shape, np.result_type(n_all.dtype, a_dtype), "half-b")
    for t0 in range(0, n_all.shape[0], chunk):
        rng = np.random.default_rng([seed, 11, t0])
        n = n_all[t0 : t0 + chunk]
        if scale is None:
            part = (np.sign(n) * rng.binomial(np.abs(n), p)).astype(a_dtype)
        else:
            part = (p * n + scale * np.sign(n) * (rng.binomial(np.abs(n), p) - p * np.abs(n))).astype(a_dtype)
        a[t0 : t0 + chunk] = part
        b[t0 : t0 + chunk] = n - part
        del n, part  # freed before the next chunk is drawn
    return a, b


def _thinning_scale(counts: np.ndarray, chunk: int = 256) -> np.ndarray | None:
    """Per pixel, the factor on the binomial thinning's spread that makes the halves uncorrelated where some counts
    are negative (None where none is).

    Read noise below the offset gives a dark pixel negative counts (the per-pixel
    offsets that make var = mean need them).  Thinning ``|n|`` with its sign
    (``A = n/2 + y``, ``y = sign(n) (Binomial(|n|, 1/2) - |n|/2)``) spreads
    the halves by ``E|n| / 4``, more than the ``var(n) / 4 = E[n] / 4`` that
    makes ``Cov(A, B) = var(n)/4 - var(y)`` zero: the halves shared ``-n^-/2``
    of their noise per value and a dim movie's (1.2 photons per pixel per
    frame, 1 % negative counts) error reduction read 0.45 of the truth.  With
    ``y`` scaled by ``sqrt(E[n] / E|n|)`` (per pixel, over the frames) the
    halves' covariance is zero, ``B``'s noise variance is ``var(n)/2 = mean_t(B)``
    as the score assumes, and only the few negative counts' pixels change.
    """
    total = np.zeros(counts.shape[1:])
    absolute = np.zeros(counts.shape[1:])
    for t0 in range(0, counts.shape[0], chunk):
        n = np.asarray(counts[t0 : t0 + chunk], np.float64)
        total += n.sum(axis=0)
        absolute += np.abs(n).sum(axis=0)
    if np.array_equal(total, absolute):
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(np.clip(np.where(absolute > 0, total / absolute, 1.0), 0.0, 1.0))


# --------------------------------------------------------------------------- scoring


def _smooth(image, sigma=1.0):
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(np.asarray(image, np.float64), sigma, mode="nearest")


def _blocks(t: int, n_blocks: int = N_BLOCKS) -> list[np.ndarray]:
    """The time blocks (frame indices) of the scores' jackknife and of the active-pixel folds."""
    return np.array_split(np.arange(t), min(n_blocks, t))


def active_pixels(x: np.ndarray, fraction: float = ACTIVE_FRACTION, *, frames=None, chunk: int = 256,
                  noise: np.ndarray | None = None) -> np.ndarray:
    """The ``fraction`` of pixels with the most signal variance in ``x`` (``var_t - mean_t``, 1-px smoothed).

    ``frames`` (indices, default all): the frames the choice is made on.  Under
    Poisson noise ``var_t - mean_t`` estimates a pixel's signal variance;
    ``noise`` ((h, w), default ``mean_t``): the noise variance per pixel where it is known otherwise.
    """
    frames = np.arange(x.shape[0]) if frames is None else np.asarray(frames)
    total = np.zeros(x.shape[1:])
    sq = np.zeros(x.shape[1:])
    for j0 in range(0, frames.size, chunk):
        block = np.asarray(x[frames[j0 : j0 + chunk]], np.float64)
        total += block.sum(axis=0)
        sq += np.einsum("tij,tij->ij", block, block)
    n = frames.size
    mean = total / n
    # Unbiased (n - 1) variance: on a short movie the plain one is low by 1/n of the noise.
    power = _smooth((sq - n * mean**2) / max(n - 1, 1) - (mean if noise is None else noise))
    k = max(1, int(round(fraction * power.size)))
    threshold = np.sort(power.ravel())[::-1][k - 1]
    return power >= threshold


def active_folds(b: np.ndarray, fraction: float = ACTIVE_FRACTION, *, n_blocks: int = N_BLOCKS,
                 noise: np.ndarray | None = None, shared: bool = True) -> list:
    """The most active pixels, chosen apart from the data that score them: ``[(frames, mask), ...]``.

    The frames are cut in two halves (of whole time blocks).  The pixels scored
    on the second half are the most active in ``B``'s first half, and the other
    way round: the choice then shares no noise with what scores it (``A`` and
    ``dA`` do not depend on ``B``; ``B``'s two halves are independent Poisson
    draws).  A choice made on ``A`` itself (the half that is denoised) picks
    pixels whose noise in ``A`` happens to be large: there the raw error is
    large and the denoised error is not, and the ratio reads high (on
    neurofinder_dev's report crop, 101x where these folds give 66x).  Empty
    when the movie has fewer than 2 frames.

    ``shared`` (default): chosen on the signal each pixel shares with the
    pixels two rows away (:func:`shared_active_pixels`); False: on ``var_t -
    noise`` (:func:`active_pixels`, ``noise`` as there), the choice until
    2026-12-06, which shares noise with the per-pixel calibration of the counts.
    """
    blocks = _blocks(b.shape[0], n_blocks)
    if len(blocks) < 2:
        return []
    half = len(blocks) // 2
    first, second = np.concatenate(blocks[:half]), np.concatenate(blocks[half:])
    if shared:
        return [(second, shared_active_pixels(b, fraction, frames=first)),
                (first, shared_active_pixels(b, fraction, frames=second))]
    return [(second, active_pixels(b, fraction, frames=first, noise=noise)),
            (first, active_pixels(b, fraction, frames=second, noise=noise))]


#: Rows between a pixel and the two whose signal :func:`shared_active_pixels` takes as its activity: inside a cell
#: (somata span 8-20 px), beyond the noise the neighbours share (a raster scan's is along rows, and the
#: real movies' vertical correlation at 2 rows is within +-0.03).
ACTIVITY_LAG = 2


def shared_active_pixels(x: np.ndarray, fraction: float = ACTIVE_FRACTION, *, frames=None,
                         lag: int = ACTIVITY_LAG) -> np.ndarray:
    """The ``fraction`` of pixels with the most signal shared with the pixels ``lag`` rows above and below.

    ``mean_q cov_t(x_p, x_q)`` over those ``q`` (1-px smoothed), on ``frames``.
    Unlike :func:`active_pixels` (``var_t - noise``) it subtracts no noise
    variance: the per-pixel noise variance that made the counts was measured
    on every frame, so a choice on one half's ``var_t - mean_t`` picks pixels
    whose noise was low on the other, scoring half, where ``mean_t(B)`` then
    subtracts too much (sima-like simulations, 128 x 256, the most active
    pixels' error reduction read 1.62x the truth at 20 frames and 1.25x at 160;
    this choice 1.14x and 0.92x).  A product of two pixels' noise shares
    nothing with either pixel's own noise variance.
    """
    frames = np.arange(x.shape[0]) if frames is None else np.asarray(frames)
    h, w = x.shape[1:]
    total = np.zeros((h, w))
    cross = np.zeros((max(h - lag, 0), w))
    n = frames.size
    for j0 in range(0, n, 256):
        block = np.asarray(x[frames[j0 : j0 + 256]], np.float64)
        total += block.sum(axis=0)
        cross += np.einsum("tij,tij->ij", block[:, lag:], block[:, : h - lag])
    mean = total / max(n, 1)
    cov = (cross - n * mean[lag:] * mean[: h - lag]) / max(n - 1, 1)
    power = np.zeros((h, w))
    partners = np.zeros((h, w))
    power[lag:] += cov
    power[: h - lag] += cov
    partners[lag:] += 1
    partners[: h - lag] += 1
    power = _smooth(np.where(partners > 0, power / np.maximum(partners, 1), 0.0))
    k = max(1, int(round(fraction * power.size)))
    threshold = np.sort(power.ravel())[::-1][k - 1]
    return power >= threshold


def score(a: np.ndarray, b: np.ndarray, denoised: np.ndarray, *, active: np.ndarray | None = None,
          n_blocks: int = N_BLOCKS, chunk: int = 256, noise: np.ndarray | None = None,
          poisson_scale: float = 1.0) -> dict:
    """Error and signal removed of ``denoised`` (made from ``a`` only), scored against ``b``.

    ``active`` (an (h, w) mask, scored on every frame): the "most active"
    pixels; default :func:`active_folds` (each half of the frames scored on the
    pixels chosen on ``B``'s other half, pooled).  ``noise`` ((h, w)): the
    variance of ``B``'s noise per pixel and frame; default ``mean_t(B)`` (Poisson
    counts) times ``poisson_scale`` (counts multiplied by ``k`` have noise variance ``k`` times their mean:
    an unbalanced split's ``B`` brought to ``A``'s level, :func:`photon_split`); the Gaussian split
    (:func:`split`) knows it from its noise model.

    Returns
    -------
    dict
        ``all`` and ``active``, each with ``mse`` (estimated mean squared error of
        the denoised movie against ``s / 2``, photons^2), ``mse_raw`` (the same for
        ``A`` itself), ``error_reduction`` (their ratio; None when the estimate is
        not positive), ``error_reduction_low``/``high`` (+- 2 standard errors over
        time blocks), ``signal_removed`` (:func:`shared_signal_removed`: the
        covariance of the residual ``A - dA`` with the ``B`` of the pixels above
        and below over that of ``A``, within each fold's frames) and
        ``signal_removed_pixel`` (:func:`signal_removed`, the lag-0 diagnostic:
        the residual's covariance with ``B`` at the same pixel over ``var_t(B) -
        mean_t(B)``, which reads high where the halves' noise variance is off by
        a fraction of the signal's).
    """
    t, h, w = a.shape
    blocks = _blocks(t, n_blocks)
    if active is None:
        folds = active_folds(b, n_blocks=n_blocks, noise=noise)
    else:
        folds = [(np.arange(t), np.asarray(active, bool))]
    # Per block, per pixel: sum (dA - B)^2, sum (A - B)^2, sum B, B's noise variance; the moments for
    # the signal-removed covariances, at the pixel and with each neighbour q = p + lag
    # (B_q stored at p; zero where q falls outside the frame).
    names = ("sq_d", "sq_a", "b", "b2", "r", "rb", "nv", "a") + tuple(
        f"{k}{i}" for i in range(len(SHARED_LAGS)) for k in ("bq", "rbq", "abq"))
    per_block = {k: np.zeros((len(blocks), h, w)) for k in names}
    sums = np.empty((len(SCORE_SUMS) + 3 * len(SHARED_LAGS), h, w))
    for i, idx in enumerate(blocks):
        for j0 in range(0, idx.size, chunk):
            sel = slice(idx[j0], idx[min(j0 + chunk, idx.size) - 1] + 1)
            # One pass over the chunk's A, B, dA as they are stored (each value taken to float64 as it is read):
            # the chunk's sums, each pixel's in frame order from zero, the floats of einsums on float64 copies.
            score_sums(np.asarray(a[sel]), np.asarray(b[sel]), np.asarray(denoised[sel]), SHARED_LAGS, sums)
            for name, chunk_sum in zip(SCORE_SUMS, sums, strict=False):
                per_block[name][i] += chunk_sum
            n_sel = sel.stop - sel.start
            per_block["nv"][i] += poisson_scale * sums[SCORE_SUMS.index("b")] if noise is None else n_sel * noise
            for k, lag in enumerate(SHARED_LAGS):
                here, _ = _lag_slices(h, w, lag)
                for m, name in enumerate(("bq", "rbq", "abq")):
                    per_block[f"{name}{k}"][i][here] += sums[len(SCORE_SUMS) + 3 * k + m][here]
    sizes = np.array([idx.size for idx in blocks], np.float64)
    out = {"all": _score_set(per_block, sizes, [(np.arange(len(blocks)), np.ones((h, w), bool))], noise,
                             poisson_scale)}
    if folds:
        # Each fold is a union of whole blocks: the blocks whose first frame it holds.
        starts = np.array([idx[0] for idx in blocks])
        block_folds = [(np.flatnonzero(np.isin(starts, frames)), mask) for frames, mask in folds]
        out["active"] = _score_set(per_block, sizes, block_folds, noise, poisson_scale)
        out["active_fraction"] = float(np.mean([mask.mean() for _, mask in folds]))
    else:
        out["active"] = {"pixels": 0, "valid": False}
        out["active_fraction"] = 0.0
    return out


def signal_removed(a: np.ndarray, b: np.ndarray, denoised: np.ndarray, mask: np.ndarray, *,
                   chunk: int = 256, noise: np.ndarray | None = None) -> float:
    """Share of ``b``'s signal variance that the residual ``a - denoised`` holds, pooled over the pixels of MASK.

    The lag-0 diagnostic (:func:`score`'s ``signal_removed_pixel``; its
    ``signal_removed`` is :func:`shared_signal_removed`), on any set of pixels (``mask``, (h, w)
    bool), e.g. where patches overlap against their interiors: the covariance
    of the residual with ``b`` over ``b``'s signal variance ``var_t(b) -
    mean_t(b)``, summed over the set (:func:`true_signal_removed` is the same
    against a simulation's clean movie).  NaN when the set holds no signal.
    ``mask`` may also be folds ``[(frames, mask), ...]`` (:func:`active_folds`), pooled.  ``noise``: as
    :func:`score`.
    """
    return _pooled_removed(a, b, denoised, mask, chunk=chunk, noise=noise)


def _lag_slices(h: int, w: int, lag) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices of the pixels ``p`` whose neighbour ``q = p + lag`` is inside an (h, w) frame, and of those ``q``."""
    dy, dx = lag
    here = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
    there = (slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx)))
    return here, there


def shared_signal_removed(a: np.ndarray, b: np.ndarray, denoised: np.ndarray, mask, *, lags=SHARED_LAGS,
                          chunk: int = 256) -> float:
    """Share of the signal that pixels share with their neighbours which the residual ``a - denoised`` holds.

    ``sum_p cov_t(a_p - denoised_p, b_q) / sum_p cov_t(a_p, b_q)`` over the pixels ``p``
    of ``mask`` ((h, w) bool, or folds ``[(frames, mask), ...]`` as
    :func:`active_folds` gives, pooled) and their neighbours ``q = p + lag``
    inside the frame (default :data:`SHARED_LAGS`, the pixels above and
    below).  This is :func:`score`'s ``signal_removed``.  Unlike
    :func:`signal_removed` (``cov_t(a_p - denoised_p, b_p)`` over ``var_t(b_p) -
    mean_t(b_p)``) it never uses a pixel's own noise variance: only that the
    halves' noise is uncorrelated between neighbours, which the split makes so.
    The lag-0 estimate needs each active pixel's noise variance to a fraction
    of its signal variance (about 1 % on a dim movie): on 2p-dense simulations
    split like the real two-photon movies it read 13.5 % where the truth was
    4.4 %, whatever the denoiser (a 3-frame temporal blur: 12.7 % for 4.5 %);
    this reads 2.1 % for 2.9 % and 4.1 % for 4.5 %.  A source larger than a
    pixel (a cell, neuropil) is shared with its neighbours; a signal private to
    one pixel is not counted.  With ``b`` a simulation's clean movie it is the
    ground truth of the same number.  NaN when the set holds no shared signal that stands
    :data:`SHARED_SIGNAL_SE` standard errors above what unrelated halves would give.
    """
    folds = mask if isinstance(mask, list) else [(np.arange(a.shape[0]), mask)]
    h, w = a.shape[1:]
    removed = signal = signal_var = 0.0
    for frames, m in folds:
        frames = np.asarray(frames)
        m = np.asarray(m, bool)
        t = frames.size
        for lag in lags:
            here, there = _lag_slices(h, w, lag)
            sel = m[here]
            sums = np.zeros((7, int(sel.sum())))  # r_p, a_p, b_q, r_p b_q, a_p b_q, a_p^2, b_q^2
            for j0 in range(0, t, chunk):
                idx = frames[j0 : j0 + chunk]
                ap = np.asarray(a[idx], np.float64)[:, here[0], here[1]][:, sel]
                rp = ap - np.asarray(denoised[idx], np.float64)[:, here[0], here[1]][:, sel]
                bq = np.asarray(b[idx], np.float64)[:, there[0], there[1]][:, sel]
                sums += [rp.sum(axis=0), ap.sum(axis=0), bq.sum(axis=0), np.einsum("tp,tp->p", rp, bq),
                         np.einsum("tp,tp->p", ap, bq), np.einsum("tp,tp->p", ap, ap), np.einsum("tp,tp->p", bq, bq)]
            r, ap, bq, rb, ab, aa, bb = sums / t
            removed += float(np.sum(rb - r * bq))
            signal += float(np.sum(ab - ap * bq))
            # Sampling variance of each pixel's covariance were the halves unrelated (var_a var_b / t): the
            # denominator must stand clear of it, or the ratio is noise over noise (a 20-frame movie's shared
            # signal can read 30 % removed from a covariance that is not there).
            signal_var += float(np.sum((aa - ap * ap) * (bb - bq * bq))) / max(t - 1, 1)
    if not signal > SHARED_SIGNAL_SE * math.sqrt(signal_var):
        return math.nan
    return float(removed / signal)


def _pooled_removed(a, b, denoised, mask, *, chunk: int, noise) -> float:
    """:func:`signal_removed`'s share, over an (h, w) ``mask`` on every frame or pooled over folds."""
    folds = mask if isinstance(mask, list) else [(None, mask)]
    sums = [_removed_sums(a, b, denoised, m, frames=f, chunk=chunk, noise=noise) for f, m in folds]
    removed, signal = sum(x[0] for x in sums), sum(x[1] for x in sums)
    return float(removed / signal) if signal > 0 else math.nan


def true_signal_removed(noisy: np.ndarray, clean: np.ndarray, denoised: np.ndarray, mask, *,
                        chunk: int = 256) -> float:
    """Ground truth of :func:`signal_removed` on a simulation: the residual's covariance with the clean movie over
    the clean movie's temporal variance, pooled over MASK.

    ``mask``: an (h, w) bool mask over every frame, or folds ``[(frames, mask), ...]``
    (:func:`active_folds`: each mask over its frames, pooled), as :func:`score`'s ``active`` set.
    """
    return _pooled_removed(noisy, clean, denoised, mask, chunk=chunk, noise=0.0)


def _covariance_terms(b_sum, b2, r_sum, rb, t, noise=None, poisson_scale: float = 1.0) -> tuple[float, float]:
    """From per-pixel sums over ``t`` frames: the residual's covariance with ``b`` and ``b``'s signal variance
    (``var_t - poisson_scale mean_t`` under Poisson noise, ``noise`` None; ``var_t - noise`` for a known noise
    variance, 0 for a clean movie), each summed over the pixels.  Unbiased (``t - 1``) moments: the plain ones read a
    short movie's noise variance low by ``1/t`` (5 % at 20 frames, which turned a signal variance negative)."""
    mean_b = b_sum / t
    dof = max(t - 1, 1)
    noise = poisson_scale * mean_b if noise is None else noise
    signal = np.sum((b2 - t * mean_b**2) / dof - noise)
    removed = np.sum((rb - r_sum * mean_b) / dof)
    return float(removed), float(signal)


def _removed_sums(a, b, denoised, mask, *, frames=None, chunk: int, noise) -> tuple[float, float]:
    """:func:`_covariance_terms` over the pixels of ``mask`` and ``frames`` (indices; default all), read in chunks."""
    mask = np.asarray(mask, bool)
    frames = np.arange(a.shape[0]) if frames is None else np.asarray(frames)
    t = frames.size
    sums = {k: np.zeros(int(mask.sum())) for k in ("b", "b2", "r", "rb")}
    for t0 in range(0, t, chunk):
        sel = frames[t0 : t0 + chunk]
        B = np.asarray(b[sel], np.float64)[:, mask]
        R = np.asarray(a[sel], np.float64)[:, mask] - np.asarray(denoised[sel], np.float64)[:, mask]
        sums["b"] += B.sum(axis=0)
        sums["b2"] += np.einsum("tp,tp->p", B, B)
        sums["r"] += R.sum(axis=0)
        sums["rb"] += np.einsum("tp,tp->p", R, B)
    if noise is not None and np.ndim(noise):
        noise = np.asarray(noise)[mask]
    return _covariance_terms(sums["b"], sums["b2"], sums["r"], sums["rb"], t, noise)


def _score_set(per_block: dict, sizes: np.ndarray, folds: list, noise=None, poisson_scale: float = 1.0) -> dict:
    """Scores pooled over ``folds``: ``[(block indices, (h, w) mask), ...]``, each block in at most one fold."""
    k = sizes.size
    masks = np.zeros((k,) + per_block["b"].shape[1:], bool)
    for idx, mask in folds:
        masks[idx] = mask
    n_pix = masks.sum(axis=(1, 2)).astype(np.float64)
    # Block totals over each block's pixel set.
    tot = {name: np.einsum("kij,kij->k", v, masks) for name, v in per_block.items()}

    def estimates(sel):
        n = np.sum(sizes[sel] * n_pix[sel])
        mse = (tot["sq_d"][sel].sum() - tot["nv"][sel].sum()) / n
        raw = (tot["sq_a"][sel].sum() - tot["nv"][sel].sum()) / n
        return mse, raw

    scored = n_pix > 0
    mse, raw = estimates(scored)
    # Jackknife over time blocks for the standard error of the log error reduction.
    used = np.flatnonzero(scored)
    se = se_mse = math.nan
    if used.size >= 3:
        logs, mses = [], []
        for i in used:
            sel = scored.copy()
            sel[i] = False
            m_i, r_i = estimates(sel)
            logs.append(math.log(r_i / m_i) if m_i > 0 and r_i > 0 else math.nan)
            mses.append(m_i)
        logs, mses = np.array(logs), np.array(mses)
        n_used = used.size
        if np.all(np.isfinite(logs)):
            se = math.sqrt((n_used - 1) / n_used * np.sum((logs - logs.mean()) ** 2))
        se_mse = math.sqrt((n_used - 1) / n_used * np.sum((mses - mses.mean()) ** 2))
    valid = mse > 0 and raw > 0
    er = raw / mse if valid else math.nan
    low = high = math.nan
    if valid and math.isfinite(se):
        low, high = er * math.exp(-2 * se), er * math.exp(2 * se)
    elif valid and math.isfinite(se_mse):
        # Some time block's leave-out error is not positive (a denoised error of a few thousandths of the noise):
        # the interval is open above, and its lower end is the raw error over the error's upper bound.
        low, high = raw / (mse + 2 * se_mse), (raw / (mse - 2 * se_mse) if mse > 2 * se_mse else math.inf)
    # Signal removed: cov_t(A - dA, B) / (var_t(B) - mean_t(B)) within each fold's frames, pooled over its pixels.
    signal_var = removed_cov = 0.0
    for idx, mask in folds:
        cov, signal = _covariance_terms(*(per_block[name][idx].sum(axis=0)[mask] for name in ("b", "b2", "r", "rb")),
                                        sizes[idx].sum(), None if noise is None else np.asarray(noise)[mask],
                                        poisson_scale)
        removed_cov += cov
        signal_var += signal
    removed = removed_cov / signal_var if signal_var > 0 else math.nan
    # The same with the neighbours' B (shared_signal_removed): no pixel's own noise variance enters it.
    h, w = masks.shape[1:]
    cov_map = np.zeros((h, w))
    signal_map = np.zeros((h, w))
    for k, lag in enumerate(SHARED_LAGS):
        inside = np.zeros((h, w), bool)
        inside[_lag_slices(h, w, lag)[0]] = True
        for idx, mask in folds:
            t = sizes[idx].sum()
            keep = mask & inside
            r, a, bq, rbq, abq = (per_block[name][idx].sum(axis=0)[keep] / t
                                  for name in ("r", "a", f"bq{k}", f"rbq{k}", f"abq{k}"))
            cov_map[keep] += rbq - r * bq
            signal_map[keep] += abq - a * bq
    shared_cov, shared_signal = float(cov_map.sum()), float(signal_map.sum())
    shared = shared_cov / shared_signal if shared_signal > 0 else math.nan
    shared_se = _tile_jackknife(cov_map, signal_map) if math.isfinite(shared) else math.nan
    pixels = int(round(float(np.mean([mask.sum() for _, mask in folds]))))
    return {
        "pixels": pixels,
        "mse": float(mse),
        "mse_raw": float(raw),
        "valid": bool(valid),
        "error_reduction": _num(er) if valid else None,
        "error_reduction_low": _num(low) if valid else None,
        # None above a valid lower end: the interval is open above (see the jackknife's fallback)
        "error_reduction_high": _num(high) if valid else None,
        # Jackknife standard error of the denoised error: where that error is not positive, it says whether the
        # split cannot resolve it (within 2 of them of 0) or the halves' noise is off (far below 0).
        "mse_se": _num(se_mse),
        "signal_variance": float(signal_var / max(pixels * len(folds), 1)),
        "signal_removed": _num(shared),
        "signal_removed_low": _num(shared - 2 * shared_se),
        "signal_removed_high": _num(shared + 2 * shared_se),
        "signal_removed_pixel": _num(removed),
    }


#: Side (pixels) of the tiles of :func:`_tile_jackknife`: larger than a cell, so that tiles are nearly independent.
JACKKNIFE_TILE = 16


def _tile_jackknife(numerator: np.ndarray, denominator: np.ndarray, tile: int = JACKKNIFE_TILE) -> float:
    """Standard error of ``sum(numerator) / sum(denominator)`` (per-pixel maps) by a jackknife over square tiles.

    The signal removed is a ratio of two sums of per-pixel covariances, each of
    which holds sampling noise of the order of ``sqrt(var A var B / t)``: on a
    short movie (20 frames) it dwarfs the weak signal, and time blocks are too
    few to see it.  Cells and noise correlations are smaller than a tile, so the
    tiles are close to independent draws.  NaN with fewer than 4 tiles holding pixels.
    """
    h, w = numerator.shape
    ids = (np.arange(h) // tile)[:, None] * (-(-w // tile)) + (np.arange(w) // tile)[None, :]
    num = np.bincount(ids.ravel(), numerator.ravel())
    den = np.bincount(ids.ravel(), denominator.ravel())
    used = np.bincount(ids.ravel(), (denominator != 0).ravel().astype(np.float64)) > 0
    num, den = num[used], den[used]
    k = num.size
    if k < 4:
        return math.nan
    rest = den.sum() - den
    if np.any(rest <= 0):
        return math.nan
    leave_out = (num.sum() - num) / rest
    return float(math.sqrt((k - 1) / k * np.sum((leave_out - leave_out.mean()) ** 2)))


def photon_split(frames: np.ndarray, denoise, *, seed: int = 0, correlation_limit: float = CORRELATION_LIMIT,
                 counts: Counts | None = None, region=None, fraction: float = 0.5,
                 statistics: FrameStatistics | None = None, scratch: Scratch | None = None) -> dict:
    """Photon-splitting score of a denoiser on a movie.

    Parameters
    ----------
    frames : ndarray, shape (T, h, w)
        Raw movie.
    denoise : callable
        ``denoise(A) -> dA``: takes a float32 (T, h, w) movie of photon counts
        and returns its denoised version, same shape.
    seed : int
    correlation_limit : float
        See :func:`prepare_counts`.
    counts : Counts, optional
        Already prepared counts (to score several denoisers on the same split).
    region : ((y0, y1), (x0, x1)), optional
        The pixels scored (default: all).  The whole movie is split and denoised;
        the scores (and the choice of the most active pixels) use this region
        only, so that a margin around it keeps the denoiser's edge effects out.
    fraction : float
        ``p``, the share of the photons ``A`` gets (:func:`split`; default: halves).  Otherwise the split is
        unbalanced (:data:`WHOLE_FRACTION`, :func:`whole_split`): ``B`` is brought to ``A``'s level (times
        ``p / (1 - p)``, its noise variance with it) and scored as above; each set's ``mse``, ``mse_raw`` and
        ``error_reduction`` are then at the whole movie's photon level (``dA / p`` against the movie's signal
        and noise: ``mse / p^2``, ``mse_raw / p``), and ``signal_removed`` (a ratio) is that of the denoiser
        on ``p`` of the photons.
    statistics : FrameStatistics, optional
        Statistics of ``frames`` shared with another split of them (:func:`report_section`).
    scratch : Scratch, optional
        Where the counts (when made here), the halves and ``A`` in float32 are written, a chunk at a time
        (:mod:`.frame_files`): ``denoise`` is then handed a :class:`~.frame_files.FrameFile` and may return
        :class:`~.frame_files.Frames` (read a chunk at a time by the scores).  The same numbers as in memory
        (default); the files are deleted once scored.

    Returns
    -------
    dict
        ``ok``, ``reason``, ``counts`` (:meth:`Counts.summary`),
        ``halves_correlation`` (largest |median correlation| of the halves' first
        differences at any lag: 0 when they share no noise), and when ok the
        scores of :func:`score` (``all``, ``active``).
    """
    made_counts = counts is None
    if counts is None:
        counts = prepare_counts(frames, seed=seed, correlation_limit=correlation_limit, statistics=statistics,
                                scratch=scratch)
    try:
        return _split_and_score(counts, denoise, seed, region, fraction, scratch)
    finally:
        if scratch is not None and made_counts and counts.counts is not frames:
            scratch.remove(counts.counts)


def _split_and_score(counts: Counts, denoise, seed: int, region, fraction: float, scratch: Scratch | None) -> dict:
    """:func:`photon_split` once the counts are made."""
    out = {"ok": counts.ok, "reason": counts.reason, "counts": counts.summary()}
    if not counts.ok:
        return out
    a, b = split(counts, seed, fraction=fraction, scratch=scratch)
    files = [x for x in (a, b) if isinstance(x, Frames)]
    try:
        # A in float32 for the denoiser: in memory a copy, freed once denoised; as frames, a file (or A itself).
        a32 = _as_float32(a, scratch) if isinstance(a, Frames) else a.astype(np.float32)
        if isinstance(a32, Frames):
            files.append(a32)
        _score_halves(out, counts, a, a32, b, denoise, region, fraction)
    finally:
        if scratch is not None:
            for frames in files:
                scratch.remove(frames)
    return out


def _score_halves(out: dict, counts: Counts, a, a32, b, denoise, region, fraction: float) -> None:
    """The halves check and the scores of :func:`photon_split` into ``out`` (``a32``: ``A`` as float32)."""
    balanced = fraction == 0.5
    radius = max((max(dy, abs(dx)) for dy, dx in counts.correlations), default=1)
    shared = halves_correlations(a, b, radius=1 if radius <= CORRELATION_RADIUS else CORRELATION_RADIUS,
                                 clean=counts.clean)
    worst = max((abs(v) for v in shared.values() if math.isfinite(v)), default=math.nan)
    out["halves_correlation"] = _num(worst)
    denoised = denoise(a32)
    del a32  # in memory, the copy is freed here
    if not isinstance(denoised, Frames):
        denoised = np.asarray(denoised, np.float32)
    if denoised.shape != a.shape:
        raise ValueError(f"denoise returned shape {denoised.shape} for input {a.shape}")
    noise = counts.noise_of_half(fraction)
    level = 1.0
    if not balanced:
        # B at A's level: E[level B] = E[A]; its noise variance level^2 that of B (level times the mean, for counts).
        level = fraction / (1.0 - fraction)
        if isinstance(b, Frames):
            b = b.map(lambda block: block * np.float32(level), np.result_type(b.dtype, np.float32))
        else:
            b = b * np.float32(level)
        noise = None if noise is None else level**2 * noise
    if region is not None:
        (y0, y1), (x0, x1) = region
        if not (0 <= y0 < y1 <= a.shape[1] and 0 <= x0 < x1 <= a.shape[2]):
            raise ValueError(f"region {region} is not inside the frames {a.shape[1:]}")
        inner = (slice(None), slice(y0, y1), slice(x0, x1))
        a, b, denoised = a[inner], b[inner], denoised[inner]
        noise = None if noise is None else noise[inner[1:]]
    out.update(score(a, b, denoised, noise=noise, poisson_scale=level))
    if not balanced:
        out["fraction"] = float(fraction)
        for name in ("all", "active"):
            _to_whole_level(out[name], fraction)
    if not worst <= HALVES_LIMIT:
        out["ok"] = False
        out["reason"] = (f"the two halves share noise (correlation {worst:.3f} > {HALVES_LIMIT:g}): the counts are "
                         "not shot noise with the measured correlation, so no number is reported"
                         f"{RAW_COUNTS_HINT}")
    elif not out["all"]["valid"] and balanced:
        out["ok"] = False
        out["reason"] = invalid_reason(out["all"])
    elif not out["all"]["valid"]:
        # Unbalanced: B's noise variance, scaled up 4x and more, weighs on the error estimate as the signal removed
        # never lets it (that needs only the halves check above): no error reduction, said why.
        out["error_reduction_reason"] = invalid_reason(out["all"])
    if not out["ok"]:
        # An invalid split's scores must not be read as numbers (report.json, benchmarks): withhold them all.
        for name in ("all", "active"):
            out[name] = {"pixels": out[name]["pixels"], "valid": False} if name in out else {"valid": False}


#: The share of the photons half ``A`` gets in :func:`whole_split` (:data:`WHOLE_FRACTIONS` were measured).
WHOLE_FRACTION = 0.8


def whole_split(frames: np.ndarray, denoise, *, seed: int = 0, fraction: float = WHOLE_FRACTION,
                counts: Counts | None = None, region=None, correlation_limit: float = CORRELATION_LIMIT,
                statistics: FrameStatistics | None = None, scratch: Scratch | None = None) -> dict:
    """The signal removed by a denoiser from the whole movie: an unbalanced split, ``A`` with most photons.

    The balanced split (:func:`photon_split`) measures the denoiser on half the photons; on short or dim movies a
    denoiser keeps fewer components there and removes more (a 20-frame movie: about twice the whole movie's
    share).  Here ``A`` gets ``fraction`` of the movie (``p``), is denoised, and is scored against ``B`` (the
    rest) as :func:`photon_split` does with ``fraction``.  The split is Gaussian fission in the movie's own units
    (:func:`prepare_counts` with ``own_units``; ``counts``, if given, must be such): photon counts would give
    ``A`` the counts' dither (a sixth of a photon^2 of noise per value, 14 % of a 1.2-photon pixel's) and their
    per-pixel offsets, which replace ``A``'s mean image by each pixel's noise variance, the brightness that a
    short movie's noise pooling (:func:`pmdcompress.preprocess.pooled_noise`) reads: on a 20-frame sima-like
    simulation ``A`` at ``p`` 0.9 kept 67 components from counts against 88 in the movie's units (the whole
    movie 103).  ``B`` holds ``1 - p`` of the photons, so every estimate is noisier than the balanced split's
    (its interval says by how much, and :func:`headline` calls it not resolved where it is too wide).
    ``statistics``: those of ``frames`` that the balanced split measured (:class:`FrameStatistics`: its
    shared-signal share and pixel moments are those of the raw frames, the same for both splits).
    ``scratch``: as :func:`photon_split`'s.
    """
    made_counts = counts is None
    if counts is None:
        counts = prepare_counts(frames, seed=seed, correlation_limit=correlation_limit, own_units=True,
                                statistics=statistics, scratch=scratch)
    try:
        out = photon_split(frames, denoise, seed=seed, counts=counts, region=region, fraction=fraction,
                           scratch=scratch)
    finally:
        if scratch is not None and made_counts and counts.counts is not frames:
            scratch.remove(counts.counts)
    out["fraction"] = float(fraction)
    return out


def _to_whole_level(scores: dict, fraction: float) -> None:
    """An unbalanced split's set (:func:`photon_split`) at the whole movie's photon level, in place.

    The estimates are of ``dA`` against ``A``'s signal ``p s`` (``p`` the fraction): ``dA / p`` against ``s`` has
    ``1 / p^2`` of that error, and the whole movie's raw error is ``1 / p`` of ``A``'s; their ratio, the error
    reduction, is ``p`` times ``A``'s.  Where ``A``'s error is not positive the error reduction is not resolved,
    while the signal removed, which needs no pixel's noise variance (:func:`shared_signal_removed`), only halves
    that share no noise (:func:`photon_split`'s check), is kept (``signal_removed_valid``): ``B``'s fifth of the
    photons, scaled 4x, makes the error estimate 4x as sensitive to the noise model as the balanced split's (on
    optinist_mouse2p's most active pixels it read -0.32 of the raw error, where a signal's leak into each pixel's
    noise variance weighs most).
    """
    p = float(fraction)
    scores["signal_removed_valid"] = True
    for key, factor in (("mse", p**-2), ("mse_se", p**-2), ("mse_raw", 1.0 / p), ("error_reduction", p),
                        ("error_reduction_low", p), ("error_reduction_high", p)):
        if _real(scores.get(key)):
            scores[key] = scores[key] * factor


def _real(v) -> bool:
    """Whether ``v`` is a finite number (not None, NaN, inf or a bool)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def invalid_reason(scores: dict) -> str:
    """Why a set's error estimate (:func:`score`'s ``all``) gives no error reduction, from its own numbers.

    A denoised error within 2 jackknife standard errors (``mse_se``) of 0 or
    below is one the split cannot resolve (a widefield movie whose error falls
    1600x); one further below 0, or a raw error that is not positive, means the
    halves' noise is not the shot noise assumed (shared, or mis-scaled).
    """
    mse, raw, se = scores.get("mse"), scores.get("mse_raw"), scores.get("mse_se")
    if all(map(_real, (mse, raw, se))) and raw > 0 and mse > -2 * se:
        return (f"the denoised error is below what the split resolves ({mse:.3g} +- {2 * se:.2g} against a raw "
                f"error of {raw:.3g}: error reduction at least {raw / (mse + 2 * se):.0f}x), so no number is "
                "reported")
    return ("the error estimate is not positive beyond its uncertainty: the halves' noise is not the shot noise "
            "assumed (shared or mis-scaled), so no number is reported")


#: An error reduction is "resolved" where its interval's high / low is at most this (an open interval is not).
RESOLVED_RATIO = 10.0
#: An unresolved error reduction whose interval spans more than this ratio prints without it.
UNINFORMATIVE_SPAN = 1000.0
#: A share of signal removed is "resolved" where its interval is at most this wide (and not all below 0).
RESOLVED_WIDTH = 0.30


def headline(scores: dict, name: str) -> dict:
    """One headline number of a set (``all``/``active``) with its interval and whether it is resolved.

    ``name`` is ``error_reduction`` or ``signal_removed``.  Returns ``value``,
    ``interval`` ([low, high]; high None where open) and ``resolved``: an
    error reduction whose interval spans more than :data:`RESOLVED_RATIO`
    (55-4029x) or is open above is not resolved; a share of signal removed is
    not where its set's error estimate is invalid or it has no signal variance,
    where its interval is wider than :data:`RESOLVED_WIDTH` or lies below 0
    (:func:`headline_text` prints a resolved share below 0 as 0).
    """
    value, low, high = scores.get(name), scores.get(f"{name}_low"), scores.get(f"{name}_high")
    valid = bool(scores.get("valid")) and _real(value) and _real(low)
    if name == "signal_removed":
        # An unbalanced split's error may be too small to resolve where its signal removed is not (_to_whole_level).
        valid = (bool(scores.get("signal_removed_valid", scores.get("valid"))) and _real(value) and _real(low)
                 and _real(scores.get("signal_variance")) and scores["signal_variance"] > 0)
    if not valid:  # an invalid estimate's interval is no more a measurement than its value
        return {"value": value, "interval": [None, None], "resolved": False}
    if name == "error_reduction":
        resolved = _real(high) and high <= RESOLVED_RATIO * low
    else:
        resolved = _real(high) and high >= 0 and high - low <= RESOLVED_WIDTH
    return {"value": value, "interval": [low, high], "resolved": bool(resolved)}


def headline_text(entry: dict, name: str) -> str:
    """A :func:`headline` as printed: ``85.0x (46-156x)``, ``2.9% (0.7 to 5.1%)``, ``at least 55x (55-4029x)``.

    An error reduction too wide to resolve prints its interval's low end as a
    bound where that is above 1 (``not resolved`` otherwise, without an interval
    spanning more than :data:`UNINFORMATIVE_SPAN`, such as ``0.0-9476095x``).

    A resolved share of signal removed below 0 prints as 0, its interval's low
    end too: a negative share is not a measurement, the interval is.
    """
    low, high = entry.get("interval") or [None, None]
    resolved = bool(entry.get("resolved"))
    value = entry.get("value")
    if name == "error_reduction":
        def fmt(v):
            return f"{v:.0f}" if v >= 10 else f"{v:.1f}"

        span = f"{fmt(low)}-{fmt(high)}x" if _real(high) else f"above {fmt(low)}x" if _real(low) else None
        if resolved:
            return f"{value:.1f}x ({span})"
        if _real(low) and low > 1:  # too wide to name a value, but its low end bounds it: the error falls that much
            return f"at least {fmt(low)}x" if not _real(high) else f"at least {fmt(low)}x ({span})"
        if _real(low) and _real(high) and high > UNINFORMATIVE_SPAN * max(low, 1e-12):
            span = None  # "0.0-9476095x" tells a reader nothing the words do not
    else:
        if resolved:  # a negative share is not a measurement, the interval is
            value, low = max(value, 0.0), max(low, 0.0)
        span = f"{100 * low:.1f} to {100 * high:.1f}%" if _real(low) and _real(high) else None
        if resolved:
            return f"{100 * value:.1f}% ({span})"
    return f"not resolved ({span})" if span else "not resolved"


# --------------------------------------------------------------------------- the report's section

#: Side of the central region scored by photon splitting in ``pmd report`` (at least one patch).
REPORT_CROP = 128
#: Most frames of the crop (the first ones).
REPORT_FRAMES = 2000
#: Most bytes of raw crop frames held for the split (2000 frames of the default 192 x 192 crop, in float32).
REPORT_BYTES = 320 * 2**20


def report_margin(patch_shape) -> tuple[int, int]:
    """Pixels denoised around the scored region on each side, per axis: one patch.

    A crop denoised as a movie of its own cuts the cells on its border and tiles
    its patches differently from the user's whole movie.  On neurofinder_dev
    (central 128 x 128 region, 6 seeds) the bare crop read an error reduction of
    112x (all pixels) where the whole movie, scored on the same pixels, gives
    124x; its active pixels within 8 pixels of the edge read 49x against 64x.
    A margin of half a patch gave 129x, one patch 122x (and 59x against 62x on
    the most active pixels).
    """
    return tuple(int(p) for p in patch_shape)


#: The whole frame is denoised and scored where it holds at most this many times the pixels of the central
#: region and its margin: a central region need not hold the movie's typical cells (neurofinder_dev's holds
#: dimmer ones: 5.9 % of the active pixels' signal removed there against 2.2 % over the whole movie).
WHOLE_FRAME_COST = 2.0


def report_crops(frame_shape, patch_shape, side: int = REPORT_CROP):
    """The scored region (central, ``side`` a side, at least one patch) and the denoised crop around it.

    Where the whole frame costs at most :data:`WHOLE_FRAME_COST` times the
    crop's pixels, both are the whole frame.

    The crop is the region grown by :func:`report_margin` on each side, clipped
    to the movie: where the movie ends within the margin, the region's edge is
    the movie's own edge, which the user's movie has too.  Returns
    ``(scored, crop)``, each ``((y0, y1), (x0, x1))`` in movie pixels.
    """
    scored = central_crop(frame_shape, patch_shape, side)
    margin = report_margin(patch_shape)
    crop = tuple((max(0, a - m), min(n, b + m)) for (a, b), m, n in zip(scored, margin, frame_shape, strict=True))
    crop_pixels = (crop[0][1] - crop[0][0]) * (crop[1][1] - crop[1][0])
    if frame_shape[0] * frame_shape[1] <= WHOLE_FRAME_COST * crop_pixels:
        whole = ((0, int(frame_shape[0])), (0, int(frame_shape[1])))
        return whole, whole
    return scored, crop


def report_section(movie, store, denoise, *, seed: int = 0, whole: bool = False, scratch=None) -> dict:
    """Photon splitting of a denoiser on a central region of the raw movie (``report.json``'s section).

    The crop (:func:`report_crops`: the region of :data:`REPORT_CROP` pixels a
    side and a margin around it; the first :data:`REPORT_FRAMES` frames) is
    split, its half ``A`` denoised by ``denoise`` (the pipeline passes a
    compression with the store's parameters), and the central region only is
    scored against ``B``.  Returns the :func:`photon_split` dict plus ``crop``
    (the denoised crop, ``[y0, y1, x0, x1]`` in movie pixels), ``scored`` (the
    scored region, the same way), ``margin`` (pixels denoised beyond the scored
    region, ``[top, bottom, left, right]``: less than :func:`report_margin`
    where the movie ends) and ``frames``.  With ``whole``, ``whole`` holds the same for
    :func:`whole_split` (``A`` with :data:`WHOLE_FRACTION` of the photons, same crop and frames: one more
    compression of a movie of the crop's size): ``report.json``'s ``photon_split_whole``.

    ``scratch`` (a folder): the crop's frames, counts and halves are written there and read back a chunk at a
    time (:mod:`.frame_files`), so that the memory held does not grow with the crop's frames (the numbers are
    the same as in memory, the default); the files are deleted as each is done with (the caller removes the
    folder).
    """
    n_frames, h, w = store.shape
    scored, crop = report_crops((h, w), store.patch_shape, REPORT_CROP)
    (y0, y1), (x0, x1) = crop
    (sy0, sy1), (sx0, sx1) = scored
    # Raw values of up to 16 bits (and float32 movies) are exact in float32: half the memory of float64.
    dtype = np.dtype(getattr(movie, "dtype", np.float64))
    exact32 = (dtype.kind in "ub" and dtype.itemsize <= 2) or (dtype.kind == "f" and dtype.itemsize <= 4)
    hold = np.float32 if exact32 else np.float64
    n = int(min(n_frames, REPORT_FRAMES, REPORT_BYTES // max(np.dtype(hold).itemsize * (y1 - y0) * (x1 - x0), 1)))
    section = {"crop": [y0, y1, x0, x1], "scored": [sy0, sy1, sx0, sx1],
               "margin": [sy0 - y0, y1 - sy1, sx0 - x0, x1 - sx1], "frames": n}

    def refused(reason):
        out = dict(section, ok=False, reason=reason)
        return dict(out, whole=dict(out)) if whole else out

    if n < max(MIN_FRAMES, 16):
        return refused(f"{n} frames: too few to split and compress")
    scratch = Scratch(scratch) if scratch is not None else None
    frames = empty(scratch, (n, y1 - y0, x1 - x0), hold, "raw")
    try:
        finite = True
        # A movie's view (where it has one) reads a memory-mapped file with pread, not through the mapping: the
        # pages read would otherwise stay in the resident set (168 MB for the crop of a 256 x 256 movie).
        read = getattr(movie, "view", movie.read)
        for t0 in range(0, n, 256):
            t1 = min(n, t0 + 256)
            block = np.asarray(read(t0, t1)[:, y0:y1, x0:x1]).astype(hold)  # a copy: a view's buffer is reused
            finite = finite and bool(np.all(np.isfinite(block)))
            frames[t0:t1] = block
        if not finite:
            return refused("the crop holds non-finite values")
        region = ((sy0 - y0, sy1 - y0), (sx0 - x0, sx1 - x0))
        statistics = FrameStatistics(frames)  # measured once for both splits
        result = dict(section, **photon_split(frames, denoise, seed=seed, region=region, statistics=statistics,
                                              scratch=scratch))
        if whole:
            result["whole"] = dict(section, **whole_split(frames, denoise, seed=seed, region=region,
                                                          statistics=statistics, scratch=scratch))
        return result
    finally:
        if scratch is not None:
            scratch.remove(frames)


def report_metrics(section: dict) -> dict:
    """The section's headline numbers as report metrics (``metric`` records of docs/snr.md#photon-splitting)."""
    from .metrics import metric

    out = {"photon_split_ok": metric(bool(section.get("ok")), "photon-splitting",
                                     section.get("reason") or "valid: independent halves, positive error")}
    if not section.get("ok"):
        return out
    c = section["counts"]
    out["photon_split_error_reduction"] = metric(
        section["all"]["error_reduction"], "photon-splitting",
        "raw error / denoised error of the split half A, scored on the other half B (the crop's central region, "
        "all pixels)")
    out["photon_split_error_reduction_active"] = metric(
        section["active"]["error_reduction"], "photon-splitting",
        "the same on the 10 % of pixels with the most signal variance")
    out["photon_split_signal_removed"] = metric(
        section["all"]["signal_removed"], "photon-splitting",
        "share of the signal each pixel shares with the pixels above and below (B's) that the residual "
        "A - dA holds (all pixels)")
    out["photon_split_signal_removed_active"] = metric(
        section["active"]["signal_removed"], "photon-splitting", "the same on the most active 10 % of pixels")
    for key, which, name in (("error_reduction", "all", "error_reduction"),
                             ("error_reduction_active", "active", "error_reduction"),
                             ("signal_removed", "all", "signal_removed"),
                             ("signal_removed_active", "active", "signal_removed")):
        head = headline(section[which], name)
        out[f"photon_split_{key}_interval"] = metric(
            head["interval"], "photon-splitting", f"photon_split_{key}'s interval (+- 2 standard errors; high "
            "null: open above)")
        out[f"photon_split_{key}_resolved"] = metric(
            bool(head["resolved"]), "photon-splitting",
            f"photon_split_{key} is a measurement: valid, its interval narrow enough (error reduction: high/low <= "
            f"{RESOLVED_RATIO:g}; signal removed: at most {RESOLVED_WIDTH:.0%} wide and not below 0)")
    out["photon_split_noise_correlation"] = metric(
        c["neighbour_correlation"], "photon-splitting",
        f"largest neighbour correlation of the counts' noise ({c['split']} split)")
    return out


def whole_metrics(section: dict) -> dict:
    """The whole-movie split's headline numbers (``photon_split_whole_*``; :func:`whole_split`, ``report.json``'s
    ``photon_split_whole``) as report metrics: each number with its interval and whether it is resolved."""
    from .metrics import metric

    definition = "photon-splitting-whole"
    out = {"photon_split_whole_ok": metric(bool(section.get("ok")), definition,
                                           section.get("reason") or "valid: parts that share no noise")}
    if not section.get("ok"):
        return out
    p = section["fraction"]
    why = section.get("error_reduction_reason")
    out["photon_split_whole_fraction"] = metric(
        p, definition, "share of the movie's photons in the denoised part A (B, the rest, scores it)")
    what = {"signal_removed": (f"share of the signal each pixel shares with the pixels above and below that the "
                               f"residual of A ({p:.0%} of the photons) holds, for the whole movie's figure (an "
                               "upper bound: the whole movie's store removes at most as much, in expectation)"),
            "error_reduction": ("raw error / denoised error at the whole movie's photon level (dA / p against the "
                                "movie's signal and noise), scored on B" + (f"; none here: {why}" if why else ""))}
    for name, text in what.items():
        for which, suffix, where in (("all", "", "all pixels"), ("active", "_active", "most active 10 %")):
            key = f"photon_split_whole_{name}{suffix}"
            head = headline(section[which], name)
            out[key] = metric(head["value"], definition, f"{text} ({where})")
            out[f"{key}_interval"] = metric(head["interval"], definition,
                                            f"{key}'s interval (+- 2 standard errors; high null: open above)")
            out[f"{key}_resolved"] = metric(bool(head["resolved"]), definition,
                                            f"{key} is a measurement (as photon_split_*_resolved); B holds "
                                            f"{1 - p:.0%} of the photons, so its interval is wider")
    return out
