"""Numba kernels of the report's single pass (moments, neighbour products, Welch windows, bands) and the
small maps derived from their sums (local correlation, smoothing).
"""

from __future__ import annotations

import numpy as np

from .._numba import jit
from ..preprocess import median_mad_of_sorted

#: Gaussian width (pixels) of the smoothing of per-pixel error estimates.
SMOOTH_SIGMA = 2.0


# Neighbour directions of the correlation kernel: right, down, down-right, down-left.
DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


# Signals of the neighbour kernel.
RAW, DENOISED, RESIDUAL, DIFFERENCE = range(4)


SIGNALS = ("raw", "denoised", "residual", "difference")


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


@jit
def _median_mad_sorted_kernel(xs, med, mad):
    # xs: (P, T) float64, each row sorted; med, mad: (P,) float64 out: per row, the median (the middle value, or the
    # mean of the two middle ones, as numpy's) and the median of the absolute deviations from it.
    for p in range(xs.shape[0]):
        med[p], mad[p] = median_mad_of_sorted(xs[p])


@jit
def _transpose_into(src, out):
    # out[p, t] = src[t, p] (src: (n, P), any strides; out: (P, n) C-ordered), in 16 x 16 tiles that stay in cache
    # (numpy's strided copy of the same thing took three times as long).
    n, n_p = src.shape
    for t0 in range(0, n, 16):
        t1 = min(t0 + 16, n)
        for p0 in range(0, n_p, 16):
            for p in range(p0, min(p0 + 16, n_p)):
                for t in range(t0, t1):
                    out[p, t] = src[t, p]


#: Pixels sorted at a time by :func:`median_mad`.
MEDIAN_SORT_PIXELS = 1024


