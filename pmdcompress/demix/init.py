"""Initialisation: a local correlation image of the denoised movie, seeds at its peaks.

The correlation image is computed tile by tile on the spatially high-passed,
time-binned movie ``Uh @ Vb``.  Each pixel's trace is thresholded at its median
plus ``mad_threshold`` robust standard deviations (only transients remain), and
the image holds the mean correlation of each pixel with its 8 neighbours.
Neuropil and the negative surround of the high-pass filter drop out; somata stay
bright.  Seeds are local maxima of the image; the first footprints are the
watershed basins of the seeds inside the bright part of the image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .._numba import jit
from ..parallel import map_tasks
from ..preprocess import median_mad_of_sorted
from .factors import gaussian_filter, render_tile


def robust_samples(x, step):
    """Every ``step``-th sample of each row of ``x`` (pixels, T), each row sorted: what
    :func:`_robust_normalize_kernel` takes its medians from.

    numpy's sort of the rows (vectorised: x86-simd-sort where the CPU has AVX2 or AVX-512) sorts a 66 x 66 tile's
    rows of 67 samples in about 1 ms, where an insertion sort per row took 5.5 ms, half of the robust
    normalisation (a 512 x 512 field: 0.6 CPU-s of its two correlation images).  The sorted values are the same
    floats in the same order (ties are equal values), so the medians are those of any other sort."""
    return np.sort(x[:, ::step], axis=1)


@jit
def _robust_normalize_kernel(x, samples, mad_threshold, peak):
    """In place, for each row of ``x`` (pixels, T): keep the excess over median + th * MAD,
    centre it and scale it to unit norm (rows without excess become 0).

    Median and MAD are taken over the row's sorted ``samples`` (:func:`robust_samples`: every ``step``-th
    sample); ``peak[i]`` receives the row's maximum over its median (before any change).
    """
    n, t = x.shape
    buf = np.empty(samples.shape[1], np.float64)
    for i in range(n):
        for k in range(buf.size):
            buf[k] = samples[i, k]
        med, mad = median_mad_of_sorted(buf)
        mad *= 1.4826
        cut = med + mad_threshold * mad
        # one pass for the peak and the excess (the median and MAD come from the samples alone)
        top = x[i, 0]
        s = 0.0
        for k in range(t):
            xk = x[i, k]
            if xk > top:
                top = xk
            v = xk - cut
            v = v if v > 0.0 else 0.0
            x[i, k] = v
            s += v
        peak[i] = top - med
        mu = s / t
        ss = 0.0
        for k in range(t):
            v = x[i, k] - mu
            x[i, k] = v
            ss += v * v
        scale = 1.0 / np.sqrt(ss) if ss > 0.0 else 0.0
        for k in range(t):
            x[i, k] *= scale


@jit
def _neighbour_correlation_kernel(x, out):
    """``out[i, j]`` = mean over the 8 neighbours (inside the tile) of ``x[i, j] . x[i', j']``.

    ``x``: (h, w, T) rows of unit norm (or zero); ``out``: (h, w).  Each pair is
    computed once and credited to both pixels.  The four forward neighbours' dot
    products are accumulated in one sweep over T (four independent sums, each in
    the order of its own loop, so the result is that of one loop per pair).
    """
    h, w, t = x.shape
    acc = np.zeros((h, w), np.float64)
    cnt = np.zeros((h, w), np.int64)
    for i in range(h):
        down = i + 1 < h
        for j in range(w):
            right = j + 1 < w
            left = j >= 1
            s_right = 0.0
            s_down_left = 0.0
            s_down = 0.0
            s_down_right = 0.0
            if down and left and right:
                for k in range(t):
                    v = x[i, j, k]
                    s_right += v * x[i, j + 1, k]
                    s_down_left += v * x[i + 1, j - 1, k]
                    s_down += v * x[i + 1, j, k]
                    s_down_right += v * x[i + 1, j + 1, k]
            else:
                for k in range(t):
                    v = x[i, j, k]
                    if right:
                        s_right += v * x[i, j + 1, k]
                    if down and left:
                        s_down_left += v * x[i + 1, j - 1, k]
                    if down:
                        s_down += v * x[i + 1, j, k]
                    if down and right:
                        s_down_right += v * x[i + 1, j + 1, k]
            if right:
                acc[i, j] += s_right
                acc[i, j + 1] += s_right
                cnt[i, j] += 1
                cnt[i, j + 1] += 1
            if down and left:
                acc[i, j] += s_down_left
                acc[i + 1, j - 1] += s_down_left
                cnt[i, j] += 1
                cnt[i + 1, j - 1] += 1
            if down:
                acc[i, j] += s_down
                acc[i + 1, j] += s_down
                cnt[i, j] += 1
                cnt[i + 1, j] += 1
            if down and right:
                acc[i, j] += s_down_right
                acc[i + 1, j + 1] += s_down_right
                cnt[i, j] += 1
                cnt[i + 1, j + 1] += 1
    for i in range(h):
        for j in range(w):
            out[i, j] = acc[i, j] / cnt[i, j] if cnt[i, j] > 0 else 0.0


def correlation_image(u, v, dims, *, mad_threshold=2.0, tile=64, median_samples=64, workers=None,
                      return_peak=False):
    """Local correlation image of ``u @ v`` (pixels x T), thresholded traces, shape ``dims``.

    Parameters
    ----------
    u : scipy.sparse.csr_matrix, shape (Y*X, K)
        Spatial factors (e.g. high-passed).
    v : ndarray, shape (K, T)
        Temporal factors (e.g. binned).
    dims : tuple of int
        ``(Y, X)``.
    mad_threshold : float, optional
        Each trace keeps only its excess over median + ``mad_threshold`` * 1.4826 MAD.
    tile : int, optional
        Tile side in pixels (the tile plus a 1-pixel halo is expanded at a time).
    median_samples : int, optional
        At most this many frames estimate each pixel's median and MAD.
    workers : int, optional
        Threads over tiles (default ``$PMD_NUM_WORKERS`` or the number of cores).
    return_peak : bool, optional
        Also return the peak image: each pixel's maximum over its median.

    Returns
    -------
    ndarray of float32, shape ``dims`` (and the peak image with ``return_peak``)
    """
    height, width = dims
    t = v.shape[1]
    step = max(1, t // median_samples)
    out = np.zeros(dims, np.float32)
    peak_image = np.zeros(dims, np.float32)

    def one(corner):
        y0, x0 = corner
        y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
        a0, a1 = max(y0 - 1, 0), min(y1 + 1, height)
        b0, b1 = max(x0 - 1, 0), min(x1 + 1, width)
        m = render_tile(u, v, dims, a0, a1, b0, b1, pixel_major=True)
        peak = np.empty(m.shape[:2], np.float32)
        rows = m.reshape(-1, t)
        _robust_normalize_kernel(rows, robust_samples(rows, step), float(mad_threshold), peak.reshape(-1))
        c = np.empty(m.shape[:2], np.float32)
        _neighbour_correlation_kernel(m, c)
        inner = (slice(y0 - a0, y0 - a0 + (y1 - y0)), slice(x0 - b0, x0 - b0 + (x1 - x0)))
        out[y0:y1, x0:x1] = c[inner]
        peak_image[y0:y1, x0:x1] = peak[inner]

    corners = [(y0, x0) for y0 in range(0, height, tile) for x0 in range(0, width, tile)]
    map_tasks(one, corners, workers=workers)
    return (out, peak_image) if return_peak else out


def find_seeds(image, *, threshold, min_distance=3, exclude=None, border=0) -> np.ndarray:
    """Local maxima of ``image`` above ``threshold``, brightest first, shape (n, 2) as (y, x).

    Peaks closer than ``min_distance`` to a brighter one, inside ``exclude`` (a
    boolean image) or within ``border`` pixels of the edge are dropped.
    """
    size = 2 * int(min_distance) + 1
    peak = (image == ndimage.maximum_filter(image, size=size, mode="nearest")) & (image > threshold)
    if exclude is not None:
        peak &= ~exclude
    if border > 0:
        peak[:border] = peak[-border:] = False
        peak[:, :border] = peak[:, -border:] = False
    ys, xs = np.nonzero(peak)
    order = np.lexsort((xs, ys, -image[ys, xs]))  # brightest first; ties by position
    ys, xs = ys[order], xs[order]
    keep = []
    taken = np.zeros(image.shape, bool)
    for y, x in zip(ys, xs, strict=True):
        if taken[y, x]:
            continue
        keep.append((y, x))
        taken[max(y - min_distance, 0) : y + min_distance + 1, max(x - min_distance, 0) : x + min_distance + 1] = True
    return np.array(keep, dtype=np.int64).reshape(-1, 2)


def seed_regions(image, seeds, *, low, max_radius) -> np.ndarray:
    """Label image: the watershed basin of each seed inside ``image > low``, within ``max_radius``.

    Label ``i + 1`` belongs to ``seeds[i]``; 0 is unassigned.
    """
    markers = np.zeros(image.shape, np.int32)
    if len(seeds) == 0:
        return markers
    markers[seeds[:, 0], seeds[:, 1]] = np.arange(1, len(seeds) + 1)
    scaled = np.clip(image, 0.0, 1.0)
    level = np.round((1.0 - scaled) * 1000).astype(np.uint16)
    labels = ndimage.watershed_ift(level, markers)
    labels[image <= low] = 0
    # Keep each basin's part near its seed and connected to it.
    out = np.zeros_like(labels)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    for i, (y, x) in enumerate(seeds):
        y0, y1 = max(y - max_radius, 0), min(y + max_radius + 1, image.shape[0])
        x0, x1 = max(x - max_radius, 0), min(x + max_radius + 1, image.shape[1])
        box = labels[y0:y1, x0:x1] == i + 1
        box &= (yy[y0:y1, x0:x1] - y) ** 2 + (xx[y0:y1, x0:x1] - x) ** 2 <= max_radius**2
        comp, _ = ndimage.label(box)
        lab = comp[y - y0, x - x0]
        if lab == 0:
            out[y, x] = i + 1
            continue
        region = out[y0:y1, x0:x1]
        region[comp == lab] = i + 1
    return out


def seed_score(image, *, size) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed ``image`` and its contrast over the local median (window about ``size`` pixels).

    Broad regions of high correlation (a patch-wide residual, a blood vessel's
    shadow) have a high median and so little contrast; somata stand out.
    """
    smooth = gaussian_filter(image.astype(np.float32), 1.0)
    step = max(1, int(size) // 6)
    small = image[::step, ::step]
    med = ndimage.median_filter(small, size=max(3, int(round(size / step)) | 1), mode="nearest")
    level = ndimage.zoom(med, step, order=1, mode="nearest", grid_mode=True)
    h, w = image.shape
    if level.shape[0] < h or level.shape[1] < w:
        level = np.pad(level, ((0, max(h - level.shape[0], 0)), (0, max(w - level.shape[1], 0))), mode="edge")
    return smooth, smooth - level[:h, :w]
