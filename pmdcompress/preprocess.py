"""Preprocessing: per-pixel mean, noise level and standardisation.

The noise level of every pixel is the square root of the mean power spectral
density in the upper half band (0.25 to 0.5 cycles per frame), estimated with
Hann-windowed segments (Welch).  On white noise this is unbiased; CaImAn's
default ``logmexp`` averaging is 25 % low (see docs/format.md and
``../shared/reference/compression_denoising.md``), so it is not offered.

A fast signal shared by a whole region (a one-photon microscope's flickering
excitation light, out-of-focus background, hemodynamics) also has power in the
upper half band, and a plain spectral estimate counts it as noise (3x the noise
on a real microendoscope clip).  :class:`NoiseAccumulator` given the frame shape
therefore also regresses each pixel's band on that of its surrounding annulus
(:func:`ring_mean`) and keeps what the annulus cannot explain: independent (or
only locally shared) noise.

A short movie gives each pixel few values of its band (16 for 63 frames), so
:func:`pooled_noise` lends it its neighbours' level (empirical Bayes on a local
fit of the variance on the mean); a long movie keeps its own.
"""

from __future__ import annotations

import functools

import numpy as np

from ._numba import jit

# Welch segment length: long enough to resolve the band edge, short enough that
# a 20-frame movie still gets an estimate (segments shrink to the movie length).
WELCH_SEGMENT = 256
#: Float32 bytes of the windowed frames :class:`NoiseAccumulator` transforms at a time (a block of pixels).
WELCH_BLOCK_BYTES = 8 * 2**20

#: Square annulus (Chebyshev distance from the pixel, pixels) whose mean is a pixel's reference for signals
#: shared by a region: beyond the noise shared by neighbours (resampling, a sensor's point spread: 1-2 px),
#: close enough to share out-of-focus background and global fluctuations.
RING_INNER, RING_OUTER = 4, 8


def periodic_hann(length: int) -> np.ndarray:
    """Periodic Hann window: its DFT is zero beyond bin 1, so the segment mean
    cannot leak into the upper half band and need not be subtracted."""
    n = np.arange(length)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / length)).astype(np.float32)


def welch_band(segment: int) -> tuple[np.ndarray, float, int, int]:
    """The Welch noise band of one segment length: (window, sum of its squares, first bin, end bin).

    The noise is the mean periodogram over bins ``lo <= k < hi``, the upper half
    band ``L/4 < k <= L/2``; :class:`NoiseAccumulator` and the report's spectra
    (:class:`pmdcompress.report.noise.Spectra`) both measure it with these.
    """
    window = periodic_hann(segment)
    return window, float(np.sum(window.astype(np.float64) ** 2)), segment // 4 + 1, segment // 2 + 1


@jit
def _kth_deviation(buf, med, lo, hi, n, k):
    # The k-th smallest (k >= 1) of the absolute deviations from med of the sorted buf's values walked outwards
    # from its middle: left, med - buf[lo - i], and right, buf[hi + j] - med (i, j < n), each increasing.  The
    # number taken from the left is bisected (too few while left[i] < right[k - i - 1]); the answer is the largest
    # value taken: the same float as merging the two walks value by value, in log(n) steps instead of n
    # unpredictable branches.
    a = max(0, k - n)
    b = min(k, n)
    while a < b:
        i = (a + b) // 2
        if med - buf[lo - i] < buf[hi + k - i - 1] - med:
            a = i + 1
        else:
            b = i
    best = -np.inf
    if a > 0:
        best = med - buf[lo - a + 1]
    if k - a > 0:
        best = max(best, buf[hi + k - a - 1] - med)
    return best


@jit
def median_mad_of_sorted(buf):
    """Median of the sorted 1-D ``buf`` and the median of its absolute deviations from it, each the mean of the two
    middle values when the size is even (as numpy's): the same floats as ``np.median`` of each.

    Sorted, the deviations in increasing order are those of the two halves walked outwards from the middle,
    merged, so the second median needs no second sort; the merge's rank is found by bisection
    (:func:`_kth_deviation`; the value-by-value walk is its twin in the tests).  Shared by demix's robust
    normalisation (:func:`pmdcompress.demix.init._robust_normalize_kernel`) and the report's signal mask
    (:func:`pmdcompress.report.kernels.median_mad`).
    """
    m = buf.size
    h = m // 2
    if m % 2 == 1:
        med = buf[h]
        # The middle value's own deviation, 0, is the smallest: the median deviation is the h-th of the rest.
        return med, (_kth_deviation(buf, med, h - 1, h + 1, h, h) if h > 0 else 0.0)
    med = 0.5 * (buf[h - 1] + buf[h])
    return med, 0.5 * (_kth_deviation(buf, med, h - 1, h, h, h) + _kth_deviation(buf, med, h - 1, h, h, h + 1))


@jit
def _windowed_kernel(block, window, out):
    # out[t, p] = block[t, p] * window[t]; block of any numeric dtype, (L, P).
    n_t, n_p = block.shape
    for t in range(n_t):
        w = window[t]
        for p in range(n_p):
            out[t, p] = block[t, p] * w


@jit
def _band_power_kernel(spec, lo, hi, power):
    # power[p] += sum_{lo <= k < hi} |spec[k, p]|**2
    n_p = spec.shape[1]
    for k in range(lo, hi):
        for p in range(n_p):
            z = spec[k, p]
            power[p] += z.real * z.real + z.imag * z.imag