def median_mad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of ``x`` (T, ...), the median over time and the median absolute deviation from it: the same floats
    as ``m = np.median(x, axis=0)`` and ``np.median(np.abs(x - m), axis=0)``, from one sort (numpy's, vectorised)
    and a bisection between the walks outwards from the middle
    (:func:`~pmdcompress.preprocess.median_mad_of_sorted`).  ``x`` must be finite."""
    x = np.asarray(x, np.float64)
    flat = x.reshape(x.shape[0], -1)
    med = np.empty(flat.shape[1])
    mad = np.empty(flat.shape[1])
    if flat.shape[0]:
        # A block of pixels at a time, each pixel's values copied to a contiguous row and sorted along it: the same
        # floats as sorting the columns (each on its own), with no strided walk through the frames, and a block's
        # sorted copy in place of a whole chunk's at the report's peak.
        rows = np.empty((min(MEDIAN_SORT_PIXELS, flat.shape[1]), flat.shape[0]))
        for p0 in range(0, flat.shape[1], MEDIAN_SORT_PIXELS):
            p1 = min(p0 + MEDIAN_SORT_PIXELS, flat.shape[1])
            block = rows[: p1 - p0]
            _transpose_into(flat[:, p0:p1], block)
            block.sort(axis=1)
            _median_mad_sorted_kernel(block, med[p0:p1], mad[p0:p1])
    else:
        med[:] = mad[:] = np.nan
    return med.reshape(x.shape[1:]), mad.reshape(x.shape[1:])


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


def smooth(image: np.ndarray, sigma: float = SMOOTH_SIGMA) -> np.ndarray:
    """Gaussian smoothing that ignores NaN (normalised convolution)."""
    from scipy.ndimage import gaussian_filter

    image = np.asarray(image, np.float64)
    ok = np.isfinite(image)
    num = gaussian_filter(np.where(ok, image, 0.0), sigma, mode="nearest")
    den = gaussian_filter(ok.astype(np.float64), sigma, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-6, num / den, np.nan)


# --------------------------------------------------------------------------- photon split: kept-pair counts


@jit
def _kept_pairs_kernel(keep, m, m2, lags, out):
    # keep: (n, h, w) bool, True where a first difference is kept (not signal); lags: (L, 2) int64 (dy, dx), dy >= 0;
    # out: (L, 2, h, w) float64, accumulated at each lag's pixels p (rows from max(0, -dy), columns from
    # max(0, -dx), stored from index 0 as the lag's (h - |dy|, w - |dx|) sub-array):
    #   0: #{t < m: keep[t, p] and keep[t, p + lag]},
    #   1: (#{t < m2: keep[t, p] and keep[t + 1, p + lag]} + #{t < m2: keep[t + 1, p] and keep[t, p + lag]}) / 2.
    # Few differences are masked (signal), so each count is taken as all pairs less those with a masked end:
    # #{x and y} = N - #{not x} - #{not y} + #{not x and not y}, the last found from the masked values alone.
    # Whole numbers: the same floats in any order (photon_split._add_lagged_moments' einsums on 0/1 values).
    n, h, w = keep.shape
    n_lag = lags.shape[0]
    off0 = np.zeros((h, w), np.int32)  # masked at t < m
    off_a = np.zeros((h, w), np.int32)  # masked at t < m2
    off_b = np.zeros((h, w), np.int32)  # masked at 1 <= t <= m2
    # Both ends masked (stored at p): 0 at the same t < m, 1 p at t < m2 and q at t + 1, 2 p at t + 1 and q at t.
    both = np.zeros((n_lag, 3, h, w), np.int32)
    for t in range(n):
        for i in range(h):
            for j in range(w):
                if keep[t, i, j]:
                    continue
                if t < m:
                    off0[i, j] += 1
                if t < m2:
                    off_a[i, j] += 1
                if 1 <= t <= m2:
                    off_b[i, j] += 1
                for lag in range(n_lag):
                    qi = i + lags[lag, 0]
                    qj = j + lags[lag, 1]
                    if qi >= h or qj < 0 or qj >= w:
                        continue
                    if t < m and not keep[t, qi, qj]:
                        both[lag, 0, i, j] += 1
                    if t < m2 and not keep[t + 1, qi, qj]:
                        both[lag, 1, i, j] += 1
                    if 1 <= t <= m2 and not keep[t - 1, qi, qj]:
                        both[lag, 2, i, j] += 1
    for lag in range(n_lag):
        dy = lags[lag, 0]
        dx = lags[lag, 1]
        c0 = max(0, -dx)
        for i in range(0, h - dy):
            for j in range(c0, w - max(0, dx)):
                qi = i + dy
                qj = j + dx
                k0 = m - off0[i, j] - off0[qi, qj] + both[lag, 0, i, j]
                ka = m2 - off_a[i, j] - off_b[qi, qj] + both[lag, 1, i, j]
                kb = m2 - off_b[i, j] - off_a[qi, qj] + both[lag, 2, i, j]
                out[lag, 0, i, j - c0] += k0
                out[lag, 1, i, j - c0] += 0.5 * (ka + kb)


def kept_pairs(keep: np.ndarray, m: int, m2: int, lags) -> np.ndarray:
    """Per lag ``(dy, dx)`` (``dy >= 0``) and pixel ``p`` with ``p + lag`` inside the frame, the kept pairs of
    first differences (``keep``, (n, h, w) bool) at the same time over the first ``m`` and at time lag one
    (symmetrised) over the first ``m2``: (L, 2, h, w) float64, each lag's (h - dy, w - |dx|) counts in its corner.

    The ``k0``/``k1`` of :func:`~.photon_split._add_lagged_moments` as whole numbers, from one pass over the mask
    that stops only at its few masked values, instead of three float64 einsums per lag on 0/1 values: the same
    floats.
    """
    keep = np.ascontiguousarray(keep, dtype=np.bool_)
    lags = np.asarray(lags, np.int64).reshape(-1, 2)
    out = np.zeros((lags.shape[0], 2, *keep.shape[1:]))
    if keep.shape[0] and lags.shape[0]:
        _kept_pairs_kernel(keep, int(m), int(m2), lags, out)
    return out


# --------------------------------------------------------------------------- photon split: the score's sums


#: The per-pixel sums of :func:`score_sums` before the lagged ones, in order (photon_split.score's names).
SCORE_SUMS = ("sq_d", "sq_a", "b", "b2", "r", "rb", "a")


@jit
def _score_sums_kernel(a, b, d, lags, out):
    # a, b, d: (n, h, w) the halves A, B and the denoised A (any dtype, each value taken to float64);
    # lags: (L, 2) int64; out: (7 + 3 L, h, w) float64, overwritten: per pixel p, summed over t in order from 0,
    #   0 (d - b)^2, 1 (a - b)^2, 2 b, 3 b^2, 4 r = a - d, 5 r b, 6 a, and for each lag k with q = p + lag inside
    #   the frame (0 elsewhere): 7 + 3k b_q, 8 + 3k r_p b_q, 9 + 3k a_p b_q.
    # Rows are taken in bands so that the band's sums stay in cache while the frames stream past.
    n, h, w = a.shape
    n_lag = lags.shape[0]
    out[:] = 0.0
    band = max(1, 1024 // max(w, 1))
    for i0 in range(0, h, band):
        i1 = min(i0 + band, h)
        for t in range(n):
            for i in range(i0, i1):
                for j in range(w):
                    av = np.float64(a[t, i, j])
                    bv = np.float64(b[t, i, j])
                    dv = np.float64(d[t, i, j])
                    e = dv - bv
                    out[0, i, j] += e * e
                    e = av - bv
                    out[1, i, j] += e * e
                    out[2, i, j] += bv
                    out[3, i, j] += bv * bv
                    r = av - dv
                    out[4, i, j] += r
                    out[5, i, j] += r * bv
                    out[6, i, j] += av
                for k in range(n_lag):
                    q = i + lags[k, 0]
                    dx = lags[k, 1]
                    if q < 0 or q >= h:
                        continue
                    for j in range(max(0, -dx), w - max(0, dx)):
                        bq = np.float64(b[t, q, j + dx])
                        av = np.float64(a[t, i, j])
                        r = av - np.float64(d[t, i, j])
                        out[7 + 3 * k, i, j] += bq
                        out[8 + 3 * k, i, j] += r * bq
                        out[9 + 3 * k, i, j] += av * bq


def score_sums(a, b, d, lags, out: np.ndarray | None = None) -> np.ndarray:
    """The per-pixel sums of one chunk that :func:`~.photon_split.score` accumulates (:data:`SCORE_SUMS`, then
    ``B_q``, ``r_p B_q`` and ``A_p B_q`` for each lag, ``r = A - dA``, ``q = p + lag``, 0 where ``q`` is outside
    the frame): (7 + 3 L, h, w) float64, each the float of the einsum (or ``sum(axis=0)``) of float64 copies."""
    lags = np.asarray(lags, np.int64).reshape(-1, 2)
    if out is None:
        out = np.empty((len(SCORE_SUMS) + 3 * lags.shape[0], *a.shape[1:]))
    _score_sums_kernel(a, b, d, lags, out)
    return out


@jit
def _dither_variance_kernel(frames, offset, gain, out):
    # frames: (n, h, w) any dtype; offset: (h, w) float64; out: (h, w) float64, overwritten:
    # sum over t in order from 0 of f (1 - f), f the fractional part of (frames - offset) / gain.
    n, h, w = frames.shape
    out[:] = 0.0
    for t in range(n):
        for i in range(h):
            for j in range(w):
                x = (np.float64(frames[t, i, j]) - offset[i, j]) / gain
                f = x - np.floor(x)
                out[i, j] += f * (1.0 - f)


def dither_variance_sum(frames, offset, gain: float) -> np.ndarray:
    """Per pixel, ``sum_t f (1 - f)``, ``f`` the fractional part of ``(frames - offset) / gain`` (the dither's
    variance, :func:`~.photon_split._dither_variance`): the floats of ``(f * (1 - f)).sum(axis=0)`` on a float64
    copy, in one pass over the frames as stored."""
    out = np.empty(frames.shape[1:])
    _dither_variance_kernel(frames, np.ascontiguousarray(np.broadcast_to(offset, frames.shape[1:]), np.float64),
                            float(gain), out)
    return out


@jit
def _first_differences_kernel(block, out):
    # out[t] = float64(block[t + 1]) - float64(block[t]); block: (n, h, w) any dtype, out: (n - 1, h, w) float64.
    n, h, w = block.shape
    for t in range(n - 1):
        for i in range(h):
            for j in range(w):
                out[t, i, j] = np.float64(block[t + 1, i, j]) - np.float64(block[t, i, j])


def first_differences(block: np.ndarray) -> np.ndarray:
    """``np.diff(np.asarray(block, np.float64), axis=0)`` of a C-ordered (n, h, w) block, in one pass and without the
    float64 copy of the block: the same floats (each value's conversion to float64 is exact, the difference the same
    subtraction), C-ordered as np.diff's."""
    out = np.empty((max(block.shape[0] - 1, 0), *block.shape[1:]))
    if block.shape[0] > 1:
        _first_differences_kernel(block, out)
    return out
