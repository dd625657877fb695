"""Plain numpy twins of the report's numba kernels (slow, obvious)."""

from __future__ import annotations

import numpy as np


def moments(y, d, mu, first):
    """Twin of ``pmdcompress.report.metrics._moments_kernel``: (10, P) sums and the neighbour-frame count."""
    n = d.shape[0]
    y = np.asarray(y, np.float64)
    d = np.asarray(d, np.float64)
    mu = np.asarray(mu, np.float64)
    x = y[first : first + n] - mu
    z = d - mu
    r = x - z
    out = np.zeros((10, d.shape[1]))
    out[0], out[1] = x.sum(0), (x * x).sum(0)
    out[2], out[3] = z.sum(0), (z * z).sum(0)
    out[4], out[5] = r.sum(0), (r * r).sum(0)
    out[6] = (r[1:] * r[:-1]).sum(0)
    rows = [t for t in range(n) if first + t >= 1 and first + t + 1 < y.shape[0]]
    for t in rows:
        a = 0.5 * (y[first + t - 1] + y[first + t + 1]) - mu
        out[7] += (z[t] - a) ** 2
        out[8] += (x[t] - a) ** 2
    if n >= 3:
        out[9] = ((z[1:-1] - 0.5 * (z[:-2] + z[2:])) ** 2).sum(0)
    return out, len(rows)


def neighbour_sums(y, d, mu):
    """Twin of ``_neighbour_kernel``: (4, 6, H, W) sums for raw, denoised, residual, frame difference."""
    y = np.asarray(y, np.float64)
    d = np.asarray(d, np.float64)
    x = y - mu
    z = d - mu
    signals = [x, z, x - z, np.diff(y, axis=0)]
    n, h, w = d.shape
    out = np.zeros((4, 6, h, w))
    for g, s in enumerate(signals):
        out[g, 0] = s.sum(0)
        out[g, 1] = (s * s).sum(0)
        out[g, 2, :, :-1] = (s[:, :, :-1] * s[:, :, 1:]).sum(0)
        out[g, 3, :-1, :] = (s[:, :-1, :] * s[:, 1:, :]).sum(0)
        out[g, 4, :-1, :-1] = (s[:, :-1, :-1] * s[:, 1:, 1:]).sum(0)
        out[g, 5, :-1, 1:] = (s[:, :-1, 1:] * s[:, 1:, :-1]).sum(0)
    return out


def band_powers(spec_y, spec_r, lo, hi, weights):
    """Twin of ``_band_kernel``: high (3, P), low (3, P), pooled (3, hi) for raw, denoised, residual."""
    spec_y = np.asarray(spec_y, np.complex128)
    spec_r = np.asarray(spec_r, np.complex128)
    powers = [np.abs(s) ** 2 for s in (spec_y, spec_y - spec_r, spec_r)]
    high = np.array([p[lo:hi].sum(0) for p in powers])
    low = np.array([p[2:lo].sum(0) for p in powers])
    pooled = np.array([p[:hi] @ np.asarray(weights, np.float64) for p in powers])
    return high, low, pooled


def local_correlation(movie):
    """Mean correlation of each pixel's time series with its 8 neighbours (direct definition)."""
    movie = np.asarray(movie, np.float64)
    n, h, w = movie.shape
    out = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            cs = []
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    if (di, dj) == (0, 0) or not (0 <= i + di < h and 0 <= j + dj < w):
                        continue
                    a, b = movie[:, i, j], movie[:, i + di, j + dj]
                    if a.std() > 0 and b.std() > 0:
                        cs.append(np.corrcoef(a, b)[0, 1])
            out[i, j] = np.mean(cs) if cs else np.nan
    return out


def window(y, d, w, s0):
    """Twin of ``_window_kernel``: windowed raw and residual segments and the residual's windowed energy."""
    seg = len(w)
    y = np.asarray(y[s0 : s0 + seg], np.float32)
    d = np.asarray(d[s0 : s0 + seg], np.float32)
    yw = w[:, None] * y
    rw = w[:, None] * (y - d)
    return yw, rw, (rw.astype(np.float64) ** 2).sum(0)
