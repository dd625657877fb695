"""Plain numpy twins of the numba kernels and of the store's model (slow, obvious).

Written from each kernel's contract, vectorised, never from its loops.
"""

from __future__ import annotations

import numpy as np


def spatial_roughness(u, patch_shape):
    h, w = patch_shape
    out = []
    for c in range(u.shape[1]):
        img = u[:, c].reshape(h, w).astype(np.float64)
        tv = np.abs(np.diff(img, axis=0)).sum() + np.abs(np.diff(img, axis=1)).sum()
        n_edges = h * (w - 1) + w * (h - 1)
        l1 = np.abs(img).sum()
        out.append(np.inf if (l1 == 0 or n_edges == 0) else (tv / n_edges) / (l1 / (h * w)))
    return np.array(out)


def temporal_roughness(v):
    v = np.asarray(v, np.float64)
    out = []
    for c in range(v.shape[1]):
        x = v[:, c]
        l1 = np.abs(x).sum()
        out.append(np.inf if (l1 == 0 or len(x) < 3) else np.abs(np.diff(x, 2)).sum() / l1)
    return np.array(out)


def dense_model(store):
    """The whole movie from a store's factors, straight from docs/format.md."""
    t, y, x = store.shape
    h, w = store.patch_shape
    out = np.zeros((t, y, x), np.float64)
    temporal = np.asarray(store.temporal[...], np.float64)
    for p, (y0, x0) in enumerate(store.patch_origins):
        k0, k1 = store.component_offsets[p], store.component_offsets[p + 1]
        u = store.spatial[:, k0:k1].astype(np.float64)
        patch = (u @ temporal[k0:k1]).T.reshape(t, h, w)
        weight = store.weights_y[p][:, None] * store.weights_x[p][None, :]
        out[:, y0 : y0 + h, x0 : x0 + w] += weight * patch
    model = store.mean + store.noise * out
    if store.trend is not None:  # piecewise linear between knots, constant beyond them
        frames = np.arange(t)
        for yy in range(y):
            for xx in range(x):
                model[:, yy, xx] += np.interp(frames, store.trend_frames, store.trend[:, yy, xx])
    return model


def windowed(block, window):
    """Each frame of ``block`` (L, P) times its window value, as float32."""
    return (np.asarray(block, np.float64) * np.asarray(window, np.float64)[:, None]).astype(np.float32)


def band_power(spec, lo, hi):
    """Per-column sum of ``|spec[k]|**2`` over the bins ``lo <= k < hi``, float64."""
    band = np.asarray(spec[lo:hi]).astype(np.complex128)
    return (band.real**2 + band.imag**2).sum(axis=0)


def segment_band_power(spec, lo, hi):
    """Sum of ``|spec[k, s]|**2`` over the bins ``lo <= k < hi`` and every segment (column) ``s``, float64."""
    return float(band_power(spec, lo, hi).sum())


def laplacian_abs_sum(img):
    """Sum of |Laplacian-difference filter| over the valid region (Immerkaer's operator), by scipy."""
    from scipy.signal import convolve2d

    kernel = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    return float(np.abs(convolve2d(np.asarray(img, np.float64), kernel, mode="valid")).sum())


def chunk_statistics(block, bin_size, rows, n_fit_rows):
    """Per-pixel sums, the fit rows and the first non-finite frame of one chunk.

    Returns ``(total, fit, bad)``: ``total`` (P,) float64 sums over every frame,
    ``fit`` (n_fit_rows, P) float32 with row ``rows[j]`` the mean of the ``j``-th
    complete bin of ``bin_size`` frames (NaN where no bin was written), ``bad``
    the first frame holding NaN or inf, or -1.
    """
    block64 = np.asarray(block, np.float64)
    n, n_pix = block64.shape
    total = block64.sum(axis=0)
    n_bins = n // bin_size
    means = block64[: n_bins * bin_size].reshape(n_bins, bin_size, n_pix).mean(axis=1)
    fit = np.full((n_fit_rows, n_pix), np.nan, np.float32)
    keep = np.asarray(rows) >= 0
    fit[np.asarray(rows)[keep]] = means[keep]
    bad_frames = np.flatnonzero(~np.isfinite(block64).all(axis=1))
    return total, fit, int(bad_frames[0]) if bad_frames.size else -1


def extract_patch(block, y0, x0, h, w, dtype):
    """``block[:, y0:y0+h, x0:x0+w]`` flattened to (n, h*w) in ``dtype``."""
    return np.asarray(block)[:, y0 : y0 + h, x0 : x0 + w].reshape(len(block), h * w).astype(dtype)


def epilogue(product, mean, out, lo, hi, do_round):
    """Reconstruction epilogue: ``out = product + mean`` in float32, rounded and clipped for integers."""
    n, h, w = out.shape
    v = product.reshape(n, h, w).astype(np.float32) + mean.reshape(h, w).astype(np.float32)
    if do_round:
        v = np.clip(np.floor(v + np.float32(0.5)), np.float32(lo), np.float32(hi))
    out[...] = v.astype(out.dtype)


def ring_mean(frames, inner, outer):
    """Twin of :func:`pmdcompress.preprocess.ring_mean`: annulus means from scipy's box filters (zeros outside)."""
    from scipy import ndimage

    frames = np.asarray(frames, np.float64)

    def box(r):
        side = 2 * r + 1
        total = ndimage.uniform_filter(frames, size=(1, side, side), mode="constant") * side**2
        count = ndimage.uniform_filter(np.ones(frames.shape[1:]), size=side, mode="constant") * side**2
        return total, np.rint(count).astype(np.int64)

    total_out, count_out = box(outer)
    total_in, count_in = box(inner)
    counts = count_out - count_in
    return (total_out - total_in) / np.maximum(counts, 1), counts


def ring_products(frames, inner, outer, block):
    """Twin of :func:`pmdcompress.preprocess.ring_products`: einsums of :func:`ring_mean` over blocks of frames."""
    frames = np.asarray(frames)
    cross, power = np.zeros(frames.shape[1:]), np.zeros(frames.shape[1:])
    counts = None
    for t0 in range(0, len(frames), block):
        part = np.asarray(frames[t0 : t0 + block], np.float64)
        mean, counts = ring_mean(part, inner, outer)
        cross += np.einsum("tyx,tyx->yx", part, mean)
        power += np.einsum("tyx,tyx->yx", mean, mean)
    return cross, power, counts


def varimax(u, iterations=100, tol=1e-5):
    """Kaiser's varimax rotation of orthonormal columns ``u`` (n, k): the polar factor of ``u^T (L^3 - L
    mean(L^2))`` with ``L = u R``, iterated until the criterion (the sum of its singular values) gains less than
    ``tol`` relative."""
    u = np.asarray(u, np.float64)
    n, k = u.shape
    rotation = np.eye(k)
    criterion = 0.0
    for _ in range(iterations):
        loadings = u @ rotation
        gradient = u.T @ (loadings**3 - loadings * np.mean(loadings**2, axis=0))
        left, s, right = np.linalg.svd(gradient)
        rotation = left @ right
        previous, criterion = criterion, s.sum()
        if previous > 0 and criterion < previous * (1 + tol):
            break
    return rotation
