"""Streaming metrics of a denoised movie against its raw movie.

Every number is defined in ``docs/snr.md``; the anchor of its definition is
recorded beside it in ``report.json``.  One pass over the movie, chunk by chunk
of frames, gathers everything:

* on every frame: per-pixel sums of the raw movie ``Y``, the denoised movie
  ``D`` and the residual ``R = Y - D`` (means, variances, lag-1 products), and
  the *neighbour-frame validation* sums (``D(t)`` and ``Y(t)`` against the
  average of frames ``t - 1`` and ``t + 1``);
* on a few chunks spread over the movie: Welch spectra (noise std in the upper
  half band, power in the lower band, pixel-averaged spectra), 8-neighbour
  products (local correlation images), and frame pairs for the photon-transfer
  fit;
* with ground truth: squared errors against the clean movie;
* with held-out fits: the even-frame and odd-frame fits of a crop scored on the
  other frames.

The chunks are processed by threads and their partial sums are added in chunk
order, so the result does not depend on the number of threads.  Nothing holds
more than a few chunks of frames.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.fft

from .._numba import jit
from ..errors import InputError
from ..parallel import blas_threads, default_workers
from ..preprocess import WELCH_SEGMENT, periodic_hann
from ..progress import null_progress

log = logging.getLogger("pmdcompress")

#: Pixels (frames x pixels per frame) of one chunk: 16 M float32 = 64 MB.
CHUNK_PIXELS = 16 * 2**20
#: Frames used for the 8-neighbour correlation images (whole chunks, spread over the movie).
CORRELATION_FRAMES = 1024
#: Frames used for the Welch spectra (noise std of raw, denoised and residual).
SPECTRUM_FRAMES = 1024
#: Frame pairs per chunk used by the photon-transfer fit.
PAIRS_PER_CHUNK = 32
#: Side of the crop fitted on even and odd frames for the held-out validation.
HELDOUT_CROP = 64
#: Most frames of the crop used by the held-out fits.
HELDOUT_FRAMES = 1500
#: Fraction of pixels called "most active" (highest raw SNR).
ACTIVE_FRACTION = 0.01
#: Residual std / raw noise std outside [LOW, HIGH] is flagged.
RESIDUAL_LOW, RESIDUAL_HIGH = 0.95, 1.10
#: Residual local correlation above the noise's by more than this flags removed signal.
CORRELATION_FLAG = 0.1
#: Gaussian width (pixels) of the smoothing of per-pixel error estimates.
SMOOTH_SIGMA = 2.0

# Neighbour directions of the correlation kernel: right, down, down-right, down-left.
DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))
# Signals of the neighbour kernel.
RAW, DENOISED, RESIDUAL, DIFFERENCE = range(4)
SIGNALS = ("raw", "denoised", "residual", "difference")


# --------------------------------------------------------------------------- kernels


#: Pixels handled together by the neighbour kernel (its accumulators stay in cache).
_BLOCK = 2048


@jit
def _moments_kernel(y, d, mu, first, out):
    # y: (m, P) raw frames of any dtype, rows first .. first + n - 1 match d's rows
    #    (one halo frame on each side when the movie has it);
    # d: (n, P) float32 denoised frames; mu: (P,) float32 shift (the store's mean);
    # out: (10, P) float64, accumulated:
    #   0 sum x, 1 sum x^2, 2 sum z, 3 sum z^2, 4 sum r, 5 sum r^2, 6 sum r_t r_{t-1} (within the block),
    #   7 sum (z - a)^2, 8 sum (x - a)^2, where x = y - mu, z = d - mu, r = x - z and
    #   a = (x_{t-1} + x_{t+1}) / 2 (only for frames with both neighbours in y),
    #   9 sum (z_t - (z_{t-1} + z_{t+1}) / 2)^2 for 1 <= t <= n - 2 (curvature of d, within the block).
    # Returns the number of frames with both neighbours.
    n, n_p = d.shape
    m = y.shape[0]
    o0, o1, o2, o3, o4, o5, o6, o7, o8 = out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7], out[8]
    o9 = out[9]
    prev = np.zeros(n_p, np.float64)
    count = 0
    for t in range(n):
        k = first + t
        yt = y[k]
        dt = d[t]
        for p in range(n_p):
            c = np.float64(mu[p])
            x = np.float64(yt[p]) - c
            z = np.float64(dt[p]) - c
            r = x - z
            o0[p] += x
            o1[p] += x * x
            o2[p] += z
            o3[p] += z * z
            o4[p] += r
            o5[p] += r * r
            o6[p] += r * prev[p]
            prev[p] = r
        if k >= 1 and k + 1 < m:
            count += 1
            ya = y[k - 1]
            yb = y[k + 1]
            for p in range(n_p):
                c = np.float64(mu[p])
                x = np.float64(yt[p]) - c
                z = np.float64(dt[p]) - c
                a = 0.5 * (np.float64(ya[p]) + np.float64(yb[p])) - c
                o7[p] += (z - a) * (z - a)
                o8[p] += (x - a) * (x - a)
        if 1 <= t and t + 1 < n:
            da = d[t - 1]
            db = d[t + 1]
            for p in range(n_p):
                c = np.float64(dt[p]) - 0.5 * (np.float64(da[p]) + np.float64(db[p]))
                o9[p] += c * c
    return count


@jit
def _neighbour_kernel(y, d, mu, out):
    # y: (n, H, W) raw frames (any dtype); d: (n, H, W) float32; mu: (H, W) float32;
    # out: (4, 6, H, W) float64, accumulated, for the signals
    #   0 raw x = y - mu, 1 denoised z = d - mu, 2 residual r = x - z, 3 difference y_{t+1} - y_t (t < n - 1)
    # and the statistics 0 sum, 1 sum of squares, 2..5 sum of products with the neighbour
    # right (i, j+1), down (i+1, j), down-right (i+1, j+1), down-left (i+1, j-1).
    # Rows are processed in bands so that the accumulators of a band stay in cache.
    n, h, w = d.shape
    band = max(1, _BLOCK // max(w, 1))
    s = np.empty((4, band + 1, w), np.float64)
    acc = np.empty((4, 6, band, w), np.float64)
    for i0 in range(0, h, band):
        i1 = min(i0 + band, h)
        rows = min(i1 + 1, h) - i0  # the band and the row below it
        acc[:] = 0.0
        for t in range(n):
            n_sig = 4 if t + 1 < n else 3
            for i in range(rows):
                yr = y[t, i0 + i]
                dr = d[t, i0 + i]
                mr = mu[i0 + i]
                sx = s[0, i]
                sz = s[1, i]
                sr = s[2, i]
                for j in range(w):
                    c = np.float64(mr[j])
                    x = np.float64(yr[j]) - c
                    z = np.float64(dr[j]) - c
                    sx[j] = x
                    sz[j] = z
                    sr[j] = x - z
                if n_sig == 4:
                    yn = y[t + 1, i0 + i]
                    sd = s[3, i]
                    for j in range(w):
                        sd[j] = np.float64(yn[j]) - np.float64(yr[j])
            for g in range(n_sig):
                for i in range(i1 - i0):
                    v = s[g, i]
                    a0 = acc[g, 0, i]
                    a1 = acc[g, 1, i]
                    a2 = acc[g, 2, i]
                    for j in range(w):
                        a0[j] += v[j]
                        a1[j] += v[j] * v[j]
                    for j in range(w - 1):
                        a2[j] += v[j] * v[j + 1]
                    if i + 1 < rows:
                        u = s[g, i + 1]
                        a3 = acc[g, 3, i]
                        a4 = acc[g, 4, i]
                        a5 = acc[g, 5, i]
                        for j in range(w):
                            a3[j] += v[j] * u[j]
                        for j in range(w - 1):
                            a4[j] += v[j] * u[j + 1]
                        for j in range(1, w):
                            a5[j] += v[j] * u[j - 1]
        out[:, :, i0:i1, :] += acc[:, :, : i1 - i0, :]


@jit
def _window_kernel(y, d, window, s0, yw, rw):
    # yw[t, p] = w[t] y[s0 + t, p], rw[t, p] = w[t] (y[s0 + t, p] - d[s0 + t, p]) for one Welch segment
    # (float32 outputs); returns the per-pixel sum of rw^2 (float64).
    seg, n_p = yw.shape
    out = np.zeros(n_p, np.float64)
    for t in range(seg):
        w = window[t]
        yt = y[s0 + t]
        dt = d[s0 + t]
        a = yw[t]
        b = rw[t]
        for p in range(n_p):
            v = np.float32(yt[p])
            a[p] = w * v
            r = w * (v - dt[p])
            b[p] = r
            out[p] += np.float64(r) * np.float64(r)
    return out


@jit
def _band_kernel(spec_y, spec_r, lo, hi, weights, high, low, pooled):
    # spec_y, spec_r: (bins, P) complex spectra of the windowed raw and residual segments
    # (the denoised spectrum is their difference).  Accumulates, for g = raw, denoised, residual:
    # high[g, p] += sum_{lo <= k < hi} |X_k|^2, low[g, p] += sum_{2 <= k < lo} |X_k|^2,
    # pooled[g, k] += sum_p weights[p] |X_k(p)|^2 for k < hi.
    n_p = spec_y.shape[1]
    for k in range(hi):
        band = 1 if k >= lo else (0 if k >= 2 else -1)
        py = 0.0
        pd = 0.0
        pr = 0.0
        for p in range(n_p):
            a = spec_y[k, p]
            b = spec_r[k, p]
            yr, yi = np.float64(a.real), np.float64(a.imag)
            rr, ri = np.float64(b.real), np.float64(b.imag)
            dr, di = yr - rr, yi - ri
            vy = yr * yr + yi * yi
            vd = dr * dr + di * di
            vr = rr * rr + ri * ri
            w = np.float64(weights[p])
            py += w * vy
            pd += w * vd
            pr += w * vr
            if band == 1:
                high[0, p] += vy
                high[1, p] += vd
                high[2, p] += vr
            elif band == 0:
                low[0, p] += vy
                low[1, p] += vd
                low[2, p] += vr
        pooled[0, k] += py
        pooled[1, k] += pd
        pooled[2, k] += pr


def moments(y, d, mu, first: int = 0, out=None):
    """Per-pixel sums of one block (see :func:`_moments_kernel`).

    Parameters
    ----------
    y : ndarray, shape (m, P)
        Raw frames (any numeric dtype); rows ``first .. first + n - 1`` are the
        frames of ``d``, the others are halo frames for the neighbour-frame sums.
    d : ndarray of float32, shape (n, P)
        Denoised frames.
    mu : ndarray of float32, shape (P,)
        Per-pixel shift subtracted before summing (the store's mean).
    first : int
        Row of ``y`` holding the first frame of ``d``.
    out : ndarray of float64, shape (10, P), optional
        Accumulator (zeros if not given).

    Returns
    -------
    out : ndarray of float64, shape (10, P)
    count : int
        Frames whose two neighbours are in ``y``.
    """
    if out is None:
        out = np.zeros((10, d.shape[1]), np.float64)
    count = _moments_kernel(y, d, mu, int(first), out)
    return out, int(count)


def neighbour_sums(y, d, mu, out=None):
    """8-neighbour product sums of one block (see :func:`_neighbour_kernel`).

    Parameters
    ----------
    y : ndarray, shape (n, H, W)
    d : ndarray of float32, shape (n, H, W)
    mu : ndarray of float32, shape (H, W)
    out : ndarray of float64, shape (4, 6, H, W), optional

    Returns
    -------
    ndarray of float64, shape (4, 6, H, W)
    """
    if out is None:
        out = np.zeros((4, 6, *d.shape[1:]), np.float64)
    _neighbour_kernel(y, d, mu, out)
    return out


# --------------------------------------------------------------------------- small pieces


def local_correlation(sums: np.ndarray, n: int) -> np.ndarray:
    """Mean Pearson correlation of each pixel with its 8 neighbours.

    Parameters
    ----------
    sums : ndarray, shape (6, H, W)
        Sum, sum of squares and the four neighbour product sums (right, down,
        down-right, down-left) of one signal over ``n`` frames.
    n : int

    Returns
    -------
    ndarray of float64, shape (H, W)
        NaN where a pixel and all its neighbours are constant.
    """
    s, ss = sums[0], sums[1]
    h, w = s.shape
    var = np.maximum(ss - s * s / max(n, 1), 0.0)
    total = np.zeros((h, w))
    count = np.zeros((h, w))
    for k, (dy, dx) in enumerate(DIRECTIONS):
        # pair (i, j) with (i + dy, j + dx): region of valid i, j
        i0, i1 = 0, h - dy
        j0, j1 = max(0, -dx), w - max(0, dx)
        a = (slice(i0, i1), slice(j0, j1))
        b = (slice(i0 + dy, i1 + dy), slice(j0 + dx, j1 + dx))
        cov = sums[2 + k][a] - s[a] * s[b] / max(n, 1)
        den = np.sqrt(var[a] * var[b])
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(den > 0, cov / np.where(den > 0, den, 1.0), np.nan)
        ok = np.isfinite(c)
        c = np.where(ok, c, 0.0)
        total[a] += c
        total[b] += c
        count[a] += ok
        count[b] += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def neighbour_correlations(sums: np.ndarray, n: int) -> tuple[float, ...]:
    """Global correlation along each direction (right, down, down-right, down-left), pooled over pixels."""
    s, ss = sums[0], sums[1]
    h, w = s.shape
    var = np.maximum(ss - s * s / max(n, 1), 0.0)
    out = []
    for k, (dy, dx) in enumerate(DIRECTIONS):
        a = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
        b = (slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
        cov = sums[2 + k][a] - s[a] * s[b] / max(n, 1)
        den = np.sqrt(var[a] * var[b])
        ok = den > 0
        out.append(float(np.mean(cov[ok] / den[ok])) if ok.any() else 0.0)
    return tuple(out)


def filter_fractions(store, *, tol: float = 1e-4) -> np.ndarray:
    """Fraction of each temporal factor's white noise that its temporal filter keeps, shape (K,).

    1 for unfiltered factors (``parameters.temporal_filter`` false or absent).  For
    trend-filtered factors, the degrees of freedom of trend filtering (Tibshirani and
    Taylor 2011): the number of knots (frames where the second difference is not
    zero, relative to ``tol`` times the factor's peak) plus 2, over the number of frames.
    """
    k, n_frames = store.temporal.shape
    if not store.metadata.parameters.get("temporal_filter") or k == 0 or n_frames < 8:
        return np.ones(k)
    out = np.empty(k)
    step = max(1, min(k, 2**22 // max(n_frames, 1)))
    for k0 in range(0, k, step):
        v = np.asarray(store.temporal[k0 : k0 + step], np.float64)
        d2 = np.abs(np.diff(v, 2, axis=1))
        scale = np.abs(v).max(axis=1, keepdims=True)
        knots = (d2 > tol * np.where(scale > 0, scale, 1.0)).sum(axis=1)
        out[k0 : k0 + step] = np.minimum((knots + 2) / n_frames, 1.0)
    return out


def hat_diagonal(store, correlation=(0.0, 0.0, 0.0, 0.0), fractions=None) -> np.ndarray:
    """Per-pixel degrees of freedom of the reconstruction, from the factors.

    ``df[p] = sum_q W_q(p) (|U_q(p)|^2 + sum_d rho_d (U_q(p).U_q(p+d) + U_q(p).U_q(p-d)))``: the
    derivative of the denoised pixel with respect to the raw pixel (the leverage
    of the patch projections, weighted by the overlap weights), plus the same
    for neighbours whose noise is correlated with this pixel's (``rho_d`` along
    the 4 directions of :data:`DIRECTIONS`).  The spatial components are taken
    as fixed.

    Parameters
    ----------
    store : PMDStore
    correlation : 4 floats
        Noise correlation between neighbours along right, down, down-right, down-left.
    fractions : ndarray, shape (K,), optional
        Fraction of each component's noise kept by its temporal filter
        (:func:`filter_fractions`); 1 when not given.

    Returns
    -------
    ndarray of float64, shape (Y, X)
    """
    _, height, width = store.shape
    h, w = store.patch_shape
    out = np.zeros((height, width))
    for p, (y0, x0) in enumerate(store.patch_origins):
        k0, k1 = store.component_offsets[p], store.component_offsets[p + 1]
        if k1 == k0:
            continue
        u = store.spatial[:, k0:k1].astype(np.float64).reshape(h, w, k1 - k0)
        g = np.ones(k1 - k0) if fractions is None else np.asarray(fractions[k0:k1], np.float64)
        ug = u * g
        term = np.einsum("ijk,ijk->ij", ug, u)
        for rho, (dy, dx) in zip(correlation, DIRECTIONS, strict=True):
            if rho == 0:
                continue
            a = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
            b = (slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
            c = rho * np.einsum("ijk,ijk->ij", ug[a], u[b])
            term[a] += c
            term[b] += c
        weight = store.weights_y[p][:, None].astype(np.float64) * store.weights_x[p][None, :]
        out[y0 : y0 + h, x0 : x0 + w] += weight * term
    return out


def rank_map(store) -> np.ndarray:
    """Overlap-weighted number of components at each pixel, ``sum_q W_q(p) rank_q``."""
    _, height, width = store.shape
    h, w = store.patch_shape
    out = np.zeros((height, width))
    for p, (y0, x0) in enumerate(store.patch_origins):
        weight = store.weights_y[p][:, None].astype(np.float64) * store.weights_x[p][None, :]
        out[y0 : y0 + h, x0 : x0 + w] += weight * store.patch_ranks[p]
    return out


def smooth(image: np.ndarray, sigma: float = SMOOTH_SIGMA) -> np.ndarray:
    """Gaussian smoothing that ignores NaN (normalised convolution)."""
    from scipy.ndimage import gaussian_filter

    image = np.asarray(image, np.float64)
    ok = np.isfinite(image)
    num = gaussian_filter(np.where(ok, image, 0.0), sigma, mode="nearest")
    den = gaussian_filter(ok.astype(np.float64), sigma, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-6, num / den, np.nan)


# --------------------------------------------------------------------------- spectra


class Spectra:
    """Welch spectra of raw, denoised and residual pixel time series, chunk by chunk.

    Per pixel: the power in the upper half band (0.25 to 0.5 cycles per frame;
    its square root is the noise std, exactly as
    :class:`pmdcompress.preprocess.NoiseAccumulator`) and in the lower band
    (from bin 2 to 0.25 cycles per frame).  Pooled over pixels: the spectrum of
    each signal in units of the raw noise variance (``weights``), the spectral
    flatness figure.  Also the residual's windowed mean square over the same
    segments, so that the residual std / raw noise ratio compares like with like.

    Parameters
    ----------
    n_pixels : int
    segment : int
        Welch segment length (frames).
    weights : ndarray, shape (n_pixels,)
        ``1 / sigma^2`` used to pool the spectra over pixels.
    """

    def __init__(self, n_pixels: int, segment: int, weights: np.ndarray):
        self.segment = int(segment)
        self.window = periodic_hann(self.segment)
        self.norm = float(np.sum(self.window.astype(np.float64) ** 2))
        self.lo = self.segment // 4 + 1
        self.hi = self.segment // 2 + 1
        self.weights = np.asarray(weights, np.float32)
        self.high = np.zeros((3, n_pixels))
        self.low = np.zeros((3, n_pixels))
        self.pooled = np.zeros((3, self.hi))
        self.n_segments = 0
        self.residual_sq = np.zeros(n_pixels)  # sum over segments of sum_t (w_t r_t)^2
        self.n_frames = 0

    @property
    def frequencies(self) -> np.ndarray:
        """Cycles per frame of each bin of :attr:`pooled`."""
        return np.arange(self.hi) / self.segment

    def add(self, y: np.ndarray, d: np.ndarray) -> None:
        """Add a block of consecutive frames: raw ``y`` (n, P) and denoised ``d`` (n, P) float32."""
        n = y.shape[0]
        seg = self.segment
        if n < seg:
            return
        high = np.zeros_like(self.high)
        low = np.zeros_like(self.low)
        pooled = np.zeros_like(self.pooled)
        residual_sq = np.zeros_like(self.residual_sq)
        d = np.ascontiguousarray(d, np.float32)
        for s0 in range(0, n - seg + 1, max(seg // 2, 1)):
            yw = np.empty((seg, y.shape[1]), np.float32)
            rw = np.empty_like(yw)
            residual_sq += _window_kernel(y, d, self.window, s0, yw, rw)
            spec_y = scipy.fft.rfft(yw, axis=0, workers=1, overwrite_x=True)
            spec_r = scipy.fft.rfft(rw, axis=0, workers=1, overwrite_x=True)
            _band_kernel(spec_y, spec_r, self.lo, self.hi, self.weights, high, low, pooled)
            self.n_segments += 1
        self.high += high / self.norm
        self.low += low / self.norm
        self.pooled += pooled / self.norm
        self.residual_sq += residual_sq / self.norm
        self.n_frames += n

    def merge(self, other: Spectra) -> None:
        self.high += other.high
        self.low += other.low
        self.pooled += other.pooled
        self.n_segments += other.n_segments
        self.residual_sq += other.residual_sq
        self.n_frames += other.n_frames

    def residual_std(self) -> np.ndarray:
        """(P,) root mean square of the residual, with the same window weights as the noise estimate.

        All frequencies count (slow removed signal too), but the frames are weighted
        exactly like the noise estimate's, so that estimation noise largely cancels
        in the ratio of the two.
        """
        return np.sqrt(self.residual_sq / max(self.n_segments, 1))

    def noise_std(self) -> np.ndarray:
        """(3, P) noise std of raw, denoised, residual (upper half band, mean average)."""
        count = self.n_segments * (self.hi - self.lo)
        return np.sqrt(self.high / count) if count else np.full_like(self.high, np.nan)

    def band_ratio(self) -> np.ndarray:
        """(3, P) mean power per bin in the lower band over that in the upper half band (1 = white)."""
        n_low, n_high = self.lo - 2, self.hi - self.lo
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.low / max(n_low, 1)) / (self.high / max(n_high, 1))

    def pooled_spectra(self, n_pixels: int) -> np.ndarray:
        """(3, bins) spectra pooled over pixels, in units of the raw noise variance."""
        return self.pooled / max(self.n_segments, 1) / max(n_pixels, 1)


# --------------------------------------------------------------------------- photon transfer


def _integer_range(dtype) -> tuple[int, int] | None:
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        return None
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def photon_pairs(y: np.ndarray, n_pairs: int, lo: int, out=None):
    """Frame-pair sums for the photon-transfer curve from one block of integer frames.

    For ``n_pairs`` consecutive pairs spread over the block, bins by
    ``k = y_t + y_{t+1} - 2 lo`` (twice the pair mean) the count and the sum of
    ``v = (y_t - y_{t+1})^2 / 2``.

    Returns
    -------
    ndarray of float64, shape (2, K)
        Counts and sums of ``v`` for each ``k``.
    """
    n = y.shape[0]
    if out is None:
        raise ValueError("out is required")
    if n < 2:
        return out
    starts = np.unique(np.round(np.linspace(0, n - 2, min(n_pairs, n - 1))).astype(np.int64))
    size = out.shape[1]
    for t in starts:
        a = y[t].astype(np.int32).ravel()
        b = y[t + 1].astype(np.int32).ravel()
        k = a + b - 2 * lo
        diff = (a - b).astype(np.float64)
        out[0] += np.bincount(k, minlength=size)[:size]
        out[1] += np.bincount(k, weights=0.5 * diff * diff, minlength=size)[:size]
    return out


def fit_photon_transfer(sums: np.ndarray, lo: int, *, min_levels: int = 100, n_bins: int = 128) -> dict:
    """Robust line through the binned variance-versus-mean of frame pairs.

    ``var = g (mean - z)``: ``g`` is the camera gain (ADU per detected photon;
    for photomultipliers it includes the excess-noise factor), ``z`` the ADU at
    zero photons (read noise folded in).

    Parameters
    ----------
    sums : ndarray, shape (2, K)
        Output of :func:`photon_pairs`.
    lo : int
        Lowest value of the integer dtype.
    min_levels : int
        Fewest distinct intensity levels (ADU) spanned by usable bins.
    n_bins : int
        Bins of the curve.

    Returns
    -------
    dict
        ``ok`` and ``reason``; when ok: ``gain``, ``offset``, ``levels``, and the
        binned curve ``mean``, ``variance``, ``count``, ``used``.
    """
    count, sum_v = sums
    total = count.sum()
    if total == 0:
        return {"ok": False, "reason": "no frame pairs"}
    k = np.arange(count.size)
    cum = np.cumsum(count) / total
    k_lo = int(np.searchsorted(cum, 0.001))
    k_hi = int(np.searchsorted(cum, 0.999))
    levels = (k_hi - k_lo) / 2
    if levels < min_levels:
        return {"ok": False, "reason": f"the pair means span {levels:.0f} ADU levels, fewer than {min_levels}"}
    edges = np.unique(np.round(np.linspace(k_lo, k_hi + 1, n_bins + 1)).astype(np.int64))
    c = np.add.reduceat(count[k_lo : k_hi + 1], edges[:-1] - k_lo)
    sv = np.add.reduceat(sum_v[k_lo : k_hi + 1], edges[:-1] - k_lo)
    sm = np.add.reduceat((count * k)[k_lo : k_hi + 1], edges[:-1] - k_lo)
    ok = c > max(100, 0.01 * c.mean())
    with np.errstate(invalid="ignore", divide="ignore"):
        m = (sm / c) / 2 + lo
        v = sv / c
    # The darkest 3 % of the range is distorted by clipping and read noise.
    ok &= m > m[ok].min() + 0.03 * (m[ok].max() - m[ok].min()) if ok.any() else ok
    # Shot noise only grows with the mean: past the peak of the variance the detector
    # saturates (clipped values), so those bins are dropped.
    if ok.sum() >= 5:
        idx = np.flatnonzero(ok)
        peak = idx[int(np.argmax(v[idx]))]
        if v[idx[-1]] < 0.8 * v[peak]:
            ok[peak + 1 :] = False
    if ok.sum() < 5:
        return {"ok": False, "reason": "fewer than 5 well-populated intensity bins"}
    x, yv, n = m[ok], v[ok], c[ok]
    weight = n / np.maximum(yv, 1e-12) ** 2  # 1 / var(mean of v) up to a constant
    slope, intercept = _huber_line(x, yv, weight)
    result = {
        "mean": m.tolist(), "variance": v.tolist(), "count": c.tolist(), "used": ok.tolist(),
        "levels": float(levels),
    }
    if not slope > 0:
        return dict(result, ok=False, reason=f"variance does not grow with the mean (slope {slope:.3g})")
    return dict(result, ok=True, reason="", gain=float(slope), offset=float(-intercept / slope))


def _huber_line(x, y, weight, c: float = 1.345, n_iter: int = 50):
    """Weighted Huber regression y = a x + b by iteratively reweighted least squares."""
    w = weight / weight.mean()
    a, b = np.polyfit(x, y, 1, w=np.sqrt(w))
    for _ in range(n_iter):
        res = (y - (a * x + b)) * np.sqrt(w)
        scale = 1.4826 * np.median(np.abs(res - np.median(res))) or 1.0
        u = np.abs(res) / (c * scale)
        h = np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-12))
        a_new, b_new = np.polyfit(x, y, 1, w=np.sqrt(w * h))
        if abs(a_new - a) <= 1e-10 * abs(a) and abs(b_new - b) <= 1e-10 * (abs(b) + 1):
            a, b = a_new, b_new
            break
        a, b = a_new, b_new
    return float(a), float(b)


# --------------------------------------------------------------------------- held-out fits


#: Most bytes of raw crop frames kept in memory for the held-out fits.
HELDOUT_BYTES = 256 * 2**20


def heldout_crop(frame_shape, patch_shape, side: int = HELDOUT_CROP):
    """Central crop of at most ``side`` x ``side`` pixels and half of each side (but at least one patch)."""
    out = []
    for n, p in zip(frame_shape, patch_shape, strict=True):
        size = min(n, max(min(side, -(-n // 2)), p))
        start = (n - size) // 2
        out.append((start, start + size))
    return tuple(out)


def heldout_frames(n_frames: int, crop, itemsize: int) -> int:
    """Frames of the crop kept for the held-out fits: the first :data:`HELDOUT_FRAMES`, within :data:`HELDOUT_BYTES`."""
    (y0, y1), (x0, x1) = crop
    return int(min(n_frames, HELDOUT_FRAMES, HELDOUT_BYTES // max((y1 - y0) * (x1 - x0) * itemsize, 1)))


def heldout_validation(frames: np.ndarray, store, *, workers=None, chunk: int = 256) -> dict | None:
    """Fit the even and the odd frames of a crop, score each fit on the frames it did not see.

    Parameters
    ----------
    frames : ndarray, shape (T, h, w)
        Raw frames of the crop (any numeric dtype).
    store : PMDStore
        Its compression parameters are used for the fits.
    workers : int, optional
    chunk : int
        Frames scored at a time.

    Returns
    -------
    dict or None
        Per-pixel sums ``sq`` (fit against the neighbour average), ``base`` (raw frame
        against it) and their count ``n``; None when the movie is too short.

    Notes
    -----
    For frame t with both neighbours, ``a = (y_{t-1} + y_{t+1}) / 2``.  The fit of
    ``t``'s own parity (even fit at even t, odd fit at odd t) never saw frames
    ``t - 1`` and ``t + 1``, so its error is independent of their noise.
    """
    from ..pipeline.compress import MIN_FRAMES, compress

    n_frames, h, w = frames.shape
    if n_frames < 2 * MIN_FRAMES + 2:
        return None
    params = store.metadata.parameters
    options = {k: params[k] for k in ("method", "max_rank", "consecutive_failures", "fit_frames", "false_pass",
                                       "seed") if k in params}
    options["patch_shape"] = tuple(store.patch_shape)
    options["overlap"] = tuple(store.metadata.overlap)
    fits = [compress(frames[parity::2], None, workers=workers, hash_input=False, **options) for parity in (0, 1)]
    out = {"sq": np.zeros((h, w)), "base": np.zeros((h, w)), "n": 0}
    for t0 in range(1, n_frames - 1, chunk):
        ts = np.arange(t0, min(t0 + chunk, n_frames - 1))
        for parity, fit in enumerate(fits):
            sel = ts[ts % 2 == parity]
            if sel.size == 0:
                continue
            j0, j1 = (sel[0] - parity) // 2, (sel[-1] - parity) // 2 + 1
            est = fit.read(j0, j1).astype(np.float64)  # frames parity + 2 j
            y = frames[sel].astype(np.float64)
            a = 0.5 * (frames[sel - 1].astype(np.float64) + frames[sel + 1].astype(np.float64))
            e = est - a
            out["sq"] += np.einsum("tij,tij->ij", e, e)
            e = y - a
            out["base"] += np.einsum("tij,tij->ij", e, e)
            out["n"] += int(sel.size)
    out["ranks"] = [int(f.metadata.total_rank) for f in fits]
    return out


# --------------------------------------------------------------------------- the pass


@dataclass
class Plan:
    """Chunks of the pass and which of them feed the sampled metrics."""

    bounds: list
    correlation: set
    spectrum: set
    segment: int

    @property
    def n_chunks(self) -> int:
        return len(self.bounds)


def _spread(items: list, k: int) -> set:
    if not items or k <= 0:
        return set()
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, min(k, len(items)))).astype(int))
    return {items[i] for i in idx}


def make_plan(n_frames: int, frame_shape, *, chunk_frames=None, correlation_frames=CORRELATION_FRAMES,
              spectrum_frames=SPECTRUM_FRAMES) -> Plan:
    """Chunk bounds (about 64 MB of float32 each) and the chunks sampled by each metric."""
    pixels = int(frame_shape[0]) * int(frame_shape[1])
    if chunk_frames is None:
        chunk_frames = int(np.clip(CHUNK_PIXELS // max(pixels, 1), 64, 512))
        chunk_frames -= chunk_frames % 32
    chunk_frames = max(2, min(int(chunk_frames), n_frames))
    bounds = [(s, min(s + chunk_frames, n_frames)) for s in range(0, n_frames, chunk_frames)]
    # A short last chunk joins the one before it (spectra and pairs want long chunks).
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < chunk_frames // 2:
        bounds[-2:] = [(bounds[-2][0], n_frames)]
    segment = min(WELCH_SEGMENT, chunk_frames)
    segment -= segment % 4
    full = [i for i, (a, b) in enumerate(bounds) if b - a >= segment]
    corr = _spread(list(range(len(bounds))), math.ceil(correlation_frames / chunk_frames))
    spec = _spread(full, math.ceil(spectrum_frames / chunk_frames)) if segment >= 8 else set()
    return Plan(bounds, corr, spec, segment)


@dataclass
class PassResult:
    """Everything the pass accumulated (sums, not yet turned into metrics)."""

    n_frames: int
    moments: np.ndarray  # (10, P)
    pair_count: int  # frames with both neighbours
    neighbours: np.ndarray | None  # (4, 6, H, W)
    neighbour_frames: int
    spectra: Spectra | None
    photon: np.ndarray | None  # (2, K)
    photon_lo: int | None
    truth: np.ndarray | None  # (4, P): sum (d-c)^2, sum (y-c)^2, sum (c-mu), sum (c-mu)^2 (spectrum chunks)
    crop_frames: np.ndarray | None
    seconds: float = 0.0
    truth_frames: int = 0


def stream(movie, store, *, truth=None, writer=None, write_dtype=None, collect=None, plan: Plan | None = None,
           workers=None, progress=None) -> PassResult:
    """The single pass over the movie (see the module docstring).

    Parameters
    ----------
    movie : Movie or None
        The raw movie; None for a store-only pass (denoised statistics only).
    store : PMDStore
    truth : Truth, optional
    writer : MovieWriter, optional
        Receives the denoised frames, in order, as ``write_dtype``.
    collect : tuple, optional
        ``(((y0, y1), (x0, x1)), n)``: keep frames ``0 .. n - 1`` of this crop of the raw
        movie (for the held-out fits), returned in ``PassResult.crop_frames``.
    plan : Plan, optional
    workers : int, optional
    progress : callable, optional

    Returns
    -------
    PassResult
    """
    start = time.perf_counter()
    n_frames, height, width = store.shape
    n_pix = height * width
    plan = plan or make_plan(n_frames, (height, width))
    workers = default_workers() if workers is None else max(int(workers), 1)
    progress = progress or null_progress
    mu = np.ascontiguousarray(store.mean, np.float32)
    mu_flat = mu.reshape(-1)
    noise = np.asarray(store.noise, np.float64)
    weights = (1.0 / np.where(noise > 0, noise, 1.0) ** 2).reshape(-1)
    int_range = _integer_range(movie.dtype) if movie is not None else None
    pt_size = (2 * (int_range[1] - int_range[0]) + 1) if int_range else 0
    write_dtype = np.dtype(write_dtype) if write_dtype is not None else None
    int_output = write_dtype is not None and write_dtype.kind in "iu"
    store.cells((0, height), (0, width))  # build once, before the threads share it
    crop_frames = None
    if collect is not None and movie is not None:
        ((cy0, cy1), (cx0, cx1)), n_keep = collect
        crop_frames = np.empty((n_keep, cy1 - cy0, cx1 - cx0), movie.dtype)
    if truth is not None and tuple(truth.shape) != tuple(store.shape):
        raise InputError(f"{truth.path}: ground truth shape {tuple(truth.shape)} does not match the movie "
                         f"{tuple(store.shape)}")

    def task(i):
        t0, t1 = plan.bounds[i]
        n = t1 - t0
        d = store.read(t0, t1)
        if movie is not None:
            lo, hi = max(t0 - 1, 0), min(t1 + 1, n_frames)
            yh = movie.view(lo, hi)
            if yh.shape[1:] != (height, width):
                raise InputError(f"{movie.name}: frames are {yh.shape[1:]}, the store's are {(height, width)}")
            y = yh[t0 - lo : t0 - lo + n]
        else:
            lo, yh, y = t0, d, d
        part = {}
        m, cnt = moments(yh.reshape(yh.shape[0], -1), d.reshape(n, -1), mu_flat, t0 - lo)
        part["moments"], part["pairs"] = m, cnt
        if i in plan.correlation:
            part["neighbours"] = neighbour_sums(y, d, mu)
            part["neighbour_frames"] = n
        if i in plan.spectrum:
            sp = Spectra(n_pix, plan.segment, weights)
            sp.add(y.reshape(n, -1), d.reshape(n, -1))
            part["spectra"] = sp
            if int_range is not None:
                part["photon"] = photon_pairs(y, PAIRS_PER_CHUNK, int_range[0], np.zeros((2, pt_size)))
        if truth is not None and i in plan.spectrum:
            c = truth.read(t0, t1).reshape(n, -1)
            acc = np.zeros((4, n_pix))
            e = d.reshape(n, -1) - c
            acc[0] = np.einsum("ij,ij->j", e, e, dtype=np.float64)
            if movie is not None:
                e = y.reshape(n, -1) - c
                acc[1] = np.einsum("ij,ij->j", e, e, dtype=np.float64)
            c -= mu_flat
            acc[2] = c.sum(axis=0, dtype=np.float64)
            acc[3] = np.einsum("ij,ij->j", c, c, dtype=np.float64)
            part["truth"] = acc
        if crop_frames is not None and t0 < len(crop_frames):
            keep = min(t1, len(crop_frames)) - t0
            part["_crop"] = (t0, np.array(y[:keep, cy0:cy1, cx0:cx1]))
        out = None
        if writer is not None:
            out = store.read(t0, t1, dtype=write_dtype) if int_output else d.astype(write_dtype, copy=False)
        return part, out

    total = None
    bar = progress("report", plan.n_chunks)
    with blas_threads(1), ThreadPoolExecutor(max(workers, 1)) as pool:
        pending = []
        index = 0

        def consume(fut):
            nonlocal total
            part, out = fut.result()
            if writer is not None:
                writer.write(out)
            if "_crop" in part:
                c0, block = part.pop("_crop")
                crop_frames[c0 : c0 + len(block)] = block
            total = part if total is None else _merge(total, part)
            bar.update()

        try:
            for index in range(plan.n_chunks):
                pending.append(pool.submit(task, index))
                if len(pending) > max(2, workers):
                    consume(pending.pop(0))
            while pending:
                consume(pending.pop(0))
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    bar.close()
    return PassResult(
        n_frames=n_frames, moments=total["moments"], pair_count=total["pairs"],
        neighbours=total.get("neighbours"), neighbour_frames=total.get("neighbour_frames", 0),
        spectra=total.get("spectra"), photon=total.get("photon"),
        photon_lo=int_range[0] if int_range else None, truth=total.get("truth"),
        crop_frames=crop_frames, seconds=time.perf_counter() - start,
        truth_frames=sum(plan.bounds[i][1] - plan.bounds[i][0] for i in plan.spectrum) if truth is not None else 0,
    )


def _merge(a: dict, b: dict) -> dict:
    for key, value in b.items():
        if key not in a:
            a[key] = value
        elif key == "spectra":
            a[key].merge(value)
        else:
            a[key] = a[key] + value
    return a


# --------------------------------------------------------------------------- from sums to metrics


def metric(value, definition: str, description: str, units: str | None = None) -> dict:
    """One reported number with the anchor of its definition in docs/snr.md."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        value = None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    out = {"value": value, "definition": definition, "description": description}
    if units:
        out["units"] = units
    return out


def _median(a, mask=None) -> float:
    a = np.asarray(a, np.float64)
    ok = np.isfinite(a) if mask is None else (np.isfinite(a) & mask)
    return float(np.median(a[ok])) if ok.any() else math.nan


def _mean(a, mask=None) -> float:
    a = np.asarray(a, np.float64)
    ok = np.isfinite(a) if mask is None else (np.isfinite(a) & mask)
    return float(np.mean(a[ok])) if ok.any() else math.nan


def _ratio(a: float, b: float) -> float:
    if b == 0 or not math.isfinite(b):
        return math.nan
    return a / b


def active_mask(snr_raw: np.ndarray, fraction: float = ACTIVE_FRACTION) -> np.ndarray:
    """The ``fraction`` of pixels with the highest raw SNR (at least one pixel)."""
    finite = np.isfinite(snr_raw)
    if not finite.any():
        return np.zeros(snr_raw.shape, bool)
    k = max(1, int(round(fraction * finite.sum())))
    threshold = np.sort(snr_raw[finite])[::-1][k - 1]
    return finite & (snr_raw >= threshold)


def flagged_regions(flags: np.ndarray, ratio: np.ndarray, *, min_pixels: int = 3, limit: int = 20) -> list[dict]:
    """Connected groups (8-connectivity) of pixels flagged for removed signal, largest first."""
    from scipy import ndimage

    labels, n = ndimage.label(flags > 0, structure=np.ones((3, 3), bool))
    regions = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = labels[sl] == i
        size = int(mask.sum())
        if size < min_pixels:
            continue
        ys, xs = np.nonzero(mask)
        regions.append({
            "centre_yx": [round(float(ys.mean()) + sl[0].start, 1), round(float(xs.mean()) + sl[1].start, 1)],
            "bbox": [sl[0].start, sl[0].stop, sl[1].start, sl[1].stop],
            "pixels": size,
            "mean_residual_ratio": round(float(np.mean(ratio[sl][mask])), 4),
        })
    regions.sort(key=lambda r: -r["pixels"])
    return regions[:limit]


def summarize(res: PassResult, store, plan: Plan, *, has_movie: bool) -> dict:
    """Turn the sums of :func:`stream` into maps and numbers.

    Returns
    -------
    dict
        ``maps`` (name -> (Y, X) array), ``metrics`` (name -> :func:`metric`),
        ``curves`` (spectra, photon-transfer curve), ``regions`` (flagged regions),
        ``heldout_maps`` (crop maps).
    """
    n_frames, height, width = store.shape
    shape = (height, width)
    sums = res.moments / n_frames
    mean_x, msq_x = sums[0], sums[1]
    maps: dict[str, np.ndarray] = {"mean": np.asarray(store.mean, np.float64)}
    metrics: dict[str, dict] = {}
    curves: dict = {}
    var_den = (sums[3] - sums[2] ** 2).reshape(shape)
    maps["var_denoised"] = var_den
    maps["rank"] = rank_map(store)

    if res.spectra is not None and res.spectra.n_segments:
        noise = res.spectra.noise_std().reshape(3, *shape)
        band = res.spectra.band_ratio().reshape(3, *shape)
        curves["spectra"] = {"frequency": res.spectra.frequencies.tolist(),
                             "raw": None, "denoised": None, "residual": None}
        pooled = res.spectra.pooled_spectra(height * width)
        for g, name in enumerate(("raw", "denoised", "residual")):
            curves["spectra"][name] = pooled[g].tolist()
        lo, hi = res.spectra.lo, res.spectra.hi
        sigma = noise[0]
        frames_spectra = res.spectra.n_segments
    else:
        noise = band = pooled = None
        sigma = np.asarray(store.noise, np.float64)
        frames_spectra = 0
    safe_sigma = np.where(sigma > 0, sigma, np.nan)
    maps["noise_raw"] = sigma

    # Store-only: what the factors and the stored raw noise allow.
    maps["snr_denoised_signal"] = np.sqrt(np.maximum(var_den, 0)) / safe_sigma
    corr_frames = res.neighbour_frames
    if res.neighbours is not None and corr_frames > 1:
        maps["corr_denoised"] = local_correlation(res.neighbours[DENOISED], corr_frames)
        metrics["local_corr_denoised_mean"] = metric(_mean(maps["corr_denoised"]), "local-correlation",
                                                     "mean 8-neighbour correlation image of the denoised movie")
    metrics["denoised_signal_over_raw_noise_median"] = metric(
        _median(maps["snr_denoised_signal"]), "denoised-signal",
        "median over pixels of std_t(denoised) / raw noise std")
    if not has_movie:
        return {"maps": maps, "metrics": metrics, "curves": curves, "regions": [], "heldout_maps": {}}

    var_raw = (msq_x - mean_x**2).reshape(shape)
    msq_res = sums[5].reshape(shape)
    maps["var_raw"] = var_raw
    signal = np.maximum(var_raw - sigma**2, 0.0)
    maps["signal_power"] = signal
    snr_raw = np.sqrt(signal) / safe_sigma
    maps["snr_raw"] = snr_raw

    # Noise correlation between neighbours (frame differences remove slow signal).
    if res.neighbours is not None and corr_frames > 2:
        rho = neighbour_correlations(res.neighbours[DIFFERENCE], corr_frames - 1)
        for name, g in (("raw", RAW), ("residual", RESIDUAL), ("difference", DIFFERENCE)):
            n = corr_frames - (g == DIFFERENCE)
            maps[f"corr_{name}"] = local_correlation(res.neighbours[g], n)
    else:
        rho = (0.0, 0.0, 0.0, 0.0)
    df = hat_diagonal(store, rho) + maps["rank"] / n_frames
    maps["df"] = df
    filtered = bool(store.metadata.parameters.get("temporal_filter"))
    if filtered:
        fractions = filter_fractions(store)
        maps["df_filtered"] = hat_diagonal(store, rho, fractions) + maps["rank"] / n_frames

    # Error of the denoised movie: neighbour-frame validation of the full fit.
    n_pairs = max(res.pair_count, 1)
    a = (res.moments[7] / n_pairs).reshape(shape)
    b = (res.moments[8] / n_pairs).reshape(shape)
    mse_nf = a - b / 3.0
    maps["mse_neighbour"] = mse_nf
    s2 = smooth(sigma**2)  # per-pixel noise variance, smoothed like the error estimate
    # Lost signal: the residual's mean square in excess of the noise it should hold,
    # counted where the excess is significant (3 robust standard deviations of the
    # excess map, whose bulk is estimation noise).
    if res.spectra is not None and res.spectra.n_segments:
        res_sq = res.spectra.residual_std().reshape(shape) ** 2
    else:
        res_sq = msq_res
    kept = maps.get("df_filtered", df)
    excess = smooth(res_sq) - s2 * (1.0 - kept)
    finite_excess = excess[np.isfinite(excess)]
    if finite_excess.size:
        centre = float(np.median(finite_excess))
        spread = 1.4826 * float(np.median(np.abs(finite_excess - centre)))
    else:
        centre = spread = 0.0
    lost = np.where(excess > centre + 3 * spread, np.maximum(excess, 0.0), 0.0)
    maps["lost_signal"] = lost
    floor = s2 * kept + lost
    maps["mse_model"] = floor
    # A temporal filter couples D(t) to the neighbouring frames, which biases the
    # neighbour-frame estimate low: then the model alone (noise kept through the
    # projections and the filter, plus lost signal).
    mse = floor.copy() if filtered else np.maximum(smooth(mse_nf), floor)
    maps["mse"] = mse
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.sqrt(s2 / mse)
    gain[~np.isfinite(gain)] = np.nan
    maps["gain"] = gain
    maps["snr_denoised"] = snr_raw * gain
    # The neighbour-frame estimate is high by 2/3 of the signal's frame-to-frame curvature;
    # the denoised movie's curvature, less that of the noise it kept, bounds it.
    curv_frames = max(sum(max(b - a - 2, 0) for a, b in plan.bounds), 1)
    curv = np.maximum(smooth((res.moments[9] / curv_frames).reshape(shape)) - 1.5 * s2 * df, 0.0)
    maps["signal_curvature"] = curv
    mse_cc = floor.copy() if filtered else np.maximum(smooth(mse_nf) - 2.0 / 3.0 * curv, floor)
    maps["mse_curvature_corrected"] = mse_cc
    # Chosen on the raw movie, on a lightly smoothed SNR map: selecting on the noisy
    # per-pixel map would favour pixels whose noise happens to be underestimated.
    act = active_mask(smooth(snr_raw, 1.0))
    maps["active"] = act.astype(np.float64)
    ok = np.isfinite(mse) & np.isfinite(s2)

    # What was removed: residual RMS over the raw noise, on the same frames, as the ratio
    # of local (1 px Gaussian) averages: the per-pixel ratio is noisy (a few % for
    # 1500 frames) while removed signal and kept noise are spatially extended.
    with np.errstate(invalid="ignore", divide="ignore"):
        maps["residual_ratio_pixel"] = np.sqrt(res_sq) / safe_sigma
        ratio = np.sqrt(smooth(res_sq, 1.0) / smooth(sigma**2, 1.0))
    maps["residual_ratio"] = ratio
    flags = np.zeros(shape, np.int8)
    flags[ratio < RESIDUAL_LOW] = -1
    flags[ratio > RESIDUAL_HIGH] = 1
    by_correlation = np.zeros(shape, bool)
    if "corr_residual" in maps:
        # Neurons left in the residual: its local correlation well above the noise's.
        excess_corr = maps["corr_residual"] - _median(maps["corr_difference"])
        by_correlation = np.isfinite(excess_corr) & (excess_corr > CORRELATION_FLAG)
        flags[by_correlation] = 1
    maps["flags"] = flags.astype(np.float64)
    regions = flagged_regions(flags, ratio)
    lag_pairs = max(n_frames - plan.n_chunks, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        maps["residual_lag1"] = (res.moments[6].reshape(shape) / lag_pairs) / msq_res
    if noise is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            maps["noise_denoised"] = noise[1]
            maps["noise_residual"] = noise[2]
            maps["residual_noise_ratio"] = noise[2] / safe_sigma
            maps["residual_band_ratio"] = band[2]
            pmd_raw = np.sqrt(np.maximum(var_raw, 0)) / safe_sigma
            pmd_den = np.sqrt(np.maximum(var_den, 0)) / np.where(noise[1] > 0, noise[1], np.nan)
            maps["pmd_style_gain"] = pmd_den / pmd_raw

    finite = np.isfinite(ratio)
    n_pix = max(int(finite.sum()), 1)

    # -- numbers ---------------------------------------------------------------
    M = metrics
    M["noise_raw_median"] = metric(_median(sigma), "noise-std", "median raw noise std (PSD upper half band, mean)",
                                   "ADU")
    if noise is not None:
        M["noise_denoised_median"] = metric(_median(noise[1]), "noise-std",
                                            "median noise std of the denoised movie (PSD upper half band)", "ADU")
        M["noise_residual_median"] = metric(_median(noise[2]), "noise-std",
                                            "median noise std of the residual (PSD upper half band)", "ADU")
        M["residual_noise_ratio_median"] = metric(_median(maps["residual_noise_ratio"]), "residual-noise-ratio",
                                                  "median residual PSD noise / raw PSD noise")
        M["pmd_style_gain_median"] = metric(_median(maps["pmd_style_gain"]), "pmd-style-gain",
                                            "trefide's SNR gain (gameable by temporal smoothing; for comparison)")
        n_low, n_high = lo - 2, hi - lo
        white = [float(np.sum(pooled[g][2:lo]) / n_low / (np.sum(pooled[g][lo:hi]) / n_high)) for g in range(3)]
        M["residual_band_ratio"] = metric(white[2], "residual-whiteness",
                                          "residual power per bin, lower band over upper half band (1 = white)")
        M["raw_band_ratio"] = metric(white[0], "residual-whiteness", "the same for the raw movie")
        M["spectrum_segments"] = metric(frames_spectra, "noise-std", "Welch segments behind the noise estimates")
        M["spectrum_segment_frames"] = metric(plan.segment, "noise-std", "frames per Welch segment")
    M["noise_correlation"] = metric([round(r, 4) for r in rho], "noise-correlation",
                                    "noise correlation with the neighbour right, down, down-right, down-left")
    M["signal_power_median"] = metric(_median(signal), "signal-power", "median raw signal power", "ADU^2")
    M["snr_raw_median"] = metric(_median(snr_raw), "snr", "median raw SNR (signal std / raw noise std)")
    M["snr_denoised_median"] = metric(_median(maps["snr_denoised"]), "snr", "median denoised SNR")
    M["snr_raw_active"] = metric(_median(snr_raw, act), "snr", "median raw SNR of the most active pixels")
    M["snr_denoised_active"] = metric(_median(maps["snr_denoised"], act), "snr",
                                      "median denoised SNR of the most active pixels")
    M["snr_gain_median"] = metric(_median(gain), "snr-gain", "SNR gain at the median pixel")
    M["snr_gain_active"] = metric(
        math.sqrt(_ratio(float(np.sum(s2[act & ok])), float(np.sum(mse[act & ok])))), "snr-gain",
        f"SNR gain over the {ACTIVE_FRACTION:.0%} most active pixels (chosen on the raw movie)")
    M["snr_gain_global"] = metric(math.sqrt(_ratio(float(np.sum(s2[ok])), float(np.sum(mse[ok])))), "snr-gain",
                                  "SNR gain over all pixels (estimated noise RMS reduction)")
    with np.errstate(invalid="ignore", divide="ignore"):
        gain_cc = np.sqrt(s2 / mse_cc)
    M["snr_gain_median_curvature_corrected"] = metric(
        _median(gain_cc), "curvature-correction", "SNR gain at the median pixel, signal curvature removed")
    M["snr_gain_active_curvature_corrected"] = metric(
        math.sqrt(_ratio(float(np.sum(s2[act & ok])), float(np.sum(mse_cc[act & ok])))), "curvature-correction",
        "SNR gain over the most active pixels, signal curvature removed")
    M["mse_over_noise_curvature"] = metric(
        _ratio(float(np.nansum(2.0 / 3.0 * curv)), float(np.nansum(s2))), "curvature-correction",
        "2/3 of the denoised movie's frame-to-frame curvature beyond its noise / raw noise variance")
    M["active_pixels"] = metric(int(act.sum()), "snr-gain", "pixels in the most-active set")
    M["mse_over_noise_neighbour"] = metric(_ratio(float(np.nansum(mse_nf)), float(np.nansum(s2))),
                                           "neighbour-frame-validation",
                                           "estimated MSE of the denoised movie / raw noise variance (all pixels)")
    M["mse_over_noise_model"] = metric(_ratio(float(np.nansum(floor)), float(np.nansum(s2))), "error-model",
                                       "noise kept through the projections (and temporal filter), plus lost "
                                       "signal, / raw noise variance (all pixels)")
    M["lost_signal_over_noise"] = metric(_ratio(float(np.nansum(lost)), float(np.nansum(s2))), "error-model",
                                         "significant residual excess over the noise (lost signal) / raw noise "
                                         "variance")
    if filtered:
        M["temporal_filter_kept_median"] = metric(
            float(np.median(fractions)) if len(fractions) else math.nan, "error-model",
            "median fraction of a factor's noise kept by the temporal filter (trend-filter degrees of freedom / T)")
        M["mse_over_noise_model_unfiltered"] = metric(
            _ratio(float(np.nansum(s2 * df + lost)), float(np.nansum(s2))), "error-model",
            "the same as if the temporal filter kept all the projections' noise (an upper bound)")
    M["mse_over_noise"] = metric(_ratio(float(np.nansum(mse)), float(np.nansum(s2))), "snr-gain",
                                 "error estimate behind the SNR gains / raw noise variance (all pixels)")
    M["residual_ratio_median"] = metric(_median(ratio), "residual-ratio", "median residual std / raw noise std")
    M["residual_ratio_within"] = metric(float(np.mean((ratio[finite] >= RESIDUAL_LOW)
                                                      & (ratio[finite] <= RESIDUAL_HIGH))),
                                        "residual-ratio",
                                        f"fraction of pixels with {RESIDUAL_LOW} <= ratio <= {RESIDUAL_HIGH}")
    M["flagged_signal_removed"] = metric(float(np.sum(flags > 0) / n_pix), "residual-ratio",
                                         f"fraction of pixels flagged for removed signal: ratio > {RESIDUAL_HIGH}"
                                         f" or residual local correlation > noise's + {CORRELATION_FLAG}")
    M["flagged_by_correlation"] = metric(float(np.sum(by_correlation) / n_pix), "residual-ratio",
                                         "of which flagged by the residual's local correlation")
    M["flagged_noise_kept"] = metric(float(np.sum(flags < 0) / n_pix), "residual-ratio",
                                     f"fraction of pixels flagged: ratio < {RESIDUAL_LOW} (noise kept)")
    M["flagged_regions"] = metric(len(regions), "residual-ratio", "groups of >= 3 pixels flagged for removed signal")
    M["residual_lag1_median"] = metric(_median(maps["residual_lag1"]), "residual-whiteness",
                                       "median lag-1 autocorrelation of the residual")
    if "corr_residual" in maps:
        M["local_corr_raw_mean"] = metric(_mean(maps["corr_raw"]), "local-correlation",
                                          "mean 8-neighbour correlation image of the raw movie")
        M["local_corr_residual_mean"] = metric(_mean(maps["corr_residual"]), "local-correlation",
                                               "mean 8-neighbour correlation image of the residual")
        noise_level = _median(maps["corr_difference"])
        M["local_corr_noise"] = metric(noise_level, "local-correlation",
                                            "median of the frame-difference image: what pure noise gives")
        M["local_corr_residual_excess"] = metric(
            _mean(maps["corr_residual"]) - noise_level, "local-correlation",
            "residual local correlation (mean) minus that of the noise")
        M["correlation_frames"] = metric(corr_frames, "local-correlation", "frames behind the correlation images")
    return {"maps": maps, "metrics": metrics, "curves": curves, "regions": regions, "heldout_maps": {}}


def summarize_photon_transfer(res: PassResult, out: dict) -> None:
    """Add the photon-transfer fit to ``out`` (from :func:`summarize`)."""
    M = out["metrics"]
    if res.photon is None:
        M["photon_transfer_ok"] = metric(False, "photon-transfer", "needs integer data of at most 16 bits")
        return
    fit = fit_photon_transfer(res.photon, res.photon_lo)
    out["curves"]["photon_transfer"] = fit
    M["photon_transfer_ok"] = metric(fit["ok"], "photon-transfer", fit["reason"] or "fit done")
    if not fit["ok"]:
        return
    g, z = fit["gain"], fit["offset"]
    M["camera_gain"] = metric(g, "photon-transfer", "ADU per detected photon", "ADU/photon")
    M["camera_offset"] = metric(z, "photon-transfer", "ADU at zero photons (read noise folded in)", "ADU")
    maps = out["maps"]
    mean = maps["mean"]
    M["photons_per_pixel_mean"] = metric(float(np.mean(np.maximum(mean - z, 0)) / g), "photon-transfer",
                                         "mean detected photons per pixel per frame", "photons")
    with np.errstate(invalid="ignore"):
        pt_noise = np.sqrt(np.maximum(g * (mean - z), 0))
    maps["noise_photon_transfer"] = pt_noise
    M["photon_noise_over_psd_noise"] = metric(_median(pt_noise / np.where(maps["noise_raw"] > 0, maps["noise_raw"],
                                                                           np.nan)),
                                              "photon-transfer", "median sqrt(g (mean - z)) / PSD noise std")


def summarize_heldout(heldout: dict | None, out: dict, crop) -> None:
    """Add the even/odd held-out validation of the crop (:func:`heldout_validation`) to ``out``."""
    if not heldout or heldout["n"] == 0:
        return
    (y0, y1), (x0, x1) = crop
    n = float(heldout["n"])
    a = heldout["sq"] / n
    b = heldout["base"] / n
    mse = a - b / 3.0
    maps = out["maps"]
    s2 = maps["noise_raw"][y0:y1, x0:x1] ** 2
    full = maps["mse_neighbour"][y0:y1, x0:x1]
    out["heldout_maps"] = {"mse_heldout": mse, "mse_neighbour": full, "crop": [y0, y1, x0, x1]}
    M = out["metrics"]
    M["heldout_crop"] = metric([y0, y1, x0, x1], "held-out-validation", "crop fitted on even and odd frames")
    M["mse_over_noise_heldout"] = metric(_ratio(float(np.nansum(mse)), float(np.nansum(s2))), "held-out-validation",
                                         "MSE of the half-frame fits / raw noise variance, on the crop")
    M["mse_over_noise_neighbour_crop"] = metric(_ratio(float(np.nansum(full)), float(np.nansum(s2))),
                                                "neighbour-frame-validation",
                                                "the full fit's neighbour-frame estimate on the same crop")


def summarize_truth(res: PassResult, out: dict, truth_scores: dict | None = None, *, crop=None) -> None:
    """Add per-pixel ground-truth maps and their agreement with the estimates to ``out``."""
    if res.truth is None:
        return
    n_frames = max(res.truth_frames, 1)
    maps, M = out["maps"], out["metrics"]
    shape = maps["mean"].shape
    t = res.truth / n_frames
    mse_true = t[0].reshape(shape)
    noise_true = np.sqrt(t[1]).reshape(shape)
    signal_true = np.maximum(t[3] - t[2] ** 2, 0).reshape(shape)
    maps["mse_true"] = mse_true
    maps["noise_true"] = noise_true
    maps["signal_power_true"] = signal_true
    with np.errstate(invalid="ignore", divide="ignore"):
        gain_true = np.sqrt(noise_true**2 / mse_true)
        maps["gain_true"] = np.where(np.isfinite(gain_true), gain_true, np.nan)
        maps["snr_raw_true"] = np.sqrt(signal_true) / noise_true
    act = maps["active"] > 0
    s2 = noise_true**2
    M["truth_noise_estimate_ratio_median"] = metric(_median(maps["noise_raw"] / noise_true), "truth",
                                                    "median estimated / true raw noise std")
    M["truth_snr_gain_median"] = metric(_median(maps["gain_true"]), "truth", "true SNR gain at the median pixel")
    M["truth_snr_gain_active"] = metric(math.sqrt(_ratio(float(s2[act].sum()), float(mse_true[act].sum()))),
                                        "truth", "true SNR gain over the same most-active pixels")
    M["truth_snr_gain_global"] = metric(math.sqrt(_ratio(float(s2.sum()), float(mse_true.sum()))), "truth",
                                        "true noise RMS reduction (all pixels)")
    M["truth_mse_over_noise"] = metric(_ratio(float(mse_true.sum()), float(s2.sum())), "truth",
                                       "true MSE of the denoised movie / true noise variance")
    g_est, g_true = np.log(maps["gain"]), np.log(maps["gain_true"])
    ok = np.isfinite(g_est) & np.isfinite(g_true)
    if ok.sum() > 2:
        M["truth_gain_map_correlation"] = metric(float(np.corrcoef(g_est[ok], g_true[ok])[0, 1]), "truth",
                                                 "correlation of log estimated and log true gain maps")
        sm = np.log(np.sqrt(smooth(s2) / smooth(mse_true)))
        ok2 = ok & np.isfinite(sm)
        M["truth_gain_map_correlation_smoothed"] = metric(float(np.corrcoef(g_est[ok2], sm[ok2])[0, 1]), "truth",
                                                          "the same against the equally smoothed true gain map")
    snr_est, snr_true = maps["snr_raw"], maps["snr_raw_true"]
    ok = np.isfinite(snr_est) & np.isfinite(snr_true)
    if ok.sum() > 2:
        M["truth_snr_raw_map_correlation"] = metric(float(np.corrcoef(snr_est[ok], snr_true[ok])[0, 1]), "truth",
                                                    "correlation of estimated and true raw SNR maps")
    if crop is not None:
        (y0, y1), (x0, x1) = crop
        M["truth_mse_over_noise_crop"] = metric(
            _ratio(float(mse_true[y0:y1, x0:x1].sum()), float(s2[y0:y1, x0:x1].sum())), "truth",
            "true MSE / noise variance of the full fit on the held-out crop")
    if truth_scores:
        for key, value in truth_scores.items():
            if isinstance(value, list):
                out["curves"].setdefault("truth", {})[key] = value
            else:
                M[f"truth_{key}"] = metric(value, "truth", key.replace("_", " "))


# --------------------------------------------------------------------------- samples for the figures


def pick_regions(score: np.ndarray, n: int = 4, *, radius: int = 1, min_distance: int = 8) -> list[tuple[int, int]]:
    """Centres of the ``n`` highest, mutually distant maxima of ``score`` (away from the border)."""
    score = np.array(score, np.float64)
    h, w = score.shape
    score[~np.isfinite(score)] = -np.inf
    score[:radius], score[h - radius :] = -np.inf, -np.inf
    score[:, :radius], score[:, w - radius :] = -np.inf, -np.inf
    out = []
    for _ in range(n):
        i = int(np.argmax(score))
        if not np.isfinite(score.flat[i]):
            break
        y, x = divmod(i, w)
        out.append((y, x))
        ys = slice(max(0, y - min_distance), y + min_distance + 1)
        score[ys, max(0, x - min_distance) : x + min_distance + 1] = -np.inf
    return out


def sample_traces(movie, store, centres, *, window: int = 1000, radius: int = 1) -> dict:
    """Raw, denoised and residual traces (mean of a small square) of a few regions over a frame window.

    Also picks the frame of the window where the regions are brightest, for the frame strip.
    """
    n_frames = store.shape[0]
    t0, t1 = 0, min(n_frames, window)
    raw, den = [], []
    for y, x in centres:
        ys, xs = (y - radius, y + radius + 1), (x - radius, x + radius + 1)
        den.append(store.read(t0, t1, ys, xs).reshape(t1 - t0, -1).mean(axis=1, dtype=np.float64))
    if movie is not None and centres:
        raw = [np.empty(t1 - t0) for _ in centres]
        for a in range(t0, t1, 128):  # a few frames at a time, whatever the frame size
            b = min(a + 128, t1)
            block = movie.view(a, b)
            for i, (y, x) in enumerate(centres):
                raw[i][a - t0 : b - t0] = (block[:, y - radius : y + radius + 1, x - radius : x + radius + 1]
                                           .reshape(b - a, -1).mean(axis=1, dtype=np.float64))
    den_arr = np.array(den) if den else np.zeros((0, t1 - t0))
    if len(den_arr):
        z = (den_arr - den_arr.mean(axis=1, keepdims=True)) / (den_arr.std(axis=1, keepdims=True) + 1e-12)
        peak = int(np.argmax(z.sum(axis=0)))
    else:
        peak = (t1 - t0) // 2
    return {"frames": [t0, t1], "centres": [list(c) for c in centres], "radius": radius,
            "raw": np.array(raw) if raw else None, "denoised": den_arr, "peak_frame": t0 + peak}


def sample_frames(movie, store, t: int) -> dict:
    """One frame of the raw movie, the denoised movie and the residual."""
    d = store.read(t, t + 1)[0]
    out = {"frame": int(t), "denoised": d}
    if movie is not None:
        y = movie.read(t, t + 1)[0].astype(np.float32)
        out.update(raw=y, residual=y - d)
    return out


def sample_clip(movie, store, centre_frame: int, *, n: int = 100, side: int = 192, centre_yx=None) -> dict:
    """A short clip (raw, denoised, residual) around a frame, cropped to at most ``side`` pixels."""
    n_frames, height, width = store.shape
    t0 = int(np.clip(centre_frame - n // 3, 0, max(n_frames - n, 0)))
    t1 = min(n_frames, t0 + n)
    cy, cx = centre_yx if centre_yx is not None else (height // 2, width // 2)
    y0 = int(np.clip(cy - side // 2, 0, max(height - side, 0)))
    x0 = int(np.clip(cx - side // 2, 0, max(width - side, 0)))
    ys, xs = (y0, min(height, y0 + side)), (x0, min(width, x0 + side))
    den = store.read(t0, t1, ys, xs)
    out = {"frames": [t0, t1], "crop": [*ys, *xs], "denoised": den}
    if movie is not None:
        raw = movie.read(t0, t1)[:, ys[0] : ys[1], xs[0] : xs[1]].astype(np.float32)
        out.update(raw=raw, residual=raw - den)
    return out
