"""Plain numpy twins of the demixing kernels (slow, obvious)."""

from __future__ import annotations

import numpy as np


def robust_normalize(x, mad_threshold, step):
    """Normalised rows and each row's peak over its (subsampled) median."""
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    peak = np.zeros(x.shape[0])
    for i, row in enumerate(x):
        sub = row[::step]
        med = np.median(sub)
        peak[i] = row.max() - med
        mad = 1.4826 * np.median(np.abs(sub - med))
        v = np.maximum(row - (med + mad_threshold * mad), 0.0)
        v = v - v.mean()
        norm = np.sqrt((v**2).sum())
        out[i] = v / norm if norm > 0 else 0.0
    return out, peak


def neighbour_correlation(x):
    """x: (h, w, T); mean dot product with the in-bounds 8 neighbours."""
    h, w, _ = x.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            vals = [x[i, j] @ x[a, b] for a in range(i - 1, i + 2) for b in range(j - 1, j + 2)
                    if (a, b) != (i, j) and 0 <= a < h and 0 <= b < w]
            out[i, j] = np.mean(vals) if vals else 0.0
    return out


def dense_u(indptr, indices, data, n_pixels, k):
    u = np.zeros((n_pixels, k))
    for p in range(n_pixels):
        for q in range(indptr[p], indptr[p + 1]):
            u[p, indices[q]] += data[q]
    return u


def footprint_matrix(origins, values, dims):
    """A (pixels x n) from boxes."""
    n, bh, bw = values.shape
    a = np.zeros((dims[0], dims[1], n))
    for j, (y, x) in enumerate(origins):
        a[y : y + bh, x : x + bw, j] = values[j]
    return a.reshape(-1, n)


def spatial_hals(origins, values, support, p, cc, n_sweeps, dims):
    """Sequential projected updates a_j <- max(0, a_j + (p_j - A cc[:, j]) / cc[j, j]) on the support."""
    n, bh, bw = values.shape
    vals = values.astype(np.float64).copy()
    for _ in range(n_sweeps):
        for j in range(n):
            if cc[j, j] <= 0:
                continue
            a = footprint_matrix(origins, vals, dims)  # (pixels, n)
            y, x = origins[j]
            full = (a @ cc[:, j]).reshape(dims)
            acc = full[y : y + bh, x : x + bw]
            new = np.maximum(vals[j] + (p[j] - acc) / cc[j, j], 0.0)
            vals[j] = np.where(support[j], new, 0.0)
    return vals


def running_percentile(x, window, q):
    """Exact running percentile, window centred, edges clipped (for coarse comparisons)."""
    x = np.asarray(x, np.float64)
    n, t = x.shape
    out = np.zeros_like(x)
    half = window // 2
    for i in range(t):
        out[:, i] = np.percentile(x[:, max(0, i - half) : i + half + 1], q, axis=1)
    return out


def ar1_kernel_matrix(t_len, g):
    """Lower-triangular ``K`` with ``K[t, k] = g^(t - k)``: calcium ``c = K s`` of spikes ``s``."""
    idx = np.arange(t_len)
    lag = idx[:, None] - idx[None, :]
    return np.where(lag >= 0, float(g) ** np.maximum(lag, 0), 0.0)


def oasis_ar1_nnls(y, g):
    """Non-negative deconvolution ``min ||y - K s||^2, s >= 0`` by scipy's NNLS: ``(c, s)``."""
    from scipy.optimize import nnls

    k = ar1_kernel_matrix(y.size, g)
    s, _ = nnls(k, np.asarray(y, np.float64), maxiter=50 * y.size)
    return k @ s, s


def ar1_fit_on_support(y, g, support):
    """Least-squares calcium with spikes allowed only at ``support`` (bool, T): ``(c, s)``."""
    k = ar1_kernel_matrix(y.size, g)[:, support]
    coef, *_ = np.linalg.lstsq(k, np.asarray(y, np.float64), rcond=None)
    s = np.zeros(y.size)
    s[support] = coef
    return k @ coef, s


def tile_block(indptr, indices, data, n_cols, pix):
    """Columns used by rows ``pix`` of a CSR matrix (sorted) and those rows on them, dense float32."""
    dense = np.zeros((len(pix), n_cols))
    used = np.zeros(n_cols, bool)
    for i, p in enumerate(pix):
        for q in range(indptr[p], indptr[p + 1]):
            dense[i, indices[q]] += data[q]
            used[indices[q]] = True
    cols = np.flatnonzero(used)
    return cols, dense[:, cols].astype(np.float32)


def patch_rows(pieces, n_pixels, k):
    """CSR arrays of (pixels, values (k_p, len(pixels)), k0) pieces written into a dense matrix, row by row in
    column order, keeping explicit zeros (a pixel a piece covers keeps its entries even where they are 0)."""
    dense = np.zeros((n_pixels, k), np.float32)
    present = np.zeros((n_pixels, k), bool)
    for pix, values, k0 in pieces:
        for i, p in enumerate(pix):
            dense[p, k0 : k0 + values.shape[0]] = values[:, i]
            present[p, k0 : k0 + values.shape[0]] = True
    indptr = np.concatenate([[0], np.cumsum(present.sum(axis=1))])
    rows, cols = np.nonzero(present)
    return indptr, cols, dense[rows, cols]