def _segments(n_frames: int, segment: int) -> list[tuple[int, int]]:
    """Start/stop of Welch segments with 50 % overlap covering ``n_frames``."""
    seg = min(segment, n_frames)
    step = max(seg // 2, 1)
    starts = list(range(0, n_frames - seg + 1, step))
    return [(s, s + seg) for s in starts]


@jit
def _running_sum_row(passed, r, y, out):
    # out[y, x] = the running sum along x of passed[y] over the (2r + 1) box (zeros outside): total += entering -
    # leaving, _box_mean_kernel's order
    w = passed.shape[1]
    total = 0.0
    for j in range(min(r + 1, w)):
        total += passed[y, j]
    out[y, 0] = total
    for x in range(1, w):
        enter, leave = x + r, x - 1 - r
        a = passed[y, enter] if enter < w else 0.0
        b = passed[y, leave] if leave >= 0 else 0.0
        total += a - b
        out[y, x] = total


@jit
def _running_sum_rows4(passed, r, y, out):
    # _running_sum_row for rows y..y + 3 side by side: four independent chains of additions, so that each does
    # not wait on the previous addition of its own row (one chain's latency was most of the box filter's time)
    w = passed.shape[1]
    t0 = 0.0
    t1 = 0.0
    t2 = 0.0
    t3 = 0.0
    for j in range(min(r + 1, w)):
        t0 += passed[y, j]
        t1 += passed[y + 1, j]
        t2 += passed[y + 2, j]
        t3 += passed[y + 3, j]
    out[y, 0] = t0
    out[y + 1, 0] = t1
    out[y + 2, 0] = t2
    out[y + 3, 0] = t3
    for x in range(1, w):
        enter, leave = x + r, x - 1 - r
        if enter < w and leave >= 0:
            t0 += passed[y, enter] - passed[y, leave]
            t1 += passed[y + 1, enter] - passed[y + 1, leave]
            t2 += passed[y + 2, enter] - passed[y + 2, leave]
            t3 += passed[y + 3, enter] - passed[y + 3, leave]
        elif enter < w:
            t0 += passed[y, enter] - 0.0
            t1 += passed[y + 1, enter] - 0.0
            t2 += passed[y + 2, enter] - 0.0
            t3 += passed[y + 3, enter] - 0.0
        elif leave >= 0:
            t0 += 0.0 - passed[y, leave]
            t1 += 0.0 - passed[y + 1, leave]
            t2 += 0.0 - passed[y + 2, leave]
            t3 += 0.0 - passed[y + 3, leave]
        else:
            t0 += 0.0 - 0.0
            t1 += 0.0 - 0.0
            t2 += 0.0 - 0.0
            t3 += 0.0 - 0.0
        out[y, x] = t0
        out[y + 1, x] = t1
        out[y + 2, x] = t2
        out[y + 3, x] = t3


@jit
def _box_mean_kernel(frame, r, column, passed, out):
    # out = mean of frame (Y, X) over the (2r + 1)^2 box, zeros outside the frame, by running sums along y
    # (into passed), then along x: the operations of scipy.ndimage.uniform_filter(mode="constant") in its order
    # (a running sum that adds entering - leaving, over the side), so the same values to the bit, without its
    # line buffers and temporaries.  The sums along x run four rows side by side and are divided by the side
    # afterwards (the same quotients): 0.17 -> 0.10 ms per 231 x 280 frame at r = 8.
    h, w = frame.shape
    if r == 0:  # scipy leaves a box of one pixel alone (no running sum)
        for y in range(h):
            for x in range(w):
                out[y, x] = frame[y, x]
        return
    size = float(2 * r + 1)
    for x in range(w):
        column[x] = 0.0
    for j in range(min(r + 1, h)):
        for x in range(w):
            column[x] += frame[j, x]
    for x in range(w):
        passed[0, x] = column[x] / size
    for y in range(1, h):
        enter, leave = y + r, y - 1 - r
        if enter < h and leave >= 0:
            for x in range(w):
                column[x] += frame[enter, x] - frame[leave, x]
        elif enter < h:
            for x in range(w):
                column[x] += frame[enter, x] - 0.0
        elif leave >= 0:
            for x in range(w):
                column[x] += 0.0 - frame[leave, x]
        else:
            for x in range(w):
                column[x] += 0.0 - 0.0
        for x in range(w):
            passed[y, x] = column[x] / size
    y = 0
    while y + 4 <= h:
        _running_sum_rows4(passed, r, y, out)
        y += 4
    while y < h:
        _running_sum_row(passed, r, y, out)
        y += 1
    for y in range(h):
        for x in range(w):
            out[y, x] = out[y, x] / size


@jit
def _annulus_mean_kernel(frame, inner, outer, counts, column, passed, box_out, box_in, mean):
    # mean = (box sum within outer - box sum within inner) / max(counts, 1) of one frame (ring_mean's arithmetic)
    h, w = frame.shape
    area_out = float((2 * outer + 1) ** 2)
    area_in = float((2 * inner + 1) ** 2)
    _box_mean_kernel(frame, outer, column, passed, box_out)
    _box_mean_kernel(frame, inner, column, passed, box_in)
    for y in range(h):
        for x in range(w):
            mean[y, x] = (box_out[y, x] * area_out - box_in[y, x] * area_in) / float(max(counts[y, x], 1))


@jit
def _ring_mean_kernel(frames, inner, outer, counts, means):
    n, h, w = frames.shape
    column = np.empty(w)
    passed = np.empty((h, w))
    box_out = np.empty((h, w))
    box_in = np.empty((h, w))
    for t in range(n):
        _annulus_mean_kernel(frames[t], inner, outer, counts, column, passed, box_out, box_in, means[t])


@jit
def _ring_products_kernel(frames, inner, outer, counts, block, cross, power):
    # cross += sum_t x_t * m_t, power += sum_t m_t^2 (m_t the annulus mean of frame t), summed per block of
    # frames from zero and then added, as einsum over blocks of ring_mean's means adds them (the same values
    # to the bit), without the blocks' means ever existing.
    n, h, w = frames.shape
    column = np.empty(w)
    passed = np.empty((h, w))
    box_out = np.empty((h, w))
    box_in = np.empty((h, w))
    frame = np.empty((h, w))
    mean = np.empty((h, w))
    part_cross = np.empty((h, w))
    part_power = np.empty((h, w))
    for t0 in range(0, n, block):
        part_cross[:] = 0.0
        part_power[:] = 0.0
        for t in range(t0, min(t0 + block, n)):
            for y in range(h):
                for x in range(w):
                    frame[y, x] = float(frames[t, y, x])
            _annulus_mean_kernel(frame, inner, outer, counts, column, passed, box_out, box_in, mean)
            for y in range(h):
                for x in range(w):
                    m = mean[y, x]
                    part_cross[y, x] += frame[y, x] * m
                    part_power[y, x] += m * m
        for y in range(h):
            for x in range(w):
                cross[y, x] += part_cross[y, x]
                power[y, x] += part_power[y, x]


def _box_counts(shape, r: int) -> np.ndarray:
    """How many pixels of the (2r + 1)^2 box around each pixel lie inside a frame of ``shape``, (Y, X) int64."""
    h, w = shape
    ys, xs = np.arange(h), np.arange(w)
    along_y = np.minimum(ys + r, h - 1) - np.maximum(ys - r, 0) + 1
    along_x = np.minimum(xs + r, w - 1) - np.maximum(xs - r, 0) + 1
    return np.outer(along_y, along_x).astype(np.int64)


def ring_mean(frames: np.ndarray, inner: int = RING_INNER, outer: int = RING_OUTER) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each pixel's square annulus ``inner < max(|dy|, |dx|) <= outer``, frame by frame.

    Parameters
    ----------
    frames : ndarray, shape (n, Y, X)

    Returns
    -------
    (means, counts) : float64 ndarray (n, Y, X) and int ndarray (Y, X)
        Pixels outside the frame are left out of the mean; ``counts`` is how
        many annulus pixels each mean has (0: none, the mean is 0).
    """
    frames = np.asarray(frames, np.float64)
    counts = _box_counts(frames.shape[1:], outer) - _box_counts(frames.shape[1:], inner)
    means = np.empty(frames.shape, np.float64)
    if frames.size:
        _ring_mean_kernel(frames, int(inner), int(outer), counts, means)
    return means, counts


#: Fewest frames (of differences) on which a region's shared signal is regressed out (:func:`remove_coherent`):
#: fewer leave too little to tell it from the noise.
COHERENT_MIN_FRAMES = 8

#: Float64 values per block of :func:`remove_coherent` (32 MB): bounds the annulus means' memory; the sums of
#: :func:`ring_products` add blocks of this many values.
_RING_BLOCK = 2**22


def ring_products(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel, over frames: sum of x * (annulus mean), sum of (annulus mean)^2, annulus pixel counts.

    The annulus means (:func:`ring_mean`) are made frame by frame and never
    kept; the sums add blocks of frames' sums (the order the values depend on).
    """
    frames = np.asarray(frames)
    n, h, w = frames.shape
    cross, power = np.zeros((h, w)), np.zeros((h, w))
    counts = _box_counts((h, w), RING_OUTER) - _box_counts((h, w), RING_INNER)
    if n and h and w:
        step = max(1, _RING_BLOCK // max(h * w, 1))
        _ring_products_kernel(frames, RING_INNER, RING_OUTER, counts, step, cross, power)
    return cross, power, counts


def add_ring_band(ring: np.ndarray, band: np.ndarray, frame_shape) -> None:
    """Add to ``ring`` (2, P) one segment's band (bins, P) complex spectrum: each pixel's cross power with its
    annulus mean and the annulus mean's power, over the real and the imaginary parts (:func:`ring_products`)."""
    for part in (band.real, band.imag):
        cross, mean_power, _ = ring_products(part.reshape(-1, *frame_shape))
        ring[0] += cross.ravel()
        ring[1] += mean_power.ravel()


def coherent_sums(power: np.ndarray, ring: np.ndarray, dof: float) -> np.ndarray:
    """(4, P) sums for :func:`coherent_noise_std`: band power, the two annulus sums, the band's effective values."""
    return np.vstack([np.reshape(power, (1, -1)), ring, np.full((1, ring.shape[1]), dof)])


@functools.lru_cache(maxsize=32)
def band_dof(n_frames: int, segment: int = WELCH_SEGMENT) -> float:
    """Effective number of independent values in the noise band of ``n_frames`` frames, ``tr(C)^2 / tr(C^2)``.

    ``C`` is the covariance, for white noise, of the real and imaginary parts of
    the band's bins over the Welch segments of :class:`NoiseAccumulator`: the
    Hann window correlates neighbouring bins (-2/3) and the 50 % overlap the
    segments, so a least-squares coefficient fitted to noise takes ``1 / dof``
    of its power, not ``1 / (2 bins)`` (20 frames: 4.7 values in 5 bins;
    1024 frames: 426 in 448).
    """
    segs = _segments(n_frames, segment)
    length = segs[0][1] - segs[0][0]
    window, _, lo, hi = welch_band(length)
    phases = np.exp(-2j * np.pi * np.outer(np.arange(lo, hi), np.arange(length)) / length) * window[None, :]
    rows = np.vstack([phases.real, phases.imag])  # one segment's band, as a map of its frames
    # Segments overlap only their neighbours, by the same offset: C is block tridiagonal with equal blocks.
    same = rows @ rows.T
    trace, square = len(segs) * np.trace(same), len(segs) * np.sum(same * same)
    if len(segs) > 1:
        step = segs[1][0] - segs[0][0]
        if step < length:
            cross = rows[:, step:] @ rows[:, : length - step].T
            square += 2 * (len(segs) - 1) * np.sum(cross * cross)
    return float(trace**2 / square)


def coherent_noise_std(sums: np.ndarray, count: int) -> np.ndarray:
    """Per-pixel noise std from the sums of :attr:`NoiseAccumulator.sums` (4, P) over ``count`` bins.

    The band's power less the part explained by the annulus's band (least
    squares, one real coefficient per pixel), over what noise alone keeps of it
    (``count (1 - 1 / dof)``, ``dof`` the band's effective number of values,
    :func:`band_dof`, summed over the chunks): unbiased for noise independent of
    the annulus's.  Where there is no annulus, the plain estimate.
    """
    power, cross, ring, dof = (np.asarray(a, np.float64) for a in sums)
    if count <= 0:
        return np.zeros_like(power)
    explained = np.divide(cross * cross, ring, out=np.zeros_like(power), where=ring > 0)
    kept = np.where((ring > 0) & (dof > 1), count * (1.0 - 1.0 / np.maximum(dof, 1.0)), count)
    return np.sqrt(np.maximum(power - explained, 0.0) / kept)


def remove_coherent(frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Frames less, per pixel, their least-squares multiple of the annulus mean (:func:`ring_mean`), over time.

    What remains of frame differences is the noise without the fast signals a
    region shares, for measuring its neighbour correlation.  ``out`` (float32, the frames' shape; the frames
    themselves to work in place: each block is read before it is written) receives it.
    """
    frames = np.asarray(frames)
    cross, power, counts = ring_products(frames)
    beta = np.divide(cross, power, out=np.zeros_like(cross), where=(power > 0) & (counts > 0))
    out = np.empty(frames.shape, np.float32) if out is None else out
    step = max(1, _RING_BLOCK // max(frames.shape[1] * frames.shape[2], 1))
    for t0 in range(0, len(frames), step):
        part = np.asarray(frames[t0 : t0 + step], np.float64)
        out[t0 : t0 + step] = part - beta * ring_mean(part)[0]
    return out


def coherent_share(frames: np.ndarray) -> float:
    """Median over pixels of the share of each pixel's power (over frames) that its annulus mean explains.

    On frame differences: about ``1 / n`` for noise alone (``n`` frames), near 1
    under a fast signal a region shares (a one-photon microscope's flicker).
    """
    frames = np.asarray(frames)
    cross, power, counts = ring_products(frames)
    own = np.einsum("tyx,tyx->yx", frames, frames, dtype=np.float64)
    ok = (power > 0) & (own > 0) & (counts > 0)
    return float(np.median(cross[ok] ** 2 / (power[ok] * own[ok]))) if ok.any() else 0.0


#: Width (Gaussian sigma, pixels) of the neighbourhood whose noise levels :func:`pooled_noise` borrows from.
POOL_SIGMA = 3.0


#: Most values the neighbourhood's level counts for: where the variance's relation to the brightness bends (the
#: edges of cells) the prior is off by more than its spread over the frame says, and a long movie's own estimate
#: must win there (a simulated one-photon movie of 1000 frames lost 13 % of its error reduction to an uncapped
#: prior; 2 % at this cap).  A 63-frame movie's own estimate has about 16 values.
POOL_DOF_MAX = 32.0
#: A pixel whose variance is this unlikely (either way) under its neighbours' level keeps its own estimate.
POOL_OUTLIER = 1e-5


def pooled_noise(noise: np.ndarray, mean: np.ndarray, dof: float) -> np.ndarray:
    """Per-pixel noise std with the strength the neighbourhood lends it: a short movie's own estimate is poor.

    A pixel's band estimate has about ``dof`` effective values (:func:`band_dof`; 16 for 63 frames, 4 for 20):
    its variance is off by ``sqrt(2 / dof)`` (35 % for 63 frames), and standardising by it makes the noise
    uneven (1 / chi-square), which the rank test's null does not have.  Neighbouring pixels' noise follows their
    brightness (shot noise) smoothly: the prior is a local linear fit of the variance on the mean (Gaussian
    weights, :data:`POOL_SIGMA`), and each pixel's variance is shrunk towards it with the weight of ``dof0``
    values, ``dof0 = 2 / tau^2``, ``tau^2`` the relative spread of the variances around the prior beyond what
    their sampling explains (empirical Bayes), at most :data:`POOL_DOF_MAX`.  A long movie's own estimates keep
    almost all their weight.

    Parameters
    ----------
    noise, mean : ndarray, shape (Y, X)
        The per-pixel noise std and the mean image; pixels that do not fluctuate (:func:`live_pixels`) neither
        lend nor borrow.
    dof : float
        Effective values behind each pixel's variance.

    Returns
    -------
    ndarray of float64, shape (Y, X)
    """
    from scipy import ndimage

    noise = np.asarray(noise, np.float64)
    var = noise**2
    live = live_pixels(noise, mean)  # dead, saturated or constant pixels stay as they are
    if dof <= 1 or live.sum() < 16 or noise.ndim != 2 or min(noise.shape) < 3:
        return noise
    mean = np.where(live, np.asarray(mean, np.float64), 0.0)
    var0 = np.where(live, var, 0.0)
    w = live.astype(np.float64)

    def local(x):
        return ndimage.gaussian_filter(x, POOL_SIGMA, mode="nearest")

    s1 = np.maximum(local(w), 1e-12)
    m_bar, v_bar = local(w * mean) / s1, local(var0) / s1
    cov = local(w * mean * var0) / s1 - m_bar * v_bar
    spread = local(w * mean * mean) / s1 - m_bar**2
    slope = np.divide(cov, spread, out=np.zeros_like(cov), where=spread > 1e-12 * np.maximum(m_bar**2, 1e-30))
    prior = np.maximum(v_bar + slope * (mean - m_bar), 0.25 * v_bar)
    ratio = np.divide(var, prior, out=np.ones_like(var), where=prior > 0)
    rel = np.clip(ratio[live], 0.0, 4.0)
    tau2 = max(float(np.mean((rel - 1.0) ** 2)) - 2.0 / dof, 1e-3)
    dof0 = min(2.0 / tau2, POOL_DOF_MAX)
    pooled = (dof * var + dof0 * prior) / (dof + dof0)
    # A pixel far outside what sampling allows around its neighbours' level (a saturated pixel's 1e-4, a hot
    # pixel's 10x) is unlike them: it keeps its own.
    from scipy.special import gammaincinv

    high = 2.0 * float(gammaincinv(dof / 2.0, 1.0 - POOL_OUTLIER)) / dof
    low = 2.0 * float(gammaincinv(dof / 2.0, POOL_OUTLIER)) / dof
    own = (ratio < low) | (ratio > high)
    return np.where(live & ~own, np.sqrt(pooled), noise)


class NoiseAccumulator:
    """Accumulate the upper-half-band PSD of pixel time series, chunk by chunk.

    Parameters
    ----------
    n_pixels : int
        Number of pixels (columns of the blocks passed to :meth:`add`).
    segment : int
        Welch segment length in frames.
    frame_shape : (int, int), optional
        The frames' shape (``Y * X == n_pixels``): then :attr:`sums` also holds
        each pixel's band cross power with its annulus mean and the annulus's
        band power, for :meth:`coherent_std`.

    Notes
    -----
    For each periodic-Hann-windowed segment ``x`` of length ``L`` the
    periodogram bin ``|FFT(w x)_k|**2 / sum(w**2)`` has expectation ``sigma**2``
    for white noise of variance ``sigma**2``.  The estimate is the mean of these
    bins over ``L/4 < k <= L/2`` and over all segments: the *mean* (not a log or
    median average) keeps it unbiased.
    """

    def __init__(self, n_pixels: int, segment: int = WELCH_SEGMENT, frame_shape=None):
        self.segment = segment
        self.frame_shape = None if frame_shape is None else (int(frame_shape[0]), int(frame_shape[1]))
        if self.frame_shape is not None and self.frame_shape[0] * self.frame_shape[1] != n_pixels:
            raise ValueError(f"frame_shape {frame_shape} does not hold n_pixels={n_pixels}")
        self.power = np.zeros(n_pixels, dtype=np.float64)
        self.ring = np.zeros((2, n_pixels), dtype=np.float64) if self.frame_shape is not None else None
        self.count = 0
        self.dof = 0.0  # effective values of the band so far (band_dof of each block)

    @property
    def sums(self) -> np.ndarray:
        """(4, P): band power, cross power with the annulus mean, the annulus mean's power (over the window norm),
        and the band's effective number of values (:func:`band_dof`, the same in every column, so that the sums of
        chunks add up)."""
        if self.ring is None:
            raise ValueError("the annulus sums need NoiseAccumulator(frame_shape=...)")
        return coherent_sums(self.power, self.ring, self.dof)

    def add(self, block: np.ndarray) -> None:
        """Add a block of consecutive frames, shape (n, n_pixels), any numeric dtype."""
        import scipy.fft  # here, not at the top: demix and info never estimate noise (scipy.fft: 0.02 CPU-s)

        n = block.shape[0]
        if n < 4:
            return
        segs = _segments(n, self.segment)
        seg_len = segs[0][1] - segs[0][0]
        window, norm, lo, hi = welch_band(seg_len)
        n_pix = block.shape[1]
        # A segment's spectrum is made for a block of pixels at a time (each pixel's transform is its own, the same
        # values), and only its band is kept: the whole segment's windowed frames and spectrum took 34 bytes a pixel
        # and frame (1.1 GB per task for 16 frames of 2048 x 2048).
        columns = min(n_pix, max(1, WELCH_BLOCK_BYTES // (4 * seg_len)))
        buf = np.empty((seg_len, columns), np.float32)
        power = np.zeros(n_pix, np.float64)
        ring = np.zeros_like(self.ring) if self.ring is not None else None
        band = np.empty((hi - lo, n_pix), np.complex64) if ring is not None else None
        for s0, s1 in segs:
            for p0 in range(0, n_pix, columns):
                p1 = min(p0 + columns, n_pix)
                part = buf[:, : p1 - p0]
                _windowed_kernel(block[s0:s1, p0:p1], window, part)
                spec = scipy.fft.rfft(part, axis=0, workers=1, overwrite_x=True)
                _band_power_kernel(spec, lo, hi, power[p0:p1])
                if band is not None:
                    band[:, p0:p1] = spec[lo:hi]
            if ring is not None:
                add_ring_band(ring, band, self.frame_shape)
            self.count += hi - lo
        self.power += power / norm
        if ring is not None:
            self.ring += ring / norm
            self.dof += band_dof(n, self.segment)

    def std(self) -> np.ndarray:
        """Per-pixel noise standard deviation (float64); zeros where nothing was added."""
        if self.count == 0:
            return np.zeros_like(self.power)
        return np.sqrt(self.power / self.count)

    def coherent_std(self) -> np.ndarray:
        """Per-pixel noise std without the signals each pixel shares with its annulus (:func:`coherent_noise_std`)."""
        return coherent_noise_std(self.sums, self.count)


@jit
def _chunk_statistics_kernel(block, bin_size, rows, total, fit, even, first_even):
    # One pass over a (n, P) block of any dtype: per-pixel sums into ``total``
    # (float64), and the mean of each bin of ``bin_size`` frames into fit[rows[j]]
    # when rows[j] >= 0.  Returns the first frame with a non-finite value, or -1.
    # With ``even`` of P values: the sums of frames first_even, first_even + 2, ... added to it too, frame
    # after frame (as numpy's block[first_even::2].sum(axis=0, dtype=float64) adds them).
    n, n_p = block.shape
    n_bins = n // bin_size
    acc = np.empty(n_p, np.float64)
    with_even = even.size == n_p
    bad = -1
    for j in range(n_bins + 1):
        f0 = j * bin_size
        f1 = min(f0 + bin_size, n)
        if f0 >= f1:
            break
        acc[:] = 0.0
        for t in range(f0, f1):
            if with_even and t % 2 == first_even:
                for p in range(n_p):
                    x = np.float64(block[t, p])
                    acc[p] += x
                    even[p] += x
            else:
                for p in range(n_p):
                    acc[p] += block[t, p]
        for p in range(n_p):
            total[p] += acc[p]
        if bad < 0:
            for p in range(n_p):
                if not np.isfinite(acc[p]):
                    for t in range(f0, f1):
                        for q in range(n_p):
                            if not np.isfinite(np.float64(block[t, q])):
                                bad = t
                                break
                        if bad >= 0:
                            break
                    break
        if j < n_bins and rows[j] >= 0:
            r = rows[j]
            for p in range(n_p):
                fit[r, p] = acc[p] / (f1 - f0)
    return bad


def chunk_statistics(block, bin_size, rows, total, fit, even=None, first_even: int = 0) -> int:
    """Sums and binned frames of one chunk (see :func:`_chunk_statistics_kernel`).

    Parameters
    ----------
    block : ndarray, shape (n, P)
        Frames of the chunk (any numeric dtype); the chunk starts on a bin edge.
    bin_size : int
    rows : ndarray of int64, shape (n // bin_size,)
        Row of the fit buffer for each complete bin, -1 to skip it.
    total : ndarray of float64, shape (P,)
        Per-pixel sums, updated in place.
    fit : ndarray of float32, shape (rows, P)
        Fit buffer, rows written in place.
    even : ndarray of float64, shape (P,), optional
        Per-pixel sums of the frames ``first_even, first_even + 2, ...`` (the movie's frames of even index),
        updated in place in the same pass (a pass of their own cost 0.3 CPU-s per 2.6 GB of uint16).

    Returns
    -------
    int
        First frame (within the chunk) holding NaN or inf, or -1.
    """
    even = np.zeros(0) if even is None else even
    return int(_chunk_statistics_kernel(block, int(bin_size), rows, total, fit, even, int(first_even)))


@jit
def _segment_band_power_kernel(spec, lo, hi):
    # sum over segments s, then bins lo <= k < hi, of |spec[k, s]|**2: the order in which
    # NoiseAccumulator.add adds them for one pixel, so the two agree to the last bit.
    power = 0.0
    for s in range(spec.shape[1]):
        for k in range(lo, hi):
            z = spec[k, s]
            power += z.real * z.real + z.imag * z.imag
    return power


@functools.lru_cache(maxsize=8)
def _welch_plan(n_frames: int, segment: int):
    segs = _segments(n_frames, segment)
    seg_len = segs[0][1] - segs[0][0]
    window, norm, lo, hi = welch_band(seg_len)
    index = np.array([s0 for s0, _ in segs])[None, :] + np.arange(seg_len)[:, None]  # (seg_len, n_segments)
    return index, window[:, None], norm, lo, hi


def noise_std_vector(v: np.ndarray, segment: int = WELCH_SEGMENT) -> float:
    """:func:`noise_std_psd` of one time series (T,), equal to it to the last bit, with all segments in one FFT.

    The PMD solver calls this once per candidate component: the general path costs
    several Python-level FFT calls per call.
    """
    import scipy.fft

    v = np.asarray(v, np.float64)
    n = v.shape[0]
    if n < 4:
        return 0.0
    index, window, norm, lo, hi = _welch_plan(n, segment)
    buf = (v[index] * window).astype(np.float32)  # as _windowed_kernel: float64 products rounded to float32
    spec = scipy.fft.rfft(buf, axis=0, workers=1, overwrite_x=True)
    count = (hi - lo) * index.shape[1]
    return float(np.sqrt(_segment_band_power_kernel(spec, lo, hi) / norm / count))


def noise_std_psd(movie: np.ndarray, segment: int = WELCH_SEGMENT) -> np.ndarray:
    """Per-pixel noise std of a movie from the upper half band of its PSD.

    Parameters
    ----------
    movie : ndarray, shape (T, ...)
        Time along the first axis; any trailing shape.
    segment : int
        Welch segment length (frames); shortened to ``T`` for short movies.

    Returns
    -------
    ndarray, shape movie.shape[1:], float64
    """
    movie = np.asarray(movie)
    flat = movie.reshape(movie.shape[0], -1)
    acc = NoiseAccumulator(flat.shape[1], segment)
    acc.add(flat)
    return acc.std().reshape(movie.shape[1:])


def safe_scale(noise: np.ndarray) -> np.ndarray:
    """Noise std usable as a divisor: dead or constant pixels get 1, never 0 or NaN.

    A pixel whose noise is zero (dead, saturated, clipped) has no fluctuation to
    standardise; dividing its zero deviation by 1 keeps it at zero.  (A stuck pixel's
    noise of float32 roundings, not live given its level, keeps its tiny scale: the
    store's mean image is quantized in steps of the scale, and stays exact there.)
    """
    noise = np.asarray(noise, dtype=np.float64)
    return np.where(live_pixels(noise), noise, 1.0).astype(np.float32)


#: A pixel whose noise is below this share of its level (``mean``) is constant: a few float32 roundings of a hot
#: pixel stuck at 65535 (its noise estimate 0.0033 = 5e-8 of its level, after the coherent part is removed), not
#: light.  Real noise is far above it (shot noise: 1e-3 of the level at 1e6 photons; the four real movies of
#: ../shared: 8e-4 and more).
FLOAT_NOISE_SHARE = 2e-7


def live_pixels(noise: np.ndarray, level: np.ndarray | None = None) -> np.ndarray:
    """Pixels that fluctuate: finite noise above a millionth of the median positive noise and, given the pixels'
    ``level`` (mean image), above :data:`FLOAT_NOISE_SHARE` of it."""
    noise = np.asarray(noise, dtype=np.float64)
    positive = noise[np.isfinite(noise) & (noise > 0)]
    floor = 1e-6 * float(np.median(positive)) if positive.size else 1.0
    if level is not None:
        floor = np.maximum(floor, FLOAT_NOISE_SHARE * np.abs(np.asarray(level, np.float64)).reshape(noise.shape))
    return np.isfinite(noise) & (noise > floor)


#: Lags (pixels) at which :func:`noise_lag_correlation` measures the noise's correlation along each axis.
NOISE_LAGS = 8


#: Float32 bytes of the frame differences :func:`_noise_differences` holds: fewer pairs (at least
#: :data:`MIN_NOISE_PAIRS`) where 64 would take more (frames over 1024 x 1024 pixels; each pair still gives millions
#: of values), so that its memory does not grow with the frame.
NOISE_PAIRS_BYTES = 256 * 2**20
MIN_NOISE_PAIRS = 16
#: Float32 bytes of the frames one read of :func:`_noise_differences` takes (both frames of some pairs).
NOISE_READ_BYTES = 64 * 2**20


def _noise_differences(frames: np.ndarray, max_pairs: int) -> np.ndarray | None:
    """Differences of (at most ``max_pairs``) consecutive frame pairs, less what each pixel shares with its annulus."""
    pixels = int(frames.shape[1]) * int(frames.shape[2])
    max_pairs = min(max_pairs, max(MIN_NOISE_PAIRS, NOISE_PAIRS_BYTES // (4 * max(pixels, 1))))
    n = min(len(frames) - 1, max_pairs)
    if n < 1 or frames.shape[1] < 2 or frames.shape[2] < 2:
        return None
    step = max((len(frames) - 1) // n, 1)
    idx = np.arange(0, step * n, step)
    # Both frames of some pairs in one read (a scratch buffer's frames are gathered by runs of rows: half the
    # reads), as many pairs as NOISE_READ_BYTES holds: all 64 at once held 128 frames and the reader's copies of
    # them beside the differences (2 GB for 1024 x 1024 frames).  The same values either way.
    per_read = max(1, NOISE_READ_BYTES // (8 * pixels))
    d = None
    for a in range(0, n, per_read):
        b = min(a + per_read, n)
        pairs = frames[np.concatenate([idx[a:b], idx[a:b] + 1])]
        if d is None:
            d = np.empty((n, *pairs.shape[1:]), pairs.dtype)
        np.subtract(pairs[b - a :], pairs[: b - a], out=d[a:b])
        del pairs
    d -= d.mean(axis=0)
    if n >= COHERENT_MIN_FRAMES:
        # A fast signal shared by a region (flicker, background) is not noise: leave out what each
        # pixel's difference shares with its annulus (a 1-p movie's flicker read 0.98 here).
        d = remove_coherent(d, out=d if d.dtype == np.float32 else None)
    return d


@jit
def _lag_products_kernel(d, lags, cross_y, cross_x, rows, columns):
    # One pass over d (n, Y, X): cross_y[k - 1] += d[t, i, j] d[t, i + k, j] and cross_x[k - 1] += d[t, i, j]
    # d[t, i, j + k] for k = 1..lags, rows[i] and columns[j] += d[t, i, j]^2, all in float64.
    n, h, w = d.shape
    for t in range(n):
        for i in range(h):
            last_y = min(lags, h - 1 - i)
            for j in range(w):
                x = np.float64(d[t, i, j])
                square = x * x
                rows[i] += square
                columns[j] += square
                for k in range(1, last_y + 1):
                    cross_y[k - 1] += x * d[t, i + k, j]
                for k in range(1, min(lags, w - 1 - j) + 1):
                    cross_x[k - 1] += x * d[t, i, j + k]


def _lag_correlations(d: np.ndarray, lags: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Correlation of ``d`` (n, Y, X) with itself shifted by 1..``lags`` pixels along y and along x: at lag k
    along y, ``<a, b> / (|a| |b|)`` of ``a = d[:, :-k]`` and ``b = d[:, k:]`` (0 where a norm is 0 or the frame
    is not longer than k).  One pass over ``d`` (:func:`_lag_products_kernel`, float64 sums): the sixteen
    products and norms of contiguous copies that it replaced took 0.11 CPU-s on neurofinder_dev's 64 frames."""
    n, h, w = d.shape
    cross_y, cross_x = np.zeros(lags), np.zeros(lags)
    rows, columns = np.zeros(h), np.zeros(w)
    _lag_products_kernel(np.ascontiguousarray(d), int(lags), cross_y, cross_x, rows, columns)
    out = ([], [])
    for axis, (cross, sums, size) in enumerate(((cross_y, rows, h), (cross_x, columns, w))):
        for k in range(1, int(lags) + 1):
            if size <= k:
                out[axis].append(0.0)
                continue
            den = np.sqrt(float(np.sum(sums[: size - k])) * float(np.sum(sums[k:])))
            out[axis].append(float(cross[k - 1] / den) if den > 0 else 0.0)
    return tuple(out[0]), tuple(out[1])


def noise_neighbour_correlation(frames: np.ndarray, max_pairs: int = 64) -> tuple[float, float]:
    """Correlation of the noise between vertical and horizontal neighbours.

    Estimated on first differences of consecutive frames, where slow signal
    cancels and the noise remains.  Motion correction, resampling or a detector's
    point spread make real noise spatially correlated; the rank test's null must
    then be simulated with the same correlation (:mod:`pmdcompress.solver.null`).

    Parameters
    ----------
    frames : ndarray, shape (L, Y, X)
        Consecutive (or binned) frames, standardised or not.

    Returns
    -------
    (rho_y, rho_x) : floats
    """
    rho_y, rho_x = noise_lag_correlation(frames, max_pairs, lags=1)
    return rho_y[0], rho_x[0]


def noise_lag_correlation(frames: np.ndarray, max_pairs: int = 64,
                          lags: int | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The noise's correlation at distances 1..``lags`` pixels along y and along x.

    As :func:`noise_neighbour_correlation` (whose two numbers are the first of
    each tuple), further out: a sensor's point spread, binning or interpolation
    can correlate the noise over several pixels (a real microendoscope clip:
    0.61, 0.43, 0.32, 0.24 along y), and a null simulated with the first lag
    alone is rougher than such noise, so that its smooth parts pass the rank test.
    Lags of 4 px and more read somewhat low (0.18 for 0.23): the annulus
    regression that leaves out a region's shared signal takes part of them.

    Returns
    -------
    (rho_y, rho_x) : two tuples of ``lags`` (default :data:`NOISE_LAGS`) floats (zeros where the frames are too
    small)
    """
    lags = NOISE_LAGS if lags is None else lags
    d = _noise_differences(frames, max_pairs)
    if d is None:
        return (0.0,) * int(lags), (0.0,) * int(lags)
    return _lag_correlations(d, int(lags))


#: The two lag-0 extrapolations of :func:`noise_lag_correlation_extrapolated` must agree to this at the first
#: lag (both axes), else the plain correlation of differences is kept.
EXTRAPOLATION_AGREEMENT = 0.1
#: ... and the plain correlation must read more than this above the extrapolated one at the first lag (mean of
#: the two axes): below it, the change is within the extrapolation's own error (noise alone: 0.01-0.03 low,
#: tests/test_preprocess.py), and a null made from a lower correlation lets more noise components pass (the
#: simulator's correlated one-photon cases lost 2-4 % of their true error reduction to shifts of 0.007-0.014).
EXTRAPOLATION_MARGIN = 0.05


def _noise_difference_runs(frames: np.ndarray, max_runs: int) -> np.ndarray | None:
    """(3, n, Y, X): the consecutive differences ``f[t+1] - f[t]``, ``f[t+2] - f[t+1]``, ``f[t+3] - f[t+2]`` of
    (at most ``max_runs``) runs of four frames spread over the movie, less what each pixel shares with its annulus
    (one fit over all of them)."""
    n = min(len(frames) - 3, max_runs)
    if n < 1 or frames.shape[1] < 2 or frames.shape[2] < 2:
        return None
    step = max((len(frames) - 3) // n, 1)
    idx = np.arange(0, step * n, step)
    f = [np.asarray(frames[idx + k], np.float32) for k in range(4)]
    d = np.concatenate([f[k + 1] - f[k] for k in range(3)])
    d -= d.mean(axis=0)
    if n >= COHERENT_MIN_FRAMES:
        d = remove_coherent(d)
    return d.reshape(3, n, *d.shape[1:])


def _extrapolated_corr(d: np.ndarray, a: tuple, b: tuple) -> tuple[float, float] | None:
    """Pooled correlation of the pixels ``a`` and ``b`` (index tuples into a frame) extrapolated to lag 0 in
    time, two ways: ``-g1`` and ``-g1 + g2``, ``g_k`` the lag-``k`` cross-covariance of the differences ``d``
    (:func:`_noise_difference_runs`).  None where a variance reads <= 0."""
    def g(k, p, q):
        terms = [np.vdot(d[i][(slice(None), *p)].astype(np.float64).ravel(), d[i + k][(slice(None), *q)].ravel())
                 + np.vdot(d[i + k][(slice(None), *p)].astype(np.float64).ravel(), d[i][(slice(None), *q)].ravel())
                 for i in range(3 - k)]
        return float(np.sum(terms)) / (2 * len(terms))

    out = []
    for quadratic in (False, True):
        def cov(p, q, quadratic=quadratic):
            return -g(1, p, q) + (g(2, p, q) if quadratic else 0.0)

        va, vb = cov(a, a), cov(b, b)
        if va <= 0 or vb <= 0:
            return None
        out.append(cov(a, b) / np.sqrt(va * vb))
    return out[0], out[1]


def noise_lag_correlation_extrapolated(frames: np.ndarray, max_pairs: int = 64, lags: int | None = None,
                                       plain=None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """:func:`noise_lag_correlation` with the variances and covariances of the differences extrapolated to lag 0
    in time, where that extrapolation holds.

    A difference holds the noise twice and the signal's increment once; the
    increments of a one-photon movie's cells are shared by their neighbours and
    raise the plain correlation of differences above the noise's.  With ``g_k``
    the lag-``k`` covariance of consecutive differences, white noise of
    covariance ``c`` gives ``g1 = -c`` and ``g2 = 0``; a jump (one difference)
    gives nothing to either, an increment that continues over three frames the
    same to both.  So ``-g1 + g2`` is the noise's covariance under both kinds of
    change (``-g1``, the photon split's form, counts continuing increments
    against it).  The two must agree at the first lag to within
    :data:`EXTRAPOLATION_AGREEMENT` (a movie whose differences hold anything else,
    such as inscopix_1p_part2's fine-grained flicker, reads ``-g1 + g2`` < 0
    there), and the plain correlation must read more than
    :data:`EXTRAPOLATION_MARGIN` above it (signal counted as noise): then the
    profile is ``-g1 + g2``'s, else the plain one.

    On simulations copying inscopix_1p_part2 (``benchmarks/bench_robust_reference.py``,
    true 0.61 / 0.59 at 1 px along y / x) the plain form read 0.65 / 0.63,
    0.71 / 0.69 and 0.82 / 0.81 as the cells grow larger and more active, this
    one 0.62 / 0.60, 0.62 / 0.59 and 0.62 / 0.60.  ``plain``: that of
    :func:`noise_lag_correlation` with the same arguments, when already computed.
    """
    lags = NOISE_LAGS if lags is None else lags
    plain = noise_lag_correlation(frames, max_pairs, lags) if plain is None else plain
    d = _noise_difference_runs(frames, max_pairs)
    if d is None:
        return plain
    out = ([], [])
    for lag in range(1, int(lags) + 1):
        for axis in range(2):
            if d.shape[2 + axis] <= lag:
                out[axis].append(0.0)
                continue
            a, b = [slice(None)] * 2, [slice(None)] * 2
            a[axis], b[axis] = slice(0, -lag), slice(lag, None)
            both = _extrapolated_corr(d, tuple(a), tuple(b))
            if both is None or (lag == 1 and abs(both[0] - both[1]) > EXTRAPOLATION_AGREEMENT):
                return plain
            out[axis].append(float(both[1]))
    if (plain[0][0] + plain[1][0] - out[0][0] - out[1][0]) / 2 <= EXTRAPOLATION_MARGIN:
        return plain
    return tuple(out[0]), tuple(out[1])


def trend_basis(frames: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation weights, shape (len(frames), len(knots)).

    ``trend(t) = trend_basis(t, knots) @ trend_values``: linear between knots,
    constant beyond the first and last (docs/format.md, ``trend``).
    """
    frames = np.asarray(frames, dtype=np.float64)
    eye = np.eye(len(knots))
    return np.stack([np.interp(frames, knots, eye[j]) for j in range(len(knots))], axis=1).astype(np.float32)


#: Gaussian widths (pixels) tried for the smoothing of the mean image (:func:`mean_correction`).
MEAN_WIDTHS = (0.5, 0.7, 1.0, 1.4, 2.0)
#: Least error the smoothed mean must save, per frame, as a share of the movie's noise variance (summed over
#: pixels): the correction costs the store one (Y, X) array.  A movie of T frames keeps ``1 / T`` of its noise
#: in its mean, so movies of more than ``1 / MEAN_MIN_GAIN`` frames never pass (:func:`mean_correction_possible`).
MEAN_MIN_GAIN = 1e-3
#: The correction is rounded to a power of two at most this share of the mean's noise std (the rounding adds
#: at most 1/12 of its square, 0.03 % of that noise's variance): whole multiples of a power of two leave the
#: low mantissa bits of its float32 values zero, which the store's compressor then packs (a third of the bytes).
MEAN_STEP_SHARE = 1.0 / 16.0


def mean_correction_possible(n_frames: int) -> bool:
    """Whether a movie of ``n_frames`` can gain :data:`MEAN_MIN_GAIN` from its mean's smoothing at all (the
    smoothing removes at most the mean's noise, ``1 / T`` of the noise): longer movies skip its pass."""
    return n_frames >= 4 and 1.0 / n_frames >= MEAN_MIN_GAIN


def mean_correction(even: np.ndarray, odd: np.ndarray, n_even: int, n_odd: int) -> tuple[float, np.ndarray | None]:
    """A smoothing of the mean image where it lowers the denoised movie's error: ``(width, smoothed - mean)``.

    The stored per-pixel mean of ``T`` frames keeps ``1 / T`` of the noise at
    every pixel and in every frame of the denoised movie: most of the error of a
    short movie (a 40-frame two-photon simulation: 0.025 of the 0.035 of the
    noise's energy that its error holds).  The means of the even and of the odd
    frames hold the same static image and independent noises (noise independent
    between frames), so each Gaussian smoothing ``G`` of the mean ``m`` is
    scored against the truth's mean ``mu`` without a noise model (cross-validation):
    ``<(G - 1) m_e, (G - 1) m_o>`` estimates the structure it blurs,
    ``||(G - 1) mu||^2``, and with ``d = m_e - m_o``, ``f = n_e n_o / T^2``,
    ``f ||G d||^2`` the noise it keeps, ``E||G (m - mu)||^2`` (``f ||d||^2``
    without smoothing).  The width of :data:`MEAN_WIDTHS` that minimises their
    sum is taken where it saves at least :data:`MEAN_MIN_GAIN` of the noise
    variance a frame holds (``T f ||d||^2``), else none: ``(0.0, None)``.  On
    bench_robust's simulated cases this estimate is within a few % of the true
    error of every width.

    Parameters
    ----------
    even, odd : ndarray, shape (Y, X)
        The per-pixel means of the even and of the odd frames.
    n_even, n_odd : int
        Their frame counts.
    """
    from scipy import ndimage

    even = np.asarray(even, np.float64)
    odd = np.asarray(odd, np.float64)
    n_frames = n_even + n_odd
    if even.ndim != 2 or min(even.shape) < 3 or min(n_even, n_odd) < 1:
        return 0.0, None
    share = n_even * n_odd / n_frames**2
    difference = even - odd
    unsmoothed = share * float(np.sum(difference**2))  # the mean's own noise
    mean = (n_even * even + n_odd * odd) / n_frames
    best, best_width, best_image = unsmoothed, 0.0, None
    for width in MEAN_WIDTHS:
        def smooth(image, width=width):
            return ndimage.gaussian_filter(image, width, mode="nearest", truncate=4.0)

        blurred = float(np.sum((smooth(even) - even) * (smooth(odd) - odd)))
        risk = blurred + share * float(np.sum(smooth(difference) ** 2))
        if risk < best:
            best, best_width, best_image = risk, width, smooth(mean)
    if best_image is None or unsmoothed - best < MEAN_MIN_GAIN * n_frames * unsmoothed:
        return 0.0, None
    step = 2.0 ** np.floor(np.log2(MEAN_STEP_SHARE * np.sqrt(unsmoothed / even.size)))
    return best_width, (np.round((best_image - mean) / step) * step).astype(np.float32)
